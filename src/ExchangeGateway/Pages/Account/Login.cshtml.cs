using System.ComponentModel.DataAnnotations;
using ExchangeGateway.Audit;
using ExchangeGateway.Auth;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Microsoft.Extensions.Localization;

namespace ExchangeGateway.Pages.Account;

/// <summary>The one sign-in page, used by the web pages and by /connect/authorize.</summary>
public sealed class LoginModel(
    SignInManager<GatewayUser> signIn, UserManager<GatewayUser> users, AuditTrail audit, IStringLocalizer<PageText> text) : PageModel
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
        if (!result.Succeeded)
        {
            // One message for unknown account, wrong password, lockout and a sign-up not finished (no password yet): the
            // page must not reveal who has an account.
            ModelState.AddModelError(nameof(Email), text["Login.Failed"]);
            return Page();
        }

        return LocalRedirect(Url.IsLocalUrl(ReturnUrl) ? ReturnUrl : "/");
    }
}
