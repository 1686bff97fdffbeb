using System.Net;
using System.Net.Http.Json;
using ExchangeGateway.Tests.Infrastructure;

namespace ExchangeGateway.Tests.Events;

/// <summary>A consent lapses after Consent:MaxAge (a year): the site that holds a copy is told, and a new tick is a new episode.</summary>
[Collection(GatewayCollection.Name)]
public sealed class ConsentExpiryTests(GatewayFixture fixture)
{
    private GatewayFactory Gateway => fixture.Factory;

    [Fact]
    public async Task AfterAYearTheConsentExpiresTheSiteIsToldAndTickingAgainGivesANewPairwiseId()
    {
        await using var receiver = await PushReceiver.StartAsync();
        var site = await Sites.RegisterAsync(Gateway, fixture.Actors, SiteOptions.Push(receiver.Endpoint));
        var marker = "expiry-" + Guid.NewGuid().ToString("N");
        var seeker = await Propagation.SeekerWithCvAsync(Gateway, fixture.Actors, marker);
        var first = await Sharing.TickAsync(Gateway, seeker.Tokens.AccessToken, site.Id);
        var oldId = await Propagation.ReadAsync(Gateway, await fixture.Actors.TokenAsync(site), marker);

        fixture.Time.Advance(TimeSpan.FromDays(366));
        var seekerToken = await fixture.Actors.FreshTokenAsync(seeker);
        using var me = Gateway.CreateHttpClient().WithToken(seekerToken);
        // Still looking: the CV itself stays online, only the consent lapses.
        Assert.Equal(HttpStatusCode.OK, (await me.PostAsync("/api/v1/me/cv/refresh", null)).StatusCode);
        // Lapsed is expired to the seeker at once, before the expiry job has come round.
        var lapsed = (await (await me.GetAsync("/api/v1/me/consents")).ReadJsonAsync()).GetProperty("items").EnumerateArray()
            .Single(c => c.GetProperty("recipientId").GetGuid() == site.Id);
        Assert.Equal("expired", lapsed.GetProperty("state").GetString());
        Assert.True(!lapsed.TryGetProperty("expiresAt", out var until) || until.ValueKind == System.Text.Json.JsonValueKind.Null);
        Assert.True(await Gateway.RunConsentExpiryAsync() >= 1);

        var consents = (await (await me.GetAsync("/api/v1/me/consents")).ReadJsonAsync()).GetProperty("items").EnumerateArray();
        Assert.Equal("expired", consents.Single(c => c.GetProperty("recipientId").GetGuid() == site.Id).GetProperty("state").GetString());
        var history = (await (await me.GetAsync($"/api/v1/me/consents/{site.Id}/history")).ReadJsonAsync()).GetProperty("items").EnumerateArray()
            .Select(e => e.GetProperty("kind").GetString()).ToList();
        Assert.Equal(["granted", "expired"], history);

        await Gateway.RunDispatchAsync();
        var set = SecurityEventTokens.VerifyPush(Assert.Single(receiver.Received), await SecurityEventTokens.FetchKeysAsync(Gateway), Gateway.Issuer, site.ClientId);
        Assert.Equal(("erasure-required", "consent-expired", oldId), (set.Kind, set.Cause, set.SubjectId));
        Assert.Equal("consent-expired", Assert.Single(await Propagation.MyErasuresAsync(Gateway, seekerToken)).GetProperty("cause").GetString());

        // Ticking again: a new episode, which the site cannot link to the old one.
        var second = await Sharing.TickAsync(Gateway, seekerToken, site.Id);
        Assert.NotEqual(first.GetProperty("id").GetString(), second.GetProperty("id").GetString());
        var (items, _) = await Sharing.ReadFeedAsync(Gateway, await fixture.Actors.TokenAsync(site));
        var newId = Sharing.PairwiseIdOf(items, marker);
        Assert.NotNull(newId);
        Assert.NotEqual(oldId, newId);
        var withdrawal = Assert.Single(items, i => i.GetProperty("id").GetString() == oldId);
        Assert.Equal(("withdrawal", "consent-expired"), (withdrawal.GetProperty("kind").GetString(), withdrawal.GetProperty("cause").GetString()));
    }

    /// <summary>
    /// A tick on a lapsed episode that the expiry job is ending at this very moment: the episode ends once (one receipt, one
    /// obligation, the job's), and the new episode's receipt comes after the old one's end in the history.
    /// </summary>
    [Fact]
    public async Task ATickRacingTheExpiryJobEndsTheLapsedEpisodeOnce()
    {
        var (site, seeker, lapsed) = await DisclosedEpisodeAsync("expiry-race");
        var episode = $"SELECT id FROM consents WHERE seeker_id = '{seeker.Id}' AND recipient_id = '{site.Id}' AND state = 'Active'";

        fixture.Time.Advance(TimeSpan.FromDays(366));
        var seekerToken = await fixture.Actors.FreshTokenAsync(seeker);
        Task<System.Text.Json.JsonElement> tick;
        await using (var job = await HeldTransaction.BeginAsync(fixture.Database))
        {
            // The job's batch holds the episode (its FOR NO KEY UPDATE SKIP LOCKED) while the tick arrives.
            await job.ExecuteAsync($"SELECT 1 FROM consents WHERE id = '{lapsed}' FOR NO KEY UPDATE");
            tick = Sharing.TickAsync(Gateway, seekerToken, site.Id);
            await HeldTransaction.WaitForWaiterAsync(fixture.Database, "transactionid", "tuple");
            await job.ExecuteAsync($"UPDATE consents SET state = 'Expired', end_cause = 'consent-expired', ended_at = expires_at WHERE id = '{lapsed}'");
            await job.ExecuteAsync($"""
                INSERT INTO erasure_obligations (jti, recipient_id, consent_id, pairwise_id, kind, cause, created_at, confirm_before, status, overdue, attempts, next_attempt_at)
                SELECT gen_random_uuid(), recipient_id, id, pairwise_id, 'erasure-required', 'consent-expired', now(), now(), 'Pending', false, 0, now()
                FROM consents WHERE id = '{lapsed}'
                """);
            await job.CommitAsync();
        }

        await tick.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.NotEqual(lapsed, await fixture.Database.ScalarAsync<Guid>(episode));
        Assert.Equal(1L, await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM erasure_obligations WHERE consent_id = '{lapsed}'"));
        Assert.Equal(0L, await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM consent_events WHERE consent_id = '{lapsed}' AND kind = 'Expired'"));
    }

    [Fact]
    public async Task TickingALapsedEpisodeDatesItsEndWhenItLapsedBeforeTheNewEpisode()
    {
        var site = await Sites.RegisterAsync(Gateway, fixture.Actors, new SiteOptions());
        var seeker = await Propagation.SeekerWithCvAsync(Gateway, fixture.Actors, "expiry-order-" + Guid.NewGuid().ToString("N"));
        await Sharing.TickAsync(Gateway, seeker.Tokens.AccessToken, site.Id);
        fixture.Time.Advance(TimeSpan.FromDays(366));
        var seekerToken = await fixture.Actors.FreshTokenAsync(seeker);
        await Sharing.TickAsync(Gateway, seekerToken, site.Id);

        using var me = Gateway.CreateHttpClient().WithToken(seekerToken);
        var history = (await (await me.GetAsync($"/api/v1/me/consents/{site.Id}/history")).ReadJsonAsync()).GetProperty("items").EnumerateArray()
            .Select(e => (Kind: e.GetProperty("kind").GetString(), At: e.GetProperty("at").GetDateTimeOffset())).ToList();
        Assert.Equal(["granted", "expired", "granted"], history.Select(e => e.Kind));
        Assert.Equal(history[0].At + TimeSpan.FromDays(365), history[1].At);
        Assert.True(history[1].At < history[2].At);
    }

    /// <summary>An untick of an episode that lapsed before the expiry job came round: nothing to revoke; it ends as expired.</summary>
    [Fact]
    public async Task UntickingALapsedEpisodeEndsItAsExpiredNotRevoked()
    {
        var (site, seeker, episode) = await DisclosedEpisodeAsync("untick-lapsed");

        fixture.Time.Advance(TimeSpan.FromDays(366));
        using (var untick = await Sharing.UntickAsync(Gateway, await fixture.Actors.FreshTokenAsync(seeker), site.Id))
        {
            Assert.Equal(HttpStatusCode.NoContent, untick.StatusCode);
        }

        Assert.Equal("Expired", await fixture.Database.ScalarAsync<string>($"SELECT state FROM consents WHERE id = '{episode}'"));
        Assert.Equal(0L, await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM consent_events WHERE consent_id = '{episode}' AND kind = 'Revoked'"));
        Assert.Equal("consent-expired", await fixture.Database.ScalarAsync<string>($"SELECT cause FROM erasure_obligations WHERE consent_id = '{episode}'"));

        // An empty cursor is the first page, as on every other list.
        using var me = Gateway.CreateHttpClient().WithToken(await fixture.Actors.FreshTokenAsync(seeker));
        var erasures = (await (await me.GetAsync("/api/v1/me/erasures?cursor=")).ReadJsonAsync()).GetProperty("items");
        Assert.Equal("consent-expired", Assert.Single(erasures.EnumerateArray()).GetProperty("cause").GetString());
    }

    /// <summary>An erasure of the CV finding an episode that had lapsed ends it as what it was: expired, when it lapsed.</summary>
    [Fact]
    public async Task ErasingTheCvEndsALapsedEpisodeAsExpired()
    {
        var (_, seeker, episode) = await DisclosedEpisodeAsync("erase-lapsed");
        fixture.Time.Advance(TimeSpan.FromDays(366));
        using (var me = Gateway.CreateHttpClient().WithToken(await fixture.Actors.FreshTokenAsync(seeker)))
        {
            Assert.Equal(HttpStatusCode.NoContent, (await me.DeleteAsync("/api/v1/me/cv")).StatusCode);
        }

        Assert.Equal(("Expired", "consent-expired"), (await fixture.Database.ScalarAsync<string>($"SELECT state FROM consents WHERE id = '{episode}'"),
            await fixture.Database.ScalarAsync<string>($"SELECT end_cause FROM consents WHERE id = '{episode}'")));
        Assert.Equal("consent-expired", await fixture.Database.ScalarAsync<string>($"SELECT cause FROM erasure_obligations WHERE consent_id = '{episode}'"));
        Assert.True(await fixture.Database.ScalarAsync<bool>($"SELECT ended_at = expires_at FROM consents WHERE id = '{episode}'"));
    }

    /// <summary>Erasing the whole account ends a lapsed episode the same way: expired, when it lapsed, and chased as such.</summary>
    [Fact]
    public async Task ErasingTheAccountEndsALapsedEpisodeAsExpired()
    {
        var (_, seeker, episode) = await DisclosedEpisodeAsync("forget-lapsed");
        fixture.Time.Advance(TimeSpan.FromDays(366));
        using (var me = Gateway.CreateHttpClient().WithToken(await fixture.Actors.FreshTokenAsync(seeker)))
        {
            Assert.True((await me.DeleteAsync("/api/v1/me")).IsSuccessStatusCode);
        }

        Assert.Equal("Expired", await fixture.Database.ScalarAsync<string>($"SELECT state FROM consents WHERE id = '{episode}'"));
        Assert.Equal("consent-expired", await fixture.Database.ScalarAsync<string>($"SELECT cause FROM erasure_obligations WHERE consent_id = '{episode}'"));
        Assert.True(await fixture.Database.ScalarAsync<bool>($"SELECT ended_at = expires_at FROM consents WHERE id = '{episode}'"));
    }

    /// <summary>
    /// A site suspended while one of its episodes had lapsed unnoticed: that one ends as expired, when it lapsed, and is
    /// chased as such; only the episodes still running end because of the suspension.
    /// </summary>
    [Fact]
    public async Task SuspendingASiteEndsALapsedEpisodeAsExpiredAndTheOthersAsSuspended()
    {
        var (site, _, lapsed) = await DisclosedEpisodeAsync("suspend-lapsed");
        fixture.Time.Advance(TimeSpan.FromDays(366));
        var marker = "suspend-running-" + Guid.NewGuid().ToString("N");
        var seeker = await Propagation.SeekerWithCvAsync(Gateway, fixture.Actors, marker);
        await Sharing.TickAsync(Gateway, seeker.Tokens.AccessToken, site.Id);
        await Propagation.ReadAsync(Gateway, await fixture.Actors.TokenAsync(site), marker);
        var running = await fixture.Database.ScalarAsync<Guid>($"SELECT id FROM consents WHERE seeker_id = '{seeker.Id}' AND recipient_id = '{site.Id}'");

        var @operator = await fixture.Actors.NewOperatorAsync();
        using (var admin = fixture.Client().WithToken(@operator.Tokens.AccessToken))
        using (var suspended = await admin.PostAsJsonAsync($"{Sites.AdminPath}/{site.Id}/suspend", new { reason = "Audit of its deletion practice" }))
        {
            Assert.Equal(HttpStatusCode.OK, suspended.StatusCode);
        }

        Assert.Equal(("Expired", "consent-expired", true), (
            await fixture.Database.ScalarAsync<string>($"SELECT state FROM consents WHERE id = '{lapsed}'"),
            await fixture.Database.ScalarAsync<string>($"SELECT end_cause FROM consents WHERE id = '{lapsed}'"),
            await fixture.Database.ScalarAsync<bool>($"SELECT ended_at = expires_at FROM consents WHERE id = '{lapsed}'")));
        Assert.True(await fixture.Database.ScalarAsync<bool>(
            $"SELECT e.kind = 'Expired' AND e.at = c.expires_at FROM consent_events e JOIN consents c ON c.id = e.consent_id WHERE e.consent_id = '{lapsed}' AND e.kind <> 'Granted'"));
        Assert.Equal("consent-expired", await fixture.Database.ScalarAsync<string>($"SELECT cause FROM erasure_obligations WHERE consent_id = '{lapsed}'"));

        Assert.Equal(("Ended", "recipient-suspended"), (
            await fixture.Database.ScalarAsync<string>($"SELECT state FROM consents WHERE id = '{running}'"),
            await fixture.Database.ScalarAsync<string>($"SELECT end_cause FROM consents WHERE id = '{running}'")));
        Assert.Equal("recipient-suspended", await fixture.Database.ScalarAsync<string>($"SELECT cause FROM erasure_obligations WHERE consent_id = '{running}'"));
    }

    /// <summary>
    /// An untick is dated under the chain lock, and judged by that date: one that waited for the lock across the lapse
    /// ends the episode as expired when it lapsed, not as revoked after it.
    /// </summary>
    [Fact]
    public async Task AnUntickThatWaitedAcrossTheLapseEndsTheEpisodeAsExpired()
    {
        var (site, seeker, episode) = await DisclosedEpisodeAsync("untick-lapse");
        var expiresAt = await fixture.Database.ScalarAsync<DateTime>($"SELECT expires_at FROM consents WHERE id = '{episode}'");
        fixture.Time.Advance(new DateTimeOffset(expiresAt, TimeSpan.Zero) - fixture.Time.GetUtcNow() - TimeSpan.FromSeconds(1));
        var token = await fixture.Actors.FreshTokenAsync(seeker);

        await using (var holder = await HeldTransaction.BeginAsync(fixture.Database))
        {
            await holder.ExecuteAsync($"SELECT pg_advisory_xact_lock({ExchangeGateway.Data.Locks.Chain})");
            var untick = Sharing.UntickAsync(Gateway, token, site.Id);
            await HeldTransaction.WaitForWaiterAsync(fixture.Database, "advisory");
            fixture.Time.Advance(TimeSpan.FromSeconds(2));
            await holder.CommitAsync();
            (await untick).Dispose();
        }

        Assert.Equal(("Expired", "consent-expired"), (await fixture.Database.ScalarAsync<string>($"SELECT state FROM consents WHERE id = '{episode}'"),
            await fixture.Database.ScalarAsync<string>($"SELECT end_cause FROM consents WHERE id = '{episode}'")));
        Assert.True(await fixture.Database.ScalarAsync<bool>($"SELECT ended_at = expires_at FROM consents WHERE id = '{episode}'"));
        Assert.Equal(0L, await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM consent_events WHERE consent_id = '{episode}' AND kind = 'Revoked'"));
    }

    /// <summary>
    /// A tick that waited for an untick of the same site (the seeker lock) is dated after it: the new episode never starts
    /// before the last one ended, and the history reads in order.
    /// </summary>
    [Fact]
    public async Task ATickThatWaitedForAnUntickStartsAfterItEnded()
    {
        var (site, seeker, episode) = await DisclosedEpisodeAsync("tick-after-untick");
        var token = await fixture.Actors.FreshTokenAsync(seeker);
        Task<HttpResponseMessage> untick;
        Task<System.Text.Json.JsonElement> tick;
        await using (var holder = await HeldTransaction.BeginAsync(fixture.Database))
        {
            await holder.ExecuteAsync($"SELECT pg_advisory_xact_lock({ExchangeGateway.Data.Locks.Chain})");
            untick = Sharing.UntickAsync(Gateway, token, site.Id);
            await HeldTransaction.WaitForWaiterAsync(fixture.Database, "advisory");
            tick = Sharing.TickAsync(Gateway, token, site.Id);
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (await fixture.Database.ScalarAsync<long>(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND pid IN (SELECT pid FROM pg_stat_activity WHERE datname = current_database())") < 2)
            {
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), "the tick never waited for the untick");
                await Task.Delay(20);
            }

            fixture.Time.Advance(TimeSpan.FromSeconds(5));
            await holder.CommitAsync();
            (await untick).Dispose();
        }

        var fresh = (await tick).GetProperty("id").GetGuid();
        Assert.NotEqual(episode, fresh);
        Assert.True(await fixture.Database.ScalarAsync<bool>(
            $"SELECT (SELECT granted_at FROM consents WHERE id = '{fresh}') >= (SELECT ended_at FROM consents WHERE id = '{episode}')"));
    }

    /// <summary>A new poll site that has read a new seeker's CV: the episode, with a copy to chase once it ends.</summary>
    private async Task<(TestSite Site, Person Seeker, Guid Episode)> DisclosedEpisodeAsync(string prefix)
    {
        var site = await Sites.RegisterAsync(Gateway, fixture.Actors, new SiteOptions());
        var marker = prefix + "-" + Guid.NewGuid().ToString("N");
        var seeker = await Propagation.SeekerWithCvAsync(Gateway, fixture.Actors, marker);
        await Sharing.TickAsync(Gateway, seeker.Tokens.AccessToken, site.Id);
        await Propagation.ReadAsync(Gateway, await fixture.Actors.TokenAsync(site), marker);
        return (site, seeker, await fixture.Database.ScalarAsync<Guid>($"SELECT id FROM consents WHERE seeker_id = '{seeker.Id}' AND recipient_id = '{site.Id}'"));
    }
}
