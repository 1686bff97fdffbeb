using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using ExchangeGateway.Auth;
using ExchangeGateway.Tests.Infrastructure;

namespace ExchangeGateway.Tests.Recipients;

[Collection(GatewayCollection.Name)]
public sealed class SecretRotationTests(GatewayFixture fixture)
{
    [Fact]
    public async Task RotatingWithoutAGracePeriodRetiresTheOldSecretAtOnce()
    {
        var @operator = await fixture.Actors.NewOperatorAsync();
        using var admin = fixture.Client().WithToken(@operator.Tokens.AccessToken);
        var site = await Sites.RegisterAsync(admin);

        using var response = await admin.PostAsync($"{Sites.AdminPath}/{site.Id}/rotate-secret", null);
        var rotated = await response.ReadJsonAsync();
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var newSecret = rotated.GetProperty("clientSecret").GetString()!;
        Assert.NotEqual(site.ClientSecret, newSecret);
        Assert.Equal(site.ClientId, rotated.GetProperty("clientId").GetString());
        Assert.Equal(System.Text.Json.JsonValueKind.Null, rotated.GetProperty("previousSecretValidUntil").ValueKind);

        var token = await fixture.Actors.ClientTokenAsync(site.ClientId, newSecret, ApiScopes.CvRead);
        using (var client = fixture.Client().WithToken(token))
        {
            Assert.Equal(HttpStatusCode.OK, (await client.GetAsync(Sites.FeedPath)).StatusCode);
        }

        using var old = await fixture.Actors.RequestClientTokenAsync(site.ClientId, site.ClientSecret!, ApiScopes.CvRead);
        Assert.Equal(HttpStatusCode.Unauthorized, old.StatusCode);
        Assert.Equal("invalid_client", await Sites.TokenErrorAsync(old));
    }

    [Fact]
    public async Task RotatingWithAGracePeriodKeepsTheOldSecretWorkingUntilItEnds()
    {
        var @operator = await fixture.Actors.NewOperatorAsync();
        using var admin = fixture.Client().WithToken(@operator.Tokens.AccessToken);
        var site = await Sites.RegisterAsync(admin);
        var rotatedAt = fixture.Time.GetUtcNow();

        using var response = await admin.PostAsJsonAsync($"{Sites.AdminPath}/{site.Id}/rotate-secret", new JsonObject { ["gracePeriodSeconds"] = 3600 });
        var rotated = await response.ReadJsonAsync();
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var newSecret = rotated.GetProperty("clientSecret").GetString()!;
        var validUntil = rotated.GetProperty("previousSecretValidUntil").GetDateTimeOffset();
        Assert.InRange(validUntil, rotatedAt.AddHours(1).AddSeconds(-1), rotatedAt.AddHours(1).AddSeconds(1));

        await fixture.Actors.ClientTokenAsync(site.ClientId, site.ClientSecret!, ApiScopes.CvRead);
        await fixture.Actors.ClientTokenAsync(site.ClientId, newSecret, ApiScopes.CvRead);

        fixture.Time.Advance(TimeSpan.FromHours(2));

        using (var old = await fixture.Actors.RequestClientTokenAsync(site.ClientId, site.ClientSecret!, ApiScopes.CvRead))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, old.StatusCode);
            Assert.Equal("invalid_client", await Sites.TokenErrorAsync(old));
        }

        var token = await fixture.Actors.ClientTokenAsync(site.ClientId, newSecret, ApiScopes.CvRead);
        using var client = fixture.Client().WithToken(token);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync(Sites.FeedPath)).StatusCode);
    }

    [Fact]
    public async Task ASecondRotationRetiresTheFirstSecretEvenWithinItsGracePeriod()
    {
        var @operator = await fixture.Actors.NewOperatorAsync();
        using var admin = fixture.Client().WithToken(@operator.Tokens.AccessToken);
        var site = await Sites.RegisterAsync(admin);

        using var first = await admin.PostAsJsonAsync($"{Sites.AdminPath}/{site.Id}/rotate-secret", new JsonObject { ["gracePeriodSeconds"] = 3600 });
        var second = (await first.ReadJsonAsync()).GetProperty("clientSecret").GetString()!;
        using var again = await admin.PostAsJsonAsync($"{Sites.AdminPath}/{site.Id}/rotate-secret", new JsonObject { ["gracePeriodSeconds"] = 3600 });
        var third = (await again.ReadJsonAsync()).GetProperty("clientSecret").GetString()!;

        // Only the secret replaced last has a grace period: at most two secrets work at any time.
        using (var original = await fixture.Actors.RequestClientTokenAsync(site.ClientId, site.ClientSecret!, ApiScopes.CvRead))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, original.StatusCode);
        }

        await fixture.Actors.ClientTokenAsync(site.ClientId, second, ApiScopes.CvRead);
        await fixture.Actors.ClientTokenAsync(site.ClientId, third, ApiScopes.CvRead);
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(2_592_001)]
    public async Task AGracePeriodOutsideZeroToThirtyDaysIs400ProblemAndKeepsTheSecret(int seconds)
    {
        var @operator = await fixture.Actors.NewOperatorAsync();
        using var admin = fixture.Client().WithToken(@operator.Tokens.AccessToken);
        var site = await Sites.RegisterAsync(admin);

        var problem = await (await admin.PostAsJsonAsync($"{Sites.AdminPath}/{site.Id}/rotate-secret", new JsonObject { ["gracePeriodSeconds"] = seconds }))
            .AssertProblemAsync(HttpStatusCode.BadRequest);
        Assert.True(problem.GetProperty("errors").TryGetProperty("gracePeriodSeconds", out _));
        await fixture.Actors.ClientTokenAsync(site.ClientId, site.ClientSecret!, ApiScopes.CvRead);
    }

    [Fact]
    public async Task RotatingTheSecretOfAnUnknownRecipientIs404Problem()
    {
        var @operator = await fixture.Actors.NewOperatorAsync();
        using var admin = fixture.Client().WithToken(@operator.Tokens.AccessToken);
        await (await admin.PostAsync($"{Sites.AdminPath}/{Guid.CreateVersion7()}/rotate-secret", null)).AssertProblemAsync(HttpStatusCode.NotFound);
    }
}
