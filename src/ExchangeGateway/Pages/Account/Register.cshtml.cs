using System.ComponentModel.DataAnnotations;
using ExchangeGateway.Audit;
using ExchangeGateway.Auth;
using ExchangeGateway.Data;
using ExchangeGateway.Hosting;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Microsoft.Extensions.Localization;
using Microsoft.Extensions.Options;

namespace ExchangeGateway.Pages.Account;

/// <summary>
/// A job seeker's account: e-mail and password, role seeker, usable once the address is confirmed through the link the
/// notifier sends. The page answers the same whether or not the address already has an account: a new address gets the
/// confirmation link, a known one a message telling its holder (never the visitor) that they already have an account.
/// </summary>
public sealed class RegisterModel(
    UserManager<GatewayUser> users, GatewayDbContext db, AuditTrail audit, INotifier notifier, IOptions<AuthOptions> auth,
    IStringLocalizer<PageText> text, TimeProvider time) : PageModel
{
    [BindProperty, Required(ErrorMessage = "Error.Required"), EmailAddress(ErrorMessage = "Error.Email"), StringLength(254, ErrorMessage = "Error.TooLong")]
    public string Email { get; set; } = "";

    [BindProperty, Required(ErrorMessage = "Error.Required"), StringLength(200, ErrorMessage = "Error.TooLong")]
    public string Password { get; set; } = "";

    [BindProperty, Required(ErrorMessage = "Error.Required"), Compare(nameof(Password), ErrorMessage = "Error.PasswordsDiffer")]
    public string ConfirmPassword { get; set; } = "";

    [BindProperty(SupportsGet = true)] public string? ReturnUrl { get; set; }

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

        var email = Email.Trim();
        var candidate = new GatewayUser { UserName = email, Email = email, CreatedAt = time.GetUtcNow() };
        // The password rules first, for every address alike: what the page says must not depend on who has an account.
        var weak = new List<IdentityError>();
        foreach (var validator in users.PasswordValidators)
        {
            weak.AddRange((await validator.ValidateAsync(users, candidate, Password)).Errors);
        }

        if (weak.Count > 0)
        {
            foreach (var error in weak.DistinctBy(e => e.Description))
            {
                ModelState.AddModelError(nameof(Password), error.Description);
            }

            return Page();
        }

        var existing = await users.FindByEmailAsync(email);
        if (existing is not null)
        {
            await TellTheHolderAsync(existing, candidate);
            Sent = true;
            return Page();
        }

        // The account, its role and its audit event together, or none of them.
        await using var transaction = await db.Database.BeginTransactionAsync(HttpContext.RequestAborted);
        var created = await users.CreateAsync(candidate, Password);
        if (created.Succeeded)
        {
            created = await users.AddToRoleAsync(candidate, Roles.Seeker);
        }

        if (!created.Succeeded)
        {
            await transaction.RollbackAsync(HttpContext.RequestAborted);
            if (created.Errors.Any(e => e.Code is nameof(IdentityErrorDescriber.DuplicateEmail) or nameof(IdentityErrorDescriber.DuplicateUserName))
                && await users.FindByEmailAsync(email) is { } raced)
            {
                // Taken between the look-up and the insert: the same answer as for any known address.
                await TellTheHolderAsync(raced, null);
                Sent = true;
                return Page();
            }

            foreach (var error in created.Errors.DistinctBy(e => e.Description))
            {
                ModelState.AddModelError(nameof(Email), error.Description);
            }

            return Page();
        }

        await audit.RecordAccountAsync(AuditActions.AccountCreated, candidate, [Roles.Seeker], succeeded: true, HttpContext.RequestAborted);
        await transaction.CommitAsync(HttpContext.RequestAborted);

        var link = AccountLinks.Build(auth.Value.Issuer!, "ConfirmEmail", candidate.Id, await users.GenerateEmailConfirmationTokenAsync(candidate),
            Url.IsLocalUrl(ReturnUrl) ? ReturnUrl : null);
        await notifier.SendAsync(new Notice(email, text["Confirm.MailSubject"], text["Confirm.MailBody", link.AbsoluteUri]), HttpContext.RequestAborted);
        Sent = true;
        return Page();
    }

    /// <summary>
    /// A sign-up with an address that has an account: its holder is told (someone may be trying their address, or they
    /// forgot), the account is left as it is, and the attempt is recorded under its pseudonym.
    /// </summary>
    private async Task TellTheHolderAsync(GatewayUser holder, GatewayUser? candidate)
    {
        if (candidate is not null)
        {
            // A new account costs a password hash; so does this answer, so that its timing does not tell them apart either.
            _ = users.PasswordHasher.HashPassword(candidate, Password);
        }

        var signIn = new Uri(auth.Value.Issuer!, "Account/Login");
        var forgot = new Uri(auth.Value.Issuer!, "Account/ForgotPassword");
        await notifier.SendAsync(
            new Notice(holder.Email!, text["Register.ExistsMailSubject"], text["Register.ExistsMailBody", signIn.AbsoluteUri, forgot.AbsoluteUri]),
            HttpContext.RequestAborted);
        await audit.RecordAccountAsync(AuditActions.AccountCreated, holder, await users.GetRolesAsync(holder), succeeded: false, HttpContext.RequestAborted);
    }
}
