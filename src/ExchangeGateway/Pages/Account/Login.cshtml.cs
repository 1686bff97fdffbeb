using System.ComponentModel.DataAnnotations;
using ExchangeGateway.Audit;
using ExchangeGateway.Auth;
using ExchangeGateway.Data;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Microsoft.Extensions.Localization;
using OpenIddict.Abstractions;

namespace ExchangeGateway.Pages.Account;

/// <summary>The one sign-in page, used by the web pages and by /connect/authorize.</summary>
public sealed class LoginModel(
    SignInManager<GatewayUser> signIn, UserManager<GatewayUser> users, SignInThrottle throttle, AuditTrail audit, Data.GatewayDbContext db,
    SecondFactor twoFactor, IStringLocalizer<PageText> text, IOpenIddictApplicationManager applications, IWebHostEnvironment environment) : PageModel
{
    [BindProperty, Required(ErrorMessage = "Error.Required"), StringLength(254, ErrorMessage = "Error.TooLong")] public string Email { get; set; } = "";
    [BindProperty, Required(ErrorMessage = "Error.Required"), StringLength(200, ErrorMessage = "Error.TooLong")] public string Password { get; set; } = "";
    [BindProperty(SupportsGet = true)] public string? ReturnUrl { get; set; }

    public Task OnGet() => AllowAuthorizationTargetAsync();

    public async Task<IActionResult> OnPostAsync()
    {
        if (!ModelState.IsValid)
        {
            return await PageAgainAsync();
        }

        // One transaction for the attempt: a wrong password's count and the audit event commit together, so a known account
        // costs the same one commit as an unknown address (a commit is what a stopwatch would see).
        await using var transaction = await db.Database.BeginTransactionAsync(HttpContext.RequestAborted);
        // Attempts on one address take turns: run side by side, each would read the same count of failures, and fifty
        // parallel guesses would all be checked against a count of four. A lock on the address, not the account's row:
        // every address takes turns alike, so waiting tells no one it exists.
        Email = Email.Trim();
        await Locks.SignInAsync(db, users.NormalizeEmail(Email), HttpContext.RequestAborted);
        var user = await users.FindByEmailAsync(Email);
        var (source, known) = throttle.SourceOf(HttpContext, user);
        // A network that has spent its wrong passwords on this account, or a browser new to an account that has met its
        // ceiling, gets no password check: not even the right password gets in from there until the window ends, while
        // the holder signing in from elsewhere, or from a browser that signed in before, does. The count is read for an
        // unknown address too (of no account), so that both cost the same queries.
        var refused = await throttle.IsRefusedAsync(user?.Id ?? "", source, known, HttpContext.RequestAborted) && user is not null;
        // The password only: what follows it (a session, or a second factor first) is decided below.
        var result = user is null || refused
            ? Microsoft.AspNetCore.Identity.SignInResult.Failed
            : await signIn.CheckPasswordSignInAsync(user, Password, lockoutOnFailure: false);
        var roles = user is null ? [] : await users.GetRolesAsync(user);
        var next = AfterPassword.SignedIn;
        if (user is null || refused || result.IsNotAllowed || result.IsLockedOut)
        {
            // Identity checked no password on these paths; hash one anyway, so that only the answer's words (the same for
            // all) could tell an account from none, not its time.
            _ = users.PasswordHasher.VerifyHashedPassword(TimingDecoy.User, TimingDecoy.Hash, Password);
        }
        else if (!result.Succeeded)
        {
            await throttle.FailedAsync(user.Id, source, HttpContext.RequestAborted);
        }
        else if ((next = await twoFactor.NextStepAsync(user, roles)) == AfterPassword.SignedIn)
        {
            await signIn.SignInWithClaimsAsync(user, isPersistent: false, [new System.Security.Claims.Claim(SecondFactor.AmrClaim, "pwd")]);
            await throttle.SucceededAsync(user.Id, source, HttpContext.RequestAborted);
            throttle.RememberDevice(HttpContext, user, environment);
        }
        else
        {
            // The count of failures stands until the code is right too: a right password must not buy more guesses at it.
            await twoFactor.BeginAsync(HttpContext, user);
        }

        // A right password before a second factor is not a sign-in yet (the code's page records that), but an auditor must
        // see a password known to someone whose codes then fail.
        if (!result.Succeeded || next == AfterPassword.SignedIn)
        {
            await audit.RecordSignInAsync(user, roles, result.Succeeded, HttpContext.RequestAborted, factor: "password");
        }
        else
        {
            await audit.RecordAccountAsync(AuditActions.PasswordAccepted, user, roles, succeeded: true, HttpContext.RequestAborted, factor: "password");
        }

        await transaction.CommitAsync(HttpContext.RequestAborted);
        if (!result.Succeeded)
        {
            // One message for unknown account, wrong password, a refused network, lockout and a sign-up not finished (no
            // password yet): the page must not reveal who has an account.
            ModelState.AddModelError(nameof(Email), text["Login.Failed"]);
            return await PageAgainAsync();
        }

        var returnUrl = Url.IsLocalUrl(ReturnUrl) ? ReturnUrl : "/";
        return SecondFactor.PageAfter(next) is { } secondStep ? RedirectToPage(secondStep, new { ReturnUrl = returnUrl }) : LocalRedirect(returnUrl);
    }

    /// <summary>The form again: its policy is looked up only when there is a page to send, not for a sign-in that redirects.</summary>
    private async Task<IActionResult> PageAgainAsync()
    {
        await AllowAuthorizationTargetAsync();
        return Page();
    }

    /// <summary>
    /// Signing in on the way through /connect/authorize can end at the application's registered redirect URI (a code, or
    /// access_denied for someone who may not share), and browsers hold the redirects after a form post to form-action: the
    /// page names that origin, once the client has registered the address, as the consent page does.
    /// </summary>
    private async Task AllowAuthorizationTargetAsync()
    {
        if (string.IsNullOrEmpty(ReturnUrl) || !Url.IsLocalUrl(ReturnUrl) || !ReturnUrl.StartsWith("/connect/authorize?", StringComparison.Ordinal))
        {
            return;
        }

        var query = Microsoft.AspNetCore.WebUtilities.QueryHelpers.ParseQuery(ReturnUrl[ReturnUrl.IndexOf('?', StringComparison.Ordinal)..]);
        // ParseQuery's dictionary throws on a missing key: a ReturnUrl without one of them is still a sign-in page.
        var clientId = query.GetValueOrDefault(OpenIddictConstants.Parameters.ClientId).ToString();
        var redirectUri = query.GetValueOrDefault(OpenIddictConstants.Parameters.RedirectUri).ToString();
        // A NUL would reach PostgreSQL, which stores none; no registered client has one, or is that long.
        var application = clientId is { Length: > 0 and <= 100 } && !clientId.Contains('\0', StringComparison.Ordinal)
            ? await applications.FindByClientIdAsync(clientId, HttpContext.RequestAborted)
            : null;
        if (application is not null && Uri.TryCreate(redirectUri, UriKind.Absolute, out var target)
            && await applications.ValidateRedirectUriAsync(application, redirectUri, HttpContext.RequestAborted))
        {
            PageSecurityHeaders.Apply(HttpContext, target);
        }
    }
}

/// <summary>A password hash made once per process, verified where no account's hash is, to keep answers equally slow.</summary>
internal static class TimingDecoy
{
    public static GatewayUser User { get; } = new() { UserName = "timing-decoy" };

    public static string Hash { get; } = new PasswordHasher<GatewayUser>().HashPassword(User, Convert.ToBase64String(System.Security.Cryptography.RandomNumberGenerator.GetBytes(24)));
}
