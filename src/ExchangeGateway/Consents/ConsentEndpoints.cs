using ExchangeGateway.Auth;
using ExchangeGateway.Data;
using ExchangeGateway.Hosting;
using ExchangeGateway.Recipients;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace ExchangeGateway.Consents;

/// <summary>One named site and where my consent to it stands (<c>state</c> "none" when I never ticked it).</summary>
public sealed record ConsentStatus(
    Guid Id, Guid RecipientId, string RecipientName, Uri Website, Uri PrivacyPolicyUrl, string State,
    DateTimeOffset? Since, DateTimeOffset? ExpiresAt, Guid? ReceiptId);

public sealed record ConsentResponse(Guid Id, Guid RecipientId, ConsentState State, DateTimeOffset GrantedAt, DateTimeOffset ExpiresAt, DateTimeOffset? EndedAt, Guid ReceiptId);

public sealed record ConsentHistoryItem(Guid Id, Guid ConsentId, ConsentEventKind Kind, DateTimeOffset At, CollectionMethod CollectionMethod, string RecipientName, string PolicyUrl);

public static class ConsentEndpoints
{
    public static RouteGroupBuilder MapConsentEndpoints(this RouteGroupBuilder api)
    {
        var me = api.MapGroup("/me").RequireAuthorization(ApiScopes.CvManage).WithTags("Job seeker");
        me.MapGet("/consents", List).WithName("ListMyConsents").WithSummary("Every named site, with where my consent to it stands.");
        me.MapPut("/consents/{recipientId:guid}", Tick).WithName("GrantConsent")
            .WithSummary("Tick: share my CV with this site (idempotent). Returns the consent and its receipt id.");
        me.MapDelete("/consents/{recipientId:guid}", Untick).WithName("RevokeConsent")
            .WithSummary("Untick: stop sharing at once; the site is told to delete its copy. 204 when nothing was shared.");
        me.MapGet("/consents/{recipientId:guid}/history", History).WithName("GetConsentHistory").WithSummary("Every consent event between me and this site.");
        me.MapGet("/receipts/{receiptId:guid}", Receipt).WithName("GetConsentReceipt").WithSummary("A consent receipt (after Kantara Consent Receipt 1.1 / ISO/IEC TS 27560).");
        return api;
    }

    private static async Task<Ok<Page<ConsentStatus>>> List(HttpContext context, GatewayDbContext db)
    {
        var seekerId = context.User.Subject();
        var sites = await db.Recipients.AsNoTracking().Where(r => r.Status == RecipientStatus.Active).OrderBy(r => r.Id).ToListAsync(context.RequestAborted);
        var latest = await db.Set<Consent>().AsNoTracking().Where(c => c.SeekerId == seekerId)
            .GroupBy(c => c.RecipientId)
            .Select(g => g.OrderByDescending(c => c.GrantedAt).First())
            .ToListAsync(context.RequestAborted);
        var receipts = await ReceiptsOfAsync(db, latest.Select(c => c.Id).ToList(), context.RequestAborted);
        var byRecipient = latest.ToDictionary(c => c.RecipientId);
        var items = sites.Select(site =>
        {
            byRecipient.TryGetValue(site.Id, out var consent);
            return new ConsentStatus(
                consent?.Id ?? site.Id, site.Id, site.DisplayName, site.Website, site.PrivacyPolicyUrl,
                consent is null ? "none" : consent.State.ToString().ToLowerInvariant(),
                consent is null ? null : consent.EndedAt ?? consent.GrantedAt,
                consent?.IsActive == true ? consent.ExpiresAt : null,
                consent is null ? null : receipts.GetValueOrDefault(consent.Id));
        }).ToList();
        return TypedResults.Ok(new Page<ConsentStatus>(items, null));
    }

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

    private static async Task<Results<Ok<Page<ConsentHistoryItem>>, ProblemHttpResult>> History(Guid recipientId, HttpContext context, GatewayDbContext db)
    {
        var seekerId = context.User.Subject();
        if (!await db.Recipients.AnyAsync(r => r.Id == recipientId, context.RequestAborted))
        {
            return Problems.NotFound("No such site.");
        }

        var items = await db.Set<ConsentEvent>().AsNoTracking()
            .Where(e => e.SeekerId == seekerId && e.RecipientId == recipientId)
            .OrderBy(e => e.At).ThenBy(e => e.Id)
            .Select(e => new ConsentHistoryItem(e.Id, e.ConsentId, e.Kind, e.At, e.CollectionMethod, e.RecipientName, e.PolicyUrl))
            .ToListAsync(context.RequestAborted);
        return TypedResults.Ok(new Page<ConsentHistoryItem>(items, null));
    }

    private static async Task<Results<Ok<ConsentReceipt>, ProblemHttpResult>> Receipt(
        Guid receiptId, HttpContext context, GatewayDbContext db, IOptions<ConsentOptions> options)
    {
        var seekerId = context.User.Subject();
        var receipt = await ConsentReceipt.FindAsync(db, seekerId, receiptId, options.Value, context.RequestAborted);
        // Another seeker's receipt is as absent as one that never existed.
        return receipt is null ? Problems.NotFound("No such receipt.") : TypedResults.Ok(receipt);
    }

    private static async Task<Dictionary<Guid, Guid>> ReceiptsOfAsync(GatewayDbContext db, List<Guid> consentIds, CancellationToken cancellationToken) =>
        (await db.Set<ConsentEvent>().AsNoTracking().Where(e => consentIds.Contains(e.ConsentId))
            .Select(e => new { e.ConsentId, e.Id, e.At }).ToListAsync(cancellationToken))
        .GroupBy(e => e.ConsentId)
        .ToDictionary(g => g.Key, g => g.OrderByDescending(e => e.At).First().Id);

    private static ConsentResponse ToResponse(ConsentDecision decision) => new(
        decision.Consent!.Id, decision.Consent.RecipientId, decision.Consent.State, decision.Consent.GrantedAt,
        decision.Consent.ExpiresAt, decision.Consent.EndedAt, decision.Receipt!.Id);
}
