using ExchangeGateway.Hosting;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Identity;

namespace ExchangeGateway.Auth;

public sealed record MeResponse(string Id, string Email);

public static class AccountEndpoints
{
    public static RouteGroupBuilder MapAccountEndpoints(this RouteGroupBuilder api)
    {
        var me = api.MapGroup("/me").RequireAuthorization(ApiScopes.CvManage).WithTags("Job seeker");
        me.MapGet("/", GetMe).WithName("GetMe").WithSummary("The signed-in job seeker's account id and e-mail address.");
        return api;
    }

    private static async Task<Results<Ok<MeResponse>, ProblemHttpResult>> GetMe(HttpContext context, UserManager<GatewayUser> users)
    {
        var user = await users.FindByIdAsync(context.User.Subject());
        return user is null
            ? Problems.NotFound("The account no longer exists.")
            : TypedResults.Ok(new MeResponse(user.Id, user.Email!));
    }
}
