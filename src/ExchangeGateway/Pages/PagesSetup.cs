using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Unicode;
using ExchangeGateway.Auth;
using ExchangeGateway.Hosting;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Localization;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.WebEncoders;

namespace ExchangeGateway.Pages;

/// <summary>The seeker's web pages: Razor Pages on the Identity cookie, in French (default) and English.</summary>
public static class PagesSetup
{
    public const string SeekerPolicy = "seeker-pages";

    /// <summary>
    /// Pages no form limit holds back: a shared address (a job centre, a carrier's NAT) that spent its allowance, or an
    /// account that spent its own, must not leave a session open on a public computer, nor keep a seeker from leaving.
    /// </summary>
    public static bool IsAlwaysOpen(string? viewEnginePath) => viewEnginePath is "/Account/Logout" or "/Account/Delete";

    /// <summary>Any signed-in account: the site's consent page tells staff it is not for them (see Consent/Share).</summary>
    public const string SignedInPolicy = "signed-in-pages";

    public static readonly CultureInfo[] Cultures = [new("fr"), new("en")];

    public static IServiceCollection AddGatewayPages(this IServiceCollection services, IHostEnvironment environment)
    {
        // A mistyped zone would show every date in UTC without a word; refused at start instead. The gateway's host needs the
        // zone database (Debian's tzdata, which the scripts' PostgreSQL packages already pull in; the aspnet images carry it).
        services.AddOptions<PagesOptions>().BindConfiguration(PagesOptions.Section)
            .Validate(o => PageFormat.IsKnownZone(o.TimeZone), "Pages:TimeZone must be a time zone id this machine knows (IANA, for example Europe/Paris).")
            .ValidateOnStart();
        services.AddSingleton<PageFormat>();
        services.AddLocalization(options => options.ResourcesPath = "Resources");
        // Accented letters as themselves in the HTML (Razor would write "&#xE9;" for "é"); markup is still encoded.
        services.Configure<WebEncoderOptions>(options => options.TextEncoderSettings = new TextEncoderSettings(UnicodeRanges.All));
        services.Configure<RequestLocalizationOptions>(options =>
        {
            options.DefaultRequestCulture = new RequestCulture(Cultures[0]);
            options.SupportedCultures = Cultures;
            options.SupportedUICultures = Cultures;
            // French unless the seeker chose otherwise with the language switch (which sets this cookie).
            options.RequestCultureProviders = [new CookieRequestCultureProvider()];
        });
        services.Replace(ServiceDescriptor.Scoped<IdentityErrorDescriber, LocalizedIdentityErrors>());

        services.AddAuthorizationBuilder().AddPolicy(SeekerPolicy, policy => policy
            .AddAuthenticationSchemes(IdentityConstants.ApplicationScheme)
            .RequireRole(Roles.Seeker))
            .AddPolicy(SignedInPolicy, policy => policy
                .AddAuthenticationSchemes(IdentityConstants.ApplicationScheme)
                .RequireAuthenticatedUser());

        services.AddAntiforgery(options =>
        {
            options.Cookie.Name = CookieName(environment, "eg.antiforgery");
            options.Cookie.SecurePolicy = SecurePolicy(environment);
            options.FormFieldName = "__RequestVerificationToken";
        });

        services.AddSingleton<Hosting.SignedInFormLimit>();
        services.AddRazorPages(options =>
            {
                foreach (var folder in (string[])["/Cv", "/Sharing", "/Disclosures", "/Erasures"])
                {
                    options.Conventions.AuthorizeFolder(folder, SeekerPolicy);
                }

                options.Conventions.AuthorizePage("/Account/Delete", SeekerPolicy);
                options.Conventions.AuthorizePage("/Account/TwoStep", SignedInPolicy);
                options.Conventions.AddFolderApplicationModelConvention("/Account", page =>
                {
                    if (!IsAlwaysOpen(page.ViewEnginePath))
                    {
                        page.EndpointMetadata.Add(new Microsoft.AspNetCore.RateLimiting.EnableRateLimitingAttribute(Hosting.RateLimits.AccountFormsPolicy));
                    }
                });
                options.Conventions.AuthorizePage("/Consent/Share", SignedInPolicy);
                options.Conventions.ConfigureFilter(new PageSecurityHeaders());
                options.Conventions.ConfigureFilter(new Microsoft.AspNetCore.Mvc.ServiceFilterAttribute(typeof(Hosting.SignedInFormLimit)));
            })
            .AddViewLocalization()
            .AddDataAnnotationsLocalization(options =>
                options.DataAnnotationLocalizerProvider = (_, factory) => factory.Create(typeof(PageText)));
        return services;
    }

    /// <summary>Culture for the pages only: the API, the OAuth endpoints and the jobs keep the invariant culture.</summary>
    public static WebApplication UseGatewayPages(this WebApplication app)
    {
        app.UseWhen(context => IsPage(context.Request.Path), branch => branch.UseRequestLocalization());
        return app;
    }

    /// <summary>
    /// Errors on the pages are pages (Pages/Error), in the person's language: a browser sends Accept: */*, which the
    /// problem+json writer would otherwise answer with the API's JSON. Placed after the API's handlers, so that for a page
    /// these run first; the re-executed request then goes through the culture and the security headers like any page.
    /// </summary>
    public static WebApplication UseGatewayPageErrors(this WebApplication app)
    {
        app.UseWhen(context => IsPageRequest(context), branch =>
        {
            branch.UseExceptionHandler(new ExceptionHandlerOptions
            {
                ExceptionHandlingPath = "/Error",
                StatusCodeSelector = exception => Hosting.Problems.IsTransient(exception) ? StatusCodes.Status503ServiceUnavailable
                    : exception is BadHttpRequestException bad ? bad.StatusCode
                    : StatusCodes.Status500InternalServerError,
            });
            branch.UseStatusCodePagesWithReExecute("/Error/{0}");
        });
        return app;
    }

    /// <summary>A request for the pages (or their assets), not for the API, the OAuth endpoints or the operators' tools.</summary>
    public static bool IsPageRequest(HttpContext context) => IsPage(context.Request.Path);

    /// <summary>
    /// A cookie's name: with the __Host- prefix wherever cookies are Secure, so the browser takes it only from this host,
    /// Secure, for the whole path and no domain (a sibling subdomain cannot plant its own session or antiforgery cookie);
    /// plain over the plain http of development and tests, where the prefix would make the browser refuse the cookie.
    /// </summary>
    public static string CookieName(IHostEnvironment environment, string name) => environment.IsLocal() ? name : "__Host-" + name;

    /// <summary>The same rule as the session cookie's: Secure always, except over plain http in development and tests.</summary>
    public static CookieSecurePolicy SecurePolicy(IHostEnvironment environment) =>
        environment.IsLocal() ? CookieSecurePolicy.SameAsRequest : CookieSecurePolicy.Always;

    private static bool IsPage(PathString path) =>
        !(path.StartsWithSegments("/api") || path.StartsWithSegments("/connect") || path.StartsWithSegments("/.well-known")
            || path.StartsWithSegments("/health") || path.StartsWithSegments("/hangfire") || path.StartsWithSegments("/swagger"));
}
