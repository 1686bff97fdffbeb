using System.ComponentModel.DataAnnotations;
using ExchangeGateway.Audit;
using ExchangeGateway.Auth;
using ExchangeGateway.Data;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Localization;

namespace ExchangeGateway.Pages.Account;

/// <summary>
/// The second step of a sign-in with the second factor on (staff; a job seeker who turned it on): a code from the
/// authenticator, or a recovery code. Wrong codes are counted with
/// wrong passwords (<see cref="SignInThrottle"/>, per account and network) and in the account's day of wrong codes, so a
/// known password buys no more guesses.
/// </summary>
public sealed class TwoFactorModel(
    SecondFactor twoFactor, UserManager<GatewayUser> users, SignInThrottle throttle, AuditTrail audit, GatewayDbContext db,
    IStringLocalizer<PageText> text, IWebHostEnvironment environment) : PageModel
{
    [BindProperty, Required(ErrorMessage = "Error.Required"), StringLength(64, ErrorMessage = "Error.TooLong")] public string Code { get; set; } = "";
    [BindProperty(SupportsGet = true)] public string? ReturnUrl { get; set; }

    public async Task<IActionResult> OnGetAsync() => await NotAskingAsync(await twoFactor.PendingAsync(HttpContext)) ?? Page();

    public async Task<IActionResult> OnPostAsync()
    {
        var user = await twoFactor.PendingAsync(HttpContext);
        if (await NotAskingAsync(user) is { } elsewhere)
        {
            return elsewhere;
        }

        // The guard sent a browser without a pending password elsewhere.
        System.Diagnostics.Debug.Assert(user is not null);

        if (!ModelState.IsValid)
        {
            return Page();
        }

        await using var transaction = await db.Database.BeginTransactionAsync(HttpContext.RequestAborted);
        if (!await twoFactor.StillPendingInTurnAsync(HttpContext, db, user))
        {
            return await NotAskingAsync(null) ?? Page();
        }

        var (source, known) = throttle.SourceOf(HttpContext, user);
        var (passed, factor) = await throttle.CheckCodeAsync(twoFactor, user, Code, source, known, HttpContext.RequestAborted);
        if (passed)
        {
            await twoFactor.CompleteAsync(HttpContext, user);
            await throttle.SucceededAsync(user.Id, source, HttpContext.RequestAborted);
            throttle.RememberDevice(HttpContext, user, environment);
        }

        await audit.RecordSignInAsync(user, await users.GetRolesAsync(user), passed, HttpContext.RequestAborted, factor);
        await transaction.CommitAsync(HttpContext.RequestAborted);
        if (!passed)
        {
            // A fresh field for the next try: the wrong code is not shown again.
            ModelState.SetModelValue(nameof(Code), "", "");
            ModelState.AddModelError(nameof(Code), text["TwoFactor.Failed"]);
            return Page();
        }

        return LocalRedirect(Url.IsLocalUrl(ReturnUrl) ? ReturnUrl : "/");
    }

    /// <summary>
    /// Where to go instead of asking for a code: back to the password when none was given here lately (or the account
    /// changed since), to the enrolment when the account has no second factor (yet, or any more).
    /// </summary>
    private async Task<IActionResult?> NotAskingAsync(GatewayUser? user)
    {
        var returnUrl = Url.IsLocalUrl(ReturnUrl) ? ReturnUrl : null;
        return user is null ? RedirectToPage("/Account/Login", new { ReturnUrl = returnUrl })
            : !await users.GetTwoFactorEnabledAsync(user) ? RedirectToPage("/Account/EnrollTwoFactor", new { ReturnUrl = returnUrl })
            : null;
    }
}
