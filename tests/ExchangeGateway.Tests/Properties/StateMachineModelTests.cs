using CsCheck;
using ExchangeGateway.Consents;
using ExchangeGateway.Cvs;

namespace ExchangeGateway.Tests.Properties;

/// <summary>
/// The consent and CV aggregates driven by random sequences of operations and times, checked against a model that is
/// too simple to be wrong, after every step.
/// </summary>
public sealed class StateMachineModelTests
{
    private static readonly TimeSpan MaxAge = TimeSpan.FromDays(90);
    private static readonly TimeSpan ConsentAge = TimeSpan.FromDays(365);
    private static readonly DateTimeOffset Start = new(2026, 1, 1, 9, 0, 0, TimeSpan.Zero);

    private enum ConsentOp { Tick, Untick, Wait, Sweep, EndBySystem }

    private enum CvOp { Put, Refresh, Erase, Wait }

    [Fact]
    public void ConsentEpisodesFollowTheModel()
    {
        var steps = Gen.Select(Gen.Enum<ConsentOp>(), Gen.Int[0, 200]).Array[1, 40];
        Check.Sample(steps, sequence =>
        {
            var now = Start;
            var episodes = new List<Consent>();
            var modelActive = false;
            var modelExpiresAt = DateTimeOffset.MinValue;
            foreach (var (op, days) in sequence)
            {
                var active = episodes.SingleOrDefault(e => e.IsActive);
                switch (op)
                {
                    case ConsentOp.Tick when active is null:
                        episodes.Add(Consent.Grant("seeker", Guid.Empty, CollectionMethod.Api, now, ConsentAge));
                        modelActive = true;
                        modelExpiresAt = now + ConsentAge;
                        break;
                    case ConsentOp.Untick when active is not null:
                        active.Revoke(now);
                        modelActive = false;
                        break;
                    case ConsentOp.Wait:
                        now += TimeSpan.FromDays(days);
                        break;
                    case ConsentOp.Sweep when active is not null && now >= active.ExpiresAt:
                        active.Expire(now);
                        modelActive = false;
                        break;
                    case ConsentOp.Sweep when active is not null:
                        Assert.Throws<InvalidOperationException>(() => active.Expire(now));
                        break;
                    case ConsentOp.EndBySystem when active is not null:
                        active.EndBySystem(ErasureCauses.RecipientSuspended, now);
                        modelActive = false;
                        break;
                }

                // The promises, after every step.
                Assert.Equal(modelActive, episodes.Any(e => e.IsActive));
                Assert.True(episodes.Count(e => e.IsActive) <= 1);
                if (modelActive)
                {
                    Assert.Equal(modelExpiresAt, episodes.Single(e => e.IsActive).ExpiresAt);
                }

                Assert.Equal(episodes.Count, episodes.Select(e => e.PairwiseId).Distinct().Count());
                foreach (var ended in episodes.Where(e => !e.IsActive))
                {
                    Assert.NotNull(ended.EndCause);
                    Assert.Throws<InvalidOperationException>(() => ended.Revoke(now));
                    Assert.Throws<InvalidOperationException>(() => ended.EndBySystem(ErasureCauses.SubjectErased, now));
                }
            }
        }, iter: 2000);
    }

    [Fact]
    public void CvFreshnessFollowsTheModel()
    {
        var steps = Gen.Select(Gen.Enum<CvOp>(), Gen.Int[0, 120]).Array[1, 40];
        Check.Sample(steps, sequence =>
        {
            var now = Start;
            Cv? cv = null;
            var (exists, erased, version, refreshedAt) = (false, false, 0, DateTimeOffset.MinValue);
            foreach (var (op, days) in sequence)
            {
                switch (op)
                {
                    case CvOp.Put:
                        if (cv is null)
                        {
                            cv = Cv.Publish("seeker", Guid.NewGuid(), [1], [2], now);
                        }
                        else
                        {
                            cv.Replace([1], [2], now);
                        }

                        (exists, erased, version, refreshedAt) = (true, false, version + 1, now);
                        break;
                    case CvOp.Refresh when cv is not null && !erased:
                        cv.Refresh(now);
                        refreshedAt = now;
                        break;
                    case CvOp.Refresh when cv is not null:
                        Assert.Throws<InvalidOperationException>(() => cv.Refresh(now));
                        break;
                    case CvOp.Erase when cv is not null:
                        cv.Erase(now);
                        // The erased state is a version of its own: an If-Match from before the erasure no longer matches.
                        (erased, version) = (true, version + 1);
                        break;
                    case CvOp.Wait:
                        now += TimeSpan.FromDays(days);
                        break;
                }

                if (!exists)
                {
                    continue;
                }

                var expected = erased ? CvState.Erased : now - refreshedAt >= MaxAge ? CvState.Offline : CvState.Published;
                Assert.Equal(expected, cv!.StateAt(now, MaxAge));
                Assert.Equal(expected == CvState.Published, cv.IsAvailableAt(now, MaxAge));
                Assert.Equal(version, cv.Version);
                Assert.Equal(erased, cv.Sealed is null);
            }
        }, iter: 2000);
    }
}
