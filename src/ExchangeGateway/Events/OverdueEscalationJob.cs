using ExchangeGateway.Audit;
using ExchangeGateway.Data;
using ExchangeGateway.Hosting;
using Hangfire;
using Microsoft.EntityFrameworkCore;

namespace ExchangeGateway.Events;

/// <summary>
/// Flags open obligations past their deadline as overdue, once each, with an audit event per obligation: erasures, and
/// rectifications (<c>cv-updated</c>, GDPR art. 16/19), whose events carry the same <c>confirm_before</c>. Left out, an
/// unconfirmed rectification was never escalated, and stayed in the deadline index for every later run to step over. In
/// batches of <see cref="BatchSize"/>, one transaction each: three days after a large suspension (or a site's long outage)
/// a million obligations fall due at once, and one transaction would hold the chain lock, which every disclosure needs,
/// while it writes a million audit rows.
/// </summary>
[AutomaticRetry(Attempts = Jobs.RetryAttempts)]
public sealed class OverdueEscalationJob(GatewayDbContext db, AuditTrail audit, TimeProvider time, GatewayMetrics metrics)
{
    public const int BatchSize = 5000;

    public async Task<int> RunAsync(CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        int total = 0, escalated;
        do
        {
            escalated = await EscalateBatchAsync(now, cancellationToken);
            total += escalated;
        }
        while (escalated == BatchSize && !cancellationToken.IsCancellationRequested);

        return total;
    }

    private async Task<int> EscalateBatchAsync(DateTimeOffset now, CancellationToken cancellationToken)
    {
        await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
        // SKIP LOCKED: a confirmation or a delivery record holding a row right now is not waited for; the next run gets it.
        var escalated = await db.Database.SqlQuery<Escalated>($"""
            WITH due AS (
                SELECT id FROM erasure_obligations
                WHERE status <> 'Confirmed' AND NOT overdue AND confirm_before <= {now}
                ORDER BY confirm_before LIMIT {BatchSize} FOR UPDATE SKIP LOCKED)
            UPDATE erasure_obligations o SET overdue = true, overdue_at = {now}
            FROM due, recipients r
            WHERE o.id = due.id AND r.id = o.recipient_id
            RETURNING o.jti, o.kind, o.cause, o.status, r.client_id
            """).ToListAsync(cancellationToken);
        await audit.AppendAsync(escalated.Select(e => new AuditEntry(ActorKinds.System, "overdue-escalation", AuditActions.ErasureOverdue,
            Outcomes.Failure, Recipient: e.ClientId,
            Details: new Dictionary<string, object?> { ["jti"] = e.Jti, ["kind"] = e.Kind, ["cause"] = e.Cause, ["status"] = e.Status })).ToList(), cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        metrics.ObligationsOverdue.Add(escalated.Count);
        return escalated.Count;
    }

    private sealed record Escalated(Guid Jti, string Kind, string Cause, string Status, string ClientId);
}
