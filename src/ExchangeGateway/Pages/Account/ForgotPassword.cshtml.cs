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
/// Queues a reset link for an address with an account (<see cref="AccountMail"/>: sent after the answer, so its time says
/// nothing). The answer is the same whether or not the address has an account, and the link is built on the configured
/// issuer, never on the request's Host header (which a caller controls).
/// </summary>
public sealed class ForgotPasswordModel(
    UserManager<GatewayUser> users, AccountMail mail, AuditTrail audit, IOptions<AuthOptions> auth, IStringLocalizer<PageText> text) : PageModel
{
    [BindProperty, Required(ErrorMessage = "Error.Required"), EmailAddress(ErrorMessage = "Error.Email")]
    public string Email { get; set; } = "";

    public bool Sent { get; private set; }

    public void OnGet()
    {
    }

    public async Task<IActionResult> OnPostAsync()
    {
        if (!ModelState.IsValid)
        {
            return Page();
        }

        var user = await users.FindByEmailAsync(Email.Trim());
        if (user?.Email is { } address)
        {
            var link = AccountLinks.Build(auth.Value.Issuer!, "ResetPassword", user.Id, await users.GeneratePasswordResetTokenAsync(user));
            mail.Enqueue(new Notice(address, text["Reset.MailSubject"], text["Reset.MailBody", link.AbsoluteUri]));
        }

        // Recorded either way (an unknown address as an anonymous request, without the address), so that a run of
        // requests against many addresses shows in the log.
        await audit.RecordAccountAsync(
            AuditActions.PasswordResetRequested, user, user is null ? [] : await users.GetRolesAsync(user), user?.Email is not null, HttpContext.RequestAborted);

        Sent = true;
        return Page();
    }
}
