using ExchangeGateway.Audit;
using ExchangeGateway.Consents;
using ExchangeGateway.Data;
using ExchangeGateway.Events;
using ExchangeGateway.Exchange;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace ExchangeGateway.Recipients;

/// <summary>
/// What a change of a recipient's status sets in motion inside the caller's transaction. A suspension ends every active
/// consent to the site (state Ended, cause recipient-suspended) with a receipt each, moves the site's feed, and writes an
/// erasure obligation for every episode that disclosed something: the site may read nothing more, and must delete what
/// it holds. A reinstatement restores nothing: seekers tick again if they wish.
/// </summary>
public sealed class SuspensionConsequences(GatewayDbContext db, AuditTrail audit, TimeProvider time, IOptions<ErasureOptions> erasure)
{
    /// <summary>
    /// Runs in the caller's transaction and does not commit. Returns how many obligations were written; the caller
    /// signals the dispatcher once it has committed.
    /// </summary>
    public async Task<int> ApplyAsync(Recipient recipient, CancellationToken cancellationToken)
    {
        if (recipient.IsActive)
        {
            return 0;
        }

        var confirmWithin = erasure.Value.ConfirmWithin;

        // Locked, so a seeker unticking at this moment either commits first (and is no longer active here) or waits.
        // NO KEY UPDATE: a disclosure being recorded under the chain lock only needs KEY SHARE on its consent.
        var active = await db.Set<Consent>()
            .FromSql($"SELECT * FROM consents WHERE recipient_id = {recipient.Id} AND state = 'Active' FOR NO KEY UPDATE")
            .ToListAsync(cancellationToken);
        if (active.Count == 0)
        {
            return 0;
        }

        var now = time.GetUtcNow();
        var entries = new List<AuditEntry>(active.Count);
        var receipts = new List<Guid>(active.Count);
        foreach (var consent in active)
        {
            consent.EndBySystem(ErasureCauses.RecipientSuspended, now);
            var receipt = ConsentEvent.For(consent, ConsentEventKind.Ended, recipient, consent.CollectionMethod, now);
            db.Add(receipt);
            receipts.Add(receipt.Id);
            entries.Add(new AuditEntry(ActorKinds.System, "recipient-suspension", AuditActions.ConsentEnded, Outcomes.Success,
                SeekerId: consent.SeekerId, Recipient: recipient.ClientId,
                Details: new Dictionary<string, object?> { ["receipt"] = receipt.Id, ["cause"] = ErasureCauses.RecipientSuspended }));
        }

        await db.SaveChangesAsync(cancellationToken);
        var ids = active.Select(c => c.Id).ToList();

        // Written above and dated again under the chain lock, in two set-based statements: saving a big site's episodes
        // under the lock would stall every read of the gateway.
        now = await Locks.ChainForEndAsync(db, time, cancellationToken);
        await db.Set<Consent>().Where(c => ids.Contains(c.Id)).ExecuteUpdateAsync(c => c.SetProperty(x => x.EndedAt, now), cancellationToken);
        await db.Set<ConsentEvent>().Where(e => receipts.Contains(e.Id)).ExecuteUpdateAsync(e => e.SetProperty(x => x.At, now), cancellationToken);
        await FeedPositions.BumpAsync(db, ids, cancellationToken);
        var obligations = await Obligations.RequireErasureAsync(db, ids, ErasureCauses.RecipientSuspended, now, confirmWithin, cancellationToken);
        await audit.AppendAsync(entries, cancellationToken);
        return obligations;
    }
}
