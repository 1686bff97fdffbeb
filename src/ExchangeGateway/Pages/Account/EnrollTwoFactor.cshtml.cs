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
/// A staff member's sign-in where the second factor is required and the account has none: the page shows a new key (and
/// its otpauth URI, as text and as a QR code) and turns the factor on once a code made from it is right, handing out the recovery codes once. The
/// key lives only in the form (sealed, bound to the account, fifteen minutes) until then. Only for an account without a
/// second factor: one that has it signs in with a code, and only an operator's <c>staff reset-two-factor</c> takes it away
/// (or, where it is not required, the holder, from Account/TwoStep).
/// </summary>
public sealed class EnrollTwoFactorModel(
    SecondFactor twoFactor, UserManager<GatewayUser> users, SignInThrottle throttle, AuditTrail audit, GatewayDbContext db,
    IStringLocalizer<PageText> text, IWebHostEnvironment environment, Hosting.AccountMail mail) : PageModel
{
    [BindProperty, Required(ErrorMessage = "Error.Required"), StringLength(16, ErrorMessage = "Error.TooLong")] public string Code { get; set; } = "";
    [BindProperty] public string? Sealed { get; set; }
    [BindProperty(SupportsGet = true)] public string? ReturnUrl { get; set; }

    /// <summary>The key the form carries, as the page shows it.</summary>
    public AuthenticatorKey Shown { get; private set; } = new("", "", new(0, ""));

    /// <summary>Set once the factor is on: shown this once.</summary>
    public IReadOnlyList<string>? RecoveryCodes { get; private set; }

    public string Continue => Url.IsLocalUrl(ReturnUrl) ? ReturnUrl : "/";

    public async Task<IActionResult> OnGetAsync()
    {
        var user = await twoFactor.PendingAsync(HttpContext);
        if (await NotEnrollingAsync(user) is { } elsewhere)
        {
            return elsewhere;
        }

        Show(user!, twoFactor.NewEnrolment(user!));
        return Page();
    }

    public async Task<IActionResult> OnPostAsync()
    {
        var user = await twoFactor.PendingAsync(HttpContext);
        if (await NotEnrollingAsync(user) is { } elsewhere)
        {
            return elsewhere;
        }

        // The guard sent a browser without a pending password elsewhere.
        System.Diagnostics.Debug.Assert(user is not null);

        // The form's key, if it is still this account's and fresh; else a new one, and the code asked for again.
        if (twoFactor.OpenEnrolment(user, Sealed) is not { } key)
        {
            ModelState.AddModelError(nameof(Code), text["Enroll.Expired"]);
            ModelState.SetModelValue(nameof(Code), "", "");
            Show(user, twoFactor.NewEnrolment(user));
            return Page();
        }

        if (!ModelState.IsValid)
        {
            Show(user, (key, Sealed!));
            return Page();
        }

        await using var transaction = await db.Database.BeginTransactionAsync(HttpContext.RequestAborted);
        if (!await twoFactor.StillPendingInTurnAsync(HttpContext, db, user) || twoFactor.OpenEnrolment(user, Sealed) is null)
        {
            // A new password or a reset landed while this request waited its turn: this form is not the account's any more.
            return RedirectToPage("/Account/Login", new { ReturnUrl = Url.IsLocalUrl(ReturnUrl) ? ReturnUrl : null });
        }

        if (await users.GetTwoFactorEnabledAsync(user))
        {
            // Enrolled meanwhile in another tab or by another request: this form's key is not the account's.
            return RedirectToPage("/Account/TwoFactor", new { ReturnUrl = Url.IsLocalUrl(ReturnUrl) ? ReturnUrl : null });
        }

        // Before the factor goes on: turning it on gives the account a new stamp, which this browser's device cookie does
        // not carry, and the source read after it would be the network's instead of the device's that was counted.
        var (source, _) = throttle.SourceOf(HttpContext, user);
        var codes = await twoFactor.EnrollAsync(user, key, Code);
        if (codes is null)
        {
            await transaction.RollbackAsync(HttpContext.RequestAborted);
            ModelState.AddModelError(nameof(Code), text["TwoFactor.Failed"]);
            ModelState.SetModelValue(nameof(Code), "", "");
            Show(user, (key, Sealed!));
            return Page();
        }

        var roles = await users.GetRolesAsync(user);
        await audit.RecordAccountAsync(AuditActions.TwoFactorEnabled, user, roles, succeeded: true, HttpContext.RequestAborted);
        await twoFactor.CompleteAsync(HttpContext, user);
        await throttle.SucceededAsync(user.Id, source, HttpContext.RequestAborted);
        await SignInThrottle.ForgetCodesAsync(db, user.Id, HttpContext.RequestAborted);
        throttle.RememberDevice(HttpContext, user, environment);
        await audit.RecordSignInAsync(user, roles, succeeded: true, HttpContext.RequestAborted, factor: "code");
        await transaction.CommitAsync(HttpContext.RequestAborted);
        // Enrolling takes only the password: the holder hears of it, in case it was not them.
        var address = user.Email!;
        mail.Enqueue(address, capped: false, prepare: (services, _) =>
        {
            var texts = services.GetRequiredService<IStringLocalizer<PageText>>();
            return Task.FromResult<Hosting.Notice?>(new Hosting.Notice(address, texts["Enroll.MailSubject"], texts["Enroll.MailBody"]));
        });
        RecoveryCodes = codes;
        return Page();
    }

    private void Show(GatewayUser user, (string Key, string Sealed) enrolment)
    {
        // The form carries this key, not the one posted.
        ModelState.Remove(nameof(Sealed));
        Shown = AuthenticatorKey.Of(user.Email ?? user.Id, enrolment.Key);
        Sealed = enrolment.Sealed;
    }

    /// <summary>No password given in this browser lately: sign in. A factor already on: the code, not a new key.</summary>
    private async Task<IActionResult?> NotEnrollingAsync(GatewayUser? user)
    {
        var returnUrl = Url.IsLocalUrl(ReturnUrl) ? ReturnUrl : null;
        return user is null ? RedirectToPage("/Account/Login", new { ReturnUrl = returnUrl })
            : await users.GetTwoFactorEnabledAsync(user) ? RedirectToPage("/Account/TwoFactor", new { ReturnUrl = returnUrl })
            : null;
    }
}
