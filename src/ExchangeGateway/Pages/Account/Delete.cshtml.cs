using ExchangeGateway.Auth;
using ExchangeGateway.Cvs;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Microsoft.Extensions.Localization;

namespace ExchangeGateway.Pages.Account;

/// <summary>"Supprimer mes données": a confirmation, then the very erasure of DELETE /api/v1/me.</summary>
public sealed class DeleteModel(SeekerErasure erasure, SignInManager<GatewayUser> signIn, IStringLocalizer<PageText> text) : PageModel
{
    [BindProperty] public bool Confirm { get; set; }

    public void OnGet()
    {
    }

    public async Task<IActionResult> OnPostAsync()
    {
        if (!Confirm)
        {
            ModelState.AddModelError(nameof(Confirm), text["Delete.ConfirmRequired"]);
            return Page();
        }

        await erasure.EraseAsync(User.Subject(), HttpContext.RequestAborted);
        await signIn.SignOutAsync();
        return RedirectToPage("/Index", new { erased = true });
    }
}
