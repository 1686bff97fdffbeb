using ExchangeGateway.Auth;
using ExchangeGateway.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using Npgsql;

namespace ExchangeGateway.Audit;

/// <summary>The verdict on the chain. <c>Problem</c> is altered, removed, inserted or checkpoint.</summary>
public sealed record AuditVerification(
    bool Ok, long RowsChecked, long HeadSequence, long? LastCheckpoint, long? FirstBadSequence, string? Problem, string? Detail);

/// <summary>
/// Walks the whole chain in sequence order, streaming (constant memory at any size), and checks every row's hash, every
/// link, the absence of gaps, and every signed checkpoint against the row it vouches for.
/// </summary>
public sealed class AuditVerifier(GatewayDbContext db, SigningKeyRing keys)
{
    public async Task<AuditVerification> VerifyAsync(CancellationToken cancellationToken)
    {
        var checkpoints = await db.Set<AuditCheckpoint>().AsNoTracking().OrderBy(c => c.Sequence).ToListAsync(cancellationToken);
        var signed = new Dictionary<long, AuditCheckpoint>();
        foreach (var checkpoint in checkpoints)
        {
            if (!await AuditCheckpoints.IsAuthenticAsync(checkpoint, keys))
            {
                return Fail(0, 0, null, checkpoint.Sequence, "checkpoint", "The checkpoint's signature does not verify.");
            }

            signed[checkpoint.Sequence] = checkpoint;
        }

        var connection = (NpgsqlConnection)db.Database.GetDbConnection();
        await db.Database.OpenConnectionAsync(cancellationToken);
        try
        {
            await using var command = new NpgsqlCommand(
                "SELECT sequence, occurred_at, actor_kind, actor_id, action, subject, recipient, outcome, details, previous_hash, hash FROM audit_events ORDER BY sequence",
                connection);
            await using var reader = await command.ExecuteReaderAsync(System.Data.CommandBehavior.SequentialAccess, cancellationToken);

            long expected = 1, rows = 0;
            long? lastCheckpoint = null;
            var previousHash = AuditChain.Genesis;
            while (await reader.ReadAsync(cancellationToken))
            {
                var sequence = reader.GetInt64(0);
                var occurredAt = reader.GetFieldValue<DateTimeOffset>(1);
                var actorKind = reader.GetString(2);
                var actorId = reader.IsDBNull(3) ? null : reader.GetString(3);
                var action = reader.GetString(4);
                var subject = reader.IsDBNull(5) ? null : reader.GetString(5);
                var recipient = reader.IsDBNull(6) ? null : reader.GetString(6);
                var outcome = reader.GetString(7);
                var details = reader.IsDBNull(8) ? null : reader.GetString(8);
                var storedPrevious = reader.GetFieldValue<byte[]>(9);
                var storedHash = reader.GetFieldValue<byte[]>(10);
                rows++;

                if (sequence > expected)
                {
                    return Fail(rows, sequence, lastCheckpoint, expected, "removed", $"Row {expected} is missing from the chain.");
                }

                var recomputed = AuditChain.HashOf(sequence, occurredAt, actorKind, actorId, action, subject, recipient, outcome, details, storedPrevious);
                var selfConsistent = recomputed.AsSpan().SequenceEqual(storedHash);
                var linked = storedPrevious.AsSpan().SequenceEqual(previousHash);
                if (!selfConsistent && linked)
                {
                    return Fail(rows, sequence, lastCheckpoint, sequence, "altered", $"Row {sequence} does not match its hash: its content was changed.");
                }

                if (!linked && selfConsistent && sequence > 1)
                {
                    // This row is intact but its predecessor's hash changed: the predecessor was rewritten and re-hashed.
                    return Fail(rows, sequence, lastCheckpoint, sequence - 1, "altered", $"Row {sequence - 1} was rewritten: row {sequence} no longer links to it.");
                }

                if (!linked)
                {
                    // Neither linked nor self-consistent: the gateway never wrote this row here.
                    return Fail(rows, sequence, lastCheckpoint, sequence, "inserted", $"Row {sequence} does not belong to the chain: it was inserted.");
                }

                if (signed.TryGetValue(sequence, out var checkpoint))
                {
                    if (!checkpoint.Hash.AsSpan().SequenceEqual(storedHash))
                    {
                        return Fail(rows, sequence, lastCheckpoint, sequence, "checkpoint", $"Row {sequence} differs from the signed checkpoint.");
                    }

                    lastCheckpoint = sequence;
                }

                previousHash = storedHash;
                expected = sequence + 1;
            }

            var head = expected - 1;
            var beyond = signed.Keys.Where(s => s > head).ToList();
            if (beyond.Count > 0)
            {
                return Fail(rows, head, lastCheckpoint, head + 1, "removed", $"A signed checkpoint vouches for row {beyond.Max()}, but the chain ends at row {head}.");
            }

            return new AuditVerification(true, rows, head, lastCheckpoint, null, null, null);
        }
        finally
        {
            await db.Database.CloseConnectionAsync();
        }
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

    public static async Task<bool> IsAuthenticAsync(AuditCheckpoint checkpoint, SigningKeyRing keys)
    {
        var result = await new JsonWebTokenHandler().ValidateTokenAsync(checkpoint.Signature, new TokenValidationParameters
        {
            ValidateIssuer = false,
            ValidateAudience = false,
            ValidateLifetime = false,
            IssuerSigningKeys = keys.ValidationKeys,
            ValidTypes = ["audit-checkpoint+jwt"],
        });
        return result.IsValid
            && result.Claims.TryGetValue("seq", out var seq) && Convert.ToInt64(seq, System.Globalization.CultureInfo.InvariantCulture) == checkpoint.Sequence
            && result.Claims.TryGetValue("hash", out var hash) && hash is string text && Base64UrlEncoder.DecodeBytes(text).AsSpan().SequenceEqual(checkpoint.Hash);
    }
}
