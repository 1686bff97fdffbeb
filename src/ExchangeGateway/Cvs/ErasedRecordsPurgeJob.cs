using ExchangeGateway.Audit;
using ExchangeGateway.Data;
using ExchangeGateway.Events;
using ExchangeGateway.Hosting;
using Hangfire;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using Microsoft.Extensions.Options;
using Npgsql;

namespace ExchangeGateway.Cvs;

/// <summary>
/// Daily: the end of what an erasure keeps. After "forget me", an episode keeps what chasing the copies and proving it
/// need, naming no one: its pairwise id, its ledger rows, the erasure requests and their confirmations. Once the episode
/// has ended <see cref="ErasureOptions.KeepErasedRecordsFor"/> ago and no request about it is still open, there is nothing
/// left to chase or to prove that the audit log (pseudonymous, with every event id) does not hold, so it goes, with its
/// ledger rows, requests and feed entry, by batches claimed with SKIP LOCKED, one audit row per batch.
/// A request a site never confirmed keeps its episode: that is evidence against the site.
/// </summary>
[AutomaticRetry(Attempts = Jobs.RetryAttempts)]
public sealed class ErasedRecordsPurgeJob(IServiceScopeFactory scopes, TimeProvider time, IOptions<ErasureOptions> erasure, ILogger<ErasedRecordsPurgeJob> logger)
{
    // seeker_id is null only on the episodes of an erased seeker (SeekerErasure forgets it there and nowhere else). The
    // partial index on ended_at holds those alone. The feed entry goes with the consent (cascade).
    private const string PurgeSql = """
        WITH gone AS (
            SELECT c.id FROM consents c
            WHERE c.seeker_id IS NULL AND c.ended_at < $1
              AND NOT EXISTS (SELECT 1 FROM erasure_obligations o WHERE o.consent_id = c.id AND o.status <> 'Confirmed')
            ORDER BY c.ended_at LIMIT $2 FOR UPDATE SKIP LOCKED),
        ledger AS (DELETE FROM disclosures d USING gone WHERE d.consent_id = gone.id RETURNING 1),
        requests AS (DELETE FROM erasure_obligations o USING gone WHERE o.consent_id = gone.id RETURNING 1),
        episodes AS (DELETE FROM consents c USING gone WHERE c.id = gone.id RETURNING 1)
        SELECT (SELECT count(*) FROM episodes), (SELECT count(*) FROM ledger), (SELECT count(*) FROM requests)
        """;

    /// <summary>Returns how many episodes were removed.</summary>
    public async Task<int> RunAsync(CancellationToken cancellationToken)
    {
        var cutoff = time.GetUtcNow() - erasure.Value.KeepErasedRecordsFor;
        var total = 0;
        int removed;
        do
        {
            removed = await PurgeBatchAsync(cutoff, cancellationToken);
            total += removed;
        }
        while (removed == erasure.Value.PurgeBatchSize && !cancellationToken.IsCancellationRequested);

        if (total > 0)
        {
            logger.LogInformation("Removed the kept records of {Count} erased seekers' sharings", total);
        }

        return total;
    }

    private async Task<int> PurgeBatchAsync(DateTimeOffset cutoff, CancellationToken cancellationToken)
    {
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<GatewayDbContext>();
        await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
        long episodes, ledger, requests;
        await using (var purge = new NpgsqlCommand(PurgeSql, (NpgsqlConnection)db.Database.GetDbConnection(), (NpgsqlTransaction)transaction.GetDbTransaction())
        {
            Parameters = { new() { Value = cutoff }, new() { Value = erasure.Value.PurgeBatchSize } },
        })
        await using (var reader = await purge.ExecuteReaderAsync(cancellationToken))
        {
            await reader.ReadAsync(cancellationToken);
            (episodes, ledger, requests) = (reader.GetInt64(0), reader.GetInt64(1), reader.GetInt64(2));
        }

        if (episodes == 0)
        {
            return 0;
        }

        await scope.ServiceProvider.GetRequiredService<AuditTrail>().AppendAsync(
            new AuditEntry(ActorKinds.System, "retention", AuditActions.ErasedRecordsPurged, Outcomes.Success,
                Details: new Dictionary<string, object?>
                {
                    ["episodes"] = episodes, ["disclosures"] = ledger, ["erasureRequests"] = requests,
                    ["endedBefore"] = cutoff, ["keptForDays"] = (int)erasure.Value.KeepErasedRecordsFor.TotalDays,
                }),
            cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        return (int)episodes;
    }
}
