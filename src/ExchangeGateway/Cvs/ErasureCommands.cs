using System.Text.Json;
using ExchangeGateway.Audit;
using ExchangeGateway.Consents;
using ExchangeGateway.Data;
using Microsoft.EntityFrameworkCore;

namespace ExchangeGateway.Cvs;

/// <summary>
/// `erasures reapply FILE`: after a database is restored from a backup taken before some seekers' withdrawals, what they
/// took back is back (accounts, CVs, sharings), and nothing in the restored database says it must go: its audit rows were
/// restored to the same point. FILE is the audit log exported as NDJSON (<c>GET /api/v1/audit/events/export</c>) and kept
/// outside the database's backups. From it:
/// - each restored account one of its <c>seeker.erased</c> rows names is erased again;
/// - past the point where the journal and the restored log part (the first journal row the database does not hold, row
///   for row by hash), each <c>cv.erased</c> erases that seeker's restored CV again, and each <c>consent.revoked</c> ends
///   the restored sharing with that site again (a tick made after it, lost with the restore, is the seeker's to make
///   again: the restored episode is the one they ended).
/// Every one writes new erasure events for the sites that had received the CV. Run before the nodes serve traffic. The
/// file holds only pseudonyms and client ids, so keeping it off-site keeps no one's data.
/// </summary>
public static class ErasureCommands
{
    private const string Usage = "usage: erasures reapply AUDIT_EXPORT.ndjson";
    private const int Page = 10_000;
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    public static bool IsCommand(string[] args) => args is ["erasures", ..];

    public static async Task<int> RunAsync(IServiceProvider services, string[] args, TextWriter? output = null)
    {
        output ??= Console.Out;
        if (args is not ["erasures", "reapply", var file])
        {
            await Console.Error.WriteLineAsync(Usage);
            return 64;
        }

        var journal = await ReadJournalAsync(file);
        await using var scope = services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<GatewayDbContext>();
        var pseudonyms = scope.ServiceProvider.GetRequiredService<Pseudonyms>();

        var partedAfter = await PartingAsync(db, journal.Rows);
        var cvsErased = journal.CvErasures.Where(e => e.Sequence > partedAfter).Select(e => e.Pseudonym).ToHashSet(StringComparer.Ordinal);
        var revoked = journal.Revocations.Where(r => r.Sequence > partedAfter).ToList();
        var wanted = journal.Erased.Concat(cvsErased).Concat(revoked.Select(r => r.Pseudonym)).ToHashSet(StringComparer.Ordinal);

        // Every account is checked, by keyset pages of ids: the pseudonym is a keyed hash, so only the gateway's key can
        // tell which restored account a journal line names.
        var accounts = new Dictionary<string, string>(StringComparer.Ordinal);
        var checkedAccounts = 0;
        for (var after = ""; wanted.Count > 0;)
        {
            var ids = await db.Database.SqlQuery<string>($"SELECT id AS \"Value\" FROM \"AspNetUsers\" WHERE id > {after} ORDER BY id LIMIT {Page}").ToListAsync();
            checkedAccounts += ids.Count;
            foreach (var id in ids)
            {
                if (pseudonyms.Of(id) is var pseudonym && wanted.Contains(pseudonym))
                {
                    accounts[pseudonym] = id;
                }
            }

            if (ids.Count < Page)
            {
                break;
            }

            after = ids[^1];
        }

        // One change per account or sharing, each in its own transaction and scope, as the seeker's own request runs: a
        // failure stops here, and running the command again finds only those still to do.
        var (reapplied, cvs, sharings) = (0, 0, 0);
        foreach (var pseudonym in journal.Erased)
        {
            if (accounts.TryGetValue(pseudonym, out var id))
            {
                await using var erasing = services.CreateAsyncScope();
                reapplied += await erasing.ServiceProvider.GetRequiredService<SeekerErasure>().EraseAsync(id, CancellationToken.None) is null ? 0 : 1;
            }
        }

        foreach (var pseudonym in cvsErased.Where(p => !journal.Erased.Contains(p)))
        {
            if (accounts.TryGetValue(pseudonym, out var id))
            {
                await using var erasing = services.CreateAsyncScope();
                var result = await erasing.ServiceProvider.GetRequiredService<CvWriter>().EraseAsync(id, CancellationToken.None);
                cvs += result.Outcome == CvWriteOutcome.Erased ? 1 : 0;
            }
        }

        var sites = await db.Recipients.AsNoTracking().ToDictionaryAsync(r => r.ClientId, r => r.Id, StringComparer.Ordinal);
        foreach (var (_, pseudonym, clientId, method) in revoked.Where(r => !journal.Erased.Contains(r.Pseudonym)))
        {
            if (accounts.TryGetValue(pseudonym, out var id) && sites.TryGetValue(clientId, out var site))
            {
                await using var revoking = services.CreateAsyncScope();
                var decision = await revoking.ServiceProvider.GetRequiredService<ConsentDesk>().UntickAsync(id, site, method, CancellationToken.None);
                sharings += decision.Change == ConsentChange.Revoked ? 1 : 0;
            }
        }

        await scope.ServiceProvider.GetRequiredService<AuditTrail>().AppendAsync(
            new AuditEntry(ActorKinds.Operator, "erasures-command", AuditActions.ErasuresReapplied, Outcomes.Success,
                Details: new Dictionary<string, object?>
                {
                    ["journalErasures"] = journal.Erased.Count, ["accountsChecked"] = checkedAccounts, ["reapplied"] = reapplied,
                    ["partedAfter"] = partedAfter, ["cvsErased"] = cvs, ["sharingsEnded"] = sharings,
                }),
            CancellationToken.None);
        await output.WriteLineAsync(JsonSerializer.Serialize(
            new
            {
                journalLines = journal.Lines, journalErasures = journal.Erased.Count, accountsChecked = checkedAccounts, reapplied,
                partedAfter, cvsErased = cvs, sharingsEnded = sharings,
            },
            Json));
        return 0;
    }

    private sealed record Journal(
        int Lines, HashSet<string> Erased, List<(long Sequence, byte[] Hash)> Rows, List<(long Sequence, string Pseudonym)> CvErasures,
        List<(long Sequence, string Pseudonym, string ClientId, CollectionMethod Method)> Revocations);

    /// <summary>
    /// The sequence of the last journal row the database holds, by hash (rows are chained, so every journal row before it
    /// is held too, and none after), or 0: the changes after it were lost with the restore. Rows the restored nodes have
    /// written since, under the same numbers, are not the journal's.
    /// </summary>
    private static async Task<long> PartingAsync(GatewayDbContext db, List<(long Sequence, byte[] Hash)> rows)
    {
        async Task<bool> HeldAsync((long Sequence, byte[] Hash) row) =>
            (await db.Database.SqlQuery<byte[]>($"SELECT hash AS \"Value\" FROM audit_events WHERE sequence = {row.Sequence}").ToListAsync())
            is [var hash] && hash.AsSpan().SequenceEqual(row.Hash);

        rows.Sort((a, b) => a.Sequence.CompareTo(b.Sequence));
        var (low, high) = (0, rows.Count);
        while (low < high)
        {
            var middle = low + ((high - low) / 2);
            if (await HeldAsync(rows[middle]))
            {
                low = middle + 1;
            }
            else
            {
                high = middle;
            }
        }

        return low > 0 ? rows[low - 1].Sequence : 0;
    }

    /// <summary>What the export's rows say about withdrawals; a line that is not an audit row stops the command.</summary>
    private static async Task<Journal> ReadJournalAsync(string file)
    {
        var journal = new Journal(0, new HashSet<string>(StringComparer.Ordinal), [], [], []);
        var lines = 0;
        using var reader = new StreamReader(file);
        while (await reader.ReadLineAsync() is { } line)
        {
            lines++;
            if (string.IsNullOrWhiteSpace(line))
            {
                continue;
            }

            try
            {
                using var row = JsonDocument.Parse(line);
                var root = row.RootElement;
                if (root.ValueKind != JsonValueKind.Object || root.TryGetProperty("end", out _))
                {
                    continue;
                }

                string? Text(string name) => root.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;
                if (!root.TryGetProperty("id", out var id) || !id.TryGetInt64(out var sequence) || Text("hash") is not { } hash)
                {
                    throw new JsonException("no id or hash");
                }

                journal.Rows.Add((sequence, Convert.FromHexString(hash)));
                var (action, subject) = (Text("action"), Text("subject"));
                if (subject is null)
                {
                    continue;
                }

                if (action == AuditActions.SeekerErased)
                {
                    journal.Erased.Add(subject);
                }
                else if (action == AuditActions.CvErased)
                {
                    journal.CvErasures.Add((sequence, subject));
                }
                else if (action == AuditActions.ConsentRevoked && Text("recipient") is { } clientId)
                {
                    var method = root.TryGetProperty("details", out var details) && details.ValueKind == JsonValueKind.Object
                        && details.TryGetProperty("method", out var m) && m.ValueKind == JsonValueKind.String
                        && Enum.TryParse<CollectionMethod>(m.GetString(), ignoreCase: true, out var parsed) ? parsed : CollectionMethod.Api;
                    journal.Revocations.Add((sequence, subject, clientId, method));
                }
            }
            catch (Exception e) when (e is JsonException or FormatException)
            {
                throw new InvalidOperationException($"{file}, line {lines}, is not an audit row: give the audit log's NDJSON export.");
            }
        }

        return journal with { Lines = lines };
    }
}
