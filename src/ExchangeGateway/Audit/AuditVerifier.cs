using ExchangeGateway.Auth;
using ExchangeGateway.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using System.Threading.Channels;
using Npgsql;

namespace ExchangeGateway.Audit;

/// <summary>
/// The verdict on the chain. <c>Problem</c> is altered, removed, inserted or checkpoint. <c>LastCheckpointToken</c> is the
/// newest signed checkpoint that held (a JWS verifiable with the gateway's JWKS): an auditor who keeps it and hands it back
/// to a later verification proves that the log up to it was neither rewritten nor cut since, even by someone who could
/// rewrite the database and its checkpoints.
/// </summary>
public sealed record AuditVerification(
    bool Ok, long RowsChecked, long HeadSequence, long? LastCheckpoint, long? FirstBadSequence, string? Problem, string? Detail,
    string? LastCheckpointToken = null)
{
    /// <summary>Read to its end, intact, but a signed checkpoint lies beyond that end.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public bool EndsShort => Problem == "removed" && FirstBadSequence == HeadSequence + 1;

    /// <summary>Of the checkpoints beyond the end, only the auditor's kept one (see <see cref="AuditVerifier.VerifyAsync"/>).</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public bool OnlyTheAnchorIsBeyond { get; init; }

    /// <summary>
    /// The chain was read to its end, intact, and ends before <paramref name="sequence"/>, the row of the auditor's kept
    /// checkpoint, which is the only one beyond the end: the only verdict a replica's lag could explain. A verdict that
    /// stopped at a bad row on the way names that row; a checkpoint of the database's own beyond the end means a cut tail.
    /// </summary>
    public bool EndsBefore(long sequence) => HeadSequence < sequence && EndsShort && OnlyTheAnchorIsBeyond;
}

/// <summary>
/// Walks the whole chain in sequence order, streaming (constant memory at any size), and checks every row's hash, every
/// link, the absence of gaps, and every signed checkpoint against the row it vouches for.
/// </summary>
public sealed class AuditVerifier(AuditReads reads, SigningKeyRing keys)
{
    /// <param name="anchor">A checkpoint the auditor kept from an earlier verification, already checked by
    /// <see cref="AuditCheckpoints.ReadTokenAsync"/>; it overrules whatever the database holds for its row.</param>
    public async Task<AuditVerification> VerifyAsync(AuditCheckpoint? anchor, CancellationToken cancellationToken)
    {
        await using var db = reads.Open();
        var checkpoints = await db.Set<AuditCheckpoint>().AsNoTracking().OrderBy(c => c.Sequence).ToListAsync(cancellationToken);
        var signed = new Dictionary<long, AuditCheckpoint>();
        long? unsigned = null;
        foreach (var checkpoint in checkpoints)
        {
            if (await AuditCheckpoints.IsAuthenticAsync(checkpoint, keys))
            {
                signed[checkpoint.Sequence] = checkpoint;
            }
            else
            {
                unsigned ??= checkpoint.Sequence;
            }
        }

        if (anchor is not null)
        {
            signed[anchor.Sequence] = anchor;
        }

        var connection = (NpgsqlConnection)db.Database.GetDbConnection();
        await db.Database.OpenConnectionAsync(cancellationToken);
        try
        {
            // Two stages on two cores: this task reads rows in batches, another hashes each batch (the costly part) and then
            // judges its rows in sequence order. Same verdicts as a row-by-row walk; memory stays bounded at any size.
            var batches = Channel.CreateBounded<Row[]>(new BoundedChannelOptions(4) { SingleReader = true, SingleWriter = true });
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            var judge = Task.Run(() => JudgeAsync(batches.Reader, signed, stop), CancellationToken.None);
            try
            {
                await ReadAsync(connection, batches.Writer, stop.Token);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
            {
                // The judge found a problem and stopped reading.
            }
            finally
            {
                batches.Writer.TryComplete();
            }

            // A checkpoint that does not verify does not stop the walk: the rows are judged all the same, and a row found
            // altered, removed or inserted is the first thing to report. Only a chain that holds is then failed on it.
            var verdict = await judge;
            if (verdict.EndsShort)
            {
                // Only the auditor's kept checkpoint lies beyond the chain's end: a replica that has not replayed that far
                // yet would read the same. A checkpoint the database itself holds beyond the end cannot be lag (its row is
                // written after the rows it vouches for): the tail was cut.
                verdict = verdict with { OnlyTheAnchorIsBeyond = !checkpoints.Any(c => c.Sequence > verdict.HeadSequence) };
            }

            return verdict.Ok && unsigned is { } bad
                ? Fail(verdict.RowsChecked, verdict.HeadSequence, verdict.LastCheckpoint, bad, "checkpoint",
                    $"The checkpoint at row {bad} is not signed by a key this gateway trusts: forged, or signed with a key no longer configured (Auth:VerificationKeyFiles).")
                : verdict;
        }
        finally
        {
            await db.Database.CloseConnectionAsync();
        }
    }

    private const int BatchSize = 4096;

    private sealed record Row(
        long Sequence, DateTimeOffset OccurredAt, string ActorKind, string? ActorId, string Action, string? Subject, string? Recipient,
        string Outcome, string? Details, byte[] PreviousHash, byte[] Hash);

    private static async Task ReadAsync(NpgsqlConnection connection, ChannelWriter<Row[]> batches, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(
            "SELECT sequence, occurred_at, actor_kind, actor_id, action, subject, recipient, outcome, details, previous_hash, hash FROM audit_events ORDER BY sequence",
            connection);
        await using var reader = await command.ExecuteReaderAsync(System.Data.CommandBehavior.SequentialAccess, cancellationToken);
        var batch = new List<Row>(BatchSize);
        while (await reader.ReadAsync(cancellationToken))
        {
            batch.Add(new Row(
                reader.GetInt64(0), reader.GetFieldValue<DateTimeOffset>(1), reader.GetString(2), reader.IsDBNull(3) ? null : reader.GetString(3),
                reader.GetString(4), reader.IsDBNull(5) ? null : reader.GetString(5), reader.IsDBNull(6) ? null : reader.GetString(6),
                reader.GetString(7), reader.IsDBNull(8) ? null : reader.GetString(8), reader.GetFieldValue<byte[]>(9), reader.GetFieldValue<byte[]>(10)));
            if (batch.Count == BatchSize)
            {
                await batches.WriteAsync([.. batch], cancellationToken);
                batch.Clear();
            }
        }

        if (batch.Count > 0)
        {
            await batches.WriteAsync([.. batch], cancellationToken);
        }
    }

    private static async Task<AuditVerification> JudgeAsync(ChannelReader<Row[]> batches, Dictionary<long, AuditCheckpoint> signed, CancellationTokenSource stop)
    {
        long expected = 1, rows = 0;
        long? lastCheckpoint = null;
        var previousHash = AuditChain.Genesis;
        var recomputed = new byte[AuditChain.HashSize];
        var selfConsistent = new bool[BatchSize];
        var recent = new byte[MaxRenumbering + 2][];
        await foreach (var batch in batches.ReadAllAsync(CancellationToken.None))
        {
            for (var i = 0; i < batch.Length; i++)
            {
                var row = batch[i];
                AuditChain.HashOf(row.Sequence, row.OccurredAt, row.ActorKind, row.ActorId, row.Action, row.Subject, row.Recipient, row.Outcome,
                    row.Details, row.PreviousHash, recomputed);
                selfConsistent[i] = recomputed.AsSpan().SequenceEqual(row.Hash);
            }

            for (var i = 0; i < batch.Length; i++)
            {
                var row = batch[i];
                var sequence = row.Sequence;
                rows++;
                if (sequence > expected)
                {
                    return Stop(stop, Fail(rows, sequence, lastCheckpoint, expected, "removed", $"Row {expected} is missing from the chain."));
                }

                if (sequence < expected)
                {
                    // Numbered before the first row (the gateway starts at 1): a forged head linked to the genesis would
                    // otherwise pass, and the genuine row 1 be named the intruder.
                    return Stop(stop, Fail(rows, sequence, lastCheckpoint, sequence, "inserted", $"Row {sequence} is numbered before the chain's first row: it was inserted."));
                }

                var linked = row.PreviousHash.AsSpan().SequenceEqual(previousHash);
                if (!selfConsistent[i] && linked)
                {
                    return Stop(stop, Fail(rows, sequence, lastCheckpoint, sequence, "altered", $"Row {sequence} does not match its hash: its content was changed."));
                }

                if (!linked && selfConsistent[i] && sequence > 1)
                {
                    // This row is intact but its predecessor's hash changed: the predecessor was rewritten and re-hashed.
                    return Stop(stop, Fail(rows, sequence, lastCheckpoint, sequence - 1, "altered", $"Row {sequence - 1} was rewritten: row {sequence} no longer links to it."));
                }

                if (!linked)
                {
                    // Neither linked nor self-consistent: the gateway never wrote this row here. Either it was moved here by
                    // renumbering (which hides an insertion or a removal from the gap check), or it is itself the intruder.
                    return Stop(stop, Renumbered(row, recent, rows, lastCheckpoint, recomputed)
                        ?? Fail(rows, sequence, lastCheckpoint, sequence, "inserted", $"Row {sequence} does not belong to the chain: it was inserted."));
                }

                if (signed.TryGetValue(sequence, out var checkpoint))
                {
                    if (!checkpoint.Hash.AsSpan().SequenceEqual(row.Hash))
                    {
                        // The rows up to here hold together, so they were re-hashed after a change: a linear chain cannot tell which of
                        // the rows since the last checkpoint that held was the first changed, but it bounds them.
                        var since = lastCheckpoint is { } held ? $"after row {held}" : "from row 1";
                        return Stop(stop, Fail(rows, sequence, lastCheckpoint, sequence, "checkpoint",
                            $"Row {sequence} differs from the signed checkpoint: a row {since} up to row {sequence} was changed, inserted or removed, and the rows after it re-hashed."));
                    }

                    lastCheckpoint = sequence;
                }

                previousHash = row.Hash;
                recent[sequence % recent.Length] = row.Hash;
                expected = sequence + 1;
            }
        }

        var head = expected - 1;
        var beyond = signed.Keys.Where(s => s > head).ToList();
        if (beyond.Count > 0)
        {
            return Fail(rows, head, lastCheckpoint, head + 1, "removed", $"A signed checkpoint vouches for row {beyond.Max()}, but the chain ends at row {head}.");
        }

        return new AuditVerification(true, rows, head, lastCheckpoint, null, null, null, lastCheckpoint is { } last ? signed[last].Signature : null);
    }

    /// <summary>How far a row may have been moved by renumbering and still be traced back to its place.</summary>
    private const int MaxRenumbering = 64;

    /// <summary>
    /// A row that was renumbered still carries the hash of its old number, and its link. Moved down by n, it is
    /// self-consistent at its old number and links to the row n places before its predecessor: the n rows before it were
    /// inserted. Moved up by n, it is self-consistent at its old number: the n rows before it were removed. Null when
    /// neither is the case (within <see cref="MaxRenumbering"/> places).
    /// </summary>
    private static AuditVerification? Renumbered(Row row, byte[]?[] recent, long rows, long? lastCheckpoint, byte[] scratch)
    {
        var now = row.Sequence;
        for (var moved = 1; moved <= MaxRenumbering; moved++)
        {
            var was = now - moved;
            if (was >= 1 && WasWrittenAs(row, was, scratch)
                && row.PreviousHash.AsSpan().SequenceEqual(was == 1 ? AuditChain.Genesis : recent[(was - 1) % recent.Length]))
            {
                if (recent[was % recent.Length].AsSpan().SequenceEqual(row.Hash))
                {
                    // Its old place still holds it: this is a copy of a genuine row, and the copy is the intruder.
                    return Fail(rows, now, lastCheckpoint, now, "inserted", $"Row {now} is a copy of row {was}: it was inserted.");
                }

                var what = moved == 1 ? $"Row {was} was inserted" : $"Rows {was} to {now - 1} were inserted";
                return Fail(rows, now, lastCheckpoint, was, "inserted", $"{what}, and the rows after renumbered: row {now} was written as row {was}.");
            }

            was = now + moved;
            if (WasWrittenAs(row, was, scratch))
            {
                var what = moved == 1 ? $"Row {now} was removed" : $"Rows {now} to {was - 1} were removed";
                return Fail(rows, now, lastCheckpoint, now, "removed", $"{what}, and the rows after renumbered: row {now} was written as row {was}.");
            }
        }

        return null;
    }

    private static bool WasWrittenAs(Row row, long sequence, byte[] scratch)
    {
        AuditChain.HashOf(sequence, row.OccurredAt, row.ActorKind, row.ActorId, row.Action, row.Subject, row.Recipient, row.Outcome,
            row.Details, row.PreviousHash, scratch);
        return scratch.AsSpan().SequenceEqual(row.Hash);
    }

    private static AuditVerification Stop(CancellationTokenSource stop, AuditVerification verdict)
    {
        stop.Cancel();
        return verdict;
    }

    private static AuditVerification Fail(long rows, long head, long? lastCheckpoint, long bad, string problem, string detail) =>
        new(false, rows, head, lastCheckpoint, bad, problem, detail);
}

/// <summary>Signed checkpoints: a compact JWS (ES256, the gateway's published key) over the chain head.</summary>
public sealed class AuditCheckpoints(GatewayDbContext db, SigningKeyRing keys, TimeProvider time)
{
    public async Task<AuditCheckpoint?> CreateAsync(CancellationToken cancellationToken)
    {
        var head = await db.Set<AuditEvent>().AsNoTracking().OrderByDescending(e => e.Sequence)
            .Select(e => new { e.Sequence, e.Hash }).FirstOrDefaultAsync(cancellationToken);
        if (head is null || await db.Set<AuditCheckpoint>().AnyAsync(c => c.Sequence == head.Sequence, cancellationToken))
        {
            return null;
        }

        var at = time.GetUtcNow();
        var jws = new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
        {
            Claims = new Dictionary<string, object>
            {
                ["seq"] = head.Sequence,
                ["hash"] = Base64UrlEncoder.Encode(head.Hash),
                ["iat"] = at.ToUnixTimeSeconds(),
            },
            SigningCredentials = keys.EventCredentials,
            TokenType = "audit-checkpoint+jwt",
            IssuedAt = at.UtcDateTime,
        });
        var checkpoint = new AuditCheckpoint { Sequence = head.Sequence, Hash = head.Hash, SignedAt = at, Signature = jws };
        db.Add(checkpoint);
        await db.SaveChangesAsync(cancellationToken);
        return checkpoint;
    }

    public static async Task<bool> IsAuthenticAsync(AuditCheckpoint checkpoint, SigningKeyRing keys) =>
        await ReadTokenAsync(checkpoint.Signature, keys) is { } signed
        && signed.Sequence == checkpoint.Sequence && signed.Hash.AsSpan().SequenceEqual(checkpoint.Hash);

    /// <summary>The checkpoint a token vouches for, or null when it is not a checkpoint signed with one of the gateway's keys.</summary>
    public static async Task<AuditCheckpoint?> ReadTokenAsync(string token, SigningKeyRing keys)
    {
        var result = await new JsonWebTokenHandler().ValidateTokenAsync(token, new TokenValidationParameters
        {
            ValidateIssuer = false,
            ValidateAudience = false,
            ValidateLifetime = false,
            IssuerSigningKeys = keys.ValidationKeys,
            ValidTypes = ["audit-checkpoint+jwt"],
        });
        if (!result.IsValid || !result.Claims.TryGetValue("seq", out var seq) || !result.Claims.TryGetValue("hash", out var hash) || hash is not string text)
        {
            return null;
        }

        try
        {
            return new AuditCheckpoint
            {
                Sequence = Convert.ToInt64(seq, System.Globalization.CultureInfo.InvariantCulture),
                Hash = Base64UrlEncoder.DecodeBytes(text),
                SignedAt = result.SecurityToken is JsonWebToken jwt ? new DateTimeOffset(jwt.IssuedAt, TimeSpan.Zero) : default,
                Signature = token,
            };
        }
        catch (Exception e) when (e is FormatException or InvalidCastException or OverflowException)
        {
            return null;
        }
    }
}
