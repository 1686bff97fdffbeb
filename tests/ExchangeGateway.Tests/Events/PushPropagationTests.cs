using System.Net;
using System.Net.Http.Json;
using ExchangeGateway.Tests.Infrastructure;

namespace ExchangeGateway.Tests.Events;

/// <summary>
/// Promise 3 end to end over real HTTP: two push sites with their own receivers, and each change that takes a CV away
/// from a site that holds a copy reaching that site, and only that site, as a signed SET.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class PushPropagationTests(GatewayFixture fixture)
{
    private GatewayFactory Gateway => fixture.Factory;

    [Fact]
    public async Task UntickOfflineRefreshAndErasureEachReachOnlyTheSitesHoldingACopy()
    {
        await using var receiverA = await PushReceiver.StartAsync();
        await using var receiverB = await PushReceiver.StartAsync();
        var operatorToken = (await fixture.Actors.NewOperatorAsync()).Tokens.AccessToken;
        var siteA = await Sites.RegisterAsync(Gateway, operatorToken, SiteOptions.Push(receiverA.Endpoint));
        var siteB = await Sites.RegisterAsync(Gateway, operatorToken, SiteOptions.Push(receiverB.Endpoint));
        var marker = "e2e-" + Guid.NewGuid().ToString("N");
        var seeker = await Propagation.SeekerWithCvAsync(Gateway, fixture.Actors, marker);
        var seekerToken = seeker.Tokens.AccessToken;
        await Sharing.TickAsync(Gateway, seekerToken, siteA.Id);
        await Sharing.TickAsync(Gateway, seekerToken, siteB.Id);
        var idA = await Propagation.ReadAsync(Gateway, await fixture.Actors.TokenAsync(siteA), marker);
        var idB = await Propagation.ReadAsync(Gateway, await fixture.Actors.TokenAsync(siteB), marker);
        Assert.NotEqual(idA, idB);

        // Untick A: A alone hears, once.
        string consentA;
        using (var untick = await Sharing.UntickAsync(Gateway, seekerToken, siteA.Id))
        {
            Assert.Equal(HttpStatusCode.OK, untick.StatusCode);
            consentA = (await untick.ReadJsonAsync()).GetProperty("id").GetString()!;
        }

        var revokedAt = fixture.Time.GetUtcNow();
        await Gateway.RunDispatchAsync();
        var keys = await SecurityEventTokens.FetchKeysAsync(Gateway);
        var revoked = SecurityEventTokens.VerifyPush(Assert.Single(receiverA.Received), keys, Gateway.Issuer, siteA.ClientId);
        Assert.Equal(("erasure-required", "consent-revoked", idA), (revoked.Kind, revoked.Cause, revoked.SubjectId));
        // 72 hours, rounded up to the whole hour (a finer deadline would be the same instant at every site told of a change).
        Assert.InRange(revoked.ConfirmBefore - revokedAt, TimeSpan.FromHours(72), TimeSpan.FromHours(73));
        Assert.Equal(TimeSpan.Zero, revoked.ConfirmBefore.UtcDateTime.TimeOfDay - TimeSpan.FromHours(revoked.ConfirmBefore.UtcDateTime.Hour));
        Assert.Equal([$"system|dispatcher|{siteA.ClientId}|push|1"], await Propagation.DeliveryAuditAsync(fixture.Database, revoked.Jti));
        Assert.Empty(receiverB.Received);
        var afterUntick = await Propagation.MyErasuresAsync(Gateway, seekerToken);
        var mine = Assert.Single(afterUntick);
        Assert.Equal((siteA.Id, "consent-revoked", "delivered"),
            (mine.GetProperty("recipientId").GetGuid(), mine.GetProperty("cause").GetString(), mine.GetProperty("status").GetString()));

        // Offline: stale is 404 at once, before the sweep; the sweep chases B's copy.
        using (var site = Gateway.CreateHttpClient().WithToken(await fixture.Actors.TokenAsync(siteB)))
        {
            Assert.Equal(HttpStatusCode.OK, (await site.GetAsync($"/api/v1/shared-cvs/{idB}")).StatusCode);
        }

        fixture.Time.Advance(TimeSpan.FromDays(90));
        var tokenB = await fixture.Actors.TokenAsync(siteB);
        using (var site = Gateway.CreateHttpClient().WithToken(tokenB))
        {
            await (await site.GetAsync($"/api/v1/shared-cvs/{idB}")).AssertProblemAsync(HttpStatusCode.NotFound);
            Assert.True(await Gateway.RunFreshnessSweepAsync() >= 1);
            await (await site.GetAsync($"/api/v1/shared-cvs/{idB}")).AssertProblemAsync(HttpStatusCode.NotFound);
        }

        await Gateway.RunDispatchAsync();
        var offline = SecurityEventTokens.VerifyPush(Assert.Single(receiverB.Received), keys, Gateway.Issuer, siteB.ClientId);
        Assert.Equal(("erasure-required", "cv-offline", idB), (offline.Kind, offline.Cause, offline.SubjectId));
        Assert.Single(receiverA.Received);

        // "Still looking": back online for B, under the same id.
        seekerToken = await fixture.Actors.FreshTokenAsync(seeker);
        using (var me = Gateway.CreateHttpClient().WithToken(seekerToken))
        {
            Assert.Equal(HttpStatusCode.OK, (await me.PostAsync("/api/v1/me/cv/refresh", null)).StatusCode);
        }

        using (var site = Gateway.CreateHttpClient().WithToken(tokenB))
        {
            using var back = await site.GetAsync($"/api/v1/shared-cvs/{idB}");
            Assert.Equal(HttpStatusCode.OK, back.StatusCode);
            Assert.Contains(marker, await back.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        // Forget me: B, which still holds a copy under a live consent, is told; A's episode was chased already.
        using (var me = Gateway.CreateHttpClient().WithToken(seekerToken))
        {
            Assert.Equal(HttpStatusCode.OK, (await me.DeleteAsync("/api/v1/me")).StatusCode);
        }

        await Gateway.RunDispatchAsync();
        Assert.Equal(2, receiverB.Received.Count);
        var erased = SecurityEventTokens.VerifyPush(receiverB.Received[1], keys, Gateway.Issuer, siteB.ClientId);
        Assert.Equal(("erasure-required", "subject-erased", idB), (erased.Kind, erased.Cause, erased.SubjectId));
        Assert.Single(receiverA.Received);
        // The auditors see, under B, why B was told: the episode the erasure ended (A's had ended with the untick).
        Assert.Equal(1, await fixture.Database.ScalarAsync<long>(
            $"SELECT count(*) FROM audit_events WHERE action = 'consent.ended' AND recipient = '{siteB.ClientId}' AND details LIKE '%subject-erased%'"));
        Assert.Equal(0, await fixture.Database.ScalarAsync<long>(
            $"SELECT count(*) FROM audit_events WHERE action = 'consent.ended' AND recipient = '{siteA.ClientId}'"));
        Assert.Equal(3, new[] { revoked.Jti, offline.Jti, erased.Jti }.Distinct().Count());
        // An episode's events share a txn (B's CV going offline, then its seeker erased), another site's episode has its own,
        // and the gateway's id of an episode appears in none of the events (promise 6).
        Assert.Equal(offline.Txn, erased.Txn);
        Assert.NotEqual(revoked.Txn, erased.Txn);
        Assert.All(receiverA.Received.Concat(receiverB.Received), set =>
            Assert.DoesNotContain(consentA, Microsoft.IdentityModel.Tokens.Base64UrlEncoder.Decode(set.Body.Split('.')[1]), StringComparison.OrdinalIgnoreCase));
        using (var site = Gateway.CreateHttpClient().WithToken(tokenB))
        {
            await (await site.GetAsync($"/api/v1/shared-cvs/{idB}")).AssertProblemAsync(HttpStatusCode.NotFound);
        }
    }

    [Fact]
    public async Task ANewVersionIsPushedAsCvUpdatedToTheSiteThatReadTheOldOneOnly()
    {
        await using var reader = await PushReceiver.StartAsync();
        await using var bystander = await PushReceiver.StartAsync();
        var operatorToken = (await fixture.Actors.NewOperatorAsync()).Tokens.AccessToken;
        var readerSite = await Sites.RegisterAsync(Gateway, operatorToken, SiteOptions.Push(reader.Endpoint));
        var bystanderSite = await Sites.RegisterAsync(Gateway, operatorToken, SiteOptions.Push(bystander.Endpoint));
        var marker = "update-" + Guid.NewGuid().ToString("N");
        var seeker = await Propagation.SeekerWithCvAsync(Gateway, fixture.Actors, marker);
        await Sharing.TickAsync(Gateway, seeker.Tokens.AccessToken, readerSite.Id);
        await Sharing.TickAsync(Gateway, seeker.Tokens.AccessToken, bystanderSite.Id);
        var id = await Propagation.ReadAsync(Gateway, await fixture.Actors.TokenAsync(readerSite), marker);

        // Two versions before the event goes out: one event (a pending "your copy is outdated" covers the newer one too).
        foreach (var version in new[] { "-v2", "-v3" })
        {
            using var put = await Sharing.PutCvAsync(Gateway, seeker.Tokens.AccessToken, Sharing.Resume(marker + version));
            Assert.Equal(HttpStatusCode.OK, put.StatusCode);
        }

        await Gateway.RunDispatchAsync();
        var updated = SecurityEventTokens.VerifyPush(Assert.Single(reader.Received), await SecurityEventTokens.FetchKeysAsync(Gateway), Gateway.Issuer, readerSite.ClientId);
        Assert.Equal(("cv-updated", "cv-updated", id), (updated.Kind, updated.Cause, updated.SubjectId));
        Assert.Empty(bystander.Received);

        // The site that was told fetches the newest version under the same id.
        using var site = Gateway.CreateHttpClient().WithToken(await fixture.Actors.TokenAsync(readerSite));
        using (var fresh = await site.GetAsync($"/api/v1/shared-cvs/{id}"))
        {
            var item = await fresh.ReadJsonAsync();
            Assert.Equal(3, item.GetProperty("version").GetInt32());
            Assert.EndsWith(marker + "-v3", item.GetProperty("document").GetProperty("basics").GetProperty("summary").GetString(), StringComparison.Ordinal);
        }

        // Once that event is out, the next version is news again.
        using (var put = await Sharing.PutCvAsync(Gateway, seeker.Tokens.AccessToken, Sharing.Resume(marker + "-v4")))
        {
            Assert.Equal(HttpStatusCode.OK, put.StatusCode);
        }

        await Gateway.RunDispatchAsync();
        Assert.Equal(2, reader.Received.Count);

        // An event not yet out, but the site fetched the CV after it was written (a polled event waits for its ack while
        // the site already reads the version it announced): the next version gets an event of its own.
        foreach (var version in new[] { "-v5", "-v6" })
        {
            using (var put = await Sharing.PutCvAsync(Gateway, seeker.Tokens.AccessToken, Sharing.Resume(marker + version)))
            {
                Assert.Equal(HttpStatusCode.OK, put.StatusCode);
            }

            fixture.Time.Advance(TimeSpan.FromSeconds(1));
            using var read = await site.GetAsync($"/api/v1/shared-cvs/{id}");
            Assert.EndsWith(marker + version, (await read.ReadJsonAsync()).GetProperty("document").GetProperty("basics").GetProperty("summary").GetString(), StringComparison.Ordinal);
        }

        await Gateway.RunDispatchAsync();
        Assert.Equal(4, reader.Received.Count);
    }

    [Fact]
    public async Task SuspendingASiteEndsItsConsentsAndPushesRecipientSuspendedForEveryCopyItHolds()
    {
        await using var receiver = await PushReceiver.StartAsync();
        var operatorToken = (await fixture.Actors.NewOperatorAsync()).Tokens.AccessToken;
        var site = await Sites.RegisterAsync(Gateway, operatorToken, SiteOptions.Push(receiver.Endpoint));
        var marker = "suspend-" + Guid.NewGuid().ToString("N");
        var reader = await Propagation.SeekerWithCvAsync(Gateway, fixture.Actors, marker);
        var unread = await Propagation.SeekerWithCvAsync(Gateway, fixture.Actors, "unread-" + Guid.NewGuid().ToString("N"));
        await Sharing.TickAsync(Gateway, reader.Tokens.AccessToken, site.Id);
        var siteToken = await fixture.Actors.TokenAsync(site);
        var id = await Propagation.ReadAsync(Gateway, siteToken, marker);
        // Ticked after the site read: shared, but never received.
        await Sharing.TickAsync(Gateway, unread.Tokens.AccessToken, site.Id);
        // History is ordered by time: let the suspension come visibly after the grants.
        fixture.Time.Advance(TimeSpan.FromMinutes(1));

        using (var admin = Gateway.CreateHttpClient().WithToken(operatorToken))
        {
            using var suspend = await admin.PostAsJsonAsync($"/api/v1/admin/recipients/{site.Id}/suspend", new { reason = "breach under investigation" });
            Assert.Equal(HttpStatusCode.OK, suspend.StatusCode);
        }

        await Gateway.RunDispatchAsync();
        var set = SecurityEventTokens.VerifyPush(Assert.Single(receiver.Received), await SecurityEventTokens.FetchKeysAsync(Gateway), Gateway.Issuer, site.ClientId);
        Assert.Equal(("erasure-required", "recipient-suspended", id), (set.Kind, set.Cause, set.SubjectId));

        // Both episodes ended, each with a receipt; only the one that disclosed is chased.
        foreach (var seeker in new[] { reader, unread })
        {
            using var me = Gateway.CreateHttpClient().WithToken(seeker.Tokens.AccessToken);
            var history = (await (await me.GetAsync($"/api/v1/me/consents/{site.Id}/history")).ReadJsonAsync()).GetProperty("items").EnumerateArray()
                .Select(e => e.GetProperty("kind").GetString()).ToList();
            Assert.Equal(["granted", "ended"], history);
        }

        var erasure = Assert.Single(await Propagation.MyErasuresAsync(Gateway, reader.Tokens.AccessToken));
        Assert.Equal(("recipient-suspended", "delivered"), (erasure.GetProperty("cause").GetString(), erasure.GetProperty("status").GetString()));
        Assert.Empty(await Propagation.MyErasuresAsync(Gateway, unread.Tokens.AccessToken));

        // A suspended site reads nothing, but can still confirm the deletion its suspension asked for.
        using var client = Gateway.CreateHttpClient().WithToken(siteToken);
        await (await client.GetAsync($"/api/v1/shared-cvs/{id}")).AssertProblemAsync(HttpStatusCode.Forbidden);
        using var confirmed = await client.PostAsync($"/api/v1/erasures/{set.Jti}/confirmation", null);
        Assert.Equal(HttpStatusCode.OK, confirmed.StatusCode);
        Assert.Equal("confirmed", (await confirmed.ReadJsonAsync()).GetProperty("status").GetString());
    }
}
