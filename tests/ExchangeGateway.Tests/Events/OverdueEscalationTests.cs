using System.Net;
using System.Text.Json;
using ExchangeGateway.Tests.Infrastructure;

namespace ExchangeGateway.Tests.Events;

/// <summary>An erasure not confirmed within Erasure:ConfirmWithin (72 h) is escalated, shown to auditors and counted against the site.</summary>
[Collection(GatewayCollection.Name)]
public sealed class OverdueEscalationTests(GatewayFixture fixture)
{
    private GatewayFactory Gateway => fixture.Factory;

    [Fact]
    public async Task AnUnconfirmedErasureIsOverdueAfter72HoursUntilTheSiteConfirms()
    {
        await using var receiver = await PushReceiver.StartAsync();
        var (site, seeker, _, _) = await SiteThatReadACvAsync("overdue", SiteOptions.Push(receiver.Endpoint));
        await UntickAsync(seeker, site);

        await Gateway.RunDispatchAsync();
        var jti = SecurityEventTokens.VerifyPush(Assert.Single(receiver.Received), await SecurityEventTokens.FetchKeysAsync(Gateway), Gateway.Issuer, site.ClientId).Jti;

        // Just inside the deadline nothing is escalated; past it, once.
        fixture.Time.Advance(TimeSpan.FromHours(71));
        await Gateway.RunOverdueEscalationAsync();
        using var auditor = Gateway.CreateHttpClient().WithToken(await fixture.Actors.AuditorClientTokenAsync());
        Assert.DoesNotContain(await ListAsync(auditor, "overdue"), o => o.GetProperty("jti").GetString() == jti);

        fixture.Time.Advance(TimeSpan.FromHours(2));
        Assert.True(await Gateway.RunOverdueEscalationAsync() >= 1);
        await Gateway.RunOverdueEscalationAsync();
        using var auditorNow = Gateway.CreateHttpClient().WithToken(await fixture.Actors.AuditorClientTokenAsync());
        var overdue = Assert.Single(await ListAsync(auditorNow, "overdue"), o => o.GetProperty("jti").GetString() == jti);
        // The state as DESIGN spells it is taken too.
        Assert.Single(await ListAsync(auditorNow, "Overdue"), o => o.GetProperty("jti").GetString() == jti);
        Assert.Equal((site.ClientId, "delivered", true, "consent-revoked"),
            (overdue.GetProperty("clientId").GetString(), overdue.GetProperty("status").GetString(), overdue.GetProperty("overdue").GetBoolean(), overdue.GetProperty("cause").GetString()));

        var compliance = await ComplianceAsync(auditorNow, site.Id);
        Assert.Equal((1L, 0L, 1L, 0L, 1L), (compliance.GetProperty("obligations").GetInt64(), compliance.GetProperty("pending").GetInt64(),
            compliance.GetProperty("delivered").GetInt64(), compliance.GetProperty("confirmed").GetInt64(), compliance.GetProperty("overdue").GetInt64()));
        Assert.Equal(JsonValueKind.Null, compliance.GetProperty("medianTimeToConfirmSeconds").ValueKind);

        // One audit event, however often the job runs.
        using (var events = await auditorNow.GetAsync($"/api/v1/audit/events?action=erasure.overdue&recipient={site.ClientId}"))
        {
            var escalation = Assert.Single((await events.ReadJsonAsync()).GetProperty("items").EnumerateArray());
            Assert.Equal(jti, escalation.GetProperty("details").GetProperty("jti").GetString());
            Assert.Equal("failure", escalation.GetProperty("outcome").GetString());
        }

        Assert.True((await Propagation.MyErasuresAsync(Gateway, await fixture.Actors.FreshTokenAsync(seeker))).Single().GetProperty("overdue").GetBoolean());

        // Late is better than never: the confirmation closes it, and it stays on the site's record as having been overdue.
        using (var siteClient = Gateway.CreateHttpClient().WithToken(await fixture.Actors.TokenAsync(site)))
        {
            Assert.Equal(HttpStatusCode.OK, (await siteClient.PostAsync($"/api/v1/erasures/{jti}/confirmation", null)).StatusCode);
        }

        Assert.DoesNotContain(await ListAsync(auditorNow, "overdue"), o => o.GetProperty("jti").GetString() == jti);
        var closed = Assert.Single(await ListAsync(auditorNow, "confirmed"), o => o.GetProperty("jti").GetString() == jti);
        Assert.True(closed.GetProperty("overdue").GetBoolean());
        var after = await ComplianceAsync(auditorNow, site.Id);
        Assert.Equal((1L, 1L), (after.GetProperty("confirmed").GetInt64(), after.GetProperty("overdue").GetInt64()));
        Assert.InRange(after.GetProperty("medianTimeToConfirmSeconds").GetDouble(), TimeSpan.FromHours(73).TotalSeconds - 1, TimeSpan.FromHours(73).TotalSeconds + 1);
    }

    /// <summary>
    /// A rectification (cv-updated) the site does not confirm within the deadline is overdue too (GDPR art. 19: the new
    /// version must reach every site that holds the old one), and named as such in the audit event.
    /// </summary>
    [Fact]
    public async Task AnUnconfirmedRectificationIsOverdueAfter72HoursToo()
    {
        await using var receiver = await PushReceiver.StartAsync();
        var (site, seeker, marker, _) = await SiteThatReadACvAsync("overdue-update", SiteOptions.Push(receiver.Endpoint));
        using (var put = await Sharing.PutCvAsync(Gateway, seeker.Tokens.AccessToken, Sharing.Resume(marker + "-v2")))
        {
            Assert.Equal(HttpStatusCode.OK, put.StatusCode);
        }

        await Gateway.RunDispatchAsync();
        var set = SecurityEventTokens.VerifyPush(Assert.Single(receiver.Received), await SecurityEventTokens.FetchKeysAsync(Gateway), Gateway.Issuer, site.ClientId);
        Assert.Equal("cv-updated", set.Kind);

        fixture.Time.Advance(TimeSpan.FromHours(73));
        Assert.True(await Gateway.RunOverdueEscalationAsync() >= 1);
        using var auditor = Gateway.CreateHttpClient().WithToken(await fixture.Actors.AuditorClientTokenAsync());
        var overdue = Assert.Single(await ListAsync(auditor, "overdue"), o => o.GetProperty("jti").GetString() == set.Jti);
        Assert.Equal("cv-updated", overdue.GetProperty("cause").GetString());
        using var events = await auditor.GetAsync($"/api/v1/audit/events?action=erasure.overdue&recipient={site.ClientId}");
        var escalation = Assert.Single((await events.ReadJsonAsync()).GetProperty("items").EnumerateArray());
        Assert.Equal((set.Jti, "cv-updated"), (escalation.GetProperty("details").GetProperty("jti").GetString(), escalation.GetProperty("details").GetProperty("kind").GetString()));
        // And counted against the site, as the list above shows it.
        var compliance = await ComplianceAsync(auditor, site.Id);
        Assert.Equal((1L, 1L), (compliance.GetProperty("obligations").GetInt64(), compliance.GetProperty("overdue").GetInt64()));
    }

    /// <summary>
    /// A seeker saves a new version, then unticks: the site is told "update", then "delete". Confirming the deletion closes
    /// the update too (a deleted copy has nothing left to rectify), so the site is not overdue on an event it could only
    /// confirm by keeping a copy; the confirmation's audit row names the update it closed.
    /// </summary>
    [Fact]
    public async Task ConfirmingTheErasureClosesTheEpisodesEarlierRectification()
    {
        await using var receiver = await PushReceiver.StartAsync();
        var (site, seeker, marker, _) = await SiteThatReadACvAsync("update-then-untick", SiteOptions.Push(receiver.Endpoint));
        using (var put = await Sharing.PutCvAsync(Gateway, seeker.Tokens.AccessToken, Sharing.Resume(marker + "-v2")))
        {
            Assert.Equal(HttpStatusCode.OK, put.StatusCode);
        }

        await UntickAsync(seeker, site);

        await Gateway.RunDispatchAsync();
        var keys = await SecurityEventTokens.FetchKeysAsync(Gateway);
        var sets = receiver.Received.Select(r => SecurityEventTokens.VerifyPush(r, keys, Gateway.Issuer, site.ClientId)).ToList();
        var update = Assert.Single(sets, s => s.Kind == "cv-updated");
        var erasure = Assert.Single(sets, s => s.Kind == "erasure-required");

        using (var siteClient = Gateway.CreateHttpClient().WithToken(await fixture.Actors.TokenAsync(site)))
        {
            Assert.Equal(HttpStatusCode.OK, (await siteClient.PostAsync($"/api/v1/erasures/{erasure.Jti}/confirmation", null)).StatusCode);
        }

        Assert.Equal("Confirmed", await Propagation.ObligationAsync<string>(fixture.Database, update.Jti, "status"));
        fixture.Time.Advance(TimeSpan.FromHours(73));
        await Gateway.RunOverdueEscalationAsync();
        using var auditor = Gateway.CreateHttpClient().WithToken(await fixture.Actors.AuditorClientTokenAsync());
        var compliance = await ComplianceAsync(auditor, site.Id);
        Assert.Equal((2L, 2L, 0L), (compliance.GetProperty("obligations").GetInt64(), compliance.GetProperty("confirmed").GetInt64(), compliance.GetProperty("overdue").GetInt64()));
        using var events = await auditor.GetAsync($"/api/v1/audit/events?action=erasure.confirmed&recipient={site.ClientId}");
        var confirmed = Assert.Single((await events.ReadJsonAsync()).GetProperty("items").EnumerateArray());
        Assert.Equal([update.Jti], confirmed.GetProperty("details").GetProperty("rectificationsClosed").EnumerateArray().Select(j => j.GetString()));
    }

    /// <summary>
    /// An erasure never delivered (a poll site that stopped polling) is overdue after 72 hours as well, still Pending: the
    /// deadline runs from the change, not from the delivery.
    /// </summary>
    [Fact]
    public async Task AnErasureNeverDeliveredIsOverdueAfter72HoursStillPending()
    {
        var (site, seeker, _, id) = await SiteThatReadACvAsync("never-polled");
        await UntickAsync(seeker, site);

        fixture.Time.Advance(TimeSpan.FromHours(71));
        await Gateway.RunOverdueEscalationAsync();
        Assert.False(await fixture.Database.ScalarAsync<bool>($"SELECT overdue FROM erasure_obligations WHERE pairwise_id = '{id}'"));

        fixture.Time.Advance(TimeSpan.FromHours(2));
        Assert.True(await Gateway.RunOverdueEscalationAsync() >= 1);
        using var auditor = Gateway.CreateHttpClient().WithToken(await fixture.Actors.AuditorClientTokenAsync());
        var overdue = Assert.Single(await ListAsync(auditor, "overdue"), o => o.GetProperty("clientId").GetString() == site.ClientId);
        Assert.Equal(("pending", true, JsonValueKind.Null), (overdue.GetProperty("status").GetString(), overdue.GetProperty("overdue").GetBoolean(), overdue.GetProperty("deliveredAt").ValueKind));
        var compliance = await ComplianceAsync(auditor, site.Id);
        Assert.Equal((1L, 1L, 0L, 1L), (compliance.GetProperty("obligations").GetInt64(), compliance.GetProperty("pending").GetInt64(),
            compliance.GetProperty("delivered").GetInt64(), compliance.GetProperty("overdue").GetInt64()));
    }

    /// <summary>
    /// Overdue is the deadline passing, not the escalation job having run since: with no run (it runs every quarter of an
    /// hour, and an operator can delete it from the dashboard) the auditors still see the late site, and a confirmation
    /// that came late stays on its record as late.
    /// </summary>
    [Fact]
    public async Task AnErasurePastItsDeadlineIsOverdueForTheAuditorsBeforeTheJobFlagsIt()
    {
        var (site, seeker, _, id) = await SiteThatReadACvAsync("unflagged");
        await UntickAsync(seeker, site);

        fixture.Time.Advance(TimeSpan.FromHours(73));
        Assert.False(await fixture.Database.ScalarAsync<bool>($"SELECT overdue FROM erasure_obligations WHERE pairwise_id = '{id}'"));
        using var auditor = Gateway.CreateHttpClient().WithToken(await fixture.Actors.AuditorClientTokenAsync());
        var overdue = Assert.Single(await ListAsync(auditor, "overdue"), o => o.GetProperty("clientId").GetString() == site.ClientId);
        Assert.True(overdue.GetProperty("overdue").GetBoolean());
        Assert.Equal(1L, (await ComplianceAsync(auditor, site.Id)).GetProperty("overdue").GetInt64());

        var jti = overdue.GetProperty("jti").GetString();
        // The seeker and the site see the same verdict as the auditors, from the same rule.
        using var seekerClient = Gateway.CreateHttpClient().WithToken(await fixture.Actors.FreshTokenAsync(seeker));
        Assert.True(Assert.Single(await ItemsAsync(seekerClient, "/api/v1/me/erasures")).GetProperty("overdue").GetBoolean());
        using (var siteClient = Gateway.CreateHttpClient().WithToken(await fixture.Actors.TokenAsync(site)))
        {
            var open = Assert.Single(await ItemsAsync(siteClient, "/api/v1/erasures"), i => i.GetProperty("jti").GetString() == jti);
            Assert.True(open.GetProperty("overdue").GetBoolean());
            Assert.Equal(jti, open.GetProperty("id").GetString());
            Assert.Equal(HttpStatusCode.OK, (await siteClient.PostAsync($"/api/v1/erasures/{jti}/confirmation", null)).StatusCode);
        }

        var confirmed = Assert.Single(await ItemsAsync(seekerClient, "/api/v1/me/erasures"));
        Assert.Equal(("confirmed", true), (confirmed.GetProperty("status").GetString(), confirmed.GetProperty("overdue").GetBoolean()));

        Assert.DoesNotContain(await ListAsync(auditor, "overdue"), o => o.GetProperty("jti").GetString() == jti);
        Assert.True(Assert.Single(await ListAsync(auditor, "confirmed"), o => o.GetProperty("jti").GetString() == jti).GetProperty("overdue").GetBoolean());
        var after = await ComplianceAsync(auditor, site.Id);
        Assert.Equal((1L, 1L), (after.GetProperty("confirmed").GetInt64(), after.GetProperty("overdue").GetInt64()));
    }

    /// <summary>
    /// An auditor following one site lists its obligations alone, by the site's id or its client id, with or without a
    /// status; a site that does not exist matches nothing, and the query is recorded under the site it named.
    /// </summary>
    [Fact]
    public async Task TheAuditorsListNarrowsToOneSiteByItsIdOrClientId()
    {
        var (followed, followedSeeker, _, followedId) = await SiteThatReadACvAsync("followed");
        var (other, otherSeeker, _, _) = await SiteThatReadACvAsync("other");
        await UntickAsync(followedSeeker, followed);
        await UntickAsync(otherSeeker, other);
        var jti = await fixture.Database.ScalarAsync<Guid>($"SELECT jti FROM erasure_obligations WHERE pairwise_id = '{followedId}'");

        using var auditor = Gateway.CreateHttpClient().WithToken(await fixture.Actors.AuditorClientTokenAsync());
        foreach (var query in new[] { $"recipient={followed.Id}", $"recipient={Uri.EscapeDataString(followed.ClientId)}", $"recipient={followed.Id}&status=pending" })
        {
            using var response = await auditor.GetAsync($"/api/v1/audit/erasures?{query}");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var item = Assert.Single((await response.ReadJsonAsync()).GetProperty("items").EnumerateArray());
            Assert.Equal((jti, followed.ClientId), (item.GetProperty("jti").GetGuid(), item.GetProperty("clientId").GetString()));
        }

        using (var confirmed = await auditor.GetAsync($"/api/v1/audit/erasures?recipient={followed.Id}&status=confirmed"))
        {
            Assert.Empty((await confirmed.ReadJsonAsync()).GetProperty("items").EnumerateArray());
        }

        foreach (var unknown in new[] { Guid.NewGuid().ToString(), "no-such-site" })
        {
            using var response = await auditor.GetAsync($"/api/v1/audit/erasures?recipient={unknown}");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Empty((await response.ReadJsonAsync()).GetProperty("items").EnumerateArray());
        }

        await (await auditor.GetAsync($"/api/v1/audit/erasures?recipient={new string('x', 101)}")).AssertProblemAsync(HttpStatusCode.BadRequest);
        await (await auditor.GetAsync($"/api/v1/audit/erasures?recipient={followed.Id}&recipient={other.Id}")).AssertProblemAsync(HttpStatusCode.BadRequest);
        Assert.True(await fixture.Database.ScalarAsync<bool>(
            $"SELECT EXISTS (SELECT 1 FROM audit_events WHERE action = 'audit.queried' AND recipient = '{followed.ClientId}' AND details::jsonb->>'erasures' = 'pending' AND details::jsonb->>'rows' = '1')"));
    }

    /// <summary>
    /// Without a site, the open lists (pending, delivered, overdue) are each site's open obligations merged in id order,
    /// read from the index of open obligations rather than by walking every confirmed one: page by page they come whole,
    /// in order, nothing twice, exactly as the table holds them. One site has more open obligations than a page, their ids
    /// interleaved with another's, so a site's own page is cut.
    /// </summary>
    [Fact]
    public async Task TheOpenListsAcrossSitesComeWholeAndInIdOrderPageByPage()
    {
        var busy = await Sites.RegisterAsync(Gateway, fixture.Actors);
        var quiet = await Sites.RegisterAsync(Gateway, fixture.Actors);
        var busyToken = await fixture.Actors.TokenAsync(busy);
        var quietToken = await fixture.Actors.TokenAsync(quiet);
        var opened = new List<long>();
        for (var i = 0; i < 6; i++)
        {
            var (site, token) = i % 3 == 2 ? (quiet, quietToken) : (busy, busyToken);
            var marker = $"merged-{i}-" + Guid.NewGuid().ToString("N");
            var seeker = await Propagation.SeekerWithCvAsync(Gateway, fixture.Actors, marker);
            await Sharing.TickAsync(Gateway, seeker.Tokens.AccessToken, site.Id);
            var id = await Propagation.ReadAsync(Gateway, token, marker);
            await UntickAsync(seeker, site);
            opened.Add(await fixture.Database.ScalarAsync<long>($"SELECT id FROM erasure_obligations WHERE pairwise_id = '{id}'"));
        }

        await fixture.Database.ExecuteAsync($"UPDATE erasure_obligations SET status = 'Delivered', delivered_at = now() WHERE id = {opened[1]}");
        using var auditor = Gateway.CreateHttpClient().WithToken(await fixture.Actors.AuditorClientTokenAsync());
        var pending = opened.Where(id => id != opened[1]).ToArray();
        var now = fixture.Time.GetUtcNow().UtcDateTime.ToString("O", System.Globalization.CultureInfo.InvariantCulture);
        foreach (var (status, stored, mine) in new[]
        {
            ("pending", "status = 'Pending'", pending),
            ("delivered", "status = 'Delivered'", new[] { opened[1] }),
            ("overdue", $"status <> 'Confirmed' AND (overdue OR confirm_before <= '{now}'::timestamptz)", Array.Empty<long>()),
        })
        {
            var ids = (await ListAsync(auditor, status, limit: 2)).Select(i => i.GetProperty("id").GetInt64()).ToList();
            Assert.All(mine, id => Assert.Contains(id, ids));
            Assert.Equal(
                await fixture.Database.ScalarAsync<string>($"SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM erasure_obligations WHERE {stored}"),
                string.Join(',', ids));
        }

        // Past the deadline, every one of them is overdue, whatever its status, in the same merged order.
        fixture.Time.Advance(TimeSpan.FromHours(73));
        using var later = Gateway.CreateHttpClient().WithToken(await fixture.Actors.AuditorClientTokenAsync());
        var overdue = (await ListAsync(later, "overdue", limit: 2)).Select(i => i.GetProperty("id").GetInt64()).ToList();
        Assert.All(opened, id => Assert.Contains(id, overdue));
        now = fixture.Time.GetUtcNow().UtcDateTime.ToString("O", System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal(
            await fixture.Database.ScalarAsync<string>(
                $"SELECT string_agg(id::text, ',' ORDER BY id) FROM erasure_obligations WHERE status <> 'Confirmed' AND (overdue OR confirm_before <= '{now}'::timestamptz)"),
            string.Join(',', overdue));
    }

    /// <summary>A site of its own (a poll site unless told) that has read a seeker's CV; returns the CV's marker and the site's id for it.</summary>
    private async Task<(TestSite Site, Person Seeker, string Marker, string CvId)> SiteThatReadACvAsync(string prefix, SiteOptions? options = null)
    {
        var site = await Sites.RegisterAsync(Gateway, fixture.Actors, options);
        var marker = prefix + "-" + Guid.NewGuid().ToString("N");
        var seeker = await Propagation.SeekerWithCvAsync(Gateway, fixture.Actors, marker);
        await Sharing.TickAsync(Gateway, seeker.Tokens.AccessToken, site.Id);
        var cvId = await Propagation.ReadAsync(Gateway, await fixture.Actors.TokenAsync(site), marker);
        return (site, seeker, marker, cvId);
    }

    private async Task UntickAsync(Person seeker, TestSite site)
    {
        using var untick = await Sharing.UntickAsync(Gateway, seeker.Tokens.AccessToken, site.Id);
        Assert.Equal(HttpStatusCode.OK, untick.StatusCode);
    }

    /// <summary>The first page of a seeker's or a site's list of erasure events.</summary>
    private static async Task<List<JsonElement>> ItemsAsync(HttpClient client, string path)
    {
        using var response = await client.GetAsync(path + "?limit=100");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return [.. (await response.ReadJsonAsync()).GetProperty("items").EnumerateArray().Select(i => i.Clone())];
    }

    /// <summary>Every page of the auditors' obligation list with this status (other tests add to it too).</summary>
    private static async Task<List<JsonElement>> ListAsync(HttpClient auditor, string status, int limit = 500)
    {
        var items = new List<JsonElement>();
        string? cursor = null;
        do
        {
            using var response = await auditor.GetAsync($"/api/v1/audit/erasures?status={status}&limit={limit}" + (cursor is null ? "" : $"&cursor={Uri.EscapeDataString(cursor)}"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var page = await response.ReadJsonAsync();
            items.AddRange(page.GetProperty("items").EnumerateArray().Select(i => i.Clone()));
            cursor = page.GetProperty("nextCursor").ValueKind == JsonValueKind.String ? page.GetProperty("nextCursor").GetString() : null;
        }
        while (cursor is not null);

        return items;
    }

    private static async Task<JsonElement> ComplianceAsync(HttpClient auditor, Guid recipientId)
    {
        using var response = await auditor.GetAsync($"/api/v1/audit/recipients/{recipientId}/compliance");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return await response.ReadJsonAsync();
    }
}
