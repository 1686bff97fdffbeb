using System.Net;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.Extensions.Time.Testing;

namespace ExchangeGateway.Tests.Cvs;

/// <summary>
/// Promise 4: after "forget me" nothing of the seeker is left, in any column of any table of any schema (Hangfire's
/// included), in the logs, or in the mail folder; the sites that held a copy are told. A host and database of its own,
/// so its logs are its own and the scan sees only what this story wrote.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class ErasureIsRealTests
{
    [Fact]
    public async Task AfterForgetMeNoTableLogOrMailHoldsTheSeekersNameEmailOrCv()
    {
        await using var database = await TestDatabase.CreateAsync();
        // Logging at Debug everywhere: a leak that only shows at Debug is still a leak once someone turns it on.
        await using var gateway = new GatewayFactory(database, new FakeTimeProvider(DateTimeOffset.UtcNow), captureLogs: true,
            settings: new Dictionary<string, string?>
            {
                ["Logging:LogLevel:Default"] = "Debug", ["Logging:LogLevel:Microsoft"] = "Debug", ["Logging:LogLevel:OpenIddict"] = "Debug",
                ["Logging:Console:LogLevel:Default"] = "Warning",
            });
        var actors = new Actors(gateway);
        await using var receiverA = await PushReceiver.StartAsync();
        await using var receiverB = await PushReceiver.StartAsync();
        var operatorToken = (await actors.NewOperatorAsync()).Tokens.AccessToken;
        var siteA = await Sites.RegisterAsync(gateway, operatorToken, SiteOptions.Push(receiverA.Endpoint));
        var siteB = await Sites.RegisterAsync(gateway, operatorToken, SiteOptions.Push(receiverB.Endpoint));

        var tag = Guid.NewGuid().ToString("N")[..16];
        var name = $"Forgotten Person {tag}n";
        var email = $"forget-{tag}e@example.test";
        var cvText = $"cvtext{tag}c";
        var seeker = await actors.NewSeekerAsync(email);
        using (var put = await Sharing.PutCvAsync(gateway, seeker.Tokens.AccessToken, Sharing.Resume(cvText, name, email)))
        {
            Assert.Equal(HttpStatusCode.Created, put.StatusCode);
        }

        foreach (var site in new[] { siteA, siteB })
        {
            await Sharing.TickAsync(gateway, seeker.Tokens.AccessToken, site.Id);
            await Propagation.ReadAsync(gateway, await actors.TokenAsync(site), cvText);
        }

        // More of a seeker's life than a CV and two shares, so their traces are there to be left behind: a wrong password on
        // the sign-in page, a password reset asked for, a refresh, an export.
        using (var browser = new Pages.PageSession(gateway))
        using (var wrong = await Actors.PostLoginFormAsync(browser.Http, new Uri("/Account/Login", UriKind.Relative), email, "not-the-password"))
        {
            Assert.Equal(HttpStatusCode.OK, wrong.StatusCode);
            using var reset = await browser.SubmitAsync("/Account/ForgotPassword", new() { ["Email"] = email });
            Assert.Equal(HttpStatusCode.OK, reset.StatusCode);
        }

        await Mailbox.SettledAsync(gateway);
        var mailBefore = (await Mailbox.FilesAsync(gateway)).ToHashSet();
        using (var me = gateway.CreateHttpClient().WithToken(seeker.Tokens.AccessToken))
        {
            Assert.Equal(HttpStatusCode.OK, (await me.PostAsync("/api/v1/me/cv/refresh", null)).StatusCode);
            Assert.Contains(cvText, await me.GetStringAsync("/api/v1/me/export"), StringComparison.Ordinal);
        }

        // The seeker's own id must go too: it is what would link the rows left behind back to the person.
        string[] markers = [$"{tag}n", $"{tag}e", $"{tag}c", seeker.Id];
        // The scan works: before erasure it finds the account.
        Assert.Contains(await DatabaseScan.FindAsync(database, markers), hit => hit.StartsWith("public.AspNetUsers.email:", StringComparison.Ordinal));

        using (var me = gateway.CreateHttpClient().WithToken(seeker.Tokens.AccessToken))
        {
            Assert.Equal(HttpStatusCode.OK, (await me.DeleteAsync("/api/v1/me")).StatusCode);
        }

        await gateway.RunDispatchAsync();
        var keys = await SecurityEventTokens.FetchKeysAsync(gateway);
        foreach (var (receiver, site) in new[] { (receiverA, siteA), (receiverB, siteB) })
        {
            var push = Assert.Single(receiver.Received);
            Assert.Equal("subject-erased", SecurityEventTokens.VerifyPush(push, keys, gateway.Issuer, site.ClientId).Cause);
            Assert.DoesNotContain(markers, m => SecurityEventTokens.Claims(push.Body).GetRawText().Contains(m, StringComparison.OrdinalIgnoreCase));
        }

        Assert.Empty(await DatabaseScan.FindAsync(database, markers));
        // The ledger keeps what chasing the copies needs, not the hash of what was sent: that would recognise a copy.
        Assert.Equal(2L, await database.ScalarAsync<long>("SELECT count(*) FROM disclosures WHERE seeker_id IS NULL"));
        Assert.Equal(0L, await database.ScalarAsync<long>("SELECT count(*) FROM disclosures WHERE content_hash IS NOT NULL"));

        // Audit rows name the seeker by pseudonym only, and there are such rows.
        var pseudonymous = await database.ScalarAsync<long>("SELECT count(*) FROM audit_events WHERE subject LIKE 'p\\_%'");
        Assert.True(pseudonymous >= 5, $"only {pseudonymous} audit rows about a seeker");

        Assert.NotEmpty(gateway.Logs!);
        var leaks = gateway.Logs!.Where(line => markers[..3].Any(m => line.Contains(m, StringComparison.OrdinalIgnoreCase))).ToList();
        Assert.True(leaks.Count == 0, "log lines with personal data:\n" + string.Join("\n", leaks.Take(5)));

        // Mail handed to the mail system before the erasure (the reset link) is the mail system's; nothing written since names them.
        await Mailbox.SettledAsync(gateway);
        var mail = (await Mailbox.FilesAsync(gateway)).Where(file => !mailBefore.Contains(file));
        Assert.DoesNotContain(mail, file => markers.Any(m => File.ReadAllText(file).Contains(m, StringComparison.OrdinalIgnoreCase)));
    }
}
