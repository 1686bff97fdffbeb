using System.ComponentModel.DataAnnotations;
using ExchangeGateway.Audit;
using ExchangeGateway.Auth;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Microsoft.Extensions.Localization;
using OpenIddict.Abstractions;

namespace ExchangeGateway.Pages.Account;

/// <summary>The page the reset link opens: a new password, checked against Identity's one-time token.</summary>
public sealed class ResetPasswordModel(
    UserManager<GatewayUser> users, SignInManager<GatewayUser> signIn, IOpenIddictTokenManager tokens, AuditTrail audit, Data.GatewayDbContext db,
    IStringLocalizer<PageText> text, SignInThrottle throttle, SecondFactor twoFactor, IWebHostEnvironment environment)
    : PageModel
{
    [BindProperty(SupportsGet = true, Name = "user")] public string? UserId { get; set; }
    [BindProperty(SupportsGet = true)] public string? Code { get; set; }

    [BindProperty, Required(ErrorMessage = "Error.Required"), StringLength(200, ErrorMessage = "Error.TooLong")]
    public string Password { get; set; } = "";

    [BindProperty, Required(ErrorMessage = "Error.Required"), Compare(nameof(Password), ErrorMessage = "Error.PasswordsDiffer")]
    public string ConfirmPassword { get; set; } = "";

    public bool Done { get; private set; }

    /// <summary>
    /// The account the link is for, shown once the link is known good: whoever opens a link sent for someone else's account
    /// (to have them sign in to it unawares) sees whose it is before choosing a password.
    /// </summary>
    public string? AccountEmail { get; private set; }

    public bool SignedIn { get; private set; }

    /// <summary>The link is bad, spent or expired: said when the page opens, with no form to fill in for nothing.</summary>
    public bool LinkInvalid { get; private set; }

    public async Task OnGetAsync()
    {
        var user = string.IsNullOrEmpty(UserId) ? null : await users.FindByIdAsync(UserId);
        if (user is not null && AccountLinks.Decode(Code) is { } token
            && await users.VerifyUserTokenAsync(user, users.Options.Tokens.PasswordResetTokenProvider, UserManager<GatewayUser>.ResetPasswordTokenPurpose, token))
        {
            AccountEmail = user.Email;
        }
        else
        {
            RefuseLink();
        }
    }

    private void RefuseLink()
    {
        LinkInvalid = true;
        ModelState.Clear();
        ModelState.AddModelError("", text["Reset.InvalidLink"]);
    }

    public async Task<IActionResult> OnPostAsync()
    {
        // The link first, whatever else was typed: without a valid one, the page says nothing about the account.
        var user = string.IsNullOrEmpty(UserId) ? null : await users.FindByIdAsync(UserId);
        var token = AccountLinks.Decode(Code);
        if (user is null || token is null)
        {
            RefuseLink();
            return Page();
        }

        if (!await users.VerifyUserTokenAsync(user, users.Options.Tokens.PasswordResetTokenProvider, UserManager<GatewayUser>.ResetPasswordTokenPurpose, token))
        {
            // A link refused is an event on the account; a password too weak is only the holder's typing.
            await audit.RecordAccountAsync(AuditActions.PasswordReset, user, await users.GetRolesAsync(user), succeeded: false, HttpContext.RequestAborted);
            RefuseLink();
            return Page();
        }

        AccountEmail = user.Email;
        if (!ModelState.IsValid)
        {
            return Page();
        }

        var reset = await users.ResetPasswordAsync(user, token, Password);
        if (!reset.Succeeded)
        {
            if (reset.Errors.Any(e => e.Code == nameof(IdentityErrorDescriber.InvalidToken)))
            {
                // Spent between the check and now (the same link used twice at once).
                await audit.RecordAccountAsync(AuditActions.PasswordReset, user, await users.GetRolesAsync(user), succeeded: false, HttpContext.RequestAborted);
                RefuseLink();
                return Page();
            }

            foreach (var error in reset.Errors)
            {
                ModelState.AddModelError(nameof(Password), error.Description);
            }

            return Page();
        }

        await audit.RecordAccountAsync(AuditActions.PasswordReset, user, await users.GetRolesAsync(user), succeeded: true, HttpContext.RequestAborted);

        // A new password ends the account's sessions elsewhere: its refresh tokens and codes are revoked (access tokens lapse
        // within minutes), so whoever knew the old password, or opened the account with this address, is out.
        // Not cancelled with the request: the password has changed, the revocation must follow (the stamp check at the token
        // endpoint refuses the old tokens even if it does not).
        await tokens.RevokeBySubjectAsync(user.Id, CancellationToken.None);

        // A reset also ends a lockout that the forgotten password may have caused, and every network's count of failures.
        await users.SetLockoutEndDateAsync(user, null);
        await users.ResetAccessFailedCountAsync(user);
        await SignInThrottle.ForgetAsync(db, user.Id, HttpContext.RequestAborted);
        if (!user.EmailConfirmed)
        {
            // The link came through the address, which proves it as well as the sign-up link would (a sign-up whose link
            // was lost is finished this way).
            user.EmailConfirmed = true;
            var confirmed = await users.UpdateAsync(user);
            await audit.RecordAccountAsync(AuditActions.AccountConfirmed, user, await users.GetRolesAsync(user), confirmed.Succeeded, HttpContext.RequestAborted);
        }

        // A seeker is signed in by the link itself, which proves the mailbox: someone who keeps the account locked with wrong
        // passwords (anyone who knows the address can) must not also keep its holder from their pages, and from unticking.
        // Staff sign in through their applications, with their second factor where it applies (a seeker's account that is
        // also staff's too): the link is one factor's worth.
        var roles = await users.GetRolesAsync(user);
        if (roles.Contains(Roles.Seeker) && await twoFactor.NextStepAsync(user, roles) == AfterPassword.SignedIn)
        {
            await signIn.SignInAsync(user, isPersistent: false);
            await audit.RecordSignInAsync(user, roles, succeeded: true, HttpContext.RequestAborted);
            throttle.RememberDevice(HttpContext, user, environment);
            SignedIn = true;
        }

        Done = true;
        return Page();
    }
}
