using System.ComponentModel.DataAnnotations;

namespace ExchangeGateway.Auth;

public sealed class AuthOptions : IValidatableObject
{
    public const string Section = "Auth";

    /// <summary>The issuer URI, also the base of the discovery document (e.g. https://gateway.example/).</summary>
    [Required]
    public Uri? Issuer { get; set; }

    [Range(typeof(TimeSpan), "00:01:00", "01:00:00")]
    public TimeSpan AccessTokenLifetime { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>Remember validated access tokens until they expire (see <see cref="ValidatedTokens"/>).</summary>
    public bool CacheValidatedTokens { get; set; } = true;

    /// <summary>
    /// Operators and auditors sign in with a one-time code besides their password (see <see cref="SecondFactor"/>).
    /// Off only where the demo accounts must work without an authenticator app (Development).
    /// </summary>
    public bool RequireStaffTwoFactor { get; set; } = true;

    /// <summary>
    /// Wrong second-factor codes one account may receive in a day, from all networks together, before no code (not even
    /// a right one, or a recovery code) is checked for it until the day is over or <c>staff reset-two-factor</c>.
    /// </summary>
    [Range(3, 100)]
    public int SecondFactorFailuresPerDay { get; set; } = 10;

    [Range(typeof(TimeSpan), "00:05:00", "90.00:00:00")]
    public TimeSpan RefreshTokenLifetime { get; set; } = TimeSpan.FromDays(14);

    /// <summary>Plain HTTP is for development and tests only; OpenIddict refuses it otherwise.</summary>
    public bool AllowInsecureHttp { get; set; }

    /// <summary>PEM file with the RSA private key that signs access and identity tokens; when empty the key is kept in PostgreSQL.</summary>
    public string? RsaSigningKeyFile { get; set; }

    /// <summary>PEM file with the P-256 private key that signs security event tokens; when empty the key is kept in PostgreSQL.</summary>
    public string? EcdsaSigningKeyFile { get; set; }

    /// <summary>Base64 AES-256 key that encrypts authorization codes and refresh tokens; when empty it is kept in PostgreSQL.</summary>
    public string? EncryptionKey { get; set; }

    /// <summary>
    /// Other values of <see cref="EncryptionKey"/> (base64 AES-256) that only decrypt: the next key before a replacement (a
    /// node already replaced issues codes and refresh tokens under it) and the previous one after (drop it once the refresh
    /// token lifetime has passed).
    /// </summary>
    public string[] DecryptionKeys { get; set; } = [];

    /// <summary>
    /// PEM files (public or private, RSA or P-256 only) of other keys whose signatures the gateway accepts but never makes: the
    /// key just replaced (earlier audit checkpoints, tokens still alive) and the next one before a replacement (so that
    /// nodes not yet replaced accept what a replaced node signs). Files, not rows: a key trusted to vouch for the audit
    /// log must not be one that write access to the database could add.
    /// </summary>
    public string[] VerificationKeyFiles { get; set; } = [];

    /// <summary>
    /// Wrong passwords one network may try on one account in a <see cref="SignInFailureWindow"/> before that network is
    /// refused for it (see <see cref="SignInThrottle"/>). The seeker, signing in from elsewhere, is not.
    /// </summary>
    [Range(1, 100)]
    public int SignInFailuresPerSource { get; set; } = 5;

    [Range(typeof(TimeSpan), "00:01:00", "1.00:00:00")]
    public TimeSpan SignInFailureWindow { get; set; } = TimeSpan.FromMinutes(15);

    /// <summary>
    /// Wrong passwords from all networks together, in windows not yet ended, before browsers that never signed in to the
    /// account are refused for it: the ceiling for guesses spread over many networks. A browser that signed in before, and
    /// the reset link, still get their holder in.
    /// </summary>
    [Range(1, 1000)]
    public int AccountLockoutFailures { get; set; } = 20;

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (AccountLockoutFailures <= SignInFailuresPerSource)
        {
            // Otherwise one network alone would meet the account's ceiling: the holder's lockout by anyone knowing the address.
            yield return new ValidationResult(
                "Auth:AccountLockoutFailures must be greater than Auth:SignInFailuresPerSource.", [nameof(AccountLockoutFailures)]);
        }

        if (Issuer is { IsAbsoluteUri: false })
        {
            yield return new ValidationResult("Auth:Issuer must be an absolute URI.", [nameof(Issuer)]);
        }
        else if (Issuer is not null && Issuer.Scheme != Uri.UriSchemeHttps && !AllowInsecureHttp)
        {
            yield return new ValidationResult("Auth:Issuer must use https unless Auth:AllowInsecureHttp is true (development only).", [nameof(Issuer)]);
        }

        if (!string.IsNullOrEmpty(EncryptionKey) && !IsAes256Key(EncryptionKey))
        {
            yield return new ValidationResult("Auth:EncryptionKey must be base64 for exactly 32 bytes.", [nameof(EncryptionKey)]);
        }

        if (DecryptionKeys.Any(key => !IsAes256Key(key)))
        {
            yield return new ValidationResult("Auth:DecryptionKeys must each be base64 for exactly 32 bytes.", [nameof(DecryptionKeys)]);
        }

        if (VerificationKeyFiles.Any(string.IsNullOrWhiteSpace))
        {
            yield return new ValidationResult("Auth:VerificationKeyFiles must not have empty entries.", [nameof(VerificationKeyFiles)]);
        }

        foreach (var (file, name) in new[] { (RsaSigningKeyFile, nameof(RsaSigningKeyFile)), (EcdsaSigningKeyFile, nameof(EcdsaSigningKeyFile)) }
            .Concat(VerificationKeyFiles.Select(f => ((string?)f, nameof(VerificationKeyFiles)))))
        {
            if (!string.IsNullOrEmpty(file) && !File.Exists(file))
            {
                yield return new ValidationResult($"Auth:{name} names a file that does not exist.", [name]);
            }
        }
    }

    private static bool IsAes256Key(string value)
    {
        Span<byte> buffer = stackalloc byte[64];
        return Convert.TryFromBase64String(value, buffer, out var written) && written == 32;
    }
}
