using System.Net;
using ExchangeGateway.Audit;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Npgsql;

namespace ExchangeGateway.Tests.Audit;

/// <summary>
/// The auditors' reads go where ConnectionStrings:AuditReads points: here a login whose every transaction is read-only,
/// which refuses writes as a hot standby does. Listing, export and verification all answer through it, and the record of
/// each (an audit event) is still written on the primary.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class AuditReplicaTests
{
    [Fact]
    public async Task ListingExportAndVerificationReadFromTheReplicaAndAreStillAudited()
    {
        await using var database = await TestDatabase.CreateAsync();
        var (reader, replica) = await ReadOnlyLoginAsync(database, database);

        // The stand-in refuses writes, as a replica would (checked on a session of another name, not kept in a pool).
        await using (var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(replica.ConnectionString) { ApplicationName = "probe", Pooling = false }.ConnectionString))
        {
            await connection.OpenAsync();
            await using var write = new NpgsqlCommand("CREATE TABLE replica_probe (id int)", connection);
            Assert.Equal(PostgresErrorCodes.ReadOnlySqlTransaction, (await Assert.ThrowsAsync<PostgresException>(() => write.ExecuteNonQueryAsync())).SqlState);
        }

        await using var node = new GatewayFactory(database, new FakeTimeProvider(DateTimeOffset.UtcNow),
            settings: new Dictionary<string, string?> { ["ConnectionStrings:AuditReads"] = replica.ConnectionString });
        var actors = new Actors(node);
        var ghost = AuditLog.NewGhostClientId();
        await AuditLog.RefuseTokenAsync(actors, ghost);
        using var auditor = node.CreateHttpClient().WithToken(await actors.AuditorClientTokenAsync());

        Assert.Single(await AuditLog.EventsAsync(auditor, $"actor={ghost}"));
        using (var export = await auditor.GetAsync($"{AuditLog.ExportPath}?actor={ghost}"))
        {
            Assert.Equal(HttpStatusCode.OK, export.StatusCode);
            // The one event, and the line that ends the stream.
            Assert.Equal(2, (await export.Content.ReadAsStringAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
        }

        Assert.True((await AuditLog.VerifyAsync(auditor)).GetProperty("ok").GetBoolean());

        // A kept checkpoint beyond a row altered on the way is a verdict on that row, not the replica's lag (a 503 that every
        // retry would repeat, and the tampering never reported).
        await using (var scope = node.Services.CreateAsyncScope())
        {
            Assert.NotNull(await scope.ServiceProvider.GetRequiredService<AuditCheckpoints>().CreateAsync(CancellationToken.None));
        }

        var kept = (await AuditLog.VerifyAsync(auditor)).GetProperty("lastCheckpointToken").GetString()!;
        await using (var owner = await database.OpenOwnerConnectionAsync())
        await using (var tamper = new NpgsqlCommand(
            "SET session_replication_role = replica; UPDATE audit_events SET outcome = outcome || '!' WHERE sequence = 1",
            owner))
        {
            await tamper.ExecuteNonQueryAsync();
        }

        using (var anchored = await auditor.GetAsync($"{AuditLog.VerifyPath}?anchor={Uri.EscapeDataString(kept)}"))
        {
            Assert.Equal(HttpStatusCode.OK, anchored.StatusCode);
            var verdict = await anchored.ReadJsonAsync();
            Assert.False(verdict.GetProperty("ok").GetBoolean());
            Assert.Equal("altered", verdict.GetProperty("problem").GetString());
            Assert.Equal(1, verdict.GetProperty("firstBadSequence").GetInt64());
        }

        // Row 1 put back, the tail cut from the checkpointed row on: the database's own checkpoint lies beyond the end, which
        // no replica lag explains (its row is written after the rows it vouches for), so it is a removal, not a 503.
        var checkpointed = await database.ScalarAsync<long>("SELECT max(sequence) FROM audit_checkpoints");
        await using (var owner = await database.OpenOwnerConnectionAsync())
        await using (var tamper = new NpgsqlCommand(
            "SET session_replication_role = replica; UPDATE audit_events SET outcome = left(outcome, -1) WHERE sequence = 1; " +
            $"DELETE FROM audit_events WHERE sequence >= {checkpointed}",
            owner))
        {
            await tamper.ExecuteNonQueryAsync();
        }

        using (var cut = await auditor.GetAsync($"{AuditLog.VerifyPath}?anchor={Uri.EscapeDataString(kept)}"))
        {
            Assert.Equal(HttpStatusCode.OK, cut.StatusCode);
            var verdict = await cut.ReadJsonAsync();
            Assert.Equal("removed", verdict.GetProperty("problem").GetString());
            Assert.Equal(checkpointed, verdict.GetProperty("firstBadSequence").GetInt64());
        }

        // The erasure obligations and a site's compliance too.
        using (var erasures = await auditor.GetAsync("/api/v1/audit/erasures"))
        {
            Assert.Equal(HttpStatusCode.OK, erasures.StatusCode);
        }

        var site = await database.ScalarAsync<Guid>("SELECT id FROM recipients LIMIT 1");
        using (var compliance = await auditor.GetAsync($"/api/v1/audit/recipients/{site}/compliance"))
        {
            Assert.Equal(HttpStatusCode.OK, compliance.StatusCode);
        }

        // The reads came through the replica's connection (its pooled sessions are still open); the records of them are on the primary.
        Assert.True(await database.ScalarAsync<long>($"SELECT count(*) FROM pg_stat_activity WHERE usename = '{reader}' AND application_name = 'audit-replica'") > 0);
        foreach (var action in new[] { AuditActions.AuditQueried, AuditActions.AuditExported, AuditActions.AuditVerified })
        {
            Assert.True(await database.ScalarAsync<long>($"SELECT count(*) FROM audit_events WHERE action = '{action}'") > 0, action);
        }

        // Roles belong to the whole cluster: this one goes with the test.
        await node.DisposeAsync();
        NpgsqlConnection.ClearAllPools();
        await database.ExecuteAsync($"DROP ROLE {reader}");
    }

    /// <summary>
    /// A kept checkpoint beyond the replica's end is lag while the primary holds its row: a 503, try again. Once the primary
    /// ends before it too (the tail cut, and the database's own checkpoints over it), that is the verdict, not a 503 that
    /// every retry would repeat.
    /// </summary>
    [Fact]
    public async Task AKeptCheckpointBeyondTheReplicasEndIsLagOnlyWhileThePrimaryHoldsIt()
    {
        await using var database = await TestDatabase.CreateAsync();
        await using (var first = new GatewayFactory(database, new FakeTimeProvider(DateTimeOffset.UtcNow)))
        {
            await AuditLog.RefuseTokenAsync(new Actors(first), AuditLog.NewGhostClientId());
        }

        // The replica: the database as it stood then, like a standby that has not replayed since; read-only.
        NpgsqlConnection.ClearAllPools();
        await using var standby = await TestDatabase.CreateAsync(database);
        var (reader, replica) = await ReadOnlyLoginAsync(database, standby);
        await using var node = new GatewayFactory(database, new FakeTimeProvider(DateTimeOffset.UtcNow),
            settings: new Dictionary<string, string?> { ["ConnectionStrings:AuditReads"] = replica.ConnectionString });
        var actors = new Actors(node);
        await AuditLog.RefuseTokenAsync(actors, AuditLog.NewGhostClientId());
        await using (var scope = node.Services.CreateAsyncScope())
        {
            Assert.NotNull(await scope.ServiceProvider.GetRequiredService<AuditCheckpoints>().CreateAsync(CancellationToken.None));
        }

        var keptRow = await database.ScalarAsync<long>("SELECT max(sequence) FROM audit_checkpoints");
        var kept = await database.ScalarAsync<string>($"SELECT signature FROM audit_checkpoints WHERE sequence = {keptRow}");
        Assert.True(keptRow > await standby.ScalarAsync<long>("SELECT max(sequence) FROM audit_events"));
        using var auditor = node.CreateHttpClient().WithToken(await actors.AuditorClientTokenAsync());
        var path = $"{AuditLog.VerifyPath}?anchor={Uri.EscapeDataString(kept)}";
        using (var behind = await auditor.GetAsync(path))
        {
            var problem = await behind.AssertProblemAsync(HttpStatusCode.ServiceUnavailable);
            Assert.Equal("Replica behind", problem.GetProperty("title").GetString());
        }

        await using (var owner = await database.OpenOwnerConnectionAsync())
        await using (var tamper = new NpgsqlCommand(
            $"SET session_replication_role = replica; DELETE FROM audit_events WHERE sequence >= {keptRow}; DELETE FROM audit_checkpoints WHERE sequence >= {keptRow}",
            owner))
        {
            await tamper.ExecuteNonQueryAsync();
        }

        using (var cut = await auditor.GetAsync(path))
        {
            Assert.Equal(HttpStatusCode.OK, cut.StatusCode);
            var verdict = await cut.ReadJsonAsync();
            Assert.Equal((false, "removed"), (verdict.GetProperty("ok").GetBoolean(), verdict.GetProperty("problem").GetString()));
        }

        await node.DisposeAsync();
        NpgsqlConnection.ClearAllPools();
        await database.ExecuteAsync($"DROP ROLE {reader}");
    }

    /// <summary>
    /// A stand-in for a hot standby: a login of its own (the cluster's, dropped by the test) whose every transaction is
    /// read-only, connecting to <paramref name="target"/>.
    /// </summary>
    private static async Task<(string Login, NpgsqlConnectionStringBuilder Replica)> ReadOnlyLoginAsync(TestDatabase owner, TestDatabase target)
    {
        var login = "eg_test_replica_" + Guid.NewGuid().ToString("N")[..8];
        await owner.ExecuteAsync($"""
            CREATE ROLE {login} LOGIN PASSWORD '{login}' IN ROLE exchange_gateway_app;
            ALTER ROLE {login} SET default_transaction_read_only = on;
            """);
        return (login, new NpgsqlConnectionStringBuilder(TestDatabase.ServerConnectionString)
        {
            Database = target.Name, Username = login, Password = login, ApplicationName = "audit-replica",
        });
    }

    /// <summary>A replica that is down costs the auditors a 503 that says to try again, not a 500; the rest of the gateway is unaffected.</summary>
    [Fact]
    public async Task AnUnreachableReplicaIsA503WithRetryAfter()
    {
        await using var database = await TestDatabase.CreateAsync();
        var nowhere = new NpgsqlConnectionStringBuilder(TestDatabase.ServerConnectionString) { Port = GatewayFactory.FreePort(), Timeout = 2 };
        await using var node = new GatewayFactory(database, new FakeTimeProvider(DateTimeOffset.UtcNow),
            settings: new Dictionary<string, string?> { ["ConnectionStrings:AuditReads"] = nowhere.ConnectionString });
        var actors = new Actors(node);
        using var auditor = node.CreateHttpClient().WithToken(await actors.AuditorClientTokenAsync());

        foreach (var path in new[] { AuditLog.EventsPath, AuditLog.VerifyPath, "/api/v1/audit/erasures" })
        {
            using var response = await auditor.GetAsync(path);
            var problem = await response.AssertProblemAsync(HttpStatusCode.ServiceUnavailable);
            Assert.True(response.Headers.RetryAfter?.Delta > TimeSpan.Zero, path);
            Assert.DoesNotContain("Npgsql", problem.ToString(), StringComparison.Ordinal);
        }

        using var site = node.CreateHttpClient().WithToken(await actors.DemoSiteTokenAsync());
        Assert.Equal(HttpStatusCode.OK, (await site.GetAsync("/api/v1/shared-cvs?limit=1")).StatusCode);
    }
}
