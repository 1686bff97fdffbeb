namespace ExchangeGateway.Hosting;

/// <summary>
/// Headers every response carries (and, on the API, no-store). The default Content-Security-Policy suits an API (nothing may load, nothing may
/// frame it); Swagger UI and the Hangfire dashboard get the narrow policies they need; pages that set their own keep it.
/// </summary>
public static class SecurityHeaders
{
    private const string ApiPolicy = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
    private const string SwaggerPolicy =
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'";

    // Hangfire's dashboard loads its own scripts and styles, sets inline styles, polls its stats and posts its actions
    // (retry, trigger, delete) from script: the API's policy left operators a page whose buttons did nothing.
    private const string DashboardPolicy =
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

    public static WebApplication UseSecurityHeaders(this WebApplication app)
    {
        if (!app.Environment.IsLocal())
        {
            app.UseHsts();
        }

        app.Use((context, next) =>
        {
            // Read now: the dashboard moves its prefix into PathBase before the response starts.
            var path = context.Request.PathBase + context.Request.Path;
            context.Response.OnStarting(() =>
            {
                var headers = context.Response.Headers;
                headers.XContentTypeOptions = "nosniff";
                headers.XFrameOptions = "DENY";
                headers["Referrer-Policy"] = "no-referrer";
                headers["Cross-Origin-Opener-Policy"] = "same-origin";
                // API answers carry CVs, consents, client secrets: no browser or proxy keeps them.
                if (path.StartsWithSegments("/api") && !headers.ContainsKey("Cache-Control"))
                {
                    headers.CacheControl = "no-store";
                }

                if (!headers.ContainsKey("Content-Security-Policy"))
                {
                    headers.ContentSecurityPolicy = path.StartsWithSegments("/swagger") ? SwaggerPolicy
                        : path.StartsWithSegments("/hangfire") ? DashboardPolicy
                        : ApiPolicy;
                }

                return Task.CompletedTask;
            });
            return next(context);
        });
        return app;
    }
}
