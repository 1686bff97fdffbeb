using System.Net;
using System.Text.Json;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace ExchangeGateway.Tests.Auth;

[Collection(GatewayCollection.Name)]
public sealed class TokenEndpointTests(GatewayFixture fixture)
{
    [Fact]
    public async Task DiscoveryDocumentNamesEveryEndpointAndTheIssuer()
    {
        using var client = fixture.Client();
        var discovery = await (await client.GetAsync("/.well-known/openid-configuration")).ReadJsonAsync();

        Assert.Equal(fixture.Factory.Issuer.AbsoluteUri, discovery.GetProperty("issuer").GetString());
        foreach (var (name, path) in new[]
        {
            ("authorization_endpoint", "connect/authorize"), ("token_endpoint", "connect/token"), ("revocation_endpoint", "connect/revoke"),
            ("introspection_endpoint", "connect/introspect"), ("userinfo_endpoint", "connect/userinfo"),
            ("end_session_endpoint", "connect/endsession"), ("jwks_uri", ".well-known/jwks"),
        })
        {
            Assert.Equal(new Uri(fixture.Factory.Issuer, path).AbsoluteUri, discovery.GetProperty(name).GetString());
        }

        var grants = discovery.GetProperty("grant_types_supported").EnumerateArray().Select(g => g.GetString()).ToList();
        Assert.Contains("client_credentials", grants);
        Assert.Contains("authorization_code", grants);
        Assert.Contains("refresh_token", grants);
        Assert.Equal(["S256"], discovery.GetProperty("code_challenge_methods_supported").EnumerateArray().Select(m => m.GetString()));
        var scopes = discovery.GetProperty("scopes_supported").EnumerateArray().Select(s => s.GetString()).ToList();
        Assert.Superset(new HashSet<string?> { "cv:manage", "cv:read", "audit:read", "recipients:admin" }, scopes.ToHashSet());
    }

    [Fact]
    public async Task JwksPublishesTheKeyThatSignsAccessTokensAndTheEventKey()
    {
        using var client = fixture.Client();
        var jwks = await (await client.GetAsync("/.well-known/jwks")).ReadJsonAsync();
        var keys = jwks.GetProperty("keys").EnumerateArray().ToList();
        Assert.Contains(keys, k => k.GetProperty("kty").GetString() == "RSA");
        Assert.Contains(keys, k => k.GetProperty("kty").GetString() == "EC" && k.GetProperty("crv").GetString() == "P-256");
        Assert.All(keys, k => Assert.False(k.TryGetProperty("d", out _), "a private key part is published"));
        // Nor could one be: the keys the gateway adds to OpenIddict's list hold no private half to export.
        var ring = fixture.Factory.Services.GetRequiredService<ExchangeGateway.Auth.SigningKeyRing>();
        Assert.All(ring.ValidationKeys, k => Assert.Null(Microsoft.IdentityModel.Tokens.JsonWebKeyConverter.ConvertFromSecurityKey(k).D));

        var token = await fixture.Actors.DemoSiteTokenAsync();
        var header = JsonDocument.Parse(Microsoft.IdentityModel.Tokens.Base64UrlEncoder.Decode(token.Split('.')[0])).RootElement;
        Assert.Equal("RS256", header.GetProperty("alg").GetString());
        Assert.Equal("at+jwt", header.GetProperty("typ").GetString());
        Assert.Contains(keys, k => k.GetProperty("kid").GetString() == header.GetProperty("kid").GetString());
    }

    [Fact]
    public async Task ClientCredentialsWithTheRightSecretGiveAJwtForTheApiAudience()
    {
        var token = await fixture.Actors.DemoSiteTokenAsync();
        var payload = JsonDocument.Parse(Microsoft.IdentityModel.Tokens.Base64UrlEncoder.Decode(token.Split('.')[1])).RootElement;
        Assert.Equal("exchange-gateway", payload.GetProperty("aud").GetString());
        Assert.Equal("demo-jobsite", payload.GetProperty("sub").GetString());
        Assert.Equal("cv:read", payload.GetProperty("scope").GetString());
        Assert.Equal(600, payload.GetProperty("exp").GetInt64() - payload.GetProperty("iat").GetInt64());

        using var client = fixture.Client().WithToken(token);
        using var response = await client.GetAsync("/api/v1/shared-cvs");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.True((await response.ReadJsonAsync()).TryGetProperty("items", out _));
    }

    [Fact]
    public async Task AWrongSecretIsInvalidClient()
    {
        using var response = await fixture.Actors.RequestClientTokenAsync("demo-jobsite", "not-the-secret", "cv:read");
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Equal("invalid_client", (await response.ReadJsonAsync()).GetProperty("error").GetString());
    }

    [Fact]
    public async Task ClientSecretPostIsAcceptedToo()
    {
        using var client = fixture.Client();
        using var response = await client.PostAsync("/connect/token", new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["grant_type"] = "client_credentials", ["scope"] = "cv:read", ["client_id"] = "demo-jobsite", ["client_secret"] = "demo-jobsite-secret",
        }));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    /// <summary>Without <c>scope</c>, a client gets what it may ask for with its own credentials, not a token that opens nothing.</summary>
    [Fact]
    public async Task ClientCredentialsWithoutScopeGetTheClientsOwnScope()
    {
        foreach (var (clientId, secret, expected, path) in new[]
        {
            ("demo-jobsite", "demo-jobsite-secret", "cv:read", "/api/v1/shared-cvs?limit=1"),
            ("demo-auditor", "demo-auditor-secret", "audit:read", "/api/v1/audit/verify"),
        })
        {
            using var response = await fixture.Client().PostAsync("/connect/token", new FormUrlEncodedContent(new Dictionary<string, string>
            {
                ["grant_type"] = "client_credentials", ["client_id"] = clientId, ["client_secret"] = secret,
            }));
            var json = await response.ReadJsonAsync();
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var token = json.GetProperty("access_token").GetString()!;
            var payload = JsonDocument.Parse(Microsoft.IdentityModel.Tokens.Base64UrlEncoder.Decode(token.Split('.')[1])).RootElement;
            Assert.Equal(expected, payload.GetProperty("scope").GetString());
            using var api = fixture.Client().WithToken(token);
            using var read = await api.GetAsync(path);
            Assert.Equal(HttpStatusCode.OK, read.StatusCode);
        }
    }

    [Fact]
    public async Task AnUnknownScopeIsInvalidScope()
    {
        using var response = await fixture.Actors.RequestClientTokenAsync("demo-jobsite", "demo-jobsite-secret", "cv:everything");
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("invalid_scope", (await response.ReadJsonAsync()).GetProperty("error").GetString());
    }

    [Fact]
    public async Task AScopeTheClientWasNotGivenIsRefused()
    {
        using var response = await fixture.Actors.RequestClientTokenAsync("demo-jobsite", "demo-jobsite-secret", "audit:read");
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains((await response.ReadJsonAsync()).GetProperty("error").GetString(), new[] { "invalid_scope", "invalid_request" });
    }

    [Fact]
    public async Task ATokenWithoutTheNeededScopeGets403Problem()
    {
        using var client = fixture.Client().WithToken(await fixture.Actors.AuditorClientTokenAsync());
        using var response = await client.GetAsync("/api/v1/shared-cvs");
        await response.AssertProblemAsync(HttpStatusCode.Forbidden);
        // RFC 6750 §3.1: told why, and which scope the operation needs.
        Assert.Equal("Bearer error=\"insufficient_scope\", scope=\"cv:read\"", response.Headers.WwwAuthenticate.ToString());
    }

    [Fact]
    public async Task EachActorReachesItsOwnFirstEndpoint()
    {
        using (var site = fixture.Client().WithToken(await fixture.Actors.DemoSiteTokenAsync()))
        {
            Assert.Equal(HttpStatusCode.OK, (await site.GetAsync("/api/v1/shared-cvs")).StatusCode);
        }

        using (var auditor = fixture.Client().WithToken(await fixture.Actors.AuditorClientTokenAsync()))
        {
            Assert.Equal(HttpStatusCode.OK, (await auditor.GetAsync("/api/v1/audit/events")).StatusCode);
        }

        var @operator = await fixture.Actors.NewOperatorAsync();
        using (var admin = fixture.Client().WithToken(@operator.Tokens.AccessToken))
        {
            using var response = await admin.GetAsync("/api/v1/admin/recipients");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var names = (await response.ReadJsonAsync()).GetProperty("items").EnumerateArray().Select(r => r.GetProperty("clientId").GetString());
            Assert.Contains("demo-jobsite", names);
        }
    }
}
