using ExchangeGateway.Audit;
using ExchangeGateway.Consents;
using ExchangeGateway.Data;
using ExchangeGateway.Events;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using Microsoft.Extensions.Options;
using Npgsql;

namespace ExchangeGateway.Cvs;

/// <summary>
/// Takes stale CVs offline, set-based: each batch claims up to <see cref="BatchSize"/> stale rows with
/// FOR UPDATE SKIP LOCKED (a seeker refreshing right now keeps their CV; another node's batch is skipped), marks them
/// offline, moves the sites' feeds and writes an obligation for every site holding a copy, all in one transaction.
/// The read path never relied on this job: a stale CV is refused from the moment it is stale.
/// </summary>
public sealed class FreshnessSweepJob(
    GatewayDbContext db, AuditTrail audit, DispatchSignal dispatch, TimeProvider time,
    IOptions<FreshnessOptions> freshness, IOptions<ErasureOptions> erasure)
{
    public const int BatchSize = 5000;

    /// <summary>Returns how many CVs went offline.</summary>
    public async Task<int> RunAsync(CancellationToken cancellationToken)
    {
        var total = 0;
        int swept;
        do
        {
            swept = await SweepBatchAsync(cancellationToken);
            total += swept;
        }
        while (swept == BatchSize && !cancellationToken.IsCancellationRequested);

        return total;
    }

    private async Task<int> SweepBatchAsync(CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        var cutoff = now - freshness.Value.MaxAge;
        await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
        var connection = (NpgsqlConnection)db.Database.GetDbConnection();
        var npgsqlTransaction = (NpgsqlTransaction)transaction.GetDbTransaction();

        var seekers = new List<string>();
        await using (var stale = new NpgsqlCommand(
            """
            WITH stale AS (
                SELECT id FROM cvs WHERE state = 'Published' AND refreshed_at <= $1
                ORDER BY refreshed_at LIMIT $2 FOR UPDATE SKIP LOCKED)
            UPDATE cvs SET state = 'Offline' FROM stale WHERE cvs.id = stale.id
            RETURNING cvs.seeker_id
            """, connection, npgsqlTransaction)
        {
            Parameters = { new() { Value = cutoff }, new() { Value = BatchSize } },
        })
        await using (var reader = await stale.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                seekers.Add(reader.GetString(0));
            }
        }

        if (seekers.Count == 0)
        {
            return 0;
        }

        // Under the chain lock: feed positions in commit order, and every disclosure already committed is seen.
        await Locks.ChainAsync(db, cancellationToken);
        var consents = new List<Guid>();
        await using (var bump = new NpgsqlCommand(
            "UPDATE consents SET feed_position = nextval('feed_positions') WHERE seeker_id = ANY($1) AND state = 'Active' RETURNING id",
            connection, npgsqlTransaction) { Parameters = { new() { Value = seekers.ToArray() } } })
        await using (var reader = await bump.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                consents.Add(reader.GetGuid(0));
            }
        }

        var obligations = await Obligations.RequireErasureAsync(db, consents, ErasureCauses.CvOffline, now, erasure.Value.ConfirmWithin, cancellationToken);
        await audit.AppendAsync(
            seekers.Select(seeker => new AuditEntry(ActorKinds.System, "freshness-sweep", AuditActions.CvWentOffline, Outcomes.Success, SeekerId: seeker)).ToList(),
            cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        dispatch.After(obligations);
        return seekers.Count;
    }
}
