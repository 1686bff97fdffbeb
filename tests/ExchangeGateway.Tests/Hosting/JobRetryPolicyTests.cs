using ExchangeGateway.Hosting;
using ExchangeGateway.Tests.Infrastructure;
using Hangfire;
using Hangfire.Common;
using Hangfire.Storage;
using Microsoft.Extensions.DependencyInjection;

namespace ExchangeGateway.Tests.Hosting;

/// <summary>
/// Every recurring job, as the gateway registered it in Hangfire's storage, is retried twice at most: its next run does the
/// rest, and Hangfire's default (ten retries over hours) would pile up retries during an outage.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class JobRetryPolicyTests(GatewayFixture fixture)
{
    [Fact]
    public void EveryRecurringJobIsRetriedTwiceThenLeftFailed()
    {
        using var connection = fixture.Factory.Services.GetRequiredService<JobStorage>().GetConnection();
        var recurring = connection.GetRecurringJobs();
        Assert.Equal(
            ["audit-checkpoint", "consent-expiry", "data-key-rotation", "erased-records-purge", "event-dispatch", "freshness-sweep", "overdue-escalation", "reminders", "token-pruning"],
            recurring.Select(r => r.Id).Order(StringComparer.Ordinal));
        Assert.All(recurring, job =>
        {
            // The filter is not AllowMultiple: the most specific scope (the job's class over the global default) is the one applied.
            var effective = JobFilterProviders.Providers.GetFilters(job.Job)
                .Where(f => f.Instance is AutomaticRetryAttribute).OrderByDescending(f => f.Scope).ThenByDescending(f => f.Order).First();
            Assert.Equal(JobFilterScope.Type, effective.Scope);
            var retry = (AutomaticRetryAttribute)effective.Instance;
            Assert.Equal(Jobs.RetryAttempts, retry.Attempts);
            Assert.Equal(AttemptsExceededAction.Fail, retry.OnAttemptsExceeded);
        });
    }
}
