using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using ExchangeGateway.Audit;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace ExchangeGateway.Tests.Audit;

[Collection(GatewayCollection.Name)]
public sealed class AuditQueryTests(GatewayFixture fixture)
{
    [Fact]
    public async Task EveryOperatorActionOnASiteIsRecordedWithTheOperatorAndTheSite()
    {
        var @operator = await fixture.Actors.NewOperatorAsync();
        using var admin = fixture.Client().WithToken(@operator.Tokens.AccessToken);
        var site = await Sites.RegisterAsync(admin);
        var one = $"{Sites.AdminPath}/{site.Id}";
        Assert.Equal(HttpStatusCode.OK, (await admin.PatchAsJsonAsync(one, new JsonObject { ["legalName"] = "Renamed SAS" })).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await admin.PostAsync($"{one}/rotate-secret", null)).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await admin.PostAsJsonAsync($"{one}/suspend", new JsonObject { ["reason"] = "Unanswered erasure requests" })).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await admin.PostAsJsonAsync($"{one}/reinstate", new JsonObject { ["reason"] = "Backlog cleared" })).StatusCode);
        using var auditor = fixture.Client().WithToken(await fixture.Actors.AuditorClientTokenAsync());

        var registered = Assert.Single(await AuditLog.EventsAsync(auditor, $"recipient={site.ClientId}&action=recipient.registered"));
        Assert.Equal("operator", registered.GetProperty("actorKind").GetString());
        Assert.Equal(@operator.Id, registered.GetProperty("actorId").GetString());
        Assert.Equal(site.ClientId, registered.GetProperty("recipient").GetString());
        Assert.Equal("success", registered.GetProperty("outcome").GetString());
        // What the site was registered as: the name and policy seekers consent to, where its events go; not its contact
        // e-mail, which can be a person's.
        var described = registered.GetProperty("details");
        Assert.Equal((site.DisplayName, "poll", "client_secret_basic"), (described.GetProperty("displayName").GetString(),
            described.GetProperty("deliveryMode").GetString(), described.GetProperty("clientAuthentication").GetString()));
        Assert.Equal(site.Recipient.GetProperty("privacyPolicyUrl").GetString(), described.GetProperty("privacyPolicyUrl").GetString());
        Assert.DoesNotContain("dpo@", registered.GetRawText(), StringComparison.Ordinal);
        var updated = Assert.Single(await AuditLog.EventsAsync(auditor, $"recipient={site.ClientId}&action=recipient.updated"));
        Assert.Equal("Renamed SAS", updated.GetProperty("details").GetProperty("legalName").GetString());
        Assert.Equal(["legalName"], updated.GetProperty("details").GetProperty("fields").EnumerateArray().Select(f => f.GetString()!).ToArray());

        var suspended = Assert.Single(await AuditLog.EventsAsync(auditor, $"recipient={site.ClientId}&action=recipient.suspended"));
        Assert.Equal(@operator.Id, suspended.GetProperty("actorId").GetString());
        // The reason's text stays on the site's row; the log keeps a keyed digest of it (free text could name someone).
        Assert.Equal(ExchangeGateway.Recipients.AdminRecipientEndpoints.ReasonDigest(
                fixture.Factory.Services.GetRequiredService<ExchangeGateway.Audit.Pseudonyms>(), "Unanswered erasure requests"),
            suspended.GetProperty("details").GetProperty("reasonDigest").GetString());

        var all = await AuditLog.EventsAsync(auditor, $"recipient={site.ClientId}");
        Assert.Equal(
            ["recipient.registered", "recipient.updated", "recipient.secret-rotated", "recipient.suspended", "recipient.reinstated"],
            AuditLog.Actions(all));
        // The site's id, as the admin API and the compliance endpoint name it, finds the same rows.
        Assert.Equal(AuditLog.Actions(all), AuditLog.Actions(await AuditLog.EventsAsync(auditor, $"recipient={site.Id}")));
        // Secrets never reach the log, in clear or hashed.
        Assert.All(all, e => Assert.DoesNotContain(site.ClientSecret!, e.GetRawText(), StringComparison.Ordinal));
    }

    [Fact]
    public async Task AnAuditorsQueriesExportsAndVerificationsAreThemselvesRecorded()
    {
        var person = await fixture.Actors.NewAuditorAsync();
        using var auditor = fixture.Client().WithToken(person.Tokens.AccessToken);
        var lookedFor = AuditLog.NewGhostClientId();

        Assert.Empty(await AuditLog.EventsAsync(auditor, $"recipient={lookedFor}"));
        using (var export = await auditor.GetAsync($"{AuditLog.ExportPath}?recipient={lookedFor}"))
        {
            Assert.Equal(HttpStatusCode.OK, export.StatusCode);
        }

        await AuditLog.VerifyAsync(auditor);

        // The auditor's sign-in (code flow, adding an authenticator the first time) comes first, then what they did.
        var own = await AuditLog.EventsAsync(auditor, $"actor={person.Id}");
        Assert.Equal(["auth.password-accepted", "account.two-factor-enabled", "auth.sign-in", "audit.queried", "audit.exported", "audit.verified"], AuditLog.Actions(own));
        Assert.All(own, e => Assert.Equal("auditor", e.GetProperty("actorKind").GetString()));
        // A value the log does not hold (a typo, or a raw id or address that must not outlive an erasure) is recorded as a
        // 16-bit keyed bucket, the same for the same value, too coarse to name whose address it was.
        Assert.Equal(JsonValueKind.Null, own[3].GetProperty("details").GetProperty("recipient").ValueKind);
        var digest = own[3].GetProperty("details").GetProperty("recipientDigest").GetString();
        Assert.Matches("^b_[0-9a-f]{4}$", digest);
        Assert.DoesNotContain(lookedFor, own[3].GetRawText(), StringComparison.Ordinal);
        Assert.Equal(digest, own[4].GetProperty("details").GetProperty("recipientDigest").GetString());
        Assert.Equal("success", own[5].GetProperty("outcome").GetString());

        // The query that read these rows was recorded too, after it read them, with the name it searched for: one the log holds.
        var again = await AuditLog.EventsAsync(auditor, $"actor={person.Id}");
        Assert.Equal(["auth.password-accepted", "account.two-factor-enabled", "auth.sign-in", "audit.queried", "audit.exported", "audit.verified", "audit.queried"],
            AuditLog.Actions(again));
        Assert.Equal(person.Id, again[6].GetProperty("details").GetProperty("actor").GetString());
    }

    [Fact]
    public async Task ARefusedTokenRequestIsRecordedWithTheClaimedClientIdAndNoSecret()
    {
        var @operator = await fixture.Actors.NewOperatorAsync();
        using var admin = fixture.Client().WithToken(@operator.Tokens.AccessToken);
        var site = await Sites.RegisterAsync(admin);
        var wrong = "wrong-" + Guid.NewGuid().ToString("N");

        await AuditLog.RefuseTokenAsync(fixture.Actors, site.ClientId, wrong);

        using var auditor = fixture.Client().WithToken(await fixture.Actors.AuditorClientTokenAsync());
        var refused = Assert.Single(await AuditLog.EventsAsync(auditor, $"actor={site.ClientId}&action=auth.token-refused"));
        // Named, not authenticated: the site is the refusal's recipient, the sender anonymous.
        Assert.Equal("anonymous", refused.GetProperty("actorKind").GetString());
        Assert.Equal(site.ClientId, Assert.Single(await AuditLog.EventsAsync(auditor, $"recipient={site.ClientId}&action=auth.token-refused"))
            .GetProperty("recipient").GetString());
        Assert.Equal("denied", refused.GetProperty("outcome").GetString());
        Assert.Equal("invalid_client", refused.GetProperty("details").GetProperty("error").GetString());
        Assert.Equal("client_credentials", refused.GetProperty("details").GetProperty("grantType").GetString());
        Assert.DoesNotContain(wrong, refused.GetRawText(), StringComparison.Ordinal);
    }

    /// <summary>
    /// Anyone can send token requests naming clients nobody registered: past the per-address cap they are counted, not
    /// recorded, so they cannot grow the append-only log without end. Refusals naming a registered site are all recorded.
    /// </summary>
    [Fact]
    public async Task RefusalsForUnknownClientsAreRecordedUpToTheCapAndThoseForARegisteredSiteAlways()
    {
        await using var database = await TestDatabase.CreateAsync();
        await using var gateway = new GatewayFactory(database, new FakeTimeProvider(DateTimeOffset.UtcNow),
            settings: new Dictionary<string, string?> { ["Audit:UnknownClientRefusalsPerMinute"] = "3" });
        var actors = new Actors(gateway);
        var site = await Sites.RegisterAsync(gateway, actors);
        var ghosts = Enumerable.Range(0, 5).Select(_ => AuditLog.NewGhostClientId()).ToList();

        foreach (var ghost in ghosts)
        {
            await AuditLog.RefuseTokenAsync(actors, ghost);
            await AuditLog.RefuseTokenAsync(actors, site.ClientId);
        }

        // Refusals that come before OpenIddict looks for the client (an unknown grant type) count under the same cap.
        var moreGhosts = Enumerable.Range(0, 3).Select(_ => AuditLog.NewGhostClientId()).ToList();
        using (var client = gateway.CreateHttpClient())
        {
            foreach (var ghost in moreGhosts)
            {
                using var refused = await client.PostAsync("/connect/token", new FormUrlEncodedContent(new Dictionary<string, string>
                {
                    ["grant_type"] = "urn:example:bogus", ["client_id"] = ghost,
                }));
                Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
            }
        }

        ghosts.AddRange(moreGhosts);
        Assert.Equal(3, await database.ScalarAsync<long>(
            $"SELECT count(*) FROM audit_events WHERE action = 'auth.token-refused' AND actor_id IN ('{string.Join("','", ghosts)}')"));
        Assert.Equal(5, await database.ScalarAsync<long>(
            $"SELECT count(*) FROM audit_events WHERE action = 'auth.token-refused' AND actor_id = '{site.ClientId}'"));
    }

    /// <summary>
    /// Behind the load balancer, an IPv6 host that takes a fresh address of its /64 for every guess is still one sender
    /// under the cap; and a claimed client id that is free text (an e-mail address) is kept only as a keyed digest.
    /// </summary>
    [Fact]
    public async Task UnknownClientRefusalsAreCappedPerNetworkAndFreeTextIsNotKept()
    {
        await using var database = await TestDatabase.CreateAsync();
        await using var gateway = new GatewayFactory(database, new FakeTimeProvider(DateTimeOffset.UtcNow), settings: new Dictionary<string, string?>
        {
            ["Audit:UnknownClientRefusalsPerMinute"] = "2", ["Proxies:KnownProxies:0"] = "127.0.0.1",
        });
        var ghosts = Enumerable.Range(0, 4).Select(_ => AuditLog.NewGhostClientId()).ToList();
        using var client = gateway.CreateHttpClient();
        async Task RefuseAsync(string clientId, string from)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/connect/token")
            {
                Content = new FormUrlEncodedContent(new Dictionary<string, string>
                {
                    ["grant_type"] = "client_credentials", ["client_id"] = clientId, ["client_secret"] = "guess",
                }),
            };
            request.Headers.Add("X-Forwarded-For", from);
            using var response = await client.SendAsync(request);
            Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        }

        for (var i = 0; i < ghosts.Count; i++)
        {
            await RefuseAsync(ghosts[i], $"2001:db8:7:1::{i + 1}");
        }

        Assert.Equal(2, await database.ScalarAsync<long>(
            $"SELECT count(*) FROM audit_events WHERE action = 'auth.token-refused' AND actor_id IN ('{string.Join("','", ghosts)}')"));

        const string Address = "jeanne.dupont@example.test";
        await RefuseAsync(Address, "2001:db8:7:2::1");
        await RefuseAsync(Address, "2001:db8:7:2::2");
        Assert.Equal(0, await database.ScalarAsync<long>($"SELECT count(*) FROM audit_events WHERE position('{Address}' in coalesce(actor_id, '') || coalesce(details, '')) > 0"));
        var digests = await database.ScalarAsync<long>(
            "SELECT count(DISTINCT actor_id) FROM audit_events WHERE action = 'auth.token-refused' AND actor_id LIKE 'b\\_%'");
        Assert.Equal(1, digests);
    }

    [Fact]
    public async Task AFailedSignInOnTheLoginPageIsRecordedAsDenied()
    {
        var @operator = await fixture.Actors.NewOperatorAsync();

        await FailSignInAsync(@operator.Email);

        using var auditor = fixture.Client().WithToken(await fixture.Actors.AuditorClientTokenAsync());
        var signIns = await AuditLog.EventsAsync(auditor, $"actor={@operator.Id}&action=auth.sign-in");
        Assert.Equal(["success", "denied"], signIns.Select(e => e.GetProperty("outcome").GetString()));
        Assert.All(signIns, e => Assert.Equal("operator", e.GetProperty("actorKind").GetString()));
    }

    [Fact]
    public async Task ASeekersFailedSignInIsRecordedUnderAPseudonymOnly()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        var pseudonym = fixture.Factory.Services.GetRequiredService<Pseudonyms>().Of(seeker.Id);

        await FailSignInAsync(seeker.Email);

        using var auditor = fixture.Client().WithToken(await fixture.Actors.AuditorClientTokenAsync());
        var signIns = await AuditLog.EventsAsync(auditor, $"subject={pseudonym}&action=auth.sign-in");
        Assert.Equal(["success", "denied"], signIns.Select(e => e.GetProperty("outcome").GetString()));
        Assert.All(signIns, e =>
        {
            Assert.Equal("seeker", e.GetProperty("actorKind").GetString());
            Assert.Equal(pseudonym, e.GetProperty("actorId").GetString());
            Assert.DoesNotContain(seeker.Id, e.GetRawText(), StringComparison.Ordinal);
            Assert.DoesNotContain(seeker.Email, e.GetRawText(), StringComparison.OrdinalIgnoreCase);
        });
    }

    [Fact]
    public async Task FromAndToSelectATimeWindowWithToExclusive()
    {
        var ghost = AuditLog.NewGhostClientId();
        using var auditor = fixture.Client().WithToken(await fixture.Actors.AuditorClientTokenAsync());
        for (var i = 0; i < 2; i++)
        {
            await AuditLog.RefuseTokenAsync(fixture.Actors, ghost);
        }

        fixture.Time.Advance(TimeSpan.FromMinutes(1));
        var middle = fixture.Time.GetUtcNow();
        for (var i = 0; i < 3; i++)
        {
            await AuditLog.RefuseTokenAsync(fixture.Actors, ghost);
        }

        fixture.Time.Advance(TimeSpan.FromMinutes(1));
        await AuditLog.RefuseTokenAsync(fixture.Actors, ghost);

        var from = middle.AddSeconds(-30);
        var to = middle.AddSeconds(30);
        var window = await AuditLog.EventsAsync(auditor, $"actor={ghost}&from={AuditLog.Q(from)}&to={AuditLog.Q(to)}");
        Assert.Equal(3, window.Count);
        Assert.All(window, e => Assert.InRange(e.GetProperty("occurredAt").GetDateTimeOffset(), from, to));
        Assert.Equal(4, (await AuditLog.EventsAsync(auditor, $"actor={ghost}&from={AuditLog.Q(from)}")).Count);
        Assert.Equal(2, (await AuditLog.EventsAsync(auditor, $"actor={ghost}&to={AuditLog.Q(from)}")).Count);
        // An offset other than UTC names the same instant.
        Assert.Equal(3, (await AuditLog.EventsAsync(auditor, $"actor={ghost}&from={AuditLog.Q(from.ToOffset(TimeSpan.FromHours(2)))}&to={AuditLog.Q(to.ToOffset(TimeSpan.FromHours(-5)))}")).Count);

        await (await auditor.GetAsync($"{AuditLog.EventsPath}?from={AuditLog.Q(to)}&to={AuditLog.Q(from)}")).AssertProblemAsync(HttpStatusCode.BadRequest);

        // RFC 3339 only: 01/02/2026 would be read as 2 January (invariant, month first), which a French auditor means as
        // 1 February; a date alone or a time with no offset is refused too. Each refusal names its parameter.
        foreach (var (name, value) in new[] { ("from", "01/02/2026"), ("to", "2026-02-01"), ("from", "2026-02-01T00:00:00"), ("to", "2026-02-01 00:00:00Z") })
        {
            foreach (var path in new[] { AuditLog.EventsPath, AuditLog.ExportPath })
            {
                var problem = await (await auditor.GetAsync($"{path}?{name}={Uri.EscapeDataString(value)}")).AssertProblemAsync(HttpStatusCode.BadRequest);
                Assert.True(problem.GetProperty("errors").TryGetProperty(name, out _), problem.ToString());
            }
        }

        Assert.Empty(await AuditLog.EventsAsync(auditor, $"actor={ghost}&from=2026-02-01T00:00:00.5%2B01:00&to=2026-02-01T00:00:00.6Z"));
    }

    [Fact]
    public async Task TheCursorPagesThroughTheLogWithoutSkipsOrRepeats()
    {
        var ghost = AuditLog.NewGhostClientId();
        for (var i = 0; i < 7; i++)
        {
            await AuditLog.RefuseTokenAsync(fixture.Actors, ghost);
        }

        using var auditor = fixture.Client().WithToken(await fixture.Actors.AuditorClientTokenAsync());
        var all = (await AuditLog.EventsAsync(auditor, $"actor={ghost}")).Select(e => e.GetProperty("id").GetInt64()).ToList();
        Assert.Equal(7, all.Count);

        var paged = new List<long>();
        var pageSizes = new List<int>();
        string? cursor = null;
        do
        {
            var url = $"{AuditLog.EventsPath}?actor={ghost}&limit=3" + (cursor is null ? "" : $"&cursor={Uri.EscapeDataString(cursor)}");
            var page = await (await auditor.GetAsync(url)).ReadJsonAsync();
            var ids = page.GetProperty("items").EnumerateArray().Select(e => e.GetProperty("id").GetInt64()).ToList();
            pageSizes.Add(ids.Count);
            paged.AddRange(ids);
            cursor = page.TryGetProperty("nextCursor", out var next) ? next.GetString() : null;
            // Other rows land in the log between pages (each page read is itself recorded): the keyset is not disturbed.
            await AuditLog.RefuseTokenAsync(fixture.Actors, AuditLog.NewGhostClientId());
        }
        while (cursor is not null);

        Assert.Equal([3, 3, 1], pageSizes);
        Assert.Equal(all, paged);
        Assert.Equal(paged.Order().ToList(), paged);

        // Each page read is recorded with the rows it showed: where it started, how many, and the last one.
        var recorded = await fixture.Database.ScalarAsync<string>("""
            SELECT string_agg(concat_ws('/', details::jsonb->>'after', details::jsonb->>'rows', details::jsonb->>'through'), ' ' ORDER BY sequence)
            FROM (SELECT sequence, details FROM audit_events WHERE action = 'audit.queried' AND details::jsonb ? 'rows' ORDER BY sequence DESC LIMIT 3) last
            """);
        Assert.Equal($"0/3/{paged[2]} {paged[2]}/3/{paged[5]} {paged[5]}/1/{paged[6]}", recorded);
    }

    [Fact]
    public async Task ACursorFromAnotherCollectionIsRefused()
    {
        var @operator = await fixture.Actors.NewOperatorAsync();
        using var admin = fixture.Client().WithToken(@operator.Tokens.AccessToken);
        var recipients = await (await admin.GetAsync($"{Sites.AdminPath}?limit=1")).ReadJsonAsync();
        var cursor = recipients.GetProperty("nextCursor").GetString()!;

        using var auditor = fixture.Client().WithToken(await fixture.Actors.AuditorClientTokenAsync());
        var problem = await (await auditor.GetAsync($"{AuditLog.EventsPath}?cursor={Uri.EscapeDataString(cursor)}")).AssertProblemAsync(HttpStatusCode.BadRequest);
        Assert.True(problem.GetProperty("errors").TryGetProperty("cursor", out _));
    }

    [Fact]
    public async Task OnlyAuditReadTokensReachTheAuditLog()
    {
        using (var anonymous = fixture.Client())
        {
            await (await anonymous.GetAsync(AuditLog.EventsPath)).AssertProblemAsync(HttpStatusCode.Unauthorized);
            await (await anonymous.GetAsync(AuditLog.VerifyPath)).AssertProblemAsync(HttpStatusCode.Unauthorized);
        }

        var @operator = await fixture.Actors.NewOperatorAsync();
        foreach (var token in new[] { @operator.Tokens.AccessToken, await fixture.Actors.DemoSiteTokenAsync() })
        {
            using var client = fixture.Client().WithToken(token);
            await (await client.GetAsync(AuditLog.EventsPath)).AssertProblemAsync(HttpStatusCode.Forbidden);
            await (await client.GetAsync(AuditLog.ExportPath)).AssertProblemAsync(HttpStatusCode.Forbidden);
            await (await client.GetAsync(AuditLog.VerifyPath)).AssertProblemAsync(HttpStatusCode.Forbidden);
        }
    }

    /// <summary>Posts the sign-in form with a wrong password, the way a browser would; the page answers 200 with an error.</summary>
    private async Task FailSignInAsync(string email)
    {
        using var browser = fixture.Factory.CreateHttpClient(new CookieContainer());
        using var posted = await Actors.PostLoginFormAsync(browser, new Uri("/Account/Login", UriKind.Relative), email, "Not-The-Password-1!");
        Assert.Equal(HttpStatusCode.OK, posted.StatusCode);
        Assert.Null(posted.Headers.Location);
    }
}
