using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace ExchangeGateway.Tests.Recipients;

/// <summary>
/// A job site's own key pair, as a site using private_key_jwt (RFC 7523) would hold it: RSA (2048 bits) for the RS and PS
/// algorithms, the curve the ES algorithm names otherwise. RS256 unless told.
/// </summary>
internal sealed class SiteKey(string algorithm = SecurityAlgorithms.RsaSha256) : IDisposable
{
    public const string ClientAuthenticationType = "client-authentication+jwt";

    private readonly RSA _rsa = RSA.Create(2048);

    private readonly ECDsa? _ec = algorithm switch
    {
        SecurityAlgorithms.EcdsaSha256 => ECDsa.Create(ECCurve.NamedCurves.nistP256),
        SecurityAlgorithms.EcdsaSha384 => ECDsa.Create(ECCurve.NamedCurves.nistP384),
        SecurityAlgorithms.EcdsaSha512 => ECDsa.Create(ECCurve.NamedCurves.nistP521),
        _ => null,
    };

    public string KeyId { get; } = "site-key-" + Guid.NewGuid().ToString("N")[..8];

    public AsymmetricSecurityKey SecurityKey => _ec is null ? new RsaSecurityKey(_rsa) { KeyId = KeyId } : new ECDsaSecurityKey(_ec) { KeyId = KeyId };

    /// <summary>What the site registers: its public key only.</summary>
    public JsonObject PublicJwks()
    {
        var jwk = JsonWebKeyConverter.ConvertFromSecurityKey(SecurityKey);
        var key = new JsonObject { ["kty"] = jwk.Kty, ["kid"] = jwk.Kid, ["use"] = "sig", ["alg"] = algorithm };
        if (_ec is null)
        {
            (key["n"], key["e"]) = (jwk.N, jwk.E);
        }
        else
        {
            (key["crv"], key["x"], key["y"]) = (jwk.Crv, jwk.X, jwk.Y);
        }

        return new JsonObject { ["keys"] = new JsonArray(key) };
    }

    /// <summary>The mistake a site must not be allowed to make: sending its private key to the gateway.</summary>
    public JsonObject PrivateJwks()
    {
        var p = _rsa.ExportParameters(includePrivateParameters: true);
        return new JsonObject
        {
            ["keys"] = new JsonArray(new JsonObject
            {
                ["kty"] = "RSA", ["kid"] = KeyId, ["n"] = B64(p.Modulus), ["e"] = B64(p.Exponent), ["d"] = B64(p.D), ["p"] = B64(p.P),
                ["q"] = B64(p.Q), ["dp"] = B64(p.DP), ["dq"] = B64(p.DQ), ["qi"] = B64(p.InverseQ),
            }),
        };
    }

    /// <summary>
    /// A client assertion: iss = sub = the client id, a fresh jti, two minutes to live. RFC 10070 (which updates RFC 7523)
    /// makes the authorization server's issuer the only valid audience and types the JWT "client-authentication+jwt".
    /// A null type leaves the "typ" header out altogether; the lifetime and the jti can be made wrong on purpose.
    /// </summary>
    public string Assertion(
        string clientId, Uri audience, DateTimeOffset now, string? tokenType = ClientAuthenticationType, TimeSpan? lifetime = null, bool withJti = true)
    {
        if (tokenType is null)
        {
            return WithoutType(clientId, audience, now);
        }

        var claims = new Dictionary<string, object> { [JwtRegisteredClaimNames.Sub] = clientId };
        if (withJti)
        {
            claims[JwtRegisteredClaimNames.Jti] = Guid.NewGuid().ToString("N");
        }

        return new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
        {
            Issuer = clientId,
            Audience = audience.AbsoluteUri,
            Claims = claims,
            IssuedAt = now.UtcDateTime,
            NotBefore = now.UtcDateTime,
            Expires = now.Add(lifetime ?? TimeSpan.FromMinutes(2)).UtcDateTime,
            SigningCredentials = new SigningCredentials(SecurityKey, algorithm),
            TokenType = tokenType,
        });
    }

    /// <summary>A compact JWS with no "typ" header at all, as many RFC 7523 client libraries send it.</summary>
    private string WithoutType(string clientId, Uri audience, DateTimeOffset now)
    {
        var header = new JsonObject { ["alg"] = SecurityAlgorithms.RsaSha256, ["kid"] = KeyId };
        var payload = new JsonObject
        {
            ["iss"] = clientId, ["sub"] = clientId, ["aud"] = audience.AbsoluteUri, ["jti"] = Guid.NewGuid().ToString("N"),
            ["iat"] = now.ToUnixTimeSeconds(), ["nbf"] = now.ToUnixTimeSeconds(), ["exp"] = now.AddMinutes(2).ToUnixTimeSeconds(),
        };
        var signingInput = Base64UrlEncoder.Encode(header.ToJsonString()) + "." + Base64UrlEncoder.Encode(payload.ToJsonString());
        var signature = _rsa.SignData(System.Text.Encoding.ASCII.GetBytes(signingInput), HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        return signingInput + "." + Base64UrlEncoder.Encode(signature);
    }

    public void Dispose()
    {
        _rsa.Dispose();
        _ec?.Dispose();
    }

    private static string B64(byte[]? bytes) => Base64UrlEncoder.Encode(bytes ?? throw new InvalidOperationException("missing RSA parameter"));
}
