using ExchangeGateway.Audit;
using ExchangeGateway.Auth;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Microsoft.Extensions.Localization;

namespace ExchangeGateway.Pages.Account;

/// <summary>
/// The page the confirmation link opens. Opening it changes nothing (mail scanners open links); the button confirms the
/// address, signs the seeker in and carries on where the sign-up started.
/// </summary>
public sealed class ConfirmEmailModel(
    UserManager<GatewayUser> users, SignInManager<GatewayUser> signIn, AuditTrail audit, IStringLocalizer<PageText> text) : PageModel
{
    [BindProperty(SupportsGet = true, Name = "user")] public string? UserId { get; set; }
    [BindProperty(SupportsGet = true)] public string? Code { get; set; }
    [BindProperty(SupportsGet = true)] public string? ReturnUrl { get; set; }

    public void OnGet()
    {
    }

    public async Task<IActionResult> OnPostAsync()
    {
        var user = string.IsNullOrEmpty(UserId) ? null : await users.FindByIdAsync(UserId);
        var token = AccountLinks.Decode(Code);
        if (user is null || token is null)
        {
            ModelState.AddModelError("", text["Confirm.InvalidLink"]);
            return Page();
        }

        if (user.EmailConfirmed)
        {
            // Used before: the link is spent, not a way to sign in without the password.
            return RedirectToPage("/Account/Login", new { returnUrl = Url.IsLocalUrl(ReturnUrl) ? ReturnUrl : null });
        }

        var confirmed = await users.ConfirmEmailAsync(user, token);
        await audit.RecordAccountAsync(AuditActions.AccountConfirmed, user, await users.GetRolesAsync(user), confirmed.Succeeded, HttpContext.RequestAborted);
        if (!confirmed.Succeeded)
        {
            ModelState.AddModelError("", text["Confirm.InvalidLink"]);
            return Page();
        }

        await signIn.SignInAsync(user, isPersistent: false);
        return LocalRedirect(Url.IsLocalUrl(ReturnUrl) ? ReturnUrl : "/Cv?done=welcome");
    }
}
