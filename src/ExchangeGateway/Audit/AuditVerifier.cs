using ExchangeGateway.Auth;
using ExchangeGateway.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.Tokens;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Security.Cryptography;
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
    /// <summary>
    /// The rows alone: every hash, link and number, and every checkpoint signed by a trusted key. <c>Ok</c> is this and
    /// <see cref="CheckpointsVerdict.Ok"/> together, as it always was; apart, an auditor can tell a chain that was tampered
    /// with from a checkpoint nobody can verify any more (a key lost, or a row planted in the checkpoints table).
    /// </summary>
    public bool ChainOk { get; init; }

    /// <summary>The hash of row <c>HeadSequence</c>, in lowercase hex as the API lists rows: set when the chain was read to its end, intact.</summary>
    public string? HeadHash { get; init; }

    public CheckpointsVerdict Checkpoints { get; init; } = new(true, 0, []);

    /// <summary>What does not fail the verification but an auditor should know: unverifiable checkpoints a signed one supersedes.</summary>
    public IReadOnlyList<string> Warnings { get; init; } = [];

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

    /// <summary>The audit record of this verification, by whoever asked for it (every look at the log is in the log).</summary>
    public AuditEntry Record(AuditActor by, AuditCheckpoint? anchor, AuditCheckpoint? since = null) =>
        new(by.Kind, by.Id, AuditActions.AuditVerified, Ok ? Outcomes.Success : Outcomes.Failure,
            Details: new Dictionary<string, object?> { ["head"] = HeadSequence, ["firstBad"] = FirstBadSequence, ["anchor"] = anchor?.Sequence, ["since"] = since?.Sequence });
}

/// <summary>
/// The checkpoints' own verdict. <c>Authentic</c>: how many are signed by a key this gateway trusts (each then holds or the
/// chain fails). <c>Unverifiable</c>: the rows of those that are not. One that a signed checkpoint further on supersedes is
/// only a warning: the rows it covered are covered again. <c>Ok</c> is false while one is not superseded.
/// </summary>
public sealed record CheckpointsVerdict(bool Ok, int Authentic, IReadOnlyList<long> Unverifiable);

/// <summary>
/// Walks the whole chain in sequence order, streaming (constant memory at any size), and checks every row's hash, every
/// link, the absence of gaps, and every signed checkpoint against the row it vouches for.
/// </summary>
public sealed class AuditVerifier(AuditReads reads, SigningKeyRing keys)
{
    /// <param name="anchor">A checkpoint the auditor kept from an earlier verification, already checked by
    /// <see cref="AuditCheckpoints.ReadTokenAsync"/>; it overrules whatever the database holds for its row.</param>
    public Task<AuditVerification> VerifyAsync(AuditCheckpoint? anchor, CancellationToken cancellationToken) =>
        VerifyAsync(anchor, null, cancellationToken);

    /// <param name="anchor">As in the overload above; one at or before <paramref name="since"/> is covered by it.</param>
    /// <param name="since">A checkpoint already checked by <see cref="AuditCheckpoints.ReadTokenAsync"/> to verify from: the
    /// walk starts at the row after it, linked to its hash, instead of at row 1. The rows it covers are taken on its
    /// signature, so verification is incremental, and survives old partitions detached to cold storage.</param>
    public async Task<AuditVerification> VerifyAsync(AuditCheckpoint? anchor, AuditCheckpoint? since, CancellationToken cancellationToken)
    {
        await using var db = reads.Open();
        var from = since?.Sequence ?? 0;
        var checkpoints = await db.Set<AuditCheckpoint>().AsNoTracking().OrderBy(c => c.Sequence).ToListAsync(cancellationToken);
        var signed = new Dictionary<long, AuditCheckpoint>();
        var unverifiable = new List<long>();
        // Those up to the one verified from vouch for rows it covers; an unverifiable one among them is superseded by it.
        foreach (var checkpoint in checkpoints.Where(c => c.Sequence > from))
        {
            if (await AuditCheckpoints.IsAuthenticAsync(checkpoint, keys))
            {
                signed[checkpoint.Sequence] = checkpoint;
            }
            else
            {
                unverifiable.Add(checkpoint.Sequence);
            }
        }

        var signedCount = signed.Count;
        if (anchor is not null && anchor.Sequence > from)
        {
            signed[anchor.Sequence] = anchor;
        }

        if (since is not null)
        {
            signed[since.Sequence] = since;
        }

        // Times are judged from the first row written by a gateway that keeps them in order (see the AuditTimeOrderFrom
        // migration); a walk from a checkpoint starts from its row's time.
        var timeOrderFrom = await db.Database.SqlQuery<long>($"SELECT audit_time_order_from() AS \"Value\"").SingleAsync(cancellationToken);
        var sinceTime = since is null ? null : await db.Set<AuditEvent>().Where(e => e.Sequence == since.Sequence)
            .Select(e => (DateTimeOffset?)e.OccurredAt).SingleOrDefaultAsync(cancellationToken);
        var verdict = await WalkAsync(signed, since, new TimeOrder(timeOrderFrom, sinceTime), cancellationToken);
        if (since is not null && verdict.Ok && verdict.RowsChecked == 0
            && await db.Set<AuditEvent>().MaxAsync(e => (long?)e.Sequence, cancellationToken) is var last && (last ?? 0) < since.Sequence)
        {
            // Nothing after the checkpoint, and not even its own row: the tail was cut below it (or a replica lags).
            var end = last ?? 0;
            verdict = Fail(0, end, null, end + 1, "removed", $"The checkpoint verified from vouches for row {since.Sequence}, but the chain ends at row {end}.");
        }

        // A checkpoint that does not verify does not stop the walk: the rows are judged all the same, and a row found
        // altered, removed or inserted is the first thing to report. Only a chain that holds is then failed on it.
        if (verdict.EndsShort)
        {
            // Only the auditor's kept checkpoint lies beyond the chain's end: a replica that has not replayed that far
            // yet would read the same. A checkpoint the database itself holds beyond the end cannot be lag (its row is
            // written after the rows it vouches for): the tail was cut.
            verdict = verdict with { OnlyTheAnchorIsBeyond = !checkpoints.Any(c => c.Sequence > verdict.HeadSequence) };
        }

        // A signed checkpoint further on vouches again for every row the unverifiable one covered (a chain that holds has
        // checked it against its row). One with nothing signed after it leaves rows vouched for by nobody: a failure until
        // the next checkpoint, as an unverifiable checkpoint beyond the head may be all that is left of a cut tail.
        var warnings = new List<string>();
        if (timeOrderFrom > from + 1 && verdict.HeadSequence > from)
        {
            warnings.Add($"Rows up to {timeOrderFrom - 1} were written before the gateway kept the log's times in order: their order in time is not judged.");
        }

        long? bad = null;
        foreach (var sequence in unverifiable)
        {
            var next = signed.Keys.Where(s => s > sequence).Order().FirstOrDefault();
            if (next > 0)
            {
                warnings.Add($"The checkpoint at row {sequence} is not signed by a key this gateway trusts (forged, or signed with a key no longer configured); the signed checkpoint at row {next} supersedes it.");
            }
            else
            {
                bad ??= sequence;
            }
        }

        var chainOk = verdict.Ok;
        if (chainOk && bad is { } unsuperseded)
        {
            verdict = Fail(verdict.RowsChecked, verdict.HeadSequence, verdict.LastCheckpoint, unsuperseded, "checkpoint",
                $"The checkpoint at row {unsuperseded} is not signed by a key this gateway trusts: forged, or signed with a key no longer configured (Auth:VerificationKeyFiles), and no signed checkpoint after it supersedes it.")
                with { OnlyTheAnchorIsBeyond = verdict.OnlyTheAnchorIsBeyond };
        }

        return verdict with
        {
            ChainOk = chainOk,
            Checkpoints = new CheckpointsVerdict(bad is null, signedCount, unverifiable),
            Warnings = warnings,
        };
    }

    /// <summary>From which row times must not go back, and the time of the row a walk from a checkpoint starts after.</summary>
    private readonly record struct TimeOrder(long From, DateTimeOffset? Since);

    private async Task<AuditVerification> WalkAsync(
        Dictionary<long, AuditCheckpoint> signed, AuditCheckpoint? since, TimeOrder timeOrder, CancellationToken cancellationToken)
    {
        await using var connection = reads.ScanConnection();
        await connection.OpenAsync(cancellationToken);
        // Two stages on two cores: this task reads rows in batches, another hashes each batch (the costly part) and then
        // judges its rows in sequence order. Same verdicts as a row-by-row walk; memory stays bounded at any size.
        var batches = Channel.CreateBounded<Batch>(new BoundedChannelOptions(4) { SingleReader = true, SingleWriter = true });
        var free = new ConcurrentQueue<Batch>();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var judge = Task.Run(async () =>
        {
            try
            {
                return await JudgeAsync(batches.Reader, free, signed, since, timeOrder, stop);
            }
            catch
            {
                // A judge that failed reads no more batches: the reader, waiting for room in the channel, must stop too.
                await stop.CancelAsync();
                throw;
            }
        }, CancellationToken.None);
        try
        {
            await ReadAsync(connection, since?.Sequence, batches.Writer, free, stop.Token);
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            // The judge found a problem and stopped reading.
        }
        finally
        {
            batches.Writer.TryComplete();
            // Whatever ended the reading, the judge ends with the channel; it must not outlive the token source it cancels.
            await Task.WhenAny(judge);
        }

        return await judge;
    }

    private const int BatchSize = 4096;

    /// <summary>
    /// A batch of rows as their hashes cover them: each row's canonical encoding (<see cref="AuditChain.HashOf(long, DateTimeOffset, string, string?, string, string?, string?, string, string?, ReadOnlySpan{byte}, Span{byte})"/>)
    /// followed by its stored hash, in one buffer. Batches are recycled between the two stages.
    /// </summary>
    private sealed class Batch
    {
        public byte[] Data = new byte[1 << 20];
        public int Length;
        public readonly RowAt[] Rows = new RowAt[BatchSize];
        public int Count;

        public ReadOnlySpan<byte> Encoding(in RowAt row) => Data.AsSpan(row.Start, row.HashAt - row.Start);

        public ReadOnlySpan<byte> PreviousHash(in RowAt row) => Data.AsSpan(row.PreviousAt, row.HashAt - row.PreviousAt);

        public ReadOnlySpan<byte> Hash(in RowAt row) => Data.AsSpan(row.HashAt, row.End - row.HashAt);
    }

    private readonly record struct RowAt(long Sequence, int Start, int PreviousAt, int HashAt, int End);

    /// <summary>
    /// Reads the rows by binary COPY and never decodes them (<see cref="AuditChain.EncodeCopyRow"/>): decoding a million
    /// rows into strings only to encode them again cost more than hashing them.
    /// </summary>
    private static async Task ReadAsync(
        NpgsqlConnection connection, long? after, ChannelWriter<Batch> batches, ConcurrentQueue<Batch> free, CancellationToken cancellationToken)
    {
        // From row 1 without a bound: a row numbered before it is a forgery the walk must see.
        var where = after is { } from ? FormattableString.Invariant($" WHERE sequence > {from}") : "";
        await using var copy = await connection.BeginRawBinaryCopyAsync(
            $"COPY (SELECT {AuditChain.Columns} FROM audit_events{where} ORDER BY sequence) TO STDOUT (FORMAT BINARY)", cancellationToken);
        try
        {
            await ReadRowsAsync(copy, batches, free, cancellationToken);
        }
        catch (OperationCanceledException)
        {
            // Stopped early (a verdict, or the caller): the server is told to stop sending, or disposing the stream would
            // read the rest of the table first. A read cancelled mid-wait has done so already and broken the connection.
            try
            {
                await copy.CancelAsync();
            }
            catch (Exception e) when (e is NpgsqlException or InvalidOperationException or ObjectDisposedException)
            {
            }

            throw;
        }
    }

    private static async Task ReadRowsAsync(NpgsqlRawCopyStream copy, ChannelWriter<Batch> batches, ConcurrentQueue<Batch> free, CancellationToken cancellationToken)
    {
        var input = new byte[1 << 20];
        int at = 0, end = 0;
        var batch = Take(free);
        var headerRead = false;
        while (true)
        {
            var parsed = headerRead ? TryParseRow(input.AsSpan(at, end - at), batch, out var consumed) : TryParseHeader(input.AsSpan(at, end - at), out consumed);
            if (parsed == Parse.Done)
            {
                at += consumed;
                headerRead = true;
                if (batch.Count == BatchSize)
                {
                    await batches.WriteAsync(batch, cancellationToken);
                    batch = Take(free);
                }

                continue;
            }

            if (parsed == Parse.End)
            {
                break;
            }

            // The rest of a row is still on its way: keep the part read, make room for the rest, read on.
            if (at > 0)
            {
                Buffer.BlockCopy(input, at, input, 0, end - at);
                end -= at;
                at = 0;
            }

            if (end == input.Length)
            {
                Array.Resize(ref input, Grown(input.Length, input.Length + 1));
            }

            var read = await copy.ReadAsync(input.AsMemory(end), cancellationToken);
            if (read == 0)
            {
                throw new InvalidDataException("The audit log's COPY stream ended in the middle of a row.");
            }

            end += read;
        }

        if (batch.Count > 0)
        {
            await batches.WriteAsync(batch, cancellationToken);
        }
    }

    private static Batch Take(ConcurrentQueue<Batch> free)
    {
        if (!free.TryDequeue(out var batch))
        {
            return new Batch();
        }

        batch.Length = 0;
        batch.Count = 0;
        return batch;
    }

    private enum Parse { Done, More, End }

    /// <summary>"PGCOPY\n\xff\r\n\0": the first bytes of every binary COPY stream.</summary>
    private static ReadOnlySpan<byte> CopySignature => [0x50, 0x47, 0x43, 0x4F, 0x50, 0x59, 0x0A, 0xFF, 0x0D, 0x0A, 0x00];

    private static Parse TryParseHeader(ReadOnlySpan<byte> input, out int consumed)
    {
        var signature = CopySignature;
        consumed = 0;
        if (input.Length < signature.Length + 8)
        {
            return Parse.More;
        }

        if (!input[..signature.Length].SequenceEqual(signature))
        {
            throw new InvalidDataException("The audit log's COPY stream does not start with PostgreSQL's binary COPY signature.");
        }

        var extension = BinaryPrimitives.ReadInt32BigEndian(input[(signature.Length + 4)..]);
        if (input.Length < signature.Length + 8 + extension)
        {
            return Parse.More;
        }

        consumed = signature.Length + 8 + extension;
        return Parse.Done;
    }

    /// <summary>One COPY row into <paramref name="batch"/>, or <see cref="Parse.More"/> when it is not all in <paramref name="input"/> yet.</summary>
    private static Parse TryParseRow(ReadOnlySpan<byte> input, Batch batch, out int consumed)
    {
        consumed = 0;
        if (input.Length < 2)
        {
            return Parse.More;
        }

        var fields = BinaryPrimitives.ReadInt16BigEndian(input);
        if (fields == -1)
        {
            return Parse.End;
        }

        if (fields != AuditChain.ColumnCount)
        {
            throw new InvalidDataException($"The audit log's COPY rows have {fields} columns, not {AuditChain.ColumnCount}.");
        }

        var size = 2;
        for (var field = 0; field < AuditChain.ColumnCount; field++)
        {
            if (input.Length < size + 4)
            {
                return Parse.More;
            }

            size += 4 + Math.Max(0, BinaryPrimitives.ReadInt32BigEndian(input[size..]));
            if (input.Length < size)
            {
                return Parse.More;
            }
        }

        // The encoding is shorter than the COPY row (it drops four length prefixes and the field count).
        if (batch.Data.Length - batch.Length < size)
        {
            Array.Resize(ref batch.Data, Grown(batch.Data.Length, (long)batch.Length + size));
        }

        var output = batch.Data.AsSpan(batch.Length);
        var encoded = AuditChain.EncodeCopyRow(input[2..size], output, out var previousAt, out var end);
        batch.Rows[batch.Count++] = new RowAt(
            BinaryPrimitives.ReadInt64BigEndian(output), batch.Length, batch.Length + previousAt, batch.Length + encoded, batch.Length + end);
        batch.Length += end;
        consumed = size;
        return Parse.Done;
    }

    /// <summary>A buffer's next size: doubled, at least <paramref name="needed"/>, within what an array may hold.</summary>
    private static int Grown(int length, long needed)
    {
        var size = Math.Max(needed, Math.Min((long)length * 2, Array.MaxLength));
        return size <= Array.MaxLength
            ? (int)size
            : throw new InvalidDataException($"An audit row of more than {Array.MaxLength} bytes cannot be verified.");
    }

    private static async Task<AuditVerification> JudgeAsync(
        ChannelReader<Batch> batches, ConcurrentQueue<Batch> free, Dictionary<long, AuditCheckpoint> signed, AuditCheckpoint? since,
        TimeOrder timeOrder, CancellationTokenSource stop)
    {
        long expected = (since?.Sequence ?? 0) + 1, rows = 0;
        long? lastCheckpoint = since?.Sequence;
        var previousHash = new byte[AuditChain.HashSize];
        // Microseconds since 1970, as the encoding holds them.
        var previousTime = timeOrder.Since is { } start ? (start.UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks) / 10 : long.MinValue;
        var recomputed = new byte[AuditChain.HashSize];
        var selfConsistent = new bool[BatchSize];
        var recent = new byte[MaxRenumbering + 2][];
        for (var i = 0; i < recent.Length; i++)
        {
            recent[i] = new byte[AuditChain.HashSize];
        }

        if (since is not null)
        {
            since.Hash.CopyTo(previousHash, 0);
            since.Hash.CopyTo(recent[since.Sequence % recent.Length], 0);
        }

        await foreach (var batch in batches.ReadAllAsync(CancellationToken.None))
        {
            for (var i = 0; i < batch.Count; i++)
            {
                SHA256.HashData(batch.Encoding(batch.Rows[i]), recomputed);
                selfConsistent[i] = recomputed.AsSpan().SequenceEqual(batch.Hash(batch.Rows[i]));
            }

            for (var i = 0; i < batch.Count; i++)
            {
                var row = batch.Rows[i];
                var sequence = row.Sequence;
                rows++;
                if (sequence > expected)
                {
                    // A row after a removed one links to the removed row; one that links to the row before the gap, and
                    // matches its hash, was numbered past it by whoever wrote it, never by the gateway (it numbers one by one).
                    if (selfConsistent[i] && batch.PreviousHash(row).SequenceEqual(previousHash) && expected > 1)
                    {
                        return Stop(stop, Fail(rows, sequence, lastCheckpoint, sequence, "inserted",
                            $"Row {sequence} follows row {expected - 1} but is numbered {sequence}: the gateway numbers rows one by one, so it was written outside the gateway."));
                    }

                    return Stop(stop, Fail(rows, sequence, lastCheckpoint, expected, "removed", $"Row {expected} is missing from the chain."));
                }

                if (sequence < expected)
                {
                    // Numbered before the first row (the gateway starts at 1): a forged head linked to the genesis would
                    // otherwise pass, and the genuine row 1 be named the intruder.
                    return Stop(stop, Fail(rows, sequence, lastCheckpoint, sequence, "inserted", $"Row {sequence} is numbered before the chain's first row: it was inserted."));
                }

                var linked = batch.PreviousHash(row).SequenceEqual(previousHash);
                if (!selfConsistent[i] && linked)
                {
                    return Stop(stop, Fail(rows, sequence, lastCheckpoint, sequence, "altered", $"Row {sequence} does not match its hash: its content was changed."));
                }

                if (!linked && selfConsistent[i] && sequence > 1)
                {
                    // This row is intact but its predecessor's hash changed: the predecessor was rewritten and re-hashed.
                    return Stop(stop, Fail(rows, sequence, lastCheckpoint, sequence - 1, "altered", $"Row {sequence - 1} was rewritten: row {sequence} no longer links to it."));
                }

                if (!linked && HashesWithLink(batch, row, previousHash))
                {
                    // Its hash is that of its content linked to the row before: only the stored link was changed.
                    return Stop(stop, Fail(rows, sequence, lastCheckpoint, sequence, "altered", $"Row {sequence}'s link to the row before it was changed."));
                }

                if (!linked)
                {
                    // Neither linked nor self-consistent: the gateway never wrote this row here. Either it was moved here by
                    // renumbering (which hides an insertion or a removal from the gap check), or it is itself the intruder.
                    return Stop(stop, Renumbered(batch, row, recent, rows, lastCheckpoint)
                        ?? Fail(rows, sequence, lastCheckpoint, sequence, "inserted", $"Row {sequence} does not belong to the chain: it was inserted."));
                }

                // The gateway never dates a row before the one it follows (AuditTrail stamps at least the head's time, under the
                // chain lock). A row that is, hashed and linked all the same, was written by someone holding the database's
                // write access: appended with a back-dated time, to make an act look older than the rows around it, or given
                // one and the rows after it re-hashed.
                var at = BinaryPrimitives.ReadInt64BigEndian(batch.Encoding(row)[8..]);
                if (at < previousTime && sequence >= timeOrder.From)
                {
                    return Stop(stop, Fail(rows, sequence, lastCheckpoint, sequence, "inserted",
                        $"Row {sequence} is dated before row {sequence - 1}, which the gateway never does: it was written outside the gateway, appended with a back-dated time (or given one and the rows after it re-hashed)."));
                }

                previousTime = at;

                // Linked and self-consistent: its hash is a SHA-256, of the size the buffers below hold.
                var hash = batch.Hash(row);
                if (signed.TryGetValue(sequence, out var checkpoint))
                {
                    if (!checkpoint.Hash.AsSpan().SequenceEqual(hash))
                    {
                        // The rows up to here hold together, so they were re-hashed after a change: a linear chain cannot tell which of
                        // the rows since the last checkpoint that held was the first changed, but it bounds them.
                        var bound = lastCheckpoint is { } held ? $"after row {held}" : "from row 1";
                        return Stop(stop, Fail(rows, sequence, lastCheckpoint, sequence, "checkpoint",
                            $"Row {sequence} differs from the signed checkpoint: a row {bound} up to row {sequence} was changed, inserted or removed, and the rows after it re-hashed."));
                    }

                    lastCheckpoint = sequence;
                }

                hash.CopyTo(previousHash);
                hash.CopyTo(recent[sequence % recent.Length]);
                expected = sequence + 1;
            }

            free.Enqueue(batch);
        }

        var head = expected - 1;
        var beyond = signed.Keys.Where(s => s > head).ToList();
        if (beyond.Count > 0)
        {
            return Fail(rows, head, lastCheckpoint, head + 1, "removed", $"A signed checkpoint vouches for row {beyond.Max()}, but the chain ends at row {head}.");
        }

        return new AuditVerification(true, rows, head, lastCheckpoint, null, null, null, lastCheckpoint is { } last ? signed[last].Signature : null)
        {
            HeadHash = head > 0 ? Convert.ToHexStringLower(previousHash) : null,
        };
    }

    /// <summary>How far a row may have been moved by renumbering and still be traced back to its place.</summary>
    private const int MaxRenumbering = 64;

    /// <summary>
    /// A row that was renumbered still carries the hash of its old number, and its link. Moved down by n, it is
    /// self-consistent at its old number and links to the row n places before its predecessor: the n rows before it were
    /// inserted. Moved up by n, it is self-consistent at its old number: the n rows before it were removed. Null when
    /// neither is the case (within <see cref="MaxRenumbering"/> places). Sequences before the row's own are all in
    /// <paramref name="recent"/>: the walk reached it without a gap.
    /// </summary>
    private static AuditVerification? Renumbered(Batch batch, RowAt row, byte[][] recent, long rows, long? lastCheckpoint)
    {
        var now = row.Sequence;
        var encoding = batch.Encoding(row).ToArray();
        var previousHash = batch.PreviousHash(row);
        var hash = batch.Hash(row);
        for (var moved = 1; moved <= MaxRenumbering; moved++)
        {
            var was = now - moved;
            if (was >= 1 && WasWrittenAs(encoding, hash, was)
                && previousHash.SequenceEqual(was == 1 ? AuditChain.Genesis : recent[(was - 1) % recent.Length]))
            {
                if (recent[was % recent.Length].AsSpan().SequenceEqual(hash))
                {
                    // Its old place still holds it: this is a copy of a genuine row, and the copy is the intruder.
                    return Fail(rows, now, lastCheckpoint, now, "inserted", $"Row {now} is a copy of row {was}: it was inserted.");
                }

                var what = moved == 1 ? $"Row {was} was inserted" : $"Rows {was} to {now - 1} were inserted";
                return Fail(rows, now, lastCheckpoint, was, "inserted", $"{what}, and the rows after renumbered: row {now} was written as row {was}.");
            }

            was = now + moved;
            if (WasWrittenAs(encoding, hash, was))
            {
                var what = moved == 1 ? $"Row {now} was removed" : $"Rows {now} to {was - 1} were removed";
                return Fail(rows, now, lastCheckpoint, now, "removed", $"{what}, and the rows after renumbered: row {now} was written as row {was}.");
            }
        }

        return null;
    }

    /// <summary>Whether the row's stored hash is that of its content with <paramref name="link"/> as its previous hash.</summary>
    private static bool HashesWithLink(Batch batch, in RowAt row, ReadOnlySpan<byte> link)
    {
        var encoding = batch.Encoding(row).ToArray();
        var at = row.PreviousAt - row.Start;
        if (encoding.Length - at != link.Length)
        {
            return false;
        }

        link.CopyTo(encoding.AsSpan(at));
        Span<byte> recomputed = stackalloc byte[AuditChain.HashSize];
        SHA256.HashData(encoding, recomputed);
        return recomputed.SequenceEqual(batch.Hash(row));
    }

    /// <summary>Whether the row's hash is that of its content under another sequence number (the encoding's first field).</summary>
    private static bool WasWrittenAs(byte[] encoding, ReadOnlySpan<byte> hash, long sequence)
    {
        BinaryPrimitives.WriteInt64BigEndian(encoding, sequence);
        Span<byte> recomputed = stackalloc byte[AuditChain.HashSize];
        SHA256.HashData(encoding, recomputed);
        return recomputed.SequenceEqual(hash);
    }

    private static AuditVerification Stop(CancellationTokenSource stop, AuditVerification verdict)
    {
        stop.Cancel();
        return verdict;
    }

    private static AuditVerification Fail(long rows, long head, long? lastCheckpoint, long bad, string problem, string detail) =>
        new(false, rows, head, lastCheckpoint, bad, problem, detail);
}

/// <summary>
/// Signed checkpoints: a compact JWS (ES256, the gateway's published key, typ <c>audit-checkpoint+jwt</c>) over the chain
/// head. Claims: <c>iss</c> (the gateway's issuer), <c>iat</c> (the gateway's clock), <c>seq</c> (the row's sequence) and
/// <c>hash</c> (the row's SHA-256, base64url without padding). No <c>exp</c> or <c>nbf</c>: a checkpoint states what
/// the log held, true for as long as its key is trusted, and a JWT library's defaults would otherwise call it expired.
/// </summary>
public sealed class AuditCheckpoints(GatewayDbContext db, SigningKeyRing keys, TimeProvider time, IOptions<AuthOptions> auth)
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
        var checkpoint = new AuditCheckpoint { Sequence = head.Sequence, Hash = head.Hash, SignedAt = at, Signature = Sign(head.Sequence, head.Hash, at) };
        db.Add(checkpoint);
        await db.SaveChangesAsync(cancellationToken);
        return checkpoint;
    }

    /// <summary>
    /// Signs and stores a checkpoint over the head a verification walked, and returns it as the verdict's checkpoint. The
    /// newest stored checkpoint can be an hour old: the rows after it, the ones the auditor just saw verified among them,
    /// could otherwise be cut without trace. Stored, it also exposes such a cut to the next verification without an anchor.
    /// </summary>
    public async Task<AuditVerification> SealAsync(AuditVerification verdict, CancellationToken cancellationToken)
    {
        if (!verdict.ChainOk || verdict.HeadHash is null)
        {
            return verdict;
        }

        var at = time.GetUtcNow();
        var hash = Convert.FromHexString(verdict.HeadHash);
        var token = Sign(verdict.HeadSequence, hash, at);
        try
        {
            // One over that row may be stored already (the job's, or another verification's): it vouches for the same hash.
            await db.Database.ExecuteSqlAsync(
                $"INSERT INTO audit_checkpoints (sequence, hash, signed_at, signature) VALUES ({verdict.HeadSequence}, {hash}, {at}, {token}) ON CONFLICT (sequence) DO NOTHING",
                cancellationToken);
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.CheckViolation)
        {
            // Read on a replica whose row differs from the primary's (the trigger compares them): nothing to vouch for.
            return verdict with
            {
                Warnings = [.. verdict.Warnings, $"Row {verdict.HeadSequence} on the primary is not the row this verification read: no checkpoint was signed over it."],
            };
        }

        return verdict with { LastCheckpoint = verdict.HeadSequence, LastCheckpointToken = token };
    }

    private string Sign(long sequence, byte[] hash, DateTimeOffset at) =>
        // The handler's default times come from the real clock, not the gateway's, and add an exp an hour on.
        new JsonWebTokenHandler { SetDefaultTimesOnTokenCreation = false }.CreateToken(new SecurityTokenDescriptor
        {
            Issuer = auth.Value.Issuer!.AbsoluteUri,
            IssuedAt = at.UtcDateTime,
            Claims = new Dictionary<string, object> { ["seq"] = sequence, ["hash"] = Base64UrlEncoder.Encode(hash) },
            SigningCredentials = keys.EventCredentials,
            TokenType = "audit-checkpoint+jwt",
        });

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
            // Every row's hash is a SHA-256; a verification started from a checkpoint links to it.
            return Base64UrlEncoder.DecodeBytes(text).Length != AuditChain.HashSize ? null : new AuditCheckpoint
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
