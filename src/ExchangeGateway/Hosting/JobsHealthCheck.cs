using System.Collections.Concurrent;
using System.Text.Json;
using Cronos;
using Hangfire;
using Hangfire.States;
using Hangfire.Storage;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace ExchangeGateway.Hosting;

/// <summary>
/// Whether the background work that keeps the promises runs: some node's job server has sent a heartbeat lately, every
/// recurring job is on the schedule (the dashboard can delete one, and nothing else would say so until a node restarts),
/// none is overdue (its scheduler would have enqueued it), and none failed on its last run (unhealthy for a job that runs
/// at least hourly, degraded for a daily one, see <see cref="FrequentJobInterval"/>). Not part of
/// readiness: a node serves requests whatever the jobs do (availability is judged from live data on every read), but an
/// operator must learn when stale CVs stay on the feed's books or erasures wait unsent.
/// </summary>
public sealed class JobsHealthCheck(JobStorage storage) : IHealthCheck
{
    /// <summary>Hangfire servers beat every 30 seconds; a few missed beats are a server gone.</summary>
    public static readonly TimeSpan HeartbeatWindow = TimeSpan.FromMinutes(5);

    /// <summary>The scheduler enqueues a due job within seconds; minutes late means no scheduler runs it.</summary>
    public static readonly TimeSpan OverdueAfter = TimeSpan.FromMinutes(5);

    /// <summary>
    /// A job that runs at least this often and whose last run failed is failing now, not once: its retries are spent within
    /// minutes and its next run clears the state as soon as the cause is gone, so a failure that stays is the promise's work
    /// (dispatch, sweep, reminders, expiry, escalation, checkpoints) not being done. Unhealthy, so that a probe watching the
    /// status code alerts. A daily job's failure (token pruning, data-key rotation) stays until the next day whatever is
    /// done, and the jobs that keep the promises do not depend on it: degraded.
    /// </summary>
    public static readonly TimeSpan FrequentJobInterval = TimeSpan.FromHours(1);

    // Judged once per schedule: the verdict depends on the cron expression alone, and a minutely one has 10 080 runs a week.
    private static readonly ConcurrentDictionary<string, bool> Frequent = new(StringComparer.Ordinal);

    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        // Hangfire stamps heartbeats and schedules with the system clock, so they are judged by it (not the gateway's
        // TimeProvider, which tests move at will).
        var now = DateTime.UtcNow;
        var live = storage.GetMonitoringApi().Servers().Count(s => s.Heartbeat is { } beat && now - beat < HeartbeatWindow);
        List<RecurringJobDto> recurring;
        using (var connection = storage.GetConnection())
        {
            recurring = connection.GetRecurringJobs();
        }

        var missing = Jobs.RecurringJobIds.Values.Except(recurring.Select(j => j.Id)).Order().ToList();
        var overdue = recurring.Where(j => j.NextExecution is { } next && now - next > OverdueAfter).Select(j => j.Id).Order().ToList();
        var failedJobs = recurring.Where(j => j.LastJobState == FailedState.StateName).ToList();
        var failed = failedJobs.Select(j => j.Id).Order().ToList();
        var failing = failedJobs.Where(j => RunsAtLeastHourly(j.Cron)).Select(j => j.Id).Order().ToList();
        var data = new Dictionary<string, object> { ["servers"] = live, ["missing"] = missing, ["overdue"] = overdue, ["failed"] = failed };
        if (live == 0)
        {
            return Task.FromResult(HealthCheckResult.Unhealthy(
                $"No job server has sent a heartbeat in the last {HeartbeatWindow.TotalMinutes:0} minutes: stale CVs are not taken offline and erasure events are not sent.", data: data));
        }

        if (missing.Count > 0)
        {
            return Task.FromResult(HealthCheckResult.Unhealthy(
                $"Not on the schedule (deleted?): {string.Join(", ", missing)}. Every node registers them again when it starts.", data: data));
        }

        if (overdue.Count > 0)
        {
            return Task.FromResult(HealthCheckResult.Unhealthy($"Overdue by more than {OverdueAfter.TotalMinutes:0} minutes: {string.Join(", ", overdue)}.", data: data));
        }

        if (failing.Count > 0)
        {
            return Task.FromResult(HealthCheckResult.Unhealthy(
                $"Failed on its last run, and runs at least hourly: {string.Join(", ", failing)}. Its work waits until the cause is fixed (see the dashboard at /hangfire).", data: data));
        }

        return Task.FromResult(failed.Count > 0
            ? HealthCheckResult.Degraded($"Failed on its last run: {string.Join(", ", failed)} (see the dashboard at /hangfire).", data: data)
            : HealthCheckResult.Healthy($"{live} job server(s); every recurring job on schedule.", data));
    }

    /// <summary>
    /// Whether no two runs of <paramref name="cron"/> in the coming week are more than <see cref="FrequentJobInterval"/>
    /// apart (a week: a schedule may skip days). A schedule that cannot be read counts as frequent: the louder verdict.
    /// </summary>
    public static bool RunsAtLeastHourly(string? cron) => cron is null || Frequent.GetOrAdd(cron, static cron =>
    {
        if (JobOptions.ParseCron(cron) is not { } expression)
        {
            return true;
        }

        var from = DateTime.UtcNow;
        var previous = from;
        foreach (var next in expression.GetOccurrences(from, from.AddDays(7), fromInclusive: true, toInclusive: true).Append(from.AddDays(7)))
        {
            if (next - previous > FrequentJobInterval)
            {
                return false;
            }

            previous = next;
        }

        return true;
    });

    /// <summary>The verdict as JSON: status, description, and the servers, missing, overdue and failed jobs (names only).</summary>
    public static Task WriteAsync(HttpContext context, HealthReport report)
    {
        var entry = report.Entries.Values.Single();
        context.Response.ContentType = "application/json";
        return context.Response.WriteAsync(JsonSerializer.Serialize(new
        {
            status = report.Status.ToString(),
            // An exception's message may name hosts and ports; the log has it, the probe's caller does not need it.
            description = entry.Exception is null ? entry.Description : "The job storage could not be read.",
            servers = entry.Data.GetValueOrDefault("servers"),
            missing = entry.Data.GetValueOrDefault("missing"),
            overdue = entry.Data.GetValueOrDefault("overdue"),
            failed = entry.Data.GetValueOrDefault("failed"),
        }));
    }
}
