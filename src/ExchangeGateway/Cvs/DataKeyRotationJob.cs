using ExchangeGateway.Audit;
using ExchangeGateway.Data;
using ExchangeGateway.Hosting;
using Hangfire;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Npgsql;
using NpgsqlTypes;

namespace ExchangeGateway.Cvs;

/// <summary>What a rotation pass did: data keys re-wrapped, ones it could not open (left as they were), wrapping keys deleted.</summary>
public sealed record DataKeyRotationResult(int Rewrapped, int Unreadable, IReadOnlyList<string> Retired);

/// <summary>
/// Re-wraps every stored data key that is not under the current wrapping key (older keys, and the Data Protection form of
/// the first versions), batch by batch in seeker order, then deletes the wrapping keys nothing uses any more: once gone
/// from the database (and its backups' retention), a leaked old wrapping key opens nothing. A key is deleted only once
/// its successor has been in use for <see cref="DataKeyOptions.ActivationDelay"/>: a write that wrapped under it just
/// before the switch (or on a node whose clock is a little behind) has committed, and is re-wrapped, by then. Each batch is one UPDATE
/// that only replaces a row still holding what was read, so a seeker's own write or erasure in between wins.
/// Runs daily, and once a rotation's new key is active (<see cref="Hosting.KeyCommands"/>).
/// </summary>
[AutomaticRetry(Attempts = Jobs.RetryAttempts)]
public sealed class DataKeyRotationJob(
    GatewayDbContext db, DataKeyRing ring, CvSealer sealer, AuditTrail audit, TimeProvider time, IOptions<DataKeyOptions> options,
    ILogger<DataKeyRotationJob> logger)
{
    public const int BatchSize = 2000;

    public async Task<DataKeyRotationResult> RunAsync(CancellationToken cancellationToken)
    {
        // A fresh view: the key a rotation added is known here however recently this node last read the keys.
        var keys = await ring.ReloadAsync(cancellationToken);
        var now = time.GetUtcNow();
        var current = keys.CurrentAt(now);
        await db.Database.OpenConnectionAsync(cancellationToken);
        try
        {
            var connection = (NpgsqlConnection)db.Database.GetDbConnection();
            int rewrapped = 0, unreadable = 0;
            var after = "";
            while (!cancellationToken.IsCancellationRequested)
            {
                var batch = await ReadBatchAsync(connection, after, current.KeyId, cancellationToken);
                if (batch.Count == 0)
                {
                    break;
                }

                after = batch[^1].SeekerId;
                var changes = new List<(string SeekerId, byte[] Old, byte[] New)>(batch.Count);
                foreach (var (seekerId, wrapped) in batch)
                {
                    try
                    {
                        changes.Add((seekerId, wrapped, sealer.Wrap(seekerId, sealer.Unwrap(seekerId, wrapped))));
                    }
                    catch (System.Security.Cryptography.CryptographicException)
                    {
                        // Under a key this deployment no longer holds: nothing can open it, re-wrapping included. Left for an operator.
                        unreadable++;
                    }
                }

                rewrapped += await WriteAsync(connection, changes, cancellationToken);
            }

            if (unreadable > 0)
            {
                logger.LogWarning("{Count} stored data keys are wrapped by a key this deployment does not hold", unreadable);
            }

            var retired = now - current.ActivatesAt >= options.Value.ActivationDelay
                ? await RetireUnusedAsync(connection, keys, current, cancellationToken)
                : [];
            if (rewrapped > 0 || retired.Count > 0)
            {
                await audit.AppendAsync(new AuditEntry(ActorKinds.System, "data-key-rotation", AuditActions.DataKeysRewrapped, Outcomes.Success,
                    Details: new Dictionary<string, object?> { ["current"] = DataKeyRing.Name(current.KeyId), ["rewrapped"] = rewrapped, ["retired"] = retired }),
                    cancellationToken);
            }

            return new DataKeyRotationResult(rewrapped, unreadable, retired);
        }
        finally
        {
            await db.Database.CloseConnectionAsync();
        }
    }

    private static async Task<List<(string SeekerId, byte[] Wrapped)>> ReadBatchAsync(
        NpgsqlConnection connection, string after, byte[] currentKeyId, CancellationToken cancellationToken)
    {
        // Under an older key or in the Data Protection form (no key id): re-wrapped.
        await using var command = new NpgsqlCommand(
            $"""
            SELECT seeker_id, wrapped_key FROM seeker_keys
            WHERE seeker_id > $1 AND {CvSealer.WrappingKeyIdSql} IS DISTINCT FROM $2
            ORDER BY seeker_id LIMIT $3
            """, connection)
        {
            Parameters = { new() { Value = after }, new() { Value = currentKeyId }, new() { Value = BatchSize } },
        };
        var rows = new List<(string, byte[])>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            rows.Add((reader.GetString(0), reader.GetFieldValue<byte[]>(1)));
        }

        return rows;
    }

    private static async Task<int> WriteAsync(NpgsqlConnection connection, List<(string SeekerId, byte[] Old, byte[] New)> changes, CancellationToken cancellationToken)
    {
        if (changes.Count == 0)
        {
            return 0;
        }

        await using var command = new NpgsqlCommand(
            """
            UPDATE seeker_keys k SET wrapped_key = u.new
            FROM unnest($1::text[], $2::bytea[], $3::bytea[]) AS u(seeker_id, old, new)
            WHERE k.seeker_id = u.seeker_id AND k.wrapped_key = u.old
            """, connection)
        {
            Parameters =
            {
                new() { Value = changes.Select(c => c.SeekerId).ToArray() },
                new() { Value = changes.Select(c => c.Old).ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Bytea },
                new() { Value = changes.Select(c => c.New).ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Bytea },
            },
        };
        return await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>Deletes the wrapping keys older than the current one that no stored data key names any more.</summary>
    private static async Task<List<string>> RetireUnusedAsync(
        NpgsqlConnection connection, DataKeyRing.Snapshot keys, DataKeyRing.Key current, CancellationToken cancellationToken)
    {
        var retired = new List<string>();
        foreach (var key in keys.Keys.Where(k => k.ActivatesAt < current.ActivatesAt))
        {
            await using var command = new NpgsqlCommand(
                $"""
                WITH retired AS (
                    DELETE FROM data_key_wrapping_keys w WHERE w.id = $1
                      AND NOT EXISTS (SELECT 1 FROM seeker_keys WHERE {CvSealer.WrappingKeyIdSql} = $2)
                    RETURNING w.id)
                SELECT count(*)::int FROM retired
                """, connection)
            {
                Parameters = { new() { Value = key.Id }, new() { Value = key.KeyId } },
            };
            if ((int)(await command.ExecuteScalarAsync(cancellationToken))! == 1)
            {
                retired.Add(DataKeyRing.Name(key.KeyId));
            }
        }

        return retired;
    }
}
