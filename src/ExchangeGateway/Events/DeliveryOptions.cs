using System.ComponentModel.DataAnnotations;
using Microsoft.Extensions.Options;

namespace ExchangeGateway.Events;

public sealed class DeliveryOptions : IValidatableObject
{
    public const string Section = "Delivery";

    /// <summary>
    /// Waits between push attempts; the last one repeats. Jitter of ±20% spreads retries out. None configured means 1, 5
    /// and 15 minutes, 1, 3, 6, 12 and 24 hours (kept out of the list: the configuration binder adds to a filled list).
    /// </summary>
    public List<TimeSpan> RetrySchedule { get; set; } = [];

    public IReadOnlyList<TimeSpan> Schedule => RetrySchedule.Count > 0
        ? RetrySchedule
        :
        [
            TimeSpan.FromMinutes(1), TimeSpan.FromMinutes(5), TimeSpan.FromMinutes(15), TimeSpan.FromHours(1),
            TimeSpan.FromHours(3), TimeSpan.FromHours(6), TimeSpan.FromHours(12), TimeSpan.FromHours(24),
        ];

    [Range(typeof(TimeSpan), "00:00:01", "00:02:00")]
    public TimeSpan AttemptTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>A claimed batch is invisible to other dispatchers this long; a crashed node's batch is retried after it.</summary>
    [Range(typeof(TimeSpan), "00:00:10", "01:00:00")]
    public TimeSpan Lease { get; set; } = TimeSpan.FromMinutes(2);

    [Range(1, 5000)]
    public int BatchSize { get; set; } = 500;

    [Range(1, 256)]
    public int MaxConcurrentDeliveries { get; set; } = 64;

    [Range(1, 64)]
    public int MaxConcurrentPerRecipient { get; set; } = 8;

    /// <summary>How long one dispatch job keeps claiming batches before it leaves the rest to the next run.</summary>
    [Range(typeof(TimeSpan), "00:00:01", "00:10:00")]
    public TimeSpan MaxRunTime { get; set; } = TimeSpan.FromSeconds(50);

    /// <summary>
    /// Claim-deliver-record loops side by side in one run, each holding a connection while it claims or records. With one,
    /// the deliveries wait for its database work; two keep the wire busy while one claims or records.
    /// </summary>
    [Range(1, 8)]
    public int Lanes { get; set; } = 2;

    [Range(1, 1000)]
    public int MaxEventsPerPoll { get; set; } = 100;

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (RetrySchedule.Any(t => t <= TimeSpan.Zero))
        {
            yield return new ValidationResult("Delivery:RetrySchedule waits must be positive.", [nameof(RetrySchedule)]);
        }

        // A delivery is started only if it can end within its batch's lease; a lease shorter than that would hand every
        // delivery back unattempted, and nothing would ever be pushed.
        if (Lease < 2 * AttemptTimeout)
        {
            yield return new ValidationResult("Delivery:Lease must be at least twice Delivery:AttemptTimeout.", [nameof(Lease), nameof(AttemptTimeout)]);
        }
    }

    public TimeSpan Backoff(int attempts, Random random)
    {
        var schedule = Schedule;
        var wait = schedule[Math.Clamp(attempts - 1, 0, schedule.Count - 1)];
        return wait * (0.8 + (random.NextDouble() * 0.4));
    }
}

/// <summary>
/// The caps on concurrent pushes, for the whole node: overall, and per site so one slow site cannot hold them all. Per
/// node, not per run: every change that writes obligations starts a run, a node runs several at once, and caps of each
/// run's own let a site receive several times <see cref="DeliveryOptions.MaxConcurrentPerRecipient"/> pushes at once.
/// </summary>
public sealed class DeliveryCaps(IOptions<DeliveryOptions> options)
{
    private readonly System.Collections.Concurrent.ConcurrentDictionary<Guid, SemaphoreSlim> _sites = new();

    public SemaphoreSlim Overall { get; } = new(options.Value.MaxConcurrentDeliveries);

    public SemaphoreSlim For(Guid recipientId) => _sites.GetOrAdd(recipientId, _ => new SemaphoreSlim(options.Value.MaxConcurrentPerRecipient));
}
