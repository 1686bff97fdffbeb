using ExchangeGateway.Auth;
using ExchangeGateway.Data;

namespace ExchangeGateway.Hosting;

public static class Startup
{
    /// <summary>Schema, keys and registrations, before the first request: a node that cannot do these must not serve.</summary>
    public static async Task PrepareAsync(this WebApplication app, CancellationToken cancellationToken = default)
    {
        if (app.Services.GetRequiredService<Microsoft.Extensions.Options.IOptions<DatabaseOptions>>().Value.MigrateOnStart)
        {
            await GatewayDatabase.MigrateAsync(app.Services, cancellationToken);
        }

        var unsealed = await KeyRingProtection.CheckStoredKeysAsync(app.Services, cancellationToken);
        if (unsealed > 0)
        {
            app.Logger.LogWarning(
                "{Count} Data Protection keys are stored unsealed (written before the ring had a key-encryption key): a copy of the database opens them. Once every node has DataProtection:KeyEncryptionKey, run `keys seal-ring`.",
                unsealed);
        }

        await app.Services.GetRequiredService<SigningKeyRing>().LoadAsync(cancellationToken);
        // Built now, so that a malformed ConnectionStrings:AuditReads stops the node instead of failing an auditor later.
        app.Services.GetRequiredService<Audit.AuditReads>();
        await app.Services.GetRequiredService<Cvs.DataKeyRing>().LoadAsync(cancellationToken);

        await using var scope = app.Services.CreateAsyncScope();
        await ClientRegistrations.EnsureAsync(scope.ServiceProvider, cancellationToken);

        // Only where LocalOnly allows it: Program refuses to start with demo data anywhere else.
        if (app.Configuration.GetValue("DemoData:Enabled", false))
        {
            await DemoData.SeedAsync(scope.ServiceProvider, cancellationToken);
        }
    }
}
