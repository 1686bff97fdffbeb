using System.Net;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.Extensions.Time.Testing;

namespace ExchangeGateway.Tests.Events;

/// <summary>
/// The other tests call the jobs themselves, so that they run when the test says. This one lets the real Hangfire server
/// (on PostgreSQL, the host's own storage) do it: an untick enqueues the dispatch after its commit, the server runs it,
/// and the site hears, with no test code in between. A database of its own, so the server runs only this story's jobs.
/// </summary>
public sealed class JobServerTests
{
    [Fact]
    public async Task AnUntickReachesThePushSiteThroughTheJobServerAlone()
    {
        await using var database = await TestDatabase.CreateAsync();
        // The recurring dispatch (every minute, on Hangfire's wall clock) is put off to a date this test never reaches: with
        // it, the push could come from that run instead of the enqueue after the untick's commit, and the test passed
        // without the immediate dispatch it is here to prove whenever a minute turned during its 30-second wait.
        await using var gateway = new GatewayFactory(database, new FakeTimeProvider(DateTimeOffset.UtcNow),
            settings: new Dictionary<string, string?>
            {
                ["Jobs:RunServer"] = "true", ["Jobs:Workers"] = "2", ["Jobs:Schedules:EventDispatch"] = "0 0 1 1 *",
            },
            captureLogs: true);
        var actors = new Actors(gateway);
        await using var receiver = await PushReceiver.StartAsync();
        var site = await Sites.RegisterAsync(gateway, actors, SiteOptions.Push(receiver.Endpoint));
        var marker = "job-server-" + Guid.NewGuid().ToString("N");
        var seeker = await Propagation.SeekerWithCvAsync(gateway, actors, marker);
        await Sharing.TickAsync(gateway, seeker.Tokens.AccessToken, site.Id);
        var id = await Propagation.ReadAsync(gateway, await actors.TokenAsync(site), marker);

        using (var untick = await Sharing.UntickAsync(gateway, seeker.Tokens.AccessToken, site.Id))
        {
            Assert.Equal(HttpStatusCode.OK, untick.StatusCode);
        }

        var received = await receiver.WaitForAsync(1, TimeSpan.FromSeconds(30));
        Assert.True(received.Count == 1, "no push; jobs: " + await database.ScalarAsync<string>("SELECT coalesce(string_agg(invocationdata::text || ' ' || coalesce(statename, '?'), E'\\n'), 'none') FROM hangfire.job")
            + "\n" + string.Join("\n", gateway.Logs!.Where(l => l.Contains("angfire", StringComparison.Ordinal) || l.Contains("ispatch", StringComparison.Ordinal)).TakeLast(20)));
        var push = received[0];
        var set = SecurityEventTokens.VerifyPush(push, await SecurityEventTokens.FetchKeysAsync(gateway), gateway.Issuer, site.ClientId);
        Assert.Equal(("consent-revoked", id), (set.Cause, set.SubjectId));
        // The receiver has answered 202; the dispatcher records the delivery after it, in its own time.
        var clock = System.Diagnostics.Stopwatch.StartNew();
        string status;
        while ((status = await database.ScalarAsync<string>($"SELECT status FROM erasure_obligations WHERE jti = '{set.Jti}'")) != "Delivered"
            && clock.Elapsed < TimeSpan.FromSeconds(30))
        {
            await Task.Delay(50);
        }

        Assert.Equal("Delivered", status);
    }
}
