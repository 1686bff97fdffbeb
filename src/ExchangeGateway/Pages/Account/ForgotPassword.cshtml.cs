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

/// <summary>
/// A reset link for an address with an account. The page answers the same, in the same time, whatever the address: the
/// look-up, the link and the message happen after the answer (<see cref="AccountMail"/>). The link is built on the
/// configured issuer, never on the request's Host header (which a caller controls).
/// </summary>
public sealed class ForgotPasswordModel(AccountMail mail) : PageModel
{
    [BindProperty, Required(ErrorMessage = "Error.Required"), EmailAddress(ErrorMessage = "Error.Email"), StringLength(254, ErrorMessage = "Error.TooLong")]
    public string Email { get; set; } = "";

    public bool Sent { get; private set; }

    public void OnGet()
    {
    }

    public IActionResult OnPost()
    {
        if (!ModelState.IsValid)
        {
            return Page();
        }

        var email = Email.Trim();
        mail.Enqueue(email, (services, cancellationToken) => ResetLinkAsync(services, email, cancellationToken));
        Sent = true;
        return Page();
    }

    private static async Task<Notice?> ResetLinkAsync(IServiceProvider services, string email, CancellationToken cancellationToken)
    {
        var users = services.GetRequiredService<UserManager<GatewayUser>>();
        var user = await users.FindByEmailAsync(email);
        // Recorded either way (an unknown address as an anonymous request, without the address), so that a run of
        // requests against many addresses shows in the log.
        await services.GetRequiredService<AuditTrail>().RecordAccountAsync(
            AuditActions.PasswordResetRequested, user, user is null ? [] : await users.GetRolesAsync(user), user?.Email is not null, cancellationToken);
        if (user?.Email is not { } address)
        {
            return null;
        }

        var text = services.GetRequiredService<IStringLocalizer<PageText>>();
        var link = AccountLinks.Build(
            services.GetRequiredService<IOptions<AuthOptions>>().Value.Issuer!, "ResetPassword", user.Id, await users.GeneratePasswordResetTokenAsync(user));
        return new Notice(address, text["Reset.MailSubject"], text["Reset.MailBody", link.AbsoluteUri]);
    }
}
