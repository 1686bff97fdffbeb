using ExchangeGateway.Data;
using ExchangeGateway.Recipients;
using Microsoft.EntityFrameworkCore;

namespace ExchangeGateway.Consents;

/// <summary>
/// Where a seeker's sharings stand: <paramref name="Sites"/>, every active named site with the seeker's latest episode
/// towards it; <paramref name="EndedBySuspension"/>, the sharings a site's suspension ended while the site stays suspended
/// (such a site leaves the list of sites, and without these the share the seeker gave would vanish unexplained).
/// </summary>
public sealed record Sharings(List<ConsentStatus> Sites, List<ConsentStatus> EndedBySuspension)
{
    /// <summary>Both lists, as the API and the export give them: the named sites, then the suspended ones.</summary>
    public List<ConsentStatus> All => [.. Sites, .. EndedBySuspension];
}

/// <summary>Where a seeker's consents stand; the API, the export and the Partage page read them through this one query.</summary>
public static class ConsentQueries
{
    /// <summary>
    /// The seeker's latest episode towards each site and that episode's latest receipt, in three queries whatever the number of
    /// sites. An episode past its expiry shows as expired at once (no CV leaves under it any more), not only once the expiry
    /// job has run. Of a suspended site, only a latest episode that the suspension ended (or is ending) is listed: an older one
    /// that an earlier suspension ended, before a reinstatement, a new tick and an untick, is history, not where the sharing
    /// stands.
    /// </summary>
    public static async Task<Sharings> SharingsAsync(GatewayDbContext db, string seekerId, DateTimeOffset now, CancellationToken cancellationToken)
    {
        // By name, as a seeker looks for a site (the id order is a registration accident); the id breaks a tie of names.
        var sites = (await db.Recipients.AsNoTracking().ToListAsync(cancellationToken))
            .OrderBy(r => r.DisplayName, StringComparer.CurrentCulture).ThenBy(r => r.Id).ToList();
        var latest = (await db.Set<Consent>().AsNoTracking().Where(c => c.SeekerId == seekerId)
                .GroupBy(c => c.RecipientId)
                // A new tick in the same clock tick as the untick before it (a frozen test clock, a coarse one) is still
                // the latest: at most one episode per site is active, and it is the one that stands.
                .Select(g => g.OrderByDescending(c => c.GrantedAt).ThenBy(c => c.State == ConsentState.Active ? 0 : 1).First())
                .ToListAsync(cancellationToken))
            .ToDictionary(c => c.RecipientId);
        var receipts = await LatestReceiptsAsync(db, latest.Values.Select(c => c.Id).ToList(), cancellationToken);

        var named = new List<ConsentStatus>();
        var endedBySuspension = new List<ConsentStatus>();
        foreach (var site in sites)
        {
            var consent = latest.GetValueOrDefault(site.Id);
            if (site.IsActive)
            {
                var state = consent?.StateAt(now);
                named.Add(new ConsentStatus(
                    consent?.Id ?? site.Id, site.Id, site.DisplayName, site.Website, site.PrivacyPolicyUrl,
                    state?.ToString().ToLowerInvariant() ?? ConsentStatus.None,
                    consent is null ? null : consent.EndedAt ?? (state == ConsentState.Expired ? consent.ExpiresAt : consent.GrantedAt),
                    state == ConsentState.Active ? consent!.ExpiresAt : null,
                    consent is null ? null : receipts.GetValueOrDefault(consent.Id), consent?.PairwiseId));
            }
            else if (consent is not null && (consent.EndCause == ErasureCauses.RecipientSuspended || consent.StateAt(now) == ConsentState.Active))
            {
                // Still active under a suspended site: the suspension ends a large site's episodes batch by batch (or the
                // expiry job finishes them after a node stopped), and no CV has left under it since the site was suspended.
                // Shown as what it is about to be, ended since the suspension, rather than missing from both lists.
                endedBySuspension.Add(new ConsentStatus(
                    consent.Id, site.Id, site.DisplayName, site.Website, site.PrivacyPolicyUrl, ConsentStatus.Ended, consent.EndedAt ?? site.UpdatedAt, null,
                    receipts.GetValueOrDefault(consent.Id), consent.PairwiseId));
            }
        }

        return new Sharings(named, endedBySuspension);
    }

    private static async Task<Dictionary<Guid, Guid>> LatestReceiptsAsync(GatewayDbContext db, List<Guid> consentIds, CancellationToken cancellationToken) =>
        (await db.Set<ConsentEvent>().AsNoTracking().Where(e => consentIds.Contains(e.ConsentId))
            .Select(e => new { e.ConsentId, e.Id, e.At, e.Kind }).ToListAsync(cancellationToken))
        .GroupBy(e => e.ConsentId)
        // A consent's end never comes before its grant: at the same instant (a clock's resolution) the end is the latest.
        .ToDictionary(g => g.Key, g => g.OrderByDescending(e => e.At).ThenBy(e => e.Kind == ConsentEventKind.Granted).First().Id);
}
