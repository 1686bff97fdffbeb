using System.Security.Claims;
using System.Text.Json;
using ExchangeGateway.Auth;
using ExchangeGateway.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using Npgsql;
using NpgsqlTypes;

namespace ExchangeGateway.Audit;

/// <summary>What happened, before it is numbered and chained. <paramref name="SeekerId"/> is turned into a pseudonym.</summary>
public sealed record AuditEntry(
    string ActorKind,
    string? ActorId,
    string Action,
    string Outcome,
    string? SeekerId = null,
    string? Recipient = null,
    IReadOnlyDictionary<string, object?>? Details = null);

/// <summary>Who acts, as the audit log names them: seekers by pseudonym (also when staff), staff by account id, clients by client id.</summary>
public sealed record AuditActor(string Kind, string? Id)
{
    public static AuditActor System { get; } = new(ActorKinds.System, "gateway");

    public static AuditActor From(ClaimsPrincipal user, Pseudonyms pseudonyms)
    {
        var subject = user.FindFirst("sub")?.Value;
        if (subject is null)
        {
            return new AuditActor(ActorKinds.Anonymous, null);
        }

        var roles = user.FindAll("role").Select(c => c.Value).ToHashSet(StringComparer.Ordinal);
        // A job seeker's account may also be staff: named by pseudonym whatever it does, as AuditTrail.AccountInLog
        // names it, since the log outlives the account's erasure.
        var id = roles.Contains(Roles.Seeker) ? pseudonyms.Of(subject) : subject;
        if (roles.Contains(Roles.Operator)) return new AuditActor(ActorKinds.Operator, id);
        if (roles.Contains(Roles.Auditor)) return new AuditActor(ActorKinds.Auditor, id);
        if (roles.Contains(Roles.Seeker)) return new AuditActor(ActorKinds.Seeker, id);
        if (ApiScopes.Has(user, ApiScopes.AuditRead)) return new AuditActor(ActorKinds.Auditor, subject);
        return new AuditActor(ActorKinds.Recipient, subject);
    }
}

/// <summary>
/// Appends to the hash-chained audit log inside the caller's transaction, so a change and its record commit together.
/// The chain is kept a single line by a transaction-scoped advisory lock held only from the append to the commit:
/// callers append last, in one multi-row insert per transaction, so concurrent writers queue for microseconds,
/// not for their whole unit of work.
/// </summary>
public sealed class AuditTrail(GatewayDbContext db, Pseudonyms pseudonyms, TimeProvider time)
{
    private const long ChainLock = Locks.Chain;

    public Pseudonyms Pseudonyms => pseudonyms;

    public Task AppendAsync(AuditEntry entry, CancellationToken cancellationToken) => AppendAsync([entry], cancellationToken);

    /// <summary>The chain's head, read under the chain lock (see <see cref="HeadQuery"/>), so a caller can read it in its own round trip.</summary>
    public readonly record struct Head(long Sequence, byte[] Hash, DateTimeOffset OccurredAt);

    /// <summary>Reads the head; only meaningful after the chain lock was taken in the same transaction.</summary>
    public const string HeadQuery = "SELECT sequence, hash, occurred_at FROM audit_events ORDER BY sequence DESC LIMIT 1";

    public static async Task<Head> ReadHeadResultAsync(NpgsqlDataReader reader, CancellationToken cancellationToken) =>
        await reader.ReadAsync(cancellationToken)
            ? new Head(reader.GetInt64(0), (byte[])reader[1], reader.GetFieldValue<DateTimeOffset>(2))
            : new Head(0, AuditChain.Genesis, DateTimeOffset.MinValue);

    public Task AppendAsync(IReadOnlyCollection<AuditEntry> entries, CancellationToken cancellationToken) => AppendAsync(entries, null, cancellationToken);

    /// <summary>
    /// Appends in the current transaction (or its own). <paramref name="head"/> is the head the caller already read after
    /// taking the chain lock in this transaction (saving a round trip while the lock is held); null reads it here.
    /// </summary>
    public async Task AppendAsync(IReadOnlyCollection<AuditEntry> entries, Head? head, CancellationToken cancellationToken)
    {
        if (entries.Count == 0)
        {
            return;
        }

        IDbContextTransaction? own = null;
        if (db.Database.CurrentTransaction is null)
        {
            own = await db.Database.BeginTransactionAsync(cancellationToken);
        }

        try
        {
            var connection = (NpgsqlConnection)db.Database.GetDbConnection();
            var transaction = (NpgsqlTransaction)db.Database.CurrentTransaction!.GetDbTransaction();

            var known = head ?? await ReadHeadAsync(connection, transaction, cancellationToken);
            var (lastSequence, lastHash) = (known.Sequence, known.Hash);
            // Never before the head: under the chain lock the sequence is the order of events, and with times that never go
            // back, a time range is a range of sequence numbers (AuditFilter reads it so, by index, instead of scanning the
            // log for it). A node whose clock lags another's stamps the head's time rather than an earlier one.
            var at = AuditChain.Truncate(time.GetUtcNow());
            if (at < known.OccurredAt)
            {
                at = known.OccurredAt;
            }
            var count = entries.Count;
            var sequences = new long[count];
            var kinds = new string[count];
            var actorIds = new string?[count];
            var actions = new string[count];
            var subjects = new string?[count];
            var recipients = new string?[count];
            var outcomes = new string[count];
            var details = new string?[count];
            var previous = new byte[count][];
            var hashes = new byte[count][];

            var i = 0;
            foreach (var entry in entries)
            {
                sequences[i] = ++lastSequence;
                kinds[i] = entry.ActorKind;
                actorIds[i] = entry.ActorId;
                actions[i] = entry.Action;
                subjects[i] = entry.SeekerId is null ? null : pseudonyms.Of(entry.SeekerId);
                recipients[i] = entry.Recipient;
                outcomes[i] = entry.Outcome;
                details[i] = entry.Details is null ? null : JsonSerializer.Serialize(entry.Details);
                previous[i] = lastHash;
                hashes[i] = lastHash = AuditChain.HashOf(
                    sequences[i], at, kinds[i], actorIds[i], actions[i], subjects[i], recipients[i], outcomes[i], details[i], previous[i]);
                i++;
            }

            await using var insert = new NpgsqlCommand(
                """
                INSERT INTO audit_events (sequence, occurred_at, actor_kind, actor_id, action, subject, recipient, outcome, details, previous_hash, hash)
                SELECT s, $2, k, a, ac, su, r, o, d, p, h
                FROM unnest($1::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::bytea[], $11::bytea[])
                     AS t(s, k, a, ac, su, r, o, d, p, h)
                """,
                connection,
                transaction)
            {
                Parameters =
                {
                    new() { Value = sequences },
                    new() { Value = at },
                    new() { Value = kinds },
                    new() { Value = actorIds, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text },
                    new() { Value = actions },
                    new() { Value = subjects, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text },
                    new() { Value = recipients, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text },
                    new() { Value = outcomes },
                    new() { Value = details, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text },
                    new() { Value = previous },
                    new() { Value = hashes },
                },
            };
            await insert.PrepareAsync(cancellationToken);
            await insert.ExecuteNonQueryAsync(cancellationToken);

            if (own is not null)
            {
                await own.CommitAsync(cancellationToken);
            }
        }
        finally
        {
            if (own is not null)
            {
                await own.DisposeAsync();
            }
        }
    }

    private static async Task<Head> ReadHeadAsync(
        NpgsqlConnection connection, NpgsqlTransaction transaction, CancellationToken cancellationToken)
    {
        await using var batch = new NpgsqlBatch(connection, transaction)
        {
            BatchCommands =
            {
                new NpgsqlBatchCommand($"SELECT pg_advisory_xact_lock({ChainLock})"),
                new NpgsqlBatchCommand(HeadQuery),
            },
        };
        await using var reader = await batch.ExecuteReaderAsync(cancellationToken);
        await reader.NextResultAsync(cancellationToken);
        return await ReadHeadResultAsync(reader, cancellationToken);
    }

    /// <summary>Sign-in attempts by people; a failed attempt on an unknown account names no one.</summary>
    public Task RecordSignInAsync(GatewayUser? user, IList<string> roles, bool succeeded, CancellationToken cancellationToken, string? factor = null) =>
        RecordAccountAsync(AuditActions.SignIn, user, roles, succeeded, cancellationToken, factor);

    /// <summary>
    /// Something done to an account by its holder or by someone claiming to be (sign-in, creation, password reset): a
    /// seeker appears only as a pseudonym, an unknown account as an anonymous actor, never by e-mail address.
    /// </summary>
    /// <param name="factor">Which factor the attempt gave (password, code, recovery-code), where a sign-in has more than one.</param>
    /// <param name="details">Anything else the row should say (no personal data: ids and client ids only).</param>
    public Task RecordAccountAsync(
        string action, GatewayUser? user, IList<string> roles, bool succeeded, CancellationToken cancellationToken, string? factor = null,
        IReadOnlyDictionary<string, object?>? details = null)
    {
        if (factor is not null)
        {
            details = new Dictionary<string, object?>(details ?? new Dictionary<string, object?>()) { ["factor"] = factor };
        }

        var kind = user is null ? ActorKinds.Anonymous
            : roles.Contains(Roles.Operator) ? ActorKinds.Operator
            : roles.Contains(Roles.Auditor) ? ActorKinds.Auditor
            : ActorKinds.Seeker;
        return AppendAsync(
            new AuditEntry(
                kind,
                user is null ? null : AccountInLog(user, roles),
                action,
                succeeded ? Outcomes.Success : Outcomes.Denied,
                SeekerId: user is not null && roles.Contains(Roles.Seeker) ? user.Id : null,
                Details: details),
            cancellationToken);
    }

    /// <summary>How an account is named in the log: a job seeker's by pseudonym (erasure must leave nothing that names them), staff by id.</summary>
    public string AccountInLog(GatewayUser user, IList<string> roles) => roles.Contains(Roles.Seeker) ? pseudonyms.Of(user.Id) : user.Id;
}
