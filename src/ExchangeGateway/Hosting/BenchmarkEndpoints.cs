using ExchangeGateway.Auth;

namespace ExchangeGateway.Hosting;

/// <summary>
/// Two trivial endpoints for the benchmark's token-validation scenario, mapped only when <c>Benchmark:Endpoints</c> is true
/// (never by default) and left out of the OpenAPI document: the same handler, once anonymous and once behind the
/// <c>cv:read</c> policy, so the difference between them is the cost of validating a JWT.
/// </summary>
public static class BenchmarkEndpoints
{
    public static RouteGroupBuilder MapBenchmarkEndpoints(this RouteGroupBuilder api, IConfiguration configuration)
    {
        if (!configuration.GetValue("Benchmark:Endpoints", false))
        {
            return api;
        }

        var group = api.MapGroup("/benchmark").ExcludeFromDescription();
        group.MapGet("/anonymous", Ping).AllowAnonymous();
        group.MapGet("/protected", Ping).RequireAuthorization(ApiScopes.CvRead);
        return api;
    }

    private static Microsoft.AspNetCore.Http.HttpResults.Ok<Pong> Ping() => TypedResults.Ok(new Pong(true));

    public sealed record Pong(bool Ok);
}
