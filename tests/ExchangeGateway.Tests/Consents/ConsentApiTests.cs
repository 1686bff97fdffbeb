using System.Net;
using System.Net.Http.Json;
using ExchangeGateway.Audit;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace ExchangeGateway.Tests.Consents;

[Collection(GatewayCollection.Name)]
public sealed class ConsentApiTests(GatewayFixture fixture)
{
    [Fact]
    public async Task TickingTwiceKeepsOneActiveConsentAndOneReceipt()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        var site = await Sites.RegisterAsync(fixture.Factory, fixture.Actors);
        var first = await Sharing.TickAsync(fixture.Factory, seeker.Tokens.AccessToken, site.Id);
        var second = await Sharing.TickAsync(fixture.Factory, seeker.Tokens.AccessToken, site.Id);
        Assert.Equal(first.GetProperty("id").GetGuid(), second.GetProperty("id").GetGuid());
        Assert.Equal(first.GetProperty("receiptId").GetGuid(), second.GetProperty("receiptId").GetGuid());

        using var client = fixture.Client().WithToken(seeker.Tokens.AccessToken);
        var history = await (await client.GetAsync($"/api/v1/me/consents/{site.Id}/history")).ReadJsonAsync();
        Assert.Single(history.GetProperty("items").EnumerateArray());
    }

    /// <summary>
    /// The history comes by pages, oldest first. The clock holds still, so every event has the same time and the pages
    /// must cut between equal times without losing or repeating one.
    /// </summary>
    [Fact]
    public async Task TheHistoryComesByPagesWithNothingLostBetweenEqualTimes()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        var site = await Sites.RegisterAsync(fixture.Factory, fixture.Actors);
        for (var i = 0; i < 3; i++)
        {
            await Sharing.TickAsync(fixture.Factory, seeker.Tokens.AccessToken, site.Id);
            if (i < 2)
            {
                using var untick = await Sharing.UntickAsync(fixture.Factory, seeker.Tokens.AccessToken, site.Id);
                Assert.Equal(HttpStatusCode.OK, untick.StatusCode);
            }
        }

        using var client = fixture.Client().WithToken(seeker.Tokens.AccessToken);
        var path = $"/api/v1/me/consents/{site.Id}/history";
        var whole = (await (await client.GetAsync(path)).ReadJsonAsync()).GetProperty("items").EnumerateArray().Select(e => e.GetProperty("id").GetGuid()).ToList();
        Assert.Equal(5, whole.Count);

        var paged = new List<Guid>();
        var sizes = new List<int>();
        string? cursor = null;
        string? firstCursor = null;
        do
        {
            var page = await (await client.GetAsync($"{path}?limit=2" + (cursor is null ? "" : "&cursor=" + Uri.EscapeDataString(cursor)))).ReadJsonAsync();
            firstCursor ??= page.GetProperty("nextCursor").GetString();
            var items = page.GetProperty("items").EnumerateArray().Select(e => e.GetProperty("id").GetGuid()).ToList();
            sizes.Add(items.Count);
            paged.AddRange(items);
            cursor = page.TryGetProperty("nextCursor", out var next) && next.ValueKind == System.Text.Json.JsonValueKind.String ? next.GetString() : null;
        }
        while (cursor is not null && sizes.Count < 10);

        Assert.Equal([2, 2, 1], sizes);
        Assert.Equal(whole, paged);
        // Each event names the id the site knew the CV by in its episode: three episodes, three ids, as the consents hold them.
        var ids = (await (await client.GetAsync(path)).ReadJsonAsync()).GetProperty("items").EnumerateArray()
            .Select(e => (Consent: e.GetProperty("consentId").GetGuid(), IdAtSite: e.GetProperty("idAtSite").GetString())).Distinct().ToList();
        Assert.Equal(3, ids.Count);
        foreach (var (consent, idAtSite) in ids)
        {
            Assert.Equal(await fixture.Database.ScalarAsync<string>($"SELECT pairwise_id FROM consents WHERE id = '{consent}'"), idAtSite);
        }
        await (await client.GetAsync($"{path}?limit=0")).AssertProblemAsync(HttpStatusCode.BadRequest);
        await (await client.GetAsync($"{path}?cursor=forged")).AssertProblemAsync(HttpStatusCode.BadRequest);

        // A cursor holds a position in one site's history: replayed against another site's, it would skip that site's
        // events before the position, so it is refused.
        var other = await Sites.RegisterAsync(fixture.Factory, fixture.Actors);
        await Sharing.TickAsync(fixture.Factory, seeker.Tokens.AccessToken, other.Id);
        await (await client.GetAsync($"/api/v1/me/consents/{other.Id}/history?cursor=" + Uri.EscapeDataString(firstCursor!)))
            .AssertProblemAsync(HttpStatusCode.BadRequest);
    }

    [Fact]
    public async Task UntickingIsIdempotentAndEachChangeHasAReceipt()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        var site = await Sites.RegisterAsync(fixture.Factory, fixture.Actors);
        var ticked = await Sharing.TickAsync(fixture.Factory, seeker.Tokens.AccessToken, site.Id);
        using (var revoked = await Sharing.UntickAsync(fixture.Factory, seeker.Tokens.AccessToken, site.Id))
        {
            Assert.Equal(HttpStatusCode.OK, revoked.StatusCode);
            var body = await revoked.ReadJsonAsync();
            Assert.Equal("revoked", body.GetProperty("state").GetString());
            using var client = fixture.Client().WithToken(seeker.Tokens.AccessToken);
            var receipt = await (await client.GetAsync($"/api/v1/me/receipts/{body.GetProperty("receiptId").GetGuid()}")).ReadJsonAsync();
            Assert.Equal("revoked", receipt.GetProperty("event").GetString());
            Assert.Equal("recruitment", receipt.GetProperty("purpose").GetString());
            Assert.Equal("api", receipt.GetProperty("collectionMethod").GetString());
            Assert.EndsWith(".example/privacy", receipt.GetProperty("policyUrl").GetString(), StringComparison.Ordinal);
            Assert.Equal(site.DisplayName, receipt.GetProperty("recipient").GetProperty("name").GetString());
            Assert.False(string.IsNullOrEmpty(receipt.GetProperty("controller").GetProperty("name").GetString()));
            Assert.Contains("cv", receipt.GetProperty("dataCategories").EnumerateArray().Select(c => c.GetString()));
            // The end receipt says how the consent ended, not how to end it; it no longer lapses on any date.
            Assert.StartsWith("Withdrawn by the data subject at ", receipt.GetProperty("termination").GetString(), StringComparison.Ordinal);
            Assert.True(!receipt.TryGetProperty("expiresAt", out var until) || until.ValueKind == System.Text.Json.JsonValueKind.Null);
            var grant = await (await client.GetAsync($"/api/v1/me/receipts/{ticked.GetProperty("receiptId").GetGuid()}")).ReadJsonAsync();
            Assert.StartsWith("Untick the site", grant.GetProperty("termination").GetString(), StringComparison.Ordinal);
            Assert.Equal(System.Text.Json.JsonValueKind.String, grant.GetProperty("expiresAt").ValueKind);
        }

        // Unticking again changes nothing: no new event, receipt or obligation.
        var traces = $"""
            SELECT (SELECT count(*) FROM consent_events WHERE seeker_id = '{seeker.Id}')
                 + (SELECT count(*) FROM erasure_obligations o JOIN consents c ON c.id = o.consent_id WHERE c.seeker_id = '{seeker.Id}')
            """;
        var before = await fixture.Database.ScalarAsync<long>(traces);
        using (var again = await Sharing.UntickAsync(fixture.Factory, seeker.Tokens.AccessToken, site.Id))
        {
            Assert.Equal(HttpStatusCode.NoContent, again.StatusCode);
        }

        Assert.Equal(before, await fixture.Database.ScalarAsync<long>(traces));
    }

    /// <summary>
    /// A receipt records the event as it was: the site's name, policy and website when the seeker decided, not what the
    /// operator changed them to since.
    /// </summary>
    [Fact]
    public async Task AReceiptKeepsTheSitesDescriptionAsItWasWhenTheSeekerDecided()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        var @operator = await fixture.Actors.NewOperatorAsync();
        using var admin = fixture.Client().WithToken(@operator.Tokens.AccessToken);
        var site = await Sites.RegisterAsync(admin);
        var website = site.Recipient.GetProperty("website").GetString();
        var ticked = await Sharing.TickAsync(fixture.Factory, seeker.Tokens.AccessToken, site.Id);
        using (var edited = await admin.PatchAsJsonAsync($"{Sites.AdminPath}/{site.Id}", new System.Text.Json.Nodes.JsonObject
               {
                   ["displayName"] = "Renamed " + Guid.NewGuid().ToString("N")[..6], ["website"] = "https://moved.example/", ["privacyPolicyUrl"] = "https://moved.example/privacy",
               }))
        {
            Assert.Equal(HttpStatusCode.OK, edited.StatusCode);
        }

        using var client = fixture.Client().WithToken(seeker.Tokens.AccessToken);
        var receipt = await (await client.GetAsync($"/api/v1/me/receipts/{ticked.GetProperty("receiptId").GetGuid()}")).ReadJsonAsync();
        Assert.Equal((site.DisplayName, website), (receipt.GetProperty("recipient").GetProperty("name").GetString(), receipt.GetProperty("recipient").GetProperty("website").GetString()));
        Assert.Equal(site.Recipient.GetProperty("privacyPolicyUrl").GetString(), receipt.GetProperty("policyUrl").GetString());
    }

    /// <summary>.NET keeps 100 ns ticks, PostgreSQL whole microseconds: what a tick or an untick answers must be what a later read returns.</summary>
    [Fact]
    public async Task TheTimesATickOrAnUntickAnswersAreTheTimesALaterGetReturns()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        var site = await Sites.RegisterAsync(fixture.Factory, fixture.Actors);
        using var client = fixture.Client().WithToken(seeker.Tokens.AccessToken);

        fixture.Time.AdvanceToSubMicrosecondTick();
        var granted = await Sharing.TickAsync(fixture.Factory, seeker.Tokens.AccessToken, site.Id);
        var grantedAt = granted.GetProperty("grantedAt").GetDateTimeOffset();
        var active = await MyConsentAsync();
        Assert.Equal(grantedAt, active.GetProperty("since").GetDateTimeOffset());
        Assert.Equal(granted.GetProperty("expiresAt").GetDateTimeOffset(), active.GetProperty("expiresAt").GetDateTimeOffset());
        var receipt = await (await client.GetAsync($"/api/v1/me/receipts/{granted.GetProperty("receiptId").GetGuid()}")).ReadJsonAsync();
        Assert.Equal(grantedAt, receipt.GetProperty("timestamp").GetDateTimeOffset());

        fixture.Time.AdvanceToSubMicrosecondTick();
        using var untick = await Sharing.UntickAsync(fixture.Factory, seeker.Tokens.AccessToken, site.Id);
        Assert.Equal(HttpStatusCode.OK, untick.StatusCode);
        var endedAt = (await untick.ReadJsonAsync()).GetProperty("endedAt").GetDateTimeOffset();
        Assert.Equal(endedAt, (await MyConsentAsync()).GetProperty("since").GetDateTimeOffset());
        var history = await (await client.GetAsync($"/api/v1/me/consents/{site.Id}/history")).ReadJsonAsync();
        Assert.Equal([grantedAt, endedAt], history.GetProperty("items").EnumerateArray().Select(e => e.GetProperty("at").GetDateTimeOffset()));

        async Task<System.Text.Json.JsonElement> MyConsentAsync()
        {
            var list = await (await client.GetAsync("/api/v1/me/consents")).ReadJsonAsync();
            return list.GetProperty("items").EnumerateArray().Single(e => e.GetProperty("recipientId").GetGuid() == site.Id);
        }
    }

    [Fact]
    public async Task UnknownRecipientsAre404AndCreateNothing()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        var before = await fixture.Database.ScalarAsync<long>("SELECT count(*) FROM consents");
        using var client = fixture.Client().WithToken(seeker.Tokens.AccessToken);
        await (await client.PutAsync($"/api/v1/me/consents/{Guid.NewGuid()}", null)).AssertProblemAsync(HttpStatusCode.NotFound);
        await (await client.PutAsync("/api/v1/me/consents/not-a-guid", null)).AssertProblemAsync(HttpStatusCode.NotFound);
        await (await client.DeleteAsync($"/api/v1/me/consents/{Guid.NewGuid()}")).AssertProblemAsync(HttpStatusCode.NotFound);
        Assert.Equal(before, await fixture.Database.ScalarAsync<long>("SELECT count(*) FROM consents"));
    }

    [Fact]
    public async Task RacingTicksAndUnticksLeaveOneConsistentState()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        var site = await Sites.RegisterAsync(fixture.Factory, fixture.Actors);
        var responses = await Task.WhenAll(Enumerable.Range(0, 20).Select(i => i % 2 == 0
            ? ClientPut()
            : Sharing.UntickAsync(fixture.Factory, seeker.Tokens.AccessToken, site.Id)));
        Assert.All(responses, r => Assert.True(r.IsSuccessStatusCode, $"{(int)r.StatusCode}"));

        var active = await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM consents WHERE seeker_id = '{seeker.Id}' AND state = 'Active'");
        Assert.InRange(active, 0, 1);
        // Every episode but the last one ended, and each has exactly the receipts its life produced.
        var episodes = await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM consents WHERE seeker_id = '{seeker.Id}'");
        var grants = await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM consent_events WHERE seeker_id = '{seeker.Id}' AND kind = 'Granted'");
        var revokes = await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM consent_events WHERE seeker_id = '{seeker.Id}' AND kind = 'Revoked'");
        Assert.Equal(episodes, grants);
        Assert.Equal(episodes - active, revokes);
        foreach (var response in responses)
        {
            response.Dispose();
        }

        async Task<HttpResponseMessage> ClientPut()
        {
            using var client = fixture.Client().WithToken(seeker.Tokens.AccessToken);
            return await client.PutAsync($"/api/v1/me/consents/{site.Id}", null);
        }
    }

    [Fact]
    public async Task TheConsentListShowsEveryActiveSiteWithMyState()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        var site = await Sites.RegisterAsync(fixture.Factory, fixture.Actors);
        await Sharing.TickAsync(fixture.Factory, seeker.Tokens.AccessToken, site.Id);
        using var client = fixture.Client().WithToken(seeker.Tokens.AccessToken);
        var list = await (await client.GetAsync("/api/v1/me/consents")).ReadJsonAsync();
        var entries = list.GetProperty("items").EnumerateArray().ToList();
        Assert.Contains(entries, e => e.GetProperty("recipientName").GetString() == "Démo Emploi");
        var mine = entries.Single(e => e.GetProperty("recipientId").GetGuid() == site.Id);
        Assert.Equal("active", mine.GetProperty("state").GetString());
        Assert.NotEqual(System.Text.Json.JsonValueKind.Null, mine.GetProperty("receiptId").ValueKind);
    }

    /// <summary>The export's lists are read by pages: one longer than a page comes whole, in order, nothing twice.</summary>
    [Fact]
    public async Task AnExportListLongerThanAPageComesWholeAndInOrder()
    {
        var marker = "paged-export-" + Guid.NewGuid().ToString("N");
        var seeker = await Propagation.SeekerWithCvAsync(fixture.Factory, fixture.Actors, marker);
        var site = await Sites.RegisterAsync(fixture.Factory, fixture.Actors);
        await Sharing.TickAsync(fixture.Factory, seeker.Tokens.AccessToken, site.Id);
        var siteToken = await fixture.Actors.TokenAsync(site);
        var id = await Propagation.ReadAsync(fixture.Factory, siteToken, marker);
        using (var reader = fixture.Client().WithToken(siteToken))
        {
            for (var i = 0; i < ExchangeGateway.Cvs.MyDataEndpoints.ExportPage; i++)
            {
                using var read = await reader.GetAsync($"{Sites.FeedPath}/{id}");
                Assert.Equal(HttpStatusCode.OK, read.StatusCode);
            }
        }

        using var client = fixture.Client().WithToken(seeker.Tokens.AccessToken);
        var export = await (await client.GetAsync("/api/v1/me/export")).ReadJsonAsync();
        // Where each sharing stands, with what no history event holds: until when it runs. Sites never ticked are not listed.
        var sharing = Assert.Single(export.GetProperty("consents").EnumerateArray());
        Assert.Equal((site.Id, "active"), (sharing.GetProperty("recipientId").GetGuid(), sharing.GetProperty("state").GetString()));
        Assert.True(sharing.GetProperty("expiresAt").GetDateTimeOffset() > fixture.Time.GetUtcNow());
        var ids = export.GetProperty("disclosures").EnumerateArray().Select(d => d.GetProperty("id").GetInt64()).ToList();
        Assert.Equal(ExchangeGateway.Cvs.MyDataEndpoints.ExportPage + 1, ids.Count);
        Assert.Equal(ids.Order(), ids);
        Assert.Equal(ids.Count, ids.Distinct().Count());
        Assert.Equal(ids, await fixture.Database.ScalarAsync<long[]>($"SELECT array_agg(id ORDER BY id) FROM disclosures WHERE seeker_id = '{seeker.Id}'"));

        // The consent history and the erasures past a page too: copies of the seeker's rows, some sharing one instant (the
        // history's keyset is time, then id).
        fixture.Time.Advance(TimeSpan.FromSeconds(1));
        using (var untick = await Sharing.UntickAsync(fixture.Factory, seeker.Tokens.AccessToken, site.Id))
        {
            Assert.Equal(HttpStatusCode.OK, untick.StatusCode);
        }

        await CloneRowsAsync("consent_events", $"seeker_id = '{seeker.Id}' AND kind = 'Revoked'", ExchangeGateway.Cvs.MyDataEndpoints.ExportPage + 5,
            ("id", "gen_random_uuid()"), ("at", "at - (n % 3) * interval '1 millisecond'"));
        await CloneRowsAsync("erasure_obligations", $"consent_id IN (SELECT id FROM consents WHERE seeker_id = '{seeker.Id}')", ExchangeGateway.Cvs.MyDataEndpoints.ExportPage + 5,
            ("id", null), ("jti", "gen_random_uuid()"));
        var full = await (await client.GetAsync("/api/v1/me/export")).ReadJsonAsync();
        Assert.Equal(
            await fixture.Database.ScalarAsync<string[]>($"SELECT array_agg(id::text ORDER BY at, id) FROM consent_events WHERE seeker_id = '{seeker.Id}'"),
            full.GetProperty("consentEvents").EnumerateArray().Select(e => e.GetProperty("id").GetString()!).ToArray());
        Assert.Equal(
            await fixture.Database.ScalarAsync<long[]>($"SELECT array_agg(o.id ORDER BY o.id DESC) FROM erasure_obligations o JOIN consents c ON c.id = o.consent_id WHERE c.seeker_id = '{seeker.Id}'"),
            full.GetProperty("erasures").EnumerateArray().Select(e => e.GetProperty("id").GetInt64()).ToArray());
    }

    /// <summary>
    /// Inserts <paramref name="copies"/> copies of the rows matching <paramref name="where"/>, every column as it is except
    /// those given (an expression over the row and n, the copy's number; null: the column's default).
    /// </summary>
    private async Task CloneRowsAsync(string table, string where, int copies, params (string Column, string? Value)[] changed)
    {
        var columns = (await fixture.Database.ScalarAsync<string[]>(
            $"SELECT array_agg(column_name::text ORDER BY ordinal_position) FROM information_schema.columns WHERE table_schema = 'public' AND table_name = '{table}'"))
            .Where(c => changed.All(x => x.Column != c || x.Value is not null)).ToList();
        var values = columns.Select(c => changed.FirstOrDefault(x => x.Column == c).Value ?? c);
        await fixture.Database.ExecuteAsync(
            $"INSERT INTO {table} ({string.Join(", ", columns)}) SELECT {string.Join(", ", values)} FROM {table}, generate_series(1, {copies}) AS n WHERE {where}");
    }

    /// <summary>The export's audit rows name a site by its client id and the seeker by their pseudonym, staff by role only.</summary>
    [Fact]
    public void AnExportedAuditRowNamesStaffByRoleOnly()
    {
        static AuditEvent Row(string kind, string? actor) => new()
        {
            Sequence = 7, OccurredAt = DateTimeOffset.UnixEpoch, ActorKind = kind, ActorId = actor, Action = AuditActions.ConsentEnded,
            Outcome = Outcomes.Success, Details = "{\"cause\":\"recipient-suspended\"}", PreviousHash = [], Hash = [0xab, 0x01],
        };

        Assert.Null(ExchangeGateway.Cvs.MyAuditRecord.Of(Row(ActorKinds.Operator, "operator-account-id")).ActorId);
        Assert.Null(ExchangeGateway.Cvs.MyAuditRecord.Of(Row(ActorKinds.Auditor, "auditor-account-id")).ActorId);
        var bySite = ExchangeGateway.Cvs.MyAuditRecord.Of(Row(ActorKinds.Recipient, "site-a"));
        Assert.Equal(("site-a", "ab01", "recipient-suspended"), (bySite.ActorId, bySite.Hash, bySite.Details!.Value.GetProperty("cause").GetString()));
    }

    [Fact]
    public async Task ExportHoldsEverythingAboutMe()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        var marker = "export-" + Guid.NewGuid().ToString("N");
        await Sharing.PutCvAsync(fixture.Factory, seeker.Tokens.AccessToken, Sharing.Resume(marker));
        var site = await Sites.RegisterAsync(fixture.Factory, fixture.Actors);
        await Sharing.TickAsync(fixture.Factory, seeker.Tokens.AccessToken, site.Id);
        await Sharing.ReadFeedAsync(fixture.Factory, await fixture.Actors.TokenAsync(site));

        // A second later (the history is in time order; two facts of one instant have no order of their own).
        fixture.Time.Advance(TimeSpan.FromSeconds(1));
        using (var untick = await Sharing.UntickAsync(fixture.Factory, seeker.Tokens.AccessToken, site.Id))
        {
            Assert.Equal(HttpStatusCode.OK, untick.StatusCode);
        }

        using var client = fixture.Client().WithToken(seeker.Tokens.AccessToken);
        var export = await (await client.GetAsync("/api/v1/me/export")).ReadJsonAsync();
        Assert.Equal((seeker.Id, seeker.Email), (export.GetProperty("account").GetProperty("id").GetString(), export.GetProperty("account").GetProperty("email").GetString()));
        Assert.Contains(marker, export.GetProperty("cv").GetProperty("document").GetRawText(), StringComparison.Ordinal);
        // The whole story of the sharing, as the tables hold it: the tick and the untick, the read, and the erasure it owes.
        var events = export.GetProperty("consentEvents").EnumerateArray().ToList();
        Assert.Equal(["granted", "revoked"], events.Select(e => e.GetProperty("kind").GetString()));
        Assert.All(events, e => Assert.Equal(site.DisplayName, e.GetProperty("recipientName").GetString()));
        Assert.Equal(await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM consent_events WHERE seeker_id = '{seeker.Id}'"), events.Count);
        var disclosure = Assert.Single(export.GetProperty("disclosures").EnumerateArray());
        Assert.Equal((site.Id, 1), (disclosure.GetProperty("recipientId").GetGuid(), disclosure.GetProperty("version").GetInt32()));
        var erasure = Assert.Single(export.GetProperty("erasures").EnumerateArray());
        Assert.Equal((site.Id, "consent-revoked", "pending"),
            (erasure.GetProperty("recipientId").GetGuid(), erasure.GetProperty("cause").GetString(), erasure.GetProperty("status").GetString()));

        // The audit log's rows about me, in chain order, up to the export itself: each as the chain holds it (number and
        // hash), the site named by its client id; the export's own row comes after them.
        var pseudonym = fixture.Factory.Services.GetRequiredService<ExchangeGateway.Audit.Pseudonyms>().Of(seeker.Id);
        var trail = export.GetProperty("auditTrail").EnumerateArray().ToList();
        var stored = await fixture.Database.ScalarAsync<string>(
            $"SELECT string_agg(sequence || ':' || encode(hash, 'hex'), ' ' ORDER BY sequence) FROM audit_events WHERE subject = '{pseudonym}' AND action <> '{AuditActions.SeekerExported}'");
        Assert.Equal(stored, string.Join(' ', trail.Select(r => $"{r.GetProperty("sequence").GetInt64()}:{r.GetProperty("hash").GetString()}")));
        var actions = trail.Select(r => r.GetProperty("action").GetString()).ToList();
        Assert.Contains(AuditActions.CvPublished, actions);
        Assert.Contains(AuditActions.ConsentGranted, actions);
        Assert.Contains(AuditActions.ConsentRevoked, actions);
        var read = Assert.Single(trail, r => r.GetProperty("action").GetString() == AuditActions.CvDisclosed);
        Assert.Equal((site.ClientId, site.ClientId), (read.GetProperty("actorId").GetString(), read.GetProperty("recipient").GetString()));
        Assert.Equal(disclosure.GetProperty("id").GetInt64(), read.GetProperty("details").GetProperty("ledger").GetInt64());
        Assert.Equal(1L, await fixture.Database.ScalarAsync<long>(
            $"SELECT count(*) FROM audit_events WHERE subject = '{pseudonym}' AND action = '{AuditActions.SeekerExported}' AND sequence > {trail[^1].GetProperty("sequence").GetInt64()}"));
    }
}
