using System.Diagnostics;
using ExchangeGateway.Data;
using Microsoft.EntityFrameworkCore;

namespace ExchangeGateway.Events;

/// <summary>
/// The erasure backlog as two numbers, open obligations and those of them past their deadline, for the gauges an operator
/// watches promise 3 with: without auditor rights, and without the audit row each auditor query appends under the chain
/// lock. Counted by one query at most every <see cref="RefreshInterval"/> per node, whatever the number of exporters: the
/// first reading waits for it (at most <see cref="FirstReadWait"/>), later ones get the last count at once while a newer
/// one is read in the background.
/// </summary>
public sealed class ObligationBacklog(IServiceScopeFactory scopes, TimeProvider time, ILogger<ObligationBacklog> logger)
{
    public static readonly TimeSpan RefreshInterval = TimeSpan.FromSeconds(30);

    /// <summary>How long the first reading waits for the count before it reports nothing (the count goes on).</summary>
    public static readonly TimeSpan FirstReadWait = TimeSpan.FromSeconds(5);

    private readonly Lock _gate = new();
    private volatile Counts? _counts;
    private long? _readStarted;
    private bool _reading;

    /// <summary>Open obligations (not confirmed), and those of them overdue.</summary>
    public sealed record Counts(long Open, long Overdue);

    /// <summary>The last count, null until one has succeeded.</summary>
    public Counts? Current()
    {
        bool first;
        lock (_gate)
        {
            if (_reading || (_readStarted is { } started && Stopwatch.GetElapsedTime(started) < RefreshInterval))
            {
                return _counts;
            }

            _reading = true;
            _readStarted = Stopwatch.GetTimestamp();
            first = _counts is null;
        }

        var reading = Task.Run(ReadAsync);
        if (first)
        {
            reading.Wait(FirstReadWait);
        }

        return _counts;
    }

    private async Task ReadAsync()
    {
        try
        {
            await using var scope = scopes.CreateAsyncScope();
            var db = scope.ServiceProvider.GetRequiredService<GatewayDbContext>();
            var now = time.GetUtcNow();
            // Overdue as ErasureObligation.IsLate judges an open obligation: flagged by the escalation job, or past its
            // deadline (the flag alone lags by up to a quarter of an hour, or for ever if the job is stopped).
            _counts = await db.Database.SqlQuery<Counts>($"""
                SELECT count(*) AS open, count(*) FILTER (WHERE overdue OR confirm_before <= {now}) AS overdue
                FROM erasure_obligations WHERE status <> 'Confirmed'
                """).SingleAsync();
        }
        catch (Exception e)
        {
            // The gauges keep the last count; the next reading after the interval tries again.
            logger.LogWarning("Counting the open erasure obligations failed ({Error}); the gauges keep the last count", e.GetType().Name);
        }
        finally
        {
            lock (_gate)
            {
                _reading = false;
            }
        }
    }
}
