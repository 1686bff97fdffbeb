using System.ComponentModel.DataAnnotations;
using ExchangeGateway.Audit;
using ExchangeGateway.Auth;
using ExchangeGateway.Data;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Microsoft.Extensions.Localization;

namespace ExchangeGateway.Pages.Account;

/// <summary>
/// The page the sign-up link opens, where the account gets its password: only the holder of the address can get here, so
/// nobody can set up an account for someone else's address and keep a way into it. Opening the page changes nothing
/// (mail scanners open links); the form confirms the address, sets the password, signs the seeker in and carries on where
/// the sign-up started. Setting the password renews the account's security stamp, which the link's token carries, so a used
/// link is spent.
/// </summary>
public sealed class ConfirmEmailModel(
    UserManager<GatewayUser> users, SignInManager<GatewayUser> signIn, SecondFactor twoFactor, GatewayDbContext db, AuditTrail audit, IStringLocalizer<PageText> text,
    SignInThrottle throttle, IWebHostEnvironment environment)
    : PageModel
{
    [BindProperty(SupportsGet = true, Name = "user")] public string? UserId { get; set; }
    [BindProperty(SupportsGet = true)] public string? Code { get; set; }
    [BindProperty(SupportsGet = true)] public string? ReturnUrl { get; set; }

    [BindProperty, Required(ErrorMessage = "Error.Required"), StringLength(200, ErrorMessage = "Error.TooLong")]
    public string Password { get; set; } = "";

    [BindProperty, Required(ErrorMessage = "Error.Required"), Compare(nameof(Password), ErrorMessage = "Error.PasswordsDiffer")]
    public string ConfirmPassword { get; set; } = "";

    /// <summary>
    /// The account the link is for, shown once the link is known good: whoever signs up with their own address and sends
    /// the link to someone else (to have them fill in a CV the sender can later read) is found out before a password is set.
    /// </summary>
    public string? AccountEmail { get; private set; }

    /// <summary>The link is bad, spent or expired: said when the page opens, with no form to fill in for nothing.</summary>
    public bool LinkInvalid { get; private set; }

    public async Task<IActionResult> OnGetAsync()
    {
        if (await LinkedAccountAsync() is not { } link)
        {
            return Page();
        }

        if (link.User.EmailConfirmed)
        {
            return ToSignIn();
        }

        AccountEmail = link.User.Email;
        return Page();
    }

    /// <summary>The account the link is for and the link's token, when the link is good; otherwise the page says it is not.</summary>
    private async Task<(GatewayUser User, string Token)?> LinkedAccountAsync()
    {
        var user = string.IsNullOrEmpty(UserId) ? null : await users.FindByIdAsync(UserId);
        if (user is null || AccountLinks.Decode(Code) is not { } token
            || !await users.VerifyUserTokenAsync(user, users.Options.Tokens.EmailConfirmationTokenProvider, UserManager<GatewayUser>.ConfirmEmailTokenPurpose, token))
        {
            RefuseLink();
            return null;
        }

        return (user, token);
    }

    private void RefuseLink()
    {
        LinkInvalid = true;
        ModelState.Clear();
        ModelState.AddModelError("", text["Confirm.InvalidLink"]);
    }

    /// <summary>A valid link to an account that already has its password (its stamp unchanged since): no sign-in from a link.</summary>
    private RedirectToPageResult ToSignIn() => RedirectToPage("/Account/Login", new { returnUrl = Url.IsLocalUrl(ReturnUrl) ? ReturnUrl : null });

    public async Task<IActionResult> OnPostAsync()
    {
        // The link first, whatever else was typed: without a valid one, the page says nothing about the account.
        if (await LinkedAccountAsync() is not { } link)
        {
            return Page();
        }

        var (user, token) = link;
        if (user.EmailConfirmed)
        {
            return ToSignIn();
        }

        AccountEmail = user.Email;
        if (!ModelState.IsValid)
        {
            return Page();
        }

        var weak = new List<IdentityError>();
        foreach (var validator in users.PasswordValidators)
        {
            weak.AddRange((await validator.ValidateAsync(users, user, Password)).Errors);
        }

        if (weak.Count > 0)
        {
            foreach (var error in weak.DistinctBy(e => e.Description))
            {
                ModelState.AddModelError(nameof(Password), error.Description);
            }

            return Page();
        }

        // Confirmed and given its password together, or neither.
        await using var transaction = await db.Database.BeginTransactionAsync(HttpContext.RequestAborted);
        var done = await users.ConfirmEmailAsync(user, token);
        if (done.Succeeded)
        {
            done = await users.AddPasswordAsync(user, Password);
        }

        if (!done.Succeeded)
        {
            // Rolled back first, then recorded in a transaction of its own: the refusal must outlive the rollback.
            await transaction.RollbackAsync(HttpContext.RequestAborted);
            await audit.RecordAccountAsync(AuditActions.AccountConfirmed, user, await users.GetRolesAsync(user), succeeded: false, HttpContext.RequestAborted);
            AccountEmail = null;
            RefuseLink();
            return Page();
        }

        var roles = await users.GetRolesAsync(user);
        await audit.RecordAccountAsync(AuditActions.AccountConfirmed, user, roles, succeeded: true, HttpContext.RequestAborted);
        await transaction.CommitAsync(HttpContext.RequestAborted);
        var returnUrl = Url.IsLocalUrl(ReturnUrl) ? ReturnUrl : "/Cv?done=welcome";
        // The mailbox and the new password are one factor's worth for staff: they still give a code (or add an authenticator).
        if (SecondFactor.PageAfter(await twoFactor.NextStepAsync(user, roles)) is { } secondStep)
        {
            await twoFactor.BeginAsync(HttpContext, user);
            return RedirectToPage(secondStep, new { ReturnUrl = returnUrl });
        }

        await signIn.SignInAsync(user, isPersistent: false);
        throttle.RememberDevice(HttpContext, user, environment);
        return LocalRedirect(returnUrl);
    }
}
