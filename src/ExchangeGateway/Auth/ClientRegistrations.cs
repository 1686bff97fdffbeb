using Microsoft.AspNetCore.Identity;
using Microsoft.Extensions.Options;
using OpenIddict.Abstractions;
using static OpenIddict.Abstractions.OpenIddictConstants;

namespace ExchangeGateway.Auth;

/// <summary>Registrations every deployment needs: the roles and the Swagger UI's public client.</summary>
public static class ClientRegistrations
{
    public const string SwaggerClientId = "swagger-ui";

    public static async Task EnsureAsync(IServiceProvider services, CancellationToken cancellationToken)
    {
        var roles = services.GetRequiredService<RoleManager<IdentityRole>>();
        foreach (var role in Roles.All)
        {
            if (!await roles.RoleExistsAsync(role))
            {
                await roles.CreateAsync(new IdentityRole(role));
            }
        }

        var issuer = services.GetRequiredService<IOptions<AuthOptions>>().Value.Issuer!;
        var applications = services.GetRequiredService<IOpenIddictApplicationManager>();
        var descriptor = AppClient(SwaggerClientId, [new Uri(issuer, "swagger/oauth2-redirect.html")], "Swagger UI");

        // The redirect URI follows the configured issuer, so an existing registration is brought up to date.
        var existing = await applications.FindByClientIdAsync(SwaggerClientId, cancellationToken);
        if (existing is null)
        {
            await applications.CreateAsync(descriptor, cancellationToken);
        }
        else
        {
            await applications.UpdateAsync(existing, descriptor, cancellationToken);
        }
    }

    /// <summary>
    /// One of the service's own apps (Swagger UI is registered as one): a public client (no secret to keep in an app), code with PKCE and
    /// refresh tokens, consent implied (staff register it), and every person scope, of which a token gets only those its
    /// person's role allows (<see cref="ApiScopes.GrantableTo"/>).
    /// </summary>
    public static OpenIddictApplicationDescriptor AppClient(string clientId, IEnumerable<Uri> redirectUris, string displayName)
    {
        var descriptor = new OpenIddictApplicationDescriptor
        {
            ClientId = clientId, ClientType = ClientTypes.Public, DisplayName = displayName, ConsentType = ConsentTypes.Implicit,
            Requirements = { Requirements.Features.ProofKeyForCodeExchange },
        };
        descriptor.RedirectUris.UnionWith(redirectUris);
        descriptor.Permissions.UnionWith(
        [
            Permissions.Endpoints.Authorization, Permissions.Endpoints.Token, Permissions.Endpoints.EndSession,
            Permissions.Endpoints.Revocation, Permissions.GrantTypes.AuthorizationCode, Permissions.GrantTypes.RefreshToken,
            Permissions.ResponseTypes.Code, Permissions.Scopes.Email, Permissions.Scopes.Profile,
            Permissions.Prefixes.Scope + Scopes.OfflineAccess,
            .. ApiScopes.Api.Select(scope => Permissions.Prefixes.Scope + scope),
        ]);
        return descriptor;
    }

    /// <summary>A confidential client that may only ask for <c>audit:read</c> with its own credentials.</summary>
    public static OpenIddictApplicationDescriptor AuditorClient(string clientId, string secret, string displayName)
    {
        var descriptor = new OpenIddictApplicationDescriptor
        {
            ClientId = clientId, ClientSecret = secret, ClientType = ClientTypes.Confidential, DisplayName = displayName,
        };
        descriptor.Permissions.UnionWith(
        [
            Permissions.Endpoints.Token, Permissions.Endpoints.Introspection, Permissions.Endpoints.Revocation,
            Permissions.GrantTypes.ClientCredentials, Permissions.Prefixes.Scope + ApiScopes.AuditRead,
        ]);
        return descriptor;
    }
}
