using ExchangeGateway.Auth;
using ExchangeGateway.Data;
using ExchangeGateway.Hosting;
using ExchangeGateway.Recipients;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;

namespace ExchangeGateway.Events;

/// <summary>
/// Whether a site is getting its events, as the operator who fixes its delivery needs to see it: what waits and since when,
/// why the most-tried waiting event last failed, when the next push is due or whether the site asked for a pause, and what
/// it has received but not confirmed. Only its open events are read (no history), so the answer costs what its backlog
/// does, not what the site ever received; the history is the auditors' (compliance).
/// </summary>
public sealed record RecipientDelivery(
    Guid Id, string ClientId, DeliveryMode DeliveryMode, Uri? PushEndpoint, RecipientStatus Status,
    long Waiting, DateTimeOffset? OldestWaitingSince, int MostAttempts, string? LastError, DateTimeOffset? NextAttemptAt,
    DateTimeOffset? HeldUntil, long AwaitingConfirmation, long Overdue);

public static class DeliveryStatusEndpoints
{
    public static RouteGroupBuilder MapDeliveryStatusEndpoints(this RouteGroupBuilder api)
    {
        api.MapGroup("/admin/recipients").RequireAuthorization(ApiScopes.RecipientsAdmin).WithTags("Operator")
            .MapGet("/{id:guid}/delivery", Get).WithName("GetRecipientDelivery")
            .WithSummary("A site's open events: waiting to be delivered (since when, the most attempts, the reason the most-tried one last failed, the next push or the pause the site asked for), delivered and awaiting its confirmation, and overdue.");
        return api;
    }

    private static async Task<Results<Ok<RecipientDelivery>, ProblemHttpResult>> Get(
        Guid id, GatewayDbContext db, TimeProvider time, CancellationToken cancellationToken)
    {
        var recipient = await db.Recipients.AsNoTracking().SingleOrDefaultAsync(r => r.Id == id, cancellationToken);
        if (recipient is null)
        {
            return Problems.NotFound("No recipient with this id.");
        }

        var now = time.GetUtcNow();
        // Overdue as ErasureObligation.IsLate judges an open event. "status <> 'Confirmed'" is the predicate of the index of
        // a site's open events, which keeps this off the site's history.
        var open = await db.Database.SqlQuery<OpenFigures>($"""
            SELECT count(*) FILTER (WHERE status = 'Pending') AS waiting,
                   min(created_at) FILTER (WHERE status = 'Pending') AS oldest_waiting_since,
                   coalesce(max(attempts) FILTER (WHERE status = 'Pending'), 0) AS most_attempts,
                   min(next_attempt_at) FILTER (WHERE status = 'Pending') AS next_attempt_at,
                   count(*) FILTER (WHERE status = 'Delivered') AS awaiting_confirmation,
                   count(*) FILTER (WHERE overdue OR confirm_before <= {now}) AS overdue
            FROM erasure_obligations WHERE recipient_id = {id} AND status <> 'Confirmed'
            """).SingleAsync(cancellationToken);
        var lastError = await db.Set<ErasureObligation>().AsNoTracking()
            .Where(o => o.RecipientId == id && o.Status == ObligationStatus.Pending && o.LastError != null)
            .OrderByDescending(o => o.Attempts).ThenByDescending(o => o.Id)
            .Select(o => o.LastError).FirstOrDefaultAsync(cancellationToken);
        var heldUntil = await db.Set<PushHold>().AsNoTracking()
            .Where(h => h.RecipientId == id && h.HeldUntil > now).Select(h => (DateTimeOffset?)h.HeldUntil).SingleOrDefaultAsync(cancellationToken);

        // A polling site is offered every waiting event at its next poll: a due time would say nothing to it.
        var push = recipient.DeliveryMode == DeliveryMode.Push;
        return TypedResults.Ok(new RecipientDelivery(
            recipient.Id, recipient.ClientId, recipient.DeliveryMode, recipient.PushEndpoint, recipient.Status,
            open.Waiting, open.OldestWaitingSince, open.MostAttempts, lastError, push ? open.NextAttemptAt : null,
            push ? heldUntil : null, open.AwaitingConfirmation, open.Overdue));
    }

    private sealed record OpenFigures(
        long Waiting, DateTimeOffset? OldestWaitingSince, int MostAttempts, DateTimeOffset? NextAttemptAt, long AwaitingConfirmation, long Overdue);
}
