using ExchangeGateway.Audit;
using ExchangeGateway.Consents;
using ExchangeGateway.Data;
using ExchangeGateway.Events;
using ExchangeGateway.Exchange;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace ExchangeGateway.Recipients;

/// <summary>
/// What a change of a recipient's status sets in motion. A suspension ends every active consent to the site (state Ended,
/// cause recipient-suspended; Expired, dated when it lapsed, for one the expiry job had not reached yet) with a receipt each, moves the site's feed, and writes an erasure obligation for every
/// episode that disclosed something: the site may read nothing more, and must delete what it holds. A reinstatement
/// restores nothing: seekers tick again if they wish. The episodes end in batches of <see cref="BatchSize"/>, each ended
/// with its obligations in one transaction: a site with half a million consents is not one transaction holding the chain
/// lock, which every disclosure needs, while it writes a million rows.
/// </summary>
public sealed class SuspensionConsequences(
    GatewayDbContext db, AuditTrail audit, TimeProvider time, IOptions<ErasureOptions> erasure, DispatchSignal dispatch)
{
    public const int BatchSize = 5000;

    /// <summary>
    /// Ends the first batch in the caller's transaction (with the status change itself, so a small site is suspended in one
    /// commit) and does not commit. Returns how many episodes it ended and how many obligations it wrote; the caller calls
    /// <see cref="EndTheRestAsync"/> once it has committed when a whole batch was ended.
    /// </summary>
    public async Task<(int Ended, int Obligations)> EndBatchAsync(Recipient recipient, CancellationToken cancellationToken)
    {
        if (recipient.IsActive)
        {
            return (0, 0);
        }

        var confirmWithin = erasure.Value.ConfirmWithin;

        // Locked, so a seeker unticking at this moment either commits first (and is no longer active here) or waits.
        // NO KEY UPDATE: a disclosure being recorded under the chain lock only needs KEY SHARE on its consent.
        var active = await db.Set<Consent>()
            .FromSql($"SELECT * FROM consents WHERE recipient_id = {recipient.Id} AND state = 'Active' ORDER BY id LIMIT {BatchSize} FOR NO KEY UPDATE")
            .ToListAsync(cancellationToken);
        if (active.Count == 0)
        {
            return (0, 0);
        }

        var now = time.GetUtcNow();
        var receiptOf = new Dictionary<Guid, Guid>(active.Count);
        foreach (var consent in active)
        {
            // One that lapsed before the expiry job came round ends as what it is, expired when it lapsed, as a tick, an
            // untick or an erasure would end it: the suspension did not end it, and its receipt must not say so.
            consent.EndByGateway(ErasureCauses.RecipientSuspended, now);
            var receipt = ConsentEvent.EndOf(consent, recipient);
            db.Add(receipt);
            receiptOf[consent.Id] = receipt.Id;
        }

        await db.SaveChangesAsync(cancellationToken);

        // Written above and dated again under the chain lock, in set-based statements: saving a batch's episodes under the
        // lock would stall every read of the gateway. The lapsed keep the moment they lapsed, and so do those that lapsed
        // while the batch was being written: by the moment the suspension takes effect they were over, so they expired.
        now = await Locks.ChainForEndAsync(db, time, cancellationToken);
        var lapsedMeanwhile = active.Where(c => c.State == ConsentState.Ended && c.ExpiresAt <= now).ToList();
        if (lapsedMeanwhile.Count > 0)
        {
            foreach (var consent in lapsedMeanwhile)
            {
                consent.LapsedBeforeItsEnd();
            }

            var lapsedIds = lapsedMeanwhile.Select(c => c.Id).ToArray();
            var lapsedReceipts = lapsedMeanwhile.Select(c => receiptOf[c.Id]).ToArray();
            await db.Database.ExecuteSqlAsync(
                $"UPDATE consents SET state = 'Expired', end_cause = {ErasureCauses.ConsentExpired}, ended_at = expires_at WHERE id = ANY({lapsedIds})",
                cancellationToken);
            await db.Database.ExecuteSqlAsync(
                $"UPDATE consent_events e SET kind = 'Expired', at = c.expires_at FROM consents c WHERE c.id = e.consent_id AND e.id = ANY({lapsedReceipts})",
                cancellationToken);
        }

        var ended = active.Where(c => c.State == ConsentState.Ended).Select(c => c.Id).ToList();
        var endReceipts = ended.Select(id => receiptOf[id]).ToList();
        await db.Set<Consent>().Where(c => ended.Contains(c.Id)).ExecuteUpdateAsync(c => c.SetProperty(x => x.EndedAt, now), cancellationToken);
        await db.Set<ConsentEvent>().Where(e => endReceipts.Contains(e.Id)).ExecuteUpdateAsync(e => e.SetProperty(x => x.At, now), cancellationToken);
        await FeedPositions.BumpAsync(db, active.Select(c => c.Id).ToList(), cancellationToken);
        var obligations = await Obligations.RequireErasureAsync(db, active, now, confirmWithin, cancellationToken);

        var events = Obligations.ByEpisode(obligations);
        await audit.AppendAsync(
            [.. active.Select(c => c.EndRecord(ActorKinds.System, "recipient-suspension", c.SeekerId!, recipient.ClientId, receiptOf[c.Id]).WithEvent(events, c.Id))],
            cancellationToken);
        return (active.Count, obligations.Count);
    }

    /// <summary>
    /// Ends the suspended site's remaining episodes, a batch per transaction, each under the site's row lock and only while
    /// the site is still suspended. Not cancelled with a request: the suspension is committed, its consequences must follow
    /// (and if the node dies first, the consent expiry job finishes them). Returns how many episodes it ended.
    /// </summary>
    public async Task<int> EndTheRestAsync(Guid recipientId, CancellationToken cancellationToken)
    {
        var total = 0;
        while (!cancellationToken.IsCancellationRequested)
        {
            db.ChangeTracker.Clear();
            await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
            var recipient = await db.Recipients.FromSql($"SELECT * FROM recipients WHERE id = {recipientId} FOR NO KEY UPDATE")
                .SingleOrDefaultAsync(cancellationToken);
            if (recipient is null)
            {
                break;
            }

            var (ended, obligations) = await EndBatchAsync(recipient, cancellationToken);
            await transaction.CommitAsync(cancellationToken);
            dispatch.After(obligations);
            total += ended;
            if (ended < BatchSize)
            {
                break;
            }
        }

        return total;
    }

    /// <summary>Suspended sites whose episodes are not all ended yet: a suspension whose node stopped half-way.</summary>
    public Task<List<Guid>> UnfinishedAsync(CancellationToken cancellationToken) =>
        db.Recipients.AsNoTracking()
            .Where(r => r.Status == RecipientStatus.Suspended && db.Set<Consent>().Any(c => c.RecipientId == r.Id && c.State == ConsentState.Active))
            .Select(r => r.Id).ToListAsync(cancellationToken);
}
