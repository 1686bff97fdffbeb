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
    /// <summary>
    /// Promises 1 and 7 across a restore: a CV erased and a sharing ended after the backup come back with it, and are
    /// taken back again from the journal's rows past the point where it and the restored log part; those taken back before
    /// the backup, and given again since, stay. The restored nodes wrote rows of their own under the journal's numbers
    /// before the command ran, so the parting point is found by hash, not by number.
    /// </summary>
    [Fact]
    public async Task ACvErasedAndASharingEndedAfterTheBackupAreTakenBackAgainButNotThoseFromBefore()
    {
        await using var database = await TestDatabase.CreateAsync();
        var id = Guid.NewGuid().ToString("N");
        var (gone, ended, erasedBefore, endedBefore) = ("cv-gone-" + id, "sharing-ended-" + id, "erased-before-" + id, "ended-before-" + id);
        Person cvGone, unticker, earlyEraser, earlyUnticker;
        TestSite site;
        Uri issuer;
        await using (var first = new GatewayFactory(database, new FakeTimeProvider(DateTimeOffset.UtcNow)))
        {
            var actors = new Actors(first);
            issuer = first.Issuer;
            site = await Sites.RegisterAsync(first, actors);
            cvGone = await Propagation.SeekerWithCvAsync(first, actors, gone);
            unticker = await Propagation.SeekerWithCvAsync(first, actors, ended);
            earlyEraser = await Propagation.SeekerWithCvAsync(first, actors, "old-" + erasedBefore);
            earlyUnticker = await Propagation.SeekerWithCvAsync(first, actors, endedBefore);
            foreach (var person in new[] { cvGone, unticker, earlyEraser, earlyUnticker })
            {
                await Sharing.TickAsync(first, person.Tokens.AccessToken, site.Id);
            }

            var siteToken = await actors.TokenAsync(site);
            await Propagation.ReadAsync(first, siteToken, gone);

            // Before the backup: one seeker erases their CV and publishes another, one unticks and ticks again.
            using (var me = first.CreateHttpClient().WithToken(earlyEraser.Tokens.AccessToken))
            using (var erased = await me.DeleteAsync("/api/v1/me/cv"))
            {
                Assert.Equal(HttpStatusCode.NoContent, erased.StatusCode);
            }

            using (var put = await Sharing.PutCvAsync(first, earlyEraser.Tokens.AccessToken, Sharing.Resume(erasedBefore)))
            {
                Assert.True(put.IsSuccessStatusCode, $"publishing again answered {(int)put.StatusCode}");
            }

            await Sharing.TickAsync(first, earlyEraser.Tokens.AccessToken, site.Id);
            (await Sharing.UntickAsync(first, earlyUnticker.Tokens.AccessToken, site.Id)).Dispose();
            await Sharing.TickAsync(first, earlyUnticker.Tokens.AccessToken, site.Id);
            await Propagation.ReadAsync(first, siteToken, ended);
        }

        NpgsqlConnection.ClearAllPools();
        await using var backup = await TestDatabase.CreateAsync(database);
        var backupHead = await backup.ScalarAsync<long>("SELECT max(sequence) FROM audit_events");

        var journal = Path.Combine(Path.GetTempPath(), "eg-withdrawal-journal-" + Guid.NewGuid().ToString("N") + ".ndjson");
        try
        {
            await using (var primary = new GatewayFactory(database, new FakeTimeProvider(DateTimeOffset.UtcNow), issuer: issuer))
            {
                using (var me = primary.CreateHttpClient().WithToken(cvGone.Tokens.AccessToken))
                using (var erased = await me.DeleteAsync("/api/v1/me/cv"))
                {
                    Assert.Equal(HttpStatusCode.NoContent, erased.StatusCode);
                }

                using (var untick = await Sharing.UntickAsync(primary, unticker.Tokens.AccessToken, site.Id))
                {
                    Assert.Equal(HttpStatusCode.OK, untick.StatusCode);
                }

                using var auditor = primary.CreateHttpClient().WithToken(await new Actors(primary).AuditorClientTokenAsync());
                await File.WriteAllTextAsync(journal, await auditor.GetStringAsync("/api/v1/audit/events/export"));
            }

            // Restored, and serving a little before the command: the site reads both CVs again, under row numbers the
            // journal gives to the erasure and the untick.
            await using var restored = new GatewayFactory(backup, new FakeTimeProvider(DateTimeOffset.UtcNow), issuer: issuer);
            var token = await new Actors(restored).TokenAsync(site);
            async Task<List<string>> DocumentsAsync() =>
                [.. (await Sharing.ReadFeedAsync(restored, token)).Items.Where(i => i.GetProperty("kind").GetString() == "cv").Select(i => i.GetProperty("document").ToString())];
            var before = await DocumentsAsync();
            foreach (var marker in new[] { gone, ended, erasedBefore, endedBefore })
            {
                Assert.Contains(before, d => d.Contains(marker, StringComparison.Ordinal));
            }

            var output = new StringWriter();
            Assert.Equal(0, await ErasureCommands.RunAsync(restored.Services, ["erasures", "reapply", journal], output));
            var report = JsonDocument.Parse(output.ToString()).RootElement;
            Assert.Equal((backupHead, 0, 1, 1), (report.GetProperty("partedAfter").GetInt64(), report.GetProperty("reapplied").GetInt32(),
                report.GetProperty("cvsErased").GetInt32(), report.GetProperty("sharingsEnded").GetInt32()));

            var after = await DocumentsAsync();
            Assert.DoesNotContain(after, d => d.Contains(gone, StringComparison.Ordinal) || d.Contains(ended, StringComparison.Ordinal));
            Assert.Contains(after, d => d.Contains(erasedBefore, StringComparison.Ordinal));
            Assert.Contains(after, d => d.Contains(endedBefore, StringComparison.Ordinal));
            Assert.True(await backup.ScalarAsync<bool>($"""
                SELECT state = 'Erased' AND sealed IS NULL AND NOT EXISTS (SELECT 1 FROM seeker_keys k WHERE k.seeker_id = '{cvGone.Id}')
                FROM cvs WHERE seeker_id = '{cvGone.Id}'
                """), "the CV erased after the backup still has its content or its key");
            Assert.Equal(1L, await backup.ScalarAsync<long>(
                $"SELECT count(*) FROM consents WHERE seeker_id = '{unticker.Id}' AND state = 'Revoked' AND ended_at IS NOT NULL"));
            // The sites that had the copies are told again: the erased CV's and the ended sharing's.
            Assert.Equal(2L, await backup.ScalarAsync<long>($"""
                SELECT count(*) FROM erasure_obligations o JOIN consents c ON c.id = o.consent_id
                WHERE o.status = 'Pending' AND ((c.seeker_id = '{cvGone.Id}' AND o.cause = 'subject-erased') OR (c.seeker_id = '{unticker.Id}' AND o.cause = 'consent-revoked'))
                """));

            var twice = new StringWriter();
            Assert.Equal(0, await ErasureCommands.RunAsync(restored.Services, ["erasures", "reapply", journal], twice));
            var again = JsonDocument.Parse(twice.ToString()).RootElement;
            Assert.Equal((0, 0), (again.GetProperty("cvsErased").GetInt32(), again.GetProperty("sharingsEnded").GetInt32()));
        }
        finally
        {
            File.Delete(journal);
        }
    }
}
