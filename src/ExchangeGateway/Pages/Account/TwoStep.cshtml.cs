using System.ComponentModel.DataAnnotations;
using ExchangeGateway.Audit;
using ExchangeGateway.Auth;
using ExchangeGateway.Data;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Localization;
using OpenIddict.Abstractions;
using OpenIddict.EntityFrameworkCore.Models;

namespace ExchangeGateway.Pages.Account;

/// <summary>
/// Two-step sign-in for a signed-in account that chooses it (job seekers; staff where it is not required): the same
/// authenticator code as staff give (<see cref="SecondFactor"/>), turned on from the account's own pages, never
/// imposed, so the service stays usable by everyone. Both forms ask for the current password as well as a code (a right
/// code for the form's key to turn it on; a code or a recovery code to turn it off), each counted as at the sign-in
/// pages: a session left open in a library can neither put its own authenticator on the account, locking its holder out,
/// nor take the second step away; and since the person has just given both, the session is issued again as a sign-in
/// (its <c>auth_time</c> now, for <c>max_age</c> and <c>prompt=login</c>). Either way the account's other sessions end
/// (a new security stamp) and the holder is told by mail.
/// The same page lists the applications that can act for the account (OAuth clients signed in as the seeker: Swagger UI,
/// a seeker's app; a site's share flow acts under the episode's pairwise id, not the account), each with a button that
/// ends its access: its refresh tokens and authorizations are revoked at once; an access token already issued runs out
/// its minutes, as after a new password. A browser session the application's device still holds is not ended by this
/// (the page says to change the password for a lost device).
/// </summary>
public sealed class TwoStepModel(
    SecondFactor twoFactor, UserManager<GatewayUser> users, SignInManager<GatewayUser> signIn, SignInThrottle throttle, AuditTrail audit,
    GatewayDbContext db, IStringLocalizer<PageText> text, Hosting.AccountMail mail, IWebHostEnvironment environment,
    IOpenIddictApplicationManager applications, IOpenIddictAuthorizationManager authorizations, IOpenIddictTokenManager tokens, TimeProvider time)
    : PageModel
{
    /// <summary>An application that can act for the account: one row per application, however many sign-ins it made.</summary>
    public sealed record ConnectedApp(string ClientId, string Name, IReadOnlyList<string> Scopes, DateTimeOffset? Since);

    [BindProperty, Required(ErrorMessage = "Error.Required"), StringLength(200, ErrorMessage = "Error.TooLong")] public string Password { get; set; } = "";
    [BindProperty, Required(ErrorMessage = "Error.Required"), StringLength(64, ErrorMessage = "Error.TooLong")] public string Code { get; set; } = "";
    [BindProperty] public string? Sealed { get; set; }
    [BindProperty] public string? ClientId { get; set; }

    public bool On { get; private set; }

    /// <summary>Staff where the second factor is required: it stays on, and only an operator's reset takes it away.</summary>
    public bool Required { get; private set; }

    /// <summary>The key the turn-on form carries, as the page shows it.</summary>
    public AuthenticatorKey Shown { get; private set; } = new("", "", new(0, ""));

    /// <summary>Set once the factor is on: shown this once.</summary>
    public IReadOnlyList<string>? RecoveryCodes { get; private set; }

    /// <summary>Unused recovery codes, while it is on: the page says when few are left, and how to get new ones.</summary>
    public int RecoveryCodesLeft { get; private set; }

    public IReadOnlyList<ConnectedApp> Apps { get; private set; } = [];

    /// <summary>The application whose access was just ended.</summary>
    public string? Revoked { get; private set; }

    /// <summary>Set once the factor is off.</summary>
    public bool TurnedOff { get; private set; }

    /// <param name="ended">The client id whose access the revoke form just ended (the form redirects here, so that a key
    /// being added in this page is not replaced by a new one).</param>
    public async Task<IActionResult> OnGetAsync(string? ended)
    {
        if (await users.GetUserAsync(User) is not { } user)
        {
            return Challenge();
        }

        if (ended is { Length: > 0 and <= 100 } && await applications.FindByClientIdAsync(ended, HttpContext.RequestAborted) is { } application)
        {
            Revoked = await applications.GetDisplayNameAsync(application, HttpContext.RequestAborted) ?? ended;
        }

        await ShowAsync(user);
        return Page();
    }

    /// <summary>Turns it on (the form's default handler).</summary>
    public async Task<IActionResult> OnPostAsync()
    {
        if (await users.GetUserAsync(User) is not { } user)
        {
            return Challenge();
        }

        if (await users.GetTwoFactorEnabledAsync(user))
        {
            // Turned on meanwhile in another tab: this form's key is not the account's.
            return RedirectToPage();
        }

        if (twoFactor.OpenEnrolment(user, Sealed) is not { } key)
        {
            ModelState.AddModelError(nameof(Code), text["Enroll.Expired"]);
            ModelState.SetModelValue(nameof(Code), "", "");
            await ShowAsync(user);
            return Page();
        }

        if (!ModelState.IsValid)
        {
            await ShowAsync(user, (key, Sealed!));
            return Page();
        }

        await using var transaction = await db.Database.BeginTransactionAsync(HttpContext.RequestAborted);
        await InTurnAsync(user);
        if (await users.GetTwoFactorEnabledAsync(user) || twoFactor.OpenEnrolment(user, Sealed) is null)
        {
            // Another request turned it on, or the password changed, while this one waited its turn.
            return RedirectToPage();
        }

        var roles = await users.GetRolesAsync(user);
        var (passes, source, _) = await PasswordPassesAsync(user, roles, AuditActions.TwoFactorEnabled);
        if (!passes)
        {
            await transaction.CommitAsync(HttpContext.RequestAborted);
            await ShowAsync(user, (key, Sealed!));
            return Page();
        }

        if (await twoFactor.EnrollAsync(user, key, Code) is not { } codes)
        {
            await transaction.RollbackAsync(HttpContext.RequestAborted);
            Forget();
            ModelState.AddModelError(nameof(Code), text["TwoFactor.Failed"]);
            await ShowAsync(user, (key, Sealed!));
            return Page();
        }

        await audit.RecordAccountAsync(AuditActions.TwoFactorEnabled, user, roles, succeeded: true, HttpContext.RequestAborted);
        await SignInThrottle.ForgetCodesAsync(db, user.Id, HttpContext.RequestAborted);
        // The source the password was counted against (read before the new stamp, which this browser's device cookie does
        // not carry yet).
        await throttle.SucceededAsync(user.Id, source, HttpContext.RequestAborted);
        // The new stamp ends every session of the account; this one is issued again, as a sign-in with both factors, and
        // the browser is remembered as the holder's, as after any sign-in.
        await twoFactor.CompleteAsync(HttpContext, user);
        throttle.RememberDevice(HttpContext, user, environment);
        await transaction.CommitAsync(HttpContext.RequestAborted);
        Tell(user, "TwoStep.OnMailSubject", "TwoStep.OnMailBody");
        On = true;
        RecoveryCodes = codes;
        return Page();
    }

    public async Task<IActionResult> OnPostOffAsync()
    {
        if (await users.GetUserAsync(User) is not { } user)
        {
            return Challenge();
        }

        var roles = await users.GetRolesAsync(user);
        if (!await users.GetTwoFactorEnabledAsync(user) || (twoFactor.Required && SecondFactor.IsStaff(roles)))
        {
            return RedirectToPage();
        }

        // Only the password and the code are sent: the key form's fields are not this form's.
        ModelState.Remove(nameof(Sealed));
        if (!ModelState.IsValid)
        {
            await ShowAsync(user);
            return Page();
        }

        await using var transaction = await db.Database.BeginTransactionAsync(HttpContext.RequestAborted);
        await InTurnAsync(user);
        if (!await users.GetTwoFactorEnabledAsync(user))
        {
            return RedirectToPage();
        }

        var (passes, source, known) = await PasswordPassesAsync(user, roles, AuditActions.TwoFactorDisabled);
        if (!passes)
        {
            await transaction.CommitAsync(HttpContext.RequestAborted);
            await ShowAsync(user);
            return Page();
        }

        var (passed, factor) = await throttle.CheckCodeAsync(twoFactor, user, Code, source, known, HttpContext.RequestAborted);
        if (!passed)
        {
            await audit.RecordAccountAsync(AuditActions.TwoFactorDisabled, user, roles, succeeded: false, HttpContext.RequestAborted, factor);
            await transaction.CommitAsync(HttpContext.RequestAborted);
            Forget();
            ModelState.AddModelError(nameof(Code), text["TwoFactor.Failed"]);
            await ShowAsync(user);
            return Page();
        }

        await twoFactor.ResetAsync(user);
        await SignInThrottle.ForgetCodesAsync(db, user.Id, HttpContext.RequestAborted);
        await audit.RecordAccountAsync(AuditActions.TwoFactorDisabled, user, roles, succeeded: true, HttpContext.RequestAborted, factor);
        await throttle.SucceededAsync(user.Id, source, HttpContext.RequestAborted);
        // The new stamp ends every other session; this one is issued again, as a sign-in with the password alone.
        await signIn.SignInWithClaimsAsync(user, isPersistent: false, [new System.Security.Claims.Claim(SecondFactor.AmrClaim, "pwd")]);
        throttle.RememberDevice(HttpContext, user, environment);
        await transaction.CommitAsync(HttpContext.RequestAborted);
        Tell(user, "TwoStep.OffMailSubject", "TwoStep.OffMailBody");
        TurnedOff = true;
        return Page();
    }

    /// <summary>Ends one application's access: its authorizations and refresh tokens, at once.</summary>
    public async Task<IActionResult> OnPostRevokeAsync()
    {
        if (await users.GetUserAsync(User) is not { } user)
        {
            return Challenge();
        }

        if ((await ListAppsAsync(user)).FirstOrDefault(a => a.ClientId == ClientId) is not { } revoked
            || await applications.FindByClientIdAsync(revoked.ClientId, HttpContext.RequestAborted) is not { } application
            || await applications.GetIdAsync(application, HttpContext.RequestAborted) is not { } applicationId)
        {
            return RedirectToPage();
        }

        await using var transaction = await db.Database.BeginTransactionAsync(HttpContext.RequestAborted);
        await authorizations.RevokeAsync(user.Id, applicationId, status: null, type: null, HttpContext.RequestAborted);
        await tokens.RevokeAsync(user.Id, applicationId, status: null, type: null, HttpContext.RequestAborted);
        await audit.RecordAccountAsync(AuditActions.AppAccessRevoked, user, await users.GetRolesAsync(user), succeeded: true, HttpContext.RequestAborted,
            details: new Dictionary<string, object?> { ["client"] = revoked.ClientId });
        await transaction.CommitAsync(HttpContext.RequestAborted);
        return RedirectToPage(new { ended = revoked.ClientId });
    }

    /// <summary>
    /// The applications that can still act for the account: a valid authorization with an access or refresh token still
    /// valid and unexpired (an identity token acts for no one). Every sign-in leaves an authorization that stays valid until the pruning job removes it,
    /// two weeks on; one whose tokens are spent or expired can do nothing, and is not listed.
    /// </summary>
    private async Task<IReadOnlyList<ConnectedApp>> ListAppsAsync(GatewayUser user)
    {
        var now = time.GetUtcNow().UtcDateTime;
        var rows = await db.Set<OpenIddictEntityFrameworkCoreAuthorization>().AsNoTracking()
            .Where(a => a.Subject == user.Id && a.Status == OpenIddictConstants.Statuses.Valid && a.Application != null
                && a.Tokens.Any(t => t.Status == OpenIddictConstants.Statuses.Valid && t.ExpirationDate > now
                    && (t.Type == OpenIddictConstants.TokenTypeIdentifiers.RefreshToken || t.Type == OpenIddictConstants.TokenTypeIdentifiers.AccessToken)))
            .Select(a => new { a.Application!.ClientId, a.Application.DisplayName, a.Scopes, a.Status, a.Type, a.CreationDate })
            .ToListAsync(HttpContext.RequestAborted);
        // Read as the export reads them; one row per application, however many sign-ins it made.
        return rows.Select(r => Cvs.AppAuthorization.Of(r.ClientId, r.DisplayName, r.Scopes, r.Status, r.Type, r.CreationDate))
            .Where(a => a.ClientId.Length > 0)
            .GroupBy(a => a.ClientId, StringComparer.Ordinal)
            .Select(g => new ConnectedApp(
                g.Key, g.First().Application, g.SelectMany(a => a.Scopes).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList(),
                g.Min(a => a.CreatedAt)))
            .OrderBy(a => a.Name, StringComparer.CurrentCulture)
            .ToList();
    }

    /// <summary>
    /// The current password, as the sign-in page checks it: a network that spent its wrong passwords on the account gets no
    /// check (and its refusals are not counted again, so one network cannot push the account to its ceiling), a wrong one
    /// is counted. Either is logged as a denied change, and nothing else is looked at. Also returns the source the
    /// attempt counts against, read now, before a new stamp would make this browser's device cookie a stranger's.
    /// </summary>
    private async Task<(bool Passes, string Source, bool KnownDevice)> PasswordPassesAsync(GatewayUser user, IList<string> roles, string action)
    {
        var (source, known) = throttle.SourceOf(HttpContext, user);
        if (await throttle.IsRefusedAsync(user.Id, source, known, HttpContext.RequestAborted))
        {
            // As slow as a check, as the sign-in page is.
            _ = users.PasswordHasher.VerifyHashedPassword(TimingDecoy.User, TimingDecoy.Hash, Password);
        }
        // The hasher, not UserManager.CheckPasswordAsync: that one rehashes an old-format hash and so changes the stamp,
        // which would end this very session on a form that then fails for its code.
        else if (user.PasswordHash is { } hash && users.PasswordHasher.VerifyHashedPassword(user, hash, Password) != PasswordVerificationResult.Failed)
        {
            return (true, source, known);
        }
        else
        {
            await throttle.FailedAsync(user.Id, source, HttpContext.RequestAborted);
        }

        await audit.RecordAccountAsync(action, user, roles, succeeded: false, HttpContext.RequestAborted, factor: "password");
        Forget();
        ModelState.AddModelError(nameof(Password), text["TwoStep.WrongPassword"]);
        return (false, source, known);
    }

    /// <summary>Fresh fields for the next try: neither the password nor the code is sent back in the page.</summary>
    private void Forget()
    {
        ModelState.SetModelValue(nameof(Password), "", "");
        ModelState.SetModelValue(nameof(Code), "", "");
    }

    /// <summary>The account's sign-in turn (the lock the password and code pages take), and the account read again under it.</summary>
    private Task InTurnAsync(GatewayUser user) => Locks.AccountInTurnAsync(db, user, HttpContext.RequestAborted);

    private async Task ShowAsync(GatewayUser user, (string Key, string Sealed)? enrolment = null)
    {
        Apps = await ListAppsAsync(user);
        On = await users.GetTwoFactorEnabledAsync(user);
        Required = twoFactor.Required && SecondFactor.IsStaff(await users.GetRolesAsync(user));
        if (On)
        {
            RecoveryCodesLeft = await twoFactor.RecoveryCodesLeftAsync(user);
            return;
        }

        var (key, sealedKey) = enrolment ?? twoFactor.NewEnrolment(user);
        // The form carries this key, not the one posted.
        ModelState.Remove(nameof(Sealed));
        Shown = AuthenticatorKey.Of(user.Email ?? user.Id, key);
        Sealed = sealedKey;
    }

    /// <summary>The holder hears of each change, in case it was not them.</summary>
    private void Tell(GatewayUser user, string subject, string body)
    {
        var address = user.Email!;
        mail.Enqueue(address, capped: false, prepare: (services, _) =>
        {
            var texts = services.GetRequiredService<IStringLocalizer<PageText>>();
            return Task.FromResult<Hosting.Notice?>(new Hosting.Notice(address, texts[subject], texts[body]));
        });
    }
}
