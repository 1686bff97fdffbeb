using ExchangeGateway.Auth;
using ExchangeGateway.Hosting;
using ExchangeGateway.Recipients;
using Microsoft.AspNetCore.Http.HttpResults;

namespace ExchangeGateway.Exchange;

public sealed record SharedCvItem(string Id);

public static class SharedCvEndpoints
{
    public static RouteGroupBuilder MapSharedCvEndpoints(this RouteGroupBuilder api)
    {
        var group = api.MapGroup("/shared-cvs").RequireAuthorization(ApiScopes.CvRead).AddEndpointFilter<RecipientGate>().WithTags("Recipient");
        group.MapGet("/", GetFeed).WithName("GetSharedCvs").WithSummary("The change feed of CVs shared with the calling site.");
        return api;
    }

    private static Results<Ok<Page<SharedCvItem>>, ProblemHttpResult> GetFeed(string? cursor, int? limit, Cursors cursors)
    {
        if (cursors.Read<long>("shared-cvs", cursor, limit, out _, out _) is ProblemHttpResult problem)
        {
            return problem;
        }

        return TypedResults.Ok(new Page<SharedCvItem>([], null));
    }
}
