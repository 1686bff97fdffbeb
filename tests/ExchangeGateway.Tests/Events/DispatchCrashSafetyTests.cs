using ExchangeGateway.Events;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.Extensions.Time.Testing;
using Microsoft.IdentityModel.Tokens;
using Npgsql;

namespace ExchangeGateway.Tests.Events;

/// <summary>Two gateway nodes on one database of their own, sharing one clock, and one receiver for their push sites.</summary>
public sealed class TwoNodes : IAsyncLifetime
{
    public TestDatabase Database { get; private set; } = null!;
    public FakeTimeProvider Time { get; } = new(DateTimeOffset.UtcNow);
    public GatewayFactory First { get; private set; } = null!;
    public GatewayFactory Second { get; private set; } = null!;
    public Actors Actors { get; private set; } = null!;
    public PushReceiver Receiver { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Database = await TestDatabase.CreateAsync();
        // Small batches, so both nodes keep coming back for more while the other is delivering.
        var settings = new Dictionary<string, string?> { ["Delivery:BatchSize"] = "25" };
        First = new GatewayFactory(Database, Time, settings: settings);
        First.StartServer();
        Second = new GatewayFactory(Database, Time, issuer: First.Issuer, settings: settings);
        Second.StartServer();
        Actors = new Actors(First);
        Receiver = await PushReceiver.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await Receiver.DisposeAsync();
        await Second.DisposeAsync();
        await First.DisposeAsync();
        await Database.DisposeAsync();
    }

    /// <summary>Push sites pointing at the receiver, with <paramref name="seekers"/> seekers sharing with each and each site having read them.</summary>
    public async Task<List<TestSite>> SitesHoldingCopiesAsync(int sites, int seekers)
    {
        var operatorToken = (await Actors.NewOperatorAsync()).Tokens.AccessToken;
        var registered = new List<TestSite>();
        for (var i = 0; i < sites; i++)
        {
            registered.Add(await Sites.RegisterAsync(First, operatorToken, SiteOptions.Push(Receiver.Endpoint)));
        }

        var markers = new List<string>();
        for (var i = 0; i < seekers; i++)
        {
            var marker = "crash-" + Guid.NewGuid().ToString("N");
            var seeker = await Propagation.SeekerWithCvAsync(First, Actors, marker);
            foreach (var site in registered)
            {
                await Sharing.TickAsync(First, seeker.Tokens.AccessToken, site.Id);
            }

            markers.Add(marker);
        }

        foreach (var site in registered)
        {
            var (items, _) = await Sharing.ReadFeedAsync(Second, await Actors.TokenAsync(site));
            Assert.All(markers, m => Assert.NotNull(Sharing.PairwiseIdOf(items, m)));
        }

        return registered;
    }

    /// <summary>Writes <paramref name="perConsent"/> due erasure obligations for every consent to these sites, set-based.</summary>
    public async Task<HashSet<Guid>> InsertObligationsAsync(IEnumerable<TestSite> sites, int perConsent)
    {
        await using var connection = await Database.OpenOwnerConnectionAsync();
        await using var insert = new NpgsqlCommand(
            """
            INSERT INTO erasure_obligations (jti, recipient_id, consent_id, pairwise_id, kind, cause, created_at, confirm_before, status, overdue, attempts, next_attempt_at)
            SELECT gen_random_uuid(), c.recipient_id, c.id, c.pairwise_id, 'erasure-required', 'consent-revoked', $1, $1 + interval '72 hours', 'Pending', false, 0, $1
            FROM consents c CROSS JOIN generate_series(1, $2)
            WHERE c.recipient_id = ANY($3)
            RETURNING jti
            """,
            connection)
        {
            Parameters = { new() { Value = Time.GetUtcNow() }, new() { Value = perConsent }, new() { Value = sites.Select(s => s.Id).ToArray() } },
        };
        var jtis = new HashSet<Guid>();
        await using var reader = await insert.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            jtis.Add(reader.GetGuid(0));
        }

        return jtis;
    }

    public async Task<Dictionary<Guid, (string Status, int Attempts)>> StatesAsync(IEnumerable<Guid> jtis)
    {
        await using var connection = await Database.OpenOwnerConnectionAsync();
        await using var select = new NpgsqlCommand("SELECT jti, status, attempts FROM erasure_obligations WHERE jti = ANY($1)", connection)
        {
            Parameters = { new() { Value = jtis.ToArray() } },
        };
        var states = new Dictionary<Guid, (string, int)>();
        await using var reader = await select.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            states[reader.GetGuid(0)] = (reader.GetString(1), reader.GetInt32(2));
        }

        return states;
    }
}

/// <summary>
/// The table is the queue (promise 3, "crashes and restarts lose none"): nodes racing for the same work deliver every
/// event exactly once, and a batch claimed by a node that then died is delivered by another once its lease runs out.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class DispatchCrashSafetyTests(TwoNodes nodes) : IClassFixture<TwoNodes>
{
    [Fact]
    public async Task TwoNodesDispatchingAtOnceDeliverEachOfAThousandEventsExactlyOnce()
    {
        var sites = await nodes.SitesHoldingCopiesAsync(sites: 2, seekers: 5);
        var jtis = await nodes.InsertObligationsAsync(sites, perConsent: 100);
        Assert.Equal(1000, jtis.Count);
        nodes.Receiver.Default = new PushReply(202, Delay: TimeSpan.FromMilliseconds(2));
        var before = nodes.Receiver.Received.Count;

        var delivered = await Task.WhenAll(nodes.First.RunDispatchAsync(), nodes.Second.RunDispatchAsync());

        Assert.Equal(1000, delivered.Sum());
        Assert.True(delivered.All(d => d > 0), $"one node did all the work ({delivered[0]} / {delivered[1]}): no race was tested");
        var received = nodes.Receiver.Received.Skip(before).Select(r => r.Body).ToList();
        Assert.Equal(1000, received.Count);
        var keys = await SecurityEventTokens.FetchKeysAsync(nodes.Second);
        var receivedJtis = received.Select(set => VerifiedJti(set, sites, keys)).ToList();
        Assert.Equal(1000, receivedJtis.Distinct().Count());
        Assert.True(jtis.SetEquals(receivedJtis));
        Assert.All((await nodes.StatesAsync(jtis)).Values, state => Assert.Equal(("Delivered", 1), state));
        // Recorded rows hold no lease any more: nothing is left reserved once the runs are over.
        Assert.Equal(0L, await nodes.Database.ScalarAsync<long>(
            $"SELECT count(*) FROM erasure_obligations WHERE jti IN ({string.Join(", ", jtis.Select(j => $"'{j}'"))}) AND leased_until IS NOT NULL"));
    }

    [Fact]
    public async Task ABatchClaimedByANodeThatDiedIsDeliveredAfterItsLeaseWithTheSameJtis()
    {
        var sites = await nodes.SitesHoldingCopiesAsync(sites: 1, seekers: 3);
        var jtis = await nodes.InsertObligationsAsync(sites, perConsent: 10);
        var before = nodes.Receiver.Received.Count;

        // A node claims the due batch exactly as EventDispatchJob does, then dies before sending or recording anything.
        var claimed = await ClaimLikeTheDispatcherAsync(lease: TimeSpan.FromMinutes(2));
        Assert.True(jtis.IsSubsetOf(claimed));

        // Leased: the other node leaves the batch alone...
        Assert.Equal(0, await nodes.Second.RunDispatchAsync());
        nodes.Time.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal(0, await nodes.First.RunDispatchAsync());
        Assert.Equal(before, nodes.Receiver.Received.Count);

        // ...until the lease has run out; then it is delivered, once, under the jtis it always had.
        nodes.Time.Advance(TimeSpan.FromMinutes(1) + TimeSpan.FromSeconds(1));
        Assert.Equal(jtis.Count, await nodes.Second.RunDispatchAsync());
        var keys = await SecurityEventTokens.FetchKeysAsync(nodes.First);
        var receivedJtis = nodes.Receiver.Received.Skip(before).Select(r => VerifiedJti(r.Body, sites, keys)).ToList();
        Assert.Equal(jtis.Count, receivedJtis.Count);
        Assert.True(jtis.SetEquals(receivedJtis));
        Assert.All((await nodes.StatesAsync(jtis)).Values, state => Assert.Equal(("Delivered", 2), state));
    }

    [Fact]
    public async Task PostgreSqlGoingAwayInTheMiddleOfADispatchLosesNoEvent()
    {
        var sites = await nodes.SitesHoldingCopiesAsync(sites: 1, seekers: 3);
        var jtis = await nodes.InsertObligationsAsync(sites, perConsent: 20);
        var before = nodes.Receiver.Received.Count;
        // Slow enough that the database goes away while events are on the wire and batches are still to be recorded.
        nodes.Receiver.Default = new PushReply(202, Delay: TimeSpan.FromMilliseconds(60));

        var server = new NpgsqlConnectionStringBuilder(nodes.Database.AppConnectionString);
        await using var proxy = new TcpProxy(server.Host!, server.Port);
        proxy.Start();
        var throughProxy = new NpgsqlConnectionStringBuilder(nodes.Database.AppConnectionString)
        {
            Port = proxy.Port, Pooling = false, Timeout = 2,
        }.ConnectionString;
        await using (var node = new GatewayFactory(
            nodes.Database, nodes.Time, issuer: nodes.First.Issuer, appConnectionString: throughProxy,
            settings: new Dictionary<string, string?> { ["Delivery:BatchSize"] = "10" }))
        {
            node.StartServer();
            var run = node.RunDispatchAsync();
            var deadline = DateTime.UtcNow.AddSeconds(20);
            while (nodes.Receiver.Received.Count - before < 5 && DateTime.UtcNow < deadline)
            {
                await Task.Delay(10);
            }

            proxy.Stop();
            var receivedBeforeTheCut = nodes.Receiver.Received.Count - before;
            Assert.InRange(receivedBeforeTheCut, 5, jtis.Count - 1);
            await Assert.ThrowsAnyAsync<Exception>(() => run);
        }

        // The database is back (the other node never lost it); what was claimed waits for its lease, then goes out again
        // under the same jti. Every event arrives; none is lost, and a repeat carries the jti the site already knows.
        nodes.Receiver.Default = PushReply.Accepted;
        nodes.Time.Advance(TimeSpan.FromMinutes(2) + TimeSpan.FromSeconds(1));
        while (await nodes.First.RunDispatchAsync() > 0)
        {
        }

        var keys = await SecurityEventTokens.FetchKeysAsync(nodes.First);
        var receivedJtis = nodes.Receiver.Received.Skip(before).Select(r => VerifiedJti(r.Body, sites, keys)).ToList();
        Assert.True(jtis.SetEquals(receivedJtis.ToHashSet()));
        Assert.True(receivedJtis.GroupBy(j => j).All(g => g.Count() <= 2));
        Assert.All((await nodes.StatesAsync(jtis)).Values, state => Assert.Equal("Delivered", state.Status));
    }

    /// <summary>EventDispatchJob's claim statement, run on its own connection (whose node then vanishes).</summary>
    private async Task<HashSet<Guid>> ClaimLikeTheDispatcherAsync(TimeSpan lease)
    {
        var now = nodes.Time.GetUtcNow();
        await using var connection = await nodes.Database.OpenOwnerConnectionAsync();
        await using var claim = new NpgsqlCommand(EventDispatchJob.ClaimSql, connection)
        {
            Parameters = { new() { Value = now }, new() { Value = 500 }, new() { Value = now + lease }, new() { Value = 500 } },
        };
        var claimed = new HashSet<Guid>();
        await using var reader = await claim.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            claimed.Add(reader.GetGuid(1));
        }

        return claimed;
    }

    /// <summary>The jti of a SET that verifies for the one of these sites it is addressed to.</summary>
    private Guid VerifiedJti(string set, IEnumerable<TestSite> sites, JsonWebKeySet keys)
    {
        var audience = SecurityEventTokens.Claims(set).GetProperty("aud").GetString();
        var site = Assert.Single(sites, s => s.ClientId == audience);
        return Guid.Parse(SecurityEventTokens.Verify(set, keys, nodes.First.Issuer, site.ClientId).Jti);
    }
}
