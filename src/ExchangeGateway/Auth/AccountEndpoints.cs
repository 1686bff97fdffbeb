using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Identity;

namespace ExchangeGateway.Auth;

/// <summary>The account: its id, its address, and whether signing in takes a code besides the password.</summary>
/// <summary>The account as its holder sees it (and as their export gives it): roles include staff ones an account may also hold.</summary>
public sealed record MeResponse(string Id, string Email, bool EmailConfirmed, DateTimeOffset CreatedAt, IReadOnlyList<string> Roles, bool TwoStepSignIn)
{
    public static async Task<MeResponse> OfAsync(GatewayUser user, UserManager<GatewayUser> users) =>
        new(user.Id, user.Email!, user.EmailConfirmed, user.CreatedAt, [.. (await users.GetRolesAsync(user)).Order(StringComparer.Ordinal)], user.TwoFactorEnabled);
}

public static class AccountEndpoints
{
    public static RouteGroupBuilder MapAccountEndpoints(this RouteGroupBuilder api)
    {
        var me = api.MapGroup("/me").RequireAuthorization(ApiScopes.CvManage).WithTags("Job seeker");
        me.MapGet("/", GetMe).WithName("GetMe").WithSummary("The signed-in job seeker's account: id, e-mail address and whether it was confirmed, when it was made, its roles, and whether two-step sign-in is on (turned on and off from the pages).");
        return api;
    }

    /// <summary>A token that outlived its account is answered as every API call answers it: 401, the token's subject is gone.</summary>
    private static async Task<Ok<MeResponse>> GetMe(HttpContext context, UserManager<GatewayUser> users)
    {
        var user = await users.FindByIdAsync(context.User.Subject()) ?? throw new AccountGoneException();
        return TypedResults.Ok(await MeResponse.OfAsync(user, users));
    }
}
