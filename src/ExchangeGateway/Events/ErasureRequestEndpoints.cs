using ExchangeGateway.Data;
using ExchangeGateway.Hosting;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;

namespace ExchangeGateway.Events;

/// <summary>
/// Where one erasure request stands: the site, why it was asked, whether it confirmed and by when it must. No id of the CV
/// at the site and no date the request was made beyond its deadline: whoever holds the event id learns only what the
/// request's own receipt line says.
/// </summary>
public sealed record ErasureRequestStatus(
    Guid EventId, Guid RecipientId, string RecipientName, string Cause, ObligationStatus Status, bool Overdue, DateTimeOffset ConfirmBefore,
    DateTimeOffset? ConfirmedAt);

/// <summary>
/// The follow-up of an erasure receipt. After "forget me" the seeker has no account to sign in with, and the gateway keeps
/// nothing that links the requests back to them; the receipt's event ids (random, 122 bits, known otherwise only to the
/// site each was sent to and to the auditors) are what they hold, so an event id alone opens its request's status, on the
/// API and on a page, for as long as the request is kept (Erasure:KeepErasedRecordsFor once confirmed). The site's id is
/// in the path too: it is on the receipt line, and it makes the look-up one probe of the (site, event) index rather than an
/// index on event ids alone, which every obligation written (the sweep's included) would pay for.
/// </summary>
public static class ErasureRequestEndpoints
{
    public static RouteGroupBuilder MapErasureRequestEndpoints(this RouteGroupBuilder api)
    {
        api.MapGet("/erasure-requests/{recipientId:guid}/{eventId:guid}", Get).AllowAnonymous().WithTags("Job seeker").WithName("GetErasureRequest")
            .WithSummary("Where one erasure request stands, by the site and event ids an erasure receipt lists; no token needed, as the seeker has no account left.");
        return api;
    }

    /// <summary>The request's status, or null when no erasure request has this event id (or it is no longer kept).</summary>
    public static Task<ErasureRequestStatus?> FindAsync(
        GatewayDbContext db, Guid recipientId, Guid eventId, DateTimeOffset now, CancellationToken cancellationToken) =>
        (from o in db.Set<ErasureObligation>().AsNoTracking()
         join r in db.Recipients.AsNoTracking() on o.RecipientId equals r.Id
         where o.RecipientId == recipientId && o.Jti == eventId && o.Kind == EventKinds.ErasureRequired
         select new ErasureRequestStatus(o.Jti, o.RecipientId, r.DisplayName, o.Cause, o.Status,
             ErasureObligation.IsLate(o.Status, o.Overdue, o.ConfirmBefore, o.ConfirmedAt, now), o.ConfirmBefore, o.ConfirmedAt))
        .SingleOrDefaultAsync(cancellationToken);

    private static async Task<Results<Ok<ErasureRequestStatus>, ProblemHttpResult>> Get(
        Guid recipientId, Guid eventId, GatewayDbContext db, TimeProvider time, HttpContext context) =>
        await FindAsync(db, recipientId, eventId, time.GetUtcNow(), context.RequestAborted) is { } status
            ? TypedResults.Ok(status)
            : Problems.NotFound("No erasure request of this site with this event id (requests are kept for a while after every site confirmed, then removed).");
}
