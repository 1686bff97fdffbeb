using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using ExchangeGateway.Tests.Infrastructure;

namespace ExchangeGateway.Tests.Exchange;

/// <summary>
/// Promise 6 against the clock: every time a site is shown about a seeker is coarse. A change that concerns several sites
/// happens at one instant for all of them; given to the microsecond (as the CV's refresh, the event's time and its deadline
/// were), that instant was a key two sites could pair their pairwise ids on, long after they deleted the document.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class SiteTimestampTests(GatewayFixture fixture)
{
    [Fact]
    public async Task TwoSitesToldOfOneChangeSeeOnlyItsDayAndAWholeHourDeadline()
    {
        var operatorToken = (await fixture.Actors.NewOperatorAsync()).Tokens.AccessToken;
        var sites = new[] { await Sites.RegisterAsync(fixture.Factory, operatorToken), await Sites.RegisterAsync(fixture.Factory, operatorToken) };
        var marker = "grain-" + Guid.NewGuid().ToString("N");
        var seeker = await Propagation.SeekerWithCvAsync(fixture.Factory, fixture.Actors, marker);
        foreach (var site in sites)
        {
            await Sharing.TickAsync(fixture.Factory, seeker.Tokens.AccessToken, site.Id);
        }

        // Not on a whole hour or a midnight, so rounding shows.
        fixture.Time.Advance(TimeSpan.FromMinutes(7) + TimeSpan.FromMicroseconds(123_457));
        var ids = new List<string>();
        foreach (var site in sites)
        {
            var id = await Propagation.ReadAsync(fixture.Factory, await fixture.Actors.TokenAsync(site), marker);
            ids.Add(id);
            using var client = fixture.Factory.CreateHttpClient().WithToken(await fixture.Actors.TokenAsync(site));
            var cv = await client.GetFromJsonAsync<JsonElement>($"/api/v1/shared-cvs/{id}");
            AssertMidnight(cv.GetProperty("refreshedAt").GetDateTimeOffset(), "the feed's refreshedAt");
        }

        using (var put = await Sharing.PutCvAsync(fixture.Factory, seeker.Tokens.AccessToken, Sharing.Resume(marker + "-v2")))
        {
            Assert.Equal(HttpStatusCode.OK, put.StatusCode);
        }

        var changedAt = fixture.Time.GetUtcNow();
        var deadline = WholeHourAtOrAfter(changedAt + TimeSpan.FromHours(72));
        for (var i = 0; i < sites.Length; i++)
        {
            using var client = fixture.Factory.CreateHttpClient().WithToken(await fixture.Actors.TokenAsync(sites[i]));
            using var poll = await client.PostAsJsonAsync("/api/v1/events/poll", new { returnImmediately = true, maxEvents = 10 });
            Assert.Equal(HttpStatusCode.OK, poll.StatusCode);
            var set = Assert.Single((await poll.ReadJsonAsync()).GetProperty("sets").EnumerateObject());
            var verified = await SecurityEventTokens.VerifyAsync(fixture.Factory, set.Value.GetString()!, sites[i].ClientId);
            Assert.Equal(("cv-updated", ids[i]), (verified.Cause, verified.SubjectId));
            Assert.Equal(new DateTimeOffset(changedAt.UtcDateTime.Date, TimeSpan.Zero), verified.TimeOfEvent);
            Assert.Equal(deadline, verified.ConfirmBefore);

            var open = (await client.GetFromJsonAsync<JsonElement>("/api/v1/erasures")).GetProperty("items").EnumerateArray()
                .Single(e => e.GetProperty("jti").GetString() == verified.Jti);
            Assert.Equal(verified.TimeOfEvent, open.GetProperty("createdAt").GetDateTimeOffset());
            Assert.Equal(deadline, open.GetProperty("confirmBefore").GetDateTimeOffset());

            // The auditors keep the instant; the deadline stored is the one the site was given, so overdue judges that.
            var row = await fixture.Database.ScalarAsync<DateTime>($"SELECT created_at FROM erasure_obligations WHERE jti = '{verified.Jti}'");
            Assert.InRange(new DateTimeOffset(row, TimeSpan.Zero), changedAt - TimeSpan.FromMilliseconds(1), changedAt);
            Assert.Equal(deadline.UtcDateTime, await fixture.Database.ScalarAsync<DateTime>($"SELECT confirm_before FROM erasure_obligations WHERE jti = '{verified.Jti}'"));
        }
    }

    private static void AssertMidnight(DateTimeOffset value, string what) =>
        Assert.True(value.Offset == TimeSpan.Zero && value.TimeOfDay == TimeSpan.Zero, $"{what} is finer than a day: {value:O}");

    private static DateTimeOffset WholeHourAtOrAfter(DateTimeOffset time)
    {
        var hour = new DateTimeOffset(time.UtcDateTime.Date.AddHours(time.UtcDateTime.Hour), TimeSpan.Zero);
        return hour == time ? hour : hour.AddHours(1);
    }
}
