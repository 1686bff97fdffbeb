using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization;
using ExchangeGateway.Audit;
using ExchangeGateway.Consents;
using ExchangeGateway.Cvs;
using ExchangeGateway.Data;
using ExchangeGateway.Events;
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
public sealed record SharedCvItem(string Id, string Kind, int? Version, DateTimeOffset? RefreshedAt, CvDocument? Document, string? Cause);

/// <summary><c>nextCursor</c> is null once the feed is caught up; <c>resumeCursor</c> is where to ask again later.</summary>
public sealed record SharedCvPage(IReadOnlyList<SharedCvItem> Items, string? NextCursor, string ResumeCursor);

/// <summary>
/// A CV document as the seeker's key opened it: UTF-8 JSON that was validated and normalised when it was written (and that
/// AES-GCM proves unchanged since), so it is written into the response as it is, without being parsed and re-encoded.
/// </summary>
[JsonConverter(typeof(CvDocumentConverter))]
public sealed class CvDocument(byte[] utf8)
{
    public ReadOnlyMemory<byte> Utf8 { get; } = utf8;
}

public sealed class CvDocumentConverter : JsonConverter<CvDocument>
{
    public override CvDocument Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        using var document = JsonDocument.ParseValue(ref reader);
        return new CvDocument(JsonSerializer.SerializeToUtf8Bytes(document.RootElement));
    }

    public override void Write(Utf8JsonWriter writer, CvDocument value, JsonSerializerOptions options) =>
        writer.WriteRawValue(value.Utf8.Span, skipInputValidation: true);
}

/// <summary>
/// What recipients pull. Availability is decided from live data on every call (never from the token), and every document
/// is written to the disclosure ledger and the audit log, in one transaction, before any byte of it is sent
/// (<see cref="DisclosureRecorder"/> groups the transactions of concurrent requests into one commit).
/// </summary>
public sealed class SharedCvFeed(
    GatewayDbContext db, CvSealer sealer, DisclosureRecorder recorder, IOptions<FreshnessOptions> freshness, TimeProvider time,
    GatewayMetrics metrics, ILogger<SharedCvFeed> logger)
{
    // Keep in step with scripts/bench, whose pgbench baselines run this same SQL. The fifth column is the feed position:
    // the page query reads it from feed_entries; a single CV has no use for it, and skips that join on the hot path.
    private const string Leading = "c.id, c.pairwise_id, c.state, c.end_cause";
    private const string Trailing = """
        c.seeker_id, v.version, v.refreshed_at, v.state, v.sealed, v.content_hash, k.wrapped_key,
        EXISTS (SELECT 1 FROM disclosures d WHERE d.consent_id = c.id) AS disclosed, c.expires_at
        """;
    private const string Joins = """
        LEFT JOIN cvs v ON v.seeker_id = c.seeker_id
        LEFT JOIN seeker_keys k ON k.seeker_id = c.seeker_id
        """;

    private const string PageSql = $"""
        SELECT {Leading}, f.position, {Trailing}
        FROM feed_entries f JOIN consents c ON c.id = f.consent_id {Joins}
        WHERE f.recipient_id = $1 AND f.position > $2 ORDER BY f.position LIMIT $3
        """;

    private const string OneSql = $"""
        SELECT {Leading}, 0::bigint, {Trailing}
        FROM consents c {Joins}
        WHERE c.recipient_id = $1 AND c.pairwise_id = $2
        """;

    /// <summary>
    /// The sealed documents a page takes at most (the first always goes, whatever its size): each is decrypted and held
    /// until the page is recorded and sent, and at the largest CV allowed a hundred of them made a page of 100 MiB.
    /// </summary>
    public const long PageBytes = 8 * 1024 * 1024;

    public async Task<SharedCvPage> ReadPageAsync(Recipient recipient, long after, int limit, Func<long, string> cursorOf, CancellationToken cancellationToken)
    {
        // One row more than the page says whether another page follows (the last page carries no next cursor); it is
        // neither opened nor recorded.
        var (rows, cut) = await QueryAsync(PageSql, [new() { Value = recipient.Id }, new() { Value = after }, new() { Value = limit + 1 }], PageBytes, cancellationToken);
        var more = cut || rows.Count > limit;
        if (rows.Count > limit)
        {
            rows.RemoveAt(limit);
        }

        // A document the ledger refused (ended or replaced since the read) is left out: the change that refused it moved
        // its entry past this page, where the site finds what became of it.
        var (items, _) = await DiscloseAsync(recipient, rows);
        var last = rows.Count > 0 ? rows[^1].Position : after;
        return new SharedCvPage(items, more ? cursorOf(last) : null, cursorOf(last));
    }

    /// <summary>One CV, or null: the same null whether the id never existed, is another site's, or is no longer available.</summary>
    public async Task<SharedCvItem?> ReadOneAsync(Recipient recipient, string pairwiseId, CancellationToken cancellationToken)
    {
        if (pairwiseId.Length > 40)
        {
            return null;
        }

        // Read again once when the ledger refused what the read found available: the ledger names the version it records,
        // and a new version saved between the read and the record (the record may wait behind a sweep for the chain lock)
        // is no reason to answer "not available" about a CV the site may read. A second refusal is an end (or a second save
        // within the same moments), and the answer is then what the second read found.
        for (var attempt = 1; ; attempt++)
        {
            var (rows, _) = await QueryAsync(OneSql, [new() { Value = recipient.Id }, new() { Value = pairwiseId }], long.MaxValue, cancellationToken);
            var (items, refused) = await DiscloseAsync(recipient, rows);
            if (!refused || attempt == 2)
            {
                return items.SingleOrDefault(i => i.Kind == "cv");
            }
        }
    }

    /// <summary>The rows, up to <paramref name="byteBudget"/> of sealed documents; whether the budget cut the list short.</summary>
    private async Task<(List<FeedRow> Rows, bool Cut)> QueryAsync(string sql, NpgsqlParameter[] parameters, long byteBudget, CancellationToken cancellationToken)
    {
        var connection = (NpgsqlConnection)db.Database.GetDbConnection();
        await db.Database.OpenConnectionAsync(cancellationToken);
        try
        {
            await using var command = new NpgsqlCommand(sql, connection);
            command.Parameters.AddRange(parameters);
            // Prepared once per pooled connection (Npgsql keeps it across pool returns), then only bound and executed.
            await command.PrepareAsync(cancellationToken);
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            var rows = new List<FeedRow>();
            long bytes = 0;
            while (await reader.ReadAsync(cancellationToken))
            {
                var size = reader.IsDBNull(9) ? 0 : reader.GetBytes(9, 0, null, 0, 0);
                if (rows.Count > 0 && bytes + size > byteBudget)
                {
                    return (rows, true);
                }

                bytes += size;
                rows.Add(new FeedRow(
                    reader.GetGuid(0), reader.GetString(1), Enum.Parse<ConsentState>(reader.GetString(2)),
                    reader.IsDBNull(3) ? null : reader.GetString(3), reader.GetInt64(4), reader.IsDBNull(5) ? null : reader.GetString(5),
                    reader.IsDBNull(6) ? null : reader.GetInt32(6), reader.IsDBNull(7) ? null : reader.GetFieldValue<DateTimeOffset>(7),
                    reader.IsDBNull(8) ? null : Enum.Parse<CvState>(reader.GetString(8)),
                    reader.IsDBNull(9) ? null : reader.GetFieldValue<byte[]>(9), reader.IsDBNull(10) ? null : reader.GetFieldValue<byte[]>(10),
                    reader.IsDBNull(11) ? null : reader.GetFieldValue<byte[]>(11), reader.GetBoolean(12),
                    reader.GetFieldValue<DateTimeOffset>(13)));
            }

            return (rows, false);
        }
        finally
        {
            // The connection goes back to the pool before the wait for the ledger's group commit.
            await db.Database.CloseConnectionAsync();
        }
    }

    /// <summary>The items to send, and whether the ledger refused a document the read found available.</summary>
    private async Task<(List<SharedCvItem> Items, bool Refused)> DiscloseAsync(Recipient recipient, List<FeedRow> rows)
    {
        var now = time.GetUtcNow();
        var freshSince = now - freshness.Value.MaxAge;
        var candidates = new List<DisclosureCandidate>(rows.Count);
        var documents = new Dictionary<Guid, byte[]>(rows.Count);
        var withdrawals = new Dictionary<Guid, SharedCvItem>();
        foreach (var row in rows)
        {
            if (IsAvailable(row, now, freshSince))
            {
                byte[] document;
                try
                {
                    document = CvSealer.Open(sealer.Unwrap(row.SeekerId!, row.WrappedKey!), row.SeekerId!, row.Version!.Value, row.Sealed!);
                }
                catch (Exception e) when (e is CryptographicException or OverflowException or ArgumentException)
                {
                    // A key wrapped by a key this deployment no longer holds (see the data-key rotation job), or damaged
                    // content: that CV is skipped, not the whole page, so the site's cursor moves on past it. Nothing was
                    // recorded for it, and nothing is sent. The episode's id only: no seeker id in the logs.
                    metrics.CvsUnreadable.Add(1);
                    logger.LogError("The CV shared under episode {ConsentId} could not be opened; it is skipped", row.ConsentId);
                    continue;
                }

                // The hash stored with the ciphertext is the plaintext's (AES-GCM vouches that this is that plaintext).
                candidates.Add(new DisclosureCandidate(row.ConsentId, row.Version.Value, row.ContentHash ?? SHA256.HashData(document)));
                documents[row.ConsentId] = document;
            }
            else if (row.Disclosed)
            {
                withdrawals[row.ConsentId] = new SharedCvItem(row.PairwiseId, "withdrawal", null, null, null, CauseOf(row, now, freshSince));
            }
        }

        // Recorded in the ledger and the audit log, committed, before anything is returned; only what was recorded is sent.
        var recorded = await recorder.RecordAsync(recipient, candidates);
        var items = new List<SharedCvItem>(rows.Count);
        foreach (var row in rows)
        {
            if (withdrawals.TryGetValue(row.ConsentId, out var withdrawal))
            {
                items.Add(withdrawal);
            }
            else if (recorded.Contains(row.ConsentId))
            {
                items.Add(new SharedCvItem(row.PairwiseId, "cv", row.Version, row.RefreshedAt is { } refreshed ? Obligations.SiteDay(refreshed) : null, new CvDocument(documents[row.ConsentId]), null));
            }
        }

        return (items, recorded.Count < candidates.Count);
    }

    /// <summary>Promise 1, decided from live data: a lapsed consent or a stale CV is refused before any job has noticed.</summary>
    private static bool IsAvailable(FeedRow row, DateTimeOffset now, DateTimeOffset freshSince) =>
        row.State == ConsentState.Active && row.ExpiresAt > now && row.CvState == CvState.Published && row.Sealed is not null
        && row.WrappedKey is not null && row.RefreshedAt > freshSince;

    private static string CauseOf(FeedRow row, DateTimeOffset now, DateTimeOffset freshSince) =>
        row.State != ConsentState.Active ? row.EndCause ?? ErasureCauses.ConsentRevoked
        : row.ExpiresAt <= now ? ErasureCauses.ConsentExpired
        : row.CvState is null or CvState.Erased || row.Sealed is null ? ErasureCauses.SubjectErased
        : row.RefreshedAt <= freshSince || row.CvState == CvState.Offline ? ErasureCauses.CvOffline
        : ErasureCauses.RecipientSuspended;

    private sealed record FeedRow(
        Guid ConsentId, string PairwiseId, ConsentState State, string? EndCause, long Position, string? SeekerId, int? Version,
        DateTimeOffset? RefreshedAt, CvState? CvState, byte[]? Sealed, byte[]? ContentHash, byte[]? WrappedKey, bool Disclosed,
        DateTimeOffset ExpiresAt);
}
