using ExchangeGateway.Audit;
using ExchangeGateway.Auth;
using ExchangeGateway.Data;
using ExchangeGateway.Hosting;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;

namespace ExchangeGateway.Events;

public sealed record ObligationItem(
    long Id, Guid Jti, Guid RecipientId, string ClientId, string Kind, string Cause, ObligationStatus Status, bool Overdue,
    DateTimeOffset CreatedAt, DateTimeOffset ConfirmBefore, DateTimeOffset? DeliveredAt, DateTimeOffset? ConfirmedAt,
    DateTimeOffset? OverdueAt, int Attempts, string? LastError);

/// <summary>
/// How well a site keeps its promises to delete and to rectify: every obligation it was sent, erasures and rectifications
/// (cv-updated) alike, since both have a deadline and both are escalated. <c>medianTimeToConfirmSeconds</c> is null until
/// it confirmed one.
/// </summary>
public sealed record RecipientCompliance(
    Guid Id, string ClientId, long Obligations, long Pending, long Delivered, long Confirmed, long Overdue, double? MedianTimeToConfirmSeconds);

public static class ErasureAuditEndpoints
{
    private const string Collection = "audit-erasures";
    private static readonly string[] Statuses = ["pending", "delivered", "confirmed", "overdue"];

    public static RouteGroupBuilder MapErasureAuditEndpoints(this RouteGroupBuilder api)
    {
        var audit = api.MapGroup("/audit").RequireAuthorization(ApiScopes.AuditRead).WithTags("Auditor");
        audit.MapGet("/erasures", List).WithName("ListErasureObligations")
            .WithSummary("Erasure obligations, oldest first; status pending, delivered, confirmed or overdue (open past its deadline); recipient, a site's id or client id, for that site's alone.");
        audit.MapGet("/recipients/{id:guid}/compliance", Compliance).WithName("GetRecipientCompliance")
            .WithSummary("A site's record: obligations (erasures and rectifications) in all; pending now; ever delivered (the confirmed included); confirmed; ever overdue (those confirmed late included); and the median time to confirm.");
        return api;
    }

    private static async Task<Results<Ok<Page<ObligationItem>>, ProblemHttpResult>> List(
        string? status, string? recipient, string? cursor, int? limit, HttpContext context, AuditReads reads, Cursors cursors, AuditTrail trail, TimeProvider time)
    {
        if (cursors.Read<long>(Collection, cursor, limit, out var after, out var take) is { } problem)
        {
            return problem;
        }

        // DESIGN spells the states Pending, Delivered...; the API sends them lowercase. Either is taken.
        status = status?.ToLowerInvariant();
        if (status is not null && !Statuses.Contains(status))
        {
            return Problems.Validation("Unknown status.", new Dictionary<string, string[]> { ["status"] = Statuses });
        }

        if (recipient is { Length: > 100 } || context.Request.Query["recipient"].Count > 1)
        {
            return Problems.Validation("recipient must be given once, as a site's id or client id.",
                new Dictionary<string, string[]> { ["recipient"] = ["A site's id or client id, once."] });
        }

        // Overdue is the deadline passing (ErasureObligation.IsLate), not the job having flagged it since. The list's status
        // is what is open now; an item's flag and the compliance count keep a late confirmation late.
        var now = time.GetUtcNow();
        await using var db = reads.Open();
        var obligations = db.Set<ErasureObligation>().AsNoTracking();
        var query = obligations.Where(o => o.Id > after);
        string? clientId = null;
        if (recipient is not null)
        {
            // By id, as the admin API and the compliance endpoint name a site, or by client id, as the log does; one that
            // is no site's matches nothing. Per site, the open ones come from the (site, id) index of open obligations.
            var byId = Guid.TryParse(recipient, out var id) ? id : (Guid?)null;
            var site = await db.Recipients.AsNoTracking()
                .Where(r => r.ClientId == recipient || r.Id == byId)
                .Select(r => new { r.Id, r.ClientId }).FirstOrDefaultAsync(context.RequestAborted);
            clientId = site?.ClientId;
            var siteId = site?.Id ?? Guid.Empty;
            query = query.Where(o => o.RecipientId == siteId);
        }
        IQueryable<ErasureObligation> InStatus(IQueryable<ErasureObligation> rows) => status switch
        {
            "pending" => rows.Where(o => o.Status == ObligationStatus.Pending),
            "delivered" => rows.Where(o => o.Status == ObligationStatus.Delivered),
            "confirmed" => rows.Where(o => o.Status == ObligationStatus.Confirmed),
            "overdue" => rows.Where(o => o.Status != ObligationStatus.Confirmed && (o.Overdue || o.ConfirmBefore <= now)),
            _ => rows,
        };
        query = InStatus(query);
        if (recipient is null && status is "pending" or "delivered" or "overdue")
        {
            // Open ones across all sites: each site's first page from the (site, id) index of open obligations, merged.
            // In id order over the whole table, the scan walked every confirmed obligation before the first open one
            // (at 180 000 rows, most of them confirmed: 230 ms for a page of delivered or overdue ones; 4 ms this way).
            var open = InStatus(obligations.Where(o => o.Status != ObligationStatus.Confirmed && o.Id > after));
            query =
                from r in db.Recipients.AsNoTracking()
                from o in open.Where(o => o.RecipientId == r.Id).OrderBy(o => o.Id).Take(take + 1)
                select o;
        }
        var page = await cursors.PageAsync(Collection,
            from o in query
            join r in db.Recipients.AsNoTracking() on o.RecipientId equals r.Id
            orderby o.Id
            select new ObligationItem(o.Id, o.Jti, o.RecipientId, r.ClientId, o.Kind, o.Cause, o.Status,
                ErasureObligation.IsLate(o.Status, o.Overdue, o.ConfirmBefore, o.ConfirmedAt, now), o.CreatedAt,
                o.ConfirmBefore, o.DeliveredAt, o.ConfirmedAt, o.OverdueAt, o.Attempts, o.LastError),
            take, o => o.Id, context.RequestAborted);

        var actor = AuditActor.From(context.User, trail.Pseudonyms);
        await trail.AppendAsync(new AuditEntry(actor.Kind, actor.Id, AuditActions.AuditQueried, Outcomes.Success, Recipient: clientId,
            Details: new Dictionary<string, object?>
            {
                ["erasures"] = status ?? "all", ["recipient"] = recipient is null ? null : clientId ?? "unknown",
                ["after"] = after, ["rows"] = page.Items.Count, ["through"] = page.Items.Count > 0 ? page.Items[^1].Id : null,
            }),
            context.RequestAborted);
        return TypedResults.Ok(page);
    }

    private static async Task<Results<Ok<RecipientCompliance>, ProblemHttpResult>> Compliance(
        Guid id, HttpContext context, AuditReads reads, AuditTrail trail, TimeProvider time)
    {
        var now = time.GetUtcNow();
        await using var db = reads.Open();
        var recipient = await db.Recipients.AsNoTracking().SingleOrDefaultAsync(r => r.Id == id, context.RequestAborted);
        if (recipient is null)
        {
            return Problems.NotFound("No recipient with this id.");
        }

        var figures = await db.Database.SqlQuery<ComplianceFigures>($"""
            SELECT count(*) AS obligations,
                   count(*) FILTER (WHERE status = 'Pending') AS pending,
                   count(*) FILTER (WHERE delivered_at IS NOT NULL) AS delivered,
                   count(*) FILTER (WHERE status = 'Confirmed') AS confirmed,
                   count(*) FILTER (WHERE overdue OR (status <> 'Confirmed' AND confirm_before <= {now}) OR confirmed_at > confirm_before) AS overdue,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM confirmed_at - created_at))
                       FILTER (WHERE confirmed_at IS NOT NULL) AS median_seconds
            FROM erasure_obligations WHERE recipient_id = {id}
            """).SingleAsync(context.RequestAborted);

        var actor = AuditActor.From(context.User, trail.Pseudonyms);
        await trail.AppendAsync(new AuditEntry(actor.Kind, actor.Id, AuditActions.AuditQueried, Outcomes.Success, Recipient: recipient.ClientId,
            Details: new Dictionary<string, object?> { ["compliance"] = true }), context.RequestAborted);
        return TypedResults.Ok(new RecipientCompliance(recipient.Id, recipient.ClientId, figures.Obligations, figures.Pending, figures.Delivered,
            figures.Confirmed, figures.Overdue, figures.MedianSeconds));
    }

    private sealed record ComplianceFigures(long Obligations, long Pending, long Delivered, long Confirmed, long Overdue, double? MedianSeconds);
}
