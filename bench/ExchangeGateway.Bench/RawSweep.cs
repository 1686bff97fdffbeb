using System.Diagnostics;
using System.Text.Json;
using Npgsql;

namespace ExchangeGateway.Bench;

/// <summary>
/// The freshness sweep's baseline: the one statement a hand-written sweep would need, taking the same stale rows offline
/// and returning their seekers, timed from the client; rolled back so the gateway's sweep then finds the same rows.
/// </summary>
internal static class RawSweep
{
    public static async Task<int> RunAsync(Options options)
    {
        await using var connection = new NpgsqlConnection(options.String("conn"));
        await connection.OpenAsync();
        var cutoff = DateTimeOffset.UtcNow.AddDays(-options.Double("max-age-days", 90));
        await using var transaction = await connection.BeginTransactionAsync();
        var clock = Stopwatch.StartNew();
        await using var command = new NpgsqlCommand(
            "UPDATE cvs SET state = 'Offline' WHERE state = 'Published' AND refreshed_at <= $1 RETURNING seeker_id", connection, transaction)
        {
            Parameters = { new() { Value = cutoff } },
            CommandTimeout = 0,
        };
        var rows = 0;
        await using (var reader = await command.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync())
            {
                _ = reader.GetString(0);
                rows++;
            }
        }

        clock.Stop();
        await transaction.RollbackAsync();
        Console.WriteLine(JsonSerializer.Serialize(new { rows, elapsedMs = clock.Elapsed.TotalMilliseconds }));
        return 0;
    }
}
