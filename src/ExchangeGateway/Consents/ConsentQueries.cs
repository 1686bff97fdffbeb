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

    private static async Task<Dictionary<Guid, Guid>> LatestReceiptsAsync(GatewayDbContext db, List<Guid> consentIds, CancellationToken cancellationToken) =>
        (await db.Set<ConsentEvent>().AsNoTracking().Where(e => consentIds.Contains(e.ConsentId))
            .Select(e => new { e.ConsentId, e.Id, e.At }).ToListAsync(cancellationToken))
        .GroupBy(e => e.ConsentId)
        .ToDictionary(g => g.Key, g => g.OrderByDescending(e => e.At).First().Id);
}
