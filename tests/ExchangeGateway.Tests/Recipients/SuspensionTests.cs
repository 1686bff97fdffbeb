using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using ExchangeGateway.Auth;
using ExchangeGateway.Tests.Infrastructure;

namespace ExchangeGateway.Tests.Recipients;

[Collection(GatewayCollection.Name)]
public sealed class SuspensionTests(GatewayFixture fixture)
{
    [Fact]
    public async Task ASuspendedSiteIsRefusedAtOnceWithItsLiveTokenAndComesBackWhenReinstated()
    {
        var @operator = await fixture.Actors.NewOperatorAsync();
        using var admin = fixture.Client().WithToken(@operator.Tokens.AccessToken);
        var seeker = await fixture.Actors.NewSeekerAsync();
        using var directory = fixture.Client().WithToken(seeker.Tokens.AccessToken);
        var site = await Sites.RegisterAsync(admin);
        var liveToken = await fixture.Actors.ClientTokenAsync(site.ClientId, site.ClientSecret!, ApiScopes.CvRead);
        using var client = fixture.Client().WithToken(liveToken);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync(Sites.FeedPath)).StatusCode);
        Assert.Contains(site.Id, await Sites.DirectoryIdsAsync(directory));

        using (var suspended = await admin.PostAsJsonAsync($"{Sites.AdminPath}/{site.Id}/suspend", new JsonObject { ["reason"] = "Data breach under investigation" }))
        {
            Assert.Equal(HttpStatusCode.OK, suspended.StatusCode);
            var recipient = await suspended.ReadJsonAsync();
            Assert.Equal("suspended", recipient.GetProperty("status").GetString());
            Assert.Equal("Data breach under investigation", recipient.GetProperty("statusReason").GetString());
        }

        // The token has minutes left to run, but the gateway checks the live registry on every request.
        var problem = await (await client.GetAsync(Sites.FeedPath)).AssertProblemAsync(HttpStatusCode.Forbidden);
        Assert.Contains("suspended", problem.GetProperty("detail").GetString(), StringComparison.OrdinalIgnoreCase);

        // Once its live token has run out, a suspended site must still fetch and confirm its erasure events: a new token
        // reaches those, and nothing else.
        using (var later = fixture.Client().WithToken(await fixture.Actors.ClientTokenAsync(site.ClientId, site.ClientSecret!, ApiScopes.CvRead)))
        {
            await (await later.GetAsync(Sites.FeedPath)).AssertProblemAsync(HttpStatusCode.Forbidden);
            using var poll = await later.PostAsJsonAsync("/api/v1/events/poll", new { returnImmediately = true });
            Assert.Equal(HttpStatusCode.OK, poll.StatusCode);
        }

        Assert.DoesNotContain(site.Id, await Sites.DirectoryIdsAsync(directory));

        using (var reinstated = await admin.PostAsJsonAsync($"{Sites.AdminPath}/{site.Id}/reinstate", new JsonObject { ["reason"] = "Investigation closed" }))
        {
            Assert.Equal(HttpStatusCode.OK, reinstated.StatusCode);
            Assert.Equal("active", (await reinstated.ReadJsonAsync()).GetProperty("status").GetString());
        }

        using var back = fixture.Client().WithToken(await fixture.Actors.ClientTokenAsync(site.ClientId, site.ClientSecret!, ApiScopes.CvRead));
        Assert.Equal(HttpStatusCode.OK, (await back.GetAsync(Sites.FeedPath)).StatusCode);
        Assert.Contains(site.Id, await Sites.DirectoryIdsAsync(directory));
    }

    [Fact]
    public async Task SuspendingTwiceKeepsTheFirstReason()
    {
        var @operator = await fixture.Actors.NewOperatorAsync();
        using var admin = fixture.Client().WithToken(@operator.Tokens.AccessToken);
        var site = await Sites.RegisterAsync(admin);

        Assert.Equal(HttpStatusCode.OK, (await admin.PostAsJsonAsync($"{Sites.AdminPath}/{site.Id}/suspend", new JsonObject { ["reason"] = "first" })).StatusCode);
        using var again = await admin.PostAsJsonAsync($"{Sites.AdminPath}/{site.Id}/suspend", new JsonObject { ["reason"] = "second" });

        Assert.Equal(HttpStatusCode.OK, again.StatusCode);
        var recipient = await again.ReadJsonAsync();
        Assert.Equal("suspended", recipient.GetProperty("status").GetString());
        Assert.Equal("first", recipient.GetProperty("statusReason").GetString());
    }

    [Theory]
    [InlineData("{}")]
    [InlineData("{\"reason\": \"   \"}")]
    [InlineData("{\"reason\": null}")]
    public async Task ASuspensionWithoutAReasonIs400ProblemAndSuspendsNothing(string body)
    {
        var @operator = await fixture.Actors.NewOperatorAsync();
        using var admin = fixture.Client().WithToken(@operator.Tokens.AccessToken);
        var site = await Sites.RegisterAsync(admin);

        using var content = new StringContent(body, System.Text.Encoding.UTF8, "application/json");
        await (await admin.PostAsync($"{Sites.AdminPath}/{site.Id}/suspend", content)).AssertProblemAsync(HttpStatusCode.BadRequest);

        using var current = await admin.GetAsync($"{Sites.AdminPath}/{site.Id}");
        Assert.Equal("active", (await current.ReadJsonAsync()).GetProperty("status").GetString());
        await fixture.Actors.ClientTokenAsync(site.ClientId, site.ClientSecret!, ApiScopes.CvRead);
    }

    [Fact]
    public async Task SuspendingAnUnknownRecipientIs404Problem()
    {
        var @operator = await fixture.Actors.NewOperatorAsync();
        using var admin = fixture.Client().WithToken(@operator.Tokens.AccessToken);
        await (await admin.PostAsJsonAsync($"{Sites.AdminPath}/{Guid.CreateVersion7()}/suspend", new JsonObject { ["reason"] = "x" }))
            .AssertProblemAsync(HttpStatusCode.NotFound);
    }
}
