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
        Factory = new GatewayFactory(Database, Time);
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
