namespace ExchangeGateway.Auth;

/// <summary>
/// A new authenticator key as the enrolment forms show it (the staff's at sign-in, a seeker's on their own pages): the
/// key in groups of four, as people type it into an app; its otpauth URI; and that URI as a QR code, which is how most
/// apps add a key.
/// </summary>
public sealed record AuthenticatorKey(string Grouped, string Uri, QrSymbol Qr)
{
    /// <summary>The name authenticator apps list the account under.</summary>
    public const string Issuer = "ExchangeGateway";

    public static AuthenticatorKey Of(string account, string key)
    {
        var uri = SecondFactor.AuthenticatorUri(Issuer, account, key);
        return new(string.Join(' ', key.Chunk(4).Select(c => new string(c))).ToLowerInvariant(), uri, QrSymbol.Of(uri));
    }
}
