using System.Net;
using ExchangeGateway.Cvs;
using ExchangeGateway.Data;
using ExchangeGateway.Exchange;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace ExchangeGateway.Tests.Exchange;

/// <summary>
/// Reads racing writes, played in a chosen order with transactions held open: the feed never lets a site page past a
/// change that commits later, and a read that waited for the chain lock is judged by the clock after the wait.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class ConcurrentReadTests(GatewayFixture fixture)
{
    private GatewayFactory Gateway => fixture.Factory;

    /// <summary>
    /// A feed move still uncommitted (A's entry, its position taken) while another change (B's tick) tries to commit: the
    /// site reads a page in between, then again from that page's resume cursor, and finds both. Positions are taken under
    /// the chain lock, so B's higher one cannot commit before A's lower one; without that, the site's cursor passed A's
    /// position before A committed, and A's change was never shown.
    /// </summary>
    [Fact]
    public async Task APageReadWhileAMoveIsUncommittedDoesNotSkipIt()
    {
        var site = await Sites.RegisterAsync(Gateway, fixture.Actors);
        var (markerA, markerB) = ("race-a-" + Guid.NewGuid().ToString("N"), "race-b-" + Guid.NewGuid().ToString("N"));
        var seekerA = await Propagation.SeekerWithCvAsync(Gateway, fixture.Actors, markerA);
        var seekerB = await Propagation.SeekerWithCvAsync(Gateway, fixture.Actors, markerB);
        await Sharing.TickAsync(Gateway, seekerA.Tokens.AccessToken, site.Id);
        var (_, caughtUp) = await Sharing.ReadFeedAsync(Gateway, await fixture.Actors.TokenAsync(site));

        await using var scope = Gateway.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<GatewayDbContext>();
        var consentA = await db.Set<ExchangeGateway.Consents.Consent>().Where(c => c.SeekerId == seekerA.Id && c.RecipientId == site.Id).Select(c => c.Id).SingleAsync();
        var held = await db.Database.BeginTransactionAsync();
        await FeedPositions.BumpAsync(db, [consentA], CancellationToken.None);

        var tickB = Sharing.TickAsync(Gateway, seekerB.Tokens.AccessToken, site.Id);
        // B either waits for the chain lock A's move holds, or (were the move taken outside it) commits first.
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!tickB.IsCompleted && await fixture.Database.ScalarAsync<long>(
                   "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())") == 0)
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), "B's tick neither finished nor waited");
            await Task.Delay(20);
        }

        var siteToken = await fixture.Actors.TokenAsync(site);
        var (between, resume) = await Sharing.ReadFeedAsync(Gateway, siteToken, caughtUp);
        await held.CommitAsync();
        await held.DisposeAsync();
        await tickB;

        var (after, _) = await Sharing.ReadFeedAsync(Gateway, siteToken, resume);
        var seen = between.Concat(after).ToList();
        Assert.NotNull(Sharing.PairwiseIdOf(seen, markerA));
        Assert.NotNull(Sharing.PairwiseIdOf(seen, markerB));
    }

    /// <summary>
    /// A read that waits for the chain lock (behind a sweep's batch, say) while the consent lapses is judged after the wait:
    /// nothing is recorded and nothing sent. Judged by the clock read before the wait, the CV left after its consent had
    /// ended, under a ledger date from before the end.
    /// </summary>
    [Fact]
    public async Task AConsentThatLapsesWhileTheReadWaitsForTheChainLockSendsNothing()
    {
        var (siteToken, _, id, marker) = await SharedAndReadOnceAsync("lapse-wait-");
        var lapse = Gateway.Time.GetUtcNow().AddMinutes(1).ToString("O", System.Globalization.CultureInfo.InvariantCulture);
        await fixture.Database.ExecuteAsync($"UPDATE consents SET expires_at = '{lapse}' WHERE pairwise_id = '{id}'");
        var ledgerBefore = await LedgerRowsAsync(id);

        var response = await ReadWhileHoldingTheChainLockAsync(siteToken, id, _ =>
        {
            Gateway.Time.Advance(TimeSpan.FromMinutes(2));
            return Task.CompletedTask;
        });

        using (response)
        {
            Assert.DoesNotContain(marker, (await response.AssertProblemAsync(HttpStatusCode.NotFound)).GetRawText(), StringComparison.Ordinal);
        }

        Assert.Equal(ledgerBefore, await LedgerRowsAsync(id));
    }

    /// <summary>
    /// The sweep (on another node) takes the CV offline and commits while a read that found it Published waits for the
    /// chain lock: nothing is recorded and nothing sent. The sweep has already written its obligations for the copies the
    /// ledger held, so a copy sent after it would be one nobody ever chases. Only the ledger insert's own check of the CV's
    /// state sees this; a CV already offline when the read starts is refused before (AccessRulesTests).
    /// </summary>
    [Fact]
    public async Task ACvTakenOfflineWhileTheReadWaitsForTheChainLockSendsNothing()
    {
        var (siteToken, seeker, id, marker) = await SharedAndReadOnceAsync("offline-wait-");
        var ledgerBefore = await LedgerRowsAsync(id);

        var response = await ReadWhileHoldingTheChainLockAsync(siteToken, id, held =>
            held.ExecuteAsync($"UPDATE cvs SET state = 'Offline' WHERE seeker_id = '{seeker.Id}'"));

        using (response)
        {
            Assert.DoesNotContain(marker, (await response.AssertProblemAsync(HttpStatusCode.NotFound)).GetRawText(), StringComparison.Ordinal);
        }

        Assert.Equal(ledgerBefore, await LedgerRowsAsync(id));
    }

    /// <summary>
    /// The CV reaches Freshness:MaxAge while the read waits for the chain lock: judged by the clock after the wait, it is
    /// stale, and nothing is recorded or sent. Judged before, a CV left after its freshness ended, under a ledger date from
    /// after that end. The CV is made to go stale a minute from now (its refresh dated back) rather than by moving the
    /// shared clock a whole MaxAge, which every other test on this gateway would feel.
    /// </summary>
    [Fact]
    public async Task ACvGoingStaleWhileTheReadWaitsForTheChainLockSendsNothing()
    {
        var (siteToken, seeker, id, marker) = await SharedAndReadOnceAsync("stale-wait-");
        var maxAge = Gateway.Services.GetRequiredService<IOptions<FreshnessOptions>>().Value.MaxAge;
        var refreshed = (Gateway.Time.GetUtcNow() - maxAge + TimeSpan.FromMinutes(1)).ToString("O", System.Globalization.CultureInfo.InvariantCulture);
        await fixture.Database.ExecuteAsync($"UPDATE cvs SET refreshed_at = '{refreshed}' WHERE seeker_id = '{seeker.Id}'");
        var ledgerBefore = await LedgerRowsAsync(id);

        var response = await ReadWhileHoldingTheChainLockAsync(siteToken, id, _ =>
        {
            Gateway.Time.Advance(TimeSpan.FromMinutes(2));
            return Task.CompletedTask;
        });

        using (response)
        {
            Assert.DoesNotContain(marker, (await response.AssertProblemAsync(HttpStatusCode.NotFound)).GetRawText(), StringComparison.Ordinal);
        }

        Assert.Equal(ledgerBefore, await LedgerRowsAsync(id));
    }

    /// <summary>A site the seeker shares a CV with, which has read it once (so it is on the ledger and known to be readable).</summary>
    private async Task<(string SiteToken, Person Seeker, string Id, string Marker)> SharedAndReadOnceAsync(string prefix)
    {
        var site = await Sites.RegisterAsync(Gateway, fixture.Actors);
        var marker = prefix + Guid.NewGuid().ToString("N");
        var seeker = await Propagation.SeekerWithCvAsync(Gateway, fixture.Actors, marker);
        await Sharing.TickAsync(Gateway, seeker.Tokens.AccessToken, site.Id);
        var siteToken = await fixture.Actors.TokenAsync(site);
        var id = await Propagation.ReadAsync(Gateway, siteToken, marker);
        return (siteToken, seeker, id, marker);
    }

    /// <summary>
    /// Holds the chain lock (another node's batch), starts the site's read of <paramref name="id"/>, and once the read waits
    /// for the lock, plays <paramref name="meanwhile"/> in the holding transaction and commits it.
    /// </summary>
    private async Task<HttpResponseMessage> ReadWhileHoldingTheChainLockAsync(string siteToken, string id, Func<HeldTransaction, Task> meanwhile)
    {
        await using var held = await HeldTransaction.BeginAsync(fixture.Database);
        await held.ExecuteAsync($"SELECT pg_advisory_xact_lock({Locks.Chain})");
        using var client = Gateway.CreateHttpClient().WithToken(siteToken);
        var read = client.GetAsync($"/api/v1/shared-cvs/{id}");
        await HeldTransaction.WaitForChainWaitersAsync(fixture.Database, 1);
        await meanwhile(held);
        await held.CommitAsync();
        return await read;
    }

    private Task<long> LedgerRowsAsync(string id) =>
        fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM disclosures d JOIN consents c ON c.id = d.consent_id WHERE c.pairwise_id = '{id}'");
}
