using System.Net;
using System.Text.Json;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.Extensions.Time.Testing;

namespace ExchangeGateway.Tests.Exchange;

/// <summary>
/// Promise 1 at its edges, decided by the read itself (no job runs here): a CV is served up to the minute before it reaches
/// <c>Freshness:MaxAge</c> (90 days) and refused from the instant it does; a consent is served up to the minute before its
/// <c>expiresAt</c> (<c>Consent:MaxAge</c>, a year after the tick) and refused after it. Each test moves the clock by months,
/// so each has a gateway and a database of its own (the shared fixture's clock is everyone's).
/// </summary>
public sealed class FreshnessAndExpiryBoundaryTests
{
    private static readonly TimeSpan FreshnessMaxAge = TimeSpan.FromDays(90);
    private static readonly TimeSpan ConsentMaxAge = TimeSpan.FromDays(365);

    [Fact]
    public async Task ACvIsServedUntilAMinuteBeforeItsMaxAgeAndRefusedFromTheInstantItReachesIt()
    {
        await using var database = await TestDatabase.CreateAsync();
        await using var gateway = new GatewayFactory(database, new FakeTimeProvider(DateTimeOffset.UtcNow));
        var episode = await SharedEpisodeAsync(gateway, database, "fresh-edge");
        var refreshedAt = await TimestampAsync(database, $"SELECT refreshed_at FROM cvs WHERE seeker_id = '{episode.Seeker.Id}'");

        MoveTo(gateway.Time, refreshedAt + FreshnessMaxAge - TimeSpan.FromMinutes(1));
        await AssertServedAsync(gateway, episode, expectedRecords: 1);

        // Exactly MaxAge after the refresh: the sweep would take it now (refreshed_at <= now - MaxAge), so it is not served.
        MoveTo(gateway.Time, refreshedAt + FreshnessMaxAge);
        await AssertRefusedAsync(gateway, episode, expectedRecords: 1, "cv-offline");

        MoveTo(gateway.Time, refreshedAt + FreshnessMaxAge + TimeSpan.FromMinutes(1));
        await AssertRefusedAsync(gateway, episode, expectedRecords: 1, "cv-offline");
        // Refused by the read's own check: the CV is still Published, no sweep has run.
        Assert.Equal("Published", await database.ScalarAsync<string>($"SELECT state FROM cvs WHERE seeker_id = '{episode.Seeker.Id}'"));
    }

    [Fact]
    public async Task AConsentIsServedUntilAMinuteBeforeItExpiresAndRefusedAfter()
    {
        await using var database = await TestDatabase.CreateAsync();
        await using var gateway = new GatewayFactory(database, new FakeTimeProvider(DateTimeOffset.UtcNow));
        var episode = await SharedEpisodeAsync(gateway, database, "consent-edge");
        var grantedAt = episode.Tick.GetProperty("grantedAt").GetDateTimeOffset();
        var expiresAt = episode.Tick.GetProperty("expiresAt").GetDateTimeOffset();
        // The default lifetime, as the tick answered it and as the table holds it.
        Assert.Equal(ConsentMaxAge, expiresAt - grantedAt);
        Assert.Equal(expiresAt, await TimestampAsync(database, $"SELECT expires_at FROM consents WHERE id = '{episode.ConsentId}'"));

        // The CV must still be fresh at the consent's end: "still looking" the day before.
        MoveTo(gateway.Time, expiresAt - TimeSpan.FromDays(1));
        using (var me = gateway.CreateHttpClient().WithToken(await episode.Actors.FreshTokenAsync(episode.Seeker)))
        using (var refresh = await me.PostAsync("/api/v1/me/cv/refresh", null))
        {
            Assert.Equal(HttpStatusCode.OK, refresh.StatusCode);
        }

        MoveTo(gateway.Time, expiresAt - TimeSpan.FromMinutes(1));
        await AssertServedAsync(gateway, episode, expectedRecords: 1);

        MoveTo(gateway.Time, expiresAt + TimeSpan.FromMinutes(1));
        await AssertRefusedAsync(gateway, episode, expectedRecords: 1, "consent-expired");
        // Refused by the read's own check: the expiry job has not run, the row still says Active.
        Assert.Equal("Active", await database.ScalarAsync<string>($"SELECT state FROM consents WHERE id = '{episode.ConsentId}'"));
    }

    private sealed record Episode(TestDatabase Database, Actors Actors, TestSite Site, Person Seeker, JsonElement Tick, Guid ConsentId, string PairwiseId, string Marker);

    /// <summary>A new site, a seeker whose CV carries a marker, and a tick; nothing read yet (the ledger is empty).</summary>
    private static async Task<Episode> SharedEpisodeAsync(GatewayFactory gateway, TestDatabase database, string prefix)
    {
        var actors = new Actors(gateway);
        var site = await Sites.RegisterAsync(gateway, actors);
        var marker = prefix + "-" + Guid.NewGuid().ToString("N");
        var seeker = await Propagation.SeekerWithCvAsync(gateway, actors, marker);
        var tick = await Sharing.TickAsync(gateway, seeker.Tokens.AccessToken, site.Id);
        var consentId = tick.GetProperty("id").GetGuid();
        var pairwiseId = await database.ScalarAsync<string>($"SELECT pairwise_id FROM consents WHERE id = '{consentId}'");
        Assert.Equal(0L, await LedgerAsync(database, consentId));
        return new Episode(database, actors, site, seeker, tick, consentId, pairwiseId, marker);
    }

    /// <summary>200 with the document, and the episode's ledger rows and disclosure events now number <paramref name="expectedRecords"/>.</summary>
    private static async Task AssertServedAsync(GatewayFactory gateway, Episode episode, long expectedRecords)
    {
        using var client = gateway.CreateHttpClient().WithToken(await episode.Actors.TokenAsync(episode.Site));
        using var response = await client.GetAsync($"{Sites.FeedPath}/{episode.PairwiseId}");
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"expected 200, got {(int)response.StatusCode}: {text}");
        Assert.Contains(episode.Marker, text, StringComparison.Ordinal);
        Assert.Equal(expectedRecords, await LedgerAsync(episode));
        Assert.Equal(expectedRecords, await AuditedAsync(episode));
    }

    /// <summary>404 (as for an id that never existed), a withdrawal with its cause in the feed, and nothing more recorded.</summary>
    private static async Task AssertRefusedAsync(GatewayFactory gateway, Episode episode, long expectedRecords, string cause)
    {
        var token = await episode.Actors.TokenAsync(episode.Site);
        using var client = gateway.CreateHttpClient().WithToken(token);
        using (var response = await client.GetAsync($"{Sites.FeedPath}/{episode.PairwiseId}"))
        {
            var problem = await response.AssertProblemAsync(HttpStatusCode.NotFound);
            Assert.DoesNotContain(episode.Marker, await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
            using var unknown = await client.GetAsync($"{Sites.FeedPath}/cv_neverexisted");
            Assert.Equal(
                (await unknown.AssertProblemAsync(HttpStatusCode.NotFound)).GetProperty("detail").GetString(),
                problem.GetProperty("detail").GetString());
        }

        using (var feed = await client.GetAsync(Sites.FeedPath))
        {
            var text = await feed.Content.ReadAsStringAsync();
            Assert.True(feed.StatusCode == HttpStatusCode.OK, $"feed: {(int)feed.StatusCode} {text}");
            Assert.DoesNotContain(episode.Marker, text, StringComparison.Ordinal);
            var withdrawal = Assert.Single(
                JsonDocument.Parse(text).RootElement.GetProperty("items").EnumerateArray(),
                i => i.GetProperty("id").GetString() == episode.PairwiseId);
            Assert.Equal(("withdrawal", cause), (withdrawal.GetProperty("kind").GetString(), withdrawal.GetProperty("cause").GetString()));
            Assert.Equal(JsonValueKind.Null, withdrawal.GetProperty("document").ValueKind);
        }

        Assert.Equal(expectedRecords, await LedgerAsync(episode));
        Assert.Equal(expectedRecords, await AuditedAsync(episode));
    }

    private static Task<long> LedgerAsync(Episode episode) => LedgerAsync(episode.Database, episode.ConsentId);

    private static Task<long> LedgerAsync(TestDatabase database, Guid consentId) =>
        database.ScalarAsync<long>($"SELECT count(*) FROM disclosures WHERE consent_id = '{consentId}'");

    private static Task<long> AuditedAsync(Episode episode) =>
        episode.Database.ScalarAsync<long>($"SELECT count(*) FROM audit_events WHERE action = 'cv.disclosed' AND recipient = '{episode.Site.ClientId}'");

    private static async Task<DateTimeOffset> TimestampAsync(TestDatabase database, string sql) =>
        new(DateTime.SpecifyKind(await database.ScalarAsync<DateTime>(sql), DateTimeKind.Utc));

    /// <summary>The fake clock forward to exactly <paramref name="instant"/> (it never goes back).</summary>
    private static void MoveTo(FakeTimeProvider time, DateTimeOffset instant)
    {
        Assert.True(instant >= time.GetUtcNow(), $"the clock would go back from {time.GetUtcNow():O} to {instant:O}");
        time.Advance(instant - time.GetUtcNow());
        Assert.Equal(instant, time.GetUtcNow());
    }
}
