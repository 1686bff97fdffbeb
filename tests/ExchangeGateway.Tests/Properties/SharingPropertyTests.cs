using System.Net;
using CsCheck;
using ExchangeGateway.Tests.Infrastructure;

namespace ExchangeGateway.Tests.Properties;

/// <summary>
/// Promise 1 through the real API: random sequences of a seeker's actions and of time, and after every step the site
/// can read the CV exactly when the model says it may (active, unexpired consent; CV present, not erased, fresh).
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class SharingPropertyTests(GatewayFixture fixture)
{
    private enum Op { Put, Refresh, Tick, Untick, EraseCv, Wait }

    [Fact]
    public async Task ASiteReadsTheCvExactlyWhenTheModelAllowsIt()
    {
        var steps = Gen.Select(Gen.Enum<Op>(), Gen.Int[1, 70]).Array[4, 9];
        await Check.SampleAsync(steps, async sequence =>
        {
            var seeker = await fixture.Actors.NewSeekerAsync();
            var site = await Sites.RegisterAsync(fixture.Factory, fixture.Actors);
            var token = seeker.Tokens.AccessToken;
            string? siteToken = null;
            var (hasCv, erased, consent, refreshedAt, consentUntil) = (false, false, false, DateTimeOffset.MinValue, DateTimeOffset.MinValue);
            string? pairwise = null;
            var marker = "prop-" + Guid.NewGuid().ToString("N");

            foreach (var (op, days) in sequence)
            {
                var now = fixture.Time.GetUtcNow();
                using var client = fixture.Client().WithToken(token);
                switch (op)
                {
                    case Op.Put:
                        (await Sharing.PutCvAsync(fixture.Factory, token, Sharing.Resume(marker))).Dispose();
                        (hasCv, erased, refreshedAt) = (true, false, now);
                        break;
                    case Op.Refresh:
                        using (var refreshed = await client.PostAsync("/api/v1/me/cv/refresh", null))
                        {
                            Assert.Equal(hasCv && !erased ? HttpStatusCode.OK : HttpStatusCode.NotFound, refreshed.StatusCode);
                        }

                        if (hasCv && !erased)
                        {
                            refreshedAt = now;
                        }

                        break;
                    case Op.Tick:
                        await Sharing.TickAsync(fixture.Factory, token, site.Id);
                        if (!consent || consentUntil <= now)
                        {
                            (consent, consentUntil, pairwise) = (true, now + TimeSpan.FromDays(365), null);
                        }

                        break;
                    case Op.Untick:
                        (await Sharing.UntickAsync(fixture.Factory, token, site.Id)).Dispose();
                        consent = false;
                        break;
                    case Op.EraseCv:
                        (await client.DeleteAsync("/api/v1/me/cv")).Dispose();
                        // Erasing the CV ends its sharing (the sites are told to delete it); a new CV needs a new tick.
                        consent = consent && !(hasCv && !erased);
                        erased = hasCv || erased;
                        break;
                    case Op.Wait:
                        fixture.Time.Advance(TimeSpan.FromDays(days));
                        token = await fixture.Actors.FreshTokenAsync(seeker);
                        siteToken = null;
                        break;
                }

                now = fixture.Time.GetUtcNow();
                var allowed = consent && consentUntil > now && hasCv && !erased && now - refreshedAt < TimeSpan.FromDays(90);
                siteToken ??= await fixture.Actors.TokenAsync(site);
                var (items, _) = await Sharing.ReadFeedAsync(fixture.Factory, siteToken);
                pairwise = Sharing.PairwiseIdOf(items, marker) ?? pairwise;
                if (pairwise is null)
                {
                    Assert.False(allowed, $"the model allows reading after {op}, but the feed offers nothing");
                    continue;
                }

                using var asSite = fixture.Client().WithToken(siteToken);
                using var read = await asSite.GetAsync($"/api/v1/shared-cvs/{pairwise}");
                Assert.True((read.StatusCode == HttpStatusCode.OK) == allowed, $"after {op}: model says {allowed}, gateway answered {(int)read.StatusCode}");
            }
        }, iter: 6, threads: 1);
    }
}
