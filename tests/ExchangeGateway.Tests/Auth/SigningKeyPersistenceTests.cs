using System.Net;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace ExchangeGateway.Tests.Auth;

[Collection(GatewayCollection.Name)]
public sealed class SigningKeyPersistenceTests(GatewayFixture fixture)
{
    [Fact]
    public async Task AnotherNodeOrARestartedOneAcceptsTokensIssuedBefore()
    {
        var token = await fixture.Actors.DemoSiteTokenAsync();

        // A second host on the same database and issuer: what a restart, or a second node behind a balancer, looks like.
        await using var node = new GatewayFactory(fixture.Database, fixture.Time, issuer: fixture.Factory.Issuer);
        using var client = node.CreateHttpClient().WithToken(token);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/api/v1/shared-cvs")).StatusCode);

        using var first = fixture.Client();
        var jwks1 = await (await first.GetAsync("/.well-known/jwks")).Content.ReadAsStringAsync();
        using var second = node.CreateHttpClient();
        var jwks2 = await (await second.GetAsync("/.well-known/jwks")).Content.ReadAsStringAsync();
        Assert.Equal(jwks1, jwks2);
    }

    [Fact]
    public async Task PrivateKeysAreNotStoredInTheClear()
    {
        var stored = await fixture.Database.ScalarAsync<string>("SELECT string_agg(protected_private_key, '') FROM signing_keys");
        Assert.DoesNotContain("PRIVATE KEY", stored, StringComparison.Ordinal);
        // RS256 (tokens), ES256 (events), A256KW (codes, refresh tokens); the seekers' data-key wrapping keys have a table of their own.
        Assert.Equal(
            "A256KW,ES256,RS256",
            await fixture.Database.ScalarAsync<string>("SELECT string_agg(algorithm, ',' ORDER BY algorithm) FROM signing_keys"));
        var wrapping = await fixture.Database.ScalarAsync<string>("SELECT string_agg(protected_key, '') FROM data_key_wrapping_keys");
        Assert.False(string.IsNullOrEmpty(wrapping));
        var material = fixture.Factory.Services.GetRequiredService<ExchangeGateway.Cvs.DataKeyRing>().Current.Material;
        Assert.DoesNotContain(Convert.ToBase64String(material), wrapping, StringComparison.Ordinal);
    }
}
