using ExchangeGateway.Cvs;
using ExchangeGateway.Data;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace ExchangeGateway.Tests.Cvs;

/// <summary>
/// Promise 4 against a read racing the erasure: a disclosure decided from the consent as committed before the erasure
/// (another node's feed page) can commit while the erasure runs. Its ledger row must lose the seeker's id and the hash
/// of what was sent like every other, which only holds if the erasure clears the ledger under the chain lock that every
/// disclosure commits under.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class ErasureRaceTests(GatewayFixture fixture)
{
    [Fact]
    public async Task ALedgerRowCommittedDuringTheErasureNamesNoOneAfterIt()
    {
        var seeker = await Propagation.SeekerWithCvAsync(fixture.Factory, fixture.Actors, "erasure-race");
        var site = await Sharing.RecipientIdAsync(fixture.Factory, seeker.Tokens.AccessToken, "Démo Emploi");
        await Sharing.TickAsync(fixture.Factory, seeker.Tokens.AccessToken, site);
        var consent = await fixture.Database.ScalarAsync<Guid>($"SELECT id FROM consents WHERE seeker_id = '{seeker.Id}' AND state = 'Active'");

        Task<bool> erasure;
        // The other node's ledger write holds the chain lock; the erasure queues behind it, its own deletes done.
        await using (var reader = await HeldTransaction.BeginAsync(fixture.Database))
        {
            await reader.ExecuteAsync($"SELECT pg_advisory_xact_lock({Locks.Chain})");
            erasure = EraseAsync(seeker.Id);
            await WaitForErasureAtTheChainLockAsync();
            Assert.Equal(1, await reader.ExecuteAsync($"""
                INSERT INTO disclosures (consent_id, recipient_id, seeker_id, cv_version, content_hash, disclosed_at)
                SELECT c.id, c.recipient_id, c.seeker_id, v.version, v.content_hash, now()
                FROM consents c JOIN cvs v ON v.seeker_id = c.seeker_id WHERE c.id = '{consent}'
                """));
            await reader.CommitAsync();
        }

        Assert.True(await erasure);
        Assert.Equal(1L, await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM disclosures WHERE consent_id = '{consent}'"));
        Assert.Equal(0L, await fixture.Database.ScalarAsync<long>(
            $"SELECT count(*) FROM disclosures WHERE consent_id = '{consent}' AND (seeker_id IS NOT NULL OR content_hash IS NOT NULL)"));
    }

    private async Task<bool> EraseAsync(string seekerId)
    {
        await using var scope = fixture.Factory.Services.CreateAsyncScope();
        return await scope.ServiceProvider.GetRequiredService<SeekerErasure>().EraseAsync(seekerId, CancellationToken.None);
    }

    /// <summary>The session that deleted the seeker's key (the erasure) now waits for an advisory lock (the chain lock).</summary>
    private async Task WaitForErasureAtTheChainLockAsync()
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!await fixture.Database.ScalarAsync<bool>("""
            SELECT EXISTS (
                SELECT 1 FROM pg_locks c JOIN pg_locks w ON w.pid = c.pid AND w.locktype = 'advisory' AND NOT w.granted
                WHERE c.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                  AND c.relation = 'seeker_keys'::regclass AND c.mode = 'RowExclusiveLock' AND c.granted)
            """))
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), "the erasure never reached the chain lock");
            await Task.Delay(20);
        }
    }
}
