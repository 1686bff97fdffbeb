using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using ExchangeGateway.Auth;
using ExchangeGateway.Tests.Infrastructure;

namespace ExchangeGateway.Tests.Recipients;

[Collection(GatewayCollection.Name)]
public sealed class AdminAuthorizationTests(GatewayFixture fixture)
{
    [Theory]
    [InlineData("seeker")]
    [InlineData("site")]
    [InlineData("auditor")]
    public async Task CallersWithoutRecipientsAdminGet403ProblemOnEveryOperatorEndpoint(string caller)
    {
        var @operator = await fixture.Actors.NewOperatorAsync();
        using var admin = fixture.Client().WithToken(@operator.Tokens.AccessToken);
        var target = await Sites.RegisterAsync(admin);

        var token = caller switch
        {
            "seeker" => (await fixture.Actors.NewSeekerAsync()).Tokens.AccessToken,
            // The site itself: it must not be able to lift, rename or re-key its own registration.
            "site" => await fixture.Actors.ClientTokenAsync(target.ClientId, target.ClientSecret!, ApiScopes.CvRead),
            _ => await fixture.Actors.AuditorClientTokenAsync(),
        };
        using var client = fixture.Client().WithToken(token);
        var before = await Sites.CountRowsAsync(fixture);
        var one = $"{Sites.AdminPath}/{target.Id}";
        var reason = new JsonObject { ["reason"] = "not allowed" };

        await (await client.PostAsJsonAsync(Sites.AdminPath, Sites.RegistrationBody())).AssertProblemAsync(HttpStatusCode.Forbidden);
        await (await client.GetAsync(Sites.AdminPath)).AssertProblemAsync(HttpStatusCode.Forbidden);
        await (await client.GetAsync(one)).AssertProblemAsync(HttpStatusCode.Forbidden);
        await (await client.PatchAsJsonAsync(one, new JsonObject { ["displayName"] = "Hijacked" })).AssertProblemAsync(HttpStatusCode.Forbidden);
        await (await client.PostAsJsonAsync($"{one}/suspend", reason)).AssertProblemAsync(HttpStatusCode.Forbidden);
        await (await client.PostAsJsonAsync($"{one}/reinstate", reason)).AssertProblemAsync(HttpStatusCode.Forbidden);
        await (await client.PostAsync($"{one}/rotate-secret", null)).AssertProblemAsync(HttpStatusCode.Forbidden);

        Assert.Equal(before, await Sites.CountRowsAsync(fixture));
        using var current = await admin.GetAsync(one);
        var recipient = await current.ReadJsonAsync();
        Assert.Equal("active", recipient.GetProperty("status").GetString());
        Assert.Equal(target.Recipient.GetProperty("displayName").GetString(), recipient.GetProperty("displayName").GetString());
        // The secret was not rotated behind the operator's back.
        await fixture.Actors.ClientTokenAsync(target.ClientId, target.ClientSecret!, ApiScopes.CvRead);
    }

    [Fact]
    public async Task AnonymousCallersGet401OnTheOperatorApi()
    {
        using var client = fixture.Client();
        var before = await Sites.CountRowsAsync(fixture);

        await (await client.GetAsync(Sites.AdminPath)).AssertProblemAsync(HttpStatusCode.Unauthorized);
        await (await client.PostAsJsonAsync(Sites.AdminPath, Sites.RegistrationBody())).AssertProblemAsync(HttpStatusCode.Unauthorized);

        Assert.Equal(before, await Sites.CountRowsAsync(fixture));
    }
}
