using System.Globalization;
using System.Text.Json.Serialization;
using ExchangeGateway.Audit;
using ExchangeGateway.Auth;
using ExchangeGateway.Data;
using ExchangeGateway.Hosting;
using ExchangeGateway.Recipients;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace ExchangeGateway.Events;

/// <summary>An RFC 8936 error code (<c>err</c>) and what went wrong, for a SET the site could not process.</summary>
public sealed record SetError(string Err, string? Description = null)
{
    /// <summary>
    /// RFC 8935/8936 error codes are tokens: printable ASCII, at most 64 kept. Anything else (a NUL, which PostgreSQL refuses
    /// in text; half an emoji; a line break for the logs) becomes '?'. A site's odd code is recorded, not refused: refusing
    /// it would refuse the acks that came with it, and a receiver that retries the same body would never get through.
    /// </summary>
    /// <summary>
    /// RFC 8935 §2.4's codes that speak of the receiver's set-up (which issuer, audience and keys it trusts, whether it takes
    /// SETs from the gateway at all), not of one SET: every other event to that site would be refused the same way.
    /// </summary>
    public static bool IsAboutTheReceiver(string code) =>
        code is "invalid_issuer" or "invalid_audience" or "invalid_key" or "authentication_failed" or "access_denied";

    public static string Code(string value)
    {
        var kept = value.Length <= 64 ? value : value[..64];
        return string.Create(kept.Length, kept, (span, text) =>
        {
            for (var i = 0; i < text.Length; i++)
            {
                span[i] = text[i] is >= '!' and <= '~' ? text[i] : '?';
            }
        });
    }
}

/// <summary>
/// RFC 8936 poll request: acknowledge what was processed, report what failed, ask for more. Without returnImmediately a
/// poll is a long poll, as the RFC says (§2.4): it waits up to ten seconds for an event.
/// </summary>
public sealed record PollRequest(
    IReadOnlyList<string>? Ack = null,
    [property: JsonPropertyName("setErrs")] IReadOnlyDictionary<string, SetError>? SetErrs = null,
    int? MaxEvents = null,
    bool ReturnImmediately = false);

/// <summary>RFC 8936 poll response: SETs keyed by jti; unacknowledged ones are offered again on the next poll.</summary>
public sealed record PollResponse(IReadOnlyDictionary<string, string> Sets, bool MoreAvailable);

public sealed record ConfirmationResponse(Guid Id, string Kind, string Cause, ObligationStatus Status, DateTimeOffset? ConfirmedAt)
{
    /// <summary>The event's jti, under the name the open-events list gives it (<c>id</c>, the same value, is kept for the clients built on it).</summary>
    public Guid Jti => Id;
}

/// <summary>
/// One of the calling site's events it has not confirmed yet: what its SET says (jti, kind, the CV's id for the site,
/// cause, toe as <c>createdAt</c>, confirm_before), and where it stands (pending: not yet delivered or acknowledged),
/// with the failed attempts and the last one's reason as the gateway recorded them (a push's answer or a poll's
/// <c>setErrs</c>): a site whose events keep coming back can see why.
/// </summary>
public sealed record OpenEvent(
    Guid Jti, string Kind, string Cause, string CvId, ObligationStatus Status, bool Overdue, DateTimeOffset CreatedAt,
    DateTimeOffset ConfirmBefore, DateTimeOffset? DeliveredAt, int Attempts, string? LastError)
{
    /// <summary>The jti again, as every resource carries an <c>id</c> (DESIGN), and as the confirmation names the event.</summary>
    public Guid Id => Jti;
}

public static class EventEndpoints
{
    private static readonly TimeSpan LongPoll = TimeSpan.FromSeconds(10);

    public static RouteGroupBuilder MapEventEndpoints(this RouteGroupBuilder api)
    {
        var site = api.MapGroup("/").RequireAuthorization(ApiScopes.CvRead).AddEndpointFilter<RecipientGateAllowingSuspended>().WithTags("Recipient");
        site.MapPost("/events/poll", Poll).WithName("PollEvents")
            .WithSummary("RFC 8936 poll delivery of the calling site's security event tokens (ack, setErrs, maxEvents, returnImmediately).");
        site.MapPost("/erasures/{jti:guid}/confirmation", Confirm).WithName("ConfirmErasure")
            .WithSummary("The site confirms it deleted (or updated) its copy: closes the obligation.");
        site.MapGet("/erasures", Open).WithName("ListOpenEvents")
            .WithSummary("The calling site's events not confirmed yet, delivered or not (a push site's once a push has tried them), oldest first: what it still has to do, and the jtis to confirm it with.");
        return api;
    }

    private const string OpenCollection = "site-open-events";

    /// <summary>How an event's last error reads when the site reported it in a poll's setErrs.</summary>
    private const string SetErrorPrefix = "set-error: ";

    /// <summary>
    /// A SET acknowledged (by a push's 202 or a poll's ack) is never offered again; a site that lost it before acting on it
    /// would otherwise have no way to the jti it must confirm, and stay overdue. The cursor is bound to the site.
    /// </summary>
    private static async Task<Results<Ok<Page<OpenEvent>>, ProblemHttpResult>> Open(
        string? cursor, int? limit, HttpContext context, GatewayDbContext db, Cursors cursors, TimeProvider time)
    {
        var recipient = context.Recipient();
        var now = time.GetUtcNow();
        if (cursors.Read<long>(OpenCollection + ":" + recipient.Id, cursor, limit, out var after, out var take) is { } problem)
        {
            return problem;
        }

        // A push site is shown what a push has tried at least once: one never tried may still be withdrawn (the CV back
        // online before it left, see OfflineEvents), which only holds while the site cannot have seen it anywhere.
        var triedOnly = recipient.DeliveryMode == DeliveryMode.Push;
        var page = await cursors.PageAsync(OpenCollection + ":" + recipient.Id,
            db.Set<ErasureObligation>().AsNoTracking()
                .Where(o => o.RecipientId == recipient.Id && o.Status != ObligationStatus.Confirmed && o.Id > after
                    && (!triedOnly || o.Status == ObligationStatus.Delivered || o.Attempts > 0))
                .OrderBy(o => o.Id)
                .Select(o => new { o.Id, Item = new OpenEvent(o.Jti, o.Kind, o.Cause, o.PairwiseId, o.Status,
                    ErasureObligation.IsLate(o.Status, o.Overdue, o.ConfirmBefore, o.ConfirmedAt, now), o.CreatedAt, o.ConfirmBefore, o.DeliveredAt,
                    o.Attempts, o.LastError) }),
            take, o => o.Id, context.RequestAborted);
        // The event's time as its SET gives it (toe, a day); the delivery to the second: both are the same instant at every
        // site told of one change, which would pair their ids (promise 6).
        return TypedResults.Ok(new Page<OpenEvent>(
            [.. page.Items.Select(o => o.Item with
            {
                CreatedAt = Obligations.SiteDay(o.Item.CreatedAt),
                DeliveredAt = o.Item.DeliveredAt is { } at ? at.AddTicks(-(at.UtcTicks % TimeSpan.TicksPerSecond)) : null,
            })],
            page.NextCursor));
    }

    private static async Task<Results<Ok<PollResponse>, ProblemHttpResult>> Poll(
        PollRequest request, HttpContext context, GatewayDbContext db, EventTokens tokens, AuditTrail audit, TimeProvider time,
        IOptions<DeliveryOptions> options, LongPollSlots slots)
    {
        var recipient = context.Recipient();
        var cancellationToken = context.RequestAborted;
        var errors = new RequestErrors();
        var acks = ParseJtis(request.Ack, "ack", errors);
        var failed = ParseJtis(request.SetErrs?.Keys.ToList(), "setErrs", errors);
        // RFC 8936 §2.4: maxEvents is a ceiling the transmitter should not exceed; a receiver asking for more than this
        // gateway sends at once gets the gateway's page (and moreAvailable), not an error.
        var max = Math.Min(request.MaxEvents ?? options.Value.MaxEventsPerPoll, options.Value.MaxEventsPerPoll);
        if (max < 0)
        {
            errors.Add("maxEvents", "Must not be negative.");
        }

        foreach (var error in request.SetErrs?.Values ?? [])
        {
            // Dictionary values escape the serializer's nullability checks: a null entry is the client's error, not ours. The
            // description is the receiver's diagnostic (often a multi-line exception message): neither checked nor kept.
            if (error?.Err is null)
            {
                errors.Add("setErrs", "Each entry is an object with err (and optionally description).");
            }
        }

        if (errors.Any)
        {
            return errors.ToProblem();
        }

        var now = time.GetUtcNow();
        if (acks.Count > 0 || failed.Count > 0)
        {
            await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
            // One statement: what it changed is exactly what the audit says this poll delivered (a confirmation racing
            // it has set the status already and is not counted twice).
            var ackIds = acks.ToArray();
            var acked = await db.Database.SqlQuery<Guid>($"""
                UPDATE erasure_obligations SET status = 'Delivered', delivered_at = {now}
                WHERE recipient_id = {recipient.Id} AND jti = ANY({ackIds}) AND status = 'Pending'
                RETURNING jti AS "Value"
                """).ToListAsync(cancellationToken);
            acked.Sort();
            if (failed.Count > 0)
            {
                // The site could not process them: keep its reasons and offer them again after the same back-off as a failed
                // push (the schedule's next step, with its jitter), in one statement. The jtis parsed above, in key order.
                var jtis = failed.ToArray();
                var reasons = request.SetErrs!.Values.Select(e => SetErrorPrefix + SetError.Code(e.Err)).ToArray();
                var schedule = options.Value.Schedule.ToArray();
                await db.Database.ExecuteSqlAsync($"""
                    UPDATE erasure_obligations o
                    SET attempts = o.attempts + 1, last_error = e.reason,
                        next_attempt_at = {now} + ({schedule})[least(o.attempts + 1, cardinality({schedule}))] * (0.8 + random() * 0.4)
                    FROM unnest({jtis}, {reasons}) AS e(jti, reason)
                    WHERE o.recipient_id = {recipient.Id} AND o.jti = e.jti AND o.status = 'Pending'
                    """, cancellationToken);
            }

            if (acked.Count > 0)
            {
                await audit.AppendAsync(ErasureDeliveries.AuditEntry(ActorKinds.Recipient, recipient.ClientId, recipient.ClientId, "poll", acked), cancellationToken);
            }

            await transaction.CommitAsync(cancellationToken);
        }

        var longPoll = !request.ReturnImmediately && max > 0;
        var waits = longPoll && slots.TryEnter(recipient.Id);
        try
        {
            var answer = await PendingAsync(db, tokens, time, recipient, max, waits, now, cancellationToken);
            if (longPoll && !waits && answer.Value!.Sets.Count == 0)
            {
                // An empty answer at once would read as a long poll that waited and found nothing: a site running more poll
                // workers than the slots would loop on it and spend the allowance its feed reads draw on too.
                context.Response.Headers.RetryAfter = ((int)LongPoll.TotalSeconds).ToString(CultureInfo.InvariantCulture);
                return TypedResults.Problem(statusCode: StatusCodes.Status429TooManyRequests, title: "Too many long polls",
                    detail: $"At most {LongPollSlots.Limit} long polls wait for a site on a node, and nothing is due: poll again after Retry-After. Acknowledgements and errors in this request were applied.");
            }

            return answer;
        }
        finally
        {
            if (waits)
            {
                slots.Leave(recipient.Id);
            }
        }
    }

    /// <summary>What is due for the site, up to <paramref name="max"/>; if nothing is and it may wait, asked again until something is or the long poll ends.</summary>
    private static async Task<Ok<PollResponse>> PendingAsync(
        GatewayDbContext db, EventTokens tokens, TimeProvider time, Recipients.Recipient recipient, int max, bool waits, DateTimeOffset now, CancellationToken cancellationToken)
    {
        var waited = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            // A push site that polls (its endpoint down, say) is offered what a push has tried, as its list of open events
            // shows it: one never tried may still be withdrawn (see OfflineEvents). Whatever the push back-off says: that is
            // when to knock at the endpoint again, and waiting for it left a site polling because its endpoint was down
            // with nothing to fetch but what fell due between two pushes. Only an event the site itself reported in setErrs
            // waits for its back-off, as a poll site's does, so that it is not offered again in the answer that reported it.
            var pending = await db.Set<ErasureObligation>().AsNoTracking()
                .Where(o => o.RecipientId == recipient.Id && o.Status == ObligationStatus.Pending
                    && (o.LeasedUntil == null || o.LeasedUntil <= now)
                    && (recipient.DeliveryMode == DeliveryMode.Poll
                        ? o.NextAttemptAt <= now
                        : o.Attempts > 0 && (o.NextAttemptAt <= now || o.LastError == null || !o.LastError.StartsWith(SetErrorPrefix))))
                .OrderBy(o => o.Id)
                .Take(max + 1)
                .ToListAsync(cancellationToken);
            if (pending.Count > 0 || !waits || waited.Elapsed >= LongPoll)
            {
                var sets = pending.Take(max).ToDictionary(
                    o => o.Jti.ToString(),
                    o => tokens.Create(new ObligationToSend(o.Id, o.Jti, o.RecipientId, recipient.ClientId, o.ConsentId, o.PairwiseId, o.Kind, o.Cause, o.CreatedAt, o.ConfirmBefore, o.Attempts, null), now));
                return TypedResults.Ok(new PollResponse(sets, pending.Count > max));
            }

            // Long poll (returnImmediately false): wait for events on the wall clock, not the domain clock.
            await Task.Delay(TimeSpan.FromMilliseconds(500), cancellationToken);
            now = time.GetUtcNow();
        }
    }

    private static async Task<Results<Ok<ConfirmationResponse>, ProblemHttpResult>> Confirm(
        Guid jti, HttpContext context, GatewayDbContext db, AuditTrail audit, TimeProvider time)
    {
        var recipient = context.Recipient();
        var cancellationToken = context.RequestAborted;
        await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
        var obligation = await db.Set<ErasureObligation>()
            .FromSql($"SELECT * FROM erasure_obligations WHERE jti = {jti} AND recipient_id = {recipient.Id} FOR UPDATE")
            .SingleOrDefaultAsync(cancellationToken);
        if (obligation is null)
        {
            // Another site's jti is as unknown as one that never existed.
            return Problems.NotFound("No event with this jti was sent to you.");
        }

        var now = time.GetUtcNow();
        if (obligation.Confirm(now))
        {
            await db.SaveChangesAsync(cancellationToken);
            var details = new Dictionary<string, object?> { ["jti"] = obligation.Jti, ["kind"] = obligation.Kind, ["cause"] = obligation.Cause, ["overdue"] = obligation.Overdue };
            if (obligation.Kind == EventKinds.ErasureRequired && await Obligations.CloseRectificationsAsync(db, obligation, now, cancellationToken) is { Count: > 0 } closed)
            {
                details["rectificationsClosed"] = closed;
            }

            await audit.AppendAsync(new AuditEntry(ActorKinds.Recipient, recipient.ClientId, AuditActions.ErasureConfirmed, Outcomes.Success,
                Recipient: recipient.ClientId, Details: details), cancellationToken);
        }

        await transaction.CommitAsync(cancellationToken);
        return TypedResults.Ok(new ConfirmationResponse(obligation.Jti, obligation.Kind, obligation.Cause, obligation.Status, obligation.ConfirmedAt));
    }

    private static List<Guid> ParseJtis(IReadOnlyList<string>? values, string field, RequestErrors errors)
    {
        var parsed = new List<Guid>();
        if (values is null)
        {
            return parsed;
        }

        if (values.Count > 1000)
        {
            errors.Add(field, "At most 1000 entries.");
            return parsed;
        }

        foreach (var value in values)
        {
            if (Guid.TryParse(value, out var jti))
            {
                parsed.Add(jti);
            }
            else
            {
                errors.Add(field, "Every entry is a jti received from this gateway.");
                break;
            }
        }

        return parsed;
    }
}
