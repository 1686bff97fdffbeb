using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace ExchangeGateway.Audit;

/// <summary>The canonical encoding of an audit row and its SHA-256 link to the previous row.</summary>
public static class AuditChain
{
    public static readonly byte[] Genesis = new byte[32];

    /// <summary>PostgreSQL keeps microseconds; hashing anything finer would break verification after a round trip.</summary>
    public static DateTimeOffset Truncate(DateTimeOffset at) =>
        new(at.UtcTicks - at.UtcTicks % 10, TimeSpan.Zero);

    public static byte[] HashOf(
        long sequence, DateTimeOffset occurredAt, string actorKind, string? actorId, string action, string? subject,
        string? recipient, string outcome, string? details, byte[] previousHash)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        Span<byte> number = stackalloc byte[8];
        BinaryPrimitives.WriteInt64BigEndian(number, sequence);
        hash.AppendData(number);
        BinaryPrimitives.WriteInt64BigEndian(number, (occurredAt.UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks) / 10);
        hash.AppendData(number);
        // Length-prefixed fields (-1 for null), so that no two different rows share an encoding.
        foreach (var field in (ReadOnlySpan<string?>)[actorKind, actorId, action, subject, recipient, outcome, details])
        {
            Append(hash, field);
        }

        hash.AppendData(previousHash);
        return hash.GetHashAndReset();
    }

    public static byte[] HashOf(AuditEvent row) => HashOf(
        row.Sequence, row.OccurredAt, row.ActorKind, row.ActorId, row.Action, row.Subject, row.Recipient, row.Outcome,
        row.Details, row.PreviousHash);

    private static void Append(IncrementalHash hash, string? field)
    {
        Span<byte> length = stackalloc byte[4];
        if (field is null)
        {
            BinaryPrimitives.WriteInt32BigEndian(length, -1);
            hash.AppendData(length);
            return;
        }

        var bytes = Encoding.UTF8.GetBytes(field);
        BinaryPrimitives.WriteInt32BigEndian(length, bytes.Length);
        hash.AppendData(length);
        hash.AppendData(bytes);
    }
}
