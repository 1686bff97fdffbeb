using System.Net;
using System.Text.Json;
using ExchangeGateway.Auth;
using ExchangeGateway.Hosting;
using ExchangeGateway.Tests.Infrastructure;
using Hangfire;
using Hangfire.Common;
using Hangfire.Server;
using Hangfire.States;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.DependencyInjection;

namespace ExchangeGateway.Tests.Hosting;

/// <summary>
/// /health/jobs tells an operator whether the background work runs, from Hangfire's own storage: the test nodes run no
/// job server, so one is announced here through the storage API, as a server on another node would be.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class JobsHealthTests(GatewayFixture fixture)
{
    [Fact]
    public async Task JobsHealthNamesAMissingServerAnOverdueJobAFailedOneAndADeletedOne()
    {
        var services = fixture.Factory.Services;
        var storage = services.GetRequiredService<JobStorage>();
        using var client = fixture.Client();

        // No server beats: the promises' jobs run nowhere.
        var none = await GetAsync(client, HttpStatusCode.ServiceUnavailable);
        Assert.Equal("Unhealthy", none.GetProperty("status").GetString());
        Assert.Equal(0, none.GetProperty("servers").GetInt32());
        Assert.Contains("No job server", none.GetProperty("description").GetString());

        var serverId = "health-test:" + Guid.NewGuid().ToString("N");
        using var connection = storage.GetConnection();
        connection.AnnounceServer(serverId, new ServerContext { Queues = ["default"], WorkerCount = 1 });
        var lastJob = connection.GetAllEntriesFromHash("recurring-job:token-pruning")?.GetValueOrDefault("LastJobId");
        var lastReminders = connection.GetAllEntriesFromHash("recurring-job:reminders")?.GetValueOrDefault("LastJobId");
        string? failed = null;
        try
        {
            // Registered afresh, every recurring job is next due in the future: all is well. Removed first: registering a job
            // that exists keeps its next run, which no server in this process ever moves on, so once the suite had run more
            // than five minutes since the fixture's host registered them, the minutely dispatch was already overdue here.
            var manager = services.GetRequiredService<IRecurringJobManager>();
            foreach (var id in Jobs.RecurringJobIds.Values)
            {
                manager.RemoveIfExists(id);
            }

            Jobs.RegisterRecurringJobs(manager, services.GetRequiredService<IOptions<JobOptions>>().Value);
            var healthy = await GetAsync(client, HttpStatusCode.OK);
            Assert.Equal("Healthy", healthy.GetProperty("status").GetString());
            Assert.True(healthy.GetProperty("servers").GetInt32() >= 1);
            Assert.Empty(healthy.GetProperty("overdue").EnumerateArray());

            // A daily job whose last run failed for good (its retries spent, as Hangfire then records it): degraded (still 200),
            // and named; nothing will run it again before tomorrow whatever the operator does.
            failed = services.GetRequiredService<IBackgroundJobClient>()
                .Create<TokenPruningJob>(job => job.RunAsync(CancellationToken.None), new ScheduledState(TimeSpan.FromDays(365)));
            using (var transaction = connection.CreateWriteTransaction())
            {
                transaction.SetJobState(failed, new FailedState(new InvalidOperationException("test")));
                transaction.Commit();
            }

            connection.SetRangeInHash("recurring-job:token-pruning", [new("LastJobId", failed)]);
            var degraded = await GetAsync(client, HttpStatusCode.OK);
            Assert.Equal("Degraded", degraded.GetProperty("status").GetString());
            Assert.Equal(["token-pruning"], degraded.GetProperty("failed").EnumerateArray().Select(e => e.GetString()));

            // A job that runs every ten minutes and failed on its last run fails on every run (its next one would have
            // cleared the state): its promise is not kept, so the probe answers 503, which a monitor on the status code sees.
            connection.SetRangeInHash("recurring-job:reminders", [new("LastJobId", failed)]);
            var failing = await GetAsync(client, HttpStatusCode.ServiceUnavailable);
            Assert.Equal("Unhealthy", failing.GetProperty("status").GetString());
            Assert.Equal(["reminders", "token-pruning"], failing.GetProperty("failed").EnumerateArray().Select(e => e.GetString()));
            Assert.Contains("reminders", failing.GetProperty("description").GetString(), StringComparison.Ordinal);
            Assert.DoesNotContain("token-pruning", failing.GetProperty("description").GetString(), StringComparison.Ordinal);

            // A job whose time came ten minutes ago and was never enqueued: no scheduler runs it.
            connection.SetRangeInHash("recurring-job:event-dispatch", [new("NextExecution", JobHelper.SerializeDateTime(DateTime.UtcNow.AddMinutes(-10)))]);
            var overdue = await GetAsync(client, HttpStatusCode.ServiceUnavailable);
            Assert.Equal("Unhealthy", overdue.GetProperty("status").GetString());
            Assert.Equal(["event-dispatch"], overdue.GetProperty("overdue").EnumerateArray().Select(e => e.GetString()));

            // A job deleted from the dashboard: nothing runs it until a node restarts, so it is named as missing.
            services.GetRequiredService<IRecurringJobManager>().RemoveIfExists("audit-checkpoint");
            var missing = await GetAsync(client, HttpStatusCode.ServiceUnavailable);
            Assert.Equal(["audit-checkpoint"], missing.GetProperty("missing").EnumerateArray().Select(e => e.GetString()));
            Assert.Contains("audit-checkpoint", missing.GetProperty("description").GetString(), StringComparison.Ordinal);
        }
        finally
        {
            connection.RemoveServer(serverId);
            if (failed is not null)
            {
                services.GetRequiredService<IBackgroundJobClient>().Delete(failed);
            }

            if (lastJob is not null)
            {
                connection.SetRangeInHash("recurring-job:token-pruning", [new("LastJobId", lastJob)]);
            }

            if (lastReminders is not null)
            {
                connection.SetRangeInHash("recurring-job:reminders", [new("LastJobId", lastReminders)]);
            }

            Jobs.RegisterRecurringJobs(services.GetRequiredService<IRecurringJobManager>(), services.GetRequiredService<IOptions<JobOptions>>().Value);
        }
    }

    /// <summary>
    /// Which failures make the check unhealthy follows each job's schedule, the configured one included: by default every
    /// job but the daily ones runs at least hourly.
    /// </summary>
    [Fact]
    public void JobsRunningAtLeastHourlyAreTheOnesWhoseFailureIsUnhealthy()
    {
        var frequent = JobOptions.DefaultSchedules.Where(s => JobsHealthCheck.RunsAtLeastHourly(s.Value)).Select(s => s.Key).Order().ToList();
        Assert.Equal(["AuditCheckpoint", "ConsentExpiry", "EventDispatch", "FreshnessSweep", "OverdueEscalation", "Reminders"], frequent);
        Assert.True(JobsHealthCheck.RunsAtLeastHourly("30 */5 * * * *"));
        Assert.False(JobsHealthCheck.RunsAtLeastHourly("0 */2 * * *"));
        // Hourly on working days only: the weekend is two days without a run.
        Assert.False(JobsHealthCheck.RunsAtLeastHourly("0 * * * 1-5"));
    }

    private static async Task<JsonElement> GetAsync(HttpClient client, HttpStatusCode expected)
    {
        using var response = await client.GetAsync("/health/jobs");
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(expected == response.StatusCode, $"{(int)response.StatusCode}: {body}");
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        return JsonDocument.Parse(body).RootElement.Clone();
    }
}
