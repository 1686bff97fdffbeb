using System.Security.Cryptography;
using System.Text.Json;
using ExchangeGateway.Audit;
using ExchangeGateway.Consents;
using ExchangeGateway.Cvs;
using ExchangeGateway.Data;
using ExchangeGateway.Hosting;
using ExchangeGateway.Recipients;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using Microsoft.Extensions.Options;
using Npgsql;
using NpgsqlTypes;

namespace ExchangeGateway.Exchange;

/// <summary>
/// An entry of a recipient's feed: a CV it may hold (<c>kind</c> "cv", with the document) or a withdrawal
/// (<c>kind</c> "withdrawal", with the cause and no content) for a CV it received and may no longer keep.
/// </summary>
public sealed record SharedCvItem(string Id, string Kind, int? Version, DateTimeOffset? RefreshedAt, JsonElement? Document, string? Cause);

/// <summary><c>nextCursor</c> is null once the feed is caught up; <c>resumeCursor</c> is where to ask again later.</summary>
public sealed record SharedCvPage(IReadOnlyList<SharedCvItem> Items, string? NextCursor, string ResumeCursor);

/// <summary>
/// What recipients pull. Availability is decided from live data on every call (never from the token), and every document
/// is written to the disclosure ledger and the audit log, in one transaction, before any byte of it is sent.
/// </summary>
public sealed class SharedCvFeed(
    GatewayDbContext db, CvSealer sealer, AuditTrail audit, IOptions<FreshnessOptions> freshness, TimeProvider time, GatewayMetrics metrics)
{
    private const string Columns = """
        c.id, c.pairwise_id, c.state, c.end_cause, c.feed_position, c.seeker_id,
        v.version, v.refreshed_at, v.state, v.sealed, k.wrapped_key,
        EXISTS (SELECT 1 FROM disclosures d WHERE d.consent_id = c.id) AS disclosed, c.expires_at
        FROM consents c
        LEFT JOIN cvs v ON v.seeker_id = c.seeker_id
        LEFT JOIN seeker_keys k ON k.seeker_id = c.seeker_id
        """;

    public async Task<SharedCvPage> ReadPageAsync(Recipient recipient, long after, int limit, Func<long, string> cursorOf, CancellationToken cancellationToken)
    {
        var rows = await QueryAsync(
            $"SELECT {Columns} WHERE c.recipient_id = $1 AND c.feed_position > $2 ORDER BY c.feed_position LIMIT $3",
            [new() { Value = recipient.Id }, new() { Value = after }, new() { Value = limit }],
            cancellationToken);
        var items = await DiscloseAsync(recipient, rows, cancellationToken);
        var last = rows.Count > 0 ? rows[^1].Position : after;
        return new SharedCvPage(items, rows.Count == limit ? cursorOf(last) : null, cursorOf(last));
    }

    /// <summary>One CV, or null: the same null whether the id never existed, is another site's, or is no longer available.</summary>
    public async Task<SharedCvItem?> ReadOneAsync(Recipient recipient, string pairwiseId, CancellationToken cancellationToken)
    {
        if (pairwiseId.Length > 40)
        {
            return null;
        }

        var rows = await QueryAsync(
            $"SELECT {Columns} WHERE c.recipient_id = $1 AND c.pairwise_id = $2",
            [new() { Value = recipient.Id }, new() { Value = pairwiseId }],
            cancellationToken);
        var items = await DiscloseAsync(recipient, rows, cancellationToken);
        return items.SingleOrDefault(i => i.Kind == "cv");
    }

    private async Task<List<FeedRow>> QueryAsync(string sql, NpgsqlParameter[] parameters, CancellationToken cancellationToken)
    {
        var connection = (NpgsqlConnection)db.Database.GetDbConnection();
        await db.Database.OpenConnectionAsync(cancellationToken);
        await using var command = new NpgsqlCommand(sql, connection);
        command.Parameters.AddRange(parameters);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var rows = new List<FeedRow>();
        while (await reader.ReadAsync(cancellationToken))
        {
            rows.Add(new FeedRow(
                reader.GetGuid(0), reader.GetString(1), Enum.Parse<ConsentState>(reader.GetString(2)),
                reader.IsDBNull(3) ? null : reader.GetString(3), reader.GetInt64(4), reader.IsDBNull(5) ? null : reader.GetString(5),
                reader.IsDBNull(6) ? null : reader.GetInt32(6), reader.IsDBNull(7) ? null : reader.GetFieldValue<DateTimeOffset>(7),
                reader.IsDBNull(8) ? null : Enum.Parse<CvState>(reader.GetString(8)),
                reader.IsDBNull(9) ? null : reader.GetFieldValue<byte[]>(9), reader.IsDBNull(10) ? null : reader.GetFieldValue<byte[]>(10),
                reader.GetBoolean(11), reader.GetFieldValue<DateTimeOffset>(12)));
        }

        return rows;
    }

    private async Task<List<SharedCvItem>> DiscloseAsync(Recipient recipient, List<FeedRow> rows, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        var freshSince = now - freshness.Value.MaxAge;
        var candidates = new List<(FeedRow Row, byte[] Document, byte[] Hash)>();
        var withdrawals = new Dictionary<Guid, SharedCvItem>();
        foreach (var row in rows)
        {
            if (IsAvailable(row, now, freshSince))
            {
                var document = CvSealer.Open(sealer.Unwrap(row.WrappedKey!), row.SeekerId!, row.Version!.Value, row.Sealed!);
                candidates.Add((row, document, SHA256.HashData(document)));
            }
            else if (row.Disclosed)
            {
                withdrawals[row.ConsentId] = new SharedCvItem(row.PairwiseId, "withdrawal", null, null, null, CauseOf(row, now, freshSince));
            }
        }

        var recorded = await RecordAsync(recipient, candidates, now, freshSince, cancellationToken);
        var items = new List<SharedCvItem>(rows.Count);
        foreach (var row in rows)
        {
            if (withdrawals.TryGetValue(row.ConsentId, out var withdrawal))
            {
                items.Add(withdrawal);
            }
            else if (recorded.TryGetValue(row.ConsentId, out var document))
            {
                using var parsed = JsonDocument.Parse(document);
                items.Add(new SharedCvItem(row.PairwiseId, "cv", row.Version, row.RefreshedAt, parsed.RootElement.Clone(), null));
            }
        }

        return items;
    }

    /// <summary>
    /// Ledger rows and audit events for a batch of documents in one transaction. Under the chain lock the availability is
    /// checked once more against committed data, so a revocation that committed meanwhile wins, and a revocation that
    /// commits after sees this disclosure in the ledger and chases it. Only what was recorded is returned (and sent).
    /// </summary>
    private async Task<Dictionary<Guid, byte[]>> RecordAsync(
        Recipient recipient, List<(FeedRow Row, byte[] Document, byte[] Hash)> candidates, DateTimeOffset now, DateTimeOffset freshSince,
        CancellationToken cancellationToken)
    {
        var recorded = new Dictionary<Guid, byte[]>();
        if (candidates.Count == 0)
        {
            return recorded;
        }

        await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
        await Locks.ChainAsync(db, cancellationToken);
        var connection = (NpgsqlConnection)db.Database.GetDbConnection();
        await using var insert = new NpgsqlCommand(
            """
            INSERT INTO disclosures (consent_id, recipient_id, seeker_id, cv_version, content_hash, disclosed_at)
            SELECT u.consent_id, c.recipient_id, c.seeker_id, u.version, u.hash, $4
            FROM unnest($1::uuid[], $2::int[], $3::bytea[]) AS u(consent_id, version, hash)
            JOIN consents c ON c.id = u.consent_id AND c.state = 'Active' AND c.expires_at > $4
            JOIN recipients r ON r.id = c.recipient_id AND r.status = 'Active'
            JOIN cvs v ON v.seeker_id = c.seeker_id AND v.version = u.version AND v.state <> 'Erased' AND v.refreshed_at > $5
            RETURNING id, consent_id, seeker_id, cv_version
            """,
            connection,
            (NpgsqlTransaction)transaction.GetDbTransaction())
        {
            Parameters =
            {
                new() { Value = candidates.Select(c => c.Row.ConsentId).ToArray() },
                new() { Value = candidates.Select(c => c.Row.Version!.Value).ToArray() },
                new() { Value = candidates.Select(c => c.Hash).ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Bytea },
                new() { Value = now },
                new() { Value = freshSince },
            },
        };

        var entries = new List<AuditEntry>(candidates.Count);
        var documents = candidates.ToDictionary(c => c.Row.ConsentId, c => c.Document);
        await using (var reader = await insert.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                var consentId = reader.GetGuid(1);
                recorded[consentId] = documents[consentId];
                entries.Add(new AuditEntry(ActorKinds.Recipient, recipient.ClientId, AuditActions.CvDisclosed, Outcomes.Success,
                    SeekerId: reader.GetString(2), Recipient: recipient.ClientId,
                    Details: new Dictionary<string, object?> { ["ledger"] = reader.GetInt64(0), ["version"] = reader.GetInt32(3) }));
            }
        }

        await audit.AppendAsync(entries, cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        metrics.CvsDisclosed.Add(recorded.Count);
        return recorded;
    }

    /// <summary>Promise 1, decided from live data: a lapsed consent or a stale CV is refused before any job has noticed.</summary>
    private static bool IsAvailable(FeedRow row, DateTimeOffset now, DateTimeOffset freshSince) =>
        row.State == ConsentState.Active && row.ExpiresAt > now && row.CvState is not null and not CvState.Erased && row.Sealed is not null
        && row.WrappedKey is not null && row.RefreshedAt > freshSince;

    private static string CauseOf(FeedRow row, DateTimeOffset now, DateTimeOffset freshSince) =>
        row.State != ConsentState.Active ? row.EndCause ?? ErasureCauses.ConsentRevoked
        : row.ExpiresAt <= now ? ErasureCauses.ConsentExpired
        : row.CvState is null or CvState.Erased || row.Sealed is null ? ErasureCauses.SubjectErased
        : row.RefreshedAt <= freshSince ? ErasureCauses.CvOffline
        : ErasureCauses.RecipientSuspended;

    private sealed record FeedRow(
        Guid ConsentId, string PairwiseId, ConsentState State, string? EndCause, long Position, string? SeekerId, int? Version,
        DateTimeOffset? RefreshedAt, CvState? CvState, byte[]? Sealed, byte[]? WrappedKey, bool Disclosed, DateTimeOffset ExpiresAt);
}
