using System.Security.Claims;
using ExchangeGateway.Auth;
using ExchangeGateway.Cvs;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Microsoft.Extensions.Localization;

namespace ExchangeGateway.Pages.Account;

/// <summary>
/// "Supprimer mes données": a confirmation, then the very erasure of DELETE /api/v1/me, answered with its receipt on this
/// page rather than by a redirect: the receipt is kept nowhere, so a page reached by a redirect would have nothing to show.
/// </summary>
public sealed class DeleteModel(SeekerErasure erasure, SignInManager<GatewayUser> signIn, IStringLocalizer<PageText> text) : PageModel
{
    [BindProperty] public bool Confirm { get; set; }

    /// <summary>Set once the erasure has committed: the page then shows what each site was asked.</summary>
    public ErasureReceipt? Receipt { get; private set; }

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

        Receipt = await erasure.EraseAsync(User.Subject(), HttpContext.RequestAborted);
        await signIn.SignOutAsync();
        if (Receipt is null)
        {
            return RedirectToPage("/Index");
        }

        // Signed out for the rest of this answer too: the layout must not offer the pages of an account that is gone.
        HttpContext.User = new ClaimsPrincipal(new ClaimsIdentity());
        return Page();
    }
}
