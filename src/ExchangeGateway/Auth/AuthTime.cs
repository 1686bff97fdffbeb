using System.Globalization;
using System.Security.Claims;
using Microsoft.AspNetCore.Identity;
using Microsoft.Extensions.Options;
using static OpenIddict.Abstractions.OpenIddictConstants;

namespace ExchangeGateway.Auth;

/// <summary>
/// When the person signed in (<c>auth_time</c>, seconds since 1970), carried in the session for <c>max_age</c>. The
/// session's issue time cannot serve: the session is checked against the account on every request, and each check
/// issues the cookie again.
/// </summary>
public sealed class AuthTimeClaimsFactory(
    UserManager<GatewayUser> users, RoleManager<IdentityRole> roles, IOptions<IdentityOptions> options, TimeProvider time)
    : UserClaimsPrincipalFactory<GatewayUser, IdentityRole>(users, roles, options)
{
    protected override async Task<ClaimsIdentity> GenerateClaimsAsync(GatewayUser user)
    {
        var identity = await base.GenerateClaimsAsync(user);
        identity.AddClaim(new Claim(Claims.AuthenticationTime, time.GetUtcNow().ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture), ClaimValueTypes.Integer64));
        return identity;
    }

    /// <summary>The check's new principal keeps the sign-in's time (not the check's) and its second factor.</summary>
    public static Task KeepSignInTime(SecurityStampRefreshingPrincipalContext context)
    {
        if (context.CurrentPrincipal?.FindFirst(Claims.AuthenticationTime) is { } signedIn && context.NewPrincipal?.Identity is ClaimsIdentity identity)
        {
            foreach (var fresh in identity.FindAll(Claims.AuthenticationTime).ToList())
            {
                identity.RemoveClaim(fresh);
            }

            identity.AddClaim(new Claim(signedIn.Type, signedIn.Value, signedIn.ValueType));
        }

        // And how: a session opened with both factors stays one when the stamp check renews it.
        if (context.CurrentPrincipal is { } current && SecondFactor.HasBothFactors(current) && context.NewPrincipal?.Identity is ClaimsIdentity renewed
            && !SecondFactor.HasBothFactors(context.NewPrincipal))
        {
            renewed.AddClaim(new Claim(SecondFactor.AmrClaim, SecondFactor.Mfa));
        }

        return Task.CompletedTask;
    }

    /// <summary>When the session's holder signed in, or null for a session without the claim.</summary>
    public static DateTimeOffset? Of(ClaimsPrincipal? principal) =>
        principal?.FindFirst(Claims.AuthenticationTime)?.Value is { } value && long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var seconds)
            ? DateTimeOffset.FromUnixTimeSeconds(seconds)
            : null;
}
