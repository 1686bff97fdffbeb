using System.Text.Json;
using ExchangeGateway.Auth;

namespace ExchangeGateway.Audit;

/// <summary>
/// `dotnet run --project src/ExchangeGateway -- audit verify [--anchor TOKEN] [--since TOKEN] | audit checkpoint`: the same verification the API offers, for an
/// auditor with database access and no token (exit code 0 when the chain holds, 2 when it does not).
/// </summary>
public static class AuditCommands
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    public static bool IsCommand(string[] args) => args is ["audit", ..];

    public static async Task<int> RunAsync(IServiceProvider services, string[] args)
    {
        await services.GetRequiredService<SigningKeyRing>().LoadAsync(CancellationToken.None);
        await using var scope = services.CreateAsyncScope();
        switch (args)
        {
            case ["audit", "verify", .. var options] when Options(options) is { } given:
                AuditCheckpoint? anchor = null, since = null;
                foreach (var (option, token) in given)
                {
                    var read = await AuditCheckpoints.ReadTokenAsync(token, services.GetRequiredService<SigningKeyRing>());
                    if (read is null)
                    {
                        await Console.Error.WriteLineAsync($"audit verify: the {option[2..]} is not a checkpoint signed by this gateway");
                        return 64;
                    }

                    (anchor, since) = option == "--anchor" ? (read, since) : (anchor, read);
                }

                var clock = System.Diagnostics.Stopwatch.StartNew();
                var verdict = await scope.ServiceProvider.GetRequiredService<AuditVerifier>().VerifyAsync(anchor, since, CancellationToken.None);
                clock.Stop();
                try
                {
                    verdict = await scope.ServiceProvider.GetRequiredService<AuditCheckpoints>().SealAsync(verdict, CancellationToken.None);
                }
                catch (Npgsql.PostgresException e) when (e.SqlState is Npgsql.PostgresErrorCodes.ReadOnlySqlTransaction or Npgsql.PostgresErrorCodes.InsufficientPrivilege)
                {
                    await Console.Error.WriteLineAsync("audit verify: this database login cannot store checkpoints, so the head verified is not sealed with one");
                }

                Console.WriteLine(JsonSerializer.Serialize(verdict, Json));
                // On stderr, so the verdict on stdout stays plain JSON.
                await Console.Error.WriteLineAsync(FormattableString.Invariant($"audit verify: {verdict.RowsChecked} rows verified in {clock.Elapsed.TotalMilliseconds:0.0} ms"));
                try
                {
                    await scope.ServiceProvider.GetRequiredService<AuditTrail>().AppendAsync(
                        verdict.Record(new AuditActor(ActorKinds.Auditor, "audit-command"), anchor, since), CancellationToken.None);
                }
                catch (Npgsql.PostgresException e) when (e.SqlState is Npgsql.PostgresErrorCodes.ReadOnlySqlTransaction or Npgsql.PostgresErrorCodes.InsufficientPrivilege)
                {
                    // A standby, or a login that may only read: the verdict stands, the record of it cannot be written there.
                    await Console.Error.WriteLineAsync("audit verify: this database login cannot append to the log, so the verification is not recorded in it");
                }

                return verdict.Ok ? 0 : 2;
            case ["audit", "checkpoint"]:
                var checkpoint = await scope.ServiceProvider.GetRequiredService<AuditCheckpoints>().CreateAsync(CancellationToken.None);
                Console.WriteLine(checkpoint is null ? "nothing new to checkpoint" : $"checkpoint at sequence {checkpoint.Sequence}");
                return 0;
            default:
                await Console.Error.WriteLineAsync("usage: audit verify [--anchor TOKEN] [--since TOKEN] | audit checkpoint");
                return 64;
        }
    }

    /// <summary>Each of --anchor and --since at most once, each with its token; null for anything else.</summary>
    private static List<(string Option, string Token)>? Options(string[] options)
    {
        if (options.Length % 2 != 0)
        {
            return null;
        }

        var given = options.Chunk(2).Select(pair => (Option: pair[0], Token: pair[1])).ToList();
        return given.All(o => o.Option is "--anchor" or "--since") && given.DistinctBy(o => o.Option).Count() == given.Count ? given : null;
    }
}
