using ExchangeGateway.Audit;
using ExchangeGateway.Auth;
using ExchangeGateway.Consents;
using ExchangeGateway.Data;
using ExchangeGateway.Events;
using ExchangeGateway.Exchange;
using Microsoft.AspNetCore.Identity;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using OpenIddict.EntityFrameworkCore.Models;

namespace ExchangeGateway.Cvs;

/// <summary>
/// What a seeker takes away from "forget me". Once the account is gone they can no longer sign in to follow the sites, so
/// the answer is their last view of them: for every site that received the CV under any of their sharings, the id it knew
/// the CV by, the event that tells it to delete and where that request stands. It is answered, not kept: the gateway stores
/// nothing that would link it back to the person.
/// </summary>
public sealed record ErasureReceipt(DateTimeOffset ErasedAt, int SharingsEnded, IReadOnlyList<ErasureReceiptSite> Sites);

/// <summary>One erasure request: the site, the id it holds the CV under, the event (jti) it was sent, and its standing.</summary>
public sealed record ErasureReceiptSite(
    Guid RecipientId, string RecipientName, string IdAtSite, Guid EventId, string Cause, ObligationStatus Status, bool Overdue,
    DateTimeOffset ConfirmBefore, DateTimeOffset? ConfirmedAt);

/// <summary>
/// The right to be forgotten. In one transaction: the CV and its key, the account (Identity and OpenIddict rows), the
/// receipts and every link from the ledger and the consents to the person go; what remains (pairwise ids, hashes,
/// pseudonymous audit rows) is what chasing every copy and proving the past need, and names no one. Every site that
/// received the CV gets an erasure obligation.
/// </summary>
public sealed class SeekerErasure(
    GatewayDbContext db, UserManager<GatewayUser> users, AuditTrail audit, DispatchSignal dispatch, TimeProvider time,
    IOptions<ErasureOptions> erasure)
{
    /// <summary>The receipt, committed; null when there is no such account (already erased).</summary>
    public async Task<ErasureReceipt?> EraseAsync(string seekerId, CancellationToken cancellationToken)
    {
        await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
        await Locks.SeekerAsync(db, seekerId, cancellationToken);
        // Locked and read again: a password reset or an address confirmation (which take no seeker lock) may be changing
        // the row, and the pages' session check may have loaded it into this context before; deleting a copy with an older
        // concurrency stamp failed the whole erasure with a 500.
        var user = await db.Users.FromSql($"SELECT * FROM \"AspNetUsers\" WHERE id = {seekerId} FOR UPDATE").SingleOrDefaultAsync(cancellationToken);
        if (user is null)
        {
            return null;
        }

        await db.Entry(user).ReloadAsync(cancellationToken);

        // Locked, as in an untick (in id order, as a suspension locks them): an episode the gateway is ending right now keeps
        // the state and cause it committed.
        var consents = await db.Set<Consent>().FromSql($"SELECT * FROM consents WHERE seeker_id = {seekerId} ORDER BY id FOR NO KEY UPDATE").ToListAsync(cancellationToken);
        var active = consents.Where(c => c.IsActive).ToList();
        foreach (var consent in consents)
        {
            consent.ForgetSeeker();
        }

        await db.Set<Cv>().Where(c => c.SeekerId == seekerId).ExecuteDeleteAsync(cancellationToken);
        await db.Set<SeekerKey>().Where(k => k.SeekerId == seekerId).ExecuteDeleteAsync(cancellationToken);
        await db.Set<ConsentEvent>().Where(e => e.SeekerId == seekerId).ExecuteDeleteAsync(cancellationToken);
        // Through the model, not hand-written table names: OpenIddict's tables keep their own names ("OpenIddictTokens").
        await db.Set<OpenIddictEntityFrameworkCoreToken>().Where(t => t.Subject == seekerId).ExecuteDeleteAsync(cancellationToken);
        await db.Set<OpenIddictEntityFrameworkCoreToken>().Where(t => t.Authorization != null && t.Authorization.Subject == seekerId).ExecuteDeleteAsync(cancellationToken);
        await db.Set<OpenIddictEntityFrameworkCoreAuthorization>().Where(a => a.Subject == seekerId).ExecuteDeleteAsync(cancellationToken);
        await db.SaveChangesAsync(cancellationToken);

        var deleted = await users.DeleteAsync(user);
        if (!deleted.Succeeded)
        {
            throw new InvalidOperationException("The account could not be deleted: " + string.Join(", ", deleted.Errors.Select(e => e.Code)));
        }

        // Under the chain lock, a disclosure decided from the consents as committed before this erasure has committed by now,
        // so its ledger row is cleared below, and none can follow.
        var now = await Locks.ChainForEndAsync(db, time, cancellationToken);
        foreach (var consent in active)
        {
            // An episode that had lapsed before the expiry job came round ends as what it was, expired when it lapsed, as
            // a CV erasure ends it: no read was allowed after that.
            consent.EndByGateway(ErasureCauses.SubjectErased, now);
        }

        await db.SaveChangesAsync(cancellationToken);
        var ended = active.Select(c => c.Id).ToList();
        await FeedPositions.BumpAsync(db, ended, cancellationToken);
        await db.Set<Disclosure>().Where(d => d.SeekerId == seekerId)
            .ExecuteUpdateAsync(d => d.SetProperty(x => x.SeekerId, (string?)null).SetProperty(x => x.ContentHash, (byte[]?)null), cancellationToken);
        var obligations = await Obligations.RequireErasureAsync(db, active, now, erasure.Value.ConfirmWithin, cancellationToken);
        // Each ended episode under its site, as any other end is recorded: an auditor following a site sees why it was
        // told to delete. The receipts are gone with the account; the episode's cause says it.
        var sites = await db.Recipients.AsNoTracking().Where(r => active.Select(c => c.RecipientId).Contains(r.Id))
            .ToDictionaryAsync(r => r.Id, r => r.ClientId, cancellationToken);
        var actor = audit.Pseudonyms.Of(seekerId);
        var events = Obligations.ByEpisode(obligations);
        await audit.AppendAsync(
            [
                .. active.Select(c => c.EndRecord(ActorKinds.Seeker, actor, seekerId, sites[c.RecipientId], receiptId: null).WithEvent(events, c.Id)),
                new AuditEntry(ActorKinds.Seeker, actor, AuditActions.SeekerErased, Outcomes.Success, SeekerId: seekerId,
                    Details: new Dictionary<string, object?> { ["consentsEnded"] = ended.Count, ["obligations"] = obligations.Count }),
            ],
            cancellationToken);
        // Every erasure request about this person, the ones just written and those earlier ends sent (an untick, a sweep)
        // that a site may not have confirmed yet: the seeker's last chance to see them. By episode id, which the consents keep.
        var episodes = consents.Select(c => c.Id).ToArray();
        var sent = await (
            from o in db.Set<ErasureObligation>().AsNoTracking()
            join r in db.Recipients.AsNoTracking() on o.RecipientId equals r.Id
            where episodes.Contains(o.ConsentId) && o.Kind == EventKinds.ErasureRequired
            orderby r.DisplayName, o.Id
            select new ErasureReceiptSite(o.RecipientId, r.DisplayName, o.PairwiseId, o.Jti, o.Cause, o.Status,
                ErasureObligation.IsLate(o.Status, o.Overdue, o.ConfirmBefore, o.ConfirmedAt, now), o.ConfirmBefore, o.ConfirmedAt))
            .ToListAsync(cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        dispatch.After(obligations.Count);
        return new ErasureReceipt(now, ended.Count, sent);
    }
}
