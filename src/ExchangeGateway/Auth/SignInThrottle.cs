using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using ExchangeGateway.Audit;
using ExchangeGateway.Data;
using ExchangeGateway.Hosting;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using Microsoft.Extensions.Options;

namespace ExchangeGateway.Auth;

/// <summary>
/// Wrong passwords for one account from one source, in the window that began with the first of them. The source is a keyed
/// pseudonym of the client's network, never its address: the row says only "this many failures from somewhere".
/// </summary>
public sealed class SignInFailures
{
    public required string UserId { get; init; }
    public required string Source { get; init; }
    public int Failures { get; init; }
    public DateTimeOffset WindowEnds { get; init; }
}

public sealed class SignInFailuresConfiguration : IEntityTypeConfiguration<SignInFailures>
{
    public void Configure(EntityTypeBuilder<SignInFailures> builder)
    {
        builder.ToTable("sign_in_failures");
        builder.HasKey(f => new { f.UserId, f.Source });
        builder.Property(f => f.Source).HasMaxLength(40);
        // Gone with the account: an erasure leaves none of these behind.
        builder.HasOne<GatewayUser>().WithMany().HasForeignKey(f => f.UserId).OnDelete(DeleteBehavior.Cascade);
        builder.HasIndex(f => f.WindowEnds);
    }
}

/// <summary>
/// Password guessing is stopped per account and source, so that whoever knows a seeker's address cannot lock the seeker
/// out: a network that has spent <see cref="AuthOptions.SignInFailuresPerSource"/> wrong passwords on an account in its
/// window is refused for that account until the window ends, while the seeker, signing in from elsewhere, is not.
/// Guesses spread over many networks meet a ceiling for the account (<see cref="AuthOptions.AccountLockoutFailures"/>
/// wrong passwords in windows not yet ended), which refuses browsers that have never signed in to it; a browser that has
/// (it carries the device cookie, OWASP's "device cookies") still gets its password checked, and the reset link gets its
/// holder in from anywhere. Both counts come from these rows alone, so both forget with their windows: Identity's own
/// lockout, whose count never expires, is not used (one network could reach it window after window).
/// Must run inside the sign-in's transaction, after <see cref="Locks.SignInAsync"/>: attempts on one address take turns.
/// </summary>
public sealed class SignInThrottle(
    GatewayDbContext db, Pseudonyms pseudonyms, TimeProvider time, IOptions<AuthOptions> options, IDataProtectionProvider dataProtection)
{
    /// <summary>The cookie a browser gets when it signs in to an account; only its own pages read it.</summary>
    public const string DeviceCookie = "eg_device";

    private const string DevicePurpose = "ExchangeGateway.Auth.Device.v1";

    /// <summary>How long a browser that signed in is still recognised by its device cookie.</summary>
    public static readonly TimeSpan DeviceKept = TimeSpan.FromDays(180);

    /// <summary>
    /// Where an attempt on <paramref name="user"/>'s account comes from: the browser itself when it signed in to the account
    /// before (its device cookie), else the client's network.
    /// </summary>
    public (string Source, bool KnownDevice) SourceOf(HttpContext http, GatewayUser? user)
    {
        var device = http.Request.Cookies[DeviceCookie];
        return user is not null && IsKnownDevice(device, user)
            ? (SourceOfDevice(device!), true)
            : (SourceOf(http.Connection.RemoteIpAddress), false);
    }

    /// <summary>The client's network: its IPv4 address, or the /64 of an IPv6 one (a single host is given a whole /64).</summary>
    private string SourceOf(IPAddress? address) => pseudonyms.Of("sign-in-source:" + ClientNetwork.Of(address));

    /// <summary>
    /// True when no password may be checked for this account from this source: the source has spent its wrong passwords,
    /// or the account has met its ceiling and the browser has never signed in to it.
    /// </summary>
    public async Task<bool> IsRefusedAsync(string userId, string source, bool knownDevice, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        var live = db.Set<SignInFailures>().Where(f => f.UserId == userId && f.WindowEnds > now);
        var counts = await live.Where(f => f.Source != SecondFactorSource)
            .GroupBy(_ => 1)
            .Select(g => new { FromSource = g.Where(f => f.Source == source).Sum(f => f.Failures), All = g.Sum(f => f.Failures) })
            .SingleOrDefaultAsync(cancellationToken);
        return counts is not null
            && (counts.FromSource >= options.Value.SignInFailuresPerSource || (!knownDevice && counts.All >= options.Value.AccountLockoutFailures));
    }

    /// <summary>
    /// The account-wide count of wrong second-factor codes, from every network, in a day: a code is six digits, and the
    /// password's allowance (which a reset link starts again) would leave hundreds of guesses at it a day.
    /// </summary>
    public const string SecondFactorSource = "second-factor";

    public static readonly TimeSpan SecondFactorWindow = TimeSpan.FromDays(1);

    /// <summary>
    /// A second-factor code (or recovery code), checked as every page that takes one checks it: none is looked at after
    /// the account's day of wrong codes or from a network refused for the account, and a wrong one counts for its network,
    /// as a wrong password does, and in the account's day. Returns whether it passed and which factor it was.
    /// </summary>
    public async Task<(bool Passed, string Factor)> CheckCodeAsync(
        SecondFactor secondFactor, GatewayUser user, string code, string source, bool knownDevice, CancellationToken cancellationToken)
    {
        var (passed, factor) = await IsCodeRefusedAsync(user.Id, source, knownDevice, cancellationToken)
            ? (false, SecondFactor.FactorOf(code))
            : await secondFactor.VerifyAsync(user, code);
        if (!passed)
        {
            await CodeFailedAsync(user.Id, source, cancellationToken);
        }

        return (passed, factor);
    }

    /// <summary>Whether this account's code may be checked at all: not after its day's wrong codes, whatever the network.</summary>
    private async Task<bool> IsCodeRefusedAsync(string userId, string source, bool knownDevice, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        var wrongCodes = await db.Set<SignInFailures>()
            .Where(f => f.UserId == userId && f.Source == SecondFactorSource && f.WindowEnds > now).SumAsync(f => f.Failures, cancellationToken);
        return wrongCodes >= options.Value.SecondFactorFailuresPerDay || await IsRefusedAsync(userId, source, knownDevice, cancellationToken);
    }

    /// <summary>A wrong code: counted for its network, as a wrong password is, and in the account's day of wrong codes.</summary>
    private async Task CodeFailedAsync(string userId, string source, CancellationToken cancellationToken)
    {
        await FailedAsync(userId, source, cancellationToken);
        await FailedAsync(userId, SecondFactorSource, cancellationToken, SecondFactorWindow);
    }

    /// <summary>
    /// Counts a wrong password; the first failure after a window has ended opens a new one. The count is taken from the
    /// account row under a share lock rather than inserted against the foreign key: a "forget me" committing meanwhile
    /// then leaves nothing to count (the page answers as for any wrong password), where the key check would fail with
    /// a 500 that tells the account was being erased, and write the erased id into PostgreSQL's log.
    /// </summary>
    public Task FailedAsync(string userId, string source, CancellationToken cancellationToken, TimeSpan? window = null)
    {
        var now = time.GetUtcNow();
        var windowEnds = now + (window ?? options.Value.SignInFailureWindow);
        return db.Database.ExecuteSqlAsync(
            $"""
            INSERT INTO sign_in_failures AS f (user_id, source, failures, window_ends)
            SELECT u.id, {source}, 1, {windowEnds} FROM "AspNetUsers" u WHERE u.id = {userId} FOR KEY SHARE
            ON CONFLICT (user_id, source) DO UPDATE
            SET failures = CASE WHEN f.window_ends <= {now} THEN 1 ELSE f.failures + 1 END,
                window_ends = CASE WHEN f.window_ends <= {now} THEN {windowEnds} ELSE f.window_ends END
            """,
            cancellationToken);
    }

    /// <summary>A right password from this source: its count starts again.</summary>
    public Task SucceededAsync(string userId, string source, CancellationToken cancellationToken) =>
        db.Set<SignInFailures>().Where(f => f.UserId == userId && f.Source == source).ExecuteDeleteAsync(cancellationToken);

    /// <summary>
    /// Whether the browser's device cookie says it signed in to this account (within <see cref="DeviceKept"/>) since the
    /// account's last password change: a reset, which ends every session, also makes every browser new again, so a
    /// browser someone else once signed in with is not trusted past the ceiling after the holder took the account back.
    /// </summary>
    private bool IsKnownDevice(string? cookie, GatewayUser user)
    {
        if (string.IsNullOrEmpty(cookie))
        {
            return false;
        }

        try
        {
            var parts = dataProtection.CreateProtector(DevicePurpose).Unprotect(cookie).Split('\n');
            return parts.Length == 3 && parts[0] == user.Id && parts[1] == user.SecurityStamp
                && long.TryParse(parts[2], NumberStyles.None, CultureInfo.InvariantCulture, out var issued)
                && time.GetUtcNow() - DateTimeOffset.FromUnixTimeSeconds(issued) < DeviceKept;
        }
        catch (CryptographicException)
        {
            return false;
        }
    }

    /// <summary>
    /// Marks the request's browser as one this account's holder signed in with: by password on the sign-in page, or by a
    /// mailed link (sign-up, reset), which proves the mailbox. Without it, a holder who took the account back by a reset
    /// would be kept out again, once that session ended, by whoever keeps guessing.
    /// </summary>
    public void RememberDevice(HttpContext http, GatewayUser user, IHostEnvironment environment) =>
        http.Response.Cookies.Append(DeviceCookie, DeviceCookieFor(user), new CookieOptions
        {
            HttpOnly = true, SameSite = SameSiteMode.Strict, Path = "/Account", MaxAge = DeviceKept, IsEssential = true,
            Secure = Pages.PagesSetup.SecurePolicy(environment) == CookieSecurePolicy.Always || http.Request.IsHttps,
        });

    /// <summary>The device cookie's value for a browser that has just signed in to this account.</summary>
    public string DeviceCookieFor(GatewayUser user) =>
        dataProtection.CreateProtector(DevicePurpose).Protect(
            user.Id + "\n" + user.SecurityStamp + "\n" + time.GetUtcNow().ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture));

    /// <summary>
    /// A known browser counts its wrong passwords as a source of its own, not its network's: someone on the holder's shared
    /// network (a job centre, a carrier's NAT) cannot spend the holder's own browser's allowance.
    /// </summary>
    private string SourceOfDevice(string cookie) => pseudonyms.Of("sign-in-device:" + cookie);

    /// <summary>
    /// A new password (the reset link proves the mailbox): every network's count starts again. Not the day's wrong codes:
    /// a reset proves the mailbox, not the authenticator, and must not buy more guesses at the code.
    /// </summary>
    public static Task ForgetAsync(GatewayDbContext db, string userId, CancellationToken cancellationToken) =>
        db.Set<SignInFailures>().Where(f => f.UserId == userId && f.Source != SecondFactorSource).ExecuteDeleteAsync(cancellationToken);

    /// <summary>A new authenticator (enrolment, or an operator's reset): the account's day of wrong codes starts again.</summary>
    public static Task ForgetCodesAsync(GatewayDbContext db, string userId, CancellationToken cancellationToken) =>
        db.Set<SignInFailures>().Where(f => f.UserId == userId && f.Source == SecondFactorSource).ExecuteDeleteAsync(cancellationToken);

    /// <summary>Windows that have ended say nothing any more (the pruning job).</summary>
    public static Task<int> PruneAsync(GatewayDbContext db, DateTimeOffset now, CancellationToken cancellationToken) =>
        db.Set<SignInFailures>().Where(f => f.WindowEnds <= now).ExecuteDeleteAsync(cancellationToken);
}
