using System.Security.Cryptography;
using ExchangeGateway.Auth;
using OpenIddict.Abstractions;
using static OpenIddict.Abstractions.OpenIddictConstants;

namespace ExchangeGateway.Recipients;

/// <summary>The OAuth side of a recipient: a confidential client allowed client_credentials and scope cv:read, nothing else.</summary>
public static class RecipientClients
{
    public static OpenIddictApplicationDescriptor Describe(string clientId, string displayName, string? secret, Microsoft.IdentityModel.Tokens.JsonWebKeySet? keys)
    {
        var descriptor = new OpenIddictApplicationDescriptor
        {
            ClientId = clientId,
            ClientSecret = secret,
            ClientType = ClientTypes.Confidential,
            DisplayName = displayName,
            ConsentType = ConsentTypes.Explicit,
        };
        descriptor.JsonWebKeySet = keys;

        descriptor.Permissions.UnionWith(
        [
            Permissions.Endpoints.Token, Permissions.Endpoints.Revocation, Permissions.Endpoints.Introspection,
            Permissions.GrantTypes.ClientCredentials, Permissions.Prefixes.Scope + ApiScopes.CvRead,
        ]);
        return descriptor;
    }

    /// <summary>A 256-bit random secret, shown once; OpenIddict stores only its hash.</summary>
    public static string NewSecret() => Base64UrlEncode(RandomNumberGenerator.GetBytes(32));

    private static string Base64UrlEncode(byte[] bytes) =>
        Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');
}
