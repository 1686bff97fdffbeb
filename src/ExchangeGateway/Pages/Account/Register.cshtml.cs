using System.ComponentModel.DataAnnotations;
using ExchangeGateway.Audit;
using ExchangeGateway.Auth;
using ExchangeGateway.Data;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace ExchangeGateway.Pages.Account;

/// <summary>A job seeker's account: e-mail and password, role seeker, signed in at once.</summary>
public sealed class RegisterModel(
    UserManager<GatewayUser> users, SignInManager<GatewayUser> signIn, GatewayDbContext db, AuditTrail audit, TimeProvider time) : PageModel
{
    [BindProperty, Required(ErrorMessage = "Error.Required"), EmailAddress(ErrorMessage = "Error.Email"), StringLength(254, ErrorMessage = "Error.TooLong")]
    public string Email { get; set; } = "";

    [BindProperty, Required(ErrorMessage = "Error.Required"), StringLength(200, ErrorMessage = "Error.TooLong")]
    public string Password { get; set; } = "";

    [BindProperty, Required(ErrorMessage = "Error.Required"), Compare(nameof(Password), ErrorMessage = "Error.PasswordsDiffer")]
    public string ConfirmPassword { get; set; } = "";

    [BindProperty(SupportsGet = true)] public string? ReturnUrl { get; set; }

    public void OnGet()
    {
    }

    public async Task<IActionResult> OnPostAsync()
    {
        if (!ModelState.IsValid)
        {
            return Page();
        }

        // The account, its role and its audit event together, or none of them.
        await using var transaction = await db.Database.BeginTransactionAsync(HttpContext.RequestAborted);
        var user = new GatewayUser { UserName = Email.Trim(), Email = Email.Trim(), CreatedAt = time.GetUtcNow() };
        var created = await users.CreateAsync(user, Password);
        if (created.Succeeded)
        {
            created = await users.AddToRoleAsync(user, Roles.Seeker);
        }

        if (created.Succeeded)
        {
            await audit.RecordAccountAsync(AuditActions.AccountCreated, user, [Roles.Seeker], succeeded: true, HttpContext.RequestAborted);
            await transaction.CommitAsync(HttpContext.RequestAborted);
        }
        else
        {
            await transaction.RollbackAsync(HttpContext.RequestAborted);
            foreach (var error in created.Errors.DistinctBy(e => e.Description))
            {
                ModelState.AddModelError(error.Code.StartsWith("Password", StringComparison.Ordinal) ? nameof(Password) : nameof(Email), error.Description);
            }

            return Page();
        }

        await signIn.SignInAsync(user, isPersistent: false);
        return LocalRedirect(Url.IsLocalUrl(ReturnUrl) ? ReturnUrl : "/Cv?done=welcome");
    }
}
