using ExchangeGateway.Audit;
using ExchangeGateway.Cvs;
using ExchangeGateway.Data;
using ExchangeGateway.Hosting;
using ExchangeGateway.Recipients;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using Microsoft.Extensions.Options;
using Npgsql;
using NpgsqlTypes;

namespace ExchangeGateway.Exchange;

/// <summary>A document about to be sent: which episode, which version, the hash of exactly those bytes.</summary>
public readonly record struct DisclosureCandidate(Guid ConsentId, int Version, byte[] Hash);

/// <summary>
/// Group commit of the disclosure ledger and its audit events. Every read hands its candidates here and waits; whichever
/// caller finds no write under way becomes the writer and records everything queued meanwhile, from any number of
/// requests, in one transaction: chain lock, ledger rows (availability checked once more against committed data),
/// audit events, commit. The chain lock is then taken once per batch instead of once per request, and held for three
/// round trips whatever the batch size, so concurrent readers share one commit instead of queueing for the lock.
/// A caller learns what was recorded only after the commit, and sends only that (promise 2 is unchanged).
/// </summary>
public sealed class DisclosureRecorder(
    IServiceScopeFactory scopes, IOptions<FreshnessOptions> freshness, TimeProvider time, GatewayMetrics metrics)
{
    /// <summary>Documents per transaction at most; what is left waits for the next one.</summary>
    public const int MaxBatch = 2000;

    // One statement for the whole batch, prepared once per connection: the candidates of every waiting request, each with
    // the recipient that asked, so a site can only ever record (and receive) its own consents. A CV must be Published as
    // well as fresh by this node's clock: one the sweep took offline on a node whose clock ran ahead is not served here,
    // since the sweep will never come back to chase a copy sent after it.
    private const string InsertSql = """
        INSERT INTO disclosures (consent_id, recipient_id, seeker_id, cv_version, content_hash, disclosed_at)
        SELECT u.consent_id, c.recipient_id, c.seeker_id, u.version, u.hash, $5
        FROM unnest($1::uuid[], $2::int[], $3::bytea[], $4::uuid[]) AS u(consent_id, version, hash, recipient_id)
        JOIN consents c ON c.id = u.consent_id AND c.state = 'Active' AND c.expires_at > $5 AND c.recipient_id = u.recipient_id
        JOIN recipients r ON r.id = c.recipient_id AND r.status = 'Active'
        JOIN cvs v ON v.seeker_id = c.seeker_id AND v.version = u.version AND v.state = 'Published' AND v.refreshed_at > $6
        RETURNING id, consent_id, seeker_id, cv_version
        """;

    private readonly Lock _gate = new();
    private readonly Queue<Pending> _queue = new();
    private bool _writing;

    /// <summary>The consents whose documents were recorded (and may be sent); the others must not be.</summary>
    public Task<HashSet<Guid>> RecordAsync(Recipient recipient, IReadOnlyList<DisclosureCandidate> candidates)
    {
        if (candidates.Count == 0)
        {
            return Task.FromResult(new HashSet<Guid>());
        }

        var pending = new Pending(recipient, candidates);
        bool lead;
        lock (_gate)
        {
            _queue.Enqueue(pending);
            lead = !_writing;
            _writing = true;
        }

        if (lead)
        {
            _ = Task.Run(WriteAsync);
        }

        return pending.Completion.Task;
    }

    private async Task WriteAsync()
    {
        while (true)
        {
            var batch = new List<Pending>();
            lock (_gate)
            {
                var documents = 0;
                while (_queue.TryPeek(out var next) && (batch.Count == 0 || documents + next.Candidates.Count <= MaxBatch))
                {
                    batch.Add(_queue.Dequeue());
                    documents += next.Candidates.Count;
                }

                if (batch.Count == 0)
                {
                    _writing = false;
                    return;
                }
            }

            try
            {
                await WriteBatchAsync(batch);
            }
            catch (Exception e)
            {
                foreach (var pending in batch)
                {
                    pending.Completion.TrySetException(e);
                }
            }
        }
    }

    private async Task WriteBatchAsync(List<Pending> batch)
    {
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<GatewayDbContext>();
        var audit = scope.ServiceProvider.GetRequiredService<AuditTrail>();

        await using var transaction = await db.Database.BeginTransactionAsync(CancellationToken.None);
        var connection = (NpgsqlConnection)db.Database.GetDbConnection();
        // The clock is read once the chain lock is held, as every end reads it: read before, a batch that waited for the
        // lock behind a sweep's batch judged a consent that lapsed meanwhile still running, and sent the CV after its end
        // under a ledger date from before it.
        var now = await Locks.ChainForEndAsync(db, time, CancellationToken.None);
        var freshSince = now - freshness.Value.MaxAge;
        // One round trip under the lock: the ledger rows of every waiting request, the audit head.
        var all = batch.SelectMany(p => p.Candidates.Select(c => (Candidate: c, p.Recipient))).ToList();
        await using var command = new NpgsqlBatch(connection, (NpgsqlTransaction)transaction.GetDbTransaction())
        {
            BatchCommands =
            {
                new NpgsqlBatchCommand(InsertSql)
                {
                    Parameters =
                    {
                        new() { Value = all.Select(a => a.Candidate.ConsentId).ToArray() },
                        new() { Value = all.Select(a => a.Candidate.Version).ToArray() },
                        new() { Value = all.Select(a => a.Candidate.Hash).ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Bytea },
                        new() { Value = all.Select(a => a.Recipient.Id).ToArray() },
                        new() { Value = now },
                        new() { Value = freshSince },
                    },
                },
                new NpgsqlBatchCommand(AuditTrail.HeadQuery),
            },
        };
        await command.PrepareAsync(CancellationToken.None);

        // Ledger rows by (episode, version); two requests for the same document in one batch each get their own row.
        var ledger = new Dictionary<(Guid, int), Queue<(long Id, string SeekerId)>>();
        AuditTrail.Head head;
        await using (var reader = await command.ExecuteReaderAsync(CancellationToken.None))
        {
            while (await reader.ReadAsync(CancellationToken.None))
            {
                var key = (reader.GetGuid(1), reader.GetInt32(3));
                if (!ledger.TryGetValue(key, out var rows))
                {
                    ledger[key] = rows = new Queue<(long, string)>();
                }

                rows.Enqueue((reader.GetInt64(0), reader.GetString(2)));
            }

            await reader.NextResultAsync(CancellationToken.None);
            head = await AuditTrail.ReadHeadResultAsync(reader, CancellationToken.None);
        }

        var entries = new List<AuditEntry>();
        foreach (var pending in batch)
        {
            foreach (var candidate in pending.Candidates)
            {
                if (ledger.TryGetValue((candidate.ConsentId, candidate.Version), out var rows) && rows.TryDequeue(out var row))
                {
                    pending.Recorded.Add(candidate.ConsentId);
                    entries.Add(new AuditEntry(ActorKinds.Recipient, pending.Recipient.ClientId, AuditActions.CvDisclosed, Outcomes.Success,
                        SeekerId: row.SeekerId, Recipient: pending.Recipient.ClientId,
                        Details: new Dictionary<string, object?> { ["ledger"] = row.Id, ["version"] = candidate.Version }));
                }
            }
        }

        await audit.AppendAsync(entries, head, CancellationToken.None);
        await transaction.CommitAsync(CancellationToken.None);
        metrics.CvsDisclosed.Add(entries.Count);
        metrics.DisclosureBatchSize.Record(all.Count);
        metrics.DisclosureBatchDuration.Record(System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds);
        foreach (var pending in batch)
        {
            pending.Completion.TrySetResult(pending.Recorded);
        }
    }

    private sealed class Pending(Recipient recipient, IReadOnlyList<DisclosureCandidate> candidates)
    {
        public Recipient Recipient { get; } = recipient;
        public IReadOnlyList<DisclosureCandidate> Candidates { get; } = candidates;
        public HashSet<Guid> Recorded { get; } = [];
        public TaskCompletionSource<HashSet<Guid>> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
