using System.ComponentModel.DataAnnotations;
using ExchangeGateway.Audit;
using ExchangeGateway.Auth;
using ExchangeGateway.Data;
using ExchangeGateway.Hosting;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Localization;
using Microsoft.Extensions.Options;
using Npgsql;

namespace ExchangeGateway.Pages.Account;

/// <summary>
/// A job seeker's account starts with an address only: the link mailed to it leads to the page where the password is
/// chosen (<see cref="ConfirmEmailModel"/>). Until then the account has no password, so nobody can sign in to it, and
/// nobody but the address's holder can finish it. The page answers the same whatever the address: a new one (or one whose
/// sign-up was never finished) gets the link, one with an account a message telling its holder, never the visitor.
/// </summary>
public sealed class RegisterModel(
    UserManager<GatewayUser> users, GatewayDbContext db, AuditTrail audit, AccountMail mail, IOptions<AuthOptions> auth,
    IStringLocalizer<PageText> text, TimeProvider time) : PageModel
{
    [BindProperty, Required(ErrorMessage = "Error.Required"), EmailAddress(ErrorMessage = "Error.Email"), StringLength(254, ErrorMessage = "Error.TooLong")]
    public string Email { get; set; } = "";

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
        var account = await users.FindByEmailAsync(email);
        if (account is null)
        {
            (account, var problems) = await CreateAsync(email);
            if (problems is not null)
            {
                foreach (var error in problems.DistinctBy(e => e.Description))
                {
                    ModelState.AddModelError(nameof(Email), error.Description);
                }

                return Page();
            }
        }

        if (account.EmailConfirmed)
        {
            await TellTheHolderAsync(account);
        }
        else
        {
            var link = AccountLinks.Build(auth.Value.Issuer!, "ConfirmEmail", account.Id, await users.GenerateEmailConfirmationTokenAsync(account),
                Url.IsLocalUrl(ReturnUrl) ? ReturnUrl : null);
            mail.Enqueue(new Notice(account.Email!, text["Confirm.MailSubject"], text["Confirm.MailBody", link.AbsoluteUri]));
        }

        Sent = true;
        return Page();
    }

    /// <summary>The account (no password yet), its role and its audit event together; or the one a racing sign-up made.</summary>
    private async Task<(GatewayUser Account, IEnumerable<IdentityError>? Problems)> CreateAsync(string email)
    {
        var account = new GatewayUser { UserName = email, Email = email, CreatedAt = time.GetUtcNow() };
        try
        {
            await using var transaction = await db.Database.BeginTransactionAsync(HttpContext.RequestAborted);
            var created = await users.CreateAsync(account);
            if (created.Succeeded)
            {
                created = await users.AddToRoleAsync(account, Roles.Seeker);
            }

            if (created.Succeeded)
            {
                await audit.RecordAccountAsync(AuditActions.AccountCreated, account, [Roles.Seeker], succeeded: true, HttpContext.RequestAborted);
                await transaction.CommitAsync(HttpContext.RequestAborted);
                return (account, null);
            }

            await transaction.RollbackAsync(HttpContext.RequestAborted);
            if (!created.Errors.Any(e => e.Code is nameof(IdentityErrorDescriber.DuplicateEmail) or nameof(IdentityErrorDescriber.DuplicateUserName)))
            {
                return (account, created.Errors);
            }
        }
        catch (DbUpdateException e) when (e.InnerException is PostgresException { SqlState: PostgresErrorCodes.UniqueViolation })
        {
            // Two sign-ups for one address at once: the other one made the account.
        }

        db.ChangeTracker.Clear();
        return (await users.FindByEmailAsync(email) ?? throw new InvalidOperationException("The account that took this address is gone."), null);
    }

    /// <summary>
    /// A sign-up with an address that has an account: its holder is told (someone may be trying their address, or they
    /// forgot), the account is left as it is, and the attempt is recorded under its pseudonym.
    /// </summary>
    private async Task TellTheHolderAsync(GatewayUser holder)
    {
        var signIn = new Uri(auth.Value.Issuer!, "Account/Login");
        var forgot = new Uri(auth.Value.Issuer!, "Account/ForgotPassword");
        mail.Enqueue(new Notice(holder.Email!, text["Register.ExistsMailSubject"], text["Register.ExistsMailBody", signIn.AbsoluteUri, forgot.AbsoluteUri]));
        await audit.RecordAccountAsync(AuditActions.AccountCreated, holder, await users.GetRolesAsync(holder), succeeded: false, HttpContext.RequestAborted);
    }
}
