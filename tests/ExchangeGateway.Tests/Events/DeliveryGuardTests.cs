using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.Extensions.Time.Testing;

namespace ExchangeGateway.Tests.Events;

/// <summary>
/// What guards a delivery once the obligation exists: the SSRF policy is applied again on the node that connects (not
/// only where the endpoint was registered), and the change that writes obligations wakes the dispatcher with one
/// Hangfire job per committed change, carrying nothing personal.
/// </summary>
public sealed class DeliveryGuardTests
{
    /// <summary>The refusal the delivery's connect callback records (PushEndpointPolicy.ConnectAsync).</summary>
    private const string LoopbackRefused = "refused: 127.0.0.1 resolves to a private, loopback or link-local address";

    /// <summary>
    /// Node A (loopback allowed, as in every test) registers a push site on a loopback receiver; node B, on the same
    /// database but allowing only another private range, runs the dispatch and must not connect: the obligation stays
    /// pending with the refusal as its error. Node A then delivers it after the back-off, which proves the setup sound.
    /// </summary>
    [Fact]
    public async Task ANodeThatDoesNotAllowLoopbackRefusesToPushToALoopbackEndpointAnotherNodeRegistered()
    {
        await using var database = await TestDatabase.CreateAsync();
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var nodeA = new GatewayFactory(database, time);
        nodeA.StartServer();
        // The later setting wins over GatewayFactory's default "127.0.0.0/8": this node allows 10.0.0.0/8 only.
        await using var nodeB = new GatewayFactory(database, time, issuer: nodeA.Issuer,
            settings: new Dictionary<string, string?> { ["Recipients:AllowedPrivateNetworks:0"] = "10.0.0.0/8" });
        nodeB.StartServer();
        var actors = new Actors(nodeA);
        await using var receiver = await PushReceiver.StartAsync();

        // Node B's own registration check refuses the same endpoint: the override took effect.
        using (var adminB = nodeB.CreateHttpClient().WithToken((await actors.NewOperatorAsync()).Tokens.AccessToken))
        using (var refused = await adminB.PostAsJsonAsync(Sites.AdminPath, Sites.RegistrationBody(SiteOptions.Push(receiver.Endpoint))))
        {
            Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
            Assert.Contains("loopback", await refused.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        var (site, jti) = await ObligationAsync(nodeA, actors, database, receiver);
        Assert.Equal(("Pending", 0, (string?)null), await StateAsync(database, jti));

        var attemptedAt = time.GetUtcNow();
        Assert.Equal(0, await nodeB.RunDispatchAsync());
        // The run awaits every delivery it started: had one connected, the receiver would have it by now.
        Assert.Empty(receiver.Received);
        Assert.Equal(("Pending", 1, LoopbackRefused), await StateAsync(database, jti));
        Assert.Null(await Propagation.ObligationAsync<object>(database, jti, "delivered_at") as DateTime?);
        // Retried by the back-off like any failed attempt (first wait: one minute, ±20%).
        var next = new DateTimeOffset(await Propagation.ObligationAsync<DateTime>(database, jti, "next_attempt_at"), TimeSpan.Zero);
        Assert.InRange(next, attemptedAt + TimeSpan.FromSeconds(48), attemptedAt + TimeSpan.FromSeconds(72));
        Assert.Empty(await Propagation.DeliveryAuditAsync(database, jti));

        // Node B keeps refusing on every run; node A, which allows loopback, delivers once the back-off has passed.
        time.Advance(TimeSpan.FromMinutes(2));
        Assert.Equal(0, await nodeB.RunDispatchAsync());
        Assert.Empty(receiver.Received);
        Assert.Equal(("Pending", 2, LoopbackRefused), await StateAsync(database, jti));

        time.Advance(TimeSpan.FromMinutes(7));
        Assert.Equal(1, await nodeA.RunDispatchAsync());
        var push = Assert.Single(await receiver.WaitForAsync(1));
        var set = SecurityEventTokens.VerifyPush(push, await SecurityEventTokens.FetchKeysAsync(nodeA), nodeA.Issuer, site.ClientId);
        Assert.Equal(jti, set.Jti);
        Assert.Equal(("Delivered", 3, (string?)null), await StateAsync(database, jti));
        Assert.Equal([$"system|dispatcher|{site.ClientId}|push|1"], await Propagation.DeliveryAuditAsync(database, jti));
    }

    /// <summary>
    /// The endpoint's URL is judged again under the delivering node's rules: one registered over plain HTTP before
    /// <c>Recipients:RequireHttps</c> was turned on gets no event once it is.
    /// </summary>
    [Fact]
    public async Task AnHttpEndpointRegisteredBeforeHttpsWasRequiredGetsNoEventOnceItIs()
    {
        await using var database = await TestDatabase.CreateAsync();
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var before = new GatewayFactory(database, time);
        before.StartServer();
        await using var after = new GatewayFactory(database, time, issuer: before.Issuer,
            settings: new Dictionary<string, string?> { ["Recipients:RequireHttps"] = "true" });
        after.StartServer();
        var actors = new Actors(before);
        await using var receiver = await PushReceiver.StartAsync();
        var (_, jti) = await ObligationAsync(before, actors, database, receiver);
        Assert.Equal(0, await after.RunDispatchAsync());
        Assert.Empty(receiver.Received);
        Assert.Equal(("Pending", 1, "refused: the push endpoint must use https"), await StateAsync(database, jti));
    }

    /// <summary>
    /// A site holding copies of three seekers' CVs: three unticks are three committed changes, three dispatch jobs; then the
    /// operator suspends a second such site, one change writing three obligations: one job, which delivers all three in a
    /// single run. An untick that writes no obligation (the site never read the CV) enqueues nothing. Every other change
    /// that writes obligations wakes the dispatcher the same way, one job each: "forget me", erasing the CV, a new version
    /// the site must hear of, the freshness sweep and the consent-expiry job. No job carries anything of the seekers.
    /// </summary>
    [Fact]
    public async Task EachChangeThatWritesObligationsEnqueuesOneDispatchJobAndNothingPersonal()
    {
        await using var database = await TestDatabase.CreateAsync();
        await using var gateway = new GatewayFactory(database, new FakeTimeProvider(DateTimeOffset.UtcNow));
        var actors = new Actors(gateway);
        var @operator = await actors.NewOperatorAsync();
        // Another host, on a database of its own, started after this one: as another test's host, or a worker beside the web
        // host, would be. Hangfire's process-wide JobStorage.Current is now that host's, so a dispatch enqueued through the
        // static API (BackgroundJob) instead of this host's own client lands there, and the counts below miss it. Without
        // this, this host was the last one started whenever the test ran alone, and the static API found its storage.
        await using var otherDatabase = await TestDatabase.CreateAsync();
        await using var other = new GatewayFactory(otherDatabase, new FakeTimeProvider(DateTimeOffset.UtcNow));
        other.StartServer();
        await using var receiver = await PushReceiver.StartAsync();
        var revokedSite = await Sites.RegisterAsync(gateway, @operator.Tokens.AccessToken, SiteOptions.Push(receiver.Endpoint));
        var suspendedSite = await Sites.RegisterAsync(gateway, @operator.Tokens.AccessToken, SiteOptions.Push(receiver.Endpoint));
        var unreadSite = await Sites.RegisterAsync(gateway, @operator.Tokens.AccessToken, SiteOptions.Push(receiver.Endpoint));
        var holderSite = await Sites.RegisterAsync(gateway, @operator.Tokens.AccessToken, SiteOptions.Push(receiver.Endpoint));

        var seekers = new List<(Person Seeker, string Marker)>();
        for (var i = 0; i < 3; i++)
        {
            var marker = "jobs-" + Guid.NewGuid().ToString("N");
            var seeker = await Propagation.SeekerWithCvAsync(gateway, actors, marker);
            foreach (var site in new[] { revokedSite, suspendedSite, unreadSite })
            {
                await Sharing.TickAsync(gateway, seeker.Tokens.AccessToken, site.Id);
            }

            seekers.Add((seeker, marker));
        }

        foreach (var site in new[] { revokedSite, suspendedSite })
        {
            var token = await actors.TokenAsync(site);
            foreach (var (_, marker) in seekers)
            {
                await Propagation.ReadAsync(gateway, token, marker);
            }
        }

        // One seeker per remaining kind of change, each sharing with a site that read the CV.
        var holders = new List<(Person Seeker, string Marker)>();
        var holderToken = await actors.TokenAsync(holderSite);
        for (var i = 0; i < 5; i++)
        {
            var marker = "jobs-holder-" + Guid.NewGuid().ToString("N");
            var seeker = await Propagation.SeekerWithCvAsync(gateway, actors, marker);
            await Sharing.TickAsync(gateway, seeker.Tokens.AccessToken, holderSite.Id);
            await Propagation.ReadAsync(gateway, holderToken, marker);
            holders.Add((seeker, marker));
        }

        // Putting CVs, ticking and reading wrote no obligation and woke no dispatcher.
        Assert.Equal(0L, await database.ScalarAsync<long>("SELECT count(*) FROM erasure_obligations"));
        Assert.Equal(0L, await DispatchJobsAsync(database));

        // An untick of a site that never received the CV: the episode ends, nothing to chase, no job.
        using (var untick = await Sharing.UntickAsync(gateway, seekers[0].Seeker.Tokens.AccessToken, unreadSite.Id))
        {
            Assert.Equal(HttpStatusCode.OK, untick.StatusCode);
        }

        Assert.Equal(1L, await database.ScalarAsync<long>(
            $"SELECT count(*) FROM consents WHERE recipient_id = '{unreadSite.Id}' AND state = 'Revoked'"));
        Assert.Equal(0L, await database.ScalarAsync<long>("SELECT count(*) FROM erasure_obligations"));
        Assert.Equal(0L, await DispatchJobsAsync(database));

        // Three unticks of a site holding copies: each commit writes one obligation and enqueues one job.
        for (var i = 0; i < 3; i++)
        {
            using (var untick = await Sharing.UntickAsync(gateway, seekers[i].Seeker.Tokens.AccessToken, revokedSite.Id))
            {
                Assert.Equal(HttpStatusCode.OK, untick.StatusCode);
            }

            Assert.Equal(i + 1L, await database.ScalarAsync<long>(
                $"SELECT count(*) FROM erasure_obligations WHERE recipient_id = '{revokedSite.Id}' AND cause = 'consent-revoked' AND status = 'Pending'"));
            Assert.Equal(i + 1L, await DispatchJobsAsync(database));
        }

        // One suspension ending three episodes that each received the CV: three obligations, one job.
        using (var admin = gateway.CreateHttpClient().WithToken((await actors.NewOperatorAsync()).Tokens.AccessToken))
        using (var suspended = await admin.PostAsJsonAsync($"{Sites.AdminPath}/{suspendedSite.Id}/suspend", new JsonObject { ["reason"] = "Data breach under investigation" }))
        {
            Assert.Equal(HttpStatusCode.OK, suspended.StatusCode);
        }

        Assert.Equal(3L, await database.ScalarAsync<long>(
            $"SELECT count(*) FROM erasure_obligations WHERE recipient_id = '{suspendedSite.Id}' AND cause = 'recipient-suspended' AND status = 'Pending'"));
        Assert.Equal(0L, await database.ScalarAsync<long>($"SELECT count(*) FROM consents WHERE recipient_id = '{suspendedSite.Id}' AND state = 'Active'"));
        Assert.Equal(4L, await DispatchJobsAsync(database));

        // Each of the other changes: its obligation, and exactly one more job.
        using (var me = gateway.CreateHttpClient().WithToken(holders[0].Seeker.Tokens.AccessToken))
        {
            Assert.Equal(HttpStatusCode.OK, (await me.DeleteAsync("/api/v1/me")).StatusCode);
        }

        await AssertOneMoreJobAsync("forget me", "subject-erased", 1, 5);
        using (var me = gateway.CreateHttpClient().WithToken(holders[1].Seeker.Tokens.AccessToken))
        {
            Assert.Equal(HttpStatusCode.NoContent, (await me.DeleteAsync("/api/v1/me/cv")).StatusCode);
        }

        await AssertOneMoreJobAsync("erasing the CV", "subject-erased", 2, 6);
        using (var put = await Sharing.PutCvAsync(gateway, holders[2].Seeker.Tokens.AccessToken, Sharing.Resume(holders[2].Marker + "-v2")))
        {
            Assert.Equal(HttpStatusCode.OK, put.StatusCode);
        }

        await AssertOneMoreJobAsync("a new version", "cv-updated", 1, 7);
        // Stale and lapsed by moving their dates in the table: the clock stays, so nothing else goes offline or lapses.
        await database.ExecuteAsync($"UPDATE cvs SET refreshed_at = refreshed_at - interval '91 days' WHERE seeker_id = '{holders[3].Seeker.Id}'");
        Assert.Equal(1, await gateway.RunFreshnessSweepAsync());
        await AssertOneMoreJobAsync("the freshness sweep", "cv-offline", 1, 8);
        await database.ExecuteAsync($"UPDATE consents SET expires_at = granted_at WHERE seeker_id = '{holders[4].Seeker.Id}'");
        Assert.Equal(1, await gateway.RunConsentExpiryAsync());
        await AssertOneMoreJobAsync("the consent-expiry job", "consent-expired", 1, 9);

        // Every job Hangfire holds is one of these: nothing else was enqueued (no job per obligation, of any kind).
        Assert.Equal(9L, await database.ScalarAsync<long>("SELECT count(*) FROM hangfire.job"));
        Assert.Equal(9L, await database.ScalarAsync<long>("SELECT count(*) FROM hangfire.jobqueue"));
        Assert.Equal(0L, await otherDatabase.ScalarAsync<long>("SELECT count(*) FROM hangfire.job"));

        // A job takes no argument but its cancellation token: ids only, and here not even that.
        var invocations = await database.ScalarAsync<string[]>(
            "SELECT array_agg(invocationdata::text || ' ' || coalesce(arguments::text, '') ORDER BY id) FROM hangfire.job");
        var everything = string.Join("\n", invocations) + "\n" + await database.ScalarAsync<string>(
            "SELECT coalesce(string_agg(name || '=' || coalesce(value, ''), '\n'), '') FROM hangfire.jobparameter");
        foreach (var (seeker, marker) in seekers.Concat(holders))
        {
            Assert.DoesNotContain(seeker.Id, everything, StringComparison.OrdinalIgnoreCase);
            Assert.DoesNotContain(seeker.Email, everything, StringComparison.OrdinalIgnoreCase);
            Assert.DoesNotContain(marker, everything, StringComparison.OrdinalIgnoreCase);
        }

        var pairwiseIds = await database.ScalarAsync<string[]>("SELECT array_agg(pairwise_id) FROM erasure_obligations");
        Assert.Equal(11, pairwiseIds.Length);
        Assert.All(pairwiseIds, id => Assert.DoesNotContain(id, everything, StringComparison.Ordinal));
        Assert.All(invocations, invocation =>
        {
            Assert.Contains("EventDispatchJob", invocation, StringComparison.Ordinal);
            Assert.Contains("RunAsync", invocation, StringComparison.Ordinal);
        });

        // The one job of the suspension is enough for its whole batch: a single run delivers all eleven obligations.
        Assert.Equal(11, await gateway.RunDispatchAsync());
        Assert.Equal(11, (await receiver.WaitForAsync(11)).Count);
        Assert.Equal(11L, await database.ScalarAsync<long>("SELECT count(*) FROM erasure_obligations WHERE status = 'Delivered'"));

        async Task AssertOneMoreJobAsync(string change, string cause, long obligations, long jobs)
        {
            Assert.True(obligations == await database.ScalarAsync<long>(
                $"SELECT count(*) FROM erasure_obligations WHERE recipient_id = '{holderSite.Id}' AND cause = '{cause}' AND status = 'Pending'"),
                $"{change}: not {obligations} pending {cause} obligation(s)");
            Assert.True(jobs == await DispatchJobsAsync(database), $"{change}: not exactly one more dispatch job");
        }
    }

    /// <summary>A push site registered on <paramref name="node"/> that read a new seeker's CV, then the untick: one obligation.</summary>
    private static async Task<(TestSite Site, string Jti)> ObligationAsync(GatewayFactory node, Actors actors, TestDatabase database, PushReceiver receiver)
    {
        var site = await Sites.RegisterAsync(node, actors, SiteOptions.Push(receiver.Endpoint));
        var marker = "guard-" + Guid.NewGuid().ToString("N");
        var seeker = await Propagation.SeekerWithCvAsync(node, actors, marker);
        await Sharing.TickAsync(node, seeker.Tokens.AccessToken, site.Id);
        await Propagation.ReadAsync(node, await actors.TokenAsync(site), marker);
        using (var untick = await Sharing.UntickAsync(node, seeker.Tokens.AccessToken, site.Id))
        {
            Assert.Equal(HttpStatusCode.OK, untick.StatusCode);
        }

        return (site, (await database.ScalarAsync<Guid>($"SELECT jti FROM erasure_obligations WHERE recipient_id = '{site.Id}'")).ToString());
    }

    /// <summary>The EventDispatchJob runs waiting in Hangfire's queue.</summary>
    private static Task<long> DispatchJobsAsync(TestDatabase database) => database.ScalarAsync<long>(
        "SELECT count(*) FROM hangfire.job WHERE statename = 'Enqueued' AND invocationdata::text LIKE '%EventDispatchJob%'");

    private static async Task<(string Status, int Attempts, string? LastError)> StateAsync(TestDatabase database, string jti) =>
        (await Propagation.ObligationAsync<string>(database, jti, "status"),
         await Propagation.ObligationAsync<int>(database, jti, "attempts"),
         await Propagation.ObligationAsync<object>(database, jti, "last_error") as string);
}
