using System.Globalization;
using System.Security.Claims;
using ExchangeGateway.Consents;
using ExchangeGateway.Data;
using ExchangeGateway.Recipients;
using Microsoft.AspNetCore;
using Microsoft.AspNetCore.Antiforgery;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.AspNetCore.Identity;
using Microsoft.EntityFrameworkCore;
using Microsoft.IdentityModel.Tokens;
using OpenIddict.Abstractions;
using OpenIddict.Server.AspNetCore;
using static OpenIddict.Abstractions.OpenIddictConstants;

namespace ExchangeGateway.Auth;

/// <summary>
/// The pass-through handlers of the OpenIddict endpoints: OpenIddict validates the protocol, these decide who gets what.
/// Discovery, JWKS, revocation and introspection are answered by OpenIddict itself.
/// </summary>
public static class AuthorizationEndpoints
{
    public static IEndpointRouteBuilder MapAuthorizationEndpoints(this IEndpointRouteBuilder app)
    {
        var connect = app.MapGroup("/connect").ExcludeFromDescription().DisableAntiforgery();
        connect.MapMethods("/authorize", [HttpMethods.Get, HttpMethods.Post], Authorize);
        connect.MapPost("/token", Exchange);
        connect.MapMethods("/userinfo", [HttpMethods.Get, HttpMethods.Post], UserInfo);
        connect.MapMethods("/endsession", [HttpMethods.Get, HttpMethods.Post], EndSession);
        return app;
    }

    private static async Task<IResult> Authorize(
        HttpContext context, UserManager<GatewayUser> users, GatewayDbContext db, IAntiforgery antiforgery, ConsentDesk desk,
        IDataProtectionProvider dataProtection, TimeProvider time, SecondFactor twoFactor)
    {
        var request = context.GetOpenIddictServerRequest()
            ?? throw new InvalidOperationException("The OpenIddict request is missing.");

        // A job site asks for one thing only: the seeker's consent to receive the CV. Anything else is refused before sign-in.
        var recipient = await db.Recipients.AsNoTracking().SingleOrDefaultAsync(r => r.ClientId == request.ClientId, context.RequestAborted);
        if (recipient is not null)
        {
            if (!request.HasScope(ApiScopes.CvShare) || request.GetScopes().Any(s => s is not ApiScopes.CvShare and not Scopes.OpenId))
            {
                return Forbid(Errors.InvalidScope, "A job site may only ask for scope cv:share.");
            }

            if (!recipient.IsActive)
            {
                return Forbid(Errors.UnauthorizedClient, "This client is suspended.");
            }

            // A site's question always needs the seeker's answer, so prompt=none can never succeed: one answer, given before
            // the session is read, so that a site bouncing its visitors through here learns nothing about them (signed in
            // or not, a job seeker or staff, since when), which the different errors would tell it.
            if (request.HasPromptValue(PromptValues.None))
            {
                return Forbid(Errors.InteractionRequired, "A job site's request needs the job seeker's answer.");
            }
        }

        var session = await context.AuthenticateAsync(IdentityConstants.ApplicationScheme);
        var signedIn = AuthTimeClaimsFactory.Of(session.Principal) ?? session.Properties?.IssuedUtc;
        var now = time.GetUtcNow();
        // Whole seconds on the gateway's clock, which stamped the sign-in: auth_time has no finer grain, so max_age=0 is met
        // by a sign-in this second instead of never. Clamped: a huge max_age would overflow (a 500); a century is "any".
        var tooOld = request.MaxAge is { } maxAge && signedIn is { } at
            && now.ToUnixTimeSeconds() - at.ToUnixTimeSeconds() > Math.Clamp(maxAge, 0, 3_155_760_000);
        // Coming back from a sign-in this request asked for: only a sign-in made since then will do (see below).
        var signInAfter = context.Request.Query[SignInAfterParameter] is { Count: 1 } marker ? SignInAfter.Read(dataProtection, marker.ToString()) : null;
        var notSignedInSince = context.Request.Query.ContainsKey(SignInAfterParameter)
            && (signInAfter is null || signedIn is null || signedIn.Value.ToUnixTimeSeconds() < signInAfter.Value);
        // A staff session opened with a password alone (before the second factor was required, or while it was not) must
        // be opened again with both before staff scopes are issued from it.
        var oneFactorOnly = session.Succeeded && !twoFactor.Accepts(session.Principal!);
        if (!session.Succeeded || request.HasPromptValue(PromptValues.Login) || tooOld || notSignedInSince || oneFactorOnly)
        {
            if (request.HasPromptValue(PromptValues.None))
            {
                return Forbid(Errors.LoginRequired, "The user is not signed in.");
            }

            // prompt and max_age leave the return address (or signing in would loop), and a protected "signed in since T"
            // takes their place: the old session does not pass for a fresh sign-in, yet is not ended (any site could end a
            // seeker's session with a link otherwise).
            var returnUrl = context.Request.PathBase + context.Request.Path
                + QueryString.Create(MetParameters(context).Append(new(SignInAfterParameter, SignInAfter.Write(dataProtection, now.ToUnixTimeSeconds()))));
            return Results.Challenge(new AuthenticationProperties { RedirectUri = returnUrl }, [IdentityConstants.ApplicationScheme]);
        }

        var user = await users.GetUserAsync(session.Principal!);
        if (user is null)
        {
            return Forbid(Errors.LoginRequired, "The account no longer exists.");
        }

        if (recipient is not null)
        {
            return await ShareAsync(context, request, user, recipient, users, antiforgery, desk);
        }

        var identity = await CreateIdentityAsync(users, user, await users.GetRolesAsync(user), request.GetScopes(), signedIn, SecondFactor.HasBothFactors(session.Principal!));
        return Results.SignIn(new ClaimsPrincipal(identity), authenticationScheme: OpenIddictServerAspNetCoreDefaults.AuthenticationScheme);
    }

    /// <summary>
    /// The site-started consent (the explicit-consent pattern of the OpenIddict samples): the signed-in seeker is shown the
    /// site's name and one tick; the page posts the decision back here. Accepting is exactly a tick on the Partage page
    /// (ConsentDesk, with collection method oauth); refusing creates nothing and the site gets access_denied.
    /// </summary>
    private static async Task<IResult> ShareAsync(
        HttpContext context, OpenIddictRequest request, GatewayUser user, Recipients.Recipient recipient,
        UserManager<GatewayUser> users, IAntiforgery antiforgery, ConsentDesk desk)
    {
        var decision = context.Request.HasFormContentType ? context.Request.Form[ConsentForm.Decision].ToString() : "";
        if (decision.Length == 0)
        {
            if (request.HasPromptValue(PromptValues.None))
            {
                return Forbid(Errors.ConsentRequired, "The job seeker must be asked.");
            }

            // Without prompt and max_age: both were met just now, and a seeker who takes a while over the question must not
            // have the answer thrown away for a sign-in that has grown older meanwhile.
            return Results.Redirect("/Consent/Share" + QueryString.Create(MetParameters(context)));
        }

        // The decision arrives as a form post from our own page: without a valid antiforgery token it is nobody's decision.
        // The question is asked again (a form left open past its token's life is the usual cause), rather than leaving the
        // seeker on an empty error with no answer for the site either.
        try
        {
            await antiforgery.ValidateRequestAsync(context);
        }
        catch (AntiforgeryValidationException)
        {
            return Results.Redirect("/Consent/Share" + QueryString.Create(MetParameters(context).Append(new(ConsentForm.Expired, "1"))));
        }

        if (decision != ConsentForm.Accept)
        {
            return Forbid(Errors.AccessDenied, "The job seeker did not share the CV.");
        }

        // Staff are shown the page too (it tells them, and offers only the way back): sending them straight back to the site
        // would tell the site, without a click, that its visitor is signed in with a staff account.
        if (!await users.IsInRoleAsync(user, Roles.Seeker))
        {
            return Forbid(Errors.AccessDenied, "Only a job seeker can share a CV.");
        }

        if (context.Request.Form[ConsentForm.Share] != ConsentForm.ShareValue)
        {
            // "Share" without the tick: ask again rather than guess.
            return Results.Redirect("/Consent/Share" + QueryString.Create(RequestParameters(context).Append(new(ConsentForm.Missing, "1"))));
        }

        var ticked = await desk.TickAsync(user.Id, recipient.Id, CollectionMethod.Oauth, context.RequestAborted);
        if (ticked.Consent is null)
        {
            return Forbid(Errors.AccessDenied, "This site can no longer receive CVs.");
        }

        return Results.SignIn(new ClaimsPrincipal(ShareIdentity(ticked.Consent.PairwiseId)), authenticationScheme: OpenIddictServerAspNetCoreDefaults.AuthenticationScheme);
    }

    /// <summary>
    /// What a site learns from the flow: that a consent stands, under the site's own pairwise id for the CV (the id its feed
    /// shows). No gateway account id, no identity token, no audience: the token opens nothing in the API.
    /// </summary>
    private static ClaimsIdentity ShareIdentity(string pairwiseId)
    {
        var identity = new ClaimsIdentity(TokenValidationParameters.DefaultAuthenticationType, Claims.Name, Claims.Role);
        identity.SetClaim(Claims.Subject, pairwiseId);
        identity.SetScopes(ApiScopes.CvShare);
        identity.SetDestinations(_ => [Destinations.AccessToken]);
        return identity;
    }

    /// <summary>
    /// RFC 6749 §3.3's default for a client_credentials request without <c>scope</c>: the API scopes the client may ask for
    /// with its own credentials (cv:read for a site, audit:read for an auditors' client), rather than a token that opens
    /// nothing. cv:share is a seeker's answer, never the client's own.
    /// </summary>
    private static async Task<IEnumerable<string>> OwnCredentialScopesAsync(
        IOpenIddictApplicationManager applications, object application, CancellationToken cancellationToken) =>
        (await applications.GetPermissionsAsync(application, cancellationToken))
            .Where(p => p.StartsWith(Permissions.Prefixes.Scope, StringComparison.Ordinal))
            .Select(p => p[Permissions.Prefixes.Scope.Length..])
            .Where(ApiScopes.Api.Contains)
            .ToList();

    /// <summary>The request's parameters once the sign-in it asks for (prompt, max_age) is dealt with: without those two.</summary>
    private static IEnumerable<KeyValuePair<string, string?>> MetParameters(HttpContext context) =>
        RequestParameters(context).Where(p => p.Key is not Parameters.Prompt and not Parameters.MaxAge);

    /// <summary>The OAuth parameters of the request, without the consent form's own fields.</summary>
    private static List<KeyValuePair<string, string?>> RequestParameters(HttpContext context)
    {
        var source = context.Request.HasFormContentType
            ? context.Request.Form.Select(p => new KeyValuePair<string, Microsoft.Extensions.Primitives.StringValues>(p.Key, p.Value))
            : context.Request.Query;
        return source
            .Where(p => !ConsentForm.IsOwnField(p.Key))
            .SelectMany(p => p.Value.Select(v => new KeyValuePair<string, string?>(p.Key, v)))
            .ToList();
    }

    /// <summary>The token response's parameter naming the shared CV by the site's own id for it (the feed's <c>id</c>).</summary>
    public const string CvIdParameter = "cv_id";

    private static async Task<IResult> Exchange(
        HttpContext context, UserManager<GatewayUser> users, IOpenIddictApplicationManager applications, GatewayDbContext db, TimeProvider time,
        SecondFactor twoFactor)
    {
        var request = context.GetOpenIddictServerRequest()
            ?? throw new InvalidOperationException("The OpenIddict request is missing.");

        if (request.IsClientCredentialsGrantType())
        {
            var application = await applications.FindByClientIdAsync(request.ClientId!, context.RequestAborted)
                ?? throw new InvalidOperationException("OpenIddict authenticated an unknown client.");

            // A suspended site still gets tokens: it reads no CV (RecipientGate refuses it on every CV call), but it holds
            // copies, and must go on fetching its erasure events and confirming deletions long after a token issued before
            // the suspension has run out. An operator who suspects the credentials rotates them (or the site's keys).
            var identity = new ClaimsIdentity(TokenValidationParameters.DefaultAuthenticationType, Claims.Name, Claims.Role);
            identity.SetClaim(Claims.Subject, request.ClientId)
                .SetClaim(Claims.Name, await applications.GetDisplayNameAsync(application, context.RequestAborted));
            identity.SetScopes(request.GetScopes() is { IsEmpty: false } asked ? asked : await OwnCredentialScopesAsync(applications, application, context.RequestAborted));
            identity.SetResources(ApiScopes.Audience);
            if (await db.Recipients.AsNoTracking().Where(r => r.ClientId == request.ClientId)
                .Select(r => (int?)r.CredentialGeneration).SingleOrDefaultAsync(context.RequestAborted) is { } generation)
            {
                identity.SetClaim(Recipient.CredentialClaim, generation.ToString(CultureInfo.InvariantCulture));
            }

            identity.SetDestinations(_ => [Destinations.AccessToken]);
            return Results.SignIn(new ClaimsPrincipal(identity), authenticationScheme: OpenIddictServerAspNetCoreDefaults.AuthenticationScheme);
        }

        if (request.IsAuthorizationCodeGrantType() || request.IsRefreshTokenGrantType())
        {
            var result = await context.AuthenticateAsync(OpenIddictServerAspNetCoreDefaults.AuthenticationScheme);
            var subject = result.Principal?.GetClaim(Claims.Subject);
            if (result.Principal?.HasScope(ApiScopes.CvShare) == true)
            {
                // A site-started consent: worth a token only while that consent still stands and the site may still receive.
                var now = time.GetUtcNow();
                var standing = await db.Set<Consent>().AnyAsync(
                    c => c.PairwiseId == subject && c.State == ConsentState.Active && c.ExpiresAt > now
                        && db.Recipients.Any(r => r.Id == c.RecipientId && r.ClientId == request.ClientId && r.Status == Recipients.RecipientStatus.Active),
                    context.RequestAborted);
                // The CV's id for the site also as a parameter of the token response: OAuth has the site treat the access
                // token as opaque, so it should not have to decode it to learn which CV the seeker shared.
                return standing
                    ? Results.SignIn(new ClaimsPrincipal(ShareIdentity(subject!)),
                        new AuthenticationProperties(items: null, parameters: new Dictionary<string, object?> { [CvIdParameter] = subject }),
                        OpenIddictServerAspNetCoreDefaults.AuthenticationScheme)
                    : Forbid(Errors.InvalidGrant, "The consent no longer stands.");
            }

            // Not refused for a lockout: that only stops password guesses, and anyone who knows the address can set it off.
            var user = subject is null ? null : await users.FindByIdAsync(subject);
            if (user is null || !user.EmailConfirmed)
            {
                return Forbid(Errors.InvalidGrant, "The account is no longer allowed to sign in.");
            }

            // A new password changes the account's stamp: a code or refresh token from before it is refused here, even if
            // the reset's revocation of the account's tokens never ran (an aborted request, a lost connection). A token
            // without a stamp (issued before they were carried) is refused too: its holder signs in once more.
            var carried = result.Principal!.GetClaim(StampClaim);
            if (carried is null || carried != StampOf(await users.GetSecurityStampAsync(user)))
            {
                return Forbid(Errors.InvalidGrant, "The account's password changed since: sign in again.");
            }

            // A staff member's code or refresh token from a sign-in without the second factor (made before it was required,
            // or on a node that did not require it) is not renewed: its holder signs in again, with the code.
            var bothFactors = SecondFactor.HasBothFactors(result.Principal!);
            var roles = await users.GetRolesAsync(user);
            if (!bothFactors && twoFactor.Required && SecondFactor.IsStaff(roles))
            {
                return Forbid(Errors.InvalidGrant, "Sign in again, with your second factor.");
            }

            // Rebuilt from the live account so that a role removed since sign-in is not carried by a refreshed token.
            var identity = await CreateIdentityAsync(users, user, roles, result.Principal!.GetScopes(), AuthTimeClaimsFactory.Of(result.Principal), bothFactors);
            return Results.SignIn(new ClaimsPrincipal(identity), authenticationScheme: OpenIddictServerAspNetCoreDefaults.AuthenticationScheme);
        }

        return Forbid(Errors.UnsupportedGrantType, "The grant type is not supported.");
    }

    private static async Task<IResult> UserInfo(HttpContext context, UserManager<GatewayUser> users)
    {
        var result = await context.AuthenticateAsync(OpenIddictServerAspNetCoreDefaults.AuthenticationScheme);
        var subject = result.Principal?.GetClaim(Claims.Subject);
        var user = subject is null ? null : await users.FindByIdAsync(subject);
        if (user is null)
        {
            return Results.Challenge(
                new AuthenticationProperties(new Dictionary<string, string?>
                {
                    [OpenIddictServerAspNetCoreConstants.Properties.Error] = Errors.InvalidToken,
                    [OpenIddictServerAspNetCoreConstants.Properties.ErrorDescription] = "The account no longer exists.",
                }),
                [OpenIddictServerAspNetCoreDefaults.AuthenticationScheme]);
        }

        var claims = new Dictionary<string, object>(StringComparer.Ordinal) { [Claims.Subject] = user.Id };
        if (result.Principal!.HasScope(Scopes.Email))
        {
            claims[Claims.Email] = user.Email!;
            claims[Claims.EmailVerified] = user.EmailConfirmed;
        }

        // The user name is the e-mail address: profile alone does not give it (OIDC Core §5.4 puts the address under email).
        if (result.Principal!.HasScope(Scopes.Profile) && result.Principal!.HasScope(Scopes.Email))
        {
            claims[Claims.PreferredUsername] = user.UserName!;
        }

        return Results.Ok(claims);
    }

    /// <summary>
    /// RP-initiated logout. A GET (a link, an image, a script on any site) only leads to the sign-out page, which asks; that
    /// page posts back here with its antiforgery token, and only that post signs the person out and returns to the client.
    /// </summary>
    private static async Task<IResult> EndSession(HttpContext context, SignInManager<GatewayUser> signIn, IAntiforgery antiforgery)
    {
        if (!HttpMethods.IsPost(context.Request.Method))
        {
            return Results.Redirect("/Account/Logout" + context.Request.QueryString);
        }

        try
        {
            await antiforgery.ValidateRequestAsync(context);
        }
        catch (AntiforgeryValidationException)
        {
            return Results.Redirect("/Account/Logout" + QueryString.Create(RequestParameters(context)));
        }

        await signIn.SignOutAsync();
        return Results.SignOut(new AuthenticationProperties { RedirectUri = "/" }, [OpenIddictServerAspNetCoreDefaults.AuthenticationScheme]);
    }

    /// <summary>
    /// A person's tokens, with the API scopes their role permits. auth_time (when they signed in, kept across refreshes) goes
    /// to the id_token, where OIDC clients that sent max_age or prompt=login check it.
    /// </summary>
    private static async Task<ClaimsIdentity> CreateIdentityAsync(
        UserManager<GatewayUser> users, GatewayUser user, IList<string> roles, IEnumerable<string> requested, DateTimeOffset? signedIn, bool bothFactors)
    {
        var grantable = ApiScopes.GrantableTo(roles).ToHashSet(StringComparer.Ordinal);
        // People get the identity scopes they asked for, and of the API scopes only those their role permits.
        var granted = requested.Where(scope => grantable.Contains(scope) || !ApiScopes.Api.Contains(scope)).ToArray();

        var identity = new ClaimsIdentity(TokenValidationParameters.DefaultAuthenticationType, Claims.Name, Claims.Role);
        identity.SetClaim(Claims.Subject, user.Id)
            .SetClaim(Claims.Email, user.Email)
            .SetClaim(Claims.Name, user.UserName)
            .SetClaim(StampClaim, StampOf(await users.GetSecurityStampAsync(user)))
            .SetClaims(Claims.Role, [.. roles]);
        if (signedIn is { } at)
        {
            identity.AddClaim(new Claim(Claims.AuthenticationTime, at.ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture), ClaimValueTypes.Integer64));
        }

        if (bothFactors)
        {
            identity.AddClaim(new Claim(SecondFactor.AmrClaim, SecondFactor.Mfa));
        }

        identity.SetScopes(granted);
        identity.SetResources(ApiScopes.Audience);
        identity.SetDestinations(claim => claim.Type switch
        {
            // The e-mail address is personal data: it goes to the id_token when asked for, never into access tokens.
            Claims.Email when identity.HasScope(Scopes.Email) => [Destinations.IdentityToken],
            Claims.Email => [],
            // The name is the address too: only to a client also given the address.
            Claims.Name when identity.HasScope(Scopes.Profile) && identity.HasScope(Scopes.Email) => [Destinations.IdentityToken],
            Claims.Name => [],
            Claims.Role => [Destinations.AccessToken],
            Claims.AuthenticationTime => [Destinations.IdentityToken],
            // Kept only in codes and refresh tokens (OpenIddict keeps every claim there), for the checks above.
            StampClaim or SecondFactor.AmrClaim => [],
            _ => [Destinations.AccessToken],
        });
        return identity;
    }

    internal const string StampClaim = "eg_stamp";

    private const string SignInAfterParameter = "eg_signed_in_after";

    /// <summary>A digest of the account's security stamp: the stamp itself also guards the sign-in cookie.</summary>
    private static string StampOf(string? stamp) =>
        Convert.ToBase64String(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(stamp ?? "")), 0, 16);

    private static IResult Forbid(string error, string description) =>
        Results.Forbid(
            new AuthenticationProperties(new Dictionary<string, string?>
            {
                [OpenIddictServerAspNetCoreConstants.Properties.Error] = error,
                [OpenIddictServerAspNetCoreConstants.Properties.ErrorDescription] = description,
            }),
            [OpenIddictServerAspNetCoreDefaults.AuthenticationScheme]);
}

/// <summary>
/// "Signed in at or after T" (Unix seconds), protected so that a return address cannot be given an older T. It starts with
/// eg_, so the consent page and its post leave it out (ConsentForm.IsOwnField): by then it has been met.
/// </summary>
internal static class SignInAfter
{
    private const string Purpose = "ExchangeGateway.Auth.SignInAfter.v1";

    public static string Write(IDataProtectionProvider provider, long unixSeconds) =>
        provider.CreateProtector(Purpose).Protect(unixSeconds.ToString(CultureInfo.InvariantCulture));

    public static long? Read(IDataProtectionProvider provider, string value)
    {
        try
        {
            return long.TryParse(provider.CreateProtector(Purpose).Unprotect(value), NumberStyles.None, CultureInfo.InvariantCulture, out var seconds)
                ? seconds
                : null;
        }
        catch (System.Security.Cryptography.CryptographicException)
        {
            return null;
        }
    }
}

/// <summary>The fields the consent page posts back to /connect/authorize besides the OAuth parameters.</summary>
public static class ConsentForm
{
    public const string Decision = "eg_decision";
    public const string Accept = "accept";
    public const string Refuse = "refuse";
    public const string Share = "eg_share";
    public const string ShareValue = "yes";
    public const string Missing = "eg_missing";
    public const string Expired = "eg_expired";
    /// <summary>Back on the page from "still looking", pressed on its notice that the CV was offline.</summary>
    public const string Refreshed = "eg_refreshed";

    public static bool IsOwnField(string name) =>
        name.StartsWith("eg_", StringComparison.Ordinal) || name == "__RequestVerificationToken";
}
