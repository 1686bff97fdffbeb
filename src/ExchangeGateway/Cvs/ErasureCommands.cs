using System.Text.Json;
using ExchangeGateway.Audit;
using ExchangeGateway.Data;
using Microsoft.EntityFrameworkCore;

namespace ExchangeGateway.Cvs;

/// <summary>
/// `erasures reapply FILE`: after a database is restored from a backup taken before some "forget me" requests, those
/// accounts, CVs and sharings are back, and nothing in the restored database says they must go (their audit rows were
/// restored to the same point). FILE is the audit log exported as NDJSON (<c>GET /api/v1/audit/events/export</c>, or
/// its <c>action=seeker.erased</c> rows) and kept outside the database's backups: each restored account whose pseudonym
/// one of its <c>seeker.erased</c> rows names is erased again, with new erasure events for every site that had received
/// the CV. Run before the nodes serve traffic. The file holds only pseudonyms, so keeping it off-site keeps no one's data.
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

        var (lines, erased) = await ReadJournalAsync(file);
        await using var scope = services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<GatewayDbContext>();
        var pseudonyms = scope.ServiceProvider.GetRequiredService<Pseudonyms>();

        // Every account is checked, by keyset pages of ids: the pseudonym is a keyed hash, so only the gateway's key can
        // tell which restored account a journal line names.
        var again = new List<string>();
        var checkedAccounts = 0;
        for (var after = ""; erased.Count > 0;)
        {
            var ids = await db.Database.SqlQuery<string>($"SELECT id AS \"Value\" FROM \"AspNetUsers\" WHERE id > {after} ORDER BY id LIMIT {Page}").ToListAsync();
            checkedAccounts += ids.Count;
            again.AddRange(ids.Where(id => erased.Contains(pseudonyms.Of(id))));
            if (ids.Count < Page)
            {
                break;
            }

            after = ids[^1];
        }

        var reapplied = 0;
        foreach (var id in again)
        {
            // One erasure per account, each in its own transaction and scope, as "forget me" runs: a failure stops here, and
            // running the command again finds only those still to do.
            await using var erasing = services.CreateAsyncScope();
            reapplied += await erasing.ServiceProvider.GetRequiredService<SeekerErasure>().EraseAsync(id, CancellationToken.None) is null ? 0 : 1;
        }

        await scope.ServiceProvider.GetRequiredService<AuditTrail>().AppendAsync(
            new AuditEntry(ActorKinds.Operator, "erasures-command", AuditActions.ErasuresReapplied, Outcomes.Success,
                Details: new Dictionary<string, object?> { ["journalErasures"] = erased.Count, ["accountsChecked"] = checkedAccounts, ["reapplied"] = reapplied }),
            CancellationToken.None);
        await output.WriteLineAsync(JsonSerializer.Serialize(
            new { journalLines = lines, journalErasures = erased.Count, accountsChecked = checkedAccounts, reapplied }, Json));
        return 0;
    }

    /// <summary>The pseudonyms the export's <c>seeker.erased</c> rows name; a line that is not an audit row stops the command.</summary>
    private static async Task<(int Lines, HashSet<string> Erased)> ReadJournalAsync(string file)
    {
        var erased = new HashSet<string>(StringComparer.Ordinal);
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
                if (row.RootElement.TryGetProperty("action", out var action) && action.ValueKind == JsonValueKind.String
                    && action.GetString() == AuditActions.SeekerErased
                    && row.RootElement.TryGetProperty("subject", out var subject) && subject.ValueKind == JsonValueKind.String)
                {
                    erased.Add(subject.GetString()!);
                }
            }
            catch (JsonException)
            {
                throw new InvalidOperationException($"{file}, line {lines}, is not an audit row: give the audit log's NDJSON export.");
            }
        }

        return (lines, erased);
    }
}
