using System.Net;
using System.Text.Json.Nodes;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.Extensions.Time.Testing;

namespace ExchangeGateway.Tests.Events;

/// <summary>
/// Promise 3's outbox: the erasure obligation (or the cv-updated notice) is written in the same transaction as the change
/// that causes it. With the obligation's insert refused by the database, the change does not happen either (the site keeps
/// reading, as nothing was withdrawn; a lapsed episode stays as it was, with no receipt and no audit record); with the
/// refusal gone, the same change goes through with exactly its obligation. Each case has a gateway on its own database,
/// since the refusal would break every other test's changes.
/// </summary>
public sealed class ObligationOutboxTests
{
    [Theory]
    [InlineData("untick", "erasure-required consent-revoked")]
    [InlineData("cv-erased", "erasure-required subject-erased")]
    [InlineData("account-erased", "erasure-required subject-erased")]
    [InlineData("site-suspended", "erasure-required recipient-suspended")]
    [InlineData("cv-offline", "erasure-required cv-offline")]
    [InlineData("expiry-job", "erasure-required consent-expired")]
    [InlineData("lapsed-untick", "erasure-required consent-expired")]
    [InlineData("lapsed-tick", "erasure-required consent-expired")]
    [InlineData("new-version", "cv-updated cv-updated")]
    public async Task AChangeWhoseObligationCannotBeWrittenDoesNotHappen(string change, string obligation)
    {
        await using var database = await TestDatabase.CreateAsync();
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var gateway = new GatewayFactory(database, time);
        var actors = new Actors(gateway);
        var operatorToken = (await actors.NewOperatorAsync()).Tokens.AccessToken;
        var site = await Sites.RegisterAsync(gateway, operatorToken);
        var marker = "outbox-" + Guid.NewGuid().ToString("N");
        var newMarker = "outbox-v2-" + Guid.NewGuid().ToString("N");
        var seeker = await Propagation.SeekerWithCvAsync(gateway, actors, marker);
        await Sharing.TickAsync(gateway, seeker.Tokens.AccessToken, site.Id);
        var siteToken = await actors.TokenAsync(site);
        var id = await Propagation.ReadAsync(gateway, siteToken, marker);
        var seekerToken = seeker.Tokens.AccessToken;
        var lapses = change is "expiry-job" or "lapsed-untick" or "lapsed-tick";
        if (lapses)
        {
            // A year and a day on, the episode has lapsed and no expiry job has come round: the job, or the seeker's next
            // tick or untick, is what ends it.
            time.Advance(TimeSpan.FromDays(366));
            seekerToken = await actors.FreshTokenAsync(seeker);
        }

        const string Obligations = "SELECT coalesce(string_agg(pairwise_id || ' ' || kind || ' ' || cause, ', '), '') FROM erasure_obligations";
        var episodeState = $"SELECT state FROM consents WHERE pairwise_id = '{id}'";
        var expiredReceipts = $"SELECT count(*) FROM consent_events e JOIN consents c ON c.id = e.consent_id WHERE c.pairwise_id = '{id}' AND e.kind = 'Expired'";
        var expiredAudit = "SELECT count(*) FROM audit_events WHERE action = 'consent.expired'";
        var episodes = $"SELECT count(*) FROM consents WHERE seeker_id = '{seeker.Id}'";

        await database.ExecuteAsync("""
            CREATE FUNCTION test_refuse_insert() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'refused-by-the-test' USING ERRCODE = 'P0001';
            END
            $$;
            CREATE TRIGGER test_refuse_insert BEFORE INSERT ON erasure_obligations FOR EACH ROW EXECUTE FUNCTION test_refuse_insert();
            """);

        if (change == "cv-offline")
        {
            // Not refreshed for longer than Freshness:MaxAge: the sweep's to take offline.
            await database.ExecuteAsync($"UPDATE cvs SET refreshed_at = refreshed_at - interval '91 days' WHERE seeker_id = '{seeker.Id}'");
            await Assert.ThrowsAnyAsync<Exception>(() => gateway.RunFreshnessSweepAsync());
            Assert.Equal("Published", await database.ScalarAsync<string>($"SELECT state FROM cvs WHERE seeker_id = '{seeker.Id}'"));
        }
        else
        {
            if (change == "expiry-job")
            {
                await Assert.ThrowsAnyAsync<Exception>(() => gateway.RunConsentExpiryAsync());
            }
            else
            {
                using var answer = await MakeAsync(gateway, change, seekerToken, site, operatorToken, newMarker);
                Assert.Equal(HttpStatusCode.InternalServerError, answer.StatusCode);
            }

            if (lapses)
            {
                // The lapsed episode was not ended: no receipt, no audit record, and no new episode beside it.
                Assert.Equal("Active", await database.ScalarAsync<string>(episodeState));
                Assert.Equal(0L, await database.ScalarAsync<long>(expiredReceipts));
                Assert.Equal(0L, await database.ScalarAsync<long>(expiredAudit));
                Assert.Equal(1L, await database.ScalarAsync<long>(episodes));
            }
            else
            {
                // Nothing changed: the site still reads the CV (the version it read) under the same id.
                using var client = gateway.CreateHttpClient().WithToken(siteToken);
                using var still = await client.GetAsync($"{Sites.FeedPath}/{id}");
                var text = await still.Content.ReadAsStringAsync();
                Assert.True(still.StatusCode == HttpStatusCode.OK, $"{change}: the site's read answered {(int)still.StatusCode} {text}");
                Assert.Contains(marker, text, StringComparison.Ordinal);
                Assert.DoesNotContain(newMarker, text, StringComparison.Ordinal);
                Assert.Equal(1, await database.ScalarAsync<int>($"SELECT version FROM cvs WHERE seeker_id = '{seeker.Id}'"));
            }
        }

        Assert.Equal("", await database.ScalarAsync<string>(Obligations));

        // The refusal gone, the same change goes through, with its obligation.
        await database.ExecuteAsync("DROP TRIGGER test_refuse_insert ON erasure_obligations; DROP FUNCTION test_refuse_insert();");
        if (change == "cv-offline")
        {
            Assert.Equal(1, await gateway.RunFreshnessSweepAsync());
            Assert.Equal("Offline", await database.ScalarAsync<string>($"SELECT state FROM cvs WHERE seeker_id = '{seeker.Id}'"));
        }
        else if (change == "expiry-job")
        {
            Assert.Equal(1, await gateway.RunConsentExpiryAsync());
        }
        else
        {
            using var answer = await MakeAsync(gateway, change, seekerToken, site, operatorToken, newMarker);
            Assert.True(answer.IsSuccessStatusCode, $"{change}: answered {(int)answer.StatusCode}");
        }

        if (lapses)
        {
            Assert.Equal("Expired", await database.ScalarAsync<string>(episodeState));
            Assert.Equal(1L, await database.ScalarAsync<long>(expiredReceipts));
            Assert.Equal(1L, await database.ScalarAsync<long>(expiredAudit));
        }

        if (change == "new-version")
        {
            Assert.Equal(2, await database.ScalarAsync<int>($"SELECT version FROM cvs WHERE seeker_id = '{seeker.Id}'"));
        }

        Assert.Equal($"{id} {obligation}", await database.ScalarAsync<string>(Obligations));
    }

    private static async Task<HttpResponseMessage> MakeAsync(
        GatewayFactory gateway, string change, string seekerToken, TestSite site, string operatorToken, string newMarker)
    {
        using var me = gateway.CreateHttpClient().WithToken(seekerToken);
        using var admin = gateway.CreateHttpClient().WithToken(operatorToken);
        return change switch
        {
            "untick" or "lapsed-untick" => await me.DeleteAsync($"/api/v1/me/consents/{site.Id}"),
            "lapsed-tick" => await me.PutAsync($"/api/v1/me/consents/{site.Id}", null),
            "cv-erased" => await me.DeleteAsync("/api/v1/me/cv"),
            "account-erased" => await me.DeleteAsync("/api/v1/me"),
            "site-suspended" => await admin.PostAsync($"/api/v1/admin/recipients/{site.Id}/suspend", Sharing.Json(new JsonObject { ["reason"] = "outbox test" })),
            "new-version" => await Sharing.PutCvAsync(gateway, seekerToken, Sharing.Resume(newMarker)),
            _ => throw new ArgumentOutOfRangeException(nameof(change), change, "no such change"),
        };
    }
}
