using ExchangeGateway.Auth;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace ExchangeGateway.Events;

/// <summary>
/// Security Event Tokens (RFC 8417), signed ES256 with the key the JWKS publishes. The jti is the obligation's, so a
/// redelivered event is recognisably the same event.
/// </summary>
public sealed class EventTokens(SigningKeyRing keys, IOptions<AuthOptions> auth)
{
    public const string TokenType = "secevent+jwt";
    private static readonly JsonWebTokenHandler Handler = new() { SetDefaultTimesOnTokenCreation = false };

    public string Create(ObligationToSend obligation, DateTimeOffset issuedAt) =>
        Handler.CreateToken(new SecurityTokenDescriptor
        {
            TokenType = TokenType,
            SigningCredentials = keys.EventCredentials,
            Claims = new Dictionary<string, object>
            {
                ["iss"] = auth.Value.Issuer!.AbsoluteUri,
                ["aud"] = obligation.ClientId,
                ["jti"] = obligation.Jti.ToString(),
                ["iat"] = issuedAt.ToUnixTimeSeconds(),
                ["txn"] = obligation.ConsentId.ToString(),
                ["events"] = new Dictionary<string, object>
                {
                    [EventKinds.UriPrefix + obligation.Kind] = new Dictionary<string, object>
                    {
                        ["subject"] = new Dictionary<string, object> { ["format"] = "opaque", ["id"] = obligation.PairwiseId },
                        ["cause"] = obligation.Cause,
                        ["confirm_before"] = obligation.ConfirmBefore.ToUnixTimeSeconds(),
                    },
                },
            },
        });
}

/// <summary>What a delivery needs to know about one obligation; ids only, no personal data.</summary>
public sealed record ObligationToSend(
    long Id, Guid Jti, Guid RecipientId, string ClientId, Guid ConsentId, string PairwiseId, string Kind, string Cause,
    DateTimeOffset ConfirmBefore, int Attempts, Uri? PushEndpoint);
