using Hangfire;

namespace ExchangeGateway.Events;

/// <summary>
/// "Obligations were just written": one dispatch job is enqueued (after the commit), so push sites hear within seconds
/// rather than at the next recurring run. The job claims whatever is due: never one job per obligation.
/// </summary>
public sealed class DispatchSignal(IBackgroundJobClient jobs, ILogger<DispatchSignal> logger)
{
    public void After(int obligationsWritten)
    {
        if (obligationsWritten == 0)
        {
            return;
        }

        try
        {
            jobs.Enqueue<EventDispatchJob>(job => job.RunAsync(CancellationToken.None));
        }
        catch (Exception e)
        {
            // The change is committed and its obligations with it; the recurring dispatch finds them within a minute. Failing
            // here would tell a seeker whose untick went through that it did not.
            logger.LogWarning(e, "Could not enqueue the dispatch for {Obligations} new obligations; the recurring run will send them", obligationsWritten);
        }
    }
}
