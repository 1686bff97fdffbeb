using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Identity;

namespace ExchangeGateway.Auth;

/// <summary>The account: its id, its address, and whether signing in takes a code besides the password.</summary>
public sealed record MeResponse(string Id, string Email, bool TwoStepSignIn)
{
    public static MeResponse Of(GatewayUser user) => new(user.Id, user.Email!, user.TwoFactorEnabled);
}

public static class AccountEndpoints
{
    public static RouteGroupBuilder MapAccountEndpoints(this RouteGroupBuilder api)
    {
        var me = api.MapGroup("/me").RequireAuthorization(ApiScopes.CvManage).WithTags("Job seeker");
        me.MapGet("/", GetMe).WithName("GetMe").WithSummary("The signed-in job seeker's account id, e-mail address, and whether two-step sign-in is on (turned on and off from the pages).");
        return api;
    }

    /// <summary>A token that outlived its account is answered as every API call answers it: 401, the token's subject is gone.</summary>
    private static async Task<Ok<MeResponse>> GetMe(HttpContext context, UserManager<GatewayUser> users)
    {
        var user = await users.FindByIdAsync(context.User.Subject()) ?? throw new AccountGoneException();
        return TypedResults.Ok(MeResponse.Of(user));
    }
}
