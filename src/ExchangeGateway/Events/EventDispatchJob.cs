using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Text.Json;
using ExchangeGateway.Audit;
using ExchangeGateway.Data;
using ExchangeGateway.Hosting;
using ExchangeGateway.Recipients;
using Hangfire;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using Microsoft.Extensions.Options;
using Npgsql;

namespace ExchangeGateway.Events;

/// <summary>
/// Push delivery (RFC 8935). The table is the queue: each round claims a batch of due obligations, round robin across
/// the sites that take pushes, with FOR UPDATE SKIP LOCKED and leases it (leased_until, a heap-only update), so any
/// number of nodes share the work without sending twice, and a node that dies mid-batch only delays its batch by the
/// lease. A lane's first two claims are transactions of their own; after that each claim rides in the transaction that
/// records an earlier batch's outcomes (one statement) and its audit event, which commits within milliseconds.
/// Deliveries run concurrently, capped overall and per site.
/// </summary>
[AutomaticRetry(Attempts = Jobs.RetryAttempts)]
public sealed class EventDispatchJob(
    IServiceScopeFactory scopes, IHttpClientFactory httpClients, EventTokens tokens, PushEndpointPolicy endpoints, TimeProvider time,
    IOptions<DeliveryOptions> options, DeliveryCaps caps, GatewayMetrics metrics, ILogger<EventDispatchJob> logger)
{
    public const string HttpClientName = "push-delivery";

    private const string SetMediaType = "application/secevent+jwt";

    /// <summary>Runs rounds until nothing is due or the run time is spent; returns how many events were delivered.</summary>
    public async Task<int> RunAsync(CancellationToken cancellationToken)
    {
        var delivered = 0;
        var clock = Stopwatch.StartNew();
        var pauses = new SitePauses();
        await Parallel.ForAsync(0, options.Value.Lanes, cancellationToken, async (_, ct) =>
        {
            await using var scope = scopes.CreateAsyncScope();
            var lane = new Lane(scope.ServiceProvider.GetRequiredService<GatewayDbContext>(), scope.ServiceProvider.GetRequiredService<AuditTrail>());
            Interlocked.Add(ref delivered, await RunLaneAsync(lane, clock, pauses, ct));
        });
        return delivered;
    }

    /// <summary>A lane's own connection (through its context) and audit writer.</summary>
    private sealed record Lane(GatewayDbContext Db, AuditTrail Audit);

    /// <summary>
    /// One lane's rounds. Rounds overlap: the next batch is claimed and starts going out while the current one is still on
    /// the wire, sharing the node's caps on concurrent deliveries (overall and per site), so the slowest deliveries of a
    /// batch do not leave the others idle. The lane's connection does one thing at a time; at most two of its batches are
    /// out at once, and a claimed batch waits at most a few batches' delivery time for its turn, well within its lease.
    /// </summary>
    private async Task<int> RunLaneAsync(Lane lane, Stopwatch clock, SitePauses pauses, CancellationToken cancellationToken)
    {
        var delivered = 0;
        var batch = await ClaimAsync(lane, cancellationToken);
        if (batch.Count == 0)
        {
            return 0;
        }

        var delivering = DeliverAsync(batch, pauses, cancellationToken);
        Task<Outcome[]>? nextDelivering = null;
        try
        {
            var next = await ClaimIfTimeLeftAsync(lane, clock, cancellationToken);
            nextDelivering = next.Count > 0 ? DeliverAsync(next, pauses, cancellationToken) : null;
            while (true)
            {
                var outcomes = await delivering;
                // The batch after next is claimed in the record's transaction: one commit (and WAL flush) per batch, not two.
                var claimAfter = nextDelivering is not null && TimeLeft(clock, cancellationToken);
                var (recorded, after) = await RecordAsync(lane, batch, outcomes, claimAfter, cancellationToken);
                delivered += recorded;
                if (nextDelivering is null)
                {
                    return delivered;
                }

                var afterDelivering = after.Count > 0 ? DeliverAsync(after, pauses, cancellationToken) : null;
                (batch, delivering, next, nextDelivering) = (next, nextDelivering, after, afterDelivering);
            }
        }
        finally
        {
            // A lane that fails (its record, its claim) lets its batches on the wire finish first: they hold the run's
            // delivery slots, which are disposed when the run ends. Their rows are pushed again after the lease.
            await Task.WhenAll(new[] { delivering, nextDelivering }.OfType<Task<Outcome[]>>().Select(t => t.ContinueWith(_ => { }, TaskScheduler.Default)));
        }
    }

    private bool TimeLeft(Stopwatch clock, CancellationToken cancellationToken) =>
        clock.Elapsed < options.Value.MaxRunTime && !cancellationToken.IsCancellationRequested;

    private async Task<List<ObligationToSend>> ClaimIfTimeLeftAsync(Lane lane, Stopwatch clock, CancellationToken cancellationToken) =>
        TimeLeft(clock, cancellationToken) ? await ClaimAsync(lane, cancellationToken) : [];

    private async Task<List<ObligationToSend>> ClaimAsync(Lane lane, CancellationToken cancellationToken)
    {
        // Open for the claim only: between statements the lane's batches are on the wire, and the connection serves requests.
        await lane.Db.Database.OpenConnectionAsync(cancellationToken);
        try
        {
            return await ClaimAsync((NpgsqlConnection)lane.Db.Database.GetDbConnection(), null, cancellationToken);
        }
        finally
        {
            await lane.Db.Database.CloseConnectionAsync();
        }
    }

    private async Task<List<ObligationToSend>> ClaimAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, CancellationToken cancellationToken)
    {
        var settings = options.Value;
        var now = time.GetUtcNow();
        // As stored (microseconds): the record matches it to know the lease is still this run's.
        var leaseEnd = (now + settings.Lease).TruncateToMicroseconds();
        await using var command = new NpgsqlCommand(ClaimSql, connection, transaction)
        {
            Parameters =
            {
                new() { Value = now }, new() { Value = settings.BatchSize }, new() { Value = leaseEnd },
                // A site's share of a batch: what its concurrency cap sends in a few rounds (the rest waits for the next batch).
                new() { Value = Math.Min(settings.BatchSize, settings.MaxConcurrentPerRecipient * 8) },
            },
        };
        var batch = new List<ObligationToSend>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            // The columns come in the record's order.
            batch.Add(new ObligationToSend(
                reader.GetInt64(0), reader.GetGuid(1), reader.GetGuid(2), reader.GetString(3), reader.GetGuid(4), reader.GetString(5),
                reader.GetString(6), reader.GetString(7), reader.GetFieldValue<DateTimeOffset>(8), reader.GetFieldValue<DateTimeOffset>(9),
                reader.GetInt32(10), reader.IsDBNull(11) ? null : new Uri(reader.GetString(11)), leaseEnd));
        }

        return batch;
    }

    // Only events not delivered meanwhile (a confirmation implies delivery, so delivered_at is null exactly while the
    // status is Pending). A failure is recorded only while the lease is still this run's (leased_until is its lease end):
    // a row another run claimed again after the lease ran out is that run's to schedule. Said without the status
    // on purpose: "status = 'Pending'" is the push queue index's predicate, and right after a burst of new obligations
    // (a sweep), before autovacuum has analysed them, the planner took that index to hash-join every pending row: 480 ms
    // per batch instead of 140, until the statistics caught up.
    private async Task<(int Delivered, List<ObligationToSend> Claimed)> RecordAsync(
        Lane lane, List<ObligationToSend> batch, Outcome[] outcomes, bool claimNext, CancellationToken cancellationToken)
    {
        await using var transaction = await lane.Db.Database.BeginTransactionAsync(cancellationToken);
        var connection = (NpgsqlConnection)lane.Db.Database.GetDbConnection();
        await using var update = new NpgsqlCommand(
            """
            UPDATE erasure_obligations o SET
                status = CASE WHEN u.delivered THEN 'Delivered' ELSE o.status END,
                delivered_at = CASE WHEN u.delivered THEN u.at ELSE o.delivered_at END,
                next_attempt_at = CASE WHEN u.delivered THEN o.next_attempt_at ELSE u.at END,
                leased_until = NULL,
                attempts = CASE WHEN u.attempted THEN o.attempts ELSE o.attempts - 1 END,
                last_error = CASE WHEN u.attempted THEN u.error ELSE o.last_error END
            FROM unnest($1::bigint[], $2::boolean[], $3::timestamptz[], $4::text[], $5::boolean[], $6::timestamptz[])
                AS u(id, delivered, at, error, attempted, lease)
            WHERE o.id = u.id AND o.delivered_at IS NULL AND (u.delivered OR o.leased_until = u.lease)
            RETURNING o.id, u.delivered
            """,
            connection,
            (NpgsqlTransaction)transaction.GetDbTransaction())
        {
            Parameters =
            {
                new() { Value = batch.Select(o => o.Id).ToArray() },
                new() { Value = outcomes.Select(o => o.Delivered).ToArray() },
                new() { Value = outcomes.Select(o => o.At).ToArray() },
                new() { Value = outcomes.Select(o => o.Error).ToArray(), NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Array | NpgsqlTypes.NpgsqlDbType.Text },
                new() { Value = outcomes.Select(o => o.Attempted).ToArray() },
                new() { Value = batch.Select(o => o.LeaseEnd!.Value).ToArray() },
            },
        };
        var delivered = new HashSet<long>();
        var recorded = new HashSet<long>();
        await using (var reader = await update.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                recorded.Add(reader.GetInt64(0));
                if (reader.GetBoolean(1))
                {
                    delivered.Add(reader.GetInt64(0));
                }
            }
        }

        // A site that said when to come back, or could not be reached in time, is held until then: one row per site, which
        // every claim (any run, any node) reads, so its other events, new ones included, wait without being rewritten.
        // Only on an answer recorded under this run's lease: a site whose delivery was changed meanwhile (its leases ended)
        // is not held for what its old endpoint said. Upserted in site order, so two lanes take the rows in the same order.
        var holds = batch.Zip(outcomes).Where(p => p.Second.HoldSiteUntil is not null && recorded.Contains(p.First.Id)).GroupBy(p => p.First.RecipientId)
            .Select(g => (Site: g.Key, Until: g.Max(p => p.Second.HoldSiteUntil!.Value))).OrderBy(h => h.Site).ToList();
        if (holds.Count > 0)
        {
            await using var hold = new NpgsqlCommand(
                """
                INSERT INTO push_holds AS h (recipient_id, held_until)
                SELECT site, until FROM unnest($1::uuid[], $2::timestamptz[]) AS u(site, until) ORDER BY site
                ON CONFLICT (recipient_id) DO UPDATE SET held_until = greatest(h.held_until, excluded.held_until)
                """,
                connection,
                (NpgsqlTransaction)transaction.GetDbTransaction())
            {
                Parameters = { new() { Value = holds.Select(h => h.Site).ToArray() }, new() { Value = holds.Select(h => h.Until).ToArray() } },
            };
            await hold.ExecuteNonQueryAsync(cancellationToken);
        }

        // Before the audit append, which takes the chain lock: the lock is held from there to the commit.
        var claimed = claimNext ? await ClaimAsync(connection, (NpgsqlTransaction)transaction.GetDbTransaction(), cancellationToken) : [];

        // One event per site per batch, naming every jti it took: a row per delivery made the audit insert a fifth of the
        // batch's database time, and the obligation rows already keep each event's kind, cause and delivery time.
        await lane.Audit.AppendAsync(
            batch.Where(o => delivered.Contains(o.Id)).GroupBy(o => o.ClientId)
                .Select(site => ErasureDeliveries.AuditEntry(ActorKinds.System, "dispatcher", site.Key, "push", site.Select(o => o.Jti))).ToList(),
            cancellationToken);
        await transaction.CommitAsync(cancellationToken);

        metrics.EventsDelivered.Add(delivered.Count);
        var failed = batch.Count - delivered.Count;
        if (failed > 0)
        {
            logger.LogInformation("Dispatch round: {Delivered} delivered, {Failed} to retry", delivered.Count, failed);
        }

        return (delivered.Count, claimed);
    }

    /// <summary>
    /// Claims and leases a batch: $1 now, $2 batch size, $3 lease end, $4 a site's share of the batch. Returns id, jti,
    /// recipient id, client id, consent id, pairwise id, kind, cause, confirm-before, attempts, push endpoint.
    /// </summary>
    internal const string ClaimSql = """
        WITH candidates AS (
            SELECT o.id, o.next_attempt_at, row_number() OVER (PARTITION BY r.id ORDER BY o.next_attempt_at) AS turn
            FROM recipients r
            CROSS JOIN LATERAL (
                SELECT o.id, o.next_attempt_at FROM erasure_obligations o
                WHERE o.recipient_id = r.id AND o.status = 'Pending' AND o.next_attempt_at <= $1
                  AND (o.leased_until IS NULL OR o.leased_until <= $1)
                ORDER BY o.next_attempt_at
                LIMIT $4
                FOR UPDATE SKIP LOCKED) o
            WHERE r.delivery_mode = 'Push' AND NOT EXISTS (SELECT 1 FROM push_holds h WHERE h.recipient_id = r.id AND h.held_until > $1)),
        -- Round robin across sites, oldest first within each: every site's deliveries start in every batch.
        due AS (SELECT id FROM candidates ORDER BY turn, next_attempt_at LIMIT $2)
        UPDATE erasure_obligations o SET leased_until = $3, attempts = o.attempts + 1
        FROM due, recipients r
        WHERE o.id = due.id AND r.id = o.recipient_id
        RETURNING o.id, o.jti, o.recipient_id, r.client_id, o.consent_id, o.pairwise_id, o.kind, o.cause, o.created_at, o.confirm_before, o.attempts, r.push_endpoint
        """;

    private async Task<Outcome[]> DeliverAsync(List<ObligationToSend> batch, SitePauses pauses, CancellationToken cancellationToken)
    {
        var client = httpClients.CreateClient(HttpClientName);
        return await Task.WhenAll(batch.Select(async obligation =>
        {
            // The site's slot first: a delivery queued behind a busy site must not sit on one of the overall slots.
            var site = caps.For(obligation.RecipientId);
            await site.WaitAsync(cancellationToken);
            try
            {
                await caps.Overall.WaitAsync(cancellationToken);
                try
                {
                    // Behind a slow site, a delivery can wait for its slot until its lease is nearly out. Started then, it
                    // could still be on the wire when another run claims the row again and pushes it a second time; it is
                    // handed back instead, due at once and not counted as an attempt.
                    var now = time.GetUtcNow();
                    if (now + options.Value.AttemptTimeout > obligation.LeaseEnd)
                    {
                        return new Outcome(false, now, null, Attempted: false);
                    }

                    // A site that asked for a wait (Retry-After), or did not answer in time, or could not be reached: its
                    // other events wait too, handed back unattempted, rather than each spending an attempt timeout on the
                    // site's slots while the batch, and every other site's events in it, wait to be recorded.
                    if (pauses.PausedUntil(obligation.RecipientId) is { } until && until > now)
                    {
                        return new Outcome(false, until, null, Attempted: false);
                    }

                    var outcome = await DeliverOneAsync(client, obligation, cancellationToken);
                    if (outcome.HoldSiteUntil is { } hold)
                    {
                        pauses.Pause(obligation.RecipientId, hold);
                    }

                    return outcome;
                }
                finally
                {
                    caps.Overall.Release();
                }
            }
            finally
            {
                site.Release();
            }
        }));
    }

    /// <summary>The sites a run found down or busy (Retry-After, a timeout, no connection), which it tries no more until then.</summary>
    private sealed class SitePauses
    {
        private readonly ConcurrentDictionary<Guid, DateTimeOffset> _paused = new();

        public void Pause(Guid recipientId, DateTimeOffset until) =>
            _paused.AddOrUpdate(recipientId, until, (_, earlier) => earlier > until ? earlier : until);

        public DateTimeOffset? PausedUntil(Guid recipientId) => _paused.TryGetValue(recipientId, out var until) ? until : null;
    }

    private async Task<Outcome> DeliverOneAsync(HttpClient client, ObligationToSend obligation, CancellationToken cancellationToken)
    {
        if (obligation.PushEndpoint is null)
        {
            return Retry(obligation, "no push endpoint registered", DeliveryError.NoEndpoint);
        }

        // The address is judged again on connect (PushEndpointPolicy.ConnectAsync); the URL's form here, under today's rules.
        if (endpoints.CheckForm(obligation.PushEndpoint) is { } fault)
        {
            return Retry(obligation, $"refused: the push endpoint {fault}", DeliveryError.EndpointRefused);
        }

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(options.Value.AttemptTimeout);
        try
        {
            // Signed inside the try: a signing fault is this delivery's failed attempt (recorded, with its reason), not the
            // batch's, which would leave every row of it to the lease with nothing said.
            byte[] set;
            try
            {
                set = tokens.CreateAscii(obligation, time.GetUtcNow());
            }
            catch (Exception e) when (e is System.Security.Cryptography.CryptographicException or InvalidCastException or InvalidOperationException)
            {
                return Retry(obligation, $"the gateway could not sign the event: {e.GetType().Name}", DeliveryError.Signing);
            }

            // Headers given in their final form (Accept is the client's default): parsing them back per request showed up in
            // the dispatcher's profile.
            using var request = new HttpRequestMessage(HttpMethod.Post, obligation.PushEndpoint) { Content = new ByteArrayContent(set) };
            request.Content.Headers.TryAddWithoutValidation("Content-Type", SetMediaType);
            request.Content.Headers.ContentLength = set.Length;
            using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token);
            // RFC 8935 §2.2: a receiver that took the SET answers 202. Another success (a parked domain's 200, a catch-all
            // server's 204) says nothing about the SET, so it is retried like any other answer, not counted as delivered.
            if (response.StatusCode == HttpStatusCode.Accepted)
            {
                return new Outcome(true, time.GetUtcNow(), null);
            }

            if (response.StatusCode == HttpStatusCode.BadRequest)
            {
                // RFC 8935 §2.4: the receiver says what was wrong with the SET; keep its word, not ours.
                var error = await ReadSetErrorAsync(response, timeout.Token);
                var rejected = Retry(obligation, $"rejected: {error}", DeliveryError.Http(response.StatusCode));
                if (!SetError.IsAboutTheReceiver(error))
                {
                    return rejected;
                }

                // The site's set-up refuses every SET alike: its other events wait, handed back unattempted, instead of each
                // being pushed and refused. For the schedule's first step, as when the site is down, not for the refused
                // event's own back-off: an event refused after a day of failures held the site's new erasure events, with
                // their 72-hour deadlines, for another day after the site had mended its keys.
                var heldUntil = SiteRetry();
                logger.LogWarning("Recipient {RecipientId} rejects pushed SETs ({Err}): the site is held until {HeldUntil}", obligation.RecipientId, error, heldUntil);
                return rejected with { HoldSiteUntil = heldUntil };
            }

            if (response.Headers.RetryAfter is { } retryAfter && (int)response.StatusCode is 429 or 503)
            {
                // The site's word is a floor, never a shortcut: "Retry-After: 0" (or a date gone by) would otherwise have the
                // gateway knock every second for ever. Its event waits at least its own back-off, the site's other events
                // at least the schedule's first step, both with their jitter.
                var wait = retryAfter.Delta ?? (retryAfter.Date - time.GetUtcNow()) ?? TimeSpan.Zero;
                wait = wait > TimeSpan.FromDays(1) ? TimeSpan.FromDays(1) : wait;
                var now = time.GetUtcNow();
                var backoff = options.Value.Backoff(obligation.Attempts, Random.Shared);
                var siteBackoff = options.Value.Backoff(0, Random.Shared);
                // An attempt that failed like any other, whatever the site's reason: counted with the failures.
                Failed(DeliveryError.Http(response.StatusCode));
                return new Outcome(false, now + (wait > backoff ? wait : backoff), $"HTTP {(int)response.StatusCode}, retry after {wait.TotalSeconds:0}s",
                    HoldSiteUntil: now + (wait > siteBackoff ? wait : siteBackoff));
            }

            return Retry(obligation, $"HTTP {(int)response.StatusCode}", DeliveryError.Http(response.StatusCode));
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return Retry(obligation, "timed out", DeliveryError.Timeout) with { HoldSiteUntil = SiteRetry() };
        }
        catch (HttpRequestException e)
        {
            // The message names the endpoint's host and the socket error, never personal data.
            return (e.InnerException is PushEndpointRefusedException refused
                    ? Retry(obligation, refused.Message, DeliveryError.EndpointRefused)
                    : Retry(obligation, $"connection failed: {e.HttpRequestError}", DeliveryError.Connection))
                with { HoldSiteUntil = SiteRetry() };
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // Whatever one site's answer does, it is that site's failed attempt, not the batch's: the other sites' outcomes
            // in the batch are recorded, not pushed again after the lease.
            return Retry(obligation, $"unexpected answer: {e.GetType().Name}", DeliveryError.Unexpected);
        }
    }

    /// <summary>
    /// When a site that timed out or could not be reached is tried again: the schedule's first step, whatever the attempts
    /// of the event that found it down (an old event's long back-off would hold the site's new events for a day).
    /// </summary>
    private DateTimeOffset SiteRetry() => time.GetUtcNow() + options.Value.Backoff(0, Random.Shared);

    private Outcome Retry(ObligationToSend obligation, string error, string errorType)
    {
        Failed(errorType);
        return new Outcome(false, time.GetUtcNow() + options.Value.Backoff(obligation.Attempts, Random.Shared), error);
    }

    private void Failed(string errorType) => metrics.EventDeliveryFailures.Add(1, new KeyValuePair<string, object?>(GatewayMetrics.ErrorType, errorType));

    /// <summary>
    /// Why an attempt failed, as the delivery failures' <c>error.type</c>: a few fixed words, so that a site that is down, a
    /// site refusing the SET and the gateway's own signing fault are told apart, never the site, the endpoint or its answer.
    /// </summary>
    private static class DeliveryError
    {
        public const string NoEndpoint = "no_endpoint";
        public const string EndpointRefused = "endpoint_refused";
        public const string Signing = "signing";
        public const string Timeout = "timeout";
        public const string Connection = "connection";
        public const string Unexpected = "unexpected";

        /// <summary>The status's class (<c>http_4xx</c>, <c>http_5xx</c>…; HttpClient takes only three-digit codes).</summary>
        public static string Http(HttpStatusCode status) => $"http_{(int)status / 100}xx";
    }

    /// <summary>
    /// The receiver's RFC 8935 error code, read from at most <see cref="MaxErrorBody"/> bytes: the body is the site's, and
    /// it may be anything (an array, a number for "err", a gigabyte stream, a bogus charset).
    /// </summary>
    private static async Task<string> ReadSetErrorAsync(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        var buffer = new byte[MaxErrorBody];
        var length = 0;
        await using (var body = await response.Content.ReadAsStreamAsync(cancellationToken))
        {
            int read;
            while (length < buffer.Length && (read = await body.ReadAsync(buffer.AsMemory(length), cancellationToken)) > 0)
            {
                length += read;
            }
        }

        try
        {
            using var error = JsonDocument.Parse(buffer.AsMemory(0, length));
            return error.RootElement.ValueKind == JsonValueKind.Object && error.RootElement.TryGetProperty("err", out var err)
                ? err.ValueKind == JsonValueKind.String ? SetError.Code(err.GetString()!) : "err is not a string"
                : "no err member";
        }
        catch (JsonException)
        {
            return length == MaxErrorBody ? "error body too long" : "unreadable error body";
        }
    }

    private const int MaxErrorBody = 4096;

    /// <summary>
    /// <paramref name="HoldSiteUntil"/>: the answer is about the site, not this event (Retry-After on a 429 or 503, a timeout,
    /// a connection that failed), so all its events wait until then.
    /// </summary>
    private sealed record Outcome(bool Delivered, DateTimeOffset At, string? Error, bool Attempted = true, DateTimeOffset? HoldSiteUntil = null);
}
