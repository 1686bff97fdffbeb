using System.Buffers;
using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using ExchangeGateway.Data;

namespace ExchangeGateway.Audit;

/// <summary>
/// The canonical encoding of an audit row and its SHA-256 link to the previous row, built from the row's values (the
/// writer) or from its binary COPY form (the verifier): the two encoders below must stay in step, and a test holds them to it.
/// </summary>
public static class AuditChain
{
    /// <summary>The columns in the encoding's order, as the verifier copies them out.</summary>
    public const string Columns = "sequence, occurred_at, actor_kind, actor_id, action, subject, recipient, outcome, details, previous_hash, hash";

    public const int ColumnCount = 11;

    /// <summary>PostgreSQL's binary timestamps count microseconds from 2000-01-01; the encoding counts from 1970.</summary>
    private const long PostgresEpochMicroseconds = 946_684_800_000_000;

    public static readonly byte[] Genesis = new byte[32];

    /// <summary>PostgreSQL keeps microseconds; hashing anything finer would break verification after a round trip.</summary>
    public static DateTimeOffset Truncate(DateTimeOffset at) => at.TruncateToMicroseconds();

    public static byte[] HashOf(
        long sequence, DateTimeOffset occurredAt, string actorKind, string? actorId, string action, string? subject,
        string? recipient, string outcome, string? details, byte[] previousHash)
    {
        var hash = new byte[HashSize];
        HashOf(sequence, occurredAt, actorKind, actorId, action, subject, recipient, outcome, details, previousHash, hash);
        return hash;
    }

    public const int HashSize = 32;

    /// <summary>
    /// The row's hash into <paramref name="destination"/>: SHA-256 over its canonical encoding, built in one buffer and hashed
    /// in one call (no hash object per row: verification hashes millions of rows).
    /// </summary>
    public static void HashOf(
        long sequence, DateTimeOffset occurredAt, string actorKind, string? actorId, string action, string? subject,
        string? recipient, string outcome, string? details, ReadOnlySpan<byte> previousHash, Span<byte> destination)
    {
        var size = 16 + (7 * 4) + previousHash.Length + MaxBytes(actorKind) + MaxBytes(actorId) + MaxBytes(action) + MaxBytes(subject)
            + MaxBytes(recipient) + MaxBytes(outcome) + MaxBytes(details);
        byte[]? rented = null;
        var buffer = size <= 1024 ? stackalloc byte[1024] : (rented = ArrayPool<byte>.Shared.Rent(size));
        try
        {
            BinaryPrimitives.WriteInt64BigEndian(buffer, sequence);
            BinaryPrimitives.WriteInt64BigEndian(buffer[8..], (occurredAt.UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks) / 10);
            var length = 16;
            // Length-prefixed fields (-1 for null), so that no two different rows share an encoding.
            length += Append(buffer[length..], actorKind);
            length += Append(buffer[length..], actorId);
            length += Append(buffer[length..], action);
            length += Append(buffer[length..], subject);
            length += Append(buffer[length..], recipient);
            length += Append(buffer[length..], outcome);
            length += Append(buffer[length..], details);
            previousHash.CopyTo(buffer[length..]);
            length += previousHash.Length;
            SHA256.HashData(buffer[..length], destination);
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    private static int MaxBytes(string? field) => field is null ? 0 : Encoding.UTF8.GetMaxByteCount(field.Length);

    private static int Append(Span<byte> buffer, string? field)
    {
        if (field is null)
        {
            BinaryPrimitives.WriteInt32BigEndian(buffer, -1);
            return 4;
        }

        var written = Encoding.UTF8.GetBytes(field, buffer[4..]);
        BinaryPrimitives.WriteInt32BigEndian(buffer, written);
        return 4 + written;
    }

    public static byte[] HashOf(AuditEvent row) => HashOf(
        row.Sequence, row.OccurredAt, row.ActorKind, row.ActorId, row.Action, row.Subject, row.Recipient, row.Outcome,
        row.Details, row.PreviousHash);

    /// <summary>
    /// The encoding of a row from its binary COPY form (the <see cref="Columns"/>, each an int32 length, -1 for null, and its
    /// bytes; text as UTF-8) into <paramref name="output"/>, with no decoding: the COPY row less the length prefixes of the
    /// fixed-size fields and of the previous hash, the time moved to 1970. The row's stored hash follows it there, up to
    /// <paramref name="end"/>. Returns the encoding's length; <paramref name="previousAt"/> is where the previous hash starts
    /// in it. <paramref name="output"/> must hold the COPY row's size.
    /// </summary>
    public static int EncodeCopyRow(ReadOnlySpan<byte> fields, Span<byte> output, out int previousAt, out int end)
    {
        BinaryPrimitives.WriteInt64BigEndian(output, BinaryPrimitives.ReadInt64BigEndian(Fixed(ref fields)));
        BinaryPrimitives.WriteInt64BigEndian(output[8..], BinaryPrimitives.ReadInt64BigEndian(Fixed(ref fields)) + PostgresEpochMicroseconds);
        var written = 16;
        for (var text = 0; text < 7; text++)
        {
            // Already in the encoding's form: length (-1 for null), then the UTF-8 bytes.
            var whole = 4 + Math.Max(0, BinaryPrimitives.ReadInt32BigEndian(fields));
            fields[..whole].CopyTo(output[written..]);
            fields = fields[whole..];
            written += whole;
        }

        previousAt = written;
        written += Bytes(ref fields, output[written..]);
        end = written + Bytes(ref fields, output[written..]);
        return written;
    }

    private static ReadOnlySpan<byte> Fixed(ref ReadOnlySpan<byte> fields)
    {
        if (BinaryPrimitives.ReadInt32BigEndian(fields) != 8)
        {
            throw new InvalidDataException("The audit log's sequence or timestamp column is null or not of its type.");
        }

        var value = fields.Slice(4, 8);
        fields = fields[12..];
        return value;
    }

    private static int Bytes(ref ReadOnlySpan<byte> fields, Span<byte> output)
    {
        var length = Math.Max(0, BinaryPrimitives.ReadInt32BigEndian(fields));
        fields.Slice(4, length).CopyTo(output);
        fields = fields[(4 + length)..];
        return length;
    }
}
