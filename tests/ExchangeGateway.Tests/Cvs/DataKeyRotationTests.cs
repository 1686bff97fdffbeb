using System.Net;
using ExchangeGateway.Audit;
using ExchangeGateway.Cvs;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace ExchangeGateway.Tests.Cvs;

/// <summary>
/// Rotating the key that wraps the seekers' data keys, on two nodes of one deployment: the new key waits before use, both
/// nodes switch at its activation, the pass re-wraps every stored key and deletes the old wrapping key, and every CV
/// stays readable throughout, by its seeker and by the site it is shared with, on either node. A database of its own:
/// the rotation changes what every host on that database must know.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class DataKeyRotationTests
{
    [Fact]
    public async Task ARotationReWrapsEveryKeyDeletesTheOldOneAndNoCvIsLost()
    {
        await using var database = await TestDatabase.CreateAsync();
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var nodeA = new GatewayFactory(database, clock);
        var actors = new Actors(nodeA);
        var site = await Sites.RegisterAsync(nodeA, (await actors.NewOperatorAsync()).Tokens.AccessToken);
        await using var nodeB = new GatewayFactory(database, clock, issuer: nodeA.Issuer);
        nodeB.StartServer();

        var old = nodeA.Services.GetRequiredService<DataKeyRing>().Current;
        var before = await Propagation.SeekerWithCvAsync(nodeA, actors, "rotation-before");
        await Sharing.TickAsync(nodeA, before.Tokens.AccessToken, site.Id);

        // The command adds the key and schedules the pass; nothing wraps with the new key until it activates.
        Assert.Equal(0, await ExchangeGateway.Hosting.KeyCommands.RunAsync(nodeA.Services, ["keys", "rotate-data-key"]));
        Assert.Equal(2L, await database.ScalarAsync<long>(
            "SELECT count(*) FROM hangfire.job WHERE statename = 'Scheduled' AND invocationdata::text LIKE '%DataKeyRotationJob%'"));
        var waiting = await Propagation.SeekerWithCvAsync(nodeB, new Actors(nodeB), "rotation-waiting");
        await Sharing.TickAsync(nodeB, waiting.Tokens.AccessToken, site.Id);
        Assert.Equal(2L, await WrappedUnderAsync(database, old.KeyId));

        clock.Advance(TimeSpan.FromMinutes(11));
        var current = nodeA.Services.GetRequiredService<DataKeyRing>().Current;
        Assert.NotEqual(DataKeyRing.Name(old.KeyId), DataKeyRing.Name(current.KeyId));
        Assert.Equal(DataKeyRing.Name(current.KeyId), DataKeyRing.Name(nodeB.Services.GetRequiredService<DataKeyRing>().Current.KeyId));
        var after = await Propagation.SeekerWithCvAsync(nodeA, actors, "rotation-after");
        await Sharing.TickAsync(nodeA, after.Tokens.AccessToken, site.Id);
        Assert.Equal(1L, await WrappedUnderAsync(database, current.KeyId));
        // Node B meets a key wrapped under the new key on the site's read, and both older forms: all open.
        var (feed, _) = await Sharing.ReadFeedAsync(nodeB, await new Actors(nodeB).TokenAsync(site));
        Assert.All(new[] { "rotation-before", "rotation-waiting", "rotation-after" }, marker => Assert.NotNull(Sharing.PairwiseIdOf(feed, marker)));

        // A minute after activation: every stored key re-wrapped, the old wrapping key kept a while longer (a write that
        // wrapped under it just before the switch could still be committing).
        DataKeyRotationResult result;
        await using (var scope = nodeA.Services.CreateAsyncScope())
        {
            result = await scope.ServiceProvider.GetRequiredService<DataKeyRotationJob>().RunAsync(CancellationToken.None);
        }

        Assert.Empty(result.Retired);
        Assert.Equal(2L, await database.ScalarAsync<long>("SELECT count(*) FROM data_key_wrapping_keys"));
        clock.Advance(TimeSpan.FromMinutes(10));
        await using (var scope = nodeA.Services.CreateAsyncScope())
        {
            var retiring = await scope.ServiceProvider.GetRequiredService<DataKeyRotationJob>().RunAsync(CancellationToken.None);
            Assert.Equal(0, retiring.Rewrapped);
            result = result with { Retired = retiring.Retired };
        }

        var stored = await database.ScalarAsync<long>("SELECT count(*) FROM seeker_keys");
        Assert.True(result.Rewrapped >= 2, $"re-wrapped {result.Rewrapped}");
        Assert.Equal(0, result.Unreadable);
        Assert.Equal([DataKeyRing.Name(old.KeyId)], result.Retired);
        Assert.Equal(stored, await WrappedUnderAsync(database, current.KeyId));
        Assert.Equal(1L, await database.ScalarAsync<long>("SELECT count(*) FROM data_key_wrapping_keys"));
        Assert.Equal(2L, await database.ScalarAsync<long>($"SELECT count(*) FROM audit_events WHERE action = '{AuditActions.DataKeysRewrapped}'"));
        Assert.Equal(1L, await database.ScalarAsync<long>($"SELECT count(*) FROM audit_events WHERE action = '{AuditActions.DataKeyAdded}'"));

        // Every CV still opens, for its seeker and for the site, on both nodes; the old wrapping key is no longer needed.
        foreach (var (node, seeker, marker) in new[] { (nodeB, before, "rotation-before"), (nodeA, waiting, "rotation-waiting"), (nodeB, after, "rotation-after") })
        {
            using var me = node.CreateHttpClient().WithToken(await new Actors(node).FreshTokenAsync(seeker));
            using var cv = await me.GetAsync("/api/v1/me/cv");
            Assert.Equal(HttpStatusCode.OK, cv.StatusCode);
            Assert.Contains(marker, await cv.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        (feed, _) = await Sharing.ReadFeedAsync(nodeA, await actors.TokenAsync(site));
        Assert.Equal(3, feed.Count(item => item.GetProperty("kind").GetString() == "cv"));

        // A second pass has nothing left to do.
        await using (var scope = nodeB.Services.CreateAsyncScope())
        {
            var again = await scope.ServiceProvider.GetRequiredService<DataKeyRotationJob>().RunAsync(CancellationToken.None);
            Assert.Equal((0, 0), (again.Rewrapped, again.Unreadable));
            Assert.Empty(again.Retired);
        }
    }

    private static Task<long> WrappedUnderAsync(TestDatabase database, byte[] keyId) => database.ScalarAsync<long>(
        $"SELECT count(*) FROM seeker_keys WHERE {CvSealer.WrappingKeyIdSql} = '\\x{Convert.ToHexStringLower(keyId)}'::bytea");
}
