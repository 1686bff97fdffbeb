using System.Buffers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using ExchangeGateway.Auth;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.Tokens;

namespace ExchangeGateway.Events;

/// <summary>
/// Security Event Tokens (RFC 8417), signed ES256 with the key the JWKS publishes. The jti is the obligation's, so a
/// redelivered event is recognisably the same event.
/// </summary>
/// <remarks>
/// Written directly (one UTF-8 pass for the claims, one ECDSA signature) rather than through a generic token handler:
/// the dispatcher signs thousands of these a second and the handler's claim dictionaries and re-serialisation cost more
/// than the signature. The tests verify every SET with the standard handler against the published JWKS.
/// </remarks>
public sealed class EventTokens(SigningKeyRing keys, IOptions<AuthOptions> auth)
{
    public const string TokenType = "secevent+jwt";

    public string Create(ObligationToSend obligation, DateTimeOffset issuedAt)
    {
        var key = (ECDsaSecurityKey)keys.EventCredentials.Key;
        var buffer = new ArrayBufferWriter<byte>(512);
        using (var header = new Utf8JsonWriter(buffer))
        {
            header.WriteStartObject();
            header.WriteString("alg", SecurityAlgorithms.EcdsaSha256);
            header.WriteString("kid", key.KeyId);
            header.WriteString("typ", TokenType);
            header.WriteEndObject();
        }

        var headerLength = buffer.WrittenCount;
        using (var claims = new Utf8JsonWriter(buffer))
        {
            claims.WriteStartObject();
            claims.WriteString("iss", auth.Value.Issuer!.AbsoluteUri);
            claims.WriteString("aud", obligation.ClientId);
            claims.WriteString("jti", obligation.Jti);
            claims.WriteNumber("iat", issuedAt.ToUnixTimeSeconds());
            claims.WriteString("txn", obligation.ConsentId);
            claims.WriteStartObject("events");
            claims.WriteStartObject(EventKinds.UriPrefix + obligation.Kind);
            claims.WriteStartObject("subject");
            claims.WriteString("format", "opaque");
            claims.WriteString("id", obligation.PairwiseId);
            claims.WriteEndObject();
            claims.WriteString("cause", obligation.Cause);
            claims.WriteNumber("confirm_before", obligation.ConfirmBefore.ToUnixTimeSeconds());
            claims.WriteEndObject();
            claims.WriteEndObject();
            claims.WriteEndObject();
        }

        var json = buffer.WrittenSpan;
        var signingInput = Base64UrlEncoder.Encode(json[..headerLength].ToArray()) + "." + Base64UrlEncoder.Encode(json[headerLength..].ToArray());
        // ES256 (RFC 7518 §3.4): the signature is r || s, which is what ECDsa.SignData returns by default.
        var signature = key.ECDsa.SignData(Encoding.ASCII.GetBytes(signingInput), HashAlgorithmName.SHA256);
        return signingInput + "." + Base64UrlEncoder.Encode(signature);
    }
}

/// <summary>What a delivery needs to know about one obligation; ids only, no personal data.</summary>
public sealed record ObligationToSend(
    long Id, Guid Jti, Guid RecipientId, string ClientId, Guid ConsentId, string PairwiseId, string Kind, string Cause,
    DateTimeOffset ConfirmBefore, int Attempts, Uri? PushEndpoint);
