using System.Text;
using System.Text.Json;
using ExchangeGateway.Auth;
using ExchangeGateway.Data;
using ExchangeGateway.Hosting;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Http.Json;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace ExchangeGateway.Audit;

public sealed record AuditEventResponse(
    long Id, DateTimeOffset OccurredAt, string ActorKind, string? ActorId, string Action, string? Subject, string? Recipient,
    string Outcome, JsonElement? Details, string PreviousHash, string Hash);


/// <summary>A stored checkpoint: its row's sequence and hash (lowercase hex), when it was signed, whether it is signed by a key this gateway trusts, and the token.</summary>
public sealed record AuditCheckpointResponse(long Sequence, string Hash, DateTimeOffset SignedAt, bool Authentic, string Token);

public static class AuditEndpoints
{
    private const string Collection = "audit-events";
    private const string CheckpointCollection = "audit-checkpoints";
    private static readonly ReadOnlyMemory<byte> NewLine = "\n"u8.ToArray();

    public static RouteGroupBuilder MapAuditEndpoints(this RouteGroupBuilder api)
    {
        var audit = api.MapGroup("/audit").RequireAuthorization(ApiScopes.AuditRead).WithTags("Auditor");
        audit.MapGet("/events", GetEvents).WithName("GetAuditEvents")
            .WithSummary("Audit events, oldest first, filtered by time range, actor, action, subject pseudonym or recipient.");
        audit.MapGet("/events/export", ExportEvents).WithName("ExportAuditEvents")
            .WithSummary("The same events as NDJSON, streamed: one event (the schema below) per line, after the sequence given as after if any, then a last line {\"end\": N}: the sequence to resume from with after=N; a stream without it was cut.").Produces<AuditEventResponse>(StatusCodes.Status200OK, contentType: "application/x-ndjson");
        audit.MapGet("/verify", Verify).WithName("VerifyAuditLog")
            .WithSummary("Verifies the hash chain and the signed checkpoints (and a checkpoint the auditor kept, as anchor), from row 1 or from the row after a checkpoint given as since; names the first altered, removed or inserted row, and signs a checkpoint over the head verified.")
            .ProducesValidationProblem();
        audit.MapGet("/checkpoints", GetCheckpoints).WithName("GetAuditCheckpoints")
            .WithSummary("The signed checkpoints the database holds, newest first: each a token an auditor can keep and verify offline under the JWKS.");
        return api;
    }

    private static async Task<Results<Ok<Page<AuditEventResponse>>, ProblemHttpResult>> GetEvents(
        [AsParameters] AuditFilter filter, string? cursor, int? limit, HttpContext context, AuditReads reads, Cursors cursors, AuditTrail trail,
        GatewayDbContext primary)
    {
        if (cursors.Read<long>(Collection, cursor, limit, out var after, out var take) is { } badPage)
        {
            return badPage;
        }

        if ((AuditFilter.RepeatedIn(context.Request) ?? AuditFilter.NotRfc3339In(context.Request) ?? filter.Validate()) is { } badFilter)
        {
            return badFilter;
        }

        filter = await filter.ResolveRecipientAsync(primary, context.RequestAborted);
        await using var db = reads.Open();
        var page = await cursors.PageAsync(Collection,
            (await filter.ApplyAsync(db, context.RequestAborted)).Where(e => e.Sequence > after).OrderBy(e => e.Sequence),
            take, e => e.Sequence, context.RequestAborted);

        // Which rows this auditor was shown, not only what they asked: the page's start, its length and its last row.
        await trail.AppendAsync(
            await QueryRecordAsync(context, trail, primary, AuditActions.AuditQueried, filter, after, page.Items.Count, page.Items.Count > 0 ? page.Items[^1].Sequence : null),
            context.RequestAborted);
        return TypedResults.Ok(new Page<AuditEventResponse>(page.Items.Select(ToResponse).ToList(), page.NextCursor));
    }

    private static async Task<Results<Ok<Page<AuditCheckpointResponse>>, ProblemHttpResult>> GetCheckpoints(
        string? cursor, int? limit, HttpContext context, AuditReads reads, Cursors cursors, AuditTrail trail, SigningKeyRing keys)
    {
        if (cursors.Read<long?>(CheckpointCollection, cursor, limit, out var before, out var take) is { } badPage)
        {
            return badPage;
        }

        await using var db = reads.Open();
        var query = db.Set<AuditCheckpoint>().AsNoTracking();
        if (before is { } below)
        {
            query = query.Where(c => c.Sequence < below);
        }

        var page = await cursors.PageAsync(CheckpointCollection, query.OrderByDescending(c => c.Sequence), take, c => (long?)c.Sequence, context.RequestAborted);
        var items = new List<AuditCheckpointResponse>(page.Items.Count);
        foreach (var c in page.Items)
        {
            items.Add(new(c.Sequence, Convert.ToHexStringLower(c.Hash), c.SignedAt, await AuditCheckpoints.IsAuthenticAsync(c, keys), c.Signature));
        }

        var actor = AuditActor.From(context.User, trail.Pseudonyms);
        await trail.AppendAsync(new AuditEntry(actor.Kind, actor.Id, AuditActions.AuditQueried, Outcomes.Success,
            Details: new Dictionary<string, object?> { ["checkpoints"] = "all", ["before"] = before }), context.RequestAborted);
        return TypedResults.Ok(new Page<AuditCheckpointResponse>(items, page.NextCursor));
    }

    private static async Task<IResult> ExportEvents(
        [AsParameters] AuditFilter filter, long? after, HttpContext context, AuditReads reads, AuditTrail trail, IOptions<JsonOptions> json,
        GatewayDbContext primary)
    {
        if ((AuditFilter.RepeatedIn(context.Request) ?? AuditFilter.NotRfc3339In(context.Request) ?? filter.Validate()) is { } badFilter)
        {
            return badFilter;
        }

        if (after < 0 || context.Request.Query["after"].Count > 1)
        {
            return Problems.Validation("after must be given once, as a sequence number (0 or more).", new Dictionary<string, string[]> { ["after"] = ["A sequence number, 0 or more."] });
        }

        filter = await filter.ResolveRecipientAsync(primary, context.RequestAborted);
        var scan = reads.TryStartScan();
        if (scan is null)
        {
            return Busy(context);
        }

        // Released when the stream ends, or with the response if the stream never runs.
        context.Response.RegisterForDispose(scan);
        await trail.AppendAsync(await QueryRecordAsync(context, trail, primary, AuditActions.AuditExported, filter, after), context.RequestAborted);
        return TypedResults.Stream(async body =>
        {
            using var held = scan;
            await using var db = reads.Open();
            var from = after ?? 0;
            var query = (await filter.ApplyAsync(db, context.RequestAborted)).Where(e => e.Sequence > from).OrderBy(e => e.Sequence);
            var written = 0;
            var end = from;
            await foreach (var row in query.AsAsyncEnumerable().WithCancellation(context.RequestAborted))
            {
                end = row.Sequence;
                await JsonSerializer.SerializeAsync(body, ToResponse(row), json.Value.SerializerOptions, context.RequestAborted);
                await body.WriteAsync(NewLine, context.RequestAborted);
                // Flush early and then in chunks: the client sees the first events while the rest are still being read.
                if (++written % 500 == 1)
                {
                    await body.FlushAsync(context.RequestAborted);
                }
            }

            // Only a stream read to its end has this line: a cut one is told from a complete one, and resumes with after=end.
            await body.WriteAsync(Encoding.UTF8.GetBytes(FormattableString.Invariant($"{{\"end\":{end}}}\n")), context.RequestAborted);
        }, "application/x-ndjson");
    }

    /// <summary>Longer than any checkpoint the gateway signs (about 300 characters).</summary>
    private const int MaxAnchorLength = 4096;

    private static async Task<Results<Ok<AuditVerification>, ProblemHttpResult>> Verify(
        string? anchor, string? since, HttpContext context, AuditVerifier verifier, AuditCheckpoints checkpoints, AuditTrail trail, SigningKeyRing keys, AuditReads reads,
        GatewayDbContext primary)
    {
        AuditCheckpoint? kept = null;
        if (anchor is not null)
        {
            kept = anchor.Length <= MaxAnchorLength ? await AuditCheckpoints.ReadTokenAsync(anchor, keys) : null;
            if (kept is null)
            {
                return Problems.Validation("anchor must be a lastCheckpointToken given by an earlier verification of this gateway's log.");
            }
        }

        AuditCheckpoint? from = null;
        if (since is not null)
        {
            from = since.Length <= MaxAnchorLength ? await AuditCheckpoints.ReadTokenAsync(since, keys) : null;
            if (from is null)
            {
                return Problems.Validation("since must be a checkpoint token of this gateway's log (a lastCheckpointToken, or one listed by /api/v1/audit/checkpoints).",
                    new Dictionary<string, string[]> { ["since"] = ["Not a checkpoint signed by this gateway."] });
            }
        }

        AuditVerification verdict;
        using (var scan = reads.TryStartScan())
        {
            if (scan is null)
            {
                return Busy(context);
            }

            verdict = await verifier.VerifyAsync(kept, from, context.RequestAborted);
        }

        var reach = Math.Max(kept?.Sequence ?? 0, from?.Sequence ?? 0);
        if (reach > 0 && reads.OnReplica && verdict.EndsBefore(reach)
            && await primary.Set<AuditEvent>().AnyAsync(e => e.Sequence >= reach, context.RequestAborted))
        {
            // The replica has not replayed the kept row yet, which the primary holds: that is lag, not a removal, and no
            // verdict either way. Only a chain read to its end counts: a verdict that stopped early at a bad row is a verdict
            // (an altered row 3 under a kept row 5000 is tampering, not lag, and would be a 503 on every retry). And a
            // primary that ends before the kept row too was cut: that is the verdict, not a 503 on every retry.
            return Problems.RetryLater(context, StatusCodes.Status503ServiceUnavailable, "Replica behind",
                $"The audit replica has not yet reached row {reach} of your checkpoint.");
        }

        verdict = await checkpoints.SealAsync(verdict, context.RequestAborted);
        await trail.AppendAsync(verdict.Record(AuditActor.From(context.User, trail.Pseudonyms), kept, from), context.RequestAborted);
        return TypedResults.Ok(verdict);
    }

    private static ProblemHttpResult Busy(HttpContext context) => Problems.RetryLater(context, StatusCodes.Status429TooManyRequests,
        "Too many requests", "Other exports or verifications of the whole log are running on this node.");

    /// <summary>
    /// The record of a search repeats only names the log already holds (pseudonyms, staff ids, client ids). Anything else
    /// an auditor typed (a seeker's raw account id, an e-mail address) would stay in the append-only log after that
    /// person's erasure: it is kept as a keyed digest, which still shows the same search coming back.
    /// </summary>
    private static async Task<AuditEntry> QueryRecordAsync(
        HttpContext context, AuditTrail trail, GatewayDbContext primary, string action, AuditFilter filter, long? after = null, int? rows = null,
        long? through = null)
    {
        var actor = AuditActor.From(context.User, trail.Pseudonyms);
        var details = filter.Describe();
        if (after is not null)
        {
            details["after"] = after;
        }

        if (rows is not null)
        {
            details["rows"] = rows;
            details["through"] = through;
        }

        var events = primary.Set<AuditEvent>().AsNoTracking();
        foreach (var (name, value, named) in new (string, string?, System.Linq.Expressions.Expression<Func<AuditEvent, bool>>)[]
        {
            ("actor", filter.Actor, e => e.ActorId == filter.Actor),
            ("subject", filter.Subject, e => e.Subject == filter.Subject),
            ("recipient", filter.Recipient, e => e.Recipient == filter.Recipient),
        })
        {
            if (value is not null && !await events.AnyAsync(named, context.RequestAborted))
            {
                details[name] = null;
                details[name + "Digest"] = trail.Pseudonyms.BucketOf("audit-filter", value);
            }
        }

        return new AuditEntry(actor.Kind, actor.Id, action, Outcomes.Success, Details: details);
    }

    private static AuditEventResponse ToResponse(AuditEvent e) => new(
        e.Sequence, e.OccurredAt, e.ActorKind, e.ActorId, e.Action, e.Subject, e.Recipient, e.Outcome, DetailsOf(e.Details),
        Convert.ToHexStringLower(e.PreviousHash), Convert.ToHexStringLower(e.Hash));

    /// <summary>
    /// The details as JSON, or as the string stored when that is not JSON: a row altered into something else is exactly
    /// the row an auditor must be able to see (verification names it), not a 500 or an export cut short at it.
    /// </summary>
    internal static JsonElement? DetailsOf(string? details)
    {
        if (details is null)
        {
            return null;
        }

        try
        {
            using var parsed = JsonDocument.Parse(details);
            return parsed.RootElement.Clone();
        }
        catch (JsonException)
        {
            return JsonSerializer.SerializeToElement(details);
        }
    }
}

public sealed partial record AuditFilter(
    [property: Microsoft.AspNetCore.Mvc.FromQuery(Name = "from")] DateTimeOffset? From,
    [property: Microsoft.AspNetCore.Mvc.FromQuery(Name = "to")] DateTimeOffset? To,
    [property: Microsoft.AspNetCore.Mvc.FromQuery(Name = "actor")] string? Actor,
    [property: Microsoft.AspNetCore.Mvc.FromQuery(Name = "action")] string? Action,
    [property: Microsoft.AspNetCore.Mvc.FromQuery(Name = "subject")] string? Subject,
    [property: Microsoft.AspNetCore.Mvc.FromQuery(Name = "recipient")] string? Recipient)
{
    private static readonly string[] Names = ["from", "to", "actor", "action", "subject", "recipient"];

    /// <summary>
    /// Each filter once: a repeated one would bind as the values joined by commas ("a,b"), match nothing, and answer 200
    /// as if the log held no such rows.
    /// </summary>
    public static ProblemHttpResult? RepeatedIn(HttpRequest request) =>
        Names.FirstOrDefault(name => request.Query[name].Count > 1) is { } repeated
            ? Problems.Validation($"{repeated} is given more than once.", new Dictionary<string, string[]> { [repeated] = ["Give it once."] })
            : null;

    /// <summary>
    /// from and to as RFC 3339 date-times only, as the OpenAPI document says (format: date-time). The binder also takes
    /// 01/02/2026, as 2 January (invariant culture, month first), which a French auditor means as 1 February, and a date
    /// with no time or no offset. A value it cannot read at all is refused by the binder itself.
    /// </summary>
    public static ProblemHttpResult? NotRfc3339In(HttpRequest request)
    {
        foreach (var name in (string[])["from", "to"])
        {
            if (request.Query[name] is [{ } value] && !Rfc3339().IsMatch(value))
            {
                return Problems.Validation($"{name} must be an RFC 3339 date-time, such as 2026-02-01T00:00:00Z.",
                    new Dictionary<string, string[]> { [name] = ["An RFC 3339 date-time: date, T, time and offset (Z or +hh:mm)."] });
            }
        }

        return null;
    }

    [System.Text.RegularExpressions.GeneratedRegex(@"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")]
    private static partial System.Text.RegularExpressions.Regex Rfc3339();

    public ProblemHttpResult? Validate()
    {
        if (Action is not null && !AuditActions.All.Contains(Action))
        {
            return Problems.Validation($"Unknown action '{Truncate(Action)}'.", new Dictionary<string, string[]> { ["action"] = [.. AuditActions.All.Order(StringComparer.Ordinal)] });
        }

        if (From is not null && To is not null && From > To)
        {
            return Problems.Validation("from must not be after to.");
        }

        foreach (var (name, value) in new[] { ("actor", Actor), ("subject", Subject), ("recipient", Recipient) })
        {
            if (value is { Length: > 100 })
            {
                return Problems.Validation($"{name} is longer than 100 characters.");
            }
        }

        return null;
    }

    /// <summary>
    /// The log names a site by its client id; the admin API and the compliance endpoint by its id. Either is taken: an id
    /// that is a site's becomes its client id, so it does not silently match nothing.
    /// </summary>
    public async Task<AuditFilter> ResolveRecipientAsync(GatewayDbContext db, CancellationToken cancellationToken) =>
        Guid.TryParse(Recipient, out var id)
        && await db.Recipients.AsNoTracking().Where(r => r.Id == id).Select(r => r.ClientId).SingleOrDefaultAsync(cancellationToken) is { } clientId
            ? this with { Recipient = clientId }
            : this;

    /// <summary>
    /// The log's rows this filter selects. A time range becomes a range of sequence numbers, each end found by one look-up
    /// in the time index: the log's times never go back along its sequence (each append stamps at least the head's time,
    /// under the chain lock), so the rows from a time on are a tail of the log and those before a time a head of it. Read
    /// by time alone, the planner walked the log from row 1 to the range, or sorted the whole range for every page (on two
    /// million rows: 1 s for a first page from a month back, 0.4 s for a month's range; 1.5 and 1 ms now).
    /// </summary>
    public async Task<IQueryable<AuditEvent>> ApplyAsync(GatewayDbContext db, CancellationToken cancellationToken)
    {
        var query = db.Set<AuditEvent>().AsNoTracking();
        var events = query;
        // Npgsql writes timestamptz parameters in UTC only.
        if (From is { } from)
        {
            from = from.ToUniversalTime();
            var first = await events.Where(e => e.OccurredAt >= from).OrderBy(e => e.OccurredAt).ThenBy(e => e.Sequence)
                .Select(e => (long?)e.Sequence).FirstOrDefaultAsync(cancellationToken) ?? long.MaxValue;
            query = query.Where(e => e.Sequence >= first && e.OccurredAt >= from);
        }

        if (To is { } to)
        {
            to = to.ToUniversalTime();
            var last = await events.Where(e => e.OccurredAt < to).OrderByDescending(e => e.OccurredAt).ThenByDescending(e => e.Sequence)
                .Select(e => (long?)e.Sequence).FirstOrDefaultAsync(cancellationToken) ?? 0;
            query = query.Where(e => e.Sequence <= last && e.OccurredAt < to);
        }

        if (Actor is not null) query = query.Where(e => e.ActorId == Actor);
        if (Action is not null) query = query.Where(e => e.Action == Action);
        if (Subject is not null) query = query.Where(e => e.Subject == Subject);
        if (Recipient is not null) query = query.Where(e => e.Recipient == Recipient);
        return query;
    }

    public Dictionary<string, object?> Describe() => new()
    {
        ["from"] = From, ["to"] = To, ["actor"] = Actor, ["action"] = Action, ["subject"] = Subject, ["recipient"] = Recipient,
    };

    private static string Truncate(string value) => value.Length > 64 ? value[..64] : value;
}
