using System.Net;
using ExchangeGateway.Auth;
using ExchangeGateway.Cvs;
using ExchangeGateway.Tests.Infrastructure;
using ExchangeGateway.Tests.Pages;
using Microsoft.AspNetCore.Identity;
using Microsoft.Extensions.DependencyInjection;

namespace ExchangeGateway.Tests.Cvs;

/// <summary>
/// Promise 4 against a token that outlives its account: after "forget me", the seeker's still-valid access token can
/// neither publish a CV nor share one, so nothing about the person is created again and no site can read it.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class WritesAfterErasureTests(GatewayFixture fixture)
{
    [Fact]
    public async Task AnErasedSeekersTokenCanNeitherPublishNorShareAndNothingIsWritten()
    {
        var seeker = await Propagation.SeekerWithCvAsync(fixture.Factory, fixture.Actors, "erased-then-written");
        var site = await Sharing.RecipientIdAsync(fixture.Factory, seeker.Tokens.AccessToken, "Démo Emploi");
        using var me = fixture.Client().WithToken(seeker.Tokens.AccessToken);
        Assert.Equal(HttpStatusCode.NoContent, (await me.DeleteAsync("/api/v1/me")).StatusCode);

        using (var put = await Sharing.PutCvAsync(fixture.Factory, seeker.Tokens.AccessToken, Sharing.Resume("written-after-erasure")))
        {
            var problem = await put.AssertProblemAsync(HttpStatusCode.Unauthorized);
            Assert.Contains("no longer exists", problem.GetProperty("detail").GetString(), StringComparison.Ordinal);
        }

        using (var tick = await me.PutAsync($"/api/v1/me/consents/{site}", null))
        {
            await tick.AssertProblemAsync(HttpStatusCode.Unauthorized);
        }

        foreach (var table in new[] { "cvs", "seeker_keys", "consents", "consent_events" })
        {
            Assert.Equal(0L, await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM {table} WHERE seeker_id = '{seeker.Id}'"));
        }

        // And "forget me" again is not needed: there is nothing to forget.
        Assert.Equal(HttpStatusCode.NotFound, (await me.DeleteAsync("/api/v1/me")).StatusCode);
    }

    /// <summary>
    /// A page session that outlived its account ends at its next page, before any form is shown; a request already past
    /// that check when the erasure commits writes nothing either (the writers check under the seeker lock).
    /// </summary>
    [Fact]
    public async Task APageSessionThatOutlivedItsAccountEndsAtItsNextPage()
    {
        var (session, email, _) = await PageSession.SignUpAsync(fixture.Factory);
        using (session)
        {
            string seekerId;
            await using (var scope = fixture.Factory.Services.CreateAsyncScope())
            {
                seekerId = (await scope.ServiceProvider.GetRequiredService<UserManager<GatewayUser>>().FindByEmailAsync(email))!.Id;
                // Erased from elsewhere (another device, or DELETE /api/v1/me), while this browser still holds its cookie.
                Assert.True(await scope.ServiceProvider.GetRequiredService<SeekerErasure>().EraseAsync(seekerId, CancellationToken.None));
            }

            using var response = await session.Http.GetAsync("/Sharing");
            Assert.Equal(HttpStatusCode.Redirect, response.StatusCode);
            Assert.Contains("/Account/Login", response.Headers.Location!.ToString(), StringComparison.Ordinal);
            Assert.Equal(0L, await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM consents WHERE seeker_id = '{seekerId}'"));
        }
    }
}
