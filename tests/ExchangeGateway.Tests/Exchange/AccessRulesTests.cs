using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using ExchangeGateway.Tests.Infrastructure;

namespace ExchangeGateway.Tests.Exchange;

/// <summary>Promise 1 (only consented, fresh CVs leave), 2 (no read without a record) and 6 (no linking), from outside.</summary>
[Collection(GatewayCollection.Name)]
public sealed class AccessRulesTests(GatewayFixture fixture)
{
    [Fact]
    public async Task ASuspensionCommittedByAnotherNodeStopsTheNextReadHereToo()
    {
        var site = await Sites.RegisterAsync(fixture.Factory, fixture.Actors);
        var marker = "elsewhere-" + Guid.NewGuid().ToString("N");
        var seeker = await Propagation.SeekerWithCvAsync(fixture.Factory, fixture.Actors, marker);
        await Sharing.TickAsync(fixture.Factory, seeker.Tokens.AccessToken, site.Id);
        var siteToken = await fixture.Actors.TokenAsync(site);
        var id = await Propagation.ReadAsync(fixture.Factory, siteToken, marker);
        var ledger = $"SELECT count(*) FROM disclosures WHERE recipient_id = '{site.Id}'";
        using var client = fixture.Client().WithToken(siteToken);
        using (var warm = await client.GetAsync($"/api/v1/shared-cvs/{id}"))
        {
            Assert.Equal(HttpStatusCode.OK, warm.StatusCode);
        }

        // Another node suspends the site: this node's copy of the site's row (kept for a second of the gateway's clock,
        // which stands still here) still says active, so what stops the CV is the status check in the ledger insert that
        // every disclosure needs. The gate lets the read through, and it is answered as any CV not available: 404, and a
        // feed without it. A 403 here would mean the copy was not used, and the ledger's check went untested.
        var recorded = await fixture.Database.ScalarAsync<long>(ledger);
        await fixture.Database.ExecuteAsync($"UPDATE recipients SET status = 'Suspended' WHERE id = '{site.Id}'");

        using (var one = await client.GetAsync($"/api/v1/shared-cvs/{id}"))
        {
            Assert.DoesNotContain(marker, (await one.AssertProblemAsync(HttpStatusCode.NotFound)).GetRawText(), StringComparison.Ordinal);
        }

        using (var feed = await client.GetAsync("/api/v1/shared-cvs"))
        {
            Assert.Equal(HttpStatusCode.OK, feed.StatusCode);
            Assert.DoesNotContain(marker, await feed.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        Assert.Equal(recorded, await fixture.Database.ScalarAsync<long>(ledger));

        // Once the second has passed, this node reads the row again and refuses the site itself: the suspension's 403.
        fixture.Time.Advance(TimeSpan.FromSeconds(1));
        using (var later = await client.GetAsync($"/api/v1/shared-cvs/{id}"))
        {
            var problem = await later.AssertProblemAsync(HttpStatusCode.Forbidden);
            Assert.Contains("suspended", problem.GetProperty("detail").GetString(), StringComparison.OrdinalIgnoreCase);
        }

        using (var feed = await client.GetAsync("/api/v1/shared-cvs"))
        {
            await feed.AssertProblemAsync(HttpStatusCode.Forbidden);
        }

        Assert.Equal(recorded, await fixture.Database.ScalarAsync<long>(ledger));
    }

    [Fact]
    public async Task ASiteNeverReadsACvSharedOnlyWithAnotherSite()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        var marker = "only-y-" + Guid.NewGuid().ToString("N");
        await Sharing.PutCvAsync(fixture.Factory, seeker.Tokens.AccessToken, Sharing.Resume(marker));
        var x = await Sites.RegisterAsync(fixture.Factory, fixture.Actors);
        var y = await Sites.RegisterAsync(fixture.Factory, fixture.Actors);
        await Sharing.TickAsync(fixture.Factory, seeker.Tokens.AccessToken, y.Id);

        var yToken = await fixture.Actors.TokenAsync(y);
        var xToken = await fixture.Actors.TokenAsync(x);
        var yId = Sharing.PairwiseIdOf((await Sharing.ReadFeedAsync(fixture.Factory, yToken)).Items, marker);
        Assert.NotNull(yId);
        Assert.Empty((await Sharing.ReadFeedAsync(fixture.Factory, xToken)).Items);

        using var asX = fixture.Client().WithToken(xToken);
        var problem = await (await asX.GetAsync($"/api/v1/shared-cvs/{yId}")).AssertProblemAsync(HttpStatusCode.NotFound);
        using var asXNonexistent = await asX.GetAsync("/api/v1/shared-cvs/cv_doesnotexist");
        var other = await asXNonexistent.AssertProblemAsync(HttpStatusCode.NotFound);
        // The same answer whether the id is another site's or never existed.
        Assert.Equal(problem.GetProperty("detail").GetString(), other.GetProperty("detail").GetString());
    }

    [Fact]
    public async Task PairwiseIdsDifferBetweenSitesAndBetweenEpisodes()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        var marker = "pairwise-" + Guid.NewGuid().ToString("N");
        await Sharing.PutCvAsync(fixture.Factory, seeker.Tokens.AccessToken, Sharing.Resume(marker));
        var x = await Sites.RegisterAsync(fixture.Factory, fixture.Actors);
        var y = await Sites.RegisterAsync(fixture.Factory, fixture.Actors);
        await Sharing.TickAsync(fixture.Factory, seeker.Tokens.AccessToken, x.Id);
        await Sharing.TickAsync(fixture.Factory, seeker.Tokens.AccessToken, y.Id);
        var xToken = await fixture.Actors.TokenAsync(x);
        var (xItems, xResume) = await Sharing.ReadFeedAsync(fixture.Factory, xToken);
        var first = Sharing.PairwiseIdOf(xItems, marker);
        var atY = Sharing.PairwiseIdOf((await Sharing.ReadFeedAsync(fixture.Factory, await fixture.Actors.TokenAsync(y))).Items, marker);
        Assert.NotNull(first);
        Assert.NotNull(atY);
        Assert.NotEqual(first, atY);

        (await Sharing.UntickAsync(fixture.Factory, seeker.Tokens.AccessToken, x.Id)).Dispose();
        await Sharing.TickAsync(fixture.Factory, seeker.Tokens.AccessToken, x.Id);
        var (again, _) = await Sharing.ReadFeedAsync(fixture.Factory, xToken, xResume);
        var second = Sharing.PairwiseIdOf(again, marker);
        Assert.NotNull(second);
        Assert.NotEqual(first, second);
        // The old episode shows up as a withdrawal, with its cause and no content.
        var withdrawal = again.Single(i => i.GetProperty("id").GetString() == first);
        Assert.Equal("withdrawal", withdrawal.GetProperty("kind").GetString());
        Assert.Equal("consent-revoked", withdrawal.GetProperty("cause").GetString());
        Assert.Equal(JsonValueKind.Null, withdrawal.GetProperty("document").ValueKind);
    }

    /// <summary>
    /// Promise 6 across a suspension: the episode the suspension ended keeps its id, dead (its feed withdraws it, cause
    /// recipient-suspended); ticked again after the site is reinstated, the CV comes under a new one. And what a site reads
    /// carries no id of the gateway's own (seeker, account, consent) that another site could join on.
    /// </summary>
    [Fact]
    public async Task AnEpisodeAfterASuspensionHasANewIdAndTheFeedCarriesNoGatewayId()
    {
        var marker = "reinstated-" + Guid.NewGuid().ToString("N");
        var seeker = await Propagation.SeekerWithCvAsync(fixture.Factory, fixture.Actors, marker);
        var operatorToken = (await fixture.Actors.NewOperatorAsync()).Tokens.AccessToken;
        var site = await Sites.RegisterAsync(fixture.Factory, operatorToken);
        var consentId = (await Sharing.TickAsync(fixture.Factory, seeker.Tokens.AccessToken, site.Id)).GetProperty("id").GetString()!;
        var first = await Propagation.ReadAsync(fixture.Factory, await fixture.Actors.TokenAsync(site), marker);

        using (var admin = fixture.Client().WithToken(operatorToken))
        {
            foreach (var step in new[] { "suspend", "reinstate" })
            {
                using var answer = await admin.PostAsync($"/api/v1/admin/recipients/{site.Id}/{step}", Sharing.Json(new JsonObject { ["reason"] = "pairwise test" }));
                Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
            }
        }

        await Sharing.TickAsync(fixture.Factory, seeker.Tokens.AccessToken, site.Id);
        var siteToken = await fixture.Actors.TokenAsync(site);
        var second = await Propagation.ReadAsync(fixture.Factory, siteToken, marker);
        Assert.NotEqual(first, second);
        using var client = fixture.Client().WithToken(siteToken);
        await (await client.GetAsync($"/api/v1/shared-cvs/{first}")).AssertProblemAsync(HttpStatusCode.NotFound);

        var (items, _) = await Sharing.ReadFeedAsync(fixture.Factory, siteToken);
        var withdrawal = Assert.Single(items, i => i.GetProperty("id").GetString() == first);
        Assert.Equal(("withdrawal", "recipient-suspended"), (withdrawal.GetProperty("kind").GetString(), withdrawal.GetProperty("cause").GetString()));
        Assert.Equal(JsonValueKind.Null, withdrawal.GetProperty("document").ValueKind);
        var text = string.Join("\n", items.Select(i => i.GetRawText()));
        Assert.Contains(second, text, StringComparison.Ordinal);
        Assert.DoesNotContain(seeker.Id, text, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain(consentId, text, StringComparison.OrdinalIgnoreCase);
        using var one = await client.GetAsync($"/api/v1/shared-cvs/{second}");
        var single = await one.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.OK, one.StatusCode);
        Assert.DoesNotContain(seeker.Id, single, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain(consentId, single, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task AStaleCvIs404UntilTheSeekerRefreshesIt()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        var marker = "stale-" + Guid.NewGuid().ToString("N");
        await Sharing.PutCvAsync(fixture.Factory, seeker.Tokens.AccessToken, Sharing.Resume(marker));
        var site = await Sites.RegisterAsync(fixture.Factory, fixture.Actors);
        await Sharing.TickAsync(fixture.Factory, seeker.Tokens.AccessToken, site.Id);
        var id = Sharing.PairwiseIdOf((await Sharing.ReadFeedAsync(fixture.Factory, await fixture.Actors.TokenAsync(site))).Items, marker);

        fixture.Time.Advance(TimeSpan.FromDays(90) + TimeSpan.FromMinutes(1));
        using (var asSite = fixture.Client().WithToken(await fixture.Actors.TokenAsync(site)))
        {
            await (await asSite.GetAsync($"/api/v1/shared-cvs/{id}")).AssertProblemAsync(HttpStatusCode.NotFound);
        }

        using (var asSeeker = fixture.Client().WithToken(await fixture.Actors.FreshTokenAsync(seeker)))
        {
            var cv = await (await asSeeker.GetAsync("/api/v1/me/cv")).ReadJsonAsync();
            Assert.Equal("offline", cv.GetProperty("state").GetString());
            Assert.Equal(HttpStatusCode.OK, (await asSeeker.PostAsync("/api/v1/me/cv/refresh", null)).StatusCode);
        }

        using (var asSite = fixture.Client().WithToken(await fixture.Actors.TokenAsync(site)))
        {
            Assert.Equal(HttpStatusCode.OK, (await asSite.GetAsync($"/api/v1/shared-cvs/{id}")).StatusCode);
        }
    }

    /// <summary>
    /// A CV the sweep took offline (on a node whose clock ran a little ahead) is not served by a node that still sees it
    /// fresh: the sweep chased the copies it knew of and will not come back for one sent after it.
    /// </summary>
    [Fact]
    public async Task ACvTheSweepTookOfflineIsNotServedByANodeThatStillSeesItFresh()
    {
        var marker = "swept-" + Guid.NewGuid().ToString("N");
        var seeker = await Propagation.SeekerWithCvAsync(fixture.Factory, fixture.Actors, marker);
        var site = await Sites.RegisterAsync(fixture.Factory, fixture.Actors);
        await Sharing.TickAsync(fixture.Factory, seeker.Tokens.AccessToken, site.Id);
        var id = await Propagation.ReadAsync(fixture.Factory, await fixture.Actors.TokenAsync(site), marker);

        await fixture.Database.ExecuteAsync($"UPDATE cvs SET state = 'Offline' WHERE seeker_id = '{seeker.Id}'");

        using var asSite = fixture.Client().WithToken(await fixture.Actors.TokenAsync(site));
        await (await asSite.GetAsync($"/api/v1/shared-cvs/{id}")).AssertProblemAsync(HttpStatusCode.NotFound);
        using var asSeeker = fixture.Client().WithToken(seeker.Tokens.AccessToken);
        Assert.Equal("offline", (await (await asSeeker.GetAsync("/api/v1/me/cv")).ReadJsonAsync()).GetProperty("state").GetString());
        using (var page = new ExchangeGateway.Tests.Pages.PageSession(fixture.Factory))
        {
            // The page says offline too, not "online, one day left" from a date a few seconds ahead.
            await Actors.SubmitLoginAsync(page.Http, new Uri("/Account/Login?ReturnUrl=%2FCv", UriKind.Relative), seeker.Email, seeker.Password);
            Assert.Contains("<p id=\"freshness\" class=\"warning\">", await page.GetPageAsync("/Cv"), StringComparison.Ordinal);
        }


        // "Still looking" brings it back, as after any sweep.
        Assert.Equal(HttpStatusCode.OK, (await asSeeker.PostAsync("/api/v1/me/cv/refresh", null)).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await asSite.GetAsync($"/api/v1/shared-cvs/{id}")).StatusCode);
    }

    /// <summary>
    /// A CV whose key cannot be unwrapped (wrapped by a key this deployment no longer holds) is skipped, not the whole
    /// page: the site's feed goes on past it, and nothing is recorded or sent for it.
    /// </summary>
    [Fact]
    public async Task ACvThatCannotBeOpenedIsSkippedAndTheFeedGoesOn()
    {
        var site = await Sites.RegisterAsync(fixture.Factory, fixture.Actors);
        var broken = await fixture.Actors.NewSeekerAsync();
        var intact = await fixture.Actors.NewSeekerAsync();
        var (brokenMarker, intactMarker) = ("unreadable-" + Guid.NewGuid().ToString("N"), "readable-" + Guid.NewGuid().ToString("N"));
        await Sharing.PutCvAsync(fixture.Factory, broken.Tokens.AccessToken, Sharing.Resume(brokenMarker));
        await Sharing.PutCvAsync(fixture.Factory, intact.Tokens.AccessToken, Sharing.Resume(intactMarker));
        await Sharing.TickAsync(fixture.Factory, broken.Tokens.AccessToken, site.Id);
        var brokenId = Sharing.PairwiseIdOf((await Sharing.ReadFeedAsync(fixture.Factory, await fixture.Actors.TokenAsync(site))).Items, brokenMarker);
        await Sharing.TickAsync(fixture.Factory, intact.Tokens.AccessToken, site.Id);

        await fixture.Database.ExecuteAsync($"UPDATE seeker_keys SET wrapped_key = set_byte(wrapped_key, 20, get_byte(wrapped_key, 20) # 1) WHERE seeker_id = '{broken.Id}'");
        var ledger = $"SELECT count(*) FROM disclosures d JOIN consents c ON c.id = d.consent_id WHERE c.seeker_id = '{broken.Id}'";
        var recorded = await fixture.Database.ScalarAsync<long>(ledger);

        var (items, _) = await Sharing.ReadFeedAsync(fixture.Factory, await fixture.Actors.TokenAsync(site));
        Assert.NotNull(Sharing.PairwiseIdOf(items, intactMarker));
        Assert.Null(Sharing.PairwiseIdOf(items, brokenMarker));
        using var asSite = fixture.Client().WithToken(await fixture.Actors.TokenAsync(site));
        await (await asSite.GetAsync($"/api/v1/shared-cvs/{brokenId}")).AssertProblemAsync(HttpStatusCode.NotFound);
        Assert.Equal(recorded, await fixture.Database.ScalarAsync<long>(ledger));
    }

    [Fact]
    public async Task SeekersSeeOnlyTheirOwnCvConsentsReceiptsAndDisclosures()
    {
        var a = await fixture.Actors.NewSeekerAsync();
        var b = await fixture.Actors.NewSeekerAsync();
        var markerB = "b-" + Guid.NewGuid().ToString("N");
        await Sharing.PutCvAsync(fixture.Factory, b.Tokens.AccessToken, Sharing.Resume(markerB));
        var site = await Sites.RegisterAsync(fixture.Factory, fixture.Actors);
        var tickB = await Sharing.TickAsync(fixture.Factory, b.Tokens.AccessToken, site.Id);
        await Sharing.ReadFeedAsync(fixture.Factory, await fixture.Actors.TokenAsync(site));

        using var asA = fixture.Client().WithToken(a.Tokens.AccessToken);
        await (await asA.GetAsync("/api/v1/me/cv")).AssertProblemAsync(HttpStatusCode.NotFound);
        await (await asA.GetAsync($"/api/v1/me/receipts/{tickB.GetProperty("receiptId").GetGuid()}")).AssertProblemAsync(HttpStatusCode.NotFound);
        var consents = await (await asA.GetAsync("/api/v1/me/consents")).ReadJsonAsync();
        Assert.Equal("none", consents.GetProperty("items").EnumerateArray().Single(c => c.GetProperty("recipientId").GetGuid() == site.Id).GetProperty("state").GetString());
        Assert.Empty((await (await asA.GetAsync("/api/v1/me/disclosures")).ReadJsonAsync()).GetProperty("items").EnumerateArray());
        Assert.Empty((await (await asA.GetAsync($"/api/v1/me/consents/{site.Id}/history")).ReadJsonAsync()).GetProperty("items").EnumerateArray());

        using var asB = fixture.Client().WithToken(b.Tokens.AccessToken);
        var disclosures = (await (await asB.GetAsync("/api/v1/me/disclosures")).ReadJsonAsync()).GetProperty("items").EnumerateArray().ToList();
        Assert.Single(disclosures);
        Assert.Equal(site.DisplayName, disclosures[0].GetProperty("recipientName").GetString());
    }

    [Fact]
    public async Task EveryDocumentServedHasOneLedgerRowAndOneAuditEvent()
    {
        var site = await Sites.RegisterAsync(fixture.Factory, fixture.Actors);
        const int seekers = 5;
        for (var i = 0; i < seekers; i++)
        {
            var seeker = await fixture.Actors.NewSeekerAsync();
            await Sharing.PutCvAsync(fixture.Factory, seeker.Tokens.AccessToken, Sharing.Resume("ledger-" + i));
            await Sharing.TickAsync(fixture.Factory, seeker.Tokens.AccessToken, site.Id);
        }

        var token = await fixture.Actors.TokenAsync(site);
        var (items, _) = await Sharing.ReadFeedAsync(fixture.Factory, token, limit: 2);
        using var client = fixture.Client().WithToken(token);
        foreach (var item in items.Take(2))
        {
            Assert.Equal(HttpStatusCode.OK, (await client.GetAsync($"/api/v1/shared-cvs/{item.GetProperty("id").GetString()}")).StatusCode);
        }

        var served = items.Count(i => i.GetProperty("kind").GetString() == "cv") + 2;
        Assert.Equal(seekers + 2, served);
        Assert.Equal((long)served, await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM disclosures WHERE recipient_id = '{site.Id}'"));
        Assert.Equal((long)served, await fixture.Database.ScalarAsync<long>(
            $"SELECT count(*) FROM audit_events WHERE action = 'cv.disclosed' AND recipient = '{site.ClientId}'"));
        // Each audit event names its ledger row, and each ledger row is named once.
        Assert.Equal((long)served, await fixture.Database.ScalarAsync<long>($"""
            SELECT count(DISTINCT d.id) FROM disclosures d
            JOIN audit_events a ON a.action = 'cv.disclosed' AND (a.details::jsonb ->> 'ledger')::bigint = d.id
            WHERE d.recipient_id = '{site.Id}'
            """));
    }

    [Fact]
    public async Task PagingTheFeedWhileSeekersChangeTheirCvsNeitherSkipsNorRepeats()
    {
        var site = await Sites.RegisterAsync(fixture.Factory, fixture.Actors);
        var people = new List<(Person Seeker, string Marker)>();
        for (var i = 0; i < 12; i++)
        {
            var seeker = await fixture.Actors.NewSeekerAsync();
            var marker = $"page-{i}-" + Guid.NewGuid().ToString("N");
            await Sharing.PutCvAsync(fixture.Factory, seeker.Tokens.AccessToken, Sharing.Resume(marker));
            await Sharing.TickAsync(fixture.Factory, seeker.Tokens.AccessToken, site.Id);
            people.Add((seeker, marker));
        }

        var token = await fixture.Actors.TokenAsync(site);
        using var client = fixture.Client().WithToken(token);
        var seen = new List<JsonElement>();
        string? cursor = null;
        var page = 0;
        while (true)
        {
            var url = "/api/v1/shared-cvs?limit=3" + (cursor is null ? "" : "&cursor=" + Uri.EscapeDataString(cursor));
            var body = await (await client.GetAsync(url)).ReadJsonAsync();
            seen.AddRange(body.GetProperty("items").EnumerateArray().Select(i => i.Clone()));
            if (page++ == 1)
            {
                // Mid-way: one seeker already seen and one not yet seen publish new versions.
                await Sharing.PutCvAsync(fixture.Factory, people[0].Seeker.Tokens.AccessToken, Sharing.Resume(people[0].Marker + "-v2"));
                await Sharing.PutCvAsync(fixture.Factory, people[11].Seeker.Tokens.AccessToken, Sharing.Resume(people[11].Marker + "-v2"));
            }

            if (body.GetProperty("nextCursor").ValueKind == JsonValueKind.Null)
            {
                break;
            }

            cursor = body.GetProperty("nextCursor").GetString();
        }

        foreach (var (_, marker) in people)
        {
            var versions = seen.Where(i => i.GetProperty("document").GetProperty("basics").GetProperty("summary").GetString()!.Contains(marker, StringComparison.Ordinal))
                .Select(i => i.GetProperty("version").GetInt32()).ToList();
            Assert.NotEmpty(versions);
            // Each version of each CV arrives exactly once; the last one seen is the newest.
            Assert.Equal(versions.Count, versions.Distinct().Count());
            Assert.Equal(versions.Max(), versions[^1]);
        }

        var updated = seen.Where(i => i.GetProperty("document").GetProperty("basics").GetProperty("summary").GetString()!.Contains(people[0].Marker, StringComparison.Ordinal)).ToList();
        Assert.Equal([1, 2], updated.Select(i => i.GetProperty("version").GetInt32()));
        var notYetSeen = seen.Where(i => i.GetProperty("document").GetProperty("basics").GetProperty("summary").GetString()!.Contains(people[11].Marker, StringComparison.Ordinal)).ToList();
        Assert.Equal([2], notYetSeen.Select(i => i.GetProperty("version").GetInt32()));
    }

    /// <summary>The last page carries no next cursor, also when it is exactly full; the resume cursor is there for later changes.</summary>
    [Fact]
    public async Task AFullLastPageSaysItIsTheLast()
    {
        var site = await Sites.RegisterAsync(fixture.Factory, fixture.Actors);
        for (var i = 0; i < 3; i++)
        {
            var seeker = await fixture.Actors.NewSeekerAsync();
            await Sharing.PutCvAsync(fixture.Factory, seeker.Tokens.AccessToken, Sharing.Resume("full-page-" + i));
            await Sharing.TickAsync(fixture.Factory, seeker.Tokens.AccessToken, site.Id);
        }

        using var client = fixture.Client().WithToken(await fixture.Actors.TokenAsync(site));
        var whole = await (await client.GetAsync("/api/v1/shared-cvs?limit=3")).ReadJsonAsync();
        Assert.Equal(3, whole.GetProperty("items").GetArrayLength());
        Assert.Equal(JsonValueKind.Null, whole.GetProperty("nextCursor").ValueKind);
        Assert.Equal(JsonValueKind.String, whole.GetProperty("resumeCursor").ValueKind);

        var first = await (await client.GetAsync("/api/v1/shared-cvs?limit=2")).ReadJsonAsync();
        Assert.Equal(2, first.GetProperty("items").GetArrayLength());
        var second = await (await client.GetAsync("/api/v1/shared-cvs?limit=2&cursor=" + Uri.EscapeDataString(first.GetProperty("nextCursor").GetString()!))).ReadJsonAsync();
        Assert.Equal(1, second.GetProperty("items").GetArrayLength());
        Assert.Equal(JsonValueKind.Null, second.GetProperty("nextCursor").ValueKind);

        // Only what was sent is recorded (3 + 2 + 1): the row read to look ahead is not a disclosure.
        Assert.Equal(6L, await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM disclosures d JOIN consents c ON c.id = d.consent_id WHERE c.recipient_id = '{site.Id}'"));
    }

    [Fact]
    public async Task ACursorFromAnotherSiteOrForgedIsRefused()
    {
        var x = await Sites.RegisterAsync(fixture.Factory, fixture.Actors);
        var y = await Sites.RegisterAsync(fixture.Factory, fixture.Actors);
        var (_, xResume) = await Sharing.ReadFeedAsync(fixture.Factory, await fixture.Actors.TokenAsync(x));
        using var asY = fixture.Client().WithToken(await fixture.Actors.TokenAsync(y));
        await (await asY.GetAsync("/api/v1/shared-cvs?cursor=" + Uri.EscapeDataString(xResume))).AssertProblemAsync(HttpStatusCode.BadRequest);
        await (await asY.GetAsync("/api/v1/shared-cvs?cursor=" + Uri.EscapeDataString(xResume[..^4]))).AssertProblemAsync(HttpStatusCode.BadRequest);
        await (await asY.GetAsync("/api/v1/shared-cvs?cursor=%27%20OR%201%3D1--")).AssertProblemAsync(HttpStatusCode.BadRequest);
    }
}
