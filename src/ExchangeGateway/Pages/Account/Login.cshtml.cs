using ExchangeGateway.Audit;
using ExchangeGateway.Auth;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace ExchangeGateway.Pages.Account;

/// <summary>The one sign-in page, used by the web pages and by /connect/authorize.</summary>
public sealed class LoginModel(SignInManager<GatewayUser> signIn, UserManager<GatewayUser> users, AuditTrail audit) : PageModel
{
    [BindProperty] public string Email { get; set; } = "";
    [BindProperty] public string Password { get; set; } = "";
    [BindProperty(SupportsGet = true)] public string? ReturnUrl { get; set; }

    public string? Error { get; private set; }

    public void OnGet()
    {
    }

    public async Task<IActionResult> OnPostAsync()
    {
        var user = string.IsNullOrWhiteSpace(Email) ? null : await users.FindByEmailAsync(Email);
        var result = user is null
            ? Microsoft.AspNetCore.Identity.SignInResult.Failed
            : await signIn.PasswordSignInAsync(user, Password, isPersistent: false, lockoutOnFailure: true);

        await audit.RecordSignInAsync(user, user is null ? [] : await users.GetRolesAsync(user), result.Succeeded, HttpContext.RequestAborted);
        if (!result.Succeeded)
        {
            // One message for unknown account, wrong password and lockout: the page must not reveal who has an account.
            Error = "Adresse e-mail ou mot de passe incorrect.";
            return Page();
        }

        return LocalRedirect(Url.IsLocalUrl(ReturnUrl) ? ReturnUrl : "/");
    }
}
