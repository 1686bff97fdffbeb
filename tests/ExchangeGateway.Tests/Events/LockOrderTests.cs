using System.Net;
using System.Net.Http.Json;
using ExchangeGateway.Data;
using ExchangeGateway.Tests.Infrastructure;

namespace ExchangeGateway.Tests.Events;

/// <summary>
/// The chain lock is taken last, just before commit, and whoever holds it may still write rows that reference consents
/// and recipients (a disclosure being recorded, an obligation being written): their foreign-key checks take KEY SHARE
/// locks. A transaction that locks those rows FOR UPDATE and then waits for the chain lock closes a cycle, and PostgreSQL
/// kills one side. Each test holds the chain lock on a connection of its own, lets the code under test lock its rows and
/// queue for the chain, then writes the referencing row, as a concurrent request would at that moment.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class LockOrderTests(GatewayFixture fixture)
{
    private GatewayFactory Gateway => fixture.Factory;

    [Fact]
    public async Task SuspendingASiteWhileAnotherTransactionWritesAnObligationForItIsNotADeadlock()
    {
        var (site, consent, operatorToken) = await DisclosedConsentAsync();

        await using var other = await ChainHolderAsync();
        using var admin = Gateway.CreateHttpClient().WithToken(operatorToken);
        var suspension = admin.PostAsJsonAsync($"/api/v1/admin/recipients/{site.Id}/suspend", new { reason = "lock order" });
        await WaitForChainWaiterAsync();

        // What an untick committing at this moment does under the chain lock: an obligation for this site.
        await other.ExecuteAsync($"""
            INSERT INTO erasure_obligations (jti, recipient_id, consent_id, pairwise_id, kind, cause, created_at, confirm_before, status, overdue, attempts, next_attempt_at)
            SELECT gen_random_uuid(), recipient_id, id, pairwise_id, 'erasure-required', 'consent-revoked', now(), now() + interval '72 hours', 'Pending', false, 0, now()
            FROM consents WHERE id = '{consent}'
            """);
        await other.CommitAsync();

        using var response = await suspension;
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        // And the suspension did its work: the episode ended by it, its copy chased for that cause too.
        Assert.Equal("Ended", await fixture.Database.ScalarAsync<string>($"SELECT state FROM consents WHERE id = '{consent}'"));
        Assert.Equal(1L, await fixture.Database.ScalarAsync<long>(
            $"SELECT count(*) FROM erasure_obligations WHERE consent_id = '{consent}' AND cause = 'recipient-suspended'"));
    }

    [Fact]
    public async Task ExpiringAConsentWhileItsSiteIsBeingSentTheCvIsNotADeadlockAndTheCopyIsChased()
    {
        var (site, consent, _) = await DisclosedConsentAsync();
        await fixture.Database.ExecuteAsync($"UPDATE consents SET expires_at = '{fixture.Time.GetUtcNow().AddMinutes(-1):O}' WHERE id = '{consent}'");

        await using var other = await ChainHolderAsync();
        var expiry = Gateway.RunConsentExpiryAsync();
        await WaitForChainWaiterAsync();

        // What a feed read recording a disclosure does under the chain lock.
        await other.ExecuteAsync($"""
            INSERT INTO disclosures (consent_id, recipient_id, seeker_id, cv_version, content_hash, disclosed_at)
            SELECT id, recipient_id, seeker_id, 1, '\x00'::bytea, now() FROM consents WHERE id = '{consent}'
            """);
        await other.CommitAsync();

        Assert.True(await expiry >= 1);
        Assert.Equal(1L, await fixture.Database.ScalarAsync<long>(
            $"SELECT count(*) FROM erasure_obligations WHERE consent_id = '{consent}' AND cause = 'consent-expired' AND recipient_id = '{site.Id}'"));
    }

    /// <summary>A poll site that read a new seeker's CV: the consent it holds a copy under.</summary>
    private async Task<(TestSite Site, Guid Consent, string OperatorToken)> DisclosedConsentAsync()
    {
        var operatorToken = (await fixture.Actors.NewOperatorAsync()).Tokens.AccessToken;
        var site = await Sites.RegisterAsync(Gateway, operatorToken);
        var marker = "locks-" + Guid.NewGuid().ToString("N");
        var seeker = await Propagation.SeekerWithCvAsync(Gateway, fixture.Actors, marker);
        var consent = (await Sharing.TickAsync(Gateway, seeker.Tokens.AccessToken, site.Id)).GetProperty("id").GetGuid();
        await Propagation.ReadAsync(Gateway, await fixture.Actors.TokenAsync(site), marker);
        return (site, consent, operatorToken);
    }

    private async Task<HeldTransaction> ChainHolderAsync()
    {
        var holder = await HeldTransaction.BeginAsync(fixture.Database);
        await holder.ExecuteAsync($"SELECT pg_advisory_xact_lock({Locks.Chain})");
        return holder;
    }

    /// <summary>Until a session waits for an advisory lock (the chain lock is the only one held here).</summary>
    private Task WaitForChainWaiterAsync() => HeldTransaction.WaitForWaiterAsync(fixture.Database, "advisory");
}
