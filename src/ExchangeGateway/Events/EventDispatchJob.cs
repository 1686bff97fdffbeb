using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using ExchangeGateway.Audit;
using ExchangeGateway.Data;
using ExchangeGateway.Hosting;
using ExchangeGateway.Recipients;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using Microsoft.Extensions.Options;
using Npgsql;

namespace ExchangeGateway.Events;

/// <summary>
/// Push delivery (RFC 8935). The table is the queue: each round claims a batch of due obligations with
/// FOR UPDATE SKIP LOCKED and leases it (next attempt pushed past the lease) in one short transaction, so any number
/// of nodes share the work without sending twice, and a node that dies mid-batch only delays its batch by the lease.
/// Deliveries run concurrently, capped overall and per site; outcomes are written back in one statement per batch.
/// </summary>
public sealed class EventDispatchJob(
    GatewayDbContext db, IHttpClientFactory httpClients, EventTokens tokens, AuditTrail audit, TimeProvider time,
    IOptions<DeliveryOptions> options, GatewayMetrics metrics, ILogger<EventDispatchJob> logger)
{
    public const string HttpClientName = "push-delivery";

    /// <summary>
    /// Runs rounds until nothing is due or the run time is spent; returns how many events were delivered. Rounds overlap:
    /// while one batch is on the wire, the previous batch's outcomes are recorded and the next batch is claimed, so the
    /// database round trips (claim, record, commit) hide behind the deliveries instead of stalling them. The job's one
    /// connection still does one thing at a time; a batch claimed ahead waits at most one batch's delivery time, well
    /// within its lease.
    /// </summary>
    public async Task<int> RunAsync(CancellationToken cancellationToken)
    {
        var delivered = 0;
        var clock = Stopwatch.StartNew();
        var batch = await ClaimAsync(cancellationToken);
        if (batch.Count == 0)
        {
            return 0;
        }

        var delivering = DeliverAsync(batch, cancellationToken);
        var next = await ClaimIfTimeLeftAsync(clock, cancellationToken);
        while (true)
        {
            var outcomes = await delivering;
            var nextDelivering = next.Count > 0 ? DeliverAsync(next, cancellationToken) : null;
            delivered += await RecordAsync(batch, outcomes, cancellationToken);
            if (nextDelivering is null)
            {
                return delivered;
            }

            var after = await ClaimIfTimeLeftAsync(clock, cancellationToken);
            (batch, delivering, next) = (next, nextDelivering, after);
        }
    }

    private async Task<List<ObligationToSend>> ClaimIfTimeLeftAsync(Stopwatch clock, CancellationToken cancellationToken) =>
        clock.Elapsed < options.Value.MaxRunTime && !cancellationToken.IsCancellationRequested ? await ClaimAsync(cancellationToken) : [];

    private async Task<List<ObligationToSend>> ClaimAsync(CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        var connection = (NpgsqlConnection)db.Database.GetDbConnection();
        await db.Database.OpenConnectionAsync(cancellationToken);
        await using var command = new NpgsqlCommand(
            """
            WITH due AS (
                SELECT o.id FROM erasure_obligations o
                JOIN recipients r ON r.id = o.recipient_id
                WHERE o.status = 'Pending' AND o.next_attempt_at <= $1 AND r.delivery_mode = 'Push'
                ORDER BY o.next_attempt_at
                LIMIT $2
                FOR UPDATE OF o SKIP LOCKED)
            UPDATE erasure_obligations o SET next_attempt_at = $3, attempts = o.attempts + 1
            FROM due, recipients r
            WHERE o.id = due.id AND r.id = o.recipient_id
            RETURNING o.id, o.jti, o.recipient_id, r.client_id, o.consent_id, o.pairwise_id, o.kind, o.cause, o.confirm_before, o.attempts, r.push_endpoint
            """,
            connection)
        {
            Parameters = { new() { Value = now }, new() { Value = options.Value.BatchSize }, new() { Value = now + options.Value.Lease } },
        };
        var batch = new List<ObligationToSend>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            batch.Add(new ObligationToSend(
                reader.GetInt64(0), reader.GetGuid(1), reader.GetGuid(2), reader.GetString(3), reader.GetGuid(4), reader.GetString(5),
                reader.GetString(6), reader.GetString(7), reader.GetFieldValue<DateTimeOffset>(8), reader.GetInt32(9),
                reader.IsDBNull(10) ? null : new Uri(reader.GetString(10))));
        }

        return batch;
    }

    private async Task<Outcome[]> DeliverAsync(List<ObligationToSend> batch, CancellationToken cancellationToken)
    {
        var client = httpClients.CreateClient(HttpClientName);
        using var overall = new SemaphoreSlim(options.Value.MaxConcurrentDeliveries);
        var perRecipient = batch.Select(o => o.RecipientId).Distinct()
            .ToDictionary(id => id, _ => new SemaphoreSlim(options.Value.MaxConcurrentPerRecipient));
        try
        {
            return await Task.WhenAll(batch.Select(async obligation =>
            {
                await overall.WaitAsync(cancellationToken);
                await perRecipient[obligation.RecipientId].WaitAsync(cancellationToken);
                try
                {
                    return await DeliverOneAsync(client, obligation, cancellationToken);
                }
                finally
                {
                    perRecipient[obligation.RecipientId].Release();
                    overall.Release();
                }
            }));
        }
        finally
        {
            foreach (var gate in perRecipient.Values)
            {
                gate.Dispose();
            }
        }
    }

    private async Task<Outcome> DeliverOneAsync(HttpClient client, ObligationToSend obligation, CancellationToken cancellationToken)
    {
        if (obligation.PushEndpoint is null)
        {
            return Retry(obligation, "no push endpoint registered");
        }

        var set = tokens.Create(obligation, time.GetUtcNow());
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(options.Value.AttemptTimeout);
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, obligation.PushEndpoint)
            {
                Content = new StringContent(set, System.Text.Encoding.ASCII),
            };
            request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/secevent+jwt");
            request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/json"));
            using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token);
            if (response.IsSuccessStatusCode)
            {
                return new Outcome(true, time.GetUtcNow(), null);
            }

            if (response.StatusCode == HttpStatusCode.BadRequest)
            {
                // RFC 8935 §2.4: the receiver says what was wrong with the SET; keep its word, not ours.
                var error = await ReadSetErrorAsync(response, timeout.Token);
                return Retry(obligation, $"rejected: {error}");
            }

            if (response.Headers.RetryAfter is { } retryAfter && (int)response.StatusCode is 429 or 503)
            {
                var wait = retryAfter.Delta ?? (retryAfter.Date - time.GetUtcNow()) ?? TimeSpan.Zero;
                wait = wait < TimeSpan.FromSeconds(1) ? TimeSpan.FromSeconds(1) : wait > TimeSpan.FromDays(1) ? TimeSpan.FromDays(1) : wait;
                return new Outcome(false, time.GetUtcNow() + wait, $"HTTP {(int)response.StatusCode}, retry after {wait.TotalSeconds:0}s");
            }

            return Retry(obligation, $"HTTP {(int)response.StatusCode}");
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return Retry(obligation, "timed out");
        }
        catch (HttpRequestException e)
        {
            // The message names the endpoint's host and the socket error, never personal data.
            return Retry(obligation, e.InnerException is PushEndpointRefusedException refused ? refused.Message : $"connection failed: {e.HttpRequestError}");
        }
    }

    private Outcome Retry(ObligationToSend obligation, string error)
    {
        metrics.EventDeliveryFailures.Add(1);
        return new Outcome(false, time.GetUtcNow() + options.Value.Backoff(obligation.Attempts, Random.Shared), error);
    }

    private static async Task<string> ReadSetErrorAsync(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        try
        {
            var body = await response.Content.ReadFromJsonAsync<JsonElement>(cancellationToken);
            return body.TryGetProperty("err", out var err) ? Truncate(err.GetString() ?? "unknown", 64) : "no err member";
        }
        catch (Exception e) when (e is JsonException or NotSupportedException or HttpRequestException)
        {
            return "unreadable error body";
        }
    }

    private async Task<int> RecordAsync(List<ObligationToSend> batch, Outcome[] outcomes, CancellationToken cancellationToken)
    {
        await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
        var connection = (NpgsqlConnection)db.Database.GetDbConnection();
        await using var update = new NpgsqlCommand(
            """
            UPDATE erasure_obligations o SET
                status = CASE WHEN u.delivered THEN 'Delivered' ELSE o.status END,
                delivered_at = CASE WHEN u.delivered THEN u.at ELSE o.delivered_at END,
                next_attempt_at = CASE WHEN u.delivered THEN o.next_attempt_at ELSE u.at END,
                last_error = u.error
            FROM unnest($1::bigint[], $2::boolean[], $3::timestamptz[], $4::text[]) AS u(id, delivered, at, error)
            WHERE o.id = u.id AND o.status = 'Pending'
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
            },
        };
        var delivered = new HashSet<long>();
        await using (var reader = await update.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                if (reader.GetBoolean(1))
                {
                    delivered.Add(reader.GetInt64(0));
                }
            }
        }

        await audit.AppendAsync(
            batch.Where(o => delivered.Contains(o.Id)).Select(o => new AuditEntry(
                ActorKinds.System, "dispatcher", AuditActions.ErasureDelivered, Outcomes.Success, Recipient: o.ClientId,
                Details: new Dictionary<string, object?> { ["jti"] = o.Jti, ["kind"] = o.Kind, ["cause"] = o.Cause, ["via"] = "push" })).ToList(),
            cancellationToken);
        await transaction.CommitAsync(cancellationToken);

        metrics.EventsDelivered.Add(delivered.Count);
        var failed = batch.Count - delivered.Count;
        if (failed > 0)
        {
            logger.LogInformation("Dispatch round: {Delivered} delivered, {Failed} to retry", delivered.Count, failed);
        }

        return delivered.Count;
    }

    private static string Truncate(string value, int length) => value.Length <= length ? value : value[..length];

    private sealed record Outcome(bool Delivered, DateTimeOffset At, string? Error);
}
