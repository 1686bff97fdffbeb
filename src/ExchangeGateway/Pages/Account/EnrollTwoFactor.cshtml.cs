using System.ComponentModel.DataAnnotations;
using ExchangeGateway.Audit;
using ExchangeGateway.Auth;
using ExchangeGateway.Data;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Microsoft.Extensions.Localization;

namespace ExchangeGateway.Pages.Account;

/// <summary>
/// A staff member's first sign-in where the second factor is required: the page shows the account's authenticator key
/// (and its otpauth URI), and turns the factor on once a code made from it is right, handing out the recovery codes once.
/// Only for an account without a second factor yet: one that has it signs in with a code, and only an operator's
/// <c>staff reset-two-factor</c> takes it away (a password alone must never be enough to put in another authenticator).
/// </summary>
public sealed class EnrollTwoFactorModel(
    StaffTwoFactor twoFactor, UserManager<GatewayUser> users, AuditTrail audit, GatewayDbContext db, IStringLocalizer<PageText> text) : PageModel
{
    public const string Issuer = "ExchangeGateway";

    [BindProperty, Required(ErrorMessage = "Error.Required"), StringLength(16, ErrorMessage = "Error.TooLong")] public string Code { get; set; } = "";
    [BindProperty(SupportsGet = true)] public string? ReturnUrl { get; set; }

    /// <summary>The key in groups of four, as people type it into an app.</summary>
    public string Key { get; private set; } = "";

    public string AuthenticatorUri { get; private set; } = "";

    /// <summary>Set once the factor is on: shown this once.</summary>
    public IReadOnlyList<string>? RecoveryCodes { get; private set; }

    public string Continue => Url.IsLocalUrl(ReturnUrl) ? ReturnUrl : "/";

    public async Task<IActionResult> OnGetAsync()
    {
        var user = await twoFactor.PendingAsync();
        if (user is null || await users.GetTwoFactorEnabledAsync(user))
        {
            return NotEnrolling(user);
        }

        await ShowKeyAsync(user);
        return Page();
    }

    public async Task<IActionResult> OnPostAsync()
    {
        var user = await twoFactor.PendingAsync();
        if (user is null || await users.GetTwoFactorEnabledAsync(user))
        {
            return NotEnrolling(user);
        }

        if (!ModelState.IsValid)
        {
            await ShowKeyAsync(user);
            return Page();
        }

        await using var transaction = await db.Database.BeginTransactionAsync(HttpContext.RequestAborted);
        await Locks.SignInAsync(db, user.NormalizedEmail ?? user.Id, HttpContext.RequestAborted);
        var codes = await twoFactor.EnrollAsync(user, Code);
        if (codes is null)
        {
            await transaction.RollbackAsync(HttpContext.RequestAborted);
            ModelState.AddModelError(nameof(Code), text["TwoFactor.Failed"]);
            Code = "";
            await ShowKeyAsync(user);
            return Page();
        }

        var roles = await users.GetRolesAsync(user);
        await audit.RecordAccountAsync(AuditActions.TwoFactorEnabled, user, roles, succeeded: true, HttpContext.RequestAborted);
        await twoFactor.CompleteAsync(HttpContext, user);
        await audit.RecordSignInAsync(user, roles, succeeded: true, HttpContext.RequestAborted);
        await transaction.CommitAsync(HttpContext.RequestAborted);
        RecoveryCodes = codes;
        return Page();
    }

    private async Task ShowKeyAsync(GatewayUser user)
    {
        var key = await twoFactor.KeyAsync(user);
        Key = string.Join(' ', key.Chunk(4).Select(c => new string(c))).ToLowerInvariant();
        AuthenticatorUri = StaffTwoFactor.AuthenticatorUri(Issuer, user.Email ?? user.Id, key);
    }

    /// <summary>No password given in this browser lately: sign in. A factor already on: the code, not a new key.</summary>
    private RedirectToPageResult NotEnrolling(GatewayUser? user) =>
        RedirectToPage(user is null ? "/Account/Login" : "/Account/TwoFactor", new { ReturnUrl = Url.IsLocalUrl(ReturnUrl) ? ReturnUrl : null });
}
