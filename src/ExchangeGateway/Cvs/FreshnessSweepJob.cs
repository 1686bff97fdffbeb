using ExchangeGateway.Audit;
using ExchangeGateway.Consents;
using ExchangeGateway.Data;
using ExchangeGateway.Events;
using ExchangeGateway.Hosting;
using Hangfire;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using Microsoft.Extensions.Options;
using Npgsql;

namespace ExchangeGateway.Cvs;

/// <summary>
/// Takes stale CVs offline, set-based: each batch claims up to <see cref="FreshnessOptions.SweepBatchSize"/> stale rows with
/// FOR UPDATE SKIP LOCKED (a seeker refreshing right now keeps their CV; another worker's or node's batch is skipped),
/// marks them offline, writes an obligation for every site holding a copy, moves the sites' feeds and records one audit
/// event per CV, all in one transaction. <see cref="Workers"/> batches run side by side: most of a batch's work needs no
/// lock, so one batch claims and writes while another holds the chain lock to commit.
/// The read path never relied on this job: a stale CV is refused from the moment it is stale.
/// </summary>
[AutomaticRetry(Attempts = Jobs.RetryAttempts)]
public sealed class FreshnessSweepJob(
    IServiceScopeFactory scopes, DispatchSignal dispatch, TimeProvider time, IOptions<FreshnessOptions> freshness, IOptions<ErasureOptions> erasure,
    GatewayMetrics metrics)
{
    public const int Workers = 2;

    private static readonly string ObligationColumns =
        "INSERT INTO erasure_obligations (jti, recipient_id, consent_id, pairwise_id, kind, cause, created_at, confirm_before, status, overdue, attempts, next_attempt_at)";

    // Outside the chain lock: the holders of the swept CVs (every active episode of their seekers), a cv-offline obligation
    // ($2 now, $3 deadline) for each that received the CV as far as this statement's snapshot shows, the newest ledger row
    // in that snapshot, and the holders, whose feeds the statement under the lock moves. Ledger ids are handed out and
    // committed under the chain lock, so every disclosure this statement could not see has a greater id.
    private static readonly string ObligationsSql = $"""
        WITH held AS MATERIALIZED (
            SELECT c.id, c.recipient_id, c.pairwise_id, c.seeker_id
            FROM unnest($1::text[]) AS s(seeker_id) JOIN consents c ON c.seeker_id = s.seeker_id AND c.state = 'Active'),
        written AS (
            {ObligationColumns}
            SELECT gen_random_uuid(), held.recipient_id, held.id, held.pairwise_id, '{EventKinds.ErasureRequired}', '{ErasureCauses.CvOffline}',
                   $2, $3, 'Pending', false, 0, $2
            FROM held WHERE EXISTS (SELECT 1 FROM disclosures d WHERE d.consent_id = held.id)
            RETURNING consent_id, recipient_id, jti)
        SELECT coalesce(x.seekers, ARRAY[]::text[]), coalesce(x.consents, ARRAY[]::uuid[]), coalesce(x.clients, ARRAY[]::text[]), coalesce(x.jtis, ARRAY[]::uuid[]),
               (SELECT coalesce(max(id), 0) FROM disclosures), (SELECT coalesce(array_agg(id), ARRAY[]::uuid[]) FROM held)
        FROM (SELECT array_agg(h.seeker_id) AS seekers, array_agg(w.consent_id) AS consents, array_agg(r.client_id) AS clients, array_agg(w.jti) AS jtis
              FROM written w JOIN held h ON h.id = w.consent_id JOIN recipients r ON r.id = w.recipient_id) AS x
        """;

    // Under the chain lock nothing more can be disclosed until commit: the holders' feeds ($1) move in commit order, and an
    // active episode of a swept seeker ($2) first disclosed after the statement above (ledger id above $5; only possible
    // from a node whose clock still saw the CV fresh) gets its obligation and its feed move too. Both come from the
    // statement above and the ledger's tail, not from looking the holders up again: that kept the lock twice as long.
    private static readonly string ConsequencesSql = $"""
        WITH late AS (
            {ObligationColumns}
            SELECT gen_random_uuid(), c.recipient_id, c.id, c.pairwise_id, '{EventKinds.ErasureRequired}', '{ErasureCauses.CvOffline}',
                   $3, $4, 'Pending', false, 0, $3
            FROM consents c
            WHERE c.id IN (SELECT d.consent_id FROM disclosures d WHERE d.id > $5)
              AND c.seeker_id = ANY($2::text[]) AND c.state = 'Active'
              AND NOT EXISTS (SELECT 1 FROM disclosures d WHERE d.consent_id = c.id AND d.id <= $5)
            RETURNING consent_id, recipient_id, jti),
        -- One array, not "= ANY($1) OR IN (late)": the OR made the planner scan the whole of feed_entries for every batch.
        -- Only episodes still running: one an untick ended since the holders were read has been moved by that end, and
        -- moving it again showed the site its withdrawal twice. Filtered inside the array (by the consents' key), not by a
        -- semi-join the planner may answer with a scan of all consents.
        moved AS (
            UPDATE feed_entries f SET position = nextval('feed_positions')
            WHERE f.consent_id = ANY(ARRAY(
                SELECT c.id FROM consents c WHERE c.id = ANY($1::uuid[] || ARRAY(SELECT consent_id FROM late)) AND c.state = 'Active')))
        SELECT coalesce(array_agg(c.seeker_id), ARRAY[]::text[]), coalesce(array_agg(l.consent_id), ARRAY[]::uuid[]), coalesce(array_agg(r.client_id), ARRAY[]::text[]),
               coalesce(array_agg(l.jti), ARRAY[]::uuid[])
        FROM late l JOIN consents c ON c.id = l.consent_id JOIN recipients r ON r.id = l.recipient_id
        """;

    /// <summary>Returns how many CVs went offline.</summary>
    public async Task<int> RunAsync(CancellationToken cancellationToken)
    {
        int total = 0, obligations = 0;
        try
        {
            await Parallel.ForAsync(0, Workers, cancellationToken, async (_, ct) =>
            {
                int swept;
                do
                {
                    (swept, var written) = await SweepBatchAsync(ct);
                    Interlocked.Add(ref total, swept);
                    Interlocked.Add(ref obligations, written);
                }
                while (swept == freshness.Value.SweepBatchSize && !ct.IsCancellationRequested);
            });
        }
        finally
        {
            // One dispatch for the whole sweep, not one per batch; the recurring dispatch would find them anyway.
            dispatch.After(obligations);
        }

        return total;
    }

    /// <summary>How many CVs went offline and how many obligations were written, committed.</summary>
    private async Task<(int Swept, int Obligations)> SweepBatchAsync(CancellationToken cancellationToken)
    {
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<GatewayDbContext>();
        var audit = scope.ServiceProvider.GetRequiredService<AuditTrail>();
        var now = time.GetUtcNow();
        var cutoff = now - freshness.Value.MaxAge;
        await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
        var connection = (NpgsqlConnection)db.Database.GetDbConnection();
        var npgsqlTransaction = (NpgsqlTransaction)transaction.GetDbTransaction();

        var seekers = new List<string>();
        await using (var stale = new NpgsqlCommand(
            """
            WITH stale AS (
                SELECT id FROM cvs WHERE state = 'Published' AND refreshed_at <= $1
                ORDER BY refreshed_at LIMIT $2 FOR UPDATE SKIP LOCKED)
            UPDATE cvs SET state = 'Offline' FROM stale WHERE cvs.id = stale.id
            RETURNING cvs.seeker_id
            """, connection, npgsqlTransaction)
        {
            Parameters = { new() { Value = cutoff }, new() { Value = freshness.Value.SweepBatchSize } },
        })
        await using (var reader = await stale.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                seekers.Add(reader.GetString(0));
            }
        }

        if (seekers.Count == 0)
        {
            return (0, 0);
        }

        var confirmBefore = Obligations.Deadline(now, erasure.Value.ConfirmWithin);
        // Every event written, by seeker, for the seeker's audit row: which site was told to delete, under which jti.
        var written = new Dictionary<string, List<WrittenObligation>>(StringComparer.Ordinal);
        void Collect(string[] seekerIds, Guid[] consents, string[] clients, Guid[] jtis)
        {
            for (var i = 0; i < jtis.Length; i++)
            {
                if (!written.TryGetValue(seekerIds[i], out var list))
                {
                    written[seekerIds[i]] = list = [];
                }

                list.Add(new WrittenObligation(consents[i], clients[i], jtis[i]));
            }
        }

        long ledgerSeen;
        Guid[] holders;
        await using (var write = new NpgsqlCommand(ObligationsSql, connection, npgsqlTransaction)
        {
            Parameters = { new() { Value = seekers.ToArray() }, new() { Value = now }, new() { Value = confirmBefore } },
        })
        {
            await using var reader = await write.ExecuteReaderAsync(cancellationToken);
            await reader.ReadAsync(cancellationToken);
            Collect(reader.GetFieldValue<string[]>(0), reader.GetFieldValue<Guid[]>(1), reader.GetFieldValue<string[]>(2), reader.GetFieldValue<Guid[]>(3));
            ledgerSeen = reader.GetInt64(4);
            holders = reader.GetFieldValue<Guid[]>(5);
        }

        // One round trip under the lock: the lock, the feeds and late obligations, the audit head.
        await using var consequences = new NpgsqlBatch(connection, npgsqlTransaction)
        {
            BatchCommands =
            {
                new NpgsqlBatchCommand($"SELECT pg_advisory_xact_lock({Locks.Chain})"),
                new NpgsqlBatchCommand(ConsequencesSql)
                {
                    Parameters =
                    {
                        new() { Value = holders }, new() { Value = seekers.ToArray() }, new() { Value = now }, new() { Value = confirmBefore },
                        new() { Value = ledgerSeen },
                    },
                },
                new NpgsqlBatchCommand(AuditTrail.HeadQuery),
            },
        };
        AuditTrail.Head head;
        await using (var reader = await consequences.ExecuteReaderAsync(cancellationToken))
        {
            await reader.NextResultAsync(cancellationToken);
            await reader.ReadAsync(cancellationToken);
            Collect(reader.GetFieldValue<string[]>(0), reader.GetFieldValue<Guid[]>(1), reader.GetFieldValue<string[]>(2), reader.GetFieldValue<Guid[]>(3));
            await reader.NextResultAsync(cancellationToken);
            head = await AuditTrail.ReadHeadResultAsync(reader, cancellationToken);
        }

        // One event per CV, not one per batch: a seeker's (pseudonymous) trail shows when their CV went offline, and which
        // sites were told to delete it.
        await audit.AppendAsync(
            seekers.Select(seeker => new AuditEntry(ActorKinds.System, "freshness-sweep", AuditActions.CvWentOffline, Outcomes.Success, SeekerId: seeker,
                Details: written.TryGetValue(seeker, out var events) ? new Dictionary<string, object?> { ["erasureEvents"] = Obligations.Listed(events) } : null)).ToList(),
            head, cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        metrics.CvsTakenOffline.Add(seekers.Count);
        return (seekers.Count, written.Values.Sum(list => list.Count));
    }
}
