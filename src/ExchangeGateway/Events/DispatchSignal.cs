using Hangfire;

namespace ExchangeGateway.Events;

/// <summary>
/// "Obligations were just written": one dispatch job is enqueued (after the commit), so push sites hear within seconds
/// rather than at the next recurring run. The job claims whatever is due: never one job per obligation.
/// </summary>
public sealed class DispatchSignal(IBackgroundJobClient jobs)
{
    public void After(int obligationsWritten)
    {
        if (obligationsWritten > 0)
        {
            jobs.Enqueue<EventDispatchJob>(job => job.RunAsync(CancellationToken.None));
        }
    }
}
