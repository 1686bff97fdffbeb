using System.Net;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.Extensions.Time.Testing;

namespace ExchangeGateway.Tests.Cvs;

/// <summary>
/// What an erasure keeps (pairwise ids, ledger rows, the requests to the sites) is kept for Erasure:KeepErasedRecordsFor
/// after the episode ended and every site confirmed, then removed by the daily retention job; an unconfirmed request
/// keeps its episode, and nothing of a seeker still here is touched. A host of its own: its clock runs a month on.
/// </summary>
public sealed class ErasedRecordsRetentionTests
{
    /// <summary>The episode, its ledger rows, its erasure requests, its feed entry: each there, or each gone.</summary>
    private static readonly long[] Kept = [1, 1, 1, 1], Gone = [0, 0, 0, 0];

    [Fact]
    public async Task AnErasedSeekersRecordsGoAfterTheRetentionPeriodOnceEverySiteConfirmed()
    {
        await using var database = await TestDatabase.CreateAsync();
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var gateway = new GatewayFactory(database, clock,
            settings: new Dictionary<string, string?> { ["Erasure:KeepErasedRecordsFor"] = "30.00:00:00", ["Erasure:PurgeBatchSize"] = "1" });
        var actors = new Actors(gateway);
        var site = await Sites.RegisterAsync(gateway, actors);
        var siteToken = await actors.TokenAsync(site);

        // Three seekers share with the site, which reads each CV: one is forgotten and the site confirms; one is forgotten
        // and the site never confirms; one stays and unticks.
        var people = new List<(Person Seeker, string Id)>();
        foreach (var who in new[] { "confirmed", "unconfirmed", "staying" })
        {
            var marker = $"retention-{who}-" + Guid.NewGuid().ToString("N");
            var seeker = await Propagation.SeekerWithCvAsync(gateway, actors, marker);
            await Sharing.TickAsync(gateway, seeker.Tokens.AccessToken, site.Id);
            people.Add((seeker, await Propagation.ReadAsync(gateway, siteToken, marker)));
        }

        var receipts = new List<string>();
        foreach (var (seeker, _) in people.Take(2))
        {
            using var me = gateway.CreateHttpClient().WithToken(seeker.Tokens.AccessToken);
            using var forget = await me.DeleteAsync("/api/v1/me");
            Assert.Equal(HttpStatusCode.OK, forget.StatusCode);
            receipts.Add((await forget.ReadJsonAsync()).GetProperty("sites")[0].GetProperty("eventId").GetString()!);
        }

        using (var untick = await Sharing.UntickAsync(gateway, people[2].Seeker.Tokens.AccessToken, site.Id))
        {
            Assert.Equal(HttpStatusCode.OK, untick.StatusCode);
        }

        using (var siteClient = gateway.CreateHttpClient().WithToken(siteToken))
        {
            Assert.Equal(HttpStatusCode.OK, (await siteClient.PostAsync($"/api/v1/erasures/{receipts[0]}/confirmation", null)).StatusCode);
        }

        // Whether each kind of row is there (a feed read from its start discloses the earlier CVs again, so the ledger has
        // one row or more).
        async Task<long> RowsAsync(string table, string pairwiseId) => Math.Sign(await database.ScalarAsync<long>(
            $"SELECT count(*) FROM {table} WHERE consent_id = (SELECT id FROM consents WHERE pairwise_id = '{pairwiseId}')"));
        async Task<long[]> TraceAsync(string pairwiseId) =>
        [
            await database.ScalarAsync<long>($"SELECT count(*) FROM consents WHERE pairwise_id = '{pairwiseId}'"),
            await RowsAsync("disclosures", pairwiseId), await RowsAsync("erasure_obligations", pairwiseId), await RowsAsync("feed_entries", pairwiseId),
        ];

        // Within the period everything stays.
        clock.Advance(TimeSpan.FromDays(29));
        Assert.Equal(0, await gateway.RunErasedRecordsPurgeAsync());
        foreach (var (_, id) in people)
        {
            Assert.Equal(Kept, await TraceAsync(id));
        }

        clock.Advance(TimeSpan.FromDays(2));
        Assert.Equal(1, await gateway.RunErasedRecordsPurgeAsync());
        Assert.Equal(Gone, await TraceAsync(people[0].Id));
        // The request the site never confirmed keeps its episode, and the seeker who stayed keeps their history.
        Assert.Equal(Kept, await TraceAsync(people[1].Id));
        Assert.Equal(Kept, await TraceAsync(people[2].Id));
        Assert.Equal(0, await gateway.RunErasedRecordsPurgeAsync());

        // The log says what went, and the chain still verifies: nothing of it referred to the rows removed.
        var purged = await database.ScalarAsync<string>("SELECT details FROM audit_events WHERE action = 'erasure.records-purged'");
        Assert.Contains("\"episodes\":1", purged, StringComparison.Ordinal);
        Assert.Contains("\"disclosures\":3", purged, StringComparison.Ordinal);
        Assert.Contains("\"erasureRequests\":1", purged, StringComparison.Ordinal);
        using var auditor = gateway.CreateHttpClient().WithToken(await actors.AuditorClientTokenAsync());
        using var verdict = await auditor.GetAsync("/api/v1/audit/verify");
        Assert.True((await verdict.ReadJsonAsync()).GetProperty("ok").GetBoolean());

        // Once the last site confirms (late, with a token of today), that episode goes at the next run too.
        using (var siteClient = gateway.CreateHttpClient().WithToken(await actors.TokenAsync(site)))
        {
            Assert.Equal(HttpStatusCode.OK, (await siteClient.PostAsync($"/api/v1/erasures/{receipts[1]}/confirmation", null)).StatusCode);
        }

        Assert.Equal(1, await gateway.RunErasedRecordsPurgeAsync());
        Assert.Equal(Gone, await TraceAsync(people[1].Id));
    }
}
