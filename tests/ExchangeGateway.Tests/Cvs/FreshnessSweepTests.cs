using System.Net.Http.Json;
using ExchangeGateway.Audit;
using ExchangeGateway.Cvs;
using ExchangeGateway.Data;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace ExchangeGateway.Tests.Cvs;

/// <summary>
/// The freshness sweep in many small batches, run by its parallel workers: every stale CV goes offline exactly once,
/// every episode that received it gets exactly one obligation (and an episode that received nothing gets none), the
/// feed moves, and the audit log holds one event per CV.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class FreshnessSweepTests(GatewayFixture fixture)
{
    private GatewayFactory Gateway => fixture.Factory;

    /// <summary>
    /// A seeker refreshing while the sweep takes the CV offline: the refresh waits for the sweep's row and then sees it
    /// offline, so it brings the CV back online. Read without that lock, the refresh kept the state it had read and left
    /// the row offline with a fresh date: served again, and never swept or chased again.
    /// </summary>
    [Fact]
    public async Task ARefreshRacingTheSweepBringsTheCvBackOnline()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        using (var put = await Sharing.PutCvAsync(Gateway, seeker.Tokens.AccessToken, Sharing.Resume("refresh-race")))
        {
            Assert.Equal(System.Net.HttpStatusCode.Created, put.StatusCode);
        }

        // A minute on (the token still valid), so that the refresh has a new date to write whatever state it read.
        fixture.Time.Advance(TimeSpan.FromMinutes(1));
        using var client = fixture.Client().WithToken(seeker.Tokens.AccessToken);
        Task<HttpResponseMessage> refresh;
        await using (var sweep = await HeldTransaction.BeginAsync(fixture.Database))
        {
            Assert.Equal(1, await sweep.ExecuteAsync($"UPDATE cvs SET state = 'Offline' WHERE seeker_id = '{seeker.Id}'"));
            refresh = client.PostAsync("/api/v1/me/cv/refresh", null);
            await HeldTransaction.WaitForWaiterAsync(fixture.Database, "transactionid", "tuple");
            await sweep.CommitAsync();
        }

        using (var response = await refresh)
        {
            Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
        }

        Assert.Equal("Published", await fixture.Database.ScalarAsync<string>($"SELECT state FROM cvs WHERE seeker_id = '{seeker.Id}'"));
    }

    /// <summary>
    /// A refresh that waits for the seeker's lock (a second tab, a double click) while the sweep takes the CV offline: the
    /// poll site's cv-offline event must be dated (toe) no later than the refreshedAt it then reads, or a site following
    /// the README's rule deletes the copy it may keep, and nothing sends it again. The refresh used to date itself before
    /// it waited.
    /// </summary>
    [Fact]
    public async Task ARefreshThatWaitedForTheSweepIsDatedAfterTheOfflineEvent()
    {
        var site = await Sites.RegisterAsync(Gateway, fixture.Actors);
        var marker = "refresh-after-sweep-" + Guid.NewGuid().ToString("N");
        var seeker = await Propagation.SeekerWithCvAsync(Gateway, fixture.Actors, marker);
        await Sharing.TickAsync(Gateway, seeker.Tokens.AccessToken, site.Id);
        var id = await Propagation.ReadAsync(Gateway, await fixture.Actors.TokenAsync(site), marker);

        fixture.Time.Advance(TimeSpan.FromDays(91));
        using var me = Gateway.CreateHttpClient().WithToken(await fixture.Actors.FreshTokenAsync(seeker));
        Task<HttpResponseMessage> refresh;
        await using (var otherRequest = await HeldTransaction.BeginAsync(fixture.Database))
        {
            await otherRequest.ExecuteAsync($"SELECT pg_advisory_xact_lock(7, hashtext('{seeker.Id}'))");
            refresh = me.PostAsync("/api/v1/me/cv/refresh", null);
            await HeldTransaction.WaitForWaiterAsync(fixture.Database, "advisory");
            fixture.Time.Advance(TimeSpan.FromSeconds(2));
            Assert.True(await Gateway.RunFreshnessSweepAsync() >= 1);
            await otherRequest.CommitAsync();
        }

        DateTimeOffset refreshedAt;
        using (var response = await refresh)
        {
            Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
            refreshedAt = (await response.ReadJsonAsync()).GetProperty("refreshedAt").GetDateTimeOffset();
        }

        using var client = Gateway.CreateHttpClient().WithToken(await fixture.Actors.TokenAsync(site));
        using var poll = await client.PostAsJsonAsync("/api/v1/events/poll", new { returnImmediately = true, maxEvents = 100 });
        Assert.Equal(System.Net.HttpStatusCode.OK, poll.StatusCode);
        var offered = SecurityEventTokens.Verify(
            Assert.Single((await poll.ReadJsonAsync()).GetProperty("sets").EnumerateObject()).Value.GetString()!,
            await SecurityEventTokens.FetchKeysAsync(Gateway), Gateway.Issuer, site.ClientId);
        Assert.Equal(("cv-offline", id), (offered.Cause, offered.SubjectId));
        Assert.True(offered.TimeOfEvent <= refreshedAt, $"toe {offered.TimeOfEvent:O} after refreshedAt {refreshedAt:O}");
        Assert.Equal("Published", await fixture.Database.ScalarAsync<string>($"SELECT state FROM cvs WHERE seeker_id = '{seeker.Id}'"));
    }

    /// <summary>
    /// A CV swept offline and refreshed before a push site's event left (the site held off): that event is withdrawn, not
    /// sent late to make the site delete a CV it reads again now. One already delivered stays, and so does a poll site's
    /// (a poll may have offered it already): both are dated (toe) before the refresh.
    /// </summary>
    [Fact]
    public async Task ARefreshWithdrawsTheOfflineEventsThatNeverLeft()
    {
        await using var receiver = await PushReceiver.StartAsync();
        await using var heldReceiver = await PushReceiver.StartAsync();
        await using var failingReceiver = await PushReceiver.StartAsync();
        failingReceiver.ReplyNext(new PushReply(500));
        var pollSite = await Sites.RegisterAsync(Gateway, fixture.Actors);
        var pushSite = await Sites.RegisterAsync(Gateway, fixture.Actors, SiteOptions.Push(receiver.Endpoint));
        var heldSite = await Sites.RegisterAsync(Gateway, fixture.Actors, SiteOptions.Push(heldReceiver.Endpoint));
        var failingSite = await Sites.RegisterAsync(Gateway, fixture.Actors, SiteOptions.Push(failingReceiver.Endpoint));
        var marker = "back-online-" + Guid.NewGuid().ToString("N");
        var seeker = await Propagation.SeekerWithCvAsync(Gateway, fixture.Actors, marker);
        var ids = new Dictionary<Guid, string>();
        foreach (var site in new[] { pollSite, pushSite, heldSite, failingSite })
        {
            await Sharing.TickAsync(Gateway, seeker.Tokens.AccessToken, site.Id);
            ids[site.Id] = await Propagation.ReadAsync(Gateway, await fixture.Actors.TokenAsync(site), marker);
        }

        fixture.Time.Advance(TimeSpan.FromDays(91));
        Assert.True(await Gateway.RunFreshnessSweepAsync() >= 1);
        // One push site asked for a pause (Retry-After) before any of its events left.
        var heldUntil = (Gateway.Time.GetUtcNow() + TimeSpan.FromDays(1)).ToString("O", System.Globalization.CultureInfo.InvariantCulture);
        await fixture.Database.ExecuteAsync($"INSERT INTO push_holds (recipient_id, held_until) VALUES ('{heldSite.Id}', '{heldUntil}')");
        await Gateway.RunDispatchAsync();
        var keys = await SecurityEventTokens.FetchKeysAsync(Gateway);
        var pushed = SecurityEventTokens.VerifyPush(Assert.Single(receiver.Received), keys, Gateway.Issuer, pushSite.ClientId);
        Assert.Equal(("cv-offline", ids[pushSite.Id]), (pushed.Cause, pushed.SubjectId));
        Assert.Empty(heldReceiver.Received);

        fixture.Time.Advance(TimeSpan.FromMinutes(5));
        DateTimeOffset refreshedAt;
        using (var me = Gateway.CreateHttpClient().WithToken(await fixture.Actors.FreshTokenAsync(seeker)))
        using (var refresh = await me.PostAsync("/api/v1/me/cv/refresh", null))
        {
            Assert.Equal(System.Net.HttpStatusCode.OK, refresh.StatusCode);
            refreshedAt = (await refresh.ReadJsonAsync()).GetProperty("refreshedAt").GetDateTimeOffset();
        }

        // The held site is never told, and finds the CV again under the same id.
        Assert.Equal(0L, await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM erasure_obligations WHERE recipient_id = '{heldSite.Id}'"));
        Assert.Equal(ids[heldSite.Id], await Propagation.ReadAsync(Gateway, await fixture.Actors.TokenAsync(heldSite), marker));
        // The withdrawn event is named, by site and jti, in the write's audit row: told apart from a row deleted behind the log.
        Assert.Equal($"1 {heldSite.ClientId}", await fixture.Database.ScalarAsync<string>(
            $"SELECT jsonb_array_length(details::jsonb -> 'offlineEventsWithdrawn') || ' ' || (details::jsonb -> 'offlineEventsWithdrawn' -> 0 ->> 'recipient') FROM audit_events WHERE action = '{ExchangeGateway.Audit.AuditActions.CvRefreshed}' ORDER BY sequence DESC LIMIT 1"));

        // An attempt that failed may still have reached its site: that event stays, pending, to be sent again.
        var attempted = await fixture.Database.ScalarAsync<Guid>($"SELECT jti FROM erasure_obligations WHERE recipient_id = '{failingSite.Id}'");
        Assert.Equal(("Pending", 1), (await Propagation.ObligationAsync<string>(fixture.Database, attempted.ToString(), "status"),
            await Propagation.ObligationAsync<int>(fixture.Database, attempted.ToString(), "attempts")));

        // The delivered event stays to be confirmed; the poll site's is still offered. Both say when the CV went offline.
        Assert.Equal("Delivered", await Propagation.ObligationAsync<string>(fixture.Database, pushed.Jti, "status"));
        Assert.True(pushed.TimeOfEvent < refreshedAt);
        using (var site = Gateway.CreateHttpClient().WithToken(await fixture.Actors.TokenAsync(pollSite)))
        using (var poll = await site.PostAsJsonAsync("/api/v1/events/poll", new { returnImmediately = true, maxEvents = 100 }))
        {
            Assert.Equal(System.Net.HttpStatusCode.OK, poll.StatusCode);
            var offered = SecurityEventTokens.Verify(
                Assert.Single((await poll.ReadJsonAsync()).GetProperty("sets").EnumerateObject()).Value.GetString()!, keys, Gateway.Issuer, pollSite.ClientId);
            Assert.Equal(("cv-offline", ids[pollSite.Id]), (offered.Cause, offered.SubjectId));
            Assert.True(offered.TimeOfEvent < refreshedAt);
        }
    }

    /// <summary>
    /// A poll site offered a cv-offline event (a poll leaves no trace until its ack) and then switched to push before any
    /// push tried it: the event may already be in the site's hands, so a refresh must not withdraw it as one that never
    /// left (the site's confirmation would then find nothing, and the audit row would say it never left).
    /// </summary>
    [Fact]
    public async Task ARefreshKeepsTheOfflineEventAPollSiteWasOfferedBeforeSwitchingToPush()
    {
        await using var receiver = await PushReceiver.StartAsync();
        var site = await Sites.RegisterAsync(Gateway, fixture.Actors);
        var marker = "switched-" + Guid.NewGuid().ToString("N");
        var seeker = await Propagation.SeekerWithCvAsync(Gateway, fixture.Actors, marker);
        await Sharing.TickAsync(Gateway, seeker.Tokens.AccessToken, site.Id);
        await Propagation.ReadAsync(Gateway, await fixture.Actors.TokenAsync(site), marker);
        fixture.Time.Advance(TimeSpan.FromDays(91));
        Assert.True(await Gateway.RunFreshnessSweepAsync() >= 1);

        string jti;
        using (var client = Gateway.CreateHttpClient().WithToken(await fixture.Actors.TokenAsync(site)))
        using (var poll = await client.PostAsJsonAsync("/api/v1/events/poll", new { returnImmediately = true, maxEvents = 10 }))
        {
            Assert.Equal(System.Net.HttpStatusCode.OK, poll.StatusCode);
            jti = Assert.Single((await poll.ReadJsonAsync()).GetProperty("sets").EnumerateObject()).Name;
        }

        using (var admin = Gateway.CreateHttpClient().WithToken((await fixture.Actors.NewOperatorAsync()).Tokens.AccessToken))
        using (var patched = await admin.PatchAsJsonAsync($"{Sites.AdminPath}/{site.Id}", new { deliveryMode = "push", pushEndpoint = receiver.Endpoint.AbsoluteUri }))
        {
            Assert.Equal(System.Net.HttpStatusCode.OK, patched.StatusCode);
        }

        using (var me = Gateway.CreateHttpClient().WithToken(await fixture.Actors.FreshTokenAsync(seeker)))
        using (var refresh = await me.PostAsync("/api/v1/me/cv/refresh", null))
        {
            Assert.Equal(System.Net.HttpStatusCode.OK, refresh.StatusCode);
        }

        Assert.Equal("Pending", await Propagation.ObligationAsync<string>(fixture.Database, jti, "status"));
        using (var client = Gateway.CreateHttpClient().WithToken(await fixture.Actors.TokenAsync(site)))
        using (var confirmed = await client.PostAsync($"/api/v1/erasures/{jti}/confirmation", null))
        {
            Assert.Equal(System.Net.HttpStatusCode.OK, confirmed.StatusCode);
        }
    }

    /// <summary>
    /// A refresh meets a dispatcher that has claimed the CV's offline event and waits for the chain lock to record its
    /// batch. The refresh must not wait for that event's row while it holds the chain lock (each would wait for the other
    /// until PostgreSQL killed one): the event, held by someone else, may be leaving, so it stays; both finish.
    /// </summary>
    [Fact]
    public async Task ARefreshAndADispatcherHoldingItsOfflineEventBothFinish()
    {
        await using var receiver = await PushReceiver.StartAsync();
        var site = await Sites.RegisterAsync(Gateway, fixture.Actors, SiteOptions.Push(receiver.Endpoint));
        var marker = "refresh-vs-claim-" + Guid.NewGuid().ToString("N");
        var seeker = await Propagation.SeekerWithCvAsync(Gateway, fixture.Actors, marker);
        await Sharing.TickAsync(Gateway, seeker.Tokens.AccessToken, site.Id);
        await Propagation.ReadAsync(Gateway, await fixture.Actors.TokenAsync(site), marker);
        fixture.Time.Advance(TimeSpan.FromDays(91));
        Assert.True(await Gateway.RunFreshnessSweepAsync() >= 1);
        var jti = await fixture.Database.ScalarAsync<Guid>($"SELECT jti FROM erasure_obligations WHERE recipient_id = '{site.Id}'");
        var token = await fixture.Actors.FreshTokenAsync(seeker);

        // A disclosure batch holds the chain lock; a dispatcher has claimed the event (its row is locked).
        await using var batch = await HeldTransaction.BeginAsync(fixture.Database);
        await batch.ExecuteAsync($"SELECT pg_advisory_xact_lock({ExchangeGateway.Data.Locks.Chain})");
        await using var dispatcher = await HeldTransaction.BeginAsync(fixture.Database);
        await dispatcher.ExecuteAsync($"SELECT 1 FROM erasure_obligations WHERE jti = '{jti}' FOR UPDATE");

        // The refresh queues for the chain lock first, then the dispatcher, to record its batch.
        using var me = Gateway.CreateHttpClient().WithToken(token);
        var refresh = me.PostAsync("/api/v1/me/cv/refresh", null);
        await HeldTransaction.WaitForChainWaitersAsync(fixture.Database, 1);
        var record = dispatcher.ExecuteAsync($"SELECT pg_advisory_xact_lock({ExchangeGateway.Data.Locks.Chain})");
        await HeldTransaction.WaitForChainWaitersAsync(fixture.Database, 2);
        await batch.CommitAsync();

        using (var refreshed = await refresh.WaitAsync(TimeSpan.FromSeconds(30)))
        {
            Assert.Equal(System.Net.HttpStatusCode.OK, refreshed.StatusCode);
        }

        await record.WaitAsync(TimeSpan.FromSeconds(30));
        await dispatcher.CommitAsync();
        Assert.Equal(1L, await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM erasure_obligations WHERE jti = '{jti}'"));
    }

    /// <summary>
    /// A push site's list of open events, and its polls, show what a push has tried: an event never tried may still be
    /// withdrawn if the CV comes back online first, and the site must not have acted on it (deleted its copy, confirmed a
    /// jti that vanishes).
    /// </summary>
    [Fact]
    public async Task APushSiteSeesOnlyTheEventsAPushHasTried()
    {
        await using var receiver = await PushReceiver.StartAsync();
        var site = await Sites.RegisterAsync(Gateway, fixture.Actors, SiteOptions.Push(receiver.Endpoint));
        var marker = "push-open-list-" + Guid.NewGuid().ToString("N");
        var seeker = await Propagation.SeekerWithCvAsync(Gateway, fixture.Actors, marker);
        await Sharing.TickAsync(Gateway, seeker.Tokens.AccessToken, site.Id);
        var siteToken = await fixture.Actors.TokenAsync(site);
        var id = await Propagation.ReadAsync(Gateway, siteToken, marker);
        fixture.Time.Advance(TimeSpan.FromDays(91));
        Assert.True(await Gateway.RunFreshnessSweepAsync() >= 1);

        // A token of the new day: the one that read the CV ran out during the ninety days.
        using var client = Gateway.CreateHttpClient().WithToken(await fixture.Actors.TokenAsync(site));
        async Task<List<string?>> ListedAsync() =>
            (await (await client.GetAsync("/api/v1/erasures")).ReadJsonAsync()).GetProperty("items").EnumerateArray().Select(i => i.GetProperty("cvId").GetString()).ToList();

        async Task<int> PolledAsync()
        {
            using var poll = await client.PostAsJsonAsync("/api/v1/events/poll", new { returnImmediately = true });
            return (await poll.ReadJsonAsync()).GetProperty("sets").EnumerateObject().Count();
        }

        Assert.DoesNotContain(id, await ListedAsync());
        Assert.Equal(0, await PolledAsync());
        await fixture.Database.ExecuteAsync($"UPDATE erasure_obligations SET attempts = 1 WHERE recipient_id = '{site.Id}'");
        Assert.Contains(id, await ListedAsync());
        Assert.Equal(1, await PolledAsync());
    }

    /// <summary>
    /// A new version put over a CV swept offline brings it back online as a refresh does, and withdraws the same events: a
    /// push site's cv-offline event that never left. The site is told of the new version instead (cv-updated).
    /// </summary>
    [Fact]
    public async Task ANewVersionWithdrawsTheOfflineEventsThatNeverLeft()
    {
        await using var heldReceiver = await PushReceiver.StartAsync();
        var heldSite = await Sites.RegisterAsync(Gateway, fixture.Actors, SiteOptions.Push(heldReceiver.Endpoint));
        var marker = "new-version-online-" + Guid.NewGuid().ToString("N");
        var seeker = await Propagation.SeekerWithCvAsync(Gateway, fixture.Actors, marker);
        await Sharing.TickAsync(Gateway, seeker.Tokens.AccessToken, heldSite.Id);
        var id = await Propagation.ReadAsync(Gateway, await fixture.Actors.TokenAsync(heldSite), marker);

        fixture.Time.Advance(TimeSpan.FromDays(91));
        Assert.True(await Gateway.RunFreshnessSweepAsync() >= 1);
        var heldUntil = (Gateway.Time.GetUtcNow() + TimeSpan.FromDays(1)).ToString("O", System.Globalization.CultureInfo.InvariantCulture);
        await fixture.Database.ExecuteAsync($"INSERT INTO push_holds (recipient_id, held_until) VALUES ('{heldSite.Id}', '{heldUntil}')");
        await Gateway.RunDispatchAsync();
        Assert.Empty(heldReceiver.Received);
        var offline = $"SELECT count(*) FROM erasure_obligations WHERE recipient_id = '{heldSite.Id}' AND cause = 'cv-offline'";
        Assert.Equal(1L, await fixture.Database.ScalarAsync<long>(offline));

        fixture.Time.Advance(TimeSpan.FromMinutes(5));
        using (var put = await Sharing.PutCvAsync(Gateway, await fixture.Actors.FreshTokenAsync(seeker), Sharing.Resume(marker)))
        {
            Assert.True(put.IsSuccessStatusCode, $"{(int)put.StatusCode}");
        }

        Assert.Equal(0L, await fixture.Database.ScalarAsync<long>(offline));
        // What the site has left to hear is the new version, under the same id.
        Assert.Equal($"{id} cv-updated cv-updated", await fixture.Database.ScalarAsync<string>(
            $"SELECT coalesce(string_agg(pairwise_id || ' ' || kind || ' ' || cause, ', '), '') FROM erasure_obligations WHERE recipient_id = '{heldSite.Id}' AND status = 'Pending'"));
        // The withdrawn event is named, by site and jti, in the write's audit row: told apart from a row deleted behind the log.
        Assert.Equal($"1 {heldSite.ClientId}", await fixture.Database.ScalarAsync<string>(
            $"SELECT jsonb_array_length(details::jsonb -> 'offlineEventsWithdrawn') || ' ' || (details::jsonb -> 'offlineEventsWithdrawn' -> 0 ->> 'recipient') FROM audit_events WHERE action = '{ExchangeGateway.Audit.AuditActions.CvPublished}' ORDER BY sequence DESC LIMIT 1"));
        Assert.Equal(id, await Propagation.ReadAsync(Gateway, await fixture.Actors.TokenAsync(heldSite), marker));
    }

    [Fact]
    public async Task ManySmallBatchesTakeEveryStaleCvOfflineOnceWithOneObligationPerHolder()
    {
        var operatorToken = (await fixture.Actors.NewOperatorAsync()).Tokens.AccessToken;
        var holder = await Sites.RegisterAsync(Gateway, operatorToken);
        var bystander = await Sites.RegisterAsync(Gateway, operatorToken);
        var holderToken = await fixture.Actors.TokenAsync(holder);
        var marker = "sweep-" + Guid.NewGuid().ToString("N");
        var seekers = new List<Person>();
        for (var i = 0; i < 7; i++)
        {
            var seeker = await Propagation.SeekerWithCvAsync(Gateway, fixture.Actors, $"{marker}-{i}");
            await Sharing.TickAsync(Gateway, seeker.Tokens.AccessToken, holder.Id);
            await Sharing.TickAsync(Gateway, seeker.Tokens.AccessToken, bystander.Id);
            await Propagation.ReadAsync(Gateway, holderToken, $"{marker}-{i}");
            seekers.Add(seeker);
        }

        var ids = string.Join(", ", seekers.Select(s => $"'{s.Id}'"));
        var (_, resumeBefore) = await Sharing.ReadFeedAsync(Gateway, holderToken);

        fixture.Time.Advance(TimeSpan.FromDays(91));
        await using (var scope = Gateway.Services.CreateAsyncScope())
        {
            // Batches of two over two workers: four batches for these seven CVs (and whatever else the shared clock made stale).
            var job = ActivatorUtilities.CreateInstance<FreshnessSweepJob>(
                scope.ServiceProvider, Options.Create(new FreshnessOptions { SweepBatchSize = 2 }));
            Assert.True(await job.RunAsync(CancellationToken.None) >= 7);
        }

        var db = fixture.Database;
        Assert.Equal(7L, await db.ScalarAsync<long>($"SELECT count(*) FROM cvs WHERE seeker_id IN ({ids}) AND state = 'Offline'"));
        Assert.Equal(7L, await db.ScalarAsync<long>(
            $"SELECT count(*) FROM erasure_obligations WHERE recipient_id = '{holder.Id}' AND cause = 'cv-offline'"));
        Assert.Equal(7L, await db.ScalarAsync<long>(
            $"SELECT count(DISTINCT consent_id) FROM erasure_obligations WHERE recipient_id = '{holder.Id}' AND cause = 'cv-offline'"));
        Assert.Equal(0L, await db.ScalarAsync<long>($"SELECT count(*) FROM erasure_obligations WHERE recipient_id = '{bystander.Id}'"));
        // The sweep makes its event ids itself (its rows go in by COPY): random version-4 UUIDs, as PostgreSQL's, since a jti
        // is the key of a page anyone may read; each is named in the seeker's audit row.
        var jtis = await db.ScalarAsync<string>(
            $"SELECT string_agg(jti::text, ' ' ORDER BY jti) FROM erasure_obligations WHERE recipient_id = '{holder.Id}' AND cause = 'cv-offline'");
        var parsed = jtis.Split(' ').Select(Guid.Parse).ToList();
        Assert.Equal(7, parsed.Distinct().Count());
        Assert.All(parsed, jti => Assert.Equal(4, jti.Version));
        Assert.All(parsed, jti => Assert.Equal(0b10, jti.Variant >> 2));
        Assert.Equal(7L, await db.ScalarAsync<long>(
            $"""
            SELECT count(*) FROM erasure_obligations o
            WHERE o.recipient_id = '{holder.Id}' AND o.cause = 'cv-offline' AND EXISTS (
                SELECT 1 FROM audit_events e
                WHERE e.action = '{AuditActions.CvWentOffline}' AND e.details::jsonb -> 'erasureEvents' @> jsonb_build_array(jsonb_build_object('jti', o.jti::text)))
            """));

        // The holder's feed moved: from where it stood, seven withdrawals with the cause.
        holderToken = await fixture.Actors.TokenAsync(holder);
        var (items, _) = await Sharing.ReadFeedAsync(Gateway, holderToken, resumeBefore);
        var withdrawals = items.Where(i => i.GetProperty("kind").GetString() == "withdrawal").ToList();
        Assert.Equal(7, withdrawals.Count);
        Assert.All(withdrawals, w => Assert.Equal("cv-offline", w.GetProperty("cause").GetString()));

        var pseudonyms = Gateway.Services.GetRequiredService<Pseudonyms>();
        var subjects = string.Join(", ", seekers.Select(s => $"'{pseudonyms.Of(s.Id)}'"));
        Assert.Equal(7L, await db.ScalarAsync<long>(
            $"SELECT count(*) FROM audit_events WHERE action = '{AuditActions.CvWentOffline}' AND subject IN ({subjects})"));
    }

    /// <summary>
    /// A copy handed out while a batch is under way (by a node whose clock still saw the CV fresh) is chased too: the batch
    /// writes its obligations outside the chain lock, and catches up under the lock with what the ledger gained meanwhile.
    /// The test holds the chain lock, lets the sweep write its obligations and queue for the lock, commits a disclosure
    /// as that node would (ledger row under the lock), then lets the sweep finish.
    /// </summary>
    [Fact]
    public async Task ADisclosureCommittedWhileTheBatchIsUnderWayGetsItsObligationAndItsWithdrawal()
    {
        var operatorToken = (await fixture.Actors.NewOperatorAsync()).Tokens.AccessToken;
        var site = await Sites.RegisterAsync(Gateway, operatorToken);
        var marker = "late-" + Guid.NewGuid().ToString("N");
        var seeker = await Propagation.SeekerWithCvAsync(Gateway, fixture.Actors, marker);
        var consent = (await Sharing.TickAsync(Gateway, seeker.Tokens.AccessToken, site.Id)).GetProperty("id").GetGuid();
        var second = await Sites.RegisterAsync(Gateway, operatorToken);
        var opened = Guid.NewGuid();
        // The site has read nothing: as far as the sweep's first statement can see, it holds no copy.
        var position = await fixture.Database.ScalarAsync<long>($"SELECT position FROM feed_entries WHERE consent_id = '{consent}'");

        fixture.Time.Advance(TimeSpan.FromDays(91));
        Task<int> sweep;
        long openedAt;
        await using (var lagging = await HeldTransaction.BeginAsync(fixture.Database))
        {
            await lagging.ExecuteAsync($"SELECT pg_advisory_xact_lock({Locks.Chain})");
            sweep = Gateway.RunFreshnessSweepAsync();
            await WaitForSweepAtTheChainLockAsync();
            // Meanwhile, on that node: an episode with a second site opens (after the batch looked up the holders) and
            // both episodes receive the CV.
            Assert.Equal(1, await lagging.ExecuteAsync($"""
                INSERT INTO consents
                SELECT * FROM jsonb_populate_record(NULL::consents, (SELECT to_jsonb(c) FROM consents c WHERE c.id = '{consent}')
                    || jsonb_build_object('id', '{opened}', 'recipient_id', '{second.Id}', 'pairwise_id', 'late-{opened:N}'))
                """));
            Assert.Equal(1, await lagging.ExecuteAsync(
                $"INSERT INTO feed_entries (consent_id, recipient_id, position) VALUES ('{opened}', '{second.Id}', nextval('feed_positions'))"));
            openedAt = await lagging.ScalarAsync<long>($"SELECT position FROM feed_entries WHERE consent_id = '{opened}'");
            Assert.Equal(2, await lagging.ExecuteAsync($"""
                INSERT INTO disclosures (consent_id, recipient_id, seeker_id, cv_version, content_hash, disclosed_at)
                SELECT c.id, c.recipient_id, c.seeker_id, v.version, v.content_hash, now()
                FROM consents c JOIN cvs v ON v.seeker_id = c.seeker_id WHERE c.id IN ('{consent}', '{opened}')
                """));
            await lagging.CommitAsync();
        }

        Assert.True(await sweep >= 1);
        foreach (var (episode, before) in new[] { (consent, position), (opened, openedAt) })
        {
            Assert.Equal("cv-offline", await fixture.Database.ScalarAsync<string>(
                $"SELECT string_agg(cause, ',') FROM erasure_obligations WHERE consent_id = '{episode}'"));
            Assert.True(await fixture.Database.ScalarAsync<long>($"SELECT position FROM feed_entries WHERE consent_id = '{episode}'") > before);
        }

        var (items, _) = await Sharing.ReadFeedAsync(Gateway, await fixture.Actors.TokenAsync(site));
        var withdrawal = Assert.Single(items);
        Assert.Equal(("withdrawal", "cv-offline"), (withdrawal.GetProperty("kind").GetString(), withdrawal.GetProperty("cause").GetString()));
    }

    /// <summary>
    /// Until every session that has taken CVs offline in its open transaction (the sweep's workers with a batch) waits for
    /// the chain lock, that is, has written its obligations as far as its snapshot showed.
    /// </summary>
    private async Task WaitForSweepAtTheChainLockAsync()
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!await fixture.Database.ScalarAsync<bool>("""
            SELECT coalesce(bool_and(EXISTS (SELECT 1 FROM pg_locks w WHERE w.pid = c.pid AND w.locktype = 'advisory' AND NOT w.granted)), false)
            FROM pg_locks c WHERE c.relation = 'cvs'::regclass AND c.mode = 'RowExclusiveLock' AND c.granted
            """))
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), "the sweep never reached the chain lock");
            await Task.Delay(20);
        }
    }
}
