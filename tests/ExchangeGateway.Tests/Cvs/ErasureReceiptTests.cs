using System.Net;
using System.Text.Json;
using ExchangeGateway.Tests.Infrastructure;

namespace ExchangeGateway.Tests.Cvs;

/// <summary>
/// What a seeker can hold a site to. Their views and their export name, for each sharing, the id the site knows the CV by
/// and, for each erasure request, the event id the site was sent; "forget me" answers with a receipt of every request about
/// them, since after it they can no longer sign in to see one. Checked against what the sites really received.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class ErasureReceiptTests(GatewayFixture fixture)
{
    private GatewayFactory Gateway => fixture.Factory;

    [Fact]
    public async Task TheSeekerSeesEachSitesIdAndEventAndForgetMeAnswersWithEveryRequestSent()
    {
        await using var receiverA = await PushReceiver.StartAsync();
        await using var receiverB = await PushReceiver.StartAsync();
        await using var receiverC = await PushReceiver.StartAsync();
        var operatorToken = (await fixture.Actors.NewOperatorAsync()).Tokens.AccessToken;
        var siteA = await Sites.RegisterAsync(Gateway, operatorToken, SiteOptions.Push(receiverA.Endpoint));
        var siteB = await Sites.RegisterAsync(Gateway, operatorToken, SiteOptions.Push(receiverB.Endpoint));
        var siteC = await Sites.RegisterAsync(Gateway, operatorToken, SiteOptions.Push(receiverC.Endpoint));
        var marker = "receipt-" + Guid.NewGuid().ToString("N");
        var seeker = await Propagation.SeekerWithCvAsync(Gateway, fixture.Actors, marker);
        var seekerToken = seeker.Tokens.AccessToken;
        foreach (var site in new[] { siteA, siteB, siteC })
        {
            await Sharing.TickAsync(Gateway, seekerToken, site.Id);
        }

        // A and B read the CV; C never does. B's sharing then ends and starts again, so B holds it under two ids.
        var idA = await Propagation.ReadAsync(Gateway, await fixture.Actors.TokenAsync(siteA), marker);
        var firstIdB = await Propagation.ReadAsync(Gateway, await fixture.Actors.TokenAsync(siteB), marker);
        using (var untick = await Sharing.UntickAsync(Gateway, seekerToken, siteB.Id))
        {
            Assert.Equal(HttpStatusCode.OK, untick.StatusCode);
        }

        await Gateway.RunDispatchAsync();
        var keys = await SecurityEventTokens.FetchKeysAsync(Gateway);
        var revoked = SecurityEventTokens.VerifyPush(Assert.Single(receiverB.Received), keys, Gateway.Issuer, siteB.ClientId);
        Assert.Equal(firstIdB, revoked.SubjectId);
        await Sharing.TickAsync(Gateway, seekerToken, siteB.Id);
        var secondIdB = await Propagation.ReadAsync(Gateway, await fixture.Actors.TokenAsync(siteB), marker);
        Assert.NotEqual(firstIdB, secondIdB);

        using var me = Gateway.CreateHttpClient().WithToken(seekerToken);
        // Where each sharing stands carries the id of its current episode, the one the site reads the CV under.
        var consents = (await (await me.GetAsync("/api/v1/me/consents")).ReadJsonAsync()).GetProperty("items").EnumerateArray()
            .ToDictionary(c => c.GetProperty("recipientId").GetGuid());
        Assert.Equal(idA, consents[siteA.Id].GetProperty("idAtSite").GetString());
        Assert.Equal(secondIdB, consents[siteB.Id].GetProperty("idAtSite").GetString());
        Assert.StartsWith("cv_", consents[siteC.Id].GetProperty("idAtSite").GetString(), StringComparison.Ordinal);

        // The request B was sent, with the id and the event B knows it by.
        var request = Assert.Single(await Propagation.MyErasuresAsync(Gateway, seekerToken));
        Assert.Equal((firstIdB, revoked.Jti), (request.GetProperty("idAtSite").GetString(), request.GetProperty("eventId").GetString()));

        // The export: every disclosure under the id it went out under.
        using (var export = await me.GetAsync("/api/v1/me/export"))
        {
            Assert.Equal(HttpStatusCode.OK, export.StatusCode);
            var document = await export.ReadJsonAsync();
            var sent = document.GetProperty("disclosures").EnumerateArray()
                .Select(d => (d.GetProperty("recipientId").GetGuid(), d.GetProperty("idAtSite").GetString()!)).Order().ToList();
            Assert.Equal(new[] { (siteA.Id, idA), (siteB.Id, firstIdB), (siteB.Id, secondIdB) }.Order(), sent);
            Assert.Equal(revoked.Jti, Assert.Single(document.GetProperty("erasures").EnumerateArray()).GetProperty("eventId").GetString());
            // And the applications the seeker let act for them: the client they signed in with, for cv:manage.
            Assert.Contains(document.GetProperty("authorizations").EnumerateArray(), grant =>
                grant.GetProperty("clientId").GetString() == ExchangeGateway.Auth.ClientRegistrations.SwaggerClientId
                && grant.GetProperty("scopes").EnumerateArray().Any(scope => scope.GetString() == "cv:manage")
                && grant.GetProperty("status").GetString() == "valid");
        }

        JsonElement receipt;
        using (var forget = await me.DeleteAsync("/api/v1/me"))
        {
            Assert.Equal(HttpStatusCode.OK, forget.StatusCode);
            Assert.Equal("no-store", forget.Headers.CacheControl?.ToString());
            receipt = await forget.ReadJsonAsync();
        }

        Assert.Equal(3, receipt.GetProperty("sharingsEnded").GetInt32());
        var listed = receipt.GetProperty("sites").EnumerateArray().ToList();
        // C never received the CV, so it was asked nothing; B is listed for both its sharings, the revoked one still open.
        Assert.DoesNotContain(listed, s => s.GetProperty("recipientId").GetGuid() == siteC.Id);
        var byId = listed.ToDictionary(s => s.GetProperty("idAtSite").GetString()!);
        Assert.Equal(new[] { idA, firstIdB, secondIdB }.Order(StringComparer.Ordinal), byId.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(("consent-revoked", revoked.Jti, "delivered"),
            (byId[firstIdB].GetProperty("cause").GetString(), byId[firstIdB].GetProperty("eventId").GetString(), byId[firstIdB].GetProperty("status").GetString()));

        // Each new request is the very event the site then receives, about the id the receipt gives.
        await Gateway.RunDispatchAsync();
        foreach (var (receiver, site, id) in new[] { (receiverA, siteA, idA), (receiverB, siteB, secondIdB) })
        {
            var told = SecurityEventTokens.VerifyPush(receiver.Received[^1], keys, Gateway.Issuer, site.ClientId);
            Assert.Equal(("subject-erased", id), (told.Cause, told.SubjectId));
            Assert.Equal(("subject-erased", told.Jti, site.Id), (byId[id].GetProperty("cause").GetString(), byId[id].GetProperty("eventId").GetString(),
                byId[id].GetProperty("recipientId").GetGuid()));
            Assert.Equal(told.ConfirmBefore, byId[id].GetProperty("confirmBefore").GetDateTimeOffset());
        }

        Assert.Empty(receiverC.Received);

        // With no account left, the receipt's site and event ids follow a request, on the API and on a page, with no token.
        var eventA = byId[idA].GetProperty("eventId").GetGuid();
        using var anyone = Gateway.CreateHttpClient();
        var status = await (await anyone.GetAsync($"/api/v1/erasure-requests/{siteA.Id}/{eventA}")).ReadJsonAsync();
        Assert.Equal(("delivered", "subject-erased", false), (status.GetProperty("status").GetString(), status.GetProperty("cause").GetString(),
            status.GetProperty("overdue").GetBoolean()));
        Assert.False(status.TryGetProperty("idAtSite", out _), "the status names the CV's id at the site");
        using (var site = Gateway.CreateHttpClient().WithToken(await fixture.Actors.TokenAsync(siteA)))
        {
            Assert.Equal(HttpStatusCode.OK, (await site.PostAsync($"/api/v1/erasures/{eventA}/confirmation", null)).StatusCode);
        }

        status = await (await anyone.GetAsync($"/api/v1/erasure-requests/{siteA.Id}/{eventA}")).ReadJsonAsync();
        Assert.Equal("confirmed", status.GetProperty("status").GetString());
        Assert.Equal(JsonValueKind.String, status.GetProperty("confirmedAt").ValueKind);
        var page = System.Net.WebUtility.HtmlDecode(await anyone.GetStringAsync($"/erasure-request/{siteA.Id}/{eventA}"));
        Assert.Contains(byId[idA].GetProperty("recipientName").GetString()!, page, StringComparison.Ordinal);
        Assert.Contains("Confirmé", page, StringComparison.Ordinal);
        // Another site's id with this event, or an event never sent: nothing.
        foreach (var path in new[] { $"{siteB.Id}/{eventA}", $"{siteA.Id}/{Guid.NewGuid()}" })
        {
            await (await anyone.GetAsync($"/api/v1/erasure-requests/{path}")).AssertProblemAsync(HttpStatusCode.NotFound);
            Assert.Equal(HttpStatusCode.NotFound, (await anyone.GetAsync($"/erasure-request/{path}")).StatusCode);
        }
        // The receipt was answered, not kept: the account is gone, and a second "forget me" has nothing to give.
        using var again = await me.DeleteAsync("/api/v1/me");
        Assert.Equal(HttpStatusCode.Unauthorized, again.StatusCode);
    }
}
