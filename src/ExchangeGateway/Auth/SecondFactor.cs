using System.Buffers.Binary;
using System.Globalization;
using System.Security.Claims;
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Identity;
using Microsoft.Extensions.Options;
using static OpenIddict.Abstractions.OpenIddictConstants;

namespace ExchangeGateway.Auth;

/// <summary>What comes after a right password.</summary>
public enum AfterPassword
{
    /// <summary>Signed in: an account without a second factor (a job seeker who did not turn it on, staff where it is not required).</summary>
    SignedIn,

    /// <summary>A code from the account's authenticator (or a recovery code) first.</summary>
    Code,

    /// <summary>Staff without an authenticator yet: they add one before their first session.</summary>
    Enroll,
}

/// <summary>
/// The second factor of operators and auditors (<see cref="AuthOptions.RequireStaffTwoFactor"/>): a time-based one-time
/// code (RFC 6238, as authenticator apps make it) or a recovery code. Staff can suspend sites and read every access in
/// the log, so a password alone, which can be phished or guessed, must not open their sessions. Job seekers may turn the
/// same factor on for themselves (Account/TwoStep) but are never made to: the service must stay usable by everyone.
/// A right password gives only a short two-factor cookie (the account and its security stamp), which opens nothing; the
/// session is issued with <c>amr=mfa</c> once the code is right, and staff sessions without it are not accepted where
/// staff act. The key is stored only once an authenticator has proved it holds it, protected by Data Protection (whose
/// key ring is in the database as well: protect it at rest for the key to resist a copy of the database); the recovery
/// codes only as keyed hashes, under the pseudonym key, which lives outside the database.
/// </summary>
public sealed class SecondFactor(
    UserManager<GatewayUser> users, SignInManager<GatewayUser> signIn, IOptions<AuthOptions> options, TimeProvider time,
    IDataProtectionProvider dataProtection, Audit.Pseudonyms pseudonyms, ILogger<SecondFactor> logger)
{
    /// <summary>The session's claim after both factors, as Identity's own two-factor sign-in writes it.</summary>
    public const string AmrClaim = "amr";
    public const string Mfa = "mfa";

    public const int RecoveryCodes = 10;

    /// <summary>How long a right password waits for its code, and an enrolment for its first code.</summary>
    public static readonly TimeSpan Pending = TimeSpan.FromMinutes(15);

    private const string TokenProvider = "[ExchangeGateway]";
    private const string KeyToken = "TotpKey";
    private const string LastStepToken = "TotpLastStep";
    private const string RecoveryToken = "RecoveryCodeHashes";
    private const string StampClaim = "eg_stamp";
    private const int StepSeconds = 30;
    private const int Digits = 6;

    // The purposes keep the class's first name: keys protected under them must still open.
    private IDataProtector KeyProtector => dataProtection.CreateProtector("ExchangeGateway.StaffTwoFactor.Key.v1");

    private IDataProtector EnrolmentProtector => dataProtection.CreateProtector("ExchangeGateway.StaffTwoFactor.Enrolment.v2");

    public bool Required => options.Value.RequireStaffTwoFactor;

    /// <summary>Whether these roles make an account staff, whose sessions need the second factor when it is required.</summary>
    public static bool IsStaff(IEnumerable<string> roles) => roles.Any(r => r is Roles.Operator or Roles.Auditor);

    /// <summary>Whether a session of someone with these roles may act: staff need both factors when they are required.</summary>
    public bool Accepts(ClaimsPrincipal session) =>
        !Required || !session.Claims.Any(c => c.Type == Claims.Role && c.Value is Roles.Operator or Roles.Auditor) || HasBothFactors(session);

    public static bool HasBothFactors(ClaimsPrincipal session) => session.HasClaim(AmrClaim, Mfa);

    public async Task<AfterPassword> NextStepAsync(GatewayUser user, IList<string> roles) =>
        await users.GetTwoFactorEnabledAsync(user) ? AfterPassword.Code
        : Required && IsStaff(roles) ? AfterPassword.Enroll
        : AfterPassword.SignedIn;

    /// <summary>The page that takes a sign-in on from a right password, or null when it is signed in already.</summary>
    public static string? PageAfter(AfterPassword next) => next switch
    {
        AfterPassword.Code => "/Account/TwoFactor",
        AfterPassword.Enroll => "/Account/EnrollTwoFactor",
        _ => null,
    };

    /// <summary>
    /// After the password: only the two-factor cookie (<see cref="Pending"/>, not renewed by use), naming the account and
    /// its security stamp, so that a new password or a reset of the factor ends it.
    /// </summary>
    public async Task BeginAsync(HttpContext http, GatewayUser user) =>
        await http.SignInAsync(IdentityConstants.TwoFactorUserIdScheme, new ClaimsPrincipal(new ClaimsIdentity(
            [new Claim(ClaimTypes.Name, user.Id), new Claim(StampClaim, await users.GetSecurityStampAsync(user))], IdentityConstants.TwoFactorUserIdScheme)));

    /// <summary>The account whose password was right in this browser a few minutes ago, unchanged since; or null.</summary>
    public async Task<GatewayUser?> PendingAsync(HttpContext http)
    {
        var pending = await http.AuthenticateAsync(IdentityConstants.TwoFactorUserIdScheme);
        var id = pending.Principal?.FindFirstValue(ClaimTypes.Name);
        var stamp = pending.Principal?.FindFirstValue(StampClaim);
        var user = id is null ? null : await users.FindByIdAsync(id);
        return user is not null && stamp is not null && stamp == await users.GetSecurityStampAsync(user) ? user : null;
    }

    /// <summary>
    /// Takes the account's sign-in turn (the lock the password page takes) and reads the account again: true while the
    /// password given in this browser still stands. Two requests with one code cannot both be first, and a new password or
    /// a reset of the factor that landed while this request waited ends it.
    /// </summary>
    public async Task<bool> StillPendingInTurnAsync(HttpContext http, Data.GatewayDbContext db, GatewayUser user)
    {
        await Data.Locks.AccountInTurnAsync(db, user, http.RequestAborted);
        return await PendingAsync(http) is not null;
    }

    /// <summary>Both factors given: the session, marked as such, replaces the two-factor cookie.</summary>
    public async Task CompleteAsync(HttpContext http, GatewayUser user)
    {
        await http.SignOutAsync(IdentityConstants.TwoFactorUserIdScheme);
        await signIn.SignInWithClaimsAsync(user, isPersistent: false, [new Claim(AmrClaim, Mfa)]);
    }

    /// <summary>
    /// A new key for one enrolment attempt, and the form's sealed copy of it (bound to the account and its stamp, good for
    /// <see cref="Pending"/>). Nothing is stored: whoever opens the page with a stolen password learns a key that will
    /// never be the account's unless their own authenticator answers with it, which the holder would not then be using.
    /// </summary>
    public (string Key, string Sealed) NewEnrolment(GatewayUser user)
    {
        var key = Base32.Encode(RandomNumberGenerator.GetBytes(20));
        // The expiry is the gateway's clock, not the time-limited protector's own wall clock, so that it can be tested.
        var expires = (time.GetUtcNow() + Pending).ToUnixTimeSeconds();
        return (key, EnrolmentProtector.Protect(string.Join('\n', user.Id, user.SecurityStamp, key, expires.ToString(CultureInfo.InvariantCulture))));
    }

    /// <summary>The key of an enrolment form, if it is this account's, unchanged, and not expired.</summary>
    public string? OpenEnrolment(GatewayUser user, string? sealedKey)
    {
        try
        {
            var parts = EnrolmentProtector.Unprotect(sealedKey ?? "").Split('\n');
            return parts.Length == 4 && parts[0] == user.Id && parts[1] == user.SecurityStamp
                && long.TryParse(parts[3], NumberStyles.None, CultureInfo.InvariantCulture, out var expires)
                && time.GetUtcNow().ToUnixTimeSeconds() < expires
                ? parts[2] : null;
        }
        catch (CryptographicException)
        {
            return null;
        }
    }

    /// <summary>The otpauth URI authenticator apps read (as a QR code or pasted), naming the gateway and the account.</summary>
    public static string AuthenticatorUri(string issuer, string account, string key) =>
        $"otpauth://totp/{Uri.EscapeDataString(issuer)}:{Uri.EscapeDataString(account)}?secret={key}&issuer={Uri.EscapeDataString(issuer)}&digits={Digits}&period={StepSeconds}";

    /// <summary>
    /// Turns the factor on once the authenticator has shown it holds the form's key (a right code for it); returns the
    /// recovery codes, shown once; null for a wrong code. The caller holds the account's sign-in lock.
    /// </summary>
    public async Task<IReadOnlyList<string>?> EnrollAsync(GatewayUser user, string key, string entered)
    {
        var step = MatchingStep(Base32.Decode(key), Normalised(entered), long.MinValue);
        if (step is null)
        {
            return null;
        }

        var codes = Enumerable.Range(0, RecoveryCodes).Select(_ => NewRecoveryCode()).ToList();
        Succeeded(await users.SetAuthenticationTokenAsync(user, TokenProvider, KeyToken, KeyProtector.Protect(key)));
        Succeeded(await users.SetAuthenticationTokenAsync(user, TokenProvider, LastStepToken, step.Value.ToString(CultureInfo.InvariantCulture)));
        Succeeded(await users.SetAuthenticationTokenAsync(user, TokenProvider, RecoveryToken, string.Join(';', codes.Select(c => HashOf(RecoveryCharacters(c))))));
        Succeeded(await users.SetTwoFactorEnabledAsync(user, true));
        return codes;
    }

    /// <summary>
    /// A one-time code (the step now or one either side: clocks drift; never a step already used, so a code seen over a
    /// shoulder or in a log does not open a second session), or else one of the account's recovery codes, each good once.
    /// The caller holds the account's sign-in lock, so two requests with one code take turns.
    /// </summary>
    public async Task<(bool Passed, string Factor)> VerifyAsync(GatewayUser user, string entered)
    {
        var code = Normalised(entered);
        if (code.Length == Digits && code.All(char.IsAsciiDigit))
        {
            var stored = await users.GetAuthenticationTokenAsync(user, TokenProvider, KeyToken);
            byte[] secret;
            try
            {
                secret = Base32.Decode(KeyProtector.Unprotect(stored ?? throw new FormatException("No key.")));
            }
            catch (Exception e) when (e is CryptographicException or FormatException)
            {
                // A key ring that lost the key's protector, or a damaged row: no code can be right; the operator resets it.
                // The account by pseudonym, as the audit log names a job seeker (no seeker id in the logs); an auditor's
                // search by subject finds whose it is.
                logger.LogError("The second-factor key of account {Account} cannot be read ({Error}); reset it with staff reset-two-factor", pseudonyms.Of(user.Id), e.GetType().Name);
                return (false, "code");
            }

            var last = long.TryParse(await users.GetAuthenticationTokenAsync(user, TokenProvider, LastStepToken), NumberStyles.AllowLeadingSign,
                CultureInfo.InvariantCulture, out var used) ? used : long.MinValue;
            var step = MatchingStep(secret, code, last);
            if (step is null)
            {
                return (false, "code");
            }

            // Saved before the answer, or refused: a step accepted but not remembered could be used again.
            Succeeded(await users.SetAuthenticationTokenAsync(user, TokenProvider, LastStepToken, step.Value.ToString(CultureInfo.InvariantCulture)));
            return (true, "code");
        }

        var hashes = (await users.GetAuthenticationTokenAsync(user, TokenProvider, RecoveryToken))?.Split(';', StringSplitOptions.RemoveEmptyEntries) ?? [];
        var hash = code.Length is > 0 and <= 64 ? HashOf(RecoveryCharacters(code)) : null;
        if (hash is null || !hashes.Contains(hash, StringComparer.Ordinal))
        {
            return (false, "recovery-code");
        }

        Succeeded(await users.SetAuthenticationTokenAsync(user, TokenProvider, RecoveryToken, string.Join(';', hashes.Where(h => h != hash))));
        return (true, "recovery-code");
    }

    /// <summary>How many of the account's recovery codes are still unused.</summary>
    public async Task<int> RecoveryCodesLeftAsync(GatewayUser user) =>
        (await users.GetAuthenticationTokenAsync(user, TokenProvider, RecoveryToken))?.Split(';', StringSplitOptions.RemoveEmptyEntries).Length ?? 0;

    /// <summary>What was typed, by its shape: a one-time code, or a recovery code.</summary>
    public static string FactorOf(string entered) => Normalised(entered) is { Length: Digits } code && code.All(char.IsAsciiDigit) ? "code" : "recovery-code";

    /// <summary>A lost authenticator: off, key, last step and recovery codes gone; the next sign-in enrols again.</summary>
    public async Task ResetAsync(GatewayUser user)
    {
        Succeeded(await users.SetTwoFactorEnabledAsync(user, false));
        foreach (var name in new[] { KeyToken, LastStepToken, RecoveryToken })
        {
            Succeeded(await users.RemoveAuthenticationTokenAsync(user, TokenProvider, name));
        }
    }

    private long? MatchingStep(byte[] secret, string code, long after)
    {
        if (code.Length != Digits || !code.All(char.IsAsciiDigit))
        {
            return null;
        }

        var now = time.GetUtcNow().ToUnixTimeSeconds() / StepSeconds;
        for (var step = now - 1; step <= now + 1; step++)
        {
            if (step > after && CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(Code(secret, step)), Encoding.ASCII.GetBytes(code)))
            {
                return step;
            }
        }

        return null;
    }

    private static string Normalised(string entered) => new string(entered.Where(c => !char.IsWhiteSpace(c)).ToArray()).ToUpperInvariant();

    private const string RecoveryAlphabet = "23456789BCDFGHJKMNPQRTVWXY";

    /// <summary>Ten characters from an alphabet without look-alikes, shown as two groups of five.</summary>
    private static string NewRecoveryCode()
    {
        var code = RandomNumberGenerator.GetString(RecoveryAlphabet, 10);
        return code[..5] + "-" + code[5..];
    }

    /// <summary>The code's own characters only: whatever dash or space a copy and paste brought along does not count.</summary>
    private static string RecoveryCharacters(string code) => new(code.ToUpperInvariant().Where(c => RecoveryAlphabet.Contains(c, StringComparison.Ordinal)).ToArray());

    /// <summary>Keyed, with a key outside the database: ten characters are too few to resist guessing against a plain hash.</summary>
    private string HashOf(string recoveryCharacters) => pseudonyms.Of("staff-recovery-code:" + recoveryCharacters);

    private static void Succeeded(IdentityResult result)
    {
        if (!result.Succeeded)
        {
            throw new InvalidOperationException("The second factor could not be saved: " + string.Join(", ", result.Errors.Select(e => e.Code)));
        }
    }

    /// <summary>RFC 6238 with HMAC-SHA1, six digits, 30-second steps: what authenticator apps make from an otpauth URI.</summary>
    public static string Code(byte[] secret, long step)
    {
        Span<byte> counter = stackalloc byte[8];
        BinaryPrimitives.WriteInt64BigEndian(counter, step);
        Span<byte> hash = stackalloc byte[HMACSHA1.HashSizeInBytes];
        // SHA-1 because the authenticator apps compute it (RFC 6238's default, the only one they all support); as an HMAC
        // over a counter it has no known weakness.
#pragma warning disable CA5350
        HMACSHA1.HashData(secret, counter, hash);
#pragma warning restore CA5350
        var offset = hash[^1] & 0x0f;
        var value = (BinaryPrimitives.ReadInt32BigEndian(hash[offset..]) & 0x7fffffff) % 1_000_000;
        return value.ToString("D6", CultureInfo.InvariantCulture);
    }

    /// <summary>RFC 4648 base32, the encoding of authenticator keys.</summary>
    public static class Base32
    {
        private const string Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

        public static string Encode(byte[] data)
        {
            var output = new StringBuilder((data.Length * 8 + 4) / 5);
            int buffer = 0, bits = 0;
            foreach (var b in data)
            {
                buffer = (buffer << 8) | b;
                bits += 8;
                while (bits >= 5)
                {
                    bits -= 5;
                    output.Append(Alphabet[(buffer >> bits) & 31]);
                }

                buffer &= (1 << bits) - 1;
            }

            if (bits > 0)
            {
                output.Append(Alphabet[(buffer << (5 - bits)) & 31]);
            }

            return output.ToString();
        }

        public static byte[] Decode(string text)
        {
            var output = new List<byte>(text.Length * 5 / 8);
            int buffer = 0, bits = 0;
            foreach (var c in text.TrimEnd('='))
            {
                var value = Alphabet.IndexOf(char.ToUpperInvariant(c), StringComparison.Ordinal);
                if (value < 0)
                {
                    throw new FormatException("Not base32.");
                }

                buffer = (buffer << 5) | value;
                bits += 5;
                if (bits >= 8)
                {
                    bits -= 8;
                    output.Add((byte)(buffer >> bits));
                    buffer &= (1 << bits) - 1;
                }
            }

            return [.. output];
        }
    }
}
