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
/// nobody but the address's holder can finish it. The page answers the same, in the same time, whatever the address:
/// everything that depends on it runs after the answer (<see cref="AccountMail"/>). A new address (or one whose sign-up
/// was never finished) gets the link, one with an account a message telling its holder, never the visitor.
/// </summary>
public sealed class RegisterModel(AccountMail mail, IStringLocalizer<PageText> text) : PageModel
{
    [BindProperty, Required(ErrorMessage = "Error.Required"), EmailAddress(ErrorMessage = "Error.Email"), StringLength(254, ErrorMessage = "Error.TooLong")]
    public string Email { get; set; } = "";

    [BindProperty(SupportsGet = true)] public string? ReturnUrl { get; set; }

    public bool Sent { get; private set; }

    public void OnGet()
    {
    }

    public IActionResult OnPost()
    {
        // Bound as null when blank: the Required check above reports that, this line must not throw first.
        var email = (Email ?? "").Trim();
        // A bare address only, as the API requires: [EmailAddress] also passes "Name <someone@elsewhere>", which the mailer
        // would read as someone@elsewhere, so the account would be named by a string that is not the mailbox that proved it.
        if (ModelState.IsValid && (!System.Net.Mail.MailAddress.TryCreate(email, out var address) || address.Address != email))
        {
            ModelState.AddModelError(nameof(Email), text["Error.Email"]);
        }

        if (!ModelState.IsValid)
        {
            return Page();
        }

        var returnUrl = Url.IsLocalUrl(ReturnUrl) ? ReturnUrl : null;
        mail.Enqueue(email, (services, cancellationToken) => SignUpAsync(services, email, returnUrl, cancellationToken));
        Sent = true;
        return Page();
    }

    /// <summary>After the answer: the account made (or found), and the message for the address.</summary>
    private static async Task<Notice?> SignUpAsync(IServiceProvider services, string email, string? returnUrl, CancellationToken cancellationToken)
    {
        var users = services.GetRequiredService<UserManager<GatewayUser>>();
        var issuer = services.GetRequiredService<IOptions<AuthOptions>>().Value.Issuer!;
        var text = services.GetRequiredService<IStringLocalizer<PageText>>();
        var account = await users.FindByEmailAsync(email) ?? await CreateAsync(services, email, cancellationToken);
        if (account is null)
        {
            return null;
        }

        if (account.EmailConfirmed)
        {
            // Someone may be trying their address, or they forgot: the holder is told, the account is left as it is, and
            // the attempt is recorded under its pseudonym.
            await services.GetRequiredService<AuditTrail>().RecordAccountAsync(
                AuditActions.AccountCreated, account, await users.GetRolesAsync(account), succeeded: false, cancellationToken);
            return new Notice(account.Email!, text["Register.ExistsMailSubject"],
                text["Register.ExistsMailBody", new Uri(issuer, "Account/Login").AbsoluteUri, new Uri(issuer, "Account/ForgotPassword").AbsoluteUri]);
        }

        var link = AccountLinks.Build(issuer, "ConfirmEmail", account.Id, await users.GenerateEmailConfirmationTokenAsync(account), returnUrl);
        return new Notice(account.Email!, text["Confirm.MailSubject"], text["Confirm.MailBody", link.AbsoluteUri]);
    }

    /// <summary>The account (no password yet), its role and its audit event together; or the one a racing sign-up made.</summary>
    private static async Task<GatewayUser?> CreateAsync(IServiceProvider services, string email, CancellationToken cancellationToken)
    {
        var users = services.GetRequiredService<UserManager<GatewayUser>>();
        var db = services.GetRequiredService<GatewayDbContext>();
        var account = new GatewayUser { UserName = email, Email = email, CreatedAt = services.GetRequiredService<TimeProvider>().GetUtcNow() };
        try
        {
            await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
            // The address's turn, as a sign-in takes it: of two sign-ups for one address at once (a double click reaching two
            // nodes), the second waits here, and the account check in CreateAsync then finds the first's account (a
            // DuplicateEmail below) instead of both inserting: the loser's unique violation wrote the address into
            // PostgreSQL's own log, where an erasure cannot reach it.
            await Locks.SignInAsync(db, users.NormalizeEmail(email), cancellationToken);
            var created = await users.CreateAsync(account);
            if (created.Succeeded)
            {
                created = await users.AddToRoleAsync(account, Roles.Seeker);
            }

            if (created.Succeeded)
            {
                await services.GetRequiredService<AuditTrail>().RecordAccountAsync(AuditActions.AccountCreated, account, [Roles.Seeker], succeeded: true, cancellationToken);
                await transaction.CommitAsync(cancellationToken);
                return account;
            }

            await transaction.RollbackAsync(cancellationToken);
            if (!created.Errors.Any(e => e.Code is nameof(IdentityErrorDescriber.DuplicateEmail) or nameof(IdentityErrorDescriber.DuplicateUserName)))
            {
                services.GetRequiredService<ILogger<RegisterModel>>().LogWarning(
                    "A sign-up was refused by the account rules ({Codes})", string.Join(", ", created.Errors.Select(e => e.Code)));
                return null;
            }
        }
        catch (DbUpdateException e) when (e.InnerException is PostgresException { SqlState: PostgresErrorCodes.UniqueViolation })
        {
            // Two sign-ups for one address at once: the other one made the account.
        }

        db.ChangeTracker.Clear();
        return await users.FindByEmailAsync(email);
    }
}
