using System.Diagnostics;
using System.Text.Json;
using Hangfire;
using Hangfire.PostgreSql;
using Hangfire.PostgreSql.Factories;

namespace ExchangeGateway.Bench;

/// <summary>
/// Runs one of the gateway's recurring jobs now, inside the running (warm) gateway: triggers it through Hangfire's
/// storage, waits until the gateway's Hangfire server has performed it, and prints the duration Hangfire recorded for the
/// job itself (PerformanceDuration, without the queueing latency).
/// </summary>
internal static class Trigger
{
    public static async Task<int> RunAsync(Options options)
    {
        var conn = options.String("conn");
        var job = options.String("job");
        var timeout = TimeSpan.FromSeconds(options.Double("timeout-seconds", 600));
        var storageOptions = new PostgreSqlStorageOptions { SchemaName = "hangfire", PrepareSchemaIfNecessary = false };
        var storage = new PostgreSqlStorage(new NpgsqlConnectionFactory(conn, storageOptions), storageOptions);
        var jobId = new RecurringJobManager(storage).TriggerJob(job);
        var monitoring = storage.GetMonitoringApi();
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < timeout)
        {
            await Task.Delay(250);
            var history = monitoring.JobDetails(jobId)?.History ?? [];
            var final = history.FirstOrDefault(h => h.StateName is "Succeeded" or "Failed" or "Deleted");
            if (final is null)
            {
                continue;
            }

            if (final.StateName != "Succeeded")
            {
                Console.Error.WriteLine($"[bench] job {job} ({jobId}) ended {final.StateName}: {final.Reason}");
                return 1;
            }

            var performed = double.Parse(final.Data["PerformanceDuration"], System.Globalization.CultureInfo.InvariantCulture);
            Console.WriteLine(JsonSerializer.Serialize(new { job, jobId, elapsedMs = performed, result = final.Data.TryGetValue("Result", out var r) ? r : null }));
            return 0;
        }

        Console.Error.WriteLine($"[bench] job {job} ({jobId}) did not finish within {timeout}");
        return 1;
    }
}
