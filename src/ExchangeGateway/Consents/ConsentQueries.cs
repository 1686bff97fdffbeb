using ExchangeGateway.Data;
using ExchangeGateway.Recipients;
using Microsoft.EntityFrameworkCore;

namespace ExchangeGateway.Consents;

/// <summary>Where a seeker's consents stand; the API and the Partage page read them through this same query.</summary>
public static class ConsentQueries
{
    /// <summary>
    /// Every active named site, with the seeker's latest episode towards it and that episode's latest receipt. An episode
    /// past its expiry shows as expired at once (no CV leaves under it any more), not only once the expiry job has run.
    /// </summary>
    public static async Task<List<ConsentStatus>> StatusesAsync(GatewayDbContext db, string seekerId, DateTimeOffset now, CancellationToken cancellationToken)
    {
        var sites = await db.Recipients.AsNoTracking().Where(r => r.Status == RecipientStatus.Active).OrderBy(r => r.Id).ToListAsync(cancellationToken);
        var latest = await db.Set<Consent>().AsNoTracking().Where(c => c.SeekerId == seekerId)
            .GroupBy(c => c.RecipientId)
            .Select(g => g.OrderByDescending(c => c.GrantedAt).First())
            .ToListAsync(cancellationToken);
        var receipts = await LatestReceiptsAsync(db, latest.Select(c => c.Id).ToList(), cancellationToken);
        var byRecipient = latest.ToDictionary(c => c.RecipientId);
        return sites.Select(site =>
        {
            byRecipient.TryGetValue(site.Id, out var consent);
            return new ConsentStatus(
                consent?.Id ?? site.Id, site.Id, site.DisplayName, site.Website, site.PrivacyPolicyUrl,
                consent is null ? ConsentStatus.None : consent.StateAt(now).ToString().ToLowerInvariant(),
                consent is null ? null : consent.EndedAt ?? (consent.StateAt(now) == ConsentState.Expired ? consent.ExpiresAt : consent.GrantedAt),
                consent?.StateAt(now) == ConsentState.Active ? consent.ExpiresAt : null,
                consent is null ? null : receipts.GetValueOrDefault(consent.Id));
        }).ToList();
    }

    /// <summary>
    /// The seeker's sharings that ended because the operator suspended the site, while it stays suspended (state "ended",
    /// the latest episode per site): such a site leaves the list of sites, and without these the share the seeker gave
    /// would vanish from the page and the API unexplained.
    /// </summary>
    public static async Task<List<ConsentStatus>> EndedBySuspensionAsync(GatewayDbContext db, string seekerId, CancellationToken cancellationToken)
    {
        // The latest episode per suspended site, listed when the suspension is what ended it: an older one that an earlier
        // suspension ended, before a reinstatement, a new tick and an untick, is history, not where the sharing stands.
        var ended = (await (
                from consent in db.Set<Consent>().AsNoTracking()
                join site in db.Recipients.AsNoTracking() on consent.RecipientId equals site.Id
                where consent.SeekerId == seekerId && site.Status == RecipientStatus.Suspended
                select new { consent.Id, consent.GrantedAt, consent.EndedAt, consent.EndCause, Site = site }).ToListAsync(cancellationToken))
            .GroupBy(e => e.Site.Id).Select(g => g.MaxBy(e => e.GrantedAt)!)
            .Where(e => e.EndCause == ErasureCauses.RecipientSuspended).ToList();
        var receipts = await LatestReceiptsAsync(db, ended.Select(e => e.Id).ToList(), cancellationToken);
        return ended.Select(e => new ConsentStatus(
                e.Id, e.Site.Id, e.Site.DisplayName, e.Site.Website, e.Site.PrivacyPolicyUrl, ConsentStatus.Ended, e.EndedAt, null, receipts.GetValueOrDefault(e.Id)))
            .OrderBy(e => e.RecipientName, StringComparer.CurrentCulture).ToList();
    }

    /// <summary>Where every sharing stands, as the API and the export give it: the named sites, then the suspended ones.</summary>
    public static async Task<List<ConsentStatus>> AllAsync(GatewayDbContext db, string seekerId, DateTimeOffset now, CancellationToken cancellationToken)
    {
        var statuses = await StatusesAsync(db, seekerId, now, cancellationToken);
        statuses.AddRange(await EndedBySuspensionAsync(db, seekerId, cancellationToken));
        return statuses;
    }

    private static async Task<Dictionary<Guid, Guid>> LatestReceiptsAsync(GatewayDbContext db, List<Guid> consentIds, CancellationToken cancellationToken) =>
        (await db.Set<ConsentEvent>().AsNoTracking().Where(e => consentIds.Contains(e.ConsentId))
            .Select(e => new { e.ConsentId, e.Id, e.At }).ToListAsync(cancellationToken))
        .GroupBy(e => e.ConsentId)
        .ToDictionary(g => g.Key, g => g.OrderByDescending(e => e.At).First().Id);
}
