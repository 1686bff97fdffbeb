using Microsoft.Extensions.Time.Testing;

namespace ExchangeGateway.Tests.Infrastructure;

/// <summary>One database and one running gateway shared by a collection of tests; tests create their own accounts.</summary>
public sealed class GatewayFixture : IAsyncLifetime
{
    public TestDatabase Database { get; private set; } = null!;
    public GatewayFactory Factory { get; private set; } = null!;
    public FakeTimeProvider Time { get; } = new(DateTimeOffset.UtcNow);
    public Actors Actors { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Database = await TestDatabase.CreateAsync();
        // The requests come through "the load balancer" at 127.0.0.1, so that a test can send one from another network
        // (X-Forwarded-For); without the header a request is from 127.0.0.1.
        Factory = new GatewayFactory(Database, Time, settings: new Dictionary<string, string?> { ["Proxies:KnownProxies:0"] = "127.0.0.1" });
        Factory.StartServer();
        Actors = new Actors(Factory);
    }

    public HttpClient Client() => Factory.CreateHttpClient();

    public async Task DisposeAsync()
    {
        await Factory.DisposeAsync();
        await Database.DisposeAsync();
    }
}

[CollectionDefinition(Name)]
public sealed class GatewayCollection : ICollectionFixture<GatewayFixture>
{
    public const string Name = "gateway";
}
