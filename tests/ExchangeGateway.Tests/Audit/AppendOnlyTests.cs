using ExchangeGateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace ExchangeGateway.Tests.Audit;

/// <summary>
/// The database itself keeps the audit log append-only: the gateway's role has no right to change it, and a trigger stops
/// even the owner. Every attempt runs in a transaction that is rolled back, so a regression cannot damage the shared log.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class AppendOnlyTests(GatewayFixture fixture)
{
    /// <summary>
    /// The append-only rule holds against the gateway's own login only when that login neither owns the log nor is a
    /// superuser (a single-login deployment: no ConnectionStrings:GatewayOwner). A node in that case says so when it
    /// starts; a node with the split logins the README describes does not.
    /// </summary>
    [Fact]
    public async Task ANodeWhoseLoginCouldDisableTheTriggersSaysSoAtStart()
    {
        await using var database = await TestDatabase.CreateAsync();
        const string Warning = "The gateway's database login owns the audit log or is a superuser";
        await using (var split = new GatewayFactory(database, new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow), captureLogs: true))
        {
            split.StartServer();
            Assert.DoesNotContain(split.Logs!, line => line.Contains(Warning, StringComparison.Ordinal));
        }

        await using var single = new GatewayFactory(database, new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow),
            appConnectionString: database.OwnerConnectionString, captureLogs: true);
        single.StartServer();
        Assert.Contains(single.Logs!, line => line.Contains(Warning, StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("UPDATE audit_events SET action = 'auth.sign-in' WHERE sequence = {0}")]
    [InlineData("UPDATE audit_events SET hash = previous_hash")]
    [InlineData("DELETE FROM audit_events WHERE sequence = {0}")]
    [InlineData("TRUNCATE audit_events")]
    [InlineData("UPDATE audit_checkpoints SET signature = 'x'")]
    [InlineData("DELETE FROM audit_checkpoints")]
    [InlineData("TRUNCATE audit_checkpoints")]
    // The stored signing keys too: the ES256 row is the only copy of the key every stored checkpoint verifies under.
    [InlineData("DELETE FROM signing_keys")]
    [InlineData("UPDATE signing_keys SET protected_private_key = 'x'")]
    [InlineData("TRUNCATE signing_keys")]
    public async Task TheGatewaysOwnRoleMayNotChangeOrRemoveAuditRows(string statement)
    {
        var head = await RowToTargetAsync();
        await using var connection = new NpgsqlConnection(fixture.Database.AppConnectionString);
        await connection.OpenAsync();
        Assert.Equal(TestDatabase.AppLogin, await ScalarAsync<string>(connection, "SELECT current_user"));
        Assert.True(await ScalarAsync<bool>(connection, "SELECT pg_has_role(current_user, 'exchange_gateway_app', 'MEMBER')"));
        // It may read the log (the auditor API runs as this role).
        Assert.True(await ScalarAsync<long>(connection, "SELECT count(*) FROM audit_events") >= head);

        var refused = await RefusedAsync(connection, string.Format(System.Globalization.CultureInfo.InvariantCulture, statement, head));

        Assert.Equal(PostgresErrorCodes.InsufficientPrivilege, refused.SqlState);
        Assert.Contains("permission denied", refused.MessageText, StringComparison.Ordinal);
        await AssertRowUnchangedAsync(head);
    }

    [Theory]
    [InlineData("UPDATE audit_events SET action = 'auth.sign-in' WHERE sequence = {0}")]
    [InlineData("DELETE FROM audit_events WHERE sequence = {0}")]
    [InlineData("TRUNCATE audit_events")]
    [InlineData("UPDATE audit_checkpoints SET signature = 'x'")]
    [InlineData("DELETE FROM audit_checkpoints")]
    [InlineData("TRUNCATE audit_checkpoints")]
    public async Task EvenTheOwnerIsStoppedByTheAppendOnlyTrigger(string statement)
    {
        var head = await RowToTargetAsync();
        // A checkpoint over that row, so the row-level trigger has a row to stop (with none, the statement changes nothing).
        await using (var scope = fixture.Factory.Services.CreateAsyncScope())
        {
            await scope.ServiceProvider.GetRequiredService<ExchangeGateway.Audit.AuditCheckpoints>().CreateAsync(CancellationToken.None);
        }

        Assert.True(await fixture.Database.ScalarAsync<long>("SELECT count(*) FROM audit_checkpoints") > 0);
        await using var connection = await fixture.Database.OpenOwnerConnectionAsync();
        Assert.True(await ScalarAsync<bool>(connection, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"));

        var refused = await RefusedAsync(connection, string.Format(System.Globalization.CultureInfo.InvariantCulture, statement, head));

        Assert.Equal(PostgresErrorCodes.InsufficientPrivilege, refused.SqlState);
        Assert.Contains("append-only", refused.MessageText, StringComparison.Ordinal);
        await AssertRowUnchangedAsync(head);
    }

    /// <summary>Writes a fresh row (a refused token request) and returns its sequence.</summary>
    private async Task<long> RowToTargetAsync()
    {
        var ghost = AuditLog.NewGhostClientId();
        await AuditLog.RefuseTokenAsync(fixture.Actors, ghost);
        return await fixture.Database.ScalarAsync<long>($"SELECT sequence FROM audit_events WHERE actor_id = '{ghost}'");
    }

    private async Task AssertRowUnchangedAsync(long sequence) =>
        Assert.Equal("auth.token-refused", await fixture.Database.ScalarAsync<string>($"SELECT action FROM audit_events WHERE sequence = {sequence}"));

    private static async Task<PostgresException> RefusedAsync(NpgsqlConnection connection, string sql)
    {
        await using var transaction = await connection.BeginTransactionAsync();
        await using var command = new NpgsqlCommand(sql, connection, transaction);
        var refused = await Assert.ThrowsAsync<PostgresException>(() => command.ExecuteNonQueryAsync());
        await transaction.RollbackAsync();
        return refused;
    }

    private static async Task<T> ScalarAsync<T>(NpgsqlConnection connection, string sql)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        return (T)(await command.ExecuteScalarAsync())!;
    }
}
