using System.Buffers;
using System.Buffers.Text;
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
public sealed class EventTokens(SigningKeyRing keys, IOptions<AuthOptions> auth, Audit.Pseudonyms pseudonyms)
{
    public const string TokenType = "secevent+jwt";

    // The protected header only changes with the key: encoded once per key, not once per event.
    private EncodedHeader? _header;

    private sealed record EncodedHeader(string KeyId, byte[] Encoded);

    /// <summary>The compact SET as a string (the poll answer embeds it in JSON).</summary>
    public string Create(ObligationToSend obligation, DateTimeOffset issuedAt) => Encoding.ASCII.GetString(CreateAscii(obligation, issuedAt));

    /// <summary>The compact SET as the ASCII bytes a push sends.</summary>
    public byte[] CreateAscii(ObligationToSend obligation, DateTimeOffset issuedAt)
    {
        var key = (ECDsaSecurityKey)keys.EventCredentials.Key;
        var header = HeaderFor(key.KeyId);
        var claims = new ArrayBufferWriter<byte>(384);
        using (var writer = new Utf8JsonWriter(claims))
        {
            writer.WriteStartObject();
            writer.WriteString("iss", auth.Value.Issuer!.AbsoluteUri);
            writer.WriteString("aud", obligation.ClientId);
            writer.WriteString("jti", obligation.Jti);
            writer.WriteNumber("iat", issuedAt.ToUnixTimeSeconds());
            // When the change happened (RFC 8417 "toe"), which iat (stamped on every attempt) does not say: a site can then
            // tell an event about an earlier state from the state it holds, say a cv-offline event that reaches it after it
            // has read the CV again, refreshed since.
            writer.WriteNumber("toe", Obligations.SiteDay(obligation.CreatedAt).ToUnixTimeSeconds());
            // The episode's events share a txn, but not the gateway's id of the episode (promise 6: a site sees only opaque
            // ids): a keyed hash of it. Episodes are per site, so no two sites ever get the same txn.
            writer.WriteString("txn", pseudonyms.Of("txn:" + obligation.ConsentId.ToString()));
            writer.WriteStartObject("events");
            writer.WriteStartObject(EventKinds.UriPrefix + obligation.Kind);
            writer.WriteStartObject("subject");
            writer.WriteString("format", "opaque");
            writer.WriteString("id", obligation.PairwiseId);
            writer.WriteEndObject();
            writer.WriteString("cause", obligation.Cause);
            writer.WriteNumber("confirm_before", obligation.ConfirmBefore.ToUnixTimeSeconds());
            writer.WriteEndObject();
            writer.WriteEndObject();
            writer.WriteEndObject();
        }

        // header "." claims "." signature, base64url throughout; an ES256 signature (r || s) is 64 bytes.
        var payloadLength = Base64Url.GetEncodedLength(claims.WrittenCount);
        var signingLength = header.Length + 1 + payloadLength;
        var token = new byte[signingLength + 1 + Base64Url.GetEncodedLength(SignatureSize)];
        header.CopyTo(token, 0);
        token[header.Length] = (byte)'.';
        Base64Url.EncodeToUtf8(claims.WrittenSpan, token.AsSpan(header.Length + 1, payloadLength));
        token[signingLength] = (byte)'.';

        // ES256 (RFC 7518 §3.4): the signature is r || s, the IEEE P1363 form that TrySignData writes by default.
        Span<byte> signature = stackalloc byte[SignatureSize];
        if (!key.ECDsa.TrySignData(token.AsSpan(0, signingLength), signature, HashAlgorithmName.SHA256, out var written) || written != SignatureSize)
        {
            throw new CryptographicException("The event key did not produce an ES256 signature.");
        }

        Base64Url.EncodeToUtf8(signature, token.AsSpan(signingLength + 1));
        return token;
    }

    private const int SignatureSize = 64;

    private byte[] HeaderFor(string keyId)
    {
        if (_header is { } cached && cached.KeyId == keyId)
        {
            return cached.Encoded;
        }

        var json = new ArrayBufferWriter<byte>(128);
        using (var writer = new Utf8JsonWriter(json))
        {
            writer.WriteStartObject();
            writer.WriteString("alg", SecurityAlgorithms.EcdsaSha256);
            writer.WriteString("kid", keyId);
            writer.WriteString("typ", TokenType);
            writer.WriteEndObject();
        }

        var encoded = Encoding.ASCII.GetBytes(Base64Url.EncodeToString(json.WrittenSpan));
        _header = new EncodedHeader(keyId, encoded);
        return encoded;
    }
}

/// <summary>What a delivery needs to know about one obligation; ids only, no personal data.</summary>
public sealed record ObligationToSend(
    long Id, Guid Jti, Guid RecipientId, string ClientId, Guid ConsentId, string PairwiseId, string Kind, string Cause,
    DateTimeOffset CreatedAt, DateTimeOffset ConfirmBefore, int Attempts, Uri? PushEndpoint, DateTimeOffset? LeaseEnd = null);
