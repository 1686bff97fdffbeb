using ExchangeGateway.Audit;
using ExchangeGateway.Data;
using ExchangeGateway.Hosting;
using Hangfire;
using Microsoft.EntityFrameworkCore;

namespace ExchangeGateway.Events;

/// <summary>Flags open erasure obligations past their deadline as overdue, once each, with an audit event per obligation.</summary>
[AutomaticRetry(Attempts = Jobs.RetryAttempts)]
public sealed class OverdueEscalationJob(GatewayDbContext db, AuditTrail audit, TimeProvider time, GatewayMetrics metrics)
{
    public async Task<int> RunAsync(CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
        var escalated = await db.Database.SqlQuery<Escalated>($"""
            UPDATE erasure_obligations o SET overdue = true, overdue_at = {now}
            FROM recipients r
            WHERE r.id = o.recipient_id AND o.kind = {EventKinds.ErasureRequired} AND o.status <> 'Confirmed'
              AND NOT o.overdue AND o.confirm_before <= {now}
            RETURNING o.jti, o.cause, o.status, r.client_id
            """).ToListAsync(cancellationToken);
        await audit.AppendAsync(escalated.Select(e => new AuditEntry(ActorKinds.System, "overdue-escalation", AuditActions.ErasureOverdue,
            Outcomes.Failure, Recipient: e.ClientId,
            Details: new Dictionary<string, object?> { ["jti"] = e.Jti, ["cause"] = e.Cause, ["status"] = e.Status })).ToList(), cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        metrics.ObligationsOverdue.Add(escalated.Count);
        return escalated.Count;
    }

    private sealed record Escalated(Guid Jti, string Cause, string Status, string ClientId);
}
