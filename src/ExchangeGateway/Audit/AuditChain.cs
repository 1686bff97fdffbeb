using System.Buffers;
using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using ExchangeGateway.Data;

namespace ExchangeGateway.Audit;

/// <summary>
/// The canonical encoding of an audit row and its SHA-256 link to the previous row. The encoding is PostgreSQL's binary COPY
/// row of the same columns with the fixed-size columns' length prefixes dropped and the time counted from 1970: the verifier
/// hashes rows straight from a binary COPY (<see cref="AuditVerifier"/>), so a change here must be made there too.
/// </summary>
public static class AuditChain
{
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
}
