using System.Net;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.Extensions.Time.Testing;

namespace ExchangeGateway.Tests.Hosting;

/// <summary>
/// A node's start as an operator upgrading several nodes meets it: settings are checked before the schema is touched,
/// nodes starting together take turns, a node that may not migrate refuses a schema older than itself (and `migrate`
/// brings it up), and the command line neither starts a server for a mistyped command nor invents signing keys.
/// Each test has a database of its own, new and empty.
/// </summary>
public sealed class StartTurnTests
{
    private static readonly string MigrationsTable = "SELECT to_regclass('public.\"__EFMigrationsHistory\"') IS NOT NULL";

    [Fact]
    public async Task ABadSettingStopsTheNodeBeforeItChangesTheSchema()
    {
        await using var database = await TestDatabase.CreateAsync();
        await using var node = new GatewayFactory(database, new FakeTimeProvider(DateTimeOffset.UtcNow),
            settings: new Dictionary<string, string?> { ["Freshness:MaxAge"] = "00:01:00" });

        var refused = Record.Exception(() => node.Services);

        Assert.NotNull(refused);
        Assert.Contains(GatewayCommand.Chain(refused), e => e.Message.Contains("MaxAge", StringComparison.Ordinal));
        Assert.False(await database.ScalarAsync<bool>(MigrationsTable), "the node migrated the database before finding its setting wrong");
        Assert.True(await database.ScalarAsync<bool>("SELECT to_regnamespace('hangfire') IS NULL"), "Hangfire installed its schema before the setting was found wrong");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task NodesStartingTogetherOnANewDatabaseAllStart(bool databaseExists)
    {
        await using var database = await TestDatabase.CreateAsync();
        if (!databaseExists)
        {
            // Not even created yet: the first node creates it, the others find it and take their turns in it.
            await using var server = new Npgsql.NpgsqlConnection(TestDatabase.ServerConnectionString);
            await server.OpenAsync();
            await using var drop = new Npgsql.NpgsqlCommand($"DROP DATABASE {database.Name}", server);
            await drop.ExecuteNonQueryAsync();
        }

        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var nodes = Enumerable.Range(0, 3).Select(_ => new GatewayFactory(database, time)).ToList();
        try
        {
            // Each host's start runs the migrations, creates the roles and registers the Swagger client: all at once.
            await Task.WhenAll(nodes.Select(node => Task.Run(() => node.Services)));
            foreach (var node in nodes)
            {
                using var client = node.CreateHttpClient();
                using var ready = await client.GetAsync("/health/ready");
                Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
            }

            Assert.Equal(1L, await database.ScalarAsync<long>("SELECT count(*) FROM \"OpenIddictApplications\" WHERE client_id = 'swagger-ui'"));
            Assert.Equal(0L, await database.ScalarAsync<long>("SELECT count(*) - count(DISTINCT name) FROM \"AspNetRoles\""));
        }
        finally
        {
            foreach (var node in nodes)
            {
                await node.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task ANodeThatMayNotMigrateRefusesAnOlderSchemaUntilMigrateHasRun()
    {
        await using var database = await TestDatabase.CreateAsync();
        var settings = new Dictionary<string, string?> { ["Database:MigrateOnStart"] = "false" };
        await using (var early = new GatewayFactory(database, new FakeTimeProvider(DateTimeOffset.UtcNow), settings: settings))
        {
            var refused = Record.Exception(() => early.Services);
            Assert.NotNull(refused);
            Assert.Contains(GatewayCommand.Chain(refused), e => e.Message.Contains("run `migrate` first", StringComparison.Ordinal));
        }

        var owner = new Dictionary<string, string> { ["ConnectionStrings__GatewayOwner"] = database.OwnerConnectionString };
        var (exitCode, output) = await GatewayCommand.RunAsync(database, GatewayFactory.KeyEncryptionKey, owner, "migrate");
        Assert.True(exitCode == 0, output);
        Assert.Contains("migrate: applied", output, StringComparison.Ordinal);
        (exitCode, output) = await GatewayCommand.RunAsync(database, GatewayFactory.KeyEncryptionKey, owner, "migrate");
        Assert.True(exitCode == 0, output);
        Assert.Contains("migrate: the database is up to date", output, StringComparison.Ordinal);

        await using var node = new GatewayFactory(database, new FakeTimeProvider(DateTimeOffset.UtcNow), settings: settings);
        using var client = node.CreateHttpClient();
        using var ready = await client.GetAsync("/health/ready");
        Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
    }

    /// <summary>
    /// A command run without the node's key settings (key files, say) finds no stored key: it says which setting it needs
    /// rather than storing keys of its own, which would sign checkpoints and events no node trusts.
    /// </summary>
    [Fact]
    public async Task ACommandWithoutTheNodesKeysStoresNoKeyOfItsOwn()
    {
        await using var database = await TestDatabase.CreateAsync();
        var owner = new Dictionary<string, string> { ["ConnectionStrings__GatewayOwner"] = database.OwnerConnectionString };
        Assert.Equal(0, (await GatewayCommand.RunAsync(database, GatewayFactory.KeyEncryptionKey, owner, "migrate")).ExitCode);

        var (exitCode, output) = await GatewayCommand.RunAsync(database, GatewayFactory.KeyEncryptionKey, "audit", "checkpoint");

        Assert.Equal(1, exitCode);
        Assert.Contains("Auth:RsaSigningKeyFile", output, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", output, StringComparison.Ordinal);
        Assert.Equal(0L, await database.ScalarAsync<long>("SELECT count(*) FROM signing_keys"));
        Assert.Equal(0L, await database.ScalarAsync<long>("SELECT count(*) FROM audit_checkpoints"));
    }

    [Fact]
    public async Task AMistypedCommandStartsNoServerAndTouchesNothing()
    {
        await using var database = await TestDatabase.CreateAsync();
        var owner = new Dictionary<string, string> { ["ConnectionStrings__GatewayOwner"] = database.OwnerConnectionString };

        var (exitCode, output) = await GatewayCommand.RunAsync(database, GatewayFactory.KeyEncryptionKey, owner, "stafff", "grant", "someone@example.test", "auditor");

        Assert.Equal(64, exitCode);
        Assert.Contains("unknown command 'stafff'", output, StringComparison.Ordinal);
        Assert.False(await database.ScalarAsync<bool>(MigrationsTable));
    }
}
