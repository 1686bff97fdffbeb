using Microsoft.AspNetCore.Mvc.Filters;

namespace ExchangeGateway.Pages;

/// <summary>
/// The security headers of the seeker's pages: no script but our own files (there are none today, and no inline script
/// ever), styles from our own files, forms that post only to the gateway, no framing, nothing cached. Set before the
/// page runs, so the gateway-wide defaults (Hosting/SecurityHeaders.cs, the API's stricter policy) leave them alone.
/// </summary>
public sealed class PageSecurityHeaders : IAsyncPageFilter
{
    public Task OnPageHandlerSelectionAsync(PageHandlerSelectedContext context)
    {
        Apply(context.HttpContext);
        return Task.CompletedTask;
    }

    public Task OnPageHandlerExecutionAsync(PageHandlerExecutingContext context, PageHandlerExecutionDelegate next) => next();

    /// <summary>
    /// Browsers apply form-action to the redirects that follow a form post too, so a page whose form ends at a site's
    /// registered redirect URI (the consent page) names that origin here.
    /// </summary>
    public static void Apply(HttpContext context, Uri? formTarget = null)
    {
        var formAction = formTarget is null ? "'self'" : $"'self' {formTarget.GetLeftPart(UriPartial.Authority)}";
        var headers = context.Response.Headers;
        headers.ContentSecurityPolicy =
            $"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action {formAction}; frame-ancestors 'none'; base-uri 'none'";
        headers.XFrameOptions = "DENY";
        headers.XContentTypeOptions = "nosniff";
        // The values antiforgery also sets on pages with a form, so that it has nothing to override.
        headers.CacheControl = "no-cache, no-store";
        headers.Pragma = "no-cache";
    }
}
