using System.Security.Cryptography;
using ExchangeGateway.Auth;
using OpenIddict.Abstractions;
using static OpenIddict.Abstractions.OpenIddictConstants;

namespace ExchangeGateway.Recipients;

/// <summary>
/// The OAuth side of a recipient: a confidential client allowed client_credentials and scope cv:read. A site that
/// registered redirect URIs may also send a seeker to /connect/authorize (code + PKCE) with scope cv:share, and only
/// that scope: the answer is a consent, never access to the seeker's account.
/// </summary>
public static partial class RecipientClients
{
    /// <summary>Shaped like the client ids the gateway gives out (lower-case letters, digits, hyphens; 3 to 64).</summary>
    public static bool IsWellFormedClientId(string clientId) => ClientIdPattern().IsMatch(clientId);

    [System.Text.RegularExpressions.GeneratedRegex("^[a-z0-9][a-z0-9-]{2,63}$")]
    private static partial System.Text.RegularExpressions.Regex ClientIdPattern();

    public static OpenIddictApplicationDescriptor Describe(
        string clientId, string displayName, string? secret, Microsoft.IdentityModel.Tokens.JsonWebKeySet? keys, IEnumerable<Uri>? redirectUris = null)
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

        SetRedirectUris(descriptor, redirectUris?.ToList() ?? []);
        return descriptor;
    }

    /// <summary>
    /// The site's redirect URIs, and with them the right to send seekers to /connect/authorize for cv:share (code + PKCE):
    /// a site with none cannot start a consent at all.
    /// </summary>
    public static void SetRedirectUris(OpenIddictApplicationDescriptor descriptor, IReadOnlyCollection<Uri> redirectUris)
    {
        string[] sharing =
        [
            Permissions.Endpoints.Authorization, Permissions.GrantTypes.AuthorizationCode, Permissions.ResponseTypes.Code,
            Permissions.Prefixes.Scope + ApiScopes.CvShare,
        ];
        descriptor.RedirectUris.Clear();
        descriptor.RedirectUris.UnionWith(redirectUris);
        if (redirectUris.Count > 0)
        {
            descriptor.Permissions.UnionWith(sharing);
            descriptor.Requirements.Add(Requirements.Features.ProofKeyForCodeExchange);
        }
        else
        {
            descriptor.Permissions.ExceptWith(sharing);
            descriptor.Requirements.Remove(Requirements.Features.ProofKeyForCodeExchange);
        }
    }

    /// <summary>Absolute https, or http on a loopback address where plain http is allowed (development); no fragment (RFC 6749 §3.1.2), no user info.</summary>
    public static string? CheckRedirectUri(Uri uri, bool requireHttps)
    {
        if (!uri.IsAbsoluteUri)
        {
            return "Must be an absolute URL.";
        }

        if (!string.IsNullOrEmpty(uri.Fragment))
        {
            return "Must not have a fragment.";
        }

        if (!string.IsNullOrEmpty(uri.UserInfo))
        {
            return "Must not carry a user name or password.";
        }

        if (uri.Scheme == Uri.UriSchemeHttps)
        {
            return null;
        }

        if (uri.Scheme == Uri.UriSchemeHttp && !requireHttps && uri.IsLoopback)
        {
            return null;
        }

        return requireHttps ? "Must use https." : "Must use https, or http on a loopback address.";
    }

    /// <summary>A 256-bit random secret, shown once; OpenIddict stores only its hash.</summary>
    public static string NewSecret() => Base64UrlEncode(RandomNumberGenerator.GetBytes(32));

    private static string Base64UrlEncode(byte[] bytes) =>
        Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');
}
