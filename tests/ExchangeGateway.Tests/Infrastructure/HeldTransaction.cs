using System.Diagnostics;
using Npgsql;

namespace ExchangeGateway.Tests.Infrastructure;

/// <summary>
/// A transaction of the test's own (as the database owner) that holds its locks until committed: a concurrent writer
/// caught at one precise moment, so a race can be played in a chosen order.
/// </summary>
public sealed class HeldTransaction : IAsyncDisposable
{
    private readonly NpgsqlConnection _connection;
    private readonly NpgsqlTransaction _transaction;

    private HeldTransaction(NpgsqlConnection connection, NpgsqlTransaction transaction)
    {
        _connection = connection;
        _transaction = transaction;
    }

    public static async Task<HeldTransaction> BeginAsync(TestDatabase database)
    {
        var connection = await database.OpenOwnerConnectionAsync();
        return new HeldTransaction(connection, await connection.BeginTransactionAsync());
    }

    public async Task<int> ExecuteAsync(string sql)
    {
        await using var command = new NpgsqlCommand(sql, _connection, _transaction);
        return await command.ExecuteNonQueryAsync();
    }

    public async Task<T> ScalarAsync<T>(string sql)
    {
        await using var command = new NpgsqlCommand(sql, _connection, _transaction);
        return (T)(await command.ExecuteScalarAsync())!;
    }

    public Task CommitAsync() => _transaction.CommitAsync();

    /// <summary>Waits until a session of this database waits for a lock of one of these types (advisory, transactionid, tuple...).</summary>
    public static async Task WaitForWaiterAsync(TestDatabase database, params string[] lockTypes)
    {
        var types = string.Join(", ", lockTypes.Select(t => $"'{t}'"));
        var clock = Stopwatch.StartNew();
        while (await database.ScalarAsync<long>($"SELECT count(*) FROM pg_locks WHERE locktype IN ({types}) AND NOT granted AND pid IN (SELECT pid FROM pg_stat_activity WHERE datname = current_database())") == 0)
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), $"nobody ever waited for a lock of type {types}");
            await Task.Delay(20);
        }
    }

    /// <summary>
    /// Until <paramref name="count"/> sessions of this database wait for the chain lock itself (a one-key advisory lock: its
    /// key split in two, objsubid 1), not for any advisory lock (the seeker locks are advisory too).
    /// </summary>
    public static async Task WaitForChainWaitersAsync(TestDatabase database, int count)
    {
        var (high, low) = ((long)((ulong)ExchangeGateway.Data.Locks.Chain >> 32), (long)((ulong)ExchangeGateway.Data.Locks.Chain & 0xFFFF_FFFF));
        var clock = Stopwatch.StartNew();
        while (await database.ScalarAsync<long>(
            $"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid::bigint = {high} AND objid::bigint = {low} AND objsubid = 1 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())") < count)
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), $"fewer than {count} sessions ever waited for the chain lock");
            await Task.Delay(20);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _transaction.DisposeAsync();
        await _connection.DisposeAsync();
    }
}
