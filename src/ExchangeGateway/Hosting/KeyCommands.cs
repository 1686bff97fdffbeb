using System.Text.Json;
using ExchangeGateway.Audit;
using ExchangeGateway.Cvs;
using ExchangeGateway.Data;
using Hangfire;
using Microsoft.Extensions.Options;

namespace ExchangeGateway.Hosting;

/// <summary>
/// The `keys` commands, for both kinds of key. `dotnet ExchangeGateway.dll keys export-public DIR` writes the public halves of the signing keys in use as PEM files,
/// the verification keys of a replacement (see the README), also when the gateway created and stored the keys itself.
/// `keys rotate-data-key` adds a data-key wrapping key that every node starts using at the same
/// instant, <see cref="DataKeyOptions.ActivationDelay"/> from now (by then each has read it), and schedules the passes
/// that re-wrap the stored data keys under it and, once it has been in use as long again, delete the old wrapping key
/// (the daily run would do both too). `keys seal-ring` seals the Data Protection keys stored before the ring had a
/// key-encryption key, and reseals under the current one those sealed under a previous one (<see cref="KeyRingOptions"/>).
/// </summary>
public static class KeyCommands
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    public static bool IsCommand(string[] args) => args is ["keys", ..];

    public static async Task<int> RunAsync(IServiceProvider services, string[] args)
    {
        if (args is ["keys", "export-public", var folder])
        {
            var signing = services.GetRequiredService<Auth.SigningKeyRing>();
            await signing.LoadAsync(CancellationToken.None);
            var (rsa, ecdsa) = signing.PublicPems();
            Directory.CreateDirectory(folder);
            string[] files = [Path.Combine(folder, "rs256.pub.pem"), Path.Combine(folder, "es256.pub.pem")];
            await File.WriteAllTextAsync(files[0], rsa);
            await File.WriteAllTextAsync(files[1], ecdsa);
            Console.WriteLine(JsonSerializer.Serialize(new { rs256 = files[0], es256 = files[1] }, Json));
            return 0;
        }

        if (args is ["keys", "seal-ring"])
        {
            await using var sealing = services.CreateAsyncScope();
            var report = await KeyRingProtection.SealStoredKeysAsync(
                sealing.ServiceProvider.GetRequiredService<GatewayDbContext>(), services.GetRequiredService<IOptions<KeyRingOptions>>().Value, CancellationToken.None);
            await sealing.ServiceProvider.GetRequiredService<AuditTrail>().AppendAsync(
                new AuditEntry(ActorKinds.Operator, "keys-command", AuditActions.KeyRingSealed, Outcomes.Success,
                    Details: new Dictionary<string, object?> { ["sealed"] = report.Sealed, ["resealed"] = report.Resealed }),
                CancellationToken.None);
            Console.WriteLine(JsonSerializer.Serialize(report, Json));
            return 0;
        }

        if (args is not ["keys", "rotate-data-key"])
        {
            await Console.Error.WriteLineAsync("usage: keys rotate-data-key | keys seal-ring | keys export-public DIR");
            return 64;
        }

        var ring = services.GetRequiredService<DataKeyRing>();
        var time = services.GetRequiredService<TimeProvider>();
        var delay = services.GetRequiredService<IOptions<DataKeyOptions>>().Value.ActivationDelay;
        await ring.LoadAsync(CancellationToken.None);
        await using var scope = services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<GatewayDbContext>();
        var activatesAt = time.GetUtcNow() + delay;
        var added = await ring.AddAsync(db, activatesAt, CancellationToken.None)
            ?? throw new InvalidOperationException("A rotation key is always added.");
        await scope.ServiceProvider.GetRequiredService<AuditTrail>().AppendAsync(
            new AuditEntry(ActorKinds.Operator, "keys-command", AuditActions.DataKeyAdded, Outcomes.Success,
                Details: new Dictionary<string, object?> { ["activatesAt"] = activatesAt }),
            CancellationToken.None);

        var jobs = scope.ServiceProvider.GetRequiredService<IBackgroundJobClient>();
        var rewrap = jobs.Schedule<DataKeyRotationJob>(j => j.RunAsync(CancellationToken.None), activatesAt + TimeSpan.FromMinutes(1));
        var retire = jobs.Schedule<DataKeyRotationJob>(j => j.RunAsync(CancellationToken.None), activatesAt + delay + TimeSpan.FromMinutes(1));
        Console.WriteLine(JsonSerializer.Serialize(new { added = added.Id, activatesAt, rewrapJob = rewrap, retireJob = retire }, Json));
        return 0;
    }
}
