using Microsoft.Extensions.DependencyInjection;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using ExchangeGateway.Auth;
using ExchangeGateway.Tests.Infrastructure;

namespace ExchangeGateway.Tests.Recipients;

[Collection(GatewayCollection.Name)]
public sealed class SuspensionTests(GatewayFixture fixture)
{
    /// <summary>
    /// A suspension decides each episode's end before it takes the chain lock, and takes effect under it. An episode that
    /// lapses in between was over by the time the suspension took effect: it expired, when it lapsed, and its receipt,
    /// audit record and erasure event say so, not that the suspension ended it.
    /// </summary>
    [Fact]
    public async Task AnEpisodeThatLapsesWhileTheSuspensionWaitsForTheChainLockExpired()
    {
        using var admin = await AdminAsync();
        var site = await Sites.RegisterAsync(admin);
        var marker = "lapse-during-suspension-" + Guid.NewGuid().ToString("N");
        var seeker = await Propagation.SeekerWithCvAsync(fixture.Factory, fixture.Actors, marker);
        await Sharing.TickAsync(fixture.Factory, seeker.Tokens.AccessToken, site.Id);
        await Propagation.ReadAsync(fixture.Factory, await fixture.Actors.TokenAsync(site), marker);
        var lapse = fixture.Time.GetUtcNow().AddSeconds(30);
        await fixture.Database.ExecuteAsync(
            $"UPDATE consents SET expires_at = '{lapse.ToString("O", System.Globalization.CultureInfo.InvariantCulture)}' WHERE recipient_id = '{site.Id}'");

        Task<HttpResponseMessage> suspension;
        await using (var batch = await HeldTransaction.BeginAsync(fixture.Database))
        {
            await batch.ExecuteAsync($"SELECT pg_advisory_xact_lock({ExchangeGateway.Data.Locks.Chain})");
            suspension = admin.PostAsJsonAsync($"{Sites.AdminPath}/{site.Id}/suspend", new JsonObject { ["reason"] = "lapse race" });
            await HeldTransaction.WaitForWaiterAsync(fixture.Database, "advisory");
            fixture.Time.Advance(TimeSpan.FromMinutes(1));
            await batch.CommitAsync();
        }

        using (var suspended = await suspension)
        {
            Assert.Equal(HttpStatusCode.OK, suspended.StatusCode);
        }

        var where = $"recipient_id = '{site.Id}'";
        Assert.Equal("Expired", await fixture.Database.ScalarAsync<string>($"SELECT state FROM consents WHERE {where}"));
        Assert.Equal("consent-expired", await fixture.Database.ScalarAsync<string>($"SELECT end_cause FROM consents WHERE {where}"));
        Assert.True(await fixture.Database.ScalarAsync<bool>($"SELECT ended_at = expires_at FROM consents WHERE {where}"));
        Assert.Equal("Expired", await fixture.Database.ScalarAsync<string>($"SELECT kind FROM consent_events WHERE {where} ORDER BY at DESC LIMIT 1"));
        Assert.True(await fixture.Database.ScalarAsync<bool>(
            $"SELECT e.at = c.expires_at FROM consent_events e JOIN consents c ON c.id = e.consent_id WHERE c.{where} AND e.kind = 'Expired'"));
        Assert.Equal("consent-expired", await fixture.Database.ScalarAsync<string>($"SELECT cause FROM erasure_obligations WHERE {where}"));
        Assert.Equal(1L, await fixture.Database.ScalarAsync<long>(
            $"SELECT count(*) FROM audit_events WHERE action = '{ExchangeGateway.Audit.AuditActions.ConsentExpired}' AND recipient = '{site.ClientId}'"));
        Assert.Equal(0L, await fixture.Database.ScalarAsync<long>(
            $"SELECT count(*) FROM audit_events WHERE action = '{ExchangeGateway.Audit.AuditActions.ConsentEnded}' AND recipient = '{site.ClientId}'"));
    }

    [Fact]
    public async Task ASuspendedSiteIsRefusedAtOnceWithItsLiveTokenAndComesBackWhenReinstated()
    {
        using var admin = await AdminAsync();
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

        // The append-only log keeps what proves the reason, not the operator's free text (which could name someone).
        var details = await fixture.Database.ScalarAsync<string>(
            $"SELECT details FROM audit_events WHERE action = '{ExchangeGateway.Audit.AuditActions.RecipientSuspended}' AND recipient = '{site.ClientId}'");
        Assert.DoesNotContain("breach", details, StringComparison.OrdinalIgnoreCase);
        Assert.Contains(ExchangeGateway.Recipients.AdminRecipientEndpoints.ReasonDigest(
            fixture.Factory.Services.GetRequiredService<ExchangeGateway.Audit.Pseudonyms>(), "Data breach under investigation"), details, StringComparison.Ordinal);

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

    /// <summary>The API tells what the page tells: a sharing the site's suspension ended stays listed, as ended, with its receipt.</summary>
    [Fact]
    public async Task MyConsentsListASharingEndedByTheSitesSuspension()
    {
        using var admin = await AdminAsync();
        var site = await Sites.RegisterAsync(admin);
        var seeker = await fixture.Actors.NewSeekerAsync();
        await Sharing.TickAsync(fixture.Factory, seeker.Tokens.AccessToken, site.Id);
        using var me = fixture.Client().WithToken(seeker.Tokens.AccessToken);

        await ChangeStatusAsync(admin, site.Id, "suspend");

        var ended = await MineAsync(me, site.Id);
        Assert.Equal("ended", ended.GetProperty("state").GetString());
        Assert.Equal(site.DisplayName, ended.GetProperty("recipientName").GetString());
        Assert.Equal(JsonValueKind.Null, ended.GetProperty("expiresAt").ValueKind);
        var receipt = ended.GetProperty("receiptId").GetGuid();
        using (var shown = await me.GetAsync($"/api/v1/me/receipts/{receipt}"))
        {
            Assert.Equal(HttpStatusCode.OK, shown.StatusCode);
        }

        // Reinstated, the site is listed as any other again: once, where the sharing ended.
        await ChangeStatusAsync(admin, site.Id, "reinstate");

        Assert.Equal(("ended", receipt), ((await MineAsync(me, site.Id)).GetProperty("state").GetString(), (await MineAsync(me, site.Id)).GetProperty("receiptId").GetGuid()));
    }

    /// <summary>An episode an earlier suspension ended is history once the seeker ticked and unticked again after the reinstatement.</summary>
    [Fact]
    public async Task ASecondSuspensionDoesNotShowTheFirstOnesEndingAsWhereTheSharingStands()
    {
        using var admin = await AdminAsync();
        var site = await Sites.RegisterAsync(admin);
        var seeker = await fixture.Actors.NewSeekerAsync();
        using var me = fixture.Client().WithToken(seeker.Tokens.AccessToken);
        await Sharing.TickAsync(fixture.Factory, seeker.Tokens.AccessToken, site.Id);
        await ChangeStatusAsync(admin, site.Id, "suspend");
        await ChangeStatusAsync(admin, site.Id, "reinstate");
        fixture.Time.Advance(TimeSpan.FromSeconds(1));
        await Sharing.TickAsync(fixture.Factory, seeker.Tokens.AccessToken, site.Id);
        using (var untick = await Sharing.UntickAsync(fixture.Factory, seeker.Tokens.AccessToken, site.Id))
        {
            Assert.Equal(HttpStatusCode.OK, untick.StatusCode);
        }

        await ChangeStatusAsync(admin, site.Id, "suspend");
        var mine = (await (await me.GetAsync("/api/v1/me/consents")).ReadJsonAsync()).GetProperty("items").EnumerateArray();
        Assert.DoesNotContain(mine, c => c.GetProperty("recipientId").GetGuid() == site.Id);
    }

    private async Task<HttpClient> AdminAsync() => fixture.Client().WithToken((await fixture.Actors.NewOperatorAsync()).Tokens.AccessToken);

    /// <summary>Suspends or reinstates the site, for a reason that does not matter to the test.</summary>
    private static async Task ChangeStatusAsync(HttpClient admin, Guid siteId, string change)
    {
        using var changed = await admin.PostAsJsonAsync($"{Sites.AdminPath}/{siteId}/{change}", new JsonObject { ["reason"] = "Inquiry" });
        Assert.Equal(HttpStatusCode.OK, changed.StatusCode);
    }

    private static async Task<JsonElement> MineAsync(HttpClient me, Guid siteId) =>
        (await (await me.GetAsync("/api/v1/me/consents")).ReadJsonAsync()).GetProperty("items").EnumerateArray()
            .Single(c => c.GetProperty("recipientId").GetGuid() == siteId);

    [Fact]
    public async Task SuspendingTwiceKeepsTheFirstReason()
    {
        using var admin = await AdminAsync();
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
        using var admin = await AdminAsync();
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
        using var admin = await AdminAsync();
        await (await admin.PostAsJsonAsync($"{Sites.AdminPath}/{Guid.CreateVersion7()}/suspend", new JsonObject { ["reason"] = "x" }))
            .AssertProblemAsync(HttpStatusCode.NotFound);
    }

    /// <summary>
    /// A site with more episodes than one batch: every one ends, each with its receipt and audit event, in transactions
    /// of a batch each. And a suspension whose node stopped half-way (episodes still active under a suspended site) is
    /// finished by the consent expiry job.
    /// </summary>
    [Fact]
    public async Task ALargeSitesSuspensionEndsEveryEpisodeInBatchesAndTheExpiryJobFinishesAnInterruptedOne()
    {
        await using var database = await TestDatabase.CreateAsync();
        await using var node = new GatewayFactory(database, new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow));
        var actors = new Actors(node);
        var @operator = await actors.NewOperatorAsync();
        using var admin = node.CreateHttpClient().WithToken(@operator.Tokens.AccessToken);
        var site = await Sites.RegisterAsync(admin);
        var episodes = ExchangeGateway.Recipients.SuspensionConsequences.BatchSize + 7;
        await SeedEpisodesAsync(database, site.Id, episodes, "big");

        using (var suspended = await admin.PostAsJsonAsync($"{Sites.AdminPath}/{site.Id}/suspend", new JsonObject { ["reason"] = "large" }))
        {
            Assert.Equal(HttpStatusCode.OK, suspended.StatusCode);
        }

        Assert.Equal(0L, await database.ScalarAsync<long>($"SELECT count(*) FROM consents WHERE recipient_id = '{site.Id}' AND state = 'Active'"));
        Assert.Equal((long)episodes, await database.ScalarAsync<long>($"SELECT count(*) FROM consent_events WHERE recipient_id = '{site.Id}' AND kind = 'Ended'"));
        Assert.Equal((long)episodes, await database.ScalarAsync<long>($"SELECT count(*) FROM audit_events WHERE action = 'consent.ended' AND recipient = '{site.ClientId}'"));

        // Episodes left active under the suspended site, as a node stopping between batches would leave them.
        await SeedEpisodesAsync(database, site.Id, 3, "left");
        var reinstate = () => admin.PostAsJsonAsync($"{Sites.AdminPath}/{site.Id}/reinstate", new JsonObject { ["reason"] = "cleared" });
        // Not while episodes the suspension has to end still stand: reinstated, they would stand again.
        await (await reinstate()).AssertProblemAsync(HttpStatusCode.Conflict);
        Assert.True(await node.RunConsentExpiryAsync() >= 3);
        Assert.Equal(0L, await database.ScalarAsync<long>($"SELECT count(*) FROM consents WHERE recipient_id = '{site.Id}' AND state = 'Active'"));
        Assert.Equal((long)episodes + 3, await database.ScalarAsync<long>($"SELECT count(*) FROM consent_events WHERE recipient_id = '{site.Id}' AND kind = 'Ended'"));
        Assert.Equal(HttpStatusCode.OK, (await reinstate()).StatusCode);
    }

    /// <summary>
    /// A sharing the suspension has not reached yet (a large site's later batch, or one a stopped node left to the expiry
    /// job) is listed as ended by the suspension, in the API and on the Partage page, not missing from both lists; and it
    /// stays listed so once the expiry job ends it.
    /// </summary>
    [Fact]
    public async Task ASharingTheSuspensionHasNotReachedYetIsListedAsEndedByIt()
    {
        var site = await Sites.RegisterAsync(fixture.Factory, fixture.Actors);
        var seeker = await Propagation.SeekerWithCvAsync(fixture.Factory, fixture.Actors, "not-reached-" + Guid.NewGuid().ToString("N"));
        await Sharing.TickAsync(fixture.Factory, seeker.Tokens.AccessToken, site.Id);
        // The site's status committed, this seeker's episode not ended yet: as a node stopping between batches leaves it.
        await fixture.Database.ExecuteAsync($"UPDATE recipients SET status = 'Suspended' WHERE id = '{site.Id}'");
        using var me = fixture.Client().WithToken(seeker.Tokens.AccessToken);

        async Task<JsonElement> ListedAsync() =>
            Assert.Single((await me.GetFromJsonAsync<JsonElement>("/api/v1/me/consents")).GetProperty("items").EnumerateArray(),
                item => item.GetProperty("recipientId").GetGuid() == site.Id);
        var listed = await ListedAsync();
        Assert.Equal("ended", listed.GetProperty("state").GetString());
        Assert.Equal(JsonValueKind.String, listed.GetProperty("since").ValueKind);

        using (var page = new ExchangeGateway.Tests.Pages.PageSession(fixture.Factory))
        {
            await Actors.SubmitLoginAsync(page.Http, new Uri("/Account/Login", UriKind.Relative), seeker.Email, seeker.Password);
            Assert.Contains(System.Net.WebUtility.HtmlEncode(site.DisplayName), await page.GetPageAsync("/Sharing"), StringComparison.Ordinal);
        }

        Assert.True(await fixture.Factory.RunConsentExpiryAsync() >= 1);
        Assert.Equal("ended", (await ListedAsync()).GetProperty("state").GetString());
    }

    private static Task SeedEpisodesAsync(TestDatabase database, Guid siteId, int count, string prefix) => database.ExecuteAsync($"""
        INSERT INTO consents (id, seeker_id, recipient_id, pairwise_id, state, collection_method, granted_at, expires_at, expiry_reminder_sent)
        SELECT gen_random_uuid(), '{prefix}-' || g || '-' || gen_random_uuid(), '{siteId}', left(replace(gen_random_uuid()::text, '-', ''), 32), 'Active', 'Web',
               now() - interval '1 day', now() + interval '300 days', false
        FROM generate_series(1, {count}) g
        """);
}
