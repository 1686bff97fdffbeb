using System.ComponentModel.DataAnnotations;
using ExchangeGateway.Audit;
using ExchangeGateway.Auth;
using ExchangeGateway.Hosting;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Microsoft.Extensions.Localization;
using Microsoft.Extensions.Options;

namespace ExchangeGateway.Pages.Account;

/// <summary>The one sign-in page, used by the web pages and by /connect/authorize.</summary>
public sealed class LoginModel(
    SignInManager<GatewayUser> signIn, UserManager<GatewayUser> users, AuditTrail audit, INotifier notifier, IOptions<AuthOptions> auth,
    IStringLocalizer<PageText> text) : PageModel
{
    [BindProperty, Required(ErrorMessage = "Error.Required")] public string Email { get; set; } = "";
    [BindProperty, Required(ErrorMessage = "Error.Required")] public string Password { get; set; } = "";
    [BindProperty(SupportsGet = true)] public string? ReturnUrl { get; set; }

    public void OnGet()
    {
    }

    public async Task<IActionResult> OnPostAsync()
    {
        if (!ModelState.IsValid)
        {
            return Page();
        }

        var user = await users.FindByEmailAsync(Email);
        var result = user is null
            ? Microsoft.AspNetCore.Identity.SignInResult.Failed
            : await signIn.PasswordSignInAsync(user, Password, isPersistent: false, lockoutOnFailure: true);

        await audit.RecordSignInAsync(user, user is null ? [] : await users.GetRolesAsync(user), result.Succeeded, HttpContext.RequestAborted);
        var unconfirmed = result.IsNotAllowed && user is { EmailConfirmed: false } && !await users.IsLockedOutAsync(user);
        if (unconfirmed && !await users.CheckPasswordAsync(user!, Password))
        {
            // Counted towards the lockout like any wrong password.
            await users.AccessFailedAsync(user!);
        }
        else if (unconfirmed && user!.Email is { } address)
        {
            // Only after the right password (Identity refuses an unconfirmed account before it looks at the password, so
            // saying so on any attempt would tell who has signed up): a new link, and why.
            var link = AccountLinks.Build(auth.Value.Issuer!, "ConfirmEmail", user.Id, await users.GenerateEmailConfirmationTokenAsync(user),
                Url.IsLocalUrl(ReturnUrl) ? ReturnUrl : null);
            await notifier.SendAsync(new Notice(address, text["Confirm.MailSubject"], text["Confirm.MailBody", link.AbsoluteUri]), HttpContext.RequestAborted);
            ModelState.AddModelError(nameof(Email), text["Login.Unconfirmed"]);
            return Page();
        }

        if (!result.Succeeded)
        {
            // One message for unknown account, wrong password and lockout: the page must not reveal who has an account.
            ModelState.AddModelError(nameof(Email), text["Login.Failed"]);
            return Page();
        }

        return LocalRedirect(Url.IsLocalUrl(ReturnUrl) ? ReturnUrl : "/");
    }
}
