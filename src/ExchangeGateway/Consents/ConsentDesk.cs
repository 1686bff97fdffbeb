using ExchangeGateway.Audit;
using ExchangeGateway.Data;
using ExchangeGateway.Events;
using ExchangeGateway.Exchange;
using ExchangeGateway.Recipients;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace ExchangeGateway.Consents;

public enum ConsentChange { Granted, AlreadyActive, Revoked, NothingToRevoke, UnknownRecipient }

public sealed record ConsentDecision(ConsentChange Change, Consent? Consent, ConsentEvent? Receipt, Recipient? Recipient);

/// <summary>
/// Ticking and unticking, the same for the API, the web pages and the site-started OAuth flow: one seeker lock, the
/// aggregate's rules, a receipt, the feed moved, obligations for copies, and the audit record, all in one transaction.
/// </summary>
public sealed class ConsentDesk(
    GatewayDbContext db, AuditTrail audit, DispatchSignal dispatch, TimeProvider time,
    IOptions<ConsentOptions> consentOptions, IOptions<ErasureOptions> erasure)
{
    public async Task<ConsentDecision> TickAsync(string seekerId, Guid recipientId, CollectionMethod method, CancellationToken cancellationToken)
    {
        await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
        await Locks.SeekerWithAccountAsync(db, seekerId, cancellationToken);
        // FOR SHARE: a suspension of this site (which ends its consents) either commits first, and the tick is refused,
        // or waits until the new consent is committed, and ends it too. Never an active consent to a suspended site.
        var recipient = await db.Recipients.FromSql($"SELECT * FROM recipients WHERE id = {recipientId} AND status = 'Active' FOR SHARE")
            .AsNoTracking().SingleOrDefaultAsync(cancellationToken);
        if (recipient is null)
        {
            return new ConsentDecision(ConsentChange.UnknownRecipient, null, null, null);
        }

        // Locked like an untick: the expiry job (SKIP LOCKED) either ended this episode first, and the row no longer matches
        // once it commits, or leaves it to this tick. Unlocked, both ended it: two receipts, two obligations.
        var active = await db.Set<Consent>()
            .FromSql($"SELECT * FROM consents WHERE seeker_id = {seekerId} AND recipient_id = {recipientId} AND state = 'Active' FOR NO KEY UPDATE")
            .SingleOrDefaultAsync(cancellationToken);
        // The clock is read once the locks are held: an untick (or expiry, or suspension) this tick waited for is dated
        // before it, so a new episode never starts before the last one ended, and a wait that crossed the lapse sees it.
        var now = time.GetUtcNow();
        if (active is not null && active.ExpiresAt > now)
        {
            var receipt = await db.Set<ConsentEvent>().AsNoTracking()
                .Where(e => e.ConsentId == active.Id && e.Kind == ConsentEventKind.Granted).SingleAsync(cancellationToken);
            return new ConsentDecision(ConsentChange.AlreadyActive, active, receipt, recipient);
        }

        var entries = new List<AuditEntry>();
        List<WrittenObligation> obligations = [];
        if (active is not null)
        {
            // Lapsed but not yet swept: it ends as expired here, so the new tick opens a new episode as it should.
            (var expired, obligations) = await ExpireLapsedAsync(active, recipient, now, cancellationToken);
            entries.Add(Entry(seekerId, AuditActions.ConsentExpired, recipient, expired).WithEvent(Obligations.ByEpisode(obligations), active.Id));
        }

        var consent = Consent.Grant(seekerId, recipientId, method, now, consentOptions.Value.MaxAge);
        var granted = ConsentEvent.For(consent, ConsentEventKind.Granted, recipient, method, now);
        db.AddRange(consent, granted);
        await db.SaveChangesAsync(cancellationToken);
        await FeedPositions.BumpAsync(db, [consent.Id], cancellationToken);

        entries.Add(Entry(seekerId, AuditActions.ConsentGranted, recipient, granted));
        await audit.AppendAsync(entries, cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        dispatch.After(obligations.Count);
        return new ConsentDecision(ConsentChange.Granted, consent, granted, recipient);
    }

    public async Task<ConsentDecision> UntickAsync(string seekerId, Guid recipientId, CollectionMethod method, CancellationToken cancellationToken)
    {
        await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
        await Locks.SeekerAsync(db, seekerId, cancellationToken);
        // Locked: the gateway may be ending this episode right now (expiry, suspension) without the seeker lock. Whoever
        // commits first wins; the row lock makes us see that instead of overwriting its state with ours.
        var active = await db.Set<Consent>()
            .FromSql($"SELECT * FROM consents WHERE seeker_id = {seekerId} AND recipient_id = {recipientId} AND state = 'Active' FOR NO KEY UPDATE")
            .SingleOrDefaultAsync(cancellationToken);
        if (active is null)
        {
            var known = await db.Recipients.AnyAsync(r => r.Id == recipientId, cancellationToken);
            return new ConsentDecision(known ? ConsentChange.NothingToRevoke : ConsentChange.UnknownRecipient, null, null, null);
        }

        var recipient = await db.Recipients.AsNoTracking().SingleAsync(r => r.Id == recipientId, cancellationToken);
        // Judged by the time the end is dated with (under the chain lock): a wait for the lock that crossed the lapse ends
        // the episode as expired, not as revoked after it had lapsed.
        var now = await Locks.ChainForEndAsync(db, time, cancellationToken);
        if (active.ExpiresAt <= now)
        {
            // Lapsed but not yet swept: there is nothing left to revoke; it ends as what it is, expired, when it lapsed.
            var (expired, expiredObligations) = await ExpireLapsedAsync(active, recipient, now, cancellationToken);
            await audit.AppendAsync(Entry(seekerId, AuditActions.ConsentExpired, recipient, expired).WithEvent(Obligations.ByEpisode(expiredObligations), active.Id), cancellationToken);
            await transaction.CommitAsync(cancellationToken);
            dispatch.After(expiredObligations.Count);
            return new ConsentDecision(ConsentChange.NothingToRevoke, null, null, null);
        }

        active.Revoke(now);
        var revoked = ConsentEvent.For(active, ConsentEventKind.Revoked, recipient, method, now);
        db.Add(revoked);
        await db.SaveChangesAsync(cancellationToken);
        await FeedPositions.BumpAsync(db, [active.Id], cancellationToken);
        var obligations = await Obligations.RequireErasureAsync(db, [active.Id], ErasureCauses.ConsentRevoked, now, erasure.Value.ConfirmWithin, cancellationToken);
        await audit.AppendAsync(Entry(seekerId, AuditActions.ConsentRevoked, recipient, revoked).WithEvent(Obligations.ByEpisode(obligations), active.Id), cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        dispatch.After(obligations.Count);
        return new ConsentDecision(ConsentChange.Revoked, active, revoked, recipient);
    }

    /// <summary>
    /// Ends an episode found lapsed before the expiry job came round, as that job would: dated when it lapsed (no read was
    /// allowed after that), with its receipt, the site's feed moved and an obligation if it disclosed anything.
    /// </summary>
    private async Task<(ConsentEvent Receipt, List<WrittenObligation> Obligations)> ExpireLapsedAsync(Consent active, Recipient recipient, DateTimeOffset now, CancellationToken cancellationToken)
    {
        active.Expire(now);
        var expired = ConsentEvent.EndOf(active, recipient);
        db.Add(expired);
        await db.SaveChangesAsync(cancellationToken);
        await FeedPositions.BumpAsync(db, [active.Id], cancellationToken);
        var obligations = await Obligations.RequireErasureAsync(db, [active.Id], ErasureCauses.ConsentExpired, now, erasure.Value.ConfirmWithin, cancellationToken);
        return (expired, obligations);
    }

    private AuditEntry Entry(string seekerId, string action, Recipient recipient, ConsentEvent receipt) =>
        new(ActorKinds.Seeker, audit.Pseudonyms.Of(seekerId), action, Outcomes.Success, SeekerId: seekerId, Recipient: recipient.ClientId,
            Details: new Dictionary<string, object?> { ["receipt"] = receipt.Id, ["method"] = receipt.CollectionMethod.ToString().ToLowerInvariant() });
}
