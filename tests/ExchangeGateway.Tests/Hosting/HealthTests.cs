using System.Net;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.Extensions.Time.Testing;
using Npgsql;

namespace ExchangeGateway.Tests.Hosting;

[Collection(GatewayCollection.Name)]
public sealed class HealthTests(GatewayFixture fixture)
{
    [Fact]
    public async Task LiveAndReadyAnswerWhenPostgreSqlIsUp()
    {
        using var client = fixture.Client();
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/health/live")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/health/ready")).StatusCode);
    }

    [Fact]
    public async Task ReadinessFailsWhilePostgreSqlIsUnreachableAndRecoversAfter()
    {
        var server = new NpgsqlConnectionStringBuilder(fixture.Database.AppConnectionString);
        await using var proxy = new TcpProxy(server.Host!, server.Port);
        proxy.Start();
        var throughProxy = new NpgsqlConnectionStringBuilder(fixture.Database.AppConnectionString)
        {
            Port = proxy.Port, Pooling = false, Timeout = 2,
        }.ConnectionString;

        // The fixture's issuer: a node with another one would re-register the Swagger client's redirect URI to itself,
        // and every later code-flow sign-in on the fixture would be refused (ID2043).
        await using var node = new GatewayFactory(fixture.Database, new FakeTimeProvider(DateTimeOffset.UtcNow), issuer: fixture.Factory.Issuer, appConnectionString: throughProxy);
        using var client = node.CreateHttpClient();
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/health/ready")).StatusCode);

        proxy.Stop();
        using (var down = await client.GetAsync("/health/ready"))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, down.StatusCode);
        }

        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/health/live")).StatusCode);

        proxy.Start();
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/health/ready")).StatusCode);
    }
}
