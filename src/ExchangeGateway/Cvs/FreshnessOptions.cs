using System.ComponentModel.DataAnnotations;

namespace ExchangeGateway.Cvs;

public sealed class FreshnessOptions
{
    public const string Section = "Freshness";

    /// <summary>A CV not refreshed for this long goes offline and is never served.</summary>
    [Range(typeof(TimeSpan), "1.00:00:00", "3650.00:00:00")]
    public TimeSpan MaxAge { get; set; } = TimeSpan.FromDays(90);

    /// <summary>How long before going offline the seeker is reminded (one reminder per value).</summary>
    public List<TimeSpan> RemindBefore { get; set; } = [TimeSpan.FromDays(14), TimeSpan.FromDays(3)];

    /// <summary>Largest accepted CV document.</summary>
    [Range(1024, 4 * 1024 * 1024)]
    public int MaxDocumentBytes { get; set; } = 256 * 1024;

    /// <summary>CVs the freshness sweep takes offline per transaction (each batch also writes their obligations and audit events).</summary>
    [Range(1, 50_000)]
    public int SweepBatchSize { get; set; } = 5000;
}
