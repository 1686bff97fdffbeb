using ExchangeGateway.Data;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace ExchangeGateway.Tests.Hosting;

[Collection(GatewayCollection.Name)]
public sealed class DatabasePoolTests(GatewayFixture fixture)
{
    [Fact]
    public void TheNodesPoolIsSmallByDefaultAndSkipsTheConnectionReset()
    {
        var pooled = PooledConnectionString(fixture.Factory);
        Assert.Equal(DatabaseOptions.DefaultMaxPoolSize, pooled.MaxPoolSize);
        Assert.True(pooled.NoResetOnClose);
    }

    // Extra nodes share the fixture's issuer: a node registers the demo clients' redirect URIs from its own.
    [Fact]
    public async Task DatabaseMaxPoolSizeSetsItAndAPoolSizeInTheConnectionStringWins()
    {
        await using (var configured = new GatewayFactory(fixture.Database, fixture.Time, issuer: fixture.Factory.Issuer, settings: new Dictionary<string, string?> { ["Database:MaxPoolSize"] = "6" }))
        {
            Assert.Equal(6, PooledConnectionString(configured).MaxPoolSize);
        }

        var explicitPool = fixture.Database.AppConnectionString + ";Maximum Pool Size=7";
        await using var given = new GatewayFactory(
            fixture.Database, fixture.Time, issuer: fixture.Factory.Issuer, appConnectionString: explicitPool, settings: new Dictionary<string, string?> { ["Database:MaxPoolSize"] = "6" });
        Assert.Equal(7, PooledConnectionString(given).MaxPoolSize);
    }

    [Fact]
    public async Task AnOutOfRangePoolSizeStopsTheNodeWithAMessageNamingTheSetting()
    {
        await using var node = new GatewayFactory(fixture.Database, fixture.Time, issuer: fixture.Factory.Issuer, settings: new Dictionary<string, string?> { ["Database:MaxPoolSize"] = "2" });
        var error = Assert.ThrowsAny<Exception>(() => node.Services);
        Assert.Contains("Database:MaxPoolSize", error.ToString(), StringComparison.Ordinal);
    }

    private static NpgsqlConnectionStringBuilder PooledConnectionString(GatewayFactory factory)
    {
        using var scope = factory.Services.CreateScope();
        return new NpgsqlConnectionStringBuilder(scope.ServiceProvider.GetRequiredService<GatewayDbContext>().Database.GetConnectionString());
    }
}
