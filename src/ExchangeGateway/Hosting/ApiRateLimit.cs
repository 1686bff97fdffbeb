using System.Threading.RateLimiting;
using Microsoft.Extensions.Options;

namespace ExchangeGateway.Hosting;

/// <summary>
/// The API's allowance per caller and per node: a token bucket per token subject (or per address, for a token this node
/// has not validated yet). Its own limiter rather than a policy of the rate-limiting middleware, which keeps its limiters
/// to itself: held here, the bucket can say on every answer how many requests are left in it
/// (<see cref="RateLimits.StateHeader"/>), so a site paces itself before it meets a 429. Idle full buckets are dropped by
/// the partitioned limiter, as the middleware's are.
/// </summary>
public sealed class ApiRateLimit : IDisposable
{
    /// <summary>The endpoint metadata that puts an endpoint under this limit.</summary>
    public sealed class Marker;

    public static readonly Marker Endpoints = new();

    private readonly PartitionedRateLimiter<string> _buckets;
    private readonly TokenBucketRateLimiterOptions _bucket;

    public ApiRateLimit(IOptions<RateLimitOptions> options)
    {
        _bucket = RateLimits.ApiBucket(options.Value);
        PolicyValue = RateLimits.PolicyValue(options.Value);
        _buckets = PartitionedRateLimiter.Create<string, string>(caller => RateLimitPartition.GetTokenBucketLimiter(caller, _ => _bucket));
    }

    /// <summary>The RateLimit-Policy field's value.</summary>
    public string PolicyValue { get; }

    /// <summary>
    /// One request from <paramref name="caller"/>: the lease says whether it may go on; <paramref name="remaining"/> is
    /// what is left in the bucket after it, <paramref name="untilFull"/> how long the bucket takes to fill up again.
    /// </summary>
    public RateLimitLease Acquire(string caller, out long remaining, out TimeSpan untilFull)
    {
        var lease = _buckets.AttemptAcquire(caller);
        // Read just after: a concurrent request of the same caller may already have taken one more. The field is advice
        // for pacing, and the next answer corrects it.
        remaining = Math.Max(0, _buckets.GetStatistics(caller)?.CurrentAvailablePermits ?? 0);
        var missing = _bucket.TokenLimit - remaining;
        untilFull = _bucket.ReplenishmentPeriod * Math.Ceiling((double)missing / _bucket.TokensPerPeriod);
        return lease;
    }

    public void Dispose() => _buckets.Dispose();
}
