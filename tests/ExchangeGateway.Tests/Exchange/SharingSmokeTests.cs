using System.Net;
using ExchangeGateway.Tests.Infrastructure;

namespace ExchangeGateway.Tests.Exchange;

[Collection(GatewayCollection.Name)]
public sealed class SharingSmokeTests(GatewayFixture fixture)
{
    [Fact]
    public async Task ATickedSiteReadsTheCvAndAfterUntickTheVeryNextReadIs404()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        var marker = "smoke-" + Guid.NewGuid().ToString("N");
        using (var put = await Sharing.PutCvAsync(fixture.Factory, seeker.Tokens.AccessToken, Sharing.Resume(marker)))
        {
            Assert.Equal(HttpStatusCode.Created, put.StatusCode);
        }

        var demo = await Sharing.RecipientIdAsync(fixture.Factory, seeker.Tokens.AccessToken, "Démo Emploi");
        await Sharing.TickAsync(fixture.Factory, seeker.Tokens.AccessToken, demo);

        var site = await fixture.Actors.DemoSiteTokenAsync();
        var (items, _) = await Sharing.ReadFeedAsync(fixture.Factory, site);
        var id = Sharing.PairwiseIdOf(items, marker);
        Assert.NotNull(id);

        using var client = fixture.Client().WithToken(site);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync($"/api/v1/shared-cvs/{id}")).StatusCode);

        using (var untick = await Sharing.UntickAsync(fixture.Factory, seeker.Tokens.AccessToken, demo))
        {
            Assert.Equal(HttpStatusCode.OK, untick.StatusCode);
        }

        await (await client.GetAsync($"/api/v1/shared-cvs/{id}")).AssertProblemAsync(HttpStatusCode.NotFound);
    }
}
