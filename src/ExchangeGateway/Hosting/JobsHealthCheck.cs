using System.Text.Json;
using Hangfire;
using Hangfire.States;
using Hangfire.Storage;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace ExchangeGateway.Hosting;

/// <summary>
/// Whether the background work that keeps the promises runs: some node's job server has sent a heartbeat lately, every
/// recurring job is on the schedule (the dashboard can delete one, and nothing else would say so until a node restarts),
/// none is overdue (its scheduler would have enqueued it), and none failed on its last run. Not part of
/// readiness: a node serves requests whatever the jobs do (availability is judged from live data on every read), but an
/// operator must learn when stale CVs stay on the feed's books or erasures wait unsent.
/// </summary>
public sealed class JobsHealthCheck(JobStorage storage) : IHealthCheck
{
    /// <summary>Hangfire servers beat every 30 seconds; a few missed beats are a server gone.</summary>
    public static readonly TimeSpan HeartbeatWindow = TimeSpan.FromMinutes(5);

    /// <summary>The scheduler enqueues a due job within seconds; minutes late means no scheduler runs it.</summary>
    public static readonly TimeSpan OverdueAfter = TimeSpan.FromMinutes(5);

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
        var failed = recurring.Where(j => j.LastJobState == FailedState.StateName).Select(j => j.Id).Order().ToList();
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

        return Task.FromResult(failed.Count > 0
            ? HealthCheckResult.Degraded($"Failed on its last run: {string.Join(", ", failed)} (see the dashboard at /hangfire).", data: data)
            : HealthCheckResult.Healthy($"{live} job server(s); every recurring job on schedule.", data));
    }

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
