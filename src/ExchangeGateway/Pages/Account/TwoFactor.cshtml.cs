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
/// The second step of a staff sign-in: a code from the authenticator, or a recovery code. Wrong codes are counted with
/// wrong passwords (<see cref="SignInThrottle"/>, per account and network), so a known password buys no more guesses.
/// </summary>
public sealed class TwoFactorModel(
    StaffTwoFactor twoFactor, UserManager<GatewayUser> users, SignInThrottle throttle, AuditTrail audit, GatewayDbContext db,
    IStringLocalizer<PageText> text, IWebHostEnvironment environment) : PageModel
{
    [BindProperty, Required(ErrorMessage = "Error.Required"), StringLength(64, ErrorMessage = "Error.TooLong")] public string Code { get; set; } = "";
    [BindProperty(SupportsGet = true)] public string? ReturnUrl { get; set; }

    public async Task<IActionResult> OnGetAsync() =>
        await twoFactor.PendingAsync() is null ? SignInAgain() : Page();

    public async Task<IActionResult> OnPostAsync()
    {
        var user = await twoFactor.PendingAsync();
        if (user is null)
        {
            return SignInAgain();
        }

        if (!ModelState.IsValid)
        {
            return Page();
        }

        await using var transaction = await db.Database.BeginTransactionAsync(HttpContext.RequestAborted);
        // The same turns as the password's (one address at a time): two requests with one code cannot both be first.
        await Locks.SignInAsync(db, user.NormalizedEmail ?? user.Id, HttpContext.RequestAborted);
        var device = Request.Cookies[SignInThrottle.DeviceCookie];
        var known = throttle.IsKnownDevice(device, user);
        var source = known ? throttle.SourceOfDevice(device!) : throttle.SourceOf(HttpContext.Connection.RemoteIpAddress);
        var passed = !await throttle.IsRefusedAsync(user.Id, source, known, HttpContext.RequestAborted) && await twoFactor.VerifyAsync(user, Code);
        if (passed)
        {
            await twoFactor.CompleteAsync(HttpContext, user);
            await throttle.SucceededAsync(user.Id, source, HttpContext.RequestAborted);
            throttle.RememberDevice(HttpContext, user, environment);
        }
        else
        {
            await throttle.FailedAsync(user.Id, source, HttpContext.RequestAborted);
        }

        await audit.RecordSignInAsync(user, await users.GetRolesAsync(user), passed, HttpContext.RequestAborted);
        await transaction.CommitAsync(HttpContext.RequestAborted);
        if (!passed)
        {
            ModelState.AddModelError(nameof(Code), text["TwoFactor.Failed"]);
            Code = "";
            return Page();
        }

        return LocalRedirect(Url.IsLocalUrl(ReturnUrl) ? ReturnUrl : "/");
    }

    /// <summary>The password step lapsed (or never happened in this browser): back to it, keeping where the sign-in was going.</summary>
    private RedirectToPageResult SignInAgain() => RedirectToPage("/Account/Login", new { ReturnUrl = Url.IsLocalUrl(ReturnUrl) ? ReturnUrl : null });
}
