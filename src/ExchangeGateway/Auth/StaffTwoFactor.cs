using System.Buffers.Binary;
using System.Globalization;
using System.Security.Claims;
using System.Security.Cryptography;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Identity;
using Microsoft.Extensions.Options;
using static OpenIddict.Abstractions.OpenIddictConstants;

namespace ExchangeGateway.Auth;

/// <summary>What comes after a right password.</summary>
public enum AfterPassword
{
    /// <summary>Signed in: a job seeker, or staff where a second factor is not required and not turned on.</summary>
    SignedIn,

    /// <summary>A code from the account's authenticator (or a recovery code) first.</summary>
    Code,

    /// <summary>Staff without an authenticator yet: they add one before their first session.</summary>
    Enroll,
}

/// <summary>
/// The second factor of operators and auditors (<see cref="AuthOptions.RequireStaffTwoFactor"/>): a time-based one-time
/// code (RFC 6238, as authenticator apps make it) or a recovery code. Staff can suspend sites and read every access in
/// the log, so a password alone, which can be phished or guessed, must not open their sessions. Job seekers keep the
/// password (and the mailbox links): the service must stay usable by everyone.
/// A right password gives only Identity's short-lived two-factor cookie, which opens nothing; the session is issued with
/// <c>amr=mfa</c> once the code is right, and staff sessions without it are not accepted where staff act.
/// </summary>
public sealed class StaffTwoFactor(
    UserManager<GatewayUser> users, SignInManager<GatewayUser> signIn, IOptions<AuthOptions> options, TimeProvider time)
{
    /// <summary>The session's claim after both factors, as Identity's own two-factor sign-in writes it.</summary>
    public const string AmrClaim = "amr";
    public const string Mfa = "mfa";

    public const int RecoveryCodes = 10;

    private const string TokenProvider = "[ExchangeGateway]";
    private const string LastStepToken = "TotpLastStep";
    private const int StepSeconds = 30;
    private const int Digits = 6;

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

    /// <summary>After the password: only Identity's two-factor cookie (minutes long), naming the account and opening nothing.</summary>
    public Task BeginAsync(HttpContext http, GatewayUser user) =>
        http.SignInAsync(IdentityConstants.TwoFactorUserIdScheme,
            new ClaimsPrincipal(new ClaimsIdentity([new Claim(ClaimTypes.Name, user.Id)], IdentityConstants.TwoFactorUserIdScheme)));

    /// <summary>The account whose password was right in this browser a few minutes ago, or null.</summary>
    public Task<GatewayUser?> PendingAsync() => signIn.GetTwoFactorAuthenticationUserAsync();

    /// <summary>Both factors given: the session, marked as such, replaces the two-factor cookie.</summary>
    public async Task CompleteAsync(HttpContext http, GatewayUser user)
    {
        await http.SignOutAsync(IdentityConstants.TwoFactorUserIdScheme);
        await signIn.SignInWithClaimsAsync(user, isPersistent: false, [new Claim(AmrClaim, Mfa)]);
    }

    /// <summary>The account's authenticator key (base32), made on first use and kept until enrolment succeeds or is reset.</summary>
    public async Task<string> KeyAsync(GatewayUser user)
    {
        var key = await users.GetAuthenticatorKeyAsync(user);
        if (string.IsNullOrEmpty(key))
        {
            await users.ResetAuthenticatorKeyAsync(user);
            key = await users.GetAuthenticatorKeyAsync(user);
        }

        return key!;
    }

    /// <summary>The otpauth URI authenticator apps read (as a QR code or pasted), naming the gateway and the account.</summary>
    public static string AuthenticatorUri(string issuer, string account, string key) =>
        $"otpauth://totp/{Uri.EscapeDataString(issuer)}:{Uri.EscapeDataString(account)}?secret={key}&issuer={Uri.EscapeDataString(issuer)}&digits={Digits}&period={StepSeconds}";

    /// <summary>
    /// Checks a one-time code against the account's key, within one step either side of now (clocks drift), and refuses
    /// a step already used or older: a code seen over someone's shoulder or in a proxy's log does not open a second session.
    /// The caller holds the account's sign-in lock, so two requests with one code take turns.
    /// </summary>
    public async Task<bool> VerifyCodeAsync(GatewayUser user, string code)
    {
        var key = await users.GetAuthenticatorKeyAsync(user);
        if (string.IsNullOrEmpty(key) || code.Length != Digits || !code.All(char.IsAsciiDigit))
        {
            return false;
        }

        var secret = Base32.Decode(key);
        var now = time.GetUtcNow().ToUnixTimeSeconds() / StepSeconds;
        var last = long.TryParse(await users.GetAuthenticationTokenAsync(user, TokenProvider, LastStepToken), NumberStyles.None, CultureInfo.InvariantCulture, out var used)
            ? used : long.MinValue;
        for (var step = now - 1; step <= now + 1; step++)
        {
            if (step > last && CryptographicOperations.FixedTimeEquals(System.Text.Encoding.ASCII.GetBytes(Code(secret, step)), System.Text.Encoding.ASCII.GetBytes(code)))
            {
                await users.SetAuthenticationTokenAsync(user, TokenProvider, LastStepToken, step.ToString(CultureInfo.InvariantCulture));
                return true;
            }
        }

        return false;
    }

    /// <summary>A one-time code, or else one of the account's recovery codes (each good once).</summary>
    public async Task<bool> VerifyAsync(GatewayUser user, string entered)
    {
        var code = new string(entered.Where(c => !char.IsWhiteSpace(c)).ToArray());
        return code.Length == Digits && code.All(char.IsAsciiDigit)
            ? await VerifyCodeAsync(user, code)
            : code.Length is > 0 and <= 64 && (await users.RedeemTwoFactorRecoveryCodeAsync(user, code.ToUpperInvariant())).Succeeded;
    }

    /// <summary>Turns the second factor on once the authenticator has shown it holds the key; returns the recovery codes, shown once.</summary>
    public async Task<IReadOnlyList<string>?> EnrollAsync(GatewayUser user, string entered)
    {
        var code = new string(entered.Where(c => !char.IsWhiteSpace(c)).ToArray());
        if (!await VerifyCodeAsync(user, code))
        {
            return null;
        }

        await users.SetTwoFactorEnabledAsync(user, true);
        return (await users.GenerateNewTwoFactorRecoveryCodesAsync(user, RecoveryCodes))!.ToList();
    }

    /// <summary>A lost authenticator: off, with a new key and no recovery codes; the next sign-in enrols again.</summary>
    public async Task ResetAsync(GatewayUser user)
    {
        await users.SetTwoFactorEnabledAsync(user, false);
        await users.ResetAuthenticatorKeyAsync(user);
        await users.GenerateNewTwoFactorRecoveryCodesAsync(user, 0);
        await users.RemoveAuthenticationTokenAsync(user, TokenProvider, LastStepToken);
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
