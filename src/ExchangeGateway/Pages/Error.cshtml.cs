using ExchangeGateway.Hosting;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace ExchangeGateway.Pages;

/// <summary>
/// What a person sees when a page fails, in their language, instead of the API's problem+json: a page not found, a form
/// that expired (its antiforgery token no longer matches the session, after signing out in another tab), a file too
/// large, or a fault. Reached only by re-execution (see <see cref="PagesSetup.UseGatewayPageErrors"/>); the re-executed
/// request keeps its method, so a failed form post lands here as a POST, without a token of its own to check.
/// </summary>
[AllowAnonymous, IgnoreAntiforgeryToken]
public sealed class ErrorModel : PageModel
{
    public int Status { get; private set; }

    /// <summary>The resource key of the explanation: one per status a person can meet, and one for the rest.</summary>
    public string TextKey => Status switch
    {
        StatusCodes.Status400BadRequest => "Error.400",
        StatusCodes.Status404NotFound => "Error.404",
        StatusCodes.Status413PayloadTooLarge => "Error.413",
        StatusCodes.Status503ServiceUnavailable => "Error.503",
        _ => "Error.Other",
    };

    public IActionResult OnGet() => Show();

    public IActionResult OnPost() => Show();

    // Every method a failed request can come with is re-executed with it; none may render the page unasked.
    public IActionResult OnPut() => Show();

    public IActionResult OnDelete() => Show();

    public IActionResult OnPatch() => Show();

    private IActionResult Show()
    {
        if (HttpContext.Features.Get<IStatusCodeReExecuteFeature>() is null && HttpContext.Features.Get<IExceptionHandlerPathFeature>() is null)
        {
            // Asked for directly: there is no error to explain.
            return NotFound();
        }

        Status = Response.StatusCode;
        if (Status == StatusCodes.Status503ServiceUnavailable)
        {
            Response.Headers.RetryAfter = Problems.RetryAfterSeconds;
        }

        return Page();
    }
}
