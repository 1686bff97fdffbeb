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
using NpgsqlTypes;

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

    // The columns both writers fill, in the order the COPY below writes them.
    private const string ObligationColumnList =
        "jti, recipient_id, consent_id, pairwise_id, kind, cause, created_at, confirm_before, status, overdue, attempts, next_attempt_at";

    private const string ObligationColumns = $"INSERT INTO erasure_obligations ({ObligationColumnList})";

    // Outside the chain lock, in one snapshot: the holders of the swept CVs (every active episode of their seekers), whether
    // each received the CV as far as this snapshot shows, and the newest ledger row in it; the statement under the lock
    // moves the holders' feeds. Ledger ids are handed out and committed under the chain lock, so every disclosure this
    // statement could not see has a greater id. One row even when nothing is held, for the ledger's tail.
    private const string HoldersSql = """
        WITH held AS MATERIALIZED (
            SELECT c.id, c.recipient_id, c.pairwise_id, c.seeker_id
            FROM unnest($1::text[]) AS s(seeker_id) JOIN consents c ON c.seeker_id = s.seeker_id AND c.state = 'Active')
        SELECT seen.id, h.id, h.recipient_id, h.pairwise_id, h.seeker_id, h.client_id,
               EXISTS (SELECT 1 FROM disclosures d WHERE d.consent_id = h.id)
        FROM (SELECT coalesce(max(id), 0) AS id FROM disclosures) AS seen
        LEFT JOIN (SELECT held.*, r.client_id FROM held JOIN recipients r ON r.id = held.recipient_id) AS h ON true
        """;

    // The obligations of the holders that received the CV go in by binary COPY: written row by row, by INSERT … SELECT,
    // they were half of the sweep's database time (COPY packs many rows into one heap and WAL record).
    private const string ObligationsCopy = $"COPY erasure_obligations ({ObligationColumnList}) FROM STDIN (FORMAT BINARY)";

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

        long ledgerSeen = 0;
        var holders = new List<Guid>();
        var chased = new List<(Guid Consent, Guid Recipient, string PairwiseId, string SeekerId, string ClientId)>();
        await using (var read = new NpgsqlCommand(HoldersSql, connection, npgsqlTransaction) { Parameters = { new() { Value = seekers.ToArray() } } })
        await using (var reader = await read.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                ledgerSeen = reader.GetInt64(0);
                if (reader.IsDBNull(1))
                {
                    continue;
                }

                holders.Add(reader.GetGuid(1));
                if (reader.GetBoolean(6))
                {
                    chased.Add((reader.GetGuid(1), reader.GetGuid(2), reader.GetString(3), reader.GetString(4), reader.GetString(5)));
                }
            }
        }

        if (chased.Count > 0)
        {
            var jtis = Obligations.NewJtis(chased.Count);
            await using (var copy = await connection.BeginBinaryImportAsync(ObligationsCopy, cancellationToken))
            {
                for (var i = 0; i < chased.Count; i++)
                {
                    var (consent, recipient, pairwiseId, _, _) = chased[i];
                    await copy.StartRowAsync(cancellationToken);
                    await copy.WriteAsync(jtis[i], NpgsqlDbType.Uuid, cancellationToken);
                    await copy.WriteAsync(recipient, NpgsqlDbType.Uuid, cancellationToken);
                    await copy.WriteAsync(consent, NpgsqlDbType.Uuid, cancellationToken);
                    await copy.WriteAsync(pairwiseId, NpgsqlDbType.Varchar, cancellationToken);
                    await copy.WriteAsync(EventKinds.ErasureRequired, NpgsqlDbType.Varchar, cancellationToken);
                    await copy.WriteAsync(ErasureCauses.CvOffline, NpgsqlDbType.Varchar, cancellationToken);
                    await copy.WriteAsync(now, NpgsqlDbType.TimestampTz, cancellationToken);
                    await copy.WriteAsync(confirmBefore, NpgsqlDbType.TimestampTz, cancellationToken);
                    await copy.WriteAsync(nameof(ObligationStatus.Pending), NpgsqlDbType.Varchar, cancellationToken);
                    await copy.WriteAsync(false, NpgsqlDbType.Boolean, cancellationToken);
                    await copy.WriteAsync(0, NpgsqlDbType.Integer, cancellationToken);
                    await copy.WriteAsync(now, NpgsqlDbType.TimestampTz, cancellationToken);
                }

                await copy.CompleteAsync(cancellationToken);
            }

            Collect(
                chased.Select(c => c.SeekerId).ToArray(), chased.Select(c => c.Consent).ToArray(), chased.Select(c => c.ClientId).ToArray(), jtis);
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
                        new() { Value = holders.ToArray() }, new() { Value = seekers.ToArray() }, new() { Value = now }, new() { Value = confirmBefore },
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
