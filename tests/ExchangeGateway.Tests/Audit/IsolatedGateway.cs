using System.Text.Json;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.Extensions.Time.Testing;
using Npgsql;

namespace ExchangeGateway.Tests.Audit;

/// <summary>
/// A gateway on its own fresh database, for tests that must damage the audit chain: the shared fixture's chain stays
/// intact for everyone else.
/// </summary>
internal sealed class IsolatedGateway : IAsyncDisposable
{
    private IsolatedGateway(TestDatabase database, GatewayFactory node)
    {
        Database = database;
        Node = node;
        Actors = new Actors(node);
    }

    public TestDatabase Database { get; }
    public GatewayFactory Node { get; }
    public Actors Actors { get; }

    public static async Task<IsolatedGateway> StartAsync(SeededTemplate template)
    {
        var database = await template.CopyAsync();
        var node = new GatewayFactory(database, new FakeTimeProvider(DateTimeOffset.UtcNow));
        node.StartServer();
        return new IsolatedGateway(database, node);
    }

    /// <summary>Writes <paramref name="count"/> audit rows through the real token endpoint (refused requests), one per request.</summary>
    public async Task WriteRowsAsync(int count)
    {
        for (var i = 0; i < count; i++)
        {
            await AuditLog.RefuseTokenAsync(Actors, $"intruder-{i}");
        }
    }

    public async Task<JsonElement> VerifyAsync()
    {
        using var auditor = Node.CreateHttpClient().WithToken(await Actors.AuditorClientTokenAsync());
        return await AuditLog.VerifyAsync(auditor);
    }

    public Task<long> HeadAsync() => Database.ScalarAsync<long>("SELECT coalesce(max(sequence), 0) FROM audit_events");

    /// <summary>
    /// Runs SQL as the superuser with triggers disabled for the session (session_replication_role = replica): what an
    /// attacker with full database access could do, and what the hash chain must expose.
    /// </summary>
    public Task TamperAsync(string sql, params NpgsqlParameter[] parameters) => TamperAsync(1, sql, parameters);

    /// <summary>Runs <paramref name="sql"/> past the append-only triggers; it must touch exactly <paramref name="rows"/> rows.</summary>
    public async Task TamperAsync(int rows, string sql, params NpgsqlParameter[] parameters)
    {
        await using var connection = await Database.OpenOwnerConnectionAsync();
        await using (var replica = new NpgsqlCommand("SET session_replication_role = replica", connection))
        {
            await replica.ExecuteNonQueryAsync();
        }

        await using var command = new NpgsqlCommand(sql, connection);
        command.Parameters.AddRange(parameters);
        Assert.Equal(rows, await command.ExecuteNonQueryAsync());
    }

    public async ValueTask DisposeAsync()
    {
        await Node.DisposeAsync();
        await Database.DisposeAsync();
    }
}

/// <summary>
/// A database migrated and seeded once by a gateway that has stopped since; copies of it (CREATE DATABASE ... TEMPLATE)
/// start a gateway in a fraction of the time, with no migration, key generation or password hashing to redo.
/// Its audit log is empty, so every copy's chain starts at row 1.
/// </summary>
public sealed class SeededTemplate : IAsyncLifetime
{
    private TestDatabase _template = null!;

    public async Task InitializeAsync()
    {
        _template = await TestDatabase.CreateAsync();
        await using (var node = new GatewayFactory(_template, new FakeTimeProvider(DateTimeOffset.UtcNow)))
        {
            node.StartServer();
        }

        // A template must have no sessions. The stopped gateway's pool (its own connection string, not ours) may keep idle
        // connections to it, and CREATE DATABASE ... TEMPLATE would wait for them, then fail: end them and wait until gone.
        await using var server = new NpgsqlConnection(TestDatabase.ServerConnectionString);
        await server.OpenAsync();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            // Materialized: in one WHERE the planner may call pg_terminate_backend before the other conditions, on any session.
            await using var terminate = new NpgsqlCommand(
                """
                WITH sessions AS MATERIALIZED (SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid())
                SELECT count(pg_terminate_backend(pid, 5000)) FROM sessions
                """, server)
            {
                Parameters = { new() { Value = _template.Name } },
            };
            if ((long)(await terminate.ExecuteScalarAsync())! == 0)
            {
                break;
            }

            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), "sessions on the template database would not end");
        }
    }

    public Task<TestDatabase> CopyAsync() => TestDatabase.CreateAsync(_template);

    public async Task DisposeAsync() => await _template.DisposeAsync();
}
