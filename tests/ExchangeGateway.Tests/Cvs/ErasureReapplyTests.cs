using System.Net;
using System.Text.Json;
using ExchangeGateway.Cvs;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.Extensions.Time.Testing;
using Npgsql;

namespace ExchangeGateway.Tests.Cvs;

/// <summary>
/// Promise 4 across a restore: a backup taken before a "forget me" brings the account, the CV and its sharings back, and
/// the restored audit log has forgotten the erasure too. The audit export kept off-site is the journal that
/// `erasures reapply` erases them again from, with new erasure events for the sites.
/// </summary>
public sealed class ErasureReapplyTests
{
    [Fact]
    public async Task ADatabaseRestoredFromBeforeAnErasureIsErasedAgainFromTheExportedJournal()
    {
        await using var database = await TestDatabase.CreateAsync();
        var marker = "restored-" + Guid.NewGuid().ToString("N");
        Person seeker, keeper;
        TestSite site;
        Uri issuer;
        await using (var first = new GatewayFactory(database, new FakeTimeProvider(DateTimeOffset.UtcNow)))
        {
            var actors = new Actors(first);
            issuer = first.Issuer;
            site = await Sites.RegisterAsync(first, actors);
            seeker = await Propagation.SeekerWithCvAsync(first, actors, marker);
            keeper = await Propagation.SeekerWithCvAsync(first, actors, "kept-" + Guid.NewGuid().ToString("N"));
            foreach (var person in new[] { seeker, keeper })
            {
                await Sharing.TickAsync(first, person.Tokens.AccessToken, site.Id);
            }

            await Propagation.ReadAsync(first, await actors.TokenAsync(site), marker);
        }

        // The nightly backup: the database as it stands now, no session open on it.
        NpgsqlConnection.ClearAllPools();
        await using var backup = await TestDatabase.CreateAsync(database);

        // Then the seeker is forgotten, and the audit log's export leaves the database's backup set.
        var journal = Path.Combine(Path.GetTempPath(), "eg-erasure-journal-" + Guid.NewGuid().ToString("N") + ".ndjson");
        try
        {
            await using (var primary = new GatewayFactory(database, new FakeTimeProvider(DateTimeOffset.UtcNow), issuer: issuer))
            {
                using (var me = primary.CreateHttpClient().WithToken(seeker.Tokens.AccessToken))
                using (var forgotten = await me.DeleteAsync("/api/v1/me"))
                {
                    Assert.True(forgotten.IsSuccessStatusCode, $"forget me answered {(int)forgotten.StatusCode}");
                }

                using var auditor = primary.CreateHttpClient().WithToken(await new Actors(primary).AuditorClientTokenAsync());
                await File.WriteAllTextAsync(journal, await auditor.GetStringAsync("/api/v1/audit/events/export"));
            }

            // The primary is lost and the backup restored: the seeker is back, shared with the site, and nothing says otherwise.
            await using var restored = new GatewayFactory(backup, new FakeTimeProvider(DateTimeOffset.UtcNow), issuer: issuer);
            Assert.NotEmpty(await DatabaseScan.FindAsync(backup, seeker.Id));
            var siteToken = await new Actors(restored).TokenAsync(site);
            bool IsTheCv(JsonElement item) => item.GetProperty("kind").GetString() == "cv" && item.GetProperty("document").ToString().Contains(marker, StringComparison.Ordinal);
            Assert.Contains((await Sharing.ReadFeedAsync(restored, siteToken)).Items, IsTheCv);

            var output = new StringWriter();
            Assert.Equal(0, await ErasureCommands.RunAsync(restored.Services, ["erasures", "reapply", journal], output));
            var report = JsonDocument.Parse(output.ToString()).RootElement;
            Assert.Equal((1, 1), (report.GetProperty("journalErasures").GetInt32(), report.GetProperty("reapplied").GetInt32()));

            // Gone again, everywhere; the other seeker stays; the site is told to delete, as after the first erasure.
            Assert.Empty(await DatabaseScan.FindAsync(backup, seeker.Id, seeker.Email));
            Assert.Equal(1L, await backup.ScalarAsync<long>($"SELECT count(*) FROM \"AspNetUsers\" WHERE id = '{keeper.Id}'"));
            Assert.Equal(1L, await backup.ScalarAsync<long>(
                $"SELECT count(*) FROM erasure_obligations WHERE recipient_id = '{site.Id}' AND cause = 'subject-erased' AND status = 'Pending'"));
            Assert.DoesNotContain((await Sharing.ReadFeedAsync(restored, siteToken)).Items, IsTheCv);
            Assert.Equal(1L, await backup.ScalarAsync<long>("SELECT count(*) FROM audit_events WHERE action = 'seeker.erasures-reapplied'"));

            // Run twice (a restore retried), it finds nothing more to do.
            var twice = new StringWriter();
            Assert.Equal(0, await ErasureCommands.RunAsync(restored.Services, ["erasures", "reapply", journal], twice));
            Assert.Equal(0, JsonDocument.Parse(twice.ToString()).RootElement.GetProperty("reapplied").GetInt32());
        }
        finally
        {
            File.Delete(journal);
        }
    }
}
