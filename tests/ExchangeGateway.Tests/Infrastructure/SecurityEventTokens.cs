using System.IdentityModel.Tokens.Jwt;
using System.Runtime.CompilerServices;
using System.Text.Json;
using Microsoft.IdentityModel.Tokens;

namespace ExchangeGateway.Tests.Infrastructure;

/// <summary>A SET that passed verification, with the members a recipient acts on.</summary>
public sealed record VerifiedSet(
    string Jti, string Audience, string Txn, DateTimeOffset IssuedAt, string Kind, string SubjectId, string Cause, DateTimeOffset ConfirmBefore,
    DateTimeOffset TimeOfEvent);

/// <summary>
/// Verifies Security Event Tokens the way a recipient would: keys fetched from the gateway's JWKS over HTTP, signature and
/// claims checked with System.IdentityModel.Tokens.Jwt (not the handler the gateway signs with), then RFC 8417's shape.
/// </summary>
public static class SecurityEventTokens
{
    public const string EventPrefix = "https://exchange-gateway.example/events/";

    // Converting a JWKS into keys builds new RSA/ECDsa objects (and signature providers) each time: once per set fetched.
    private static readonly ConditionalWeakTable<JsonWebKeySet, IList<SecurityKey>> SigningKeys = new();

    public static async Task<JsonWebKeySet> FetchKeysAsync(GatewayFactory factory)
    {
        using var client = factory.CreateHttpClient();
        return new JsonWebKeySet(await client.GetStringAsync("/.well-known/jwks"));
    }

    public static async Task<VerifiedSet> VerifyAsync(GatewayFactory factory, string set, string audience) =>
        Verify(set, await FetchKeysAsync(factory), factory.Issuer, audience);

    public static VerifiedSet Verify(string set, JsonWebKeySet keys, Uri issuer, string audience)
    {
        var handler = new JwtSecurityTokenHandler { MapInboundClaims = false };
        handler.ValidateToken(set, new TokenValidationParameters
        {
            ValidIssuer = issuer.AbsoluteUri,
            ValidAudience = audience,
            IssuerSigningKeys = SigningKeys.GetValue(keys, set => set.GetSigningKeys()),
            ValidAlgorithms = [SecurityAlgorithms.EcdsaSha256],
            ValidTypes = ["secevent+jwt"],
            RequireSignedTokens = true,
            // A SET is a statement of fact, not a credential: RFC 8417 gives it no expiry.
            RequireExpirationTime = false,
            ValidateLifetime = false,
        }, out var validated);

        var jwt = (JwtSecurityToken)validated;
        Assert.Equal("secevent+jwt", jwt.Header.Typ);
        Assert.Equal("ES256", jwt.Header.Alg);
        Assert.Contains(keys.Keys, k => k.Kid == jwt.Header.Kid);

        var payload = Claims(set);
        Assert.Equal(issuer.AbsoluteUri, payload.GetProperty("iss").GetString());
        Assert.Equal(audience, payload.GetProperty("aud").GetString());
        var jti = payload.GetProperty("jti").GetString()!;
        Assert.True(Guid.TryParse(jti, out _), $"jti {jti} is not a UUID");
        var txn = payload.GetProperty("txn").GetString();
        Assert.False(string.IsNullOrEmpty(txn));
        var iat = DateTimeOffset.FromUnixTimeSeconds(payload.GetProperty("iat").GetInt64());
        // RFC 8417's time of event: when the change happened, never after the token was issued.
        var toe = DateTimeOffset.FromUnixTimeSeconds(payload.GetProperty("toe").GetInt64());
        Assert.True(toe <= iat, $"toe {toe} after iat {iat}");

        var events = payload.GetProperty("events").EnumerateObject().ToList();
        var single = Assert.Single(events);
        Assert.StartsWith(EventPrefix, single.Name, StringComparison.Ordinal);
        var kind = single.Name[EventPrefix.Length..];
        Assert.Contains(kind, new[] { "erasure-required", "cv-updated" });
        var body = single.Value;
        var subject = body.GetProperty("subject");
        var subjectId = subject.GetProperty("id").GetString()!;
        Assert.StartsWith("cv_", subjectId, StringComparison.Ordinal);
        var cause = body.GetProperty("cause").GetString()!;
        var confirmBefore = DateTimeOffset.FromUnixTimeSeconds(body.GetProperty("confirm_before").GetInt64());
        return new VerifiedSet(jti, audience, txn!, iat, kind, subjectId, cause, confirmBefore, toe);
    }

    /// <summary>The claims of a SET, read without verifying it (to sort or count what a receiver got).</summary>
    public static JsonElement Claims(string set) => JsonDocument.Parse(Base64UrlEncoder.Decode(set.Split('.')[1])).RootElement;

    public static string JtiOf(string set) => Claims(set).GetProperty("jti").GetString()!;

    /// <summary>Checks what RFC 8935 asks of the request itself, then verifies the SET it carries.</summary>
    public static VerifiedSet VerifyPush(ReceivedPush push, JsonWebKeySet keys, Uri issuer, string audience)
    {
        Assert.Equal("POST", push.Method);
        Assert.Equal("application/secevent+jwt", push.ContentType?.Split(';')[0].Trim());
        return Verify(push.Body, keys, issuer, audience);
    }
}
