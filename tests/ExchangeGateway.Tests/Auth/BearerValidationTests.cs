using System.Net;
using ExchangeGateway.Auth;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace ExchangeGateway.Tests.Auth;

[Collection(GatewayCollection.Name)]
public sealed class BearerValidationTests(GatewayFixture fixture)
{
    [Fact]
    public async Task NoTokenGets401ProblemWithAChallenge()
    {
        using var client = fixture.Client();
        using var response = await client.GetAsync("/api/v1/shared-cvs");
        await response.AssertProblemAsync(HttpStatusCode.Unauthorized);
        Assert.Equal("Bearer", response.Headers.WwwAuthenticate.Single().Scheme);
    }

    [Fact]
    public async Task AnExpiredTokenGets401()
    {
        var token = await fixture.Actors.DemoSiteTokenAsync();
        fixture.Time.Advance(TimeSpan.FromMinutes(11));
        using var client = fixture.Client().WithToken(token);
        await (await client.GetAsync("/api/v1/shared-cvs")).AssertProblemAsync(HttpStatusCode.Unauthorized);
    }

    [Fact]
    public async Task ATamperedTokenGets401()
    {
        var token = await fixture.Actors.DemoSiteTokenAsync();
        var parts = token.Split('.');
        var payload = Base64UrlEncoder.Decode(parts[1]).Replace("\"cv:read\"", "\"audit:read\"", StringComparison.Ordinal);
        var forged = $"{parts[0]}.{Base64UrlEncoder.Encode(payload)}.{parts[2]}";
        using var client = fixture.Client().WithToken(forged);
        await (await client.GetAsync("/api/v1/audit/events")).AssertProblemAsync(HttpStatusCode.Unauthorized);
    }

    [Fact]
    public async Task ATokenSignedByTheGatewayForAnotherAudienceGets401()
    {
        var ring = fixture.Factory.Services.GetRequiredService<SigningKeyRing>();
        var now = fixture.Time.GetUtcNow().UtcDateTime;
        var token = new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
        {
            Issuer = fixture.Factory.Issuer.AbsoluteUri,
            Audience = "some-other-api",
            TokenType = "at+jwt",
            IssuedAt = now,
            NotBefore = now,
            Expires = now.AddMinutes(5),
            Claims = new Dictionary<string, object> { ["sub"] = "demo-jobsite", ["scope"] = "cv:read" },
            SigningCredentials = ring.TokenCredentials,
        });
        using var client = fixture.Client().WithToken(token);
        await (await client.GetAsync("/api/v1/shared-cvs")).AssertProblemAsync(HttpStatusCode.Unauthorized);
    }

    /// <summary>
    /// The ES256 key signs events and audit checkpoints, and is published for sites to verify them: a token it signs is no
    /// access token, however well formed. Before, the API took it (all of the ring's keys validated tokens), so a retired
    /// event key kept for old checkpoints, or a copy leaked from anywhere events are verified, could mint any scope.
    /// The same claims under the token key are accepted, so the refusal is the key's.
    /// </summary>
    [Fact]
    public async Task ATokenSignedWithTheEventKeyGets401()
    {
        var ring = fixture.Factory.Services.GetRequiredService<SigningKeyRing>();
        string Token(SigningCredentials key)
        {
            var now = fixture.Time.GetUtcNow().UtcDateTime;
            return new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
            {
                Issuer = fixture.Factory.Issuer.AbsoluteUri,
                Audience = ApiScopes.Audience,
                TokenType = "at+jwt",
                IssuedAt = now,
                NotBefore = now,
                Expires = now.AddMinutes(5),
                Claims = new Dictionary<string, object> { ["sub"] = "forged-auditor", ["scope"] = ApiScopes.AuditRead },
                SigningCredentials = key,
            });
        }

        using (var accepted = fixture.Client().WithToken(Token(ring.TokenCredentials)))
        {
            Assert.Equal(HttpStatusCode.OK, (await accepted.GetAsync("/api/v1/audit/erasures?limit=1")).StatusCode);
        }

        using var client = fixture.Client().WithToken(Token(ring.EventCredentials));
        await (await client.GetAsync("/api/v1/audit/erasures?limit=1")).AssertProblemAsync(HttpStatusCode.Unauthorized);
    }

    [Fact]
    public async Task ATokenSignedByAnotherKeyGets401()
    {
        using var rsa = System.Security.Cryptography.RSA.Create(2048);
        var now = fixture.Time.GetUtcNow().UtcDateTime;
        var token = new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
        {
            Issuer = fixture.Factory.Issuer.AbsoluteUri,
            Audience = "exchange-gateway",
            TokenType = "at+jwt",
            IssuedAt = now,
            NotBefore = now,
            Expires = now.AddMinutes(5),
            Claims = new Dictionary<string, object> { ["sub"] = "demo-jobsite", ["scope"] = "cv:read" },
            SigningCredentials = new SigningCredentials(new RsaSecurityKey(rsa) { KeyId = "attacker" }, SecurityAlgorithms.RsaSha256),
        });
        using var client = fixture.Client().WithToken(token);
        await (await client.GetAsync("/api/v1/shared-cvs")).AssertProblemAsync(HttpStatusCode.Unauthorized);
    }
}
