using System.Runtime.CompilerServices;
using System.Text.Json;
using ExchangeGateway.Audit;
using ExchangeGateway.Auth;
using ExchangeGateway.Consents;
using ExchangeGateway.Data;
using ExchangeGateway.Events;
using ExchangeGateway.Hosting;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Identity;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using OpenIddict.EntityFrameworkCore.Models;

namespace ExchangeGateway.Cvs;

/// <summary>One document that reached a site (init properties, so queries can still sort and page on them).</summary>
public sealed record DisclosureItem
{
    public long Id { get; init; }
    public Guid RecipientId { get; init; }
    public required string RecipientName { get; init; }
    /// <summary>The id the site received the CV under (its sharing's pairwise id), to ask the site about its copy.</summary>
    public required string IdAtSite { get; init; }
    public int Version { get; init; }
    public DateTimeOffset DisclosedAt { get; init; }
}

/// <summary>
/// Per site, every obligation about me: sent (pending), delivered, confirmed, and whether it is overdue; with the id the site
/// holds my CV under and the event's id (its jti), which the site knows too, so that I can ask it about this very request.
/// </summary>
public sealed record ErasureStatusItem(
    long Id, Guid RecipientId, string RecipientName, string Kind, string Cause, ObligationStatus Status, bool Overdue,
    DateTimeOffset CreatedAt, DateTimeOffset? DeliveredAt, DateTimeOffset? ConfirmedAt, DateTimeOffset ConfirmBefore, string IdAtSite, Guid EventId);

/// <summary>
/// An application the seeker let act for them (an OAuth authorization: the gateway's own pages, Swagger UI, a site's
/// sign-in), with what it may do and whether it still may.
/// </summary>
public sealed record AppAuthorization(string Application, string ClientId, IReadOnlyList<string> Scopes, string Status, string Type, DateTimeOffset? CreatedAt)
{
    /// <summary>From OpenIddict's stored columns: scopes as a JSON array, the creation date in UTC without its kind.</summary>
    public static AppAuthorization Of(string? clientId, string? displayName, string? scopes, string? status, string? type, DateTime? created) => new(
        displayName ?? clientId ?? "", clientId ?? "", scopes is null ? [] : JsonSerializer.Deserialize<string[]>(scopes) ?? [], status ?? "", type ?? "",
        created is { } utc ? new DateTimeOffset(DateTime.SpecifyKind(utc, DateTimeKind.Utc)) : null);
}

/// <summary>
/// A row of the audit log about me (my pseudonym is its subject): what was done, by whom (a site by its client id, staff
/// by role only, me, or the gateway), with what outcome; its number and hash let an auditor find it in the chain.
/// </summary>
public sealed record MyAuditRecord(
    long Sequence, DateTimeOffset OccurredAt, string ActorKind, string? ActorId, string Action, string? Recipient, string Outcome,
    JsonElement? Details, string Hash)
{
    public static MyAuditRecord Of(AuditEvent row) => new(
        row.Sequence, row.OccurredAt, row.ActorKind,
        // A staff member's account id is the service's own business; the seeker learns that staff acted, and in which role.
        row.ActorKind is ActorKinds.Operator or ActorKinds.Auditor ? null : row.ActorId,
        row.Action, row.Recipient, row.Outcome, AuditEndpoints.DetailsOf(row.Details), Convert.ToHexStringLower(row.Hash));
}

/// <summary>
/// Everything held about a seeker: the account, the CV, where each sharing stands, and the lists that record its past.
/// The lists are streamed as they are read: the ledger gains a row on every read of the CV by any site, so a seeker's
/// disclosures grow without bound, and the export is never held in memory whole.
/// </summary>
public sealed record MyDataExport(
    MeResponse Account, DateTimeOffset ExportedAt, CvResponse? Cv, IReadOnlyList<ConsentStatus> Consents, IAsyncEnumerable<ConsentHistoryItem> ConsentEvents,
    IAsyncEnumerable<DisclosureItem> Disclosures, IAsyncEnumerable<ErasureStatusItem> Erasures, IReadOnlyList<AppAuthorization> Authorizations,
    IAsyncEnumerable<MyAuditRecord> AuditTrail);

public static class MyDataEndpoints
{
    public static RouteGroupBuilder MapMyDataEndpoints(this RouteGroupBuilder api)
    {
        var me = api.MapGroup("/me").RequireAuthorization(ApiScopes.CvManage).WithTags("Job seeker");
        me.MapGet("/disclosures", Disclosures).WithName("ListMyDisclosures").WithSummary("Which site received which version of my CV, and when; newest first.");
        me.MapGet("/erasures", Erasures).WithName("ListMyErasures").WithSummary("The live status, per site, of every erasure obligation about me, newest first, by pages.");
        me.MapGet("/export", Export).WithName("ExportMyData").WithSummary("Everything the gateway holds about me, as JSON (data portability).");
        me.MapDelete("/", Forget).WithName("ForgetMe").WithSummary("Erases my account and everything about me; every site that received my CV is told to delete it. The answer, a receipt kept by no one but me, lists every site's erasure request: the id it held my CV under, the event it was sent and where it stands.");
        return api;
    }

    private static async Task<Results<Ok<Page<DisclosureItem>>, ProblemHttpResult>> Disclosures(
        string? cursor, int? limit, HttpContext context, GatewayDbContext db, Cursors cursors)
    {
        if (cursors.Read<long?>(MyDataQueries.DisclosuresCollection, cursor, limit, out var before, out var take) is { } problem)
        {
            return problem;
        }

        return TypedResults.Ok(await cursors.PageAsync(MyDataQueries.DisclosuresCollection,
            MyDataQueries.DisclosuresBefore(db, context.User.Subject(), before), take, d => d.Id, context.RequestAborted));
    }

    private static async Task<Results<Ok<Page<ErasureStatusItem>>, ProblemHttpResult>> Erasures(
        string? cursor, int? limit, HttpContext context, GatewayDbContext db, Cursors cursors, TimeProvider time)
    {
        if (cursors.Read<long?>(MyDataQueries.ErasuresCollection, cursor, limit, out var before, out var take) is { } problem)
        {
            return problem;
        }

        return TypedResults.Ok(await cursors.PageAsync(MyDataQueries.ErasuresCollection,
            MyDataQueries.ErasuresOf(db, context.User.Subject(), time.GetUtcNow(), before), take, e => e.Id, context.RequestAborted));
    }

    /// <summary>
    /// The same document for the web pages, as a file to keep: a seeker signed in with the cookie downloads it from the
    /// pages (before leaving, typically), without an API client.
    /// </summary>
    public static IEndpointRouteBuilder MapMyDataDownload(this IEndpointRouteBuilder app)
    {
        app.MapGet("/my-data.json", Export)
            .RequireAuthorization(Pages.PagesSetup.SeekerPolicy)
            .RequireApiRateLimit()
            .AddEndpointFilter(async (context, next) =>
            {
                // From the seeker's own pages or typed in, not set off by another site's link (the cookie is Lax, so a
                // cross-site navigation carries it: nothing leaks, but each one would be an export and an audit row).
                if (context.HttpContext.Request.Headers["Sec-Fetch-Site"].ToString() is { Length: > 0 } site && site is not "same-origin" and not "none")
                {
                    return TypedResults.Problem("Download your data from the gateway's own pages.", statusCode: StatusCodes.Status403Forbidden, title: "Forbidden");
                }

                var headers = context.HttpContext.Response.Headers;
                headers.ContentDisposition = "attachment; filename=\"exchangegateway-my-data.json\"";
                headers.CacheControl = "no-store";
                return await next(context);
            })
            .ExcludeFromDescription();
        return app;
    }

    private static async Task<Results<Ok<MyDataExport>, ProblemHttpResult>> Export(
        HttpContext context, GatewayDbContext db, UserManager<GatewayUser> users, CvWriter cvs, AuditTrail audit,
        IOptions<FreshnessOptions> freshness, TimeProvider time)
    {
        var seekerId = context.User.Subject();
        var user = await users.FindByIdAsync(seekerId) ?? throw new AccountGoneException();

        var now = time.GetUtcNow();
        var cv = await cvs.ReadAsync(seekerId, context.RequestAborted);
        // Read one after the other on the request's context while the answer is written, each list in full order, by keyset
        // pages: the connection goes back to the pool between pages, so an export read slowly (or a dozen at once) does not
        // hold the node's connections at the client's pace. Each list stops where the data stood at the start (its time, the
        // newest ids), so a change made while the export is read is in none of the lists rather than in some.
        var lastDisclosure = await db.Set<Exchange.Disclosure>().Where(d => d.SeekerId == seekerId).MaxAsync(d => (long?)d.Id, context.RequestAborted) ?? 0;
        var lastObligation = await (
            from o in db.Set<Events.ErasureObligation>()
            join c in db.Set<Consent>() on o.ConsentId equals c.Id
            where c.SeekerId == seekerId
            select (long?)o.Id).MaxAsync(context.RequestAborted) ?? 0;
        // Where each sharing stands now (with its expiry, which no history event holds), as GET /me/consents lists them.
        var consents = (await ConsentQueries.SharingsAsync(db, seekerId, now, context.RequestAborted)).All;
        var events = Paged<ConsentHistoryItem>(
            last => MyDataQueries.ConsentHistoryAfter(db, seekerId, null, last is null ? null : new(last.At, last.Id), until: now),
            context.RequestAborted);
        var disclosures = Paged<DisclosureItem>(
            last => MyDataQueries.DisclosuresOf(db, seekerId).Where(d => d.Id <= lastDisclosure && (last == null || d.Id > last.Id)).OrderBy(d => d.Id),
            context.RequestAborted);
        // Authorizations are few (ad-hoc ones are pruned two weeks after they end), so they are read whole: the account's,
        // and those of the sharings a site started, filed under the id the site knows the CV by in that episode.
        var authorizations = (await db.Set<OpenIddictEntityFrameworkCoreAuthorization>().AsNoTracking()
                .Where(a => a.Subject == seekerId || db.Set<Consent>().Where(c => c.SeekerId == seekerId).Select(c => c.PairwiseId).Contains(a.Subject!))
                .OrderBy(a => a.CreationDate)
                .Select(a => new { a.Application!.ClientId, a.Application.DisplayName, a.Scopes, a.Status, a.Type, a.CreationDate })
                .ToListAsync(context.RequestAborted))
            .Select(a => AppAuthorization.Of(a.ClientId, a.DisplayName, a.Scopes, a.Status, a.Type, a.CreationDate))
            .ToList();
        var erasures = Paged<ErasureStatusItem>(last => MyDataQueries.ErasuresOf(db, seekerId, now, last?.Id ?? lastObligation + 1), context.RequestAborted);
        // The log's rows about the seeker are personal data too (the gateway holds the pseudonyms' key): up to this export's
        // own row, which is appended below.
        var pseudonym = audit.Pseudonyms.Of(seekerId);
        var lastAudit = await MyDataQueries.LastAuditRowAboutAsync(db, pseudonym, context.RequestAborted) ?? 0;
        var auditRows = Paged<AuditEvent>(
            last => MyDataQueries.AuditRowsAbout(db, pseudonym, after: last?.Sequence ?? 0, through: lastAudit), context.RequestAborted)
            .Select(MyAuditRecord.Of);
        await audit.AppendAsync(
            new AuditEntry(ActorKinds.Seeker, pseudonym, AuditActions.SeekerExported, Outcomes.Success, SeekerId: seekerId),
            context.RequestAborted);
        return TypedResults.Ok(new MyDataExport(
            await MeResponse.OfAsync(user, users), now,
            cv is { } found ? CvEndpoints.ToResponse(found.Cv, found.Document, freshness.Value, now) : null,
            consents.Where(c => c.State != ConsentStatus.None).ToList(), events, disclosures, erasures, authorizations, auditRows));
    }

    /// <summary>Rows of an export list read per page; the connection is the pool's again between pages.</summary>
    internal const int ExportPage = 200;

    /// <summary>
    /// A list's rows as the serializer asks for them, read by pages: <paramref name="after"/> gives the query for the rows
    /// after the last one sent (null: from the start), in the list's order.
    /// </summary>
    private static async IAsyncEnumerable<T> Paged<T>(Func<T?, IQueryable<T>> after, [EnumeratorCancellation] CancellationToken cancellationToken)
        where T : class
    {
        T? last = null;
        while (true)
        {
            var page = await after(last).Take(ExportPage).ToListAsync(cancellationToken);
            foreach (var item in page)
            {
                yield return item;
            }

            if (page.Count < ExportPage)
            {
                yield break;
            }

            last = page[^1];
        }
    }

    private static async Task<Ok<ErasureReceipt>> Forget(HttpContext context, SeekerErasure erasure) =>
        TypedResults.Ok(await erasure.EraseAsync(context.User.Subject(), context.RequestAborted) ?? throw new AccountGoneException());
}
