using ExchangeGateway.Auth;
using ExchangeGateway.Data;
using ExchangeGateway.Recipients;
using Microsoft.AspNetCore.Identity;
using Microsoft.EntityFrameworkCore;
using OpenIddict.Abstractions;

namespace ExchangeGateway.Hosting;

/// <summary>
/// Fixed demo accounts and clients (documented in the README) so anyone can try the gateway. Refused in Production.
/// </summary>
public static class DemoData
{
    public const string Password = "ChangeMe-Demo-1!";

    public static readonly (string Email, string Role)[] People =
    [
        ("seeker@example.org", Roles.Seeker),
        ("seeker2@example.org", Roles.Seeker),
        ("operator@example.org", Roles.Operator),
        ("auditor@example.org", Roles.Auditor),
    ];

    /// <summary>
    /// The demo sites, each with a loopback redirect URI for the site-started consent flow (/connect/authorize with scope
    /// cv:share); nothing listens there, a developer trying the flow runs whatever they like on that port.
    /// </summary>
    public static readonly (string ClientId, string Secret, string DisplayName, string LegalName, Uri RedirectUri)[] Sites =
    [
        ("demo-jobsite", "demo-jobsite-secret", "Démo Emploi", "Démo Emploi SAS", new Uri("http://127.0.0.1:5081/callback")),
        ("other-jobsite", "other-jobsite-secret", "Autre Site", "Autre Site SARL", new Uri("http://127.0.0.1:5082/callback")),
    ];

    public const string AuditorClientId = "demo-auditor";
    public const string AuditorClientSecret = "demo-auditor-secret";

    /// <summary>
    /// A demo account or client that still opens with its published password or secret, or null. A database first run in
    /// Development (the compose file's volume, scripts/run) and then served elsewhere keeps them: the demo auditor client
    /// read the whole log, and whoever knew the demo operator's password enrolled their own authenticator. Checked by the
    /// credential, not the name, so that an account renamed or re-keyed by its holder does not stop a node.
    /// </summary>
    public static async Task<string?> StillOpenAsync(IServiceProvider services, CancellationToken cancellationToken)
    {
        var users = services.GetRequiredService<UserManager<GatewayUser>>();
        foreach (var (email, _) in People)
        {
            if (await users.FindByEmailAsync(email) is { PasswordHash: { } hash } user
                && users.PasswordHasher.VerifyHashedPassword(user, hash, Password) != PasswordVerificationResult.Failed)
            {
                return $"the demo account {email}";
            }
        }

        var applications = services.GetRequiredService<IOpenIddictApplicationManager>();
        foreach (var (clientId, secret) in Sites.Select(s => (s.ClientId, s.Secret)).Append((AuditorClientId, AuditorClientSecret)))
        {
            if (await applications.FindByClientIdAsync(clientId, cancellationToken) is { } application
                && await applications.ValidateClientSecretAsync(application, secret, cancellationToken))
            {
                return $"the demo client {clientId}";
            }
        }

        return null;
    }

    public static async Task SeedAsync(IServiceProvider services, CancellationToken cancellationToken)
    {
        var users = services.GetRequiredService<UserManager<GatewayUser>>();
        var time = services.GetRequiredService<TimeProvider>();
        foreach (var (email, role) in People)
        {
            if (await users.FindByEmailAsync(email) is not null)
            {
                continue;
            }

            var user = new GatewayUser { UserName = email, Email = email, EmailConfirmed = true, CreatedAt = time.GetUtcNow() };
            var created = await users.CreateAsync(user, Password);
            if (!created.Succeeded)
            {
                throw new InvalidOperationException("Demo account could not be created: " + string.Join("; ", created.Errors.Select(e => e.Code)));
            }

            await users.AddToRoleAsync(user, role);
        }

        var applications = services.GetRequiredService<IOpenIddictApplicationManager>();
        var db = services.GetRequiredService<GatewayDbContext>();
        foreach (var (clientId, secret, displayName, legalName, redirectUri) in Sites)
        {
            var descriptor = RecipientClients.Describe(clientId, displayName, secret, keys: null, [redirectUri]);
            var existing = await applications.FindByClientIdAsync(clientId, cancellationToken);
            if (existing is null)
            {
                await applications.CreateAsync(descriptor, cancellationToken);
            }
            else if ((await applications.GetRedirectUrisAsync(existing, cancellationToken)).IsEmpty)
            {
                // A demo database from before the site-started flow gains its redirect URI and permissions; its secret stays.
                var current = new OpenIddictApplicationDescriptor();
                await applications.PopulateAsync(current, existing, cancellationToken);
                current.RedirectUris.UnionWith(descriptor.RedirectUris);
                current.Permissions.UnionWith(descriptor.Permissions);
                current.Requirements.UnionWith(descriptor.Requirements);
                await applications.UpdateAsync(existing, current, cancellationToken);
            }

            if (!await db.Recipients.AnyAsync(r => r.ClientId == clientId, cancellationToken))
            {
                var site = new Uri($"https://{clientId}.example/");
                db.Recipients.Add(Recipient.Register(
                    clientId, displayName, legalName, site, new Uri(site, "privacy"), $"dpo@{clientId}.example",
                    DeliveryMode.Poll, pushEndpoint: null, ClientAuthentication.ClientSecretBasic, time.GetUtcNow()));
                await db.SaveChangesAsync(cancellationToken);
            }
        }

        if (await applications.FindByClientIdAsync(AuditorClientId, cancellationToken) is null)
        {
            await applications.CreateAsync(ClientRegistrations.AuditorClient(AuditorClientId, AuditorClientSecret, "Demo auditor client"), cancellationToken);
        }
    }
}
