using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace ExchangeGateway.Tests.Events;

/// <summary>RFC 8936 poll delivery, and the confirmation that closes an obligation.</summary>
[Collection(GatewayCollection.Name)]
public sealed class PollDeliveryTests(GatewayFixture fixture)
{
    private const string Poll = "/api/v1/events/poll";

    private GatewayFactory Gateway => fixture.Factory;

    [Fact]
    public async Task AnUnackedSetIsOfferedAgainAnAckedOneIsDeliveredAndConfirmingClosesIt()
    {
        var (pollSite, seeker, siteToken, id) = await ReadThenUntickedAsync("poll");

        using var site = Gateway.CreateHttpClient().WithToken(siteToken);
        var first = await FindAsync(site, pollSite, id);
        Assert.Equal(("erasure-required", "consent-revoked"), (first.Kind, first.Cause));
        Assert.Equal(first.Jti, (await FindAsync(site, pollSite, id)).Jti);

        var acked = await PollAsync(site, new { ack = new[] { first.Jti }, returnImmediately = true, maxEvents = 100 });
        Assert.False(acked.GetProperty("sets").TryGetProperty(first.Jti, out _));
        Assert.Equal("delivered", (await ErasureAsync(seeker, first.Jti)).GetProperty("status").GetString());
        Assert.Equal([$"recipient|{pollSite.ClientId}|{pollSite.ClientId}|poll|1"], await Propagation.DeliveryAuditAsync(fixture.Database, first.Jti));

        using var confirm = await site.PostAsync($"/api/v1/erasures/{first.Jti}/confirmation", null);
        Assert.Equal(HttpStatusCode.OK, confirm.StatusCode);
        var confirmation = await confirm.ReadJsonAsync();
        Assert.Equal(("confirmed", first.Jti), (confirmation.GetProperty("status").GetString(), confirmation.GetProperty("id").GetString()));
        Assert.Equal(first.Jti, confirmation.GetProperty("jti").GetString());
        var confirmedAt = confirmation.GetProperty("confirmedAt").GetDateTimeOffset();

        // Confirming twice is harmless and changes nothing.
        fixture.Time.Advance(TimeSpan.FromMinutes(1));
        using (var again = await site.PostAsync($"/api/v1/erasures/{first.Jti}/confirmation", null))
        {
            Assert.Equal(HttpStatusCode.OK, again.StatusCode);
            AssertSameInstant(confirmedAt, (await again.ReadJsonAsync()).GetProperty("confirmedAt").GetDateTimeOffset());
        }

        // Another site cannot even learn that the jti exists.
        using (var other = Gateway.CreateHttpClient().WithToken(await fixture.Actors.OtherSiteTokenAsync()))
        {
            await (await other.PostAsync($"/api/v1/erasures/{first.Jti}/confirmation", null)).AssertProblemAsync(HttpStatusCode.NotFound);
        }

        var status = await ErasureAsync(seeker, first.Jti);
        Assert.Equal("confirmed", status.GetProperty("status").GetString());
        AssertSameInstant(confirmedAt, status.GetProperty("confirmedAt").GetDateTimeOffset());
    }

    /// <summary>
    /// A site that acknowledged a SET and lost it before acting finds it again, with the jti to confirm it, in its list of
    /// open events, page by page; a confirmed one leaves the list; another site sees none of them, nor opens the list with
    /// this site's cursor.
    /// </summary>
    [Fact]
    public async Task ASiteFindsTheEventsItHasNotConfirmedEvenOnceAcknowledged()
    {
        var (pollSite, _, siteToken, id) = await ReadThenUntickedAsync("open");
        using var site = Gateway.CreateHttpClient().WithToken(siteToken);
        var set = await FindAsync(site, pollSite, id);

        async Task<List<JsonElement>> OpenAsync(HttpClient client)
        {
            var items = new List<JsonElement>();
            string? cursor = null;
            do
            {
                using var response = await client.GetAsync("/api/v1/erasures?limit=1" + (cursor is null ? "" : "&cursor=" + Uri.EscapeDataString(cursor)));
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                var page = await response.ReadJsonAsync();
                items.AddRange(page.GetProperty("items").EnumerateArray().Select(i => i.Clone()));
                cursor = page.GetProperty("nextCursor").GetString();
            }
            while (cursor is not null);
            return items;
        }

        // A second event for the same site, so that the list takes two pages of one.
        var marker = "open-second-" + Guid.NewGuid().ToString("N");
        var second = await Propagation.SeekerWithCvAsync(Gateway, fixture.Actors, marker);
        await Sharing.TickAsync(Gateway, second.Tokens.AccessToken, pollSite.Id);
        var secondId = await Propagation.ReadAsync(Gateway, siteToken, marker);
        using (var untick = await Sharing.UntickAsync(Gateway, second.Tokens.AccessToken, pollSite.Id))
        {
            Assert.Equal(HttpStatusCode.OK, untick.StatusCode);
        }

        var both = await OpenAsync(site);
        Assert.Equal([id, secondId], both.Select(e => e.GetProperty("cvId").GetString()));
        var pending = both[0];
        Assert.Equal(set.Jti, pending.GetProperty("jti").GetString());
        Assert.Equal(("erasure-required", "consent-revoked", id, "pending"),
            (pending.GetProperty("kind").GetString(), pending.GetProperty("cause").GetString(), pending.GetProperty("cvId").GetString(), pending.GetProperty("status").GetString()));
        Assert.False(pending.GetProperty("overdue").GetBoolean());

        // Acknowledged, hence never offered by a poll again: the list still has it, now delivered.
        await PollAsync(site, new { ack = new[] { set.Jti }, returnImmediately = true });
        Assert.False((await PollAsync(site, new { returnImmediately = true })).GetProperty("sets").TryGetProperty(set.Jti, out _));
        var delivered = (await OpenAsync(site))[0];
        Assert.Equal((set.Jti, "delivered"), (delivered.GetProperty("jti").GetString(), delivered.GetProperty("status").GetString()));
        Assert.Equal(JsonValueKind.String, delivered.GetProperty("deliveredAt").ValueKind);

        // Another site's list never shows them, and this site's cursor is refused to it.
        using var other = Gateway.CreateHttpClient().WithToken(await fixture.Actors.OtherSiteTokenAsync());
        Assert.DoesNotContain(await OpenAsync(other), e => e.GetProperty("cvId").GetString() is { } cv && (cv == id || cv == secondId));
        using (var first = await site.GetAsync("/api/v1/erasures?limit=1"))
        {
            var cursor = (await first.ReadJsonAsync()).GetProperty("nextCursor").GetString()!;
            await (await other.GetAsync("/api/v1/erasures?limit=1&cursor=" + Uri.EscapeDataString(cursor))).AssertProblemAsync(HttpStatusCode.BadRequest);
        }

        using (await site.PostAsync($"/api/v1/erasures/{set.Jti}/confirmation", null))
        {
        }

        Assert.Equal([secondId], (await OpenAsync(site)).Select(e => e.GetProperty("cvId").GetString()));
        await (await site.GetAsync("/api/v1/erasures?limit=0")).AssertProblemAsync(HttpStatusCode.BadRequest);
        await (await site.GetAsync("/api/v1/erasures?cursor=not-a-cursor")).AssertProblemAsync(HttpStatusCode.BadRequest);
    }

    [Fact]
    public async Task ASetReportedInSetErrsStaysPendingAndIsOfferedAgainAfterTheBackOff()
    {
        var (pollSite, seeker, siteToken, id) = await ReadThenUntickedAsync("seterr");

        using var site = Gateway.CreateHttpClient().WithToken(siteToken);
        var set = await FindAsync(site, pollSite, id);
        var reported = await PollAsync(site, new
        {
            setErrs = new Dictionary<string, object> { [set.Jti] = new { err = "invalid_key", description = "unknown signing key" } },
            returnImmediately = true,
            maxEvents = 100,
        });
        Assert.False(reported.GetProperty("sets").TryGetProperty(set.Jti, out _));
        Assert.Equal("set-error: invalid_key", await Propagation.ObligationAsync<string>(fixture.Database, set.Jti, "last_error"));
        Assert.Equal("pending", (await ErasureAsync(seeker, set.Jti)).GetProperty("status").GetString());

        // The back-off is the push schedule's (1 minute, then 5, ...), with the same ±20 % jitter.
        fixture.Time.Advance(TimeSpan.FromMinutes(1.2));
        Assert.Equal(set.Jti, (await FindAsync(site, pollSite, id)).Jti);
        var reportedAgain = fixture.Time.GetUtcNow();
        await PollAsync(site, new { setErrs = new Dictionary<string, object> { [set.Jti] = new { err = "invalid_key" } }, returnImmediately = true });
        Assert.Equal(2, await Propagation.ObligationAsync<int>(fixture.Database, set.Jti, "attempts"));
        var wait = new DateTimeOffset(await Propagation.ObligationAsync<DateTime>(fixture.Database, set.Jti, "next_attempt_at"), TimeSpan.Zero) - reportedAgain;
        Assert.InRange(wait, TimeSpan.FromMinutes(4), TimeSpan.FromMinutes(6));
        fixture.Time.Advance(TimeSpan.FromMinutes(6));
        Assert.Equal(set.Jti, (await FindAsync(site, pollSite, id)).Jti);
    }

    /// <summary>
    /// setErrs descriptions are receivers' diagnostics, often a multi-line exception message: they must not cost the acks
    /// sent with them. An odd err is recorded as printable ASCII, not refused (a receiver retrying the same body would
    /// otherwise never get through, its events pending and overdue).
    /// </summary>
    [Fact]
    public async Task AnOddSetErrorNeitherRefusesThePollNorCostsItsAcks()
    {
        var (ackingSite, _, ackingToken, ackedId) = await ReadThenUntickedAsync("ack-beside-odd-error");
        var (reportingSite, _, reportingToken, reportedId) = await ReadThenUntickedAsync("odd-error");
        using var acking = Gateway.CreateHttpClient().WithToken(ackingToken);
        using var reporting = Gateway.CreateHttpClient().WithToken(reportingToken);
        var acked = await FindAsync(acking, ackingSite, ackedId);
        var reported = await FindAsync(reporting, reportingSite, reportedId);
        var trace = string.Join("\n   at ", Enumerable.Repeat("Receiver.Verify(String token)", 40));

        await PollAsync(acking, new
        {
            ack = new[] { acked.Jti },
            setErrs = new Dictionary<string, object> { [Guid.NewGuid().ToString()] = new { err = "invalid_key", description = "Signature failed:\n" + trace } },
            returnImmediately = true,
        });
        Assert.Equal("Delivered", await Propagation.ObligationAsync<string>(fixture.Database, acked.Jti, "status"));

        await PollAsync(reporting, new
        {
            setErrs = new Dictionary<string, object> { [reported.Jti] = new { err = "key\tunknown\u0000" + new string('x', 100), description = trace } },
            returnImmediately = true,
        });
        Assert.Equal("set-error: key?unknown?" + new string('x', 52), await Propagation.ObligationAsync<string>(fixture.Database, reported.Jti, "last_error"));
        Assert.Equal(1, await Propagation.ObligationAsync<int>(fixture.Database, reported.Jti, "attempts"));
    }

    /// <summary>
    /// A site that switched from push to poll while a dispatcher had one of its events on the wire: the poll does not offer
    /// that event until the push run's lease ends, so the site is not handed the same event twice at once.
    /// </summary>
    [Fact]
    public async Task AnEventLeasedByAPushRunIsOfferedToAPollOnlyOnceTheLeaseEnds()
    {
        var (pollSite, _, siteToken, id) = await ReadThenUntickedAsync("leased");

        var leaseEnd = fixture.Time.GetUtcNow() + TimeSpan.FromMinutes(2);
        await fixture.Database.ExecuteAsync(
            $"UPDATE erasure_obligations SET leased_until = '{leaseEnd:O}', attempts = attempts + 1 WHERE recipient_id = '{pollSite.Id}'");
        Assert.Equal(1L, await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM erasure_obligations WHERE recipient_id = '{pollSite.Id}' AND leased_until IS NOT NULL"));

        using var site = Gateway.CreateHttpClient().WithToken(siteToken);
        var during = await PollAsync(site, new { returnImmediately = true, maxEvents = 100 });
        Assert.Empty(during.GetProperty("sets").EnumerateObject());

        // Just past it: the database keeps microseconds, the clock ticks of a tenth of one.
        fixture.Time.Advance(TimeSpan.FromMinutes(2) + TimeSpan.FromMilliseconds(1));
        Assert.Equal("erasure-required", (await FindAsync(site, pollSite, id)).Kind);
    }

    [Theory]
    [InlineData("""{"ack": ["not-a-jti"], "returnImmediately": true}""")]
    [InlineData("""{"setErrs": {"not-a-jti": {"err": "invalid_key"}}, "returnImmediately": true}""")]
    [InlineData("""{"setErrs": {"00000000-0000-0000-0000-000000000000": null}, "returnImmediately": true}""")]
    [InlineData("""{"maxEvents": -1, "returnImmediately": true}""")]
    [InlineData("""{"returnImmediately": true, "surprise": 1}""")]
    [InlineData("""{"ack": "00000000-0000-0000-0000-000000000000"}""")]
    [InlineData("""not json""")]
    public async Task ABadPollBodyIs400ProblemDetails(string body)
    {
        using var site = Gateway.CreateHttpClient().WithToken(await fixture.Actors.DemoSiteTokenAsync());
        using var response = await site.PostAsync(Poll, new StringContent(body, Encoding.UTF8, "application/json"));
        await response.AssertProblemAsync(HttpStatusCode.BadRequest);
    }

    /// <summary>RFC 8936 §2.4: maxEvents is a ceiling; asking for more than the gateway sends at once gets its page, not a 400.</summary>
    [Fact]
    public async Task AMaxEventsAboveTheGatewaysPageGetsThePage()
    {
        // A site of its own with more events waiting than a page holds (written as the changes write them).
        var own = await Sites.RegisterAsync(Gateway, fixture.Actors);
        // A second back: PostgreSQL keeps microseconds, and rounding the clock's ticks up would put them in the future.
        var now = fixture.Time.GetUtcNow().AddSeconds(-1).ToString("O", System.Globalization.CultureInfo.InvariantCulture);
        await fixture.Database.ExecuteAsync($"""
            INSERT INTO erasure_obligations (jti, recipient_id, consent_id, pairwise_id, kind, cause, created_at, confirm_before, status, overdue, attempts, next_attempt_at)
            SELECT gen_random_uuid(), '{own.Id}', gen_random_uuid(), 'p' || n, 'erasure-required', 'consent-revoked', '{now}', timestamptz '{now}' + interval '72 hours', 'Pending', false, 0, '{now}'
            FROM generate_series(1, 150) AS n
            """);
        using var site = Gateway.CreateHttpClient().WithToken(await fixture.Actors.TokenAsync(own));
        using var response = await site.PostAsync(Poll, new StringContent("""{"maxEvents": 100000, "returnImmediately": true}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var page = await response.ReadJsonAsync();
        Assert.Equal(100, page.GetProperty("sets").EnumerateObject().Count());
        Assert.True(page.GetProperty("moreAvailable").GetBoolean());
    }

    /// <summary>The first answer carries the clock's ticks, later ones what PostgreSQL kept (microseconds).</summary>
    private static void AssertSameInstant(DateTimeOffset expected, DateTimeOffset actual) =>
        Assert.True((expected - actual).Duration() < TimeSpan.FromMicroseconds(1), $"{expected:O} <> {actual:O}");

    /// <summary>
    /// RFC 8936 §2.4: without returnImmediately a poll is a long poll. A site whose queue is empty is answered when an event
    /// becomes due for it, not at once with nothing, which would have a site that follows the RFC poll in a tight loop.
    /// </summary>
    [Fact]
    public async Task APollWithoutReturnImmediatelyWaitsForTheNextEvent()
    {
        var site = await Sites.RegisterAsync(Gateway, fixture.Actors);
        var marker = "long-poll-" + Guid.NewGuid().ToString("N");
        var seeker = await Propagation.SeekerWithCvAsync(Gateway, fixture.Actors, marker);
        await Sharing.TickAsync(Gateway, seeker.Tokens.AccessToken, site.Id);
        var siteToken = await fixture.Actors.TokenAsync(site);
        await Propagation.ReadAsync(Gateway, siteToken, marker);
        using var client = Gateway.CreateHttpClient().WithToken(siteToken);

        var poll = client.PostAsJsonAsync(Poll, new { maxEvents = 10 });
        Assert.NotSame(poll, await Task.WhenAny(poll, Task.Delay(TimeSpan.FromSeconds(1))));
        using (var untick = await Sharing.UntickAsync(Gateway, seeker.Tokens.AccessToken, site.Id))
        {
            Assert.Equal(HttpStatusCode.OK, untick.StatusCode);
        }

        using var response = await poll;
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Single((await response.ReadJsonAsync()).GetProperty("sets").EnumerateObject());
    }

    /// <summary>
    /// A waiting long poll asks the database twice a second: a site holds at most two on a node, and its third poll answers
    /// at once instead of waiting too: with what is due, or, when nothing is, 429 with Retry-After (an empty answer would
    /// read as a long poll that found nothing, and a site would loop on it). Once the two end, the slots are free again.
    /// </summary>
    [Fact]
    public async Task ASiteHoldsAtMostTwoLongPollsAndAThirdAnswersAtOnce()
    {
        var site = await Sites.RegisterAsync(Gateway, fixture.Actors);
        var slots = Gateway.Services.GetRequiredService<ExchangeGateway.Events.LongPollSlots>();
        using var client = Gateway.CreateHttpClient().WithToken(await fixture.Actors.TokenAsync(site));
        using var cancel = new CancellationTokenSource();
        var waiting = Enumerable.Range(0, ExchangeGateway.Events.LongPollSlots.Limit)
            .Select(_ => client.PostAsJsonAsync(Poll, new { maxEvents = 10 }, cancel.Token)).ToList();
        await UntilAsync(() => slots.InFlight(site.Id) == ExchangeGateway.Events.LongPollSlots.Limit);

        var third = client.PostAsJsonAsync(Poll, new { maxEvents = 10 });
        // Long polls wait ten seconds: an answer within five is one that did not wait.
        Assert.Same(third, await Task.WhenAny(third, Task.Delay(TimeSpan.FromSeconds(5))));
        using (var response = await third)
        {
            await response.AssertProblemAsync(HttpStatusCode.TooManyRequests);
            Assert.Equal(TimeSpan.FromSeconds(10), response.Headers.RetryAfter?.Delta);
        }

        Assert.All(waiting, poll => Assert.False(poll.IsCompleted));
        await cancel.CancelAsync();
        await Task.WhenAll(waiting.Select(poll => poll.ContinueWith(_ => { }, TaskScheduler.Default)));
        await UntilAsync(() => slots.InFlight(site.Id) == 0);
    }

    private static async Task UntilAsync(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (!condition() && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20);
        }

        Assert.True(condition(), "the condition did not hold within ten seconds");
    }

    /// <summary>
    /// A poll site of its own (the shared demo site's queue holds every other test's events, past one poll's hundred) that
    /// read a seeker's CV; then the seeker unticked, so one erasure event waits for it. Returns the site's id for the CV.
    /// </summary>
    private async Task<(TestSite Site, Person Seeker, string SiteToken, string PairwiseId)> ReadThenUntickedAsync(string prefix)
    {
        var pollSite = await Sites.RegisterAsync(Gateway, fixture.Actors);
        var marker = prefix + "-" + Guid.NewGuid().ToString("N");
        var seeker = await Propagation.SeekerWithCvAsync(Gateway, fixture.Actors, marker);
        await Sharing.TickAsync(Gateway, seeker.Tokens.AccessToken, pollSite.Id);
        var siteToken = await fixture.Actors.TokenAsync(pollSite);
        var id = await Propagation.ReadAsync(Gateway, siteToken, marker);
        using var untick = await Sharing.UntickAsync(Gateway, seeker.Tokens.AccessToken, pollSite.Id);
        Assert.Equal(HttpStatusCode.OK, untick.StatusCode);
        return (pollSite, seeker, siteToken, id);
    }

    private static async Task<JsonElement> PollAsync(HttpClient site, object body)
    {
        using var response = await site.PostAsJsonAsync(Poll, body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"poll: {(int)response.StatusCode} {text}");
        return JsonDocument.Parse(text).RootElement;
    }

    /// <summary>Polls without acknowledging and returns the verified SET about the CV the site knows as <paramref name="pairwiseId"/>.</summary>
    private async Task<VerifiedSet> FindAsync(HttpClient site, TestSite pollSite, string pairwiseId)
    {
        var response = await PollAsync(site, new { returnImmediately = true, maxEvents = 100 });
        var keys = await SecurityEventTokens.FetchKeysAsync(Gateway);
        var sets = response.GetProperty("sets").EnumerateObject()
            .Select(p => (Key: p.Name, Set: SecurityEventTokens.Verify(p.Value.GetString()!, keys, Gateway.Issuer, pollSite.ClientId)))
            .ToList();
        Assert.All(sets, s => Assert.Equal(s.Key, s.Set.Jti));
        var mine = sets.Where(s => s.Set.SubjectId == pairwiseId).ToList();
        Assert.True(mine.Count == 1, $"{mine.Count} SETs about {pairwiseId} among {sets.Count}");
        return mine[0].Set;
    }

    private async Task<JsonElement> ErasureAsync(Person seeker, string jti)
    {
        var obligationId = await Propagation.ObligationAsync<long>(fixture.Database, jti, "id");
        return Assert.Single(await Propagation.MyErasuresAsync(Gateway, seeker.Tokens.AccessToken), e => e.GetProperty("id").GetInt64() == obligationId);
    }
}
