using System.Collections.Concurrent;
using System.Net;
using ExchangeGateway.Audit;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace ExchangeGateway.Tests.Reliability;

/// <summary>
/// Minutes of mixed traffic from concurrent clients — seekers editing, ticking, unticking and leaving; sites paging and
/// reading; jobs sweeping and dispatching to a receiver that fails now and then; the clock jumping days ahead — then
/// the promises are checked on what the database recorded.
/// </summary>
public sealed class SoakTests
{
    private const int Seekers = 8;
    private const int StepsPerSeeker = 60;

    [Fact]
    public async Task MixedTrafficKeepsEveryPromise()
    {
        await using var database = await TestDatabase.CreateAsync();
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var node = new GatewayFactory(database, time);
        node.StartServer();
        var actors = new Actors(node);
        await using var receiver = await PushReceiver.StartAsync();
        var @operator = (await actors.NewOperatorAsync()).Tokens.AccessToken;
        var sites = new[]
        {
            await Sites.RegisterAsync(node, @operator, SiteOptions.Push(receiver.Endpoint)),
            await Sites.RegisterAsync(node, @operator, SiteOptions.Push(receiver.Endpoint)),
            await Sites.RegisterAsync(node, @operator),
        };

        var statuses = new ConcurrentBag<(string What, HttpStatusCode Status)>();
        var seekers = new List<Person>();
        for (var i = 0; i < Seekers; i++)
        {
            seekers.Add(await actors.NewSeekerAsync());
        }

        using var stop = new CancellationTokenSource();
        var clock = new SemaphoreSlim(1, 1);
        var seekerWork = seekers.Select((seeker, index) => Task.Run(() => SeekerAsync(node, actors, seeker, index, sites, statuses, clock))).ToList();
        var siteWork = sites.Select(site => Task.Run(() => SiteAsync(node, actors, site, statuses, stop.Token))).ToList();
        var jobs = Task.Run(() => JobsAsync(node, receiver, time, clock, stop.Token));

        await Task.WhenAll(seekerWork);
        await stop.CancelAsync();
        await Task.WhenAll(siteWork.Append(jobs));
        // A last round, so what the traffic left pending is delivered.
        receiver.Default = PushReply.Accepted;
        await node.RunFreshnessSweepAsync();
        await node.RunConsentExpiryAsync();
        await node.RunDispatchAsync();

        Assert.DoesNotContain(statuses, s => (int)s.Status >= 500);
        Assert.True(statuses.Count > Seekers * StepsPerSeeker / 2, $"only {statuses.Count} requests were made");

        // The audit chain verifies.
        using (var auditor = node.CreateHttpClient().WithToken(await actors.AuditorClientTokenAsync()))
        {
            var verdict = await (await auditor.GetAsync("/api/v1/audit/verify")).ReadJsonAsync();
            Assert.True(verdict.GetProperty("ok").GetBoolean(), verdict.ToString());
        }

        // Every ledger row has its audit event.
        Assert.Equal(0L, await database.ScalarAsync<long>("""
            SELECT count(*) FROM disclosures d
            WHERE NOT EXISTS (SELECT 1 FROM audit_events a WHERE a.action = 'cv.disclosed' AND (a.details::jsonb ->> 'ledger')::bigint = d.id)
            """));
        Assert.True(await database.ScalarAsync<long>("SELECT count(*) FROM disclosures") > 0,
            "no site read anything: the soak proved nothing. " + string.Join(", ", statuses.GroupBy(s => $"{s.What} {(int)s.Status}").Select(g => $"{g.Key}: {g.Count()}"))
            + $"; consents {await database.ScalarAsync<long>("SELECT count(*) FROM consents")}, cvs {await database.ScalarAsync<long>("SELECT count(*) FROM cvs")}");

        // Every share that ended after a site received the CV is chased.
        Assert.Equal(0L, await database.ScalarAsync<long>("""
            SELECT count(*) FROM consents c
            WHERE c.state <> 'Active' AND EXISTS (SELECT 1 FROM disclosures d WHERE d.consent_id = c.id)
              AND NOT EXISTS (SELECT 1 FROM erasure_obligations o WHERE o.consent_id = c.id AND o.kind = 'erasure-required')
            """));

        // No document left outside an active, unexpired consent episode...
        Assert.Equal(0L, await database.ScalarAsync<long>("""
            SELECT count(*) FROM disclosures d JOIN consents c ON c.id = d.consent_id
            WHERE d.disclosed_at < c.granted_at OR d.disclosed_at >= c.expires_at OR (c.ended_at IS NOT NULL AND d.disclosed_at > c.ended_at)
            """));

        // ... nor a CV that was not fresh: each disclosure follows a publication or refresh of that seeker within 90 days.
        var pseudonyms = node.Services.GetRequiredService<Pseudonyms>();
        foreach (var seeker in seekers)
        {
            var stale = await database.ScalarAsync<long>($"""
                SELECT count(*) FROM disclosures d
                WHERE d.seeker_id = '{seeker.Id}' AND NOT EXISTS (
                    SELECT 1 FROM audit_events a
                    WHERE a.subject = '{pseudonyms.Of(seeker.Id)}' AND a.action IN ('cv.published', 'cv.refreshed')
                      AND a.occurred_at <= d.disclosed_at AND a.occurred_at > d.disclosed_at - interval '90 days')
                """);
            Assert.Equal(0L, stale);
        }

        // Every push obligation was delivered in the end, each event to its site. Past the longest back-off (24 hours, +20%
        // jitter) every event that failed its last attempt is due again: the dispatcher runs until it delivers nothing
        // more, and then none may be left pending, due or not.
        time.Advance(TimeSpan.FromHours(30));
        for (var run = 0; run < 10 && await node.RunDispatchAsync() > 0; run++)
        {
        }

        Assert.Equal("", await database.ScalarAsync<string>("""
            SELECT coalesce(string_agg(o.jti || ' ' || o.attempts || ' ' || coalesce(o.last_error, ''), ', '), '')
            FROM erasure_obligations o JOIN recipients r ON r.id = o.recipient_id
            WHERE r.delivery_mode = 'Push' AND o.status = 'Pending'
            """));
        var pushed = receiver.Received.Select(p => SecurityEventTokens.Claims(p.Body))
            .Select(c => $"{c.GetProperty("jti").GetString()} {c.GetProperty("aud").GetString()}").ToHashSet();
        var delivered = await database.ScalarAsync<string[]>("""
            SELECT coalesce(array_agg(o.jti || ' ' || r.client_id), ARRAY[]::text[])
            FROM erasure_obligations o JOIN recipients r ON r.id = o.recipient_id WHERE r.delivery_mode = 'Push'
            """);
        Assert.NotEmpty(delivered);
        Assert.All(delivered, sent => Assert.Contains(sent, pushed));
    }

    private static async Task SeekerAsync(
        GatewayFactory node, Actors actors, Person seeker, int index, TestSite[] sites, ConcurrentBag<(string, HttpStatusCode)> statuses, SemaphoreSlim clock)
    {
        var random = new Random(index);
        var marker = $"soak-{index}-" + Guid.NewGuid().ToString("N");
        var token = seeker.Tokens.AccessToken;
        for (var step = 0; step < StepsPerSeeker; step++)
        {
            // The last seeker leaves half-way, as people do.
            if (index == Seekers - 1 && step == StepsPerSeeker / 2)
            {
                using var client = node.CreateHttpClient().WithToken(token);
                Record(statuses, "forget", (await client.DeleteAsync("/api/v1/me")).StatusCode);
                return;
            }

            var site = sites[random.Next(sites.Length)];
            HttpStatusCode status;
            using (var client = node.CreateHttpClient().WithToken(token))
            {
                switch (random.Next(6))
                {
                    case 0 or 1:
                        using (var put = await Sharing.PutCvAsync(node, token, Sharing.Resume($"{marker}-{step}")))
                        {
                            status = put.StatusCode;
                        }

                        break;
                    case 2:
                        status = (await client.PutAsync($"/api/v1/me/consents/{site.Id}", null)).StatusCode;
                        break;
                    case 3:
                        status = (await client.DeleteAsync($"/api/v1/me/consents/{site.Id}")).StatusCode;
                        break;
                    case 4:
                        status = (await client.PostAsync("/api/v1/me/cv/refresh", null)).StatusCode;
                        break;
                    default:
                        status = (await client.GetAsync("/api/v1/me/erasures")).StatusCode;
                        break;
                }
            }

            if (status == HttpStatusCode.Unauthorized)
            {
                // The clock jumped past the token's lifetime: sign in again, as a browser would (the clock holds still
                // meanwhile, or the authorization code would expire between its two hops).
                await clock.WaitAsync();
                try
                {
                    token = await actors.FreshTokenAsync(seeker);
                }
                finally
                {
                    clock.Release();
                }


                continue;
            }

            Record(statuses, "seeker", status);
        }
    }

    private static async Task SiteAsync(GatewayFactory node, Actors actors, TestSite site, ConcurrentBag<(string, HttpStatusCode)> statuses, CancellationToken stop)
    {
        var token = await actors.TokenAsync(site);
        string? cursor = null;
        while (!stop.IsCancellationRequested)
        {
            using var client = node.CreateHttpClient().WithToken(token);
            using var response = await client.GetAsync("/api/v1/shared-cvs?limit=4" + (cursor is null ? "" : "&cursor=" + Uri.EscapeDataString(cursor)));
            if (response.StatusCode == HttpStatusCode.Unauthorized)
            {
                token = await actors.TokenAsync(site);
                continue;
            }

            Record(statuses, "feed", response.StatusCode);
            var page = await response.ReadJsonAsync();
            foreach (var item in page.GetProperty("items").EnumerateArray().Where(i => i.GetProperty("kind").GetString() == "cv"))
            {
                Record(statuses, "read", (await client.GetAsync($"/api/v1/shared-cvs/{item.GetProperty("id").GetString()}")).StatusCode);
            }

            cursor = page.GetProperty("resumeCursor").GetString();
            using var poll = await client.PostAsync("/api/v1/events/poll", Sharing.Json(new System.Text.Json.Nodes.JsonObject { ["returnImmediately"] = true, ["maxEvents"] = 5 }));
            Record(statuses, "poll", poll.StatusCode);
        }
    }

    private static async Task JobsAsync(GatewayFactory node, PushReceiver receiver, FakeTimeProvider time, SemaphoreSlim clock, CancellationToken stop)
    {
        var round = 0;
        while (!stop.IsCancellationRequested)
        {
            // Now and then the receiver fails; the dispatcher must retry later with the same events.
            receiver.Default = round % 3 == 1 ? new PushReply(500) : PushReply.Accepted;
            await node.RunDispatchAsync();
            await node.RunFreshnessSweepAsync();
            await node.RunConsentExpiryAsync();
            await node.RunOverdueEscalationAsync();
            if (++round % 4 == 0)
            {
                await clock.WaitAsync(CancellationToken.None);
                time.Advance(TimeSpan.FromDays(20));
                clock.Release();
            }

            await Task.Delay(100, CancellationToken.None);
        }
    }

    private static void Record(ConcurrentBag<(string, HttpStatusCode)> statuses, string what, HttpStatusCode status) => statuses.Add((what, status));
}
