using System.Net;
using System.Text.Json;
using ExchangeGateway.Exchange;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace ExchangeGateway.Tests.Exchange;

/// <summary>
/// What one site can make a node hold: a feed page stops at <see cref="SharedCvFeed.PageBytes"/> of documents (a hundred
/// CVs at the largest size allowed made a page of 25 MiB or more, held until the site had read it), and a site has at most
/// <see cref="FeedPageSlots.Limit"/> pages in flight per node (the rate limit bounds how often it asks, not how many
/// answers it holds open).
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class FeedBoundsTests(GatewayFixture fixture)
{
    private GatewayFactory Gateway => fixture.Factory;

    [Fact]
    public async Task APageOfLargeCvsStopsAtItsByteBudgetAndTheNextPageCarriesTheRest()
    {
        var site = await Sites.RegisterAsync(Gateway, fixture.Actors);
        // 34 CVs of 250 KiB: over 8 MiB in all, so the first page cannot hold them all.
        const int Count = 34;
        for (var i = 0; i < Count; i++)
        {
            var seeker = await fixture.Actors.NewSeekerAsync();
            var resume = Sharing.Resume("large-" + i);
            resume["basics"]!["summary"] = new string('x', 250 * 1024);
            using (var put = await Sharing.PutCvAsync(Gateway, seeker.Tokens.AccessToken, resume))
            {
                Assert.Equal(HttpStatusCode.Created, put.StatusCode);
            }

            await Sharing.TickAsync(Gateway, seeker.Tokens.AccessToken, site.Id);
        }

        using var client = Gateway.CreateHttpClient().WithToken(await fixture.Actors.TokenAsync(site));
        using var first = await client.GetAsync("/api/v1/shared-cvs?limit=100");
        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        var page = await first.ReadJsonAsync();
        var taken = page.GetProperty("items").GetArrayLength();
        Assert.InRange(taken, 1, Count - 1);
        Assert.True(first.Content.Headers.ContentLength is null or < SharedCvFeed.PageBytes + (1024 * 1024));
        Assert.Equal(JsonValueKind.String, page.GetProperty("nextCursor").ValueKind);

        var (rest, _) = await Sharing.ReadFeedAsync(Gateway, await fixture.Actors.TokenAsync(site), page.GetProperty("nextCursor").GetString());
        Assert.Equal(Count, taken + rest.Count);
    }

    [Fact]
    public async Task ASiteHasAtMostFourPagesInFlight()
    {
        var site = await Sites.RegisterAsync(Gateway, fixture.Actors);
        var slots = Gateway.Services.GetRequiredService<FeedPageSlots>();
        using var client = Gateway.CreateHttpClient().WithToken(await fixture.Actors.TokenAsync(site));

        // Four pages still being read by the site, as far as this node knows.
        for (var i = 0; i < FeedPageSlots.Limit; i++)
        {
            Assert.True(slots.TryEnter(site.Id));
        }

        try
        {
            using var refused = await client.GetAsync("/api/v1/shared-cvs");
            await refused.AssertProblemAsync(HttpStatusCode.TooManyRequests);
            Assert.NotNull(refused.Headers.RetryAfter);

            // Another site is not held back by this one.
            var other = await Sites.RegisterAsync(Gateway, fixture.Actors);
            using var otherClient = Gateway.CreateHttpClient().WithToken(await fixture.Actors.TokenAsync(other));
            Assert.Equal(HttpStatusCode.OK, (await otherClient.GetAsync("/api/v1/shared-cvs")).StatusCode);
        }
        finally
        {
            for (var i = 0; i < FeedPageSlots.Limit; i++)
            {
                slots.Leave(site.Id);
            }
        }

        // A page answered gives its slot back once it is written out.
        using (var answered = await client.GetAsync("/api/v1/shared-cvs"))
        {
            Assert.Equal(HttpStatusCode.OK, answered.StatusCode);
        }

        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (slots.InFlight(site.Id) != 0 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20);
        }

        Assert.Equal(0, slots.InFlight(site.Id));
    }
}
