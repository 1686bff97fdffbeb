using System.ComponentModel.DataAnnotations;

namespace ExchangeGateway.Hosting;

/// <summary>The browser origins allowed to call the API with a user's token (configuration section <c>Cors</c>); none by default.</summary>
public sealed class CrossOriginOptions : IValidatableObject
{
    public const string Section = "Cors";

    public string[] AllowedOrigins { get; set; } = [];

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        // A browser sends its origin as scheme://host[:port], nothing more: "https://jobs.example/" would match no request
        // and leave the site's calls failing without a word, and "*" would open the API to every page on the web.
        foreach (var origin in AllowedOrigins)
        {
            if (!Uri.TryCreate(origin, UriKind.Absolute, out var uri) || uri.Scheme is not ("https" or "http")
                || !string.Equals(uri.GetLeftPart(UriPartial.Authority), origin, StringComparison.OrdinalIgnoreCase))
            {
                yield return new ValidationResult(
                    $"'{origin}' is not an origin: scheme://host[:port] over http or https, without a path or a trailing slash",
                    [nameof(AllowedOrigins)]);
            }
        }
    }
}

public static class CrossOrigin
{
    /// <summary>CORS stays closed unless origins are configured: browsers elsewhere cannot call the API with a user's token.</summary>
    public static IServiceCollection AddGatewayCors(this IServiceCollection services, IConfiguration configuration)
    {
        var origins = StartupOptions.Bind<CrossOriginOptions>(services, configuration, CrossOriginOptions.Section).AllowedOrigins;
        if (origins.Length > 0)
        {
            services.AddCors(cors => cors.AddDefaultPolicy(policy => policy
                .WithOrigins(origins).WithMethods("GET", "PUT", "POST", "DELETE", "PATCH").WithHeaders("Authorization", "Content-Type", "If-Match")
                // What a browser client needs to read: the version for If-Match, when to retry, where a new resource is, and
                // its allowance, to pace itself.
                .WithExposedHeaders("ETag", "Retry-After", "Location", RateLimits.PolicyHeader, RateLimits.StateHeader)));
        }

        return services;
    }

    public static WebApplication UseGatewayCors(this WebApplication app)
    {
        if (app.Services.GetRequiredService<Microsoft.Extensions.Options.IOptions<CrossOriginOptions>>().Value.AllowedOrigins.Length > 0)
        {
            app.UseCors();
        }

        return app;
    }
}
