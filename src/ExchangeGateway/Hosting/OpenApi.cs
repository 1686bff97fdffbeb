using ExchangeGateway.Auth;
using Microsoft.OpenApi;

namespace ExchangeGateway.Hosting;

/// <summary>Swagger UI with OAuth2 wired to our own authorization server (client credentials, and code + PKCE for people).</summary>
public static class OpenApi
{
    public const string DocumentName = "v1";
    private const string SchemeId = "oauth2";

    public static IServiceCollection AddGatewayOpenApi(this IServiceCollection services)
    {
        services.AddEndpointsApiExplorer();
        services.AddSwaggerGen(options =>
        {
            options.SwaggerDoc(DocumentName, new OpenApiInfo
            {
                Title = "ExchangeGateway API",
                Version = "v1",
                Description = "Consent and exchange gateway for job seekers' CVs. Errors are RFC 9457 problem details.",
                License = new OpenApiLicense { Name = "Apache-2.0", Url = new Uri("https://www.apache.org/licenses/LICENSE-2.0") },
            });
            // A CV document is any JSON Resume object, written through as it was stored: the same open schema as a JsonElement.
            options.MapType<Exchange.CvDocument>(() => new OpenApiSchema());
            var scopes = new Dictionary<string, string>
            {
                [ApiScopes.CvManage] = "Job seeker: manage my CV and my consents",
                [ApiScopes.CvRead] = "Recipient site: read the CVs shared with it",
                [ApiScopes.AuditRead] = "Auditor: read and verify the audit log",
                [ApiScopes.RecipientsAdmin] = "Operator: manage recipient sites",
            };
            // Relative URLs resolve against the server the document is served from, so the document is the same everywhere.
            options.AddSecurityDefinition(SchemeId, new OpenApiSecurityScheme
            {
                Type = SecuritySchemeType.OAuth2,
                Flows = new OpenApiOAuthFlows
                {
                    ClientCredentials = new OpenApiOAuthFlow { TokenUrl = new Uri("/connect/token", UriKind.Relative), Scopes = scopes },
                    AuthorizationCode = new OpenApiOAuthFlow
                    {
                        AuthorizationUrl = new Uri("/connect/authorize", UriKind.Relative),
                        TokenUrl = new Uri("/connect/token", UriKind.Relative),
                        Scopes = scopes,
                    },
                },
            });
            options.AddSecurityRequirement(document => new OpenApiSecurityRequirement
            {
                [new OpenApiSecuritySchemeReference(SchemeId, document)] = [.. ApiScopes.Api],
            });
        });
        return services;
    }

    public static WebApplication UseGatewayOpenApi(this WebApplication app)
    {
        app.UseSwagger();
        app.UseSwaggerUI(options =>
        {
            options.SwaggerEndpoint($"/swagger/{DocumentName}/swagger.json", "ExchangeGateway v1");
            options.DocumentTitle = "ExchangeGateway API";
            options.OAuthClientId(ClientRegistrations.SwaggerClientId);
            options.OAuthUsePkce();
            options.OAuthScopes(ApiScopes.CvManage);
        });
        return app;
    }
}
