using ExchangeGateway.Data;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace ExchangeGateway.Tests.Hosting;

/// <summary>
/// Migrations on a database the size of the design load: an index built concurrently on the audit log waits for every
/// transaction writing to it and then reads millions of rows. Played here with a writer that holds the table longer than
/// the connection's command timeout (1 s, where Npgsql's default is 30 s). Each test has a database of its own, migrated
/// up to the migration before the audit log's actor index.
/// </summary>
public sealed class MigrationTests
{
    private const string BeforeActorIndex = "20261130121838_PushLeases";
    private const string ActorIndex = "ix_audit_events_actor_id_sequence";
    private const string ActorIndexValid = $"SELECT indisvalid FROM pg_index WHERE indexrelid = '{ActorIndex}'::regclass";

    [Fact]
    public async Task AnIndexBuildThatOutlastsTheCommandTimeoutIsWaitedFor()
    {
        await using var database = await DatabaseBeforeActorIndexAsync();
        await using var services = Services(database, commandTimeoutSeconds: 1);

        Task migrate;
        await using (var writer = await HeldTransaction.BeginAsync(database))
        {
            await writer.ExecuteAsync("LOCK TABLE audit_events IN ROW EXCLUSIVE MODE");
            migrate = GatewayDatabase.MigrateAsync(services);
            // The build waits for the writer's transaction (its virtual transaction id), past the command timeout.
            await HeldTransaction.WaitForWaiterAsync(database, "virtualxid");
            await Task.Delay(TimeSpan.FromSeconds(2.5));
            Assert.False(migrate.IsCompleted, migrate.Exception?.ToString());
            await writer.CommitAsync();
        }

        await migrate;
        Assert.True(await database.ScalarAsync<bool>(ActorIndexValid));
    }

    /// <summary>
    /// A build cancelled half-way (by a timeout, or a node stopped) leaves an invalid index under the migration's name;
    /// the next run rebuilds it instead of taking it for built because of IF NOT EXISTS.
    /// </summary>
    [Fact]
    public async Task AnIndexThatAnInterruptedBuildLeftInvalidIsBuiltAgain()
    {
        await using var database = await DatabaseBeforeActorIndexAsync();
        await using (var writer = await HeldTransaction.BeginAsync(database))
        {
            await writer.ExecuteAsync("LOCK TABLE audit_events IN ROW EXCLUSIVE MODE");
            await using var connection = new NpgsqlConnection(
                new NpgsqlConnectionStringBuilder(database.OwnerConnectionString) { CommandTimeout = 1, Pooling = false }.ConnectionString);
            await connection.OpenAsync();
            await using var build = new NpgsqlCommand($"CREATE INDEX CONCURRENTLY IF NOT EXISTS {ActorIndex} ON audit_events (actor_id, sequence)", connection);
            Assert.NotNull(await Record.ExceptionAsync(() => build.ExecuteNonQueryAsync()));
        }

        Assert.False(await database.ScalarAsync<bool>(ActorIndexValid), "the interrupted build left no invalid index");

        await using var services = Services(database, commandTimeoutSeconds: 30);
        await GatewayDatabase.MigrateAsync(services);

        Assert.True(await database.ScalarAsync<bool>(ActorIndexValid));
        Assert.Empty(await PendingAsync(database));
    }

    private static async Task<TestDatabase> DatabaseBeforeActorIndexAsync()
    {
        var database = await TestDatabase.CreateAsync();
        await using var db = OwnerContext(database);
        await db.GetService<IMigrator>().MigrateAsync(BeforeActorIndex);
        return database;
    }

    private static async Task<IEnumerable<string>> PendingAsync(TestDatabase database)
    {
        await using var db = OwnerContext(database);
        return await db.Database.GetPendingMigrationsAsync();
    }

    private static GatewayDbContext OwnerContext(TestDatabase database)
    {
        var options = new DbContextOptionsBuilder<GatewayDbContext>();
        options.UseGateway(database.OwnerConnectionString);
        return new GatewayDbContext(options.Options);
    }

    /// <summary>The settings <c>migrate</c> and a starting node read: the owner's connection, with this command timeout.</summary>
    private static ServiceProvider Services(TestDatabase database, int commandTimeoutSeconds)
    {
        var owner = new NpgsqlConnectionStringBuilder(database.OwnerConnectionString) { CommandTimeout = commandTimeoutSeconds };
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["ConnectionStrings:Gateway"] = database.AppConnectionString,
            ["ConnectionStrings:GatewayOwner"] = owner.ConnectionString,
        }).Build();
        return new ServiceCollection().AddSingleton<IConfiguration>(configuration).BuildServiceProvider();
    }
}
