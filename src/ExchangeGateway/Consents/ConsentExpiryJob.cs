using ExchangeGateway.Audit;
using ExchangeGateway.Data;
using ExchangeGateway.Events;
using ExchangeGateway.Exchange;
using ExchangeGateway.Hosting;
using Hangfire;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace ExchangeGateway.Consents;

/// <summary>
/// Ends consents past <c>Consent:MaxAge</c> as Expired, through the aggregate (so the same rule applies as everywhere),
/// in batches claimed with SKIP LOCKED; each batch writes receipts, feed moves, obligations and audit in one transaction.
/// Then finishes any suspension left half-way (see <see cref="Recipients.SuspensionConsequences"/>).
/// </summary>
[AutomaticRetry(Attempts = Jobs.RetryAttempts)]
public sealed class ConsentExpiryJob(
    GatewayDbContext db, AuditTrail audit, DispatchSignal dispatch, TimeProvider time, IOptions<ErasureOptions> erasure,
    Recipients.SuspensionConsequences suspensions, GatewayMetrics metrics)
{
    public const int BatchSize = 1000;

    public async Task<int> RunAsync(CancellationToken cancellationToken)
    {
        var total = 0;
        int expired;
        do
        {
            expired = await ExpireBatchAsync(cancellationToken);
            total += expired;
            db.ChangeTracker.Clear();
        }
        while (expired == BatchSize && !cancellationToken.IsCancellationRequested);

        // The other way episodes end on the clock's watch: a suspension whose node stopped before all of a large site's
        // episodes were ended is finished here.
        foreach (var recipient in await suspensions.UnfinishedAsync(cancellationToken))
        {
            total += await suspensions.EndTheRestAsync(recipient, cancellationToken);
        }

        return total;
    }

    private async Task<int> ExpireBatchAsync(CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
        // NO KEY UPDATE: a disclosure being recorded under the chain lock needs KEY SHARE on its consent, and this batch
        // waits for the chain lock next; FOR UPDATE would deadlock with it.
        var due = await db.Set<Consent>()
            .FromSql($"SELECT * FROM consents WHERE state = 'Active' AND expires_at <= {now} ORDER BY expires_at LIMIT {BatchSize} FOR NO KEY UPDATE SKIP LOCKED")
            .ToListAsync(cancellationToken);
        if (due.Count == 0)
        {
            return 0;
        }

        var recipients = await db.Recipients.AsNoTracking().Where(r => due.Select(c => c.RecipientId).Contains(r.Id)).ToDictionaryAsync(r => r.Id, cancellationToken);
        var entries = new List<(Guid ConsentId, AuditEntry Entry)>(due.Count);
        foreach (var consent in due)
        {
            consent.Expire(now);
            var recipient = recipients[consent.RecipientId];
            var receipt = ConsentEvent.EndOf(consent, recipient);
            db.Add(receipt);
            entries.Add((consent.Id, new AuditEntry(ActorKinds.System, "consent-expiry", AuditActions.ConsentExpired, Outcomes.Success,
                SeekerId: consent.SeekerId, Recipient: recipient.ClientId, Details: new Dictionary<string, object?> { ["receipt"] = receipt.Id })));
        }

        await db.SaveChangesAsync(cancellationToken);
        var ids = due.Select(c => c.Id).ToList();
        await FeedPositions.BumpAsync(db, ids, cancellationToken);
        var obligations = await Obligations.RequireErasureAsync(db, ids, ErasureCauses.ConsentExpired, now, erasure.Value.ConfirmWithin, cancellationToken);
        var events = Obligations.ByEpisode(obligations);
        await audit.AppendAsync([.. entries.Select(e => e.Entry.WithEvent(events, e.ConsentId))], cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        metrics.ConsentsExpired.Add(due.Count);
        dispatch.After(obligations.Count);
        return due.Count;
    }
}
