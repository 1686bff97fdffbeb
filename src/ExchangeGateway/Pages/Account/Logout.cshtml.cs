using ExchangeGateway.Auth;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace ExchangeGateway.Pages.Account;

/// <summary>
/// Signing out, always by a form the person sends: also for an application's RP-initiated logout (/connect/endsession),
/// whose parameters this page carries back to that endpoint, so that no other site can sign a seeker out with a link.
/// </summary>
public sealed class LogoutModel(SignInManager<GatewayUser> signIn) : PageModel
{
    /// <summary>The OIDC end-session parameters carried through the form; nothing else.</summary>
    private static readonly string[] EndSessionParameters = ["id_token_hint", "post_logout_redirect_uri", "state", "client_id", "logout_hint", "ui_locales"];

    public IReadOnlyList<KeyValuePair<string, string>> EndSession { get; private set; } = [];

    public void OnGet() =>
        EndSession = [.. EndSessionParameters
            .Where(name => Request.Query[name].Count == 1 && Request.Query[name].ToString().Length <= 4096)
            .Select(name => KeyValuePair.Create(name, Request.Query[name].ToString()))];

    public async Task<IActionResult> OnPostAsync()
    {
        await signIn.SignOutAsync();
        return LocalRedirect("/");
    }
}
