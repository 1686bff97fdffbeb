using System.Net;
using System.Text.Json.Nodes;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.Extensions.Time.Testing;

namespace ExchangeGateway.Tests.Events;

/// <summary>
/// Promise 3's outbox: the erasure obligation is written in the same transaction as the change that makes a copy
/// unavailable. With the obligation's insert refused by the database, the change does not happen either (the site keeps
/// reading, as nothing was withdrawn); with the refusal gone, the same change goes through with its obligation. Each case
/// has a gateway on its own database, since the refusal would break every other test's changes.
/// </summary>
public sealed class ObligationOutboxTests
{
    [Theory]
    [InlineData("untick")]
    [InlineData("cv-erased")]
    [InlineData("account-erased")]
    [InlineData("site-suspended")]
    [InlineData("cv-offline")]
    public async Task AChangeWhoseObligationCannotBeWrittenDoesNotHappen(string change)
    {
        await using var database = await TestDatabase.CreateAsync();
        await using var gateway = new GatewayFactory(database, new FakeTimeProvider(DateTimeOffset.UtcNow));
        var actors = new Actors(gateway);
        var operatorToken = (await actors.NewOperatorAsync()).Tokens.AccessToken;
        var site = await Sites.RegisterAsync(gateway, operatorToken);
        var marker = "outbox-" + Guid.NewGuid().ToString("N");
        var seeker = await Propagation.SeekerWithCvAsync(gateway, actors, marker);
        await Sharing.TickAsync(gateway, seeker.Tokens.AccessToken, site.Id);
        var siteToken = await actors.TokenAsync(site);
        var id = await Propagation.ReadAsync(gateway, siteToken, marker);
        var obligations = $"SELECT count(*) FROM erasure_obligations WHERE pairwise_id = '{id}'";

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
            using (var answer = await MakeAsync(gateway, change, seeker, site, operatorToken))
            {
                Assert.Equal(HttpStatusCode.InternalServerError, answer.StatusCode);
            }

            // Nothing changed: the site still reads the CV under the same id.
            using var client = gateway.CreateHttpClient().WithToken(siteToken);
            using var still = await client.GetAsync($"{Sites.FeedPath}/{id}");
            var text = await still.Content.ReadAsStringAsync();
            Assert.True(still.StatusCode == HttpStatusCode.OK, $"{change}: the site's read answered {(int)still.StatusCode} {text}");
            Assert.Contains(marker, text, StringComparison.Ordinal);
        }

        Assert.Equal(0L, await database.ScalarAsync<long>(obligations));

        // The refusal gone, the same change goes through, with its obligation.
        await database.ExecuteAsync("DROP TRIGGER test_refuse_insert ON erasure_obligations; DROP FUNCTION test_refuse_insert();");
        if (change == "cv-offline")
        {
            Assert.Equal(1, await gateway.RunFreshnessSweepAsync());
            Assert.Equal("Offline", await database.ScalarAsync<string>($"SELECT state FROM cvs WHERE seeker_id = '{seeker.Id}'"));
        }
        else
        {
            using var answer = await MakeAsync(gateway, change, seeker, site, operatorToken);
            Assert.True(answer.IsSuccessStatusCode, $"{change}: answered {(int)answer.StatusCode}");
        }

        Assert.Equal(1L, await database.ScalarAsync<long>(obligations));
    }

    private static async Task<HttpResponseMessage> MakeAsync(GatewayFactory gateway, string change, Person seeker, TestSite site, string operatorToken)
    {
        using var me = gateway.CreateHttpClient().WithToken(seeker.Tokens.AccessToken);
        using var admin = gateway.CreateHttpClient().WithToken(operatorToken);
        return change switch
        {
            "untick" => await me.DeleteAsync($"/api/v1/me/consents/{site.Id}"),
            "cv-erased" => await me.DeleteAsync("/api/v1/me/cv"),
            "account-erased" => await me.DeleteAsync("/api/v1/me"),
            "site-suspended" => await admin.PostAsync($"/api/v1/admin/recipients/{site.Id}/suspend", Sharing.Json(new JsonObject { ["reason"] = "outbox test" })),
            _ => throw new ArgumentOutOfRangeException(nameof(change), change, "no such change"),
        };
    }
}
