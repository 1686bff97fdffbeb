using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using ExchangeGateway.Events;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace ExchangeGateway.Tests.Events;

/// <summary>
/// Push delivery against a receiver that misbehaves: every failure keeps the obligation pending with its reason, the
/// next attempt is scheduled by the back-off (or by Retry-After), and the retry carries the same jti.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class DeliveryFaultTests(GatewayFixture fixture)
{
    /// <summary>A dispatcher that pushes one event at a time to a site, in one lane: what a gateway of a test's own runs with.</summary>
    private static readonly Dictionary<string, string?> OneSlotOneLane = new() { ["Delivery:MaxConcurrentPerRecipient"] = "1", ["Delivery:Lanes"] = "1" };

    /// <summary>
    /// The attempt timeout of the tests that need a receiver to time out. It also bounds their healthy deliveries, which
    /// take milliseconds on loopback but can take over a second on a loaded 2-core CI machine (the other collections,
    /// Chromium, dozens of databases): one second failed good deliveries as "timed out" for no defect. Each of these tests
    /// waits out exactly one timeout, so this is what it costs; the hung receiver holds far longer (30 s) either way.
    /// </summary>
    private const string AttemptTimeout = "00:00:04";

    private GatewayFactory Gateway => fixture.Factory;

    [Fact]
    public async Task A500IsRetriedAfterTheBackOffWithTheSameJti()
    {
        await using var receiver = await PushReceiver.StartAsync();
        receiver.ReplyNext(new PushReply(500));
        var site = await ObligationForNewSiteAsync(Gateway, fixture.Actors, receiver);
        var failedAt = Gateway.Time.GetUtcNow();

        await Gateway.RunDispatchAsync();
        var jti = await JtiAsync(Gateway, site, Assert.Single(receiver.Received));
        Assert.Equal(("Pending", 1, "HTTP 500"), await StateAsync(fixture.Database, jti));
        // First wait of the schedule: one minute, ±20% jitter.
        var next = await NextAttemptAsync(fixture.Database, jti);
        Assert.InRange(next, failedAt + TimeSpan.FromSeconds(48), failedAt + TimeSpan.FromSeconds(72));

        await Gateway.RunDispatchAsync();
        Assert.Single(receiver.Received);

        Gateway.Time.Advance(next - Gateway.Time.GetUtcNow() + TimeSpan.FromMilliseconds(1));
        await Gateway.RunDispatchAsync();
        Assert.Equal(2, receiver.Received.Count);
        Assert.Equal(jti, await JtiAsync(Gateway, site, receiver.Received[1]));
        Assert.Equal("Delivered", await Propagation.ObligationAsync<string>(fixture.Database, jti, "status"));
    }

    /// <summary>
    /// The back-off grows: 1, 5 and 15 minutes, 1, 3, 6, 12 and 24 hours, then 24 hours again, each with ±20% jitter.
    /// The delivery tests see only its first step, and a schedule flattened to that step would have every pending event
    /// knock on a site that is down once a minute, all day. The host's own options, not a new instance: the defaults
    /// live outside the bound list (the binder adds to a filled one), and what counts is what the dispatcher gets.
    /// </summary>
    [Theory]
    [InlineData(1, 1)]
    [InlineData(2, 5)]
    [InlineData(3, 15)]
    [InlineData(4, 60)]
    [InlineData(5, 3 * 60)]
    [InlineData(6, 6 * 60)]
    [InlineData(7, 12 * 60)]
    [InlineData(8, 24 * 60)]
    [InlineData(9, 24 * 60)]
    public void EachFailedAttemptWaitsItsStepOfTheScheduleWithinTheJitter(int attempts, int minutes)
    {
        var options = Gateway.Services.GetRequiredService<IOptions<DeliveryOptions>>().Value;
        var step = TimeSpan.FromMinutes(minutes);
        // Seeded, so a failure names the draw that broke it.
        var random = new Random(attempts);
        var ratios = Enumerable.Range(0, 200).Select(_ => options.Backoff(attempts, random) / step).ToList();

        // Rounding to whole ticks may put a wait a hair outside the exact bounds.
        Assert.All(ratios, ratio => Assert.InRange(ratio, 0.8 - 1e-9, 1.2 + 1e-9));
        // And the jitter is there: 200 draws spread over most of the 40% band, not bunched at one wait.
        Assert.True(ratios.Max() - ratios.Min() > 0.3, $"waits for attempt {attempts} spread only from {ratios.Min():0.###} to {ratios.Max():0.###} of {step}");
    }

    [Fact]
    public async Task AReceiverThatIsDownIsRetriedOnceItIsBack()
    {
        await using var receiver = await PushReceiver.StartAsync();
        var site = await ObligationForNewSiteAsync(Gateway, fixture.Actors, receiver);
        var jti = await PendingJtiAsync(receiver);
        await receiver.StopAsync();

        await Gateway.RunDispatchAsync();
        var (status, attempts, error) = await StateAsync(fixture.Database, jti);
        Assert.Equal(("Pending", 1), (status, attempts));
        Assert.StartsWith("connection failed", error, StringComparison.Ordinal);

        await receiver.RestartAsync();
        Gateway.Time.Advance(TimeSpan.FromMinutes(2));
        await Gateway.RunDispatchAsync();
        Assert.Equal(jti, await JtiAsync(Gateway, site, Assert.Single(receiver.Received)));
        Assert.Equal(("Delivered", 2, (string?)null), await StateAsync(fixture.Database, jti));
    }

    [Fact]
    public async Task A429WithRetryAfterIsNotRetriedBeforeTheTimeTheSiteAskedFor()
    {
        await using var receiver = await PushReceiver.StartAsync();
        receiver.ReplyNext(new PushReply(429, RetryAfter: TimeSpan.FromSeconds(120)));
        var site = await ObligationForNewSiteAsync(Gateway, fixture.Actors, receiver);
        var refusedAt = Gateway.Time.GetUtcNow();

        await Gateway.RunDispatchAsync();
        var jti = await JtiAsync(Gateway, site, Assert.Single(receiver.Received));
        Assert.Equal(("Pending", 1, "HTTP 429, retry after 120s"), await StateAsync(fixture.Database, jti));
        // (PostgreSQL keeps microseconds, the clock has ticks.)
        var next = await NextAttemptAsync(fixture.Database, jti);
        Assert.InRange(next, refusedAt + TimeSpan.FromSeconds(120) - TimeSpan.FromMilliseconds(1), refusedAt + TimeSpan.FromSeconds(120));

        // Past the back-off's one minute, but not yet the two the site asked for.
        Gateway.Time.Advance(TimeSpan.FromSeconds(119));
        await Gateway.RunDispatchAsync();
        Assert.Single(receiver.Received);

        Gateway.Time.Advance(TimeSpan.FromSeconds(1.5));
        await Gateway.RunDispatchAsync();
        Assert.Equal(2, receiver.Received.Count);
        Assert.Equal(jti, await JtiAsync(Gateway, site, receiver.Received[1]));
        Assert.Equal("Delivered", await Propagation.ObligationAsync<string>(fixture.Database, jti, "status"));
    }

    /// <summary>
    /// Retry-After is a floor, never a shortcut: "Retry-After: 0" would otherwise have the gateway push again every second
    /// for ever. The event waits its own back-off (the schedule's first step, a minute with its jitter) and so does the site.
    /// </summary>
    [Fact]
    public async Task A429WithRetryAfterZeroWaitsTheBackOff()
    {
        await using var receiver = await PushReceiver.StartAsync();
        receiver.ReplyNext(new PushReply(429, RetryAfter: TimeSpan.Zero));
        var site = await ObligationForNewSiteAsync(Gateway, fixture.Actors, receiver);
        var refusedAt = Gateway.Time.GetUtcNow();

        await Gateway.RunDispatchAsync();
        var jti = await JtiAsync(Gateway, site, Assert.Single(receiver.Received));
        Assert.InRange(await NextAttemptAsync(fixture.Database, jti), refusedAt + TimeSpan.FromSeconds(47), refusedAt + TimeSpan.FromSeconds(73));
        var held = await fixture.Database.ScalarAsync<DateTime>($"SELECT held_until FROM push_holds WHERE recipient_id = '{site.Id}'");
        Assert.InRange(new DateTimeOffset(held, TimeSpan.Zero), refusedAt + TimeSpan.FromSeconds(47), refusedAt + TimeSpan.FromSeconds(73));

        Gateway.Time.Advance(TimeSpan.FromSeconds(5));
        await Gateway.RunDispatchAsync();
        Assert.Single(receiver.Received);
    }

    /// <summary>
    /// Retry-After is the site's word about itself: after a 429 asking for ten minutes, its other events are not pushed
    /// either, neither later in the same run (handed back unattempted) nor by the next run, until the time it asked for.
    /// One slot per site and one lane on a gateway of its own, so the three pushes go one after the other.
    /// </summary>
    [Fact]
    public async Task A429WithRetryAfterHoldsBackTheSitesOtherEventsToo()
    {
        await using var database = await TestDatabase.CreateAsync();
        await using var gateway = new GatewayFactory(database, new FakeTimeProvider(DateTimeOffset.UtcNow), settings: OneSlotOneLane);
        var actors = new Actors(gateway);
        await using var receiver = await PushReceiver.StartAsync();
        receiver.ReplyNext(new PushReply(429, RetryAfter: TimeSpan.FromSeconds(600)));
        var site = await ObligationForNewSiteAsync(gateway, actors, receiver);
        await ObligationForNewSiteAsync(gateway, actors, receiver, site);
        await ObligationForNewSiteAsync(gateway, actors, receiver, site);
        var refusedAt = gateway.Time.GetUtcNow();

        await gateway.RunDispatchAsync();
        Assert.Single(receiver.Received);
        Assert.Equal(1L, await database.ScalarAsync<long>($"SELECT sum(attempts) FROM erasure_obligations WHERE recipient_id = '{site.Id}'"));
        Assert.True(await database.ScalarAsync<bool>(
            $"SELECT bool_and(next_attempt_at >= '{refusedAt.AddSeconds(600).AddMilliseconds(-1):O}') FROM erasure_obligations WHERE recipient_id = '{site.Id}'"));

        // Held as a site: an event written after the answer waits too, and so does the next run.
        await ObligationForNewSiteAsync(gateway, actors, receiver, site);
        gateway.Time.Advance(TimeSpan.FromSeconds(300));
        await gateway.RunDispatchAsync();
        Assert.Single(receiver.Received);

        gateway.Time.Advance(TimeSpan.FromSeconds(301));
        await gateway.RunDispatchAsync();
        Assert.Equal(5, receiver.Received.Count);
        Assert.Equal(4L, await database.ScalarAsync<long>($"SELECT count(*) FROM erasure_obligations WHERE recipient_id = '{site.Id}' AND status = 'Delivered'"));
    }

    /// <summary>
    /// A site that does not answer costs one attempt timeout, not one per event: its other events are handed back
    /// unattempted for its back-off, so the batch (and the other site's events in it) is recorded without waiting for each
    /// of them to time out, and the next run does not push them before then either.
    /// </summary>
    [Fact]
    public async Task ASiteThatDoesNotAnswerCostsOneTimeoutNotOnePerEvent()
    {
        await using var database = await TestDatabase.CreateAsync();
        await using var gateway = new GatewayFactory(database, new FakeTimeProvider(DateTimeOffset.UtcNow), settings: new Dictionary<string, string?>
        {
            ["Delivery:AttemptTimeout"] = AttemptTimeout, ["Delivery:MaxConcurrentPerRecipient"] = "1", ["Delivery:Lanes"] = "1",
        });
        var actors = new Actors(gateway);
        await using var hung = await PushReceiver.StartAsync();
        hung.Default = new PushReply(202, Delay: TimeSpan.FromSeconds(30));
        await using var good = await PushReceiver.StartAsync();
        var hungSite = await ObligationForNewSiteAsync(gateway, actors, hung);
        var goodSite = await ObligationForNewSiteAsync(gateway, actors, good);
        for (var i = 0; i < 3; i++)
        {
            await ObligationForNewSiteAsync(gateway, actors, hung, hungSite);
            await ObligationForNewSiteAsync(gateway, actors, good, goodSite);
        }

        var failedAt = gateway.Time.GetUtcNow();
        await gateway.RunDispatchAsync();
        Assert.Single(hung.Received);
        Assert.Equal(4L, await database.ScalarAsync<long>($"SELECT count(*) FROM erasure_obligations WHERE recipient_id = '{goodSite.Id}' AND status = 'Delivered'"));
        Assert.Equal(1L, await database.ScalarAsync<long>($"SELECT sum(attempts) FROM erasure_obligations WHERE recipient_id = '{hungSite.Id}'"));
        Assert.True(await database.ScalarAsync<bool>(
            $"SELECT bool_and(next_attempt_at >= '{failedAt.AddSeconds(48):O}') FROM erasure_obligations WHERE recipient_id = '{hungSite.Id}'"));

        await gateway.RunDispatchAsync();
        Assert.Single(hung.Received);
    }

    /// <summary>
    /// A push site whose endpoint is down falls back on polling: it is offered the events a push tried, at once, not only
    /// once their push back-off runs out; its ack delivers them. One it reports in setErrs waits for its back-off, as a poll
    /// site's does, rather than coming back in the same answer.
    /// </summary>
    [Fact]
    public async Task APushSiteWhoseEndpointIsDownGetsItsTriedEventsByPollingAtOnce()
    {
        await using var receiver = await PushReceiver.StartAsync();
        receiver.ReplyNext(new PushReply(503));
        var site = await ObligationForNewSiteAsync(Gateway, fixture.Actors, receiver);
        await Gateway.RunDispatchAsync();
        var jti = await JtiAsync(Gateway, site, Assert.Single(receiver.Received));
        Assert.Equal(("Pending", 1, "HTTP 503"), await StateAsync(fixture.Database, jti));
        Assert.True(await NextAttemptAsync(fixture.Database, jti) > Gateway.Time.GetUtcNow(), "the push back-off is still running");

        using var client = Gateway.CreateHttpClient().WithToken(await fixture.Actors.TokenAsync(site));
        async Task<List<string>> PollAsync(object body)
        {
            using var response = await client.PostAsJsonAsync("/api/v1/events/poll", body);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            return [.. (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("sets").EnumerateObject().Select(p => p.Name)];
        }

        Assert.Equal([jti], await PollAsync(new { returnImmediately = true }));
        Assert.Empty(await PollAsync(new { returnImmediately = true, setErrs = new Dictionary<string, object> { [jti] = new { err = "invalid_request" } } }));
        Assert.Empty(await PollAsync(new { returnImmediately = true }));
        Gateway.Time.Advance(TimeSpan.FromMinutes(6) + TimeSpan.FromSeconds(1));
        Assert.Equal([jti], await PollAsync(new { returnImmediately = true }));
        Assert.Empty(await PollAsync(new { returnImmediately = true, ack = new[] { jti } }));
        Assert.Equal("Delivered", (await StateAsync(fixture.Database, jti)).Status);
    }

    [Fact]
    public async Task A400KeepsTheErrorCodeTheReceiverGaveInItsRfc8935Body()
    {
        await using var receiver = await PushReceiver.StartAsync();
        receiver.ReplyNext(new PushReply(400, Body: """{"err":"invalid_key","description":"The SET was signed with a key we do not know."}"""));
        var site = await ObligationForNewSiteAsync(Gateway, fixture.Actors, receiver);

        await Gateway.RunDispatchAsync();
        var jti = await JtiAsync(Gateway, site, Assert.Single(receiver.Received));
        Assert.Equal(("Pending", 1, "rejected: invalid_key"), await StateAsync(fixture.Database, jti));
    }

    /// <summary>
    /// A 400 whose err speaks of the receiver's set-up (the audience or issuer it expects, the keys it trusts, whether it
    /// takes the gateway's SETs at all) holds the whole site with the refused event, as its other events would be refused
    /// alike; one about the SET itself holds nothing, and the site's next event goes out in the same run. Before, every
    /// event of a misconfigured site was pushed and refused on its own schedule, for ever. The hold is the schedule's first
    /// step, not the refused event's back-off: events that failed for days (seven attempts, a day's back-off next) must not
    /// hold the site's other events for a day once it mends its set-up.
    /// </summary>
    [Theory]
    [InlineData("invalid_audience", true)]
    [InlineData("invalid_request", false)]
    public async Task A400AboutTheReceiversSetUpHoldsTheSiteAndOneAboutTheSetDoesNot(string err, bool holds)
    {
        await using var database = await TestDatabase.CreateAsync();
        await using var gateway = new GatewayFactory(database, new FakeTimeProvider(DateTimeOffset.UtcNow), settings: OneSlotOneLane);
        var actors = new Actors(gateway);
        await using var receiver = await PushReceiver.StartAsync();
        receiver.ReplyNext(new PushReply(400, Body: $$"""{"err":"{{err}}","description":"not for us"}"""));
        var site = await ObligationForNewSiteAsync(gateway, actors, receiver);
        await ObligationForNewSiteAsync(gateway, actors, receiver, site);
        await database.ExecuteAsync($"UPDATE erasure_obligations SET attempts = 7 WHERE recipient_id = '{site.Id}'");

        var failedAt = gateway.Time.GetUtcNow();
        await gateway.RunDispatchAsync();
        var refused = await JtiAsync(gateway, site, receiver.Received[0]);
        Assert.Equal(("Pending", 8, $"rejected: {err}"), await StateAsync(database, refused));
        // The site can see why: its list of open events carries the attempts and the reason recorded.
        using (var client = gateway.CreateHttpClient().WithToken(await actors.TokenAsync(site)))
        {
            var open = (await client.GetFromJsonAsync<JsonElement>("/api/v1/erasures")).GetProperty("items").EnumerateArray()
                .Single(e => e.GetProperty("jti").GetString() == refused);
            Assert.Equal((8, $"rejected: {err}"), (open.GetProperty("attempts").GetInt32(), open.GetProperty("lastError").GetString()));
        }

        if (!holds)
        {
            Assert.Equal(2, receiver.Received.Count);
            Assert.Equal(0L, await database.ScalarAsync<long>($"SELECT count(*) FROM push_holds WHERE recipient_id = '{site.Id}'"));
            return;
        }

        Assert.Single(receiver.Received);
        var held = new DateTimeOffset(await database.ScalarAsync<DateTime>($"SELECT held_until FROM push_holds WHERE recipient_id = '{site.Id}'"), TimeSpan.Zero);
        Assert.InRange(held, failedAt + TimeSpan.FromSeconds(48), failedAt + TimeSpan.FromSeconds(72));
        Assert.True(await NextAttemptAsync(database, refused) >= failedAt + TimeSpan.FromHours(19), "the refused event keeps its own back-off");
        Assert.Equal(7L, await database.ScalarAsync<long>($"SELECT sum(attempts) FROM erasure_obligations WHERE recipient_id = '{site.Id}' AND jti <> '{refused}'"));

        // Within the schedule's first step (a minute, less its jitter), the next run pushes nothing to the site; after it,
        // the site's other event goes out (the receiver, mended, takes it).
        gateway.Time.Advance(TimeSpan.FromSeconds(40));
        await gateway.RunDispatchAsync();
        Assert.Single(receiver.Received);
        gateway.Time.Advance(TimeSpan.FromSeconds(40));
        await gateway.RunDispatchAsync();
        Assert.Equal(2, receiver.Received.Count);
        Assert.NotEqual(refused, await JtiAsync(gateway, site, receiver.Received[1]));
    }

    /// <summary>
    /// Whatever a site answers is that site's failed attempt: an error body that is not RFC 8935's object, or far too long,
    /// or a success other than 202 (a parked domain's 200), and the other site in the same run is still recorded delivered.
    /// </summary>
    [Theory]
    [InlineData(400, "[]", "rejected: no err member")]
    [InlineData(400, "null", "rejected: no err member")]
    [InlineData(400, """{"err":1}""", "rejected: err is not a string")]
    [InlineData(400, "LONG", "rejected: error body too long")]
    [InlineData(400, """{"err":"bad\u0000code\n"}""", "rejected: bad?code?")]
    [InlineData(200, null, "HTTP 200")]
    [InlineData(204, null, "HTTP 204")]
    public async Task AnOddAnswerIsThatSitesRetryAndTheOtherSitesDeliveryIsRecorded(int status, string? body, string error)
    {
        await using var odd = await PushReceiver.StartAsync();
        await using var good = await PushReceiver.StartAsync();
        odd.ReplyNext(new PushReply(status, Body: body == "LONG" ? "{\"err\":\"" + new string('x', 1 << 20) + "\"}" : body));
        var oddSite = await ObligationForNewSiteAsync(Gateway, fixture.Actors, odd);
        var goodSite = await ObligationForNewSiteAsync(Gateway, fixture.Actors, good);

        await Gateway.RunDispatchAsync();
        var oddJti = await JtiAsync(Gateway, oddSite, Assert.Single(odd.Received));
        Assert.Equal(("Pending", 1, error), await StateAsync(fixture.Database, oddJti));
        var goodJti = await JtiAsync(Gateway, goodSite, Assert.Single(good.Received));
        Assert.Equal("Delivered", await Propagation.ObligationAsync<string>(fixture.Database, goodJti, "status"));
    }

    /// <summary>
    /// A push endpoint answering a redirect that keeps the method and body (307, 308) to another address: the gateway does
    /// not follow it. Followed, any endpoint could forward the SET, and collect a 202 for it, from wherever it named (the
    /// internal network included). The answer is that site's failed attempt, and the other address gets nothing.
    /// </summary>
    [Theory]
    [InlineData(307)]
    [InlineData(308)]
    public async Task ARedirectFromAPushEndpointIsNotFollowed(int status)
    {
        await using var elsewhere = await PushReceiver.StartAsync();
        await using var redirecting = await Redirector.StartAsync(status, elsewhere.Endpoint);
        var site = await ObligationForNewSiteAsync(Gateway, fixture.Actors, redirecting.Endpoint);
        var jti = (await fixture.Database.ScalarAsync<Guid>($"SELECT jti FROM erasure_obligations WHERE recipient_id = '{site.Id}'")).ToString();

        await Gateway.RunDispatchAsync();
        // The run awaits every delivery it started: had the redirect been followed, the other receiver would have it now.
        Assert.Equal(1, redirecting.Requests);
        Assert.True(elsewhere.Received.Count == 0, "the redirect was followed: the other address got the SET");
        Assert.Equal(("Pending", 1, $"HTTP {status}"), await StateAsync(fixture.Database, jti));
        Assert.Empty(await Propagation.DeliveryAuditAsync(fixture.Database, jti));
    }

    [Fact]
    public async Task AReceiverSlowerThanTheAttemptTimeoutIsRetriedLater()
    {
        await using var database = await TestDatabase.CreateAsync();
        await using var gateway = new GatewayFactory(database, new FakeTimeProvider(DateTimeOffset.UtcNow),
            settings: new Dictionary<string, string?> { ["Delivery:AttemptTimeout"] = AttemptTimeout });
        await using var receiver = await PushReceiver.StartAsync();
        receiver.ReplyNext(new PushReply(202, Delay: TimeSpan.FromSeconds(30)));
        var site = await ObligationForNewSiteAsync(gateway, new Actors(gateway), receiver);

        await gateway.RunDispatchAsync();
        var jti = await JtiAsync(gateway, site, Assert.Single(receiver.Received));
        Assert.Equal(("Pending", 1, "timed out"), await StateAsync(database, jti));

        gateway.Time.Advance(TimeSpan.FromMinutes(2));
        await gateway.RunDispatchAsync();
        Assert.Equal(2, receiver.Received.Count);
        Assert.Equal(jti, await JtiAsync(gateway, site, receiver.Received[1]));
        Assert.Equal("Delivered", await Propagation.ObligationAsync<string>(database, jti, "status"));
    }

    /// <summary>
    /// A push still on the wire when its lease ran out and another run claimed the row again: its failure is not recorded
    /// over the other run's lease (which would end that lease and make the row claimable a third time meanwhile).
    /// </summary>
    [Fact]
    public async Task AFailureRecordedAfterAnotherRunReclaimedTheRowLeavesThatRunsLease()
    {
        await using var receiver = await PushReceiver.StartAsync();
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        receiver.ReplyNext(new PushReply(500, Hold: release.Task));
        await ObligationForNewSiteAsync(Gateway, fixture.Actors, receiver);
        var jti = await PendingJtiAsync(receiver);

        var dispatch = Gateway.RunDispatchAsync();
        Assert.Single(await receiver.WaitForAsync(1));
        var otherLease = new DateTimeOffset(2099, 1, 1, 0, 0, 0, TimeSpan.Zero);
        await fixture.Database.ExecuteAsync(
            $"UPDATE erasure_obligations SET leased_until = '{otherLease:O}', attempts = attempts + 1 WHERE jti = '{jti}'");
        release.SetResult();
        await dispatch;

        Assert.Equal(("Pending", 2, null), await StateAsync(fixture.Database, jti));
        Assert.Equal(otherLease, new DateTimeOffset(await Propagation.ObligationAsync<DateTime>(fixture.Database, jti, "leased_until"), TimeSpan.Zero));
    }

    /// <summary>
    /// The cap on a site's concurrent pushes is the node's, not each run's: every change that writes obligations starts a
    /// run, and with caps of each run's own a site got as many pushes at once as runs were going. Here the site's one slot
    /// is held by a first run's push; a second run, with an event of its own, waits for it.
    /// </summary>
    [Fact]
    public async Task TwoRunsShareTheSitesCap()
    {
        await using var database = await TestDatabase.CreateAsync();
        await using var gateway = new GatewayFactory(database, new FakeTimeProvider(DateTimeOffset.UtcNow), settings: OneSlotOneLane);
        var actors = new Actors(gateway);
        await using var receiver = await PushReceiver.StartAsync();
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        receiver.ReplyNext(new PushReply(202, Hold: release.Task));
        var site = await ObligationForNewSiteAsync(gateway, actors, receiver);
        var first = gateway.RunDispatchAsync();
        Assert.Single(await receiver.WaitForAsync(1));

        await ObligationForNewSiteAsync(gateway, actors, receiver, site);
        var second = gateway.RunDispatchAsync();
        // A grace period for a push that should not come: the second run's delivery waits for the first's slot.
        await receiver.WaitForAsync(2, TimeSpan.FromSeconds(1));
        Assert.Single(receiver.Received);

        release.SetResult();
        Assert.Equal(2, await first + await second);
        Assert.Equal(2, receiver.Received.Count);
    }

    /// <summary>
    /// A delivery that waited for its site's slot until its lease was nearly out is not started (it could still be on the
    /// wire when another run claims the row again and pushes it a second time): it is handed back, due at once, without
    /// counting as an attempt, and the next run pushes it. Its own gateway and database and one lane, so nothing keeps the run
    /// claiming after the hand-back (which would push the row again in the same run, as it should, but hide the hand-back).
    /// </summary>
    [Fact]
    public async Task ADeliveryWhoseLeaseRanOutWhileItWaitedForItsSiteIsHandedBackUnattempted()
    {
        await using var database = await TestDatabase.CreateAsync();
        await using var gateway = new GatewayFactory(database, new FakeTimeProvider(DateTimeOffset.UtcNow), settings: OneSlotOneLane);
        var actors = new Actors(gateway);
        await using var receiver = await PushReceiver.StartAsync();
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        receiver.ReplyNext(new PushReply(202, Hold: release.Task));
        var site = await ObligationForNewSiteAsync(gateway, actors, receiver);
        await ObligationForNewSiteAsync(gateway, actors, receiver, site);

        var dispatch = gateway.RunDispatchAsync();
        Assert.Single(await receiver.WaitForAsync(1));
        // The second delivery waits behind the first for the site's only slot while the lease (two minutes) nearly runs out:
        // too late to start an attempt of up to ten seconds, too early for a claim to take the rows again.
        gateway.Time.Advance(TimeSpan.FromSeconds(115));
        var handedBackAt = gateway.Time.GetUtcNow();
        release.SetResult();
        Assert.Equal(1, await dispatch);

        var pushed = await JtiAsync(gateway, site, Assert.Single(receiver.Received));
        Assert.Equal("Delivered", await Propagation.ObligationAsync<string>(database, pushed, "status"));
        var waited = (await database.ScalarAsync<Guid>(
            $"SELECT jti FROM erasure_obligations WHERE jti <> '{pushed}' AND recipient_id = (SELECT recipient_id FROM erasure_obligations WHERE jti = '{pushed}')"))
            .ToString();
        Assert.Equal(("Pending", 0, null), await StateAsync(database, waited));
        Assert.InRange(await NextAttemptAsync(database, waited), handedBackAt - TimeSpan.FromMilliseconds(1), handedBackAt);

        Assert.Equal(1, await gateway.RunDispatchAsync());
        Assert.Equal(2, receiver.Received.Count);
        Assert.Equal(waited, await JtiAsync(gateway, site, receiver.Received[1]));
        Assert.Equal(("Delivered", 1, null), await StateAsync(database, waited));
    }

    [Fact]
    public async Task AConfirmationThatArrivesWhileThePushIsOnTheWireIsNotOverwrittenByTheDeliveryRecord()
    {
        await using var receiver = await PushReceiver.StartAsync();
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        receiver.ReplyNext(new PushReply(202, Hold: release.Task));
        var site = await ObligationForNewSiteAsync(Gateway, fixture.Actors, receiver);
        var jti = await PendingJtiAsync(receiver);

        // The site has the event in hand (and deletes its copy) before its answer to the push gets back to the gateway.
        var dispatch = Gateway.RunDispatchAsync();
        Assert.Single(await receiver.WaitForAsync(1));
        using (var siteClient = Gateway.CreateHttpClient().WithToken(await fixture.Actors.TokenAsync(site)))
        {
            Assert.Equal(HttpStatusCode.OK, (await siteClient.PostAsync($"/api/v1/erasures/{jti}/confirmation", null)).StatusCode);
        }

        release.SetResult();
        await dispatch;
        Assert.Equal("Confirmed", await Propagation.ObligationAsync<string>(fixture.Database, jti, "status"));
        Assert.NotNull(await Propagation.ObligationAsync<object>(fixture.Database, jti, "confirmed_at") as DateTime?);
    }

    /// <summary>
    /// A site that asked for a day's pause and is then switched to poll (or given a new endpoint) gets its events at once:
    /// the pause and the back-off were the old endpoint's, and its deadlines keep running.
    /// </summary>
    [Theory]
    [InlineData("poll")]
    [InlineData("new endpoint")]
    public async Task ChangingASitesDeliveryMakesItsWaitingEventsDueAtOnce(string change)
    {
        await using var receiver = await PushReceiver.StartAsync();
        receiver.ReplyNext(new PushReply(503, RetryAfter: TimeSpan.FromDays(1)));
        var site = await ObligationForNewSiteAsync(Gateway, fixture.Actors, receiver);
        await Gateway.RunDispatchAsync();
        var jti = await JtiAsync(Gateway, site, Assert.Single(receiver.Received));
        Assert.True(await NextAttemptAsync(fixture.Database, jti) > Gateway.Time.GetUtcNow() + TimeSpan.FromHours(23));
        Assert.Equal(1L, await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM push_holds WHERE recipient_id = '{site.Id}'"));

        await using var other = await PushReceiver.StartAsync();
        using (var admin = Gateway.CreateHttpClient().WithToken((await fixture.Actors.NewOperatorAsync()).Tokens.AccessToken))
        using (var patched = await admin.PatchAsJsonAsync($"{Sites.AdminPath}/{site.Id}",
            change == "poll" ? new { deliveryMode = "poll", pushEndpoint = (string?)null } : new { deliveryMode = "push", pushEndpoint = (string?)other.Endpoint.AbsoluteUri }))
        {
            Assert.Equal(HttpStatusCode.OK, patched.StatusCode);
        }

        Assert.Equal(0L, await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM push_holds WHERE recipient_id = '{site.Id}'"));
        if (change == "poll")
        {
            using var client = Gateway.CreateHttpClient().WithToken(await fixture.Actors.TokenAsync(site));
            using var poll = await client.PostAsJsonAsync("/api/v1/events/poll", new { returnImmediately = true, maxEvents = 10 });
            Assert.Equal(HttpStatusCode.OK, poll.StatusCode);
            Assert.True((await poll.ReadJsonAsync()).GetProperty("sets").TryGetProperty(jti, out _), "the waiting event is offered to the poll");
        }
        else
        {
            await Gateway.RunDispatchAsync();
            Assert.Equal(jti, await JtiAsync(Gateway, site, Assert.Single(other.Received)));
            Assert.Equal("Delivered", await Propagation.ObligationAsync<string>(fixture.Database, jti, "status"));
        }
    }

    /// <summary>
    /// A site switched to poll while an attempt to its old endpoint is still on the wire: what that endpoint answers (a
    /// day's pause) no longer holds the site, and the event is offered to the poll.
    /// </summary>
    [Fact]
    public async Task AnAnswerFromTheOldEndpointDoesNotHoldASiteSwitchedMeanwhile()
    {
        await using var receiver = await PushReceiver.StartAsync();
        var release = new TaskCompletionSource();
        receiver.ReplyNext(new PushReply(503, RetryAfter: TimeSpan.FromDays(1), Hold: release.Task));
        var site = await ObligationForNewSiteAsync(Gateway, fixture.Actors, receiver);
        var dispatch = Gateway.RunDispatchAsync();
        var jti = await JtiAsync(Gateway, site, Assert.Single(await receiver.WaitForAsync(1)));

        using (var admin = Gateway.CreateHttpClient().WithToken((await fixture.Actors.NewOperatorAsync()).Tokens.AccessToken))
        using (var patched = await admin.PatchAsJsonAsync($"{Sites.AdminPath}/{site.Id}", new { deliveryMode = "poll", pushEndpoint = (string?)null }))
        {
            Assert.Equal(HttpStatusCode.OK, patched.StatusCode);
        }

        release.SetResult();
        await dispatch;
        Assert.Equal(0L, await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM push_holds WHERE recipient_id = '{site.Id}'"));
        Assert.True(await NextAttemptAsync(fixture.Database, jti) <= Gateway.Time.GetUtcNow());
        using var client = Gateway.CreateHttpClient().WithToken(await fixture.Actors.TokenAsync(site));
        using var poll = await client.PostAsJsonAsync("/api/v1/events/poll", new { returnImmediately = true, maxEvents = 10 });
        Assert.True((await poll.ReadJsonAsync()).GetProperty("sets").TryGetProperty(jti, out _), "the event is offered to the poll");
    }

    /// <summary>
    /// The operator who fixes a site's delivery sees, without reading the tables, that its event waits and why: the site's
    /// answer, the pause it asked for; then that it was delivered and awaits the site's word, overdue past its deadline;
    /// and nothing open once the site confirmed. Only operators ask.
    /// </summary>
    [Fact]
    public async Task TheOperatorSeesWhatASiteIsWaitingForAndWhy()
    {
        await using var receiver = await PushReceiver.StartAsync();
        receiver.ReplyNext(new PushReply(503, RetryAfter: TimeSpan.FromHours(1)));
        var site = await ObligationForNewSiteAsync(Gateway, fixture.Actors, receiver);
        var created = Gateway.Time.GetUtcNow();
        var @operator = await fixture.Actors.NewOperatorAsync();

        var waiting = await DeliveryAsync(@operator, site);
        Assert.Equal((site.ClientId, "push", 1L, 0, 0L, 0L), (waiting.GetProperty("clientId").GetString(), waiting.GetProperty("deliveryMode").GetString(),
            waiting.GetProperty("waiting").GetInt64(), waiting.GetProperty("mostAttempts").GetInt32(), waiting.GetProperty("awaitingConfirmation").GetInt64(),
            waiting.GetProperty("overdue").GetInt64()));
        Assert.InRange(waiting.GetProperty("oldestWaitingSince").GetDateTimeOffset(), created - TimeSpan.FromSeconds(1), created);
        Assert.True(waiting.GetProperty("nextAttemptAt").GetDateTimeOffset() <= created);
        Assert.Equal(JsonValueKind.Null, waiting.GetProperty("lastError").ValueKind);
        Assert.Equal(JsonValueKind.Null, waiting.GetProperty("heldUntil").ValueKind);

        await Gateway.RunDispatchAsync();
        var refused = await DeliveryAsync(@operator, site);
        Assert.Equal((1L, 1), (refused.GetProperty("waiting").GetInt64(), refused.GetProperty("mostAttempts").GetInt32()));
        Assert.StartsWith("HTTP 503", refused.GetProperty("lastError").GetString(), StringComparison.Ordinal);
        Assert.InRange(refused.GetProperty("heldUntil").GetDateTimeOffset(), created + TimeSpan.FromMinutes(59), created + TimeSpan.FromMinutes(61));
        Assert.True(refused.GetProperty("nextAttemptAt").GetDateTimeOffset() >= refused.GetProperty("heldUntil").GetDateTimeOffset() - TimeSpan.FromSeconds(1));

        Gateway.Time.Advance(TimeSpan.FromHours(1) + TimeSpan.FromSeconds(1));
        await Gateway.RunDispatchAsync();
        Assert.Equal(2, receiver.Received.Count);
        var delivered = await DeliveryAsync(@operator, site);
        Assert.Equal((0L, 1L, 0L), (delivered.GetProperty("waiting").GetInt64(), delivered.GetProperty("awaitingConfirmation").GetInt64(), delivered.GetProperty("overdue").GetInt64()));
        Assert.Equal(JsonValueKind.Null, delivered.GetProperty("lastError").ValueKind);
        Assert.Equal(JsonValueKind.Null, delivered.GetProperty("heldUntil").ValueKind);
        Assert.Equal(JsonValueKind.Null, delivered.GetProperty("oldestWaitingSince").ValueKind);

        Gateway.Time.Advance(TimeSpan.FromHours(72));
        Assert.Equal(1L, (await DeliveryAsync(@operator, site)).GetProperty("overdue").GetInt64());

        var jti = await JtiAsync(Gateway, site, receiver.Received[1]);
        using (var siteClient = Gateway.CreateHttpClient().WithToken(await fixture.Actors.TokenAsync(site)))
        {
            Assert.Equal(HttpStatusCode.OK, (await siteClient.PostAsync($"/api/v1/erasures/{jti}/confirmation", null)).StatusCode);
            // A site has no say here (nor a hint of other sites' figures).
            Assert.Equal(HttpStatusCode.Forbidden, (await siteClient.GetAsync($"{Sites.AdminPath}/{site.Id}/delivery")).StatusCode);
        }

        var done = await DeliveryAsync(@operator, site);
        Assert.Equal((0L, 0L, 0L), (done.GetProperty("waiting").GetInt64(), done.GetProperty("awaitingConfirmation").GetInt64(), done.GetProperty("overdue").GetInt64()));
        using var admin = Gateway.CreateHttpClient().WithToken(await OperatorTokenAsync(@operator));
        using var unknown = await admin.GetAsync($"{Sites.AdminPath}/{Guid.NewGuid()}/delivery");
        Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
        Assert.Equal("application/problem+json", unknown.Content.Headers.ContentType?.MediaType);
    }

    /// <summary>Signed in again for each look: the test's clock runs past an access token's hour.</summary>
    private Task<string> OperatorTokenAsync(Person @operator) =>
        fixture.Actors.FreshTokenAsync(@operator, "openid " + ExchangeGateway.Auth.ApiScopes.RecipientsAdmin);

    private async Task<JsonElement> DeliveryAsync(Person @operator, TestSite site)
    {
        using var admin = Gateway.CreateHttpClient().WithToken(await OperatorTokenAsync(@operator));
        using var response = await admin.GetAsync($"{Sites.AdminPath}/{site.Id}/delivery");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return await response.ReadJsonAsync();
    }

    /// <summary>
    /// A new push site (or the one given) holding a copy of a new seeker's CV, then unticked: one erasure obligation, not yet
    /// sent.
    /// </summary>
    private static Task<TestSite> ObligationForNewSiteAsync(GatewayFactory gateway, Actors actors, PushReceiver receiver, TestSite? existing = null) =>
        ObligationForNewSiteAsync(gateway, actors, receiver.Endpoint, existing);

    private static async Task<TestSite> ObligationForNewSiteAsync(GatewayFactory gateway, Actors actors, Uri endpoint, TestSite? existing = null)
    {
        var site = existing ?? await Sites.RegisterAsync(gateway, actors, SiteOptions.Push(endpoint));
        var marker = "fault-" + Guid.NewGuid().ToString("N");
        var seeker = await Propagation.SeekerWithCvAsync(gateway, actors, marker);
        await Sharing.TickAsync(gateway, seeker.Tokens.AccessToken, site.Id);
        await Propagation.ReadAsync(gateway, await actors.TokenAsync(site), marker);
        using var untick = await Sharing.UntickAsync(gateway, seeker.Tokens.AccessToken, site.Id);
        Assert.Equal(HttpStatusCode.OK, untick.StatusCode);
        return site;
    }

    /// <summary>The jti of the one obligation waiting for the receiver's site, read from the table before any attempt.</summary>
    private async Task<string> PendingJtiAsync(PushReceiver receiver) =>
        (await fixture.Database.ScalarAsync<Guid>(
            $"SELECT o.jti FROM erasure_obligations o JOIN recipients r ON r.id = o.recipient_id WHERE r.push_endpoint = '{receiver.Endpoint.AbsoluteUri}'"))
        .ToString();

    /// <summary>The jti of a push, once the request and its SET have passed verification.</summary>
    private static async Task<string> JtiAsync(GatewayFactory gateway, TestSite site, ReceivedPush push) =>
        SecurityEventTokens.VerifyPush(push, await SecurityEventTokens.FetchKeysAsync(gateway), gateway.Issuer, site.ClientId).Jti;

    private static async Task<(string Status, int Attempts, string? LastError)> StateAsync(TestDatabase database, string jti) =>
        (await Propagation.ObligationAsync<string>(database, jti, "status"),
         await Propagation.ObligationAsync<int>(database, jti, "attempts"),
         await Propagation.ObligationAsync<object>(database, jti, "last_error") as string);

    private static async Task<DateTimeOffset> NextAttemptAsync(TestDatabase database, string jti) =>
        new(await Propagation.ObligationAsync<DateTime>(database, jti, "next_attempt_at"), TimeSpan.Zero);

    /// <summary>A push endpoint on a loopback port that answers every request with a redirect to <c>location</c>.</summary>
    private sealed class Redirector : IAsyncDisposable
    {
        private readonly WebApplication _app;
        private int _requests;

        private Redirector(WebApplication app) => _app = app;

        public Uri Endpoint => new(new Uri(_app.Urls.Single()), "/events/redirect");

        public int Requests => Volatile.Read(ref _requests);

        public static async Task<Redirector> StartAsync(int status, Uri location)
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            builder.WebHost.UseKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, 0));
            var app = builder.Build();
            var redirector = new Redirector(app);
            app.Run(context =>
            {
                Interlocked.Increment(ref redirector._requests);
                context.Response.StatusCode = status;
                context.Response.Headers.Location = location.AbsoluteUri;
                return Task.CompletedTask;
            });
            await app.StartAsync();
            return redirector;
        }

        public async ValueTask DisposeAsync()
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
    }

    [Fact]
    public void ALeaseTooShortForTheAttemptTimeoutIsRefusedAtStart()
    {
        var options = new DeliveryOptions { Lease = TimeSpan.FromSeconds(15), AttemptTimeout = TimeSpan.FromSeconds(10) };
        var refused = options.Validate(new System.ComponentModel.DataAnnotations.ValidationContext(options)).ToList();
        Assert.Contains(refused, r => r.MemberNames.Contains(nameof(DeliveryOptions.Lease)));
        Assert.Empty(new DeliveryOptions().Validate(new System.ComponentModel.DataAnnotations.ValidationContext(options)));
    }
}
