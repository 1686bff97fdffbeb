using System.Net;
using ExchangeGateway.Tests.Infrastructure;

namespace ExchangeGateway.Tests.Events;

/// <summary>
/// A consent ends once. When the gateway ends it (expiry, suspension) while the seeker unticks or erases, whichever
/// commits first decides the state, the receipt and the cause the site is told; the other must see the consent is no
/// longer active instead of overwriting it. Each test ends the consent on a connection of its own and keeps the row
/// locked while the seeker's request starts, as the expiry job would.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class ConcurrentEndTests(GatewayFixture fixture)
{
    private GatewayFactory Gateway => fixture.Factory;

    [Fact]
    public async Task AnUntickRacingAnExpiryThatCommitsFirstFindsNothingToRevoke()
    {
        var (seeker, site, consent) = await SharedAndReadAsync();

        await using (var expiry = await ExpireUncommittedAsync(consent))
        {
            var untick = Sharing.UntickAsync(Gateway, seeker.Tokens.AccessToken, site.Id);
            await WaitForRowLockWaiterAsync();
            await expiry.CommitAsync();
            using var response = await untick;
            Assert.Equal(HttpStatusCode.NoContent, response.StatusCode);
        }

        Assert.Equal("Expired", await fixture.Database.ScalarAsync<string>($"SELECT state FROM consents WHERE id = '{consent}'"));
        Assert.Equal(0L, await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM consent_events WHERE consent_id = '{consent}' AND kind = 'Revoked'"));
        Assert.Equal(0L, await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM erasure_obligations WHERE consent_id = '{consent}'"));
    }

    [Fact]
    public async Task AnErasureRacingAnExpiryThatCommitsFirstLeavesTheConsentExpired()
    {
        var (seeker, _, consent) = await SharedAndReadAsync();

        await using (var expiry = await ExpireUncommittedAsync(consent))
        {
            using var me = Gateway.CreateHttpClient().WithToken(seeker.Tokens.AccessToken);
            var forget = me.DeleteAsync("/api/v1/me");
            await WaitForRowLockWaiterAsync();
            await expiry.CommitAsync();
            using var response = await forget;
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        Assert.Equal("Expired", await fixture.Database.ScalarAsync<string>($"SELECT state FROM consents WHERE id = '{consent}'"));
        Assert.Equal(0L, await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM erasure_obligations WHERE consent_id = '{consent}' AND cause = 'subject-erased'"));
        // The person is gone from the episode all the same.
        Assert.Equal(0L, await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM consents WHERE id = '{consent}' AND seeker_id IS NOT NULL"));
    }

    /// <summary>
    /// "Forget me" while the same seeker finishes a password reset (or confirms an address) in another tab: the account's
    /// row changes under the erasure. The erasure must wait for that change and delete the account as it then is, not fail
    /// on Identity's concurrency stamp with a 500 and erase nothing.
    /// </summary>
    [Fact]
    public async Task AnErasureRacingAnAccountChangeWaitsForItAndErasesAll()
    {
        var (seeker, _, consent) = await SharedAndReadAsync();
        await using (var reset = await HeldTransaction.BeginAsync(fixture.Database))
        {
            Assert.Equal(1, await reset.ExecuteAsync(
                $"UPDATE \"AspNetUsers\" SET security_stamp = '{Guid.NewGuid():N}', concurrency_stamp = '{Guid.NewGuid()}' WHERE id = '{seeker.Id}'"));
            using var me = Gateway.CreateHttpClient().WithToken(seeker.Tokens.AccessToken);
            var forget = me.DeleteAsync("/api/v1/me");
            await WaitForRowLockWaiterAsync();
            await reset.CommitAsync();
            using var response = await forget;
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        Assert.Equal(0L, await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM \"AspNetUsers\" WHERE id = '{seeker.Id}'"));
        Assert.Equal(0L, await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM consents WHERE id = '{consent}' AND seeker_id IS NOT NULL"));
        Assert.Equal(1L, await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM erasure_obligations WHERE consent_id = '{consent}' AND cause = 'subject-erased'"));
    }

    private async Task<(Person Seeker, TestSite Site, Guid Consent)> SharedAndReadAsync()
    {
        var site = await Sites.RegisterAsync(Gateway, fixture.Actors);
        var marker = "race-" + Guid.NewGuid().ToString("N");
        var seeker = await Propagation.SeekerWithCvAsync(Gateway, fixture.Actors, marker);
        var consent = (await Sharing.TickAsync(Gateway, seeker.Tokens.AccessToken, site.Id)).GetProperty("id").GetGuid();
        await Propagation.ReadAsync(Gateway, await fixture.Actors.TokenAsync(site), marker);
        return (seeker, site, consent);
    }

    /// <summary>The expiry's write to the consent row, not yet committed: the row stays locked until CommitAsync.</summary>
    private async Task<HeldTransaction> ExpireUncommittedAsync(Guid consent)
    {
        var expiry = await HeldTransaction.BeginAsync(fixture.Database);
        Assert.Equal(1, await expiry.ExecuteAsync(
            $"UPDATE consents SET state = 'Expired', end_cause = 'consent-expired', ended_at = now() WHERE id = '{consent}' AND state = 'Active'"));
        return expiry;
    }

    private Task WaitForRowLockWaiterAsync() => HeldTransaction.WaitForWaiterAsync(fixture.Database, "transactionid", "tuple");
}
