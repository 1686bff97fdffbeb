using ExchangeGateway.Auth;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using OpenIddict.Abstractions;

namespace ExchangeGateway.Pages.Account;

/// <summary>
/// Signing out, always by a form the person sends: also for an application's RP-initiated logout (/connect/endsession),
/// whose parameters this page carries back to that endpoint, so that no other site can sign a seeker out with a link.
/// </summary>
public sealed class LogoutModel(SignInManager<GatewayUser> signIn, IOpenIddictApplicationManager applications) : PageModel
{
    /// <summary>The OIDC end-session parameters carried through the form; nothing else.</summary>
    private static readonly string[] EndSessionParameters = ["id_token_hint", "post_logout_redirect_uri", "state", "client_id", "logout_hint", "ui_locales"];

    public IReadOnlyList<KeyValuePair<string, string>> EndSession { get; private set; } = [];

    public async Task OnGetAsync()
    {
        EndSession = [.. EndSessionParameters
            .Where(name => Request.Query[name].Count == 1 && Request.Query[name].ToString().Length <= 4096)
            .Select(name => KeyValuePair.Create(name, Request.Query[name].ToString()))];
        // The form's post ends in a redirect to the application's post-logout address, and browsers hold redirects after a
        // form post to form-action: that origin is named, once some application has registered the address.
        var returnTo = Request.Query["post_logout_redirect_uri"].ToString();
        if (Uri.TryCreate(returnTo, UriKind.Absolute, out var target)
            && await applications.FindByPostLogoutRedirectUriAsync(returnTo, HttpContext.RequestAborted).AnyAsync(HttpContext.RequestAborted))
        {
            PageSecurityHeaders.Apply(HttpContext, target);
        }
    }

    public async Task<IActionResult> OnPostAsync()
    {
        await signIn.SignOutAsync();
        return LocalRedirect("/");
    }
}
