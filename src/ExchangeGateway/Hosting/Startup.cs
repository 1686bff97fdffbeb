using ExchangeGateway.Auth;
using ExchangeGateway.Data;

namespace ExchangeGateway.Hosting;

public static class Startup
{
    /// <summary>Schema, keys and registrations, before the first request: a node that cannot do these must not serve.</summary>
    public static async Task PrepareAsync(this WebApplication app, CancellationToken cancellationToken = default)
    {
        // One node at a time: migrations that build indexes outside a transaction, the roles and the registered clients
        // are each checked and then written, and two nodes starting together would otherwise both write.
        await using var turn = await GatewayDatabase.StartTurnAsync(app.Services, cancellationToken);
        var database = app.Services.GetRequiredService<Microsoft.Extensions.Options.IOptions<DatabaseOptions>>().Value;
        if (database.MigrateOnStart)
        {
            await GatewayDatabase.MigrateAsync(app.Services, cancellationToken);
        }
        else if (await GatewayDatabase.PendingMigrationsAsync(app.Services, cancellationToken) is { Count: > 0 } pending)
        {
            // A node newer than its schema would fail request by request; it must not start at all.
            throw new InvalidOperationException(
                $"The database lacks {pending.Count} migration(s) this version needs (the first: {pending[0]}), and Database:MigrateOnStart is false: run `migrate` first.");
        }

        if (!app.Environment.IsDevelopment() && await GatewayDatabase.LoginCanAlterAuditLogAsync(app.Services, cancellationToken))
        {
            // Not refused: a single-login deployment (the compose file's) is legitimate, but its operators must know the
            // append-only rule then holds against other logins only.
            app.Logger.LogWarning(
                "The gateway's database login owns the audit log or is a superuser: it could disable the triggers that keep the log append-only. Give the schema its own owner (ConnectionStrings:GatewayOwner) and the nodes a login that is only a member of exchange_gateway_app.");
        }

        var unsealed = await KeyRingProtection.CheckStoredKeysAsync(app.Services, cancellationToken);
        if (unsealed > 0)
        {
            app.Logger.LogWarning(
                "{Count} Data Protection keys are stored unsealed (written before the ring had a key-encryption key): a copy of the database opens them. Once every node has DataProtection:KeyEncryptionKey, run `keys seal-ring`.",
                unsealed);
        }

        Jobs.PrepareStorage(app.Services);
        await app.Services.GetRequiredService<SigningKeyRing>().LoadAsync(cancellationToken, createMissing: true);
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
        else if (!app.Environment.IsLocal() && await DemoData.StillOpenAsync(scope.ServiceProvider, cancellationToken) is { } open)
        {
            throw new InvalidOperationException(
                $"This database holds {open}, which opens with the password or secret published in the README: it was first run in Development. Remove the demo accounts and clients (or give them credentials of their own) before serving in {app.Environment.EnvironmentName}.");
        }
    }

    /// <summary>
    /// `migrate`: applies this version's migrations and stops, for deployments whose nodes run with
    /// Database:MigrateOnStart=false (they refuse to start on a schema that lacks one). Takes the same turn as a starting node.
    /// </summary>
    public static async Task<int> MigrateCommandAsync(IServiceProvider services)
    {
        await using var turn = await GatewayDatabase.StartTurnAsync(services);
        var pending = await GatewayDatabase.PendingMigrationsAsync(services);
        await GatewayDatabase.MigrateAsync(services);
        Console.WriteLine(pending.Count == 0 ? "migrate: the database is up to date" : $"migrate: applied {pending.Count} migration(s), the last {pending[^1]}");
        return 0;
    }
}
