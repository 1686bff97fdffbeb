using System.Net;
using ExchangeGateway.Tests.Infrastructure;

namespace ExchangeGateway.Tests.Audit;

/// <summary>
/// Every event a site is sent to delete or to update its copy is named, by jti and site, in the audit row of the change
/// that caused it: the obligations table is an editable outbox, and a row deleted from it must still be provable from the
/// tamper-evident log. Checked on a new version (cv-updated), an untick (consent-revoked) and the freshness sweep
/// (cv-offline), against the obligations the table holds.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class ObligationTrailTests(GatewayFixture fixture)
{
    private GatewayFactory Gateway => fixture.Factory;

    [Fact]
    public async Task EachEventIsNamedInTheAuditRowOfTheChangeThatCausedIt()
    {
        var marker = "trail-" + Guid.NewGuid().ToString("N");
        var seeker = await Propagation.SeekerWithCvAsync(Gateway, fixture.Actors, marker);
        var unticked = await Sites.RegisterAsync(Gateway, fixture.Actors);
        var kept = await Sites.RegisterAsync(Gateway, fixture.Actors);
        foreach (var site in new[] { unticked, kept })
        {
            await Sharing.TickAsync(Gateway, seeker.Tokens.AccessToken, site.Id);
            await Propagation.ReadAsync(Gateway, await fixture.Actors.TokenAsync(site), marker);
        }

        using (var put = await Sharing.PutCvAsync(Gateway, seeker.Tokens.AccessToken, Sharing.Resume(marker + "-v2")))
        {
            Assert.Equal(HttpStatusCode.OK, put.StatusCode);
        }

        foreach (var site in new[] { unticked, kept })
        {
            var jti = await JtiAsync(site, "cv-updated");
            Assert.Equal([$"cv.published||{site.ClientId}"], await RowsNamingAsync(jti));
        }

        using (var untick = await Sharing.UntickAsync(Gateway, seeker.Tokens.AccessToken, unticked.Id))
        {
            Assert.Equal(HttpStatusCode.OK, untick.StatusCode);
        }

        Assert.Equal([$"consent.revoked|{unticked.ClientId}|"], await RowsNamingAsync(await JtiAsync(unticked, "consent-revoked")));

        // Stale: the sweep takes it offline and tells the site that still shares it.
        fixture.Time.Advance(TimeSpan.FromDays(91));
        await Gateway.RunFreshnessSweepAsync();
        Assert.Equal([$"cv.went-offline||{kept.ClientId}"], await RowsNamingAsync(await JtiAsync(kept, "cv-offline")));
    }

    private Task<string> JtiAsync(TestSite site, string cause) =>
        fixture.Database.ScalarAsync<string>($"SELECT jti::text FROM erasure_obligations WHERE recipient_id = '{site.Id}' AND cause = '{cause}'");

    /// <summary>
    /// The audit rows naming this jti, as "action|recipient of the row|site listed with the jti": an episode's end names
    /// its one event (erasureEvent), a change of the CV lists its events by site (erasureEvents, updateEvents).
    /// </summary>
    private Task<string[]> RowsNamingAsync(string jti) =>
        fixture.Database.ScalarAsync<string[]>($"""
            SELECT coalesce(array_agg(a.action || '|' || coalesce(CASE WHEN a.details::jsonb ->> 'erasureEvent' = '{jti}' THEN a.recipient END, '') || '|' || coalesce(listed ->> 'recipient', '')), ARRAY[]::text[])
            FROM audit_events a
            LEFT JOIN LATERAL (
                SELECT e FROM jsonb_array_elements(coalesce(a.details::jsonb -> 'erasureEvents', a.details::jsonb -> 'updateEvents', '[]'::jsonb)) AS e
                WHERE e ->> 'jti' = '{jti}') AS l(listed) ON true
            WHERE a.details::jsonb ->> 'erasureEvent' = '{jti}' OR listed IS NOT NULL
            """);
}
