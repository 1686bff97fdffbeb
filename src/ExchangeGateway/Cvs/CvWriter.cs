using System.Security.Cryptography;
using ExchangeGateway.Audit;
using ExchangeGateway.Consents;
using ExchangeGateway.Data;
using ExchangeGateway.Events;
using ExchangeGateway.Exchange;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace ExchangeGateway.Cvs;

public enum CvWriteOutcome { Created, Replaced, Refreshed, Erased, NotFound, PreconditionFailed }

public sealed record CvWriteResult(CvWriteOutcome Outcome, Cv? Cv);

/// <summary>
/// Every change to a seeker's CV, with its consequences in the same transaction: the sites' feeds move, sites holding a
/// copy are told (update or erasure), and the audit log records it. Used by the API and the web pages alike.
/// </summary>
public sealed class CvWriter(
    GatewayDbContext db, CvSealer sealer, AuditTrail audit, DispatchSignal dispatch, TimeProvider time,
    IOptions<ErasureOptions> erasure)
{
    /// <summary>
    /// Creates or replaces the CV. <paramref name="expectedVersions"/> come from If-Match: null for no precondition, else the
    /// current version must be one of them (none: the precondition fails).
    /// </summary>
    public async Task<CvWriteResult> SaveAsync(
        string seekerId, byte[] document, IReadOnlyCollection<int>? expectedVersions, bool ifMatchAny, CancellationToken cancellationToken)
    {
        await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
        await Locks.SeekerWithAccountAsync(db, seekerId, cancellationToken);
        var cv = await LockedAsync(seekerId, cancellationToken);
        // Read once the row is ours: a sweep that took the CV offline while this write waited is then dated (toe) no later
        // than the refreshedAt written here, which is how a site tells that event from the copy it reads next.
        var now = time.GetUtcNow();
        if ((expectedVersions is not null || ifMatchAny) && (cv is null || (expectedVersions is not null && !expectedVersions.Contains(cv.Version))))
        {
            return new CvWriteResult(CvWriteOutcome.PreconditionFailed, cv);
        }

        var endings = new List<AuditEntry>();
        List<WrittenObligation> obligations = [];
        if (cv is { State: CvState.Erased, ErasedAt: { } erasedAt })
        {
            // Erased before an erasure ended the sharing too (an earlier release): the sites told to delete the old CV do
            // not get the new one under the same ids; the seeker ticks again where they want it. Only episodes from before
            // the erasure (an erasure now ends those itself): a tick given since, with no CV to share, is the seeker asking
            // to share the one published now.
            (_, endings, _, obligations) = await EndSharingAsync(seekerId, erasedAt, cancellationToken);
        }

        var key = await sealer.GetOrCreateKeyAsync(db, seekerId, now, cancellationToken);
        var hash = SHA256.HashData(document);
        var created = cv is null;
        var wasOffline = cv?.State == CvState.Offline;
        if (cv is null)
        {
            cv = Cv.Publish(seekerId, Guid.CreateVersion7(now), CvSealer.Seal(key, seekerId, 1, document), hash, now);
            db.Add(cv);
        }
        else
        {
            cv.Replace(CvSealer.Seal(key, seekerId, cv.NextVersion, document), hash, now);
        }

        await db.SaveChangesAsync(cancellationToken);
        // Before the chain lock (the feed move takes it): the withdrawal locks obligation rows, and a dispatcher that holds
        // one of them waits for the chain lock in turn.
        var published = await BackOnlineAsync(seekerId, cv, wasOffline, now, cancellationToken);
        await FeedPositions.BumpSeekerAsync(db, seekerId, cancellationToken);
        var notices = await Obligations.NotifyUpdateAsync(db, seekerId, cv.Version, now, erasure.Value.ConfirmWithin, cancellationToken);
        if (notices.Count > 0)
        {
            published["updateEvents"] = Obligations.Listed(notices);
        }

        await audit.AppendAsync([.. endings, Entry(seekerId, AuditActions.CvPublished, published)], cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        dispatch.After(notices.Count + obligations.Count);
        return new CvWriteResult(created ? CvWriteOutcome.Created : CvWriteOutcome.Replaced, cv);
    }

    /// <summary>"Still looking": the same document published for another full period.</summary>
    public async Task<CvWriteResult> RefreshAsync(string seekerId, CancellationToken cancellationToken)
    {
        await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
        await Locks.SeekerAsync(db, seekerId, cancellationToken);
        var cv = await LockedAsync(seekerId, cancellationToken);
        if (cv is null || cv.State == CvState.Erased)
        {
            return new CvWriteResult(CvWriteOutcome.NotFound, cv);
        }

        // After the row lock, as in SaveAsync.
        var now = time.GetUtcNow();
        var wasOffline = cv.State == CvState.Offline;
        cv.Refresh(now);
        await db.SaveChangesAsync(cancellationToken);
        // Withdrawn before the chain lock, as in SaveAsync.
        var details = await BackOnlineAsync(seekerId, cv, wasOffline, now, cancellationToken);
        // Back online: the sites' feeds show it again (a harmless move when it never left).
        await FeedPositions.BumpSeekerAsync(db, seekerId, cancellationToken);
        await audit.AppendAsync(Entry(seekerId, AuditActions.CvRefreshed, details), cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        return new CvWriteResult(CvWriteOutcome.Refreshed, cv);
    }

    /// <summary>
    /// The audit details of a write that left the CV published: its version and, when it was offline until now, the
    /// cv-offline events withdrawn before they left (<see cref="OfflineEvents"/>), by site and jti.
    /// </summary>
    private async Task<Dictionary<string, object?>> BackOnlineAsync(string seekerId, Cv cv, bool wasOffline, DateTimeOffset now, CancellationToken cancellationToken)
    {
        var details = new Dictionary<string, object?> { ["version"] = cv.Version };
        if (wasOffline)
        {
            if (await OfflineEvents.WithdrawAsync(db, seekerId, now, cancellationToken) is { Count: > 0 } withdrawn)
            {
                details["offlineEventsWithdrawn"] = Obligations.Listed(withdrawn);
            }
        }

        return details;
    }

    /// <summary>
    /// Content and key gone (crypto-shredding), every site holding a copy told to delete it, and every sharing episode ended
    /// (cause subject-erased, with its receipt): a CV the seeker publishes again later is shared only where they tick again,
    /// under new pairwise ids, not sent to sites that were told to delete it and may have confirmed.
    /// </summary>
    public async Task<CvWriteResult> EraseAsync(string seekerId, CancellationToken cancellationToken)
    {
        await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
        await Locks.SeekerAsync(db, seekerId, cancellationToken);
        var cv = await LockedAsync(seekerId, cancellationToken);
        if (cv is null || cv.State == CvState.Erased)
        {
            return new CvWriteResult(CvWriteOutcome.NotFound, cv);
        }

        await db.Set<SeekerKey>().Where(k => k.SeekerId == seekerId).ExecuteDeleteAsync(cancellationToken);
        var (now, entries, ended, obligations) = await EndSharingAsync(seekerId, grantedBefore: null, cancellationToken);
        // The ledger keeps who received which version and when (the seeker's "who read my CV"), not the hash of what was
        // sent: that hash would still recognise a copy of the erased CV, as erasing the account already rules out.
        await db.Set<Disclosure>().Where(d => d.SeekerId == seekerId && d.ContentHash != null)
            .ExecuteUpdateAsync(d => d.SetProperty(x => x.ContentHash, (byte[]?)null), cancellationToken);
        cv.Erase(now);
        await db.SaveChangesAsync(cancellationToken);
        entries.Add(Entry(seekerId, AuditActions.CvErased, new() { ["obligations"] = obligations.Count, ["consentsEnded"] = ended }));
        await audit.AppendAsync(entries, cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        dispatch.After(obligations.Count);
        return new CvWriteResult(CvWriteOutcome.Erased, cv);
    }

    /// <summary>
    /// Ends every active sharing episode of the seeker, under the chain lock (whose time it returns): subject-erased, or
    /// expired when it had already lapsed (dated then, as the expiry job would), each with its receipt, its audit entry
    /// (returned, for the caller's append) and its obligation where something was disclosed; the feeds move.
    /// </summary>
    private async Task<(DateTimeOffset Now, List<AuditEntry> Entries, int Ended, List<WrittenObligation> Obligations)> EndSharingAsync(
        string seekerId, DateTimeOffset? grantedBefore, CancellationToken cancellationToken)
    {
        // Locked like an untick (in id order, as a suspension locks them): an expiry or suspension ending the same episode
        // now either commits first or waits. With grantedBefore, only the episodes granted before then.
        var episodes = await db.Set<Consent>()
            .FromSql($"SELECT * FROM consents WHERE seeker_id = {seekerId} AND state = 'Active' AND granted_at < {grantedBefore ?? DateTimeOffset.MaxValue} ORDER BY id FOR NO KEY UPDATE")
            .ToListAsync(cancellationToken);
        var sites = await db.Recipients.AsNoTracking().Where(r => episodes.Select(c => c.RecipientId).Contains(r.Id)).ToDictionaryAsync(r => r.Id, cancellationToken);
        var now = await Locks.ChainForEndAsync(db, time, cancellationToken);
        var ends = new List<(Guid ConsentId, AuditEntry Entry)>();
        foreach (var episode in episodes)
        {
            episode.EndByGateway(ErasureCauses.SubjectErased, now);
            var site = sites[episode.RecipientId];
            var receipt = ConsentEvent.EndOf(episode, site);
            db.Add(receipt);
            ends.Add((episode.Id, episode.EndRecord(ActorKinds.Seeker, audit.Pseudonyms.Of(seekerId), seekerId, site.ClientId, receipt.Id)));
        }

        await db.SaveChangesAsync(cancellationToken);
        await FeedPositions.BumpAsync(db, episodes.Select(c => c.Id).ToList(), cancellationToken);
        var obligations = await Obligations.RequireErasureAsync(db, episodes, now, erasure.Value.ConfirmWithin, cancellationToken);
        var events = Obligations.ByEpisode(obligations);
        return (now, [.. ends.Select(e => e.Entry.WithEvent(events, e.ConsentId))], episodes.Count, obligations);
    }

    /// <summary>
    /// The seeker's CV row, locked: the freshness sweep may be taking it offline this very moment (it skips locked rows).
    /// Read without the lock, a write would keep the state it read, Published, and leave EF nothing to change: the row
    /// would stay Offline with a fresh date, served again, and never swept or chased again.
    /// </summary>
    private Task<Cv?> LockedAsync(string seekerId, CancellationToken cancellationToken) =>
        db.Set<Cv>().FromSql($"SELECT * FROM cvs WHERE seeker_id = {seekerId} FOR UPDATE").SingleOrDefaultAsync(cancellationToken);

    /// <summary>
    /// The CV and its key in one statement, so in one snapshot: read in two, an erasure committing in between (the key
    /// deleted after the sealed row was read) made the read fail instead of answering that the CV is erased.
    /// </summary>
    public async Task<(Cv Cv, byte[]? Document)?> ReadAsync(string seekerId, CancellationToken cancellationToken)
    {
        var found = await db.Set<Cv>().AsNoTracking().Where(c => c.SeekerId == seekerId)
            .Select(c => new { Cv = c, Key = db.Set<SeekerKey>().Where(k => k.SeekerId == c.SeekerId).Select(k => k.WrappedKey).FirstOrDefault() })
            .SingleOrDefaultAsync(cancellationToken);
        return found switch
        {
            null => null,
            { Cv.Sealed: null } => (found.Cv, null),
            { Key: null } => throw new InvalidOperationException("A sealed CV has no key."),
            _ => (found.Cv, CvSealer.Open(sealer.Unwrap(seekerId, found.Key), seekerId, found.Cv.Version, found.Cv.Sealed)),
        };
    }

    private AuditEntry Entry(string seekerId, string action, Dictionary<string, object?> details) =>
        new(ActorKinds.Seeker, audit.Pseudonyms.Of(seekerId), action, Outcomes.Success, SeekerId: seekerId, Details: details);
}
