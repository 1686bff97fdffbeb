using ExchangeGateway.Data;
using ExchangeGateway.Hosting;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.AspNetCore.Identity;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.Tokens;
using OpenIddict.Server;
using static OpenIddict.Abstractions.OpenIddictConstants;

namespace ExchangeGateway.Auth;

public static class AuthSetup
{
    /// <summary>Policy names equal scope names, so route groups read <c>RequireAuthorization(ApiScopes.CvRead)</c>.</summary>
    public static IServiceCollection AddGatewayAuth(this IServiceCollection services, IHostEnvironment environment)
    {
        services.AddOptions<AuthOptions>().BindConfiguration(AuthOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<SigningKeyRing>();
        services.AddSingleton<TokenRefusalAudit.Window>();

        services.AddIdentity<GatewayUser, IdentityRole>(options =>
            {
                options.User.RequireUniqueEmail = true;
                // The address is the user name: any address the sign-up form takes (o'brien@…, é@…) is one, not only the
                // letters, digits and -._@+ of Identity's default.
                options.User.AllowedUserNameCharacters = "";
                // An account is used only once its address is confirmed: sign-up can then answer alike for every address.
                options.SignIn.RequireConfirmedEmail = true;
                options.Password.RequiredLength = 12;
                options.ClaimsIdentity.UserIdClaimType = Claims.Subject;
                options.ClaimsIdentity.UserNameClaimType = Claims.Name;
                options.ClaimsIdentity.RoleClaimType = Claims.Role;
            })
            .AddEntityFrameworkStores<GatewayDbContext>()
            .AddDefaultTokenProviders()
            .AddClaimsPrincipalFactory<AuthTimeClaimsFactory>();

        // Confirmation and reset links: a day, as the pages and mails say (Identity's default, stated here so it stays so).
        services.Configure<DataProtectionTokenProviderOptions>(options => options.TokenLifespan = TimeSpan.FromDays(1));

        // Wrong passwords are counted by SignInThrottle, per account and network, in windows that end; Identity's lockout
        // (a count that never expires) is not used.
        services.AddScoped<SignInThrottle>();
        services.AddScoped<SecondFactor>();
        // Between the password and the code: long enough to install an authenticator app and add the account at enrolment.
        services.Configure<Microsoft.AspNetCore.Authentication.Cookies.CookieAuthenticationOptions>(IdentityConstants.TwoFactorUserIdScheme, options =>
        {
            options.ExpireTimeSpan = SecondFactor.Pending;
            options.SlidingExpiration = false;
            options.Cookie.Name = Pages.PagesSetup.CookieName(environment, "eg.two-factor");
            options.Cookie.HttpOnly = true;
            options.Cookie.SameSite = SameSiteMode.Lax;
            options.Cookie.SecurePolicy = Pages.PagesSetup.SecurePolicy(environment);
        });

        // A session cookie is checked against the account on every request, not every 30 minutes: a password reset or an
        // erasure ends every browser's session at its next page. One indexed read per page; the API uses tokens.
        services.Configure<SecurityStampValidatorOptions>(options =>
        {
            options.ValidationInterval = TimeSpan.Zero;
            options.OnRefreshingPrincipal = AuthTimeClaimsFactory.KeepSignInTime;
        });
        services.ConfigureApplicationCookie(options =>
        {
            options.LoginPath = "/Account/Login";
            options.LogoutPath = "/Account/Logout";
            options.AccessDeniedPath = "/Account/AccessDenied";
            options.Cookie.Name = Pages.PagesSetup.CookieName(environment, "eg.session");
            options.Cookie.HttpOnly = true;
            options.Cookie.SameSite = SameSiteMode.Lax;
            options.Cookie.SecurePolicy = Pages.PagesSetup.SecurePolicy(environment);
            // An API caller without a bearer token must get 401, not a redirect to an HTML page.
            options.Events.OnRedirectToLogin = context => RedirectUnlessApi(context, StatusCodes.Status401Unauthorized);
            options.Events.OnRedirectToAccessDenied = context => RedirectUnlessApi(context, StatusCodes.Status403Forbidden);
        });

        services.AddOpenIddict()
            .AddCore(options =>
            {
                options.UseEntityFrameworkCore().UseDbContext<GatewayDbContext>();
                options.ReplaceApplicationManager<OpenIddict.EntityFrameworkCore.Models.OpenIddictEntityFrameworkCoreApplication, Recipients.GatewayApplicationManager>();
            })
            .AddServer(options =>
            {
                options.SetAuthorizationEndpointUris("connect/authorize")
                    .SetTokenEndpointUris("connect/token")
                    .SetRevocationEndpointUris("connect/revoke")
                    .SetIntrospectionEndpointUris("connect/introspect")
                    .SetUserInfoEndpointUris("connect/userinfo")
                    .SetEndSessionEndpointUris("connect/endsession")
                    .SetJsonWebKeySetEndpointUris(".well-known/jwks");

                options.AllowClientCredentialsFlow()
                    .AllowAuthorizationCodeFlow()
                    .AllowRefreshTokenFlow()
                    .RequireProofKeyForCodeExchange();

                options.AddEventHandler(TokenRefusalAudit.Descriptor);
                options.AddEventHandler(VerificationKeysPublisher.Descriptor);
                options.AddEventHandler(AccessTokenRevocation.Descriptor);
                options.AddEventHandler(ClientAssertionReplay.Descriptor);
                options.AddEventHandler(AssertionAlgorithms.Descriptor);
                foreach (var handler in AccountLockAtIssuance.Descriptors)
                {
                    options.AddEventHandler(handler);
                }

                options.RegisterScopes([Scopes.OpenId, Scopes.Profile, Scopes.Email, Scopes.OfflineAccess, ApiScopes.CvShare, .. ApiScopes.Api]);

                // JwtBearer on the API reads plain signed JWTs; encrypted access tokens would be opaque to it.
                options.DisableAccessTokenEncryption();

                var aspNetCore = options.UseAspNetCore()
                    .EnableAuthorizationEndpointPassthrough()
                    .EnableTokenEndpointPassthrough()
                    .EnableUserInfoEndpointPassthrough()
                    .EnableEndSessionEndpointPassthrough();
                if (environment.IsLocal())
                {
                    aspNetCore.DisableTransportSecurityRequirement();
                }
            });

        // Lifetimes, issuer and keys depend on validated options and on the database, so they are applied lazily.
        services.AddOptions<OpenIddictServerOptions>()
            .Configure<IOptions<AuthOptions>, SigningKeyRing, TimeProvider>((server, auth, ring, time) =>
            {
                // One clock for the whole gateway, so that tests can move it (FakeTimeProvider) and tokens follow.
                server.TimeProvider = time;
                server.Issuer = auth.Value.Issuer;
                server.AccessTokenLifetime = auth.Value.AccessTokenLifetime;
                server.RefreshTokenLifetime = auth.Value.RefreshTokenLifetime;
                server.SigningCredentials.Insert(0, ring.TokenCredentials);
                server.SigningCredentials.Add(ring.EventCredentials);
                server.EncryptionCredentials.Insert(0, ring.ServerEncryptionCredentials);
                // What OpenIddict reads back (codes, refresh tokens) may be signed by a key this node only verifies: the
                // previous one after a replacement, or the next one on a node not yet replaced.
                server.TokenValidationParameters.IssuerSigningKeyResolver = (_, _, _, _) => ring.ValidationKeys;
                // After the current key, so never used to encrypt: codes and refresh tokens issued under another key stay readable.
                foreach (var other in ring.DecryptionCredentials)
                {
                    server.EncryptionCredentials.Add(other);
                }

                // PKCE with S256 only: "plain" offers no protection against an intercepted code.
                server.CodeChallengeMethods.Clear();
                server.CodeChallengeMethods.Add(CodeChallengeMethods.Sha256);
            });

        services.AddOptions<OpenIddict.Core.OpenIddictCoreOptions>()
            .Configure<TimeProvider>((core, time) => core.TimeProvider = time);

        services.AddAuthentication()
            .AddJwtBearer(options =>
            {
                options.MapInboundClaims = false;
                options.TokenValidationParameters.NameClaimType = Claims.Subject;
                options.TokenValidationParameters.RoleClaimType = Claims.Role;
            });
        services.AddSingleton<ValidatedTokens>();
        services.AddOptions<JwtBearerOptions>(JwtBearerDefaults.AuthenticationScheme)
            .Configure<IOptions<AuthOptions>, SigningKeyRing, TimeProvider>((jwt, auth, ring, time) =>
            {
                var parameters = jwt.TokenValidationParameters;
                // Lifetimes are judged by the gateway's clock (see OpenIddict above), not by DateTime.UtcNow.
                parameters.LifetimeValidator = (notBefore, expires, _, validation) =>
                {
                    var now = time.GetUtcNow().UtcDateTime;
                    return (notBefore is null || notBefore.Value <= now + validation.ClockSkew)
                        && expires is not null && expires.Value > now - validation.ClockSkew;
                };
                parameters.ValidIssuer = auth.Value.Issuer!.AbsoluteUri;
                parameters.ValidAudience = ApiScopes.Audience;
                parameters.ValidTypes = [JsonWebTokenTypes.AccessToken];
                // Access tokens are RS256 under the token keys only. The ES256 keys sign events and audit checkpoints and are
                // published for sites to verify them; a retired one is kept for old checkpoints: none may mint a token.
                parameters.ValidAlgorithms = [SecurityAlgorithms.RsaSha256];
                parameters.IssuerSigningKeyResolver = (_, _, _, _) => ring.ValidationKeys.Where(k => k is RsaSecurityKey);
                parameters.ClockSkew = TimeSpan.FromSeconds(30);
            })
            .Configure(jwt =>
            {
                // RFC 6750 §3.1: a token that is valid but lacks the scope is told so, and which scope the operation needs.
                jwt.Events ??= new JwtBearerEvents();
                jwt.Events.OnForbidden = context =>
                {
                    var needed = context.HttpContext.GetEndpoint()?.Metadata.GetOrderedMetadata<Microsoft.AspNetCore.Authorization.IAuthorizeData>()
                        .Select(a => a.Policy).FirstOrDefault(p => p is not null && ApiScopes.Api.Contains(p));
                    if (needed is not null && !ApiScopes.Has(context.HttpContext.User, needed))
                    {
                        context.Response.Headers.WWWAuthenticate = $"Bearer error=\"insufficient_scope\", scope=\"{needed}\"";
                    }

                    return Task.CompletedTask;
                };
            })
            .Configure<IOptions<AuthOptions>, ValidatedTokens>((jwt, auth, validated) =>
            {
                if (auth.Value.CacheValidatedTokens)
                {
                    jwt.Events ??= new JwtBearerEvents();
                    jwt.Events.OnMessageReceived = validated.TryRecallAsync;
                    jwt.Events.OnTokenValidated = validated.RememberAsync;
                }
            });

        var authorization = services.AddAuthorizationBuilder();
        foreach (var scope in ApiScopes.Api)
        {
            authorization.AddPolicy(scope, policy => policy
                .AddAuthenticationSchemes(JwtBearerDefaults.AuthenticationScheme)
                .RequireAuthenticatedUser()
                .RequireAssertion(context => ApiScopes.Has(context.User, scope)));
        }

        return services;
    }

    private static Task RedirectUnlessApi(Microsoft.AspNetCore.Authentication.RedirectContext<Microsoft.AspNetCore.Authentication.Cookies.CookieAuthenticationOptions> context, int status)
    {
        if (context.Request.Path.StartsWithSegments("/api", StringComparison.OrdinalIgnoreCase)
            || context.Request.Path.StartsWithSegments("/hangfire", StringComparison.OrdinalIgnoreCase) && status == StatusCodes.Status403Forbidden)
        {
            context.Response.StatusCode = status;
            return Task.CompletedTask;
        }

        context.Response.Redirect(context.RedirectUri);
        return Task.CompletedTask;
    }
}
