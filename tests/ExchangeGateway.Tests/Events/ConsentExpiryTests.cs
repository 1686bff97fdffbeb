using System.Net;
using ExchangeGateway.Tests.Infrastructure;

namespace ExchangeGateway.Tests.Events;

/// <summary>A consent lapses after Consent:MaxAge (a year): the site that holds a copy is told, and a new tick is a new episode.</summary>
[Collection(GatewayCollection.Name)]
public sealed class ConsentExpiryTests(GatewayFixture fixture)
{
    private GatewayFactory Gateway => fixture.Factory;

    [Fact]
    public async Task AfterAYearTheConsentExpiresTheSiteIsToldAndTickingAgainGivesANewPairwiseId()
    {
        await using var receiver = await PushReceiver.StartAsync();
        var site = await Sites.RegisterAsync(Gateway, fixture.Actors, SiteOptions.Push(receiver.Endpoint));
        var marker = "expiry-" + Guid.NewGuid().ToString("N");
        var seeker = await Propagation.SeekerWithCvAsync(Gateway, fixture.Actors, marker);
        var first = await Sharing.TickAsync(Gateway, seeker.Tokens.AccessToken, site.Id);
        var oldId = await Propagation.ReadAsync(Gateway, await fixture.Actors.TokenAsync(site), marker);

        fixture.Time.Advance(TimeSpan.FromDays(366));
        var seekerToken = await fixture.Actors.FreshTokenAsync(seeker);
        using var me = Gateway.CreateHttpClient().WithToken(seekerToken);
        // Still looking: the CV itself stays online, only the consent lapses.
        Assert.Equal(HttpStatusCode.OK, (await me.PostAsync("/api/v1/me/cv/refresh", null)).StatusCode);
        Assert.True(await Gateway.RunConsentExpiryAsync() >= 1);

        var consents = (await (await me.GetAsync("/api/v1/me/consents")).ReadJsonAsync()).GetProperty("items").EnumerateArray();
        Assert.Equal("expired", consents.Single(c => c.GetProperty("recipientId").GetGuid() == site.Id).GetProperty("state").GetString());
        var history = (await (await me.GetAsync($"/api/v1/me/consents/{site.Id}/history")).ReadJsonAsync()).GetProperty("items").EnumerateArray()
            .Select(e => e.GetProperty("kind").GetString()).ToList();
        Assert.Equal(["granted", "expired"], history);

        await Gateway.RunDispatchAsync();
        var set = SecurityEventTokens.VerifyPush(Assert.Single(receiver.Received), await SecurityEventTokens.FetchKeysAsync(Gateway), Gateway.Issuer, site.ClientId);
        Assert.Equal(("erasure-required", "consent-expired", oldId), (set.Kind, set.Cause, set.SubjectId));
        Assert.Equal("consent-expired", Assert.Single(await Propagation.MyErasuresAsync(Gateway, seekerToken)).GetProperty("cause").GetString());

        // Ticking again: a new episode, which the site cannot link to the old one.
        var second = await Sharing.TickAsync(Gateway, seekerToken, site.Id);
        Assert.NotEqual(first.GetProperty("id").GetString(), second.GetProperty("id").GetString());
        var (items, _) = await Sharing.ReadFeedAsync(Gateway, await fixture.Actors.TokenAsync(site));
        var newId = Sharing.PairwiseIdOf(items, marker);
        Assert.NotNull(newId);
        Assert.NotEqual(oldId, newId);
        var withdrawal = Assert.Single(items, i => i.GetProperty("id").GetString() == oldId);
        Assert.Equal(("withdrawal", "consent-expired"), (withdrawal.GetProperty("kind").GetString(), withdrawal.GetProperty("cause").GetString()));
    }
}
