using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using ExchangeGateway.Cvs;
using ExchangeGateway.Data;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace ExchangeGateway.Tests.Exchange;

/// <summary>
/// A disclosure decided from the consent as committed before a share ends (another node's feed page) can commit while
/// the end runs; every disclosure commits under the chain lock, and so must everything the end decides from the ledger.
/// Each test plays that other node with a held transaction: it holds the chain lock until the end queues behind it, the
/// gateway's clock moves on, and then it commits a ledger row dated by that clock.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class LedgerRaceTests(GatewayFixture fixture)
{
    /// <summary>
    /// Promise 4: the row loses the seeker's id and the hash of what was sent like every other. And the episode ends no
    /// earlier than the row says it was sent, so the record never shows a copy sent after the share was over.
    /// </summary>
    [Fact]
    public async Task ALedgerRowCommittedDuringTheErasureNamesNoOneAfterItAndPrecedesTheEnd()
    {
        var (seeker, consent) = await SharedAsync("erasure-race");

        // The erasure has deleted the seeker's key when it waits for the chain lock.
        Assert.True(await RaceAsync(() => EraseAsync(seeker.Id), "seeker_keys", "RowExclusiveLock", consent));
        Assert.Equal(1L, await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM disclosures WHERE consent_id = '{consent}'"));
        Assert.Equal(0L, await fixture.Database.ScalarAsync<long>(
            $"SELECT count(*) FROM disclosures WHERE consent_id = '{consent}' AND (seeker_id IS NOT NULL OR content_hash IS NOT NULL)"));
        await AssertEndedNoEarlierThanItsLedgerAsync(consent);
    }

    /// <summary>An untick ends the episode after the racing row, and the site that got that copy is asked to erase it.</summary>
    [Fact]
    public async Task ALedgerRowCommittedDuringAnUntickPrecedesTheEndAndIsChased()
    {
        var (seeker, consent) = await SharedAsync("untick-race");
        var site = await fixture.Database.ScalarAsync<Guid>($"SELECT recipient_id FROM consents WHERE id = '{consent}'");

        // The untick holds its consent row (FOR NO KEY UPDATE) when it waits for the chain lock.
        using (var response = await RaceAsync(() => Sharing.UntickAsync(fixture.Factory, seeker.Tokens.AccessToken, site), "consents", "RowShareLock", consent))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        await AssertEndedNoEarlierThanItsLedgerAsync(consent);
        Assert.Equal(1L, await fixture.Database.ScalarAsync<long>(
            $"SELECT count(*) FROM erasure_obligations WHERE consent_id = '{consent}' AND cause = 'consent-revoked'"));
    }

    /// <summary>Erasing the CV alone (the account stays) is dated after the racing row too.</summary>
    [Fact]
    public async Task ALedgerRowCommittedDuringACvErasurePrecedesIt()
    {
        var (seeker, consent) = await SharedAsync("cv-erasure-race");
        using var client = fixture.Client().WithToken(seeker.Tokens.AccessToken);
        // The CV erasure holds the seeker's active consents (FOR NO KEY UPDATE) when it waits for the chain lock.
        using (var response = await RaceAsync(() => client.DeleteAsync("/api/v1/me/cv"), "consents", "RowShareLock", consent))
        {
            Assert.Equal(HttpStatusCode.NoContent, response.StatusCode);
        }

        Assert.True(await fixture.Database.ScalarAsync<bool>($"""
            SELECT bool_and(v.erased_at >= d.disclosed_at) FROM cvs v JOIN disclosures d ON d.consent_id = '{consent}' WHERE v.seeker_id = '{seeker.Id}'
            """), "the CV's erasure is dated before a copy it let through");
    }

    /// <summary>A suspension ends every episode of the site after the racing row too.</summary>
    [Fact]
    public async Task ALedgerRowCommittedDuringASuspensionPrecedesTheEnd()
    {
        var @operator = await fixture.Actors.NewOperatorAsync();
        var site = await Sites.RegisterAsync(fixture.Factory, @operator.Tokens.AccessToken);
        var (_, consent) = await SharedAsync("suspension-race", site.Id);
        using var admin = fixture.Client().WithToken(@operator.Tokens.AccessToken);

        // The suspension holds the site's active consents (FOR NO KEY UPDATE) when it waits for the chain lock.
        var suspend = () => admin.PostAsJsonAsync($"{Sites.AdminPath}/{site.Id}/suspend", new System.Text.Json.Nodes.JsonObject { ["reason"] = "race" });
        using (var response = await RaceAsync(suspend, "consents", "RowShareLock", consent))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        await AssertEndedNoEarlierThanItsLedgerAsync(consent);
    }

    /// <summary>
    /// Promise 1 the other way round: a CV still shared and fresh is not answered 404. A single read finds version 1, a new
    /// version is saved before its ledger row can be written (the record waits for the chain lock), and the ledger, which
    /// records the version it names, refuses version 1: the read is made again and sends version 2, recorded as such.
    /// </summary>
    [Fact]
    public async Task ASingleReadWhoseVersionIsReplacedBeforeItIsRecordedSendsTheNewVersion()
    {
        var site = await Sites.RegisterAsync(fixture.Factory, fixture.Actors);
        var (seeker, consent) = await SharedAsync("replaced-v1-" + Guid.NewGuid().ToString("N"), site.Id);
        var marker = "replaced-v2-" + Guid.NewGuid().ToString("N");
        var pairwise = await fixture.Database.ScalarAsync<string>($"SELECT pairwise_id FROM consents WHERE id = '{consent}'");
        var (first, second) = ("race_v1_" + Guid.NewGuid().ToString("N"), "race_v2_" + Guid.NewGuid().ToString("N"));
        try
        {
            // Both versions, as the seeker's key sealed them; the database then holds version 1 again, as the read will find it.
            await fixture.Database.ExecuteAsync($"CREATE TABLE {first} AS SELECT * FROM cvs WHERE seeker_id = '{seeker.Id}'");
            using (var put = await Sharing.PutCvAsync(fixture.Factory, seeker.Tokens.AccessToken, Sharing.Resume(marker)))
            {
                Assert.Equal(HttpStatusCode.OK, put.StatusCode);
            }

            await fixture.Database.ExecuteAsync($"CREATE TABLE {second} AS SELECT * FROM cvs WHERE seeker_id = '{seeker.Id}'");
            string Restore(string copy) =>
                $"UPDATE cvs v SET version = c.version, sealed = c.sealed, content_hash = c.content_hash FROM {copy} c WHERE v.seeker_id = c.seeker_id";
            await fixture.Database.ExecuteAsync(Restore(first));

            using var asSite = fixture.Client().WithToken(await fixture.Actors.TokenAsync(site));
            Task<HttpResponseMessage> reading;
            await using (var other = await HeldTransaction.BeginAsync(fixture.Database))
            {
                await other.ExecuteAsync($"SELECT pg_advisory_xact_lock({Locks.Chain})");
                reading = asSite.GetAsync($"/api/v1/shared-cvs/{pairwise}");
                await HeldTransaction.WaitForChainWaitersAsync(fixture.Database, 1);
                Assert.Equal(1, await other.ExecuteAsync(Restore(second)));
                await other.CommitAsync();
            }

            using var read = await reading;
            Assert.Equal(HttpStatusCode.OK, read.StatusCode);
            var body = await read.ReadJsonAsync();
            Assert.Equal(2, body.GetProperty("version").GetInt32());
            Assert.Contains(marker, body.GetProperty("document").ToString(), StringComparison.Ordinal);
            Assert.Equal("2", string.Join(",", await fixture.Database.ScalarAsync<string>(
                $"SELECT string_agg(cv_version::text, ',') FROM disclosures WHERE consent_id = '{consent}'")));
        }
        finally
        {
            await fixture.Database.ExecuteAsync($"DROP TABLE IF EXISTS {first}; DROP TABLE IF EXISTS {second}");
        }
    }

    private async Task<(Person Seeker, Guid Consent)> SharedAsync(string marker, Guid? siteId = null)
    {
        var seeker = await Propagation.SeekerWithCvAsync(fixture.Factory, fixture.Actors, marker);
        var site = siteId ?? await Sharing.RecipientIdAsync(fixture.Factory, seeker.Tokens.AccessToken, "Démo Emploi");
        await Sharing.TickAsync(fixture.Factory, seeker.Tokens.AccessToken, site);
        return (seeker, await fixture.Database.ScalarAsync<Guid>($"SELECT id FROM consents WHERE seeker_id = '{seeker.Id}' AND state = 'Active'"));
    }

    /// <summary>
    /// Holds the chain lock, starts the end, waits until the session holding <paramref name="mode"/> on
    /// <paramref name="table"/> (the end) queues for the chain lock, commits the other node's ledger row, and returns the
    /// end's outcome.
    /// </summary>
    private async Task<T> RaceAsync<T>(Func<Task<T>> end, string table, string mode, Guid consent)
    {
        Task<T> ending;
        await using (var reader = await HeldTransaction.BeginAsync(fixture.Database))
        {
            await reader.ExecuteAsync($"SELECT pg_advisory_xact_lock({Locks.Chain})");
            ending = end();
            await WaitAtTheChainLockAsync(table, mode);
            await DiscloseAsync(reader, consent);
            await reader.CommitAsync();
        }

        return await ending;
    }

    /// <summary>The other node's ledger row, dated by the gateway's clock a minute after the end began.</summary>
    private async Task DiscloseAsync(HeldTransaction reader, Guid consent)
    {
        fixture.Time.Advance(TimeSpan.FromMinutes(1));
        var at = fixture.Time.GetUtcNow().ToString("yyyy-MM-dd'T'HH:mm:ss.ffffffzzz", CultureInfo.InvariantCulture);
        Assert.Equal(1, await reader.ExecuteAsync($"""
            INSERT INTO disclosures (consent_id, recipient_id, seeker_id, cv_version, content_hash, disclosed_at)
            SELECT c.id, c.recipient_id, c.seeker_id, v.version, v.content_hash, '{at}'::timestamptz
            FROM consents c JOIN cvs v ON v.seeker_id = c.seeker_id WHERE c.id = '{consent}'
            """));
    }

    private async Task AssertEndedNoEarlierThanItsLedgerAsync(Guid consent) =>
        Assert.True(await fixture.Database.ScalarAsync<bool>($"""
            SELECT bool_and(c.ended_at >= d.disclosed_at) FROM consents c JOIN disclosures d ON d.consent_id = c.id WHERE c.id = '{consent}'
            """), "the episode's end is dated before a copy it let through");

    private async Task<bool> EraseAsync(string seekerId)
    {
        await using var scope = fixture.Factory.Services.CreateAsyncScope();
        return await scope.ServiceProvider.GetRequiredService<SeekerErasure>().EraseAsync(seekerId, CancellationToken.None) is not null;
    }

    /// <summary>Waits until the session that holds <paramref name="mode"/> on <paramref name="table"/> waits for an advisory lock (the chain lock).</summary>
    private async Task WaitAtTheChainLockAsync(string table, string mode)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!await fixture.Database.ScalarAsync<bool>($"""
            SELECT EXISTS (
                SELECT 1 FROM pg_locks c JOIN pg_locks w ON w.pid = c.pid AND w.locktype = 'advisory' AND NOT w.granted
                WHERE c.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                  AND c.relation = '{table}'::regclass AND c.mode = '{mode}' AND c.granted)
            """))
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), $"no session holding {mode} on {table} ever reached the chain lock");
            await Task.Delay(20);
        }
    }
}
