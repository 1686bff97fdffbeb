using ExchangeGateway.Auth;
using ExchangeGateway.Data;
using ExchangeGateway.Hosting;
using ExchangeGateway.Recipients;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace ExchangeGateway.Consents;

/// <summary>
/// One named site and where my consent to it stands (<c>state</c> "none" when I never ticked it; "ended" for a site the
/// operator has suspended since, listed while it stays suspended, with the sharing the suspension ended). <c>idAtSite</c>
/// is the id that sharing gives my CV at the site (a new one for each new tick): the handle to ask the site about it.
/// </summary>
public sealed record ConsentStatus(
    Guid Id, Guid RecipientId, string RecipientName, Uri Website, Uri PrivacyPolicyUrl, string State,
    DateTimeOffset? Since, DateTimeOffset? ExpiresAt, Guid? ReceiptId, string? IdAtSite)
{
    public const string None = "none";
    public const string Ended = "ended";

    [System.Text.Json.Serialization.JsonIgnore]
    public bool IsActive => State == "active";
}

public sealed record ConsentResponse(Guid Id, Guid RecipientId, ConsentState State, DateTimeOffset GrantedAt, DateTimeOffset ExpiresAt, DateTimeOffset? EndedAt, Guid ReceiptId);

/// <summary>A consent event; <c>idAtSite</c> is the id the site knows the seeker's CV by in that episode (a site that started the sharing learnt it before any read).</summary>
public sealed record ConsentHistoryItem(
    Guid Id, Guid ConsentId, ConsentEventKind Kind, DateTimeOffset At, CollectionMethod CollectionMethod, string RecipientName, string PolicyUrl, string IdAtSite);

/// <summary>Where a page of a consent history ended: events are ordered by time, then id (two can share a microsecond).</summary>
public sealed record ConsentHistoryPosition(DateTimeOffset At, Guid Id);

public static class ConsentEndpoints
{
    // One collection per site: a cursor from one site's history, replayed against another's, skipped that site's events
    // before the position it carried.
    private static string HistoryCollection(Guid recipientId) => "consent-history:" + recipientId;

    public static RouteGroupBuilder MapConsentEndpoints(this RouteGroupBuilder api)
    {
        var me = api.MapGroup("/me").RequireAuthorization(ApiScopes.CvManage).WithTags("Job seeker");
        me.MapGet("/consents", List).WithName("ListMyConsents").WithSummary("Every named site, with where my consent to it stands, and the sites suspended since that ended a sharing of mine (state ended).");
        me.MapPut("/consents/{recipientId:guid}", Tick).WithName("GrantConsent")
            .WithSummary("Tick: share my CV with this site (idempotent). Returns the consent and its receipt id.");
        me.MapDelete("/consents/{recipientId:guid}", Untick).WithName("RevokeConsent")
            .WithSummary("Untick: stop sharing at once; the site is told to delete its copy. 204 when nothing was shared.");
        me.MapGet("/consents/{recipientId:guid}/history", History).WithName("GetConsentHistory")
            .WithSummary("Every consent event between me and this site, oldest first, by pages.");
        me.MapGet("/receipts/{receiptId:guid}", Receipt).WithName("GetConsentReceipt").WithSummary("A consent receipt (after Kantara Consent Receipt 1.1 / ISO/IEC TS 27560).");
        return api;
    }

    private static async Task<Ok<Page<ConsentStatus>>> List(HttpContext context, GatewayDbContext db, TimeProvider time) =>
        TypedResults.Ok(new Page<ConsentStatus>((await ConsentQueries.SharingsAsync(db, context.User.Subject(), time.GetUtcNow(), context.RequestAborted)).All, null));

    private static async Task<Results<Ok<ConsentResponse>, Created<ConsentResponse>, ProblemHttpResult>> Tick(Guid recipientId, HttpContext context, ConsentDesk desk)
    {
        var decision = await desk.TickAsync(context.User.Subject(), recipientId, CollectionMethod.Api, context.RequestAborted);
        return decision.Change switch
        {
            ConsentChange.UnknownRecipient => Problems.NotFound("No such site to share with."),
            ConsentChange.Granted => TypedResults.Created($"/api/v1/me/receipts/{decision.Receipt!.Id}", ToResponse(decision)),
            _ => TypedResults.Ok(ToResponse(decision)),
        };
    }

    private static async Task<Results<Ok<ConsentResponse>, NoContent, ProblemHttpResult>> Untick(Guid recipientId, HttpContext context, ConsentDesk desk)
    {
        var decision = await desk.UntickAsync(context.User.Subject(), recipientId, CollectionMethod.Api, context.RequestAborted);
        return decision.Change switch
        {
            ConsentChange.UnknownRecipient => Problems.NotFound("No such site."),
            ConsentChange.NothingToRevoke => TypedResults.NoContent(),
            _ => TypedResults.Ok(ToResponse(decision)),
        };
    }

    private static async Task<Results<Ok<Page<ConsentHistoryItem>>, ProblemHttpResult>> History(
        Guid recipientId, string? cursor, int? limit, HttpContext context, GatewayDbContext db, Cursors cursors)
    {
        if (cursors.Read<ConsentHistoryPosition>(HistoryCollection(recipientId), cursor, limit, out var after, out var take) is { } problem)
        {
            return problem;
        }

        var seekerId = context.User.Subject();
        if (!await db.Recipients.AnyAsync(r => r.Id == recipientId, context.RequestAborted))
        {
            return Problems.NotFound("No such site.");
        }

        var ordered = Cvs.MyDataQueries.ConsentHistoryAfter(db, seekerId, recipientId, after);
        return TypedResults.Ok(await cursors.PageAsync(HistoryCollection(recipientId), ordered, take, e => new ConsentHistoryPosition(e.At, e.Id), context.RequestAborted));
    }

    private static async Task<Results<Ok<ConsentReceipt>, ProblemHttpResult>> Receipt(
        Guid receiptId, HttpContext context, GatewayDbContext db, IOptions<ConsentOptions> options)
    {
        var seekerId = context.User.Subject();
        var receipt = await ConsentReceipt.FindAsync(db, seekerId, receiptId, options.Value, context.RequestAborted);
        // Another seeker's receipt is as absent as one that never existed.
        return receipt is null ? Problems.NotFound("No such receipt.") : TypedResults.Ok(receipt);
    }

    private static ConsentResponse ToResponse(ConsentDecision decision) => new(
        decision.Consent!.Id, decision.Consent.RecipientId, decision.Consent.State, decision.Consent.GrantedAt,
        decision.Consent.ExpiresAt, decision.Consent.EndedAt, decision.Receipt!.Id);
}
