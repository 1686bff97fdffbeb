using ExchangeGateway.Auth;
using ExchangeGateway.Hosting;
using ExchangeGateway.Recipients;
using Microsoft.AspNetCore.Http.HttpResults;

namespace ExchangeGateway.Exchange;

public static class SharedCvEndpoints
{
    public static RouteGroupBuilder MapSharedCvEndpoints(this RouteGroupBuilder api)
    {
        var group = api.MapGroup("/shared-cvs").RequireAuthorization(ApiScopes.CvRead).AddEndpointFilter<RecipientGate>().WithTags("Recipient");
        group.MapGet("/", GetFeed).WithName("GetSharedCvs").WithMetadata(new PageLimit(MaxPage))
            .WithSummary("The change feed of CVs shared with the calling site: available CVs with their document, and withdrawals. nextCursor while more is waiting; resumeCursor, on every page, is where to ask again once caught up.");
        group.MapGet("/{id}", GetOne).WithName("GetSharedCv")
            .WithSummary("One CV shared with the calling site, by the site's own id for it; 404 whenever it is not available.");
        return api;
    }

    /// <summary>
    /// Documents per page at most (the other collections' rows are small and go to 500); a page also stops at
    /// <see cref="SharedCvFeed.PageBytes"/> of documents.
    /// </summary>
    public const int MaxPage = 100;

    private static async Task<Results<Ok<SharedCvPage>, ProblemHttpResult>> GetFeed(
        string? cursor, int? limit, HttpContext context, Cursors cursors, SharedCvFeed feed, FeedPageSlots slots)
    {
        var recipient = context.Recipient();
        // The collection name includes the site, so a cursor is worthless to any other site.
        var collection = "shared-cvs:" + recipient.Id;
        if (cursors.Read<long>(collection, cursor, limit, out var after, out var take, MaxPage) is { } problem)
        {
            return problem;
        }

        if (!slots.TryEnter(recipient.Id))
        {
            return Problems.RetryLater(context, StatusCodes.Status429TooManyRequests, "Too many pages at once",
                $"At most {FeedPageSlots.Limit} pages of the feed at a time per site: wait for one to finish, then ask again.");
        }

        // Held until the page is written out, however slowly the site reads it: that is when its documents are let go.
        context.Response.OnCompleted(() =>
        {
            slots.Leave(recipient.Id);
            return Task.CompletedTask;
        });
        var page = await feed.ReadPageAsync(recipient, after, take, position => cursors.Encode(collection, position), context.RequestAborted);
        return TypedResults.Ok(page);
    }

    private static async Task<Results<Ok<SharedCvItem>, ProblemHttpResult>> GetOne(string id, HttpContext context, SharedCvFeed feed)
    {
        var item = await feed.ReadOneAsync(context.Recipient(), id, context.RequestAborted);
        return item is null ? Problems.NotFound("No CV with this id is shared with you.") : TypedResults.Ok(item);
    }
}
