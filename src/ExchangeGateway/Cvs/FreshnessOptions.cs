using System.ComponentModel.DataAnnotations;

namespace ExchangeGateway.Cvs;

public sealed class FreshnessOptions : IValidatableObject
{
    public const string Section = "Freshness";

    /// <summary>A CV not refreshed for this long goes offline and is never served.</summary>
    [Range(typeof(TimeSpan), "1.00:00:00", "3650.00:00:00")]
    public TimeSpan MaxAge { get; set; } = TimeSpan.FromDays(90);

    /// <summary>
    /// How long before going offline the seeker is reminded (one reminder per value); none configured means 14 and 3 days.
    /// The defaults are not in the list itself: the configuration binder adds to a list it finds filled, so a configured
    /// "7 days" gave 14, 3 and 7.
    /// </summary>
    public List<TimeSpan> RemindBefore { get; set; } = [];

    /// <summary>The configured lead times, or the defaults that fall inside <see cref="MaxAge"/> (a 10-day MaxAge keeps 3 days).</summary>
    public IReadOnlyList<TimeSpan> ReminderLeads => RemindBefore.Count > 0
        ? RemindBefore
        : [.. new[] { TimeSpan.FromDays(14), TimeSpan.FromDays(3) }.Where(lead => lead < MaxAge)];

    /// <summary>CVs (and consents) claimed per reminder batch; a run takes batches until one comes back short (or five minutes).</summary>
    [Range(1, 5000)]
    public int ReminderBatchSize { get; set; } = 500;

    /// <summary>Largest accepted CV document; at most Kestrel's request body limit (1 MiB), which answers first otherwise.</summary>
    [Range(1024, 1024 * 1024)]
    public int MaxDocumentBytes { get; set; } = 256 * 1024;

    /// <summary>CVs the freshness sweep takes offline per transaction (each batch also writes their obligations and audit events).</summary>
    [Range(1, 50_000)]
    public int SweepBatchSize { get; set; } = 5000;

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        // A lead of MaxAge or more would remind every CV the hour it is published; zero or less would never remind.
        if (RemindBefore.Any(lead => lead <= TimeSpan.Zero || lead >= MaxAge))
        {
            yield return new ValidationResult("Each Freshness:RemindBefore must be more than zero and less than Freshness:MaxAge.", [nameof(RemindBefore)]);
        }
    }
}
