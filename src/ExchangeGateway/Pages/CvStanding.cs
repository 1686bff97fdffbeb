using ExchangeGateway.Cvs;
using Microsoft.EntityFrameworkCore;

namespace ExchangeGateway.Pages;

/// <summary>
/// Whether the seeker's CV can reach the sites they share with, read as "Mon CV" reads it. The sharing pages say it where
/// the seeker decides: a site that is ticked receives nothing while there is no CV or it is offline (promise 1), and a page
/// showing only "shared" would have them believe otherwise.
/// </summary>
public sealed record CvStanding(CvResponse? Current)
{
    /// <summary>Where a page leaves it for the receipt partial, whose model is the receipt.</summary>
    public const string ViewDataKey = nameof(CvStanding);

    /// <summary>No CV yet, or an erased one (which the pages show as none, as DELETE /me/cv leaves it).</summary>
    public bool Missing => Current is null;

    public bool Offline => Current?.State == CvState.Offline;

    public bool Online => Current?.State == CvState.Published;

    /// <summary>The CV as the pages show it; null when there is none or it is erased.</summary>
    public static CvResponse? Of((Cvs.Cv Cv, byte[]? Document)? found, FreshnessOptions freshness, DateTimeOffset now) =>
        found is { } cv && cv.Cv.State != CvState.Erased ? CvEndpoints.ToResponse(cv.Cv, null, freshness, now) : null;

    /// <summary>
    /// The CV's row alone: its state is all these pages show, so the document is neither unwrapped nor opened (a CV this
    /// node cannot open must not take the page with the stop buttons down with it).
    /// </summary>
    public static async Task<CvStanding> ReadAsync(
        Data.GatewayDbContext db, string seekerId, FreshnessOptions freshness, DateTimeOffset now, CancellationToken cancellationToken) =>
        new(await db.Set<Cvs.Cv>().AsNoTracking().SingleOrDefaultAsync(c => c.SeekerId == seekerId, cancellationToken) is { } cv
            ? Of((cv, null), freshness, now)
            : null);
}
