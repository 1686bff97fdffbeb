using System.Net.Http.Json;
using System.Net;
using System.Text;
using ExchangeGateway.Tests.Infrastructure;

namespace ExchangeGateway.Tests.Hosting;

[Collection(GatewayCollection.Name)]
public sealed class ProblemDetailsTests(GatewayFixture fixture)
{
    [Fact]
    public async Task UnknownApiPathIs404Problem()
    {
        using var client = fixture.Client();
        await (await client.GetAsync("/api/v1/no-such-thing")).AssertProblemAsync(HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task WrongMethodIs405Problem()
    {
        using var client = fixture.Client().WithToken(await fixture.Actors.DemoSiteTokenAsync());
        await (await client.DeleteAsync("/api/v1/shared-cvs")).AssertProblemAsync(HttpStatusCode.MethodNotAllowed);
    }

    [Fact]
    public async Task MalformedQueryValuesAre400ProblemNamingTheParameter()
    {
        using var client = fixture.Client().WithToken(await fixture.Actors.DemoSiteTokenAsync());
        var problem = await (await client.GetAsync("/api/v1/shared-cvs?limit=lots")).AssertProblemAsync(HttpStatusCode.BadRequest);
        var detail = problem.GetProperty("detail").GetString()!;
        Assert.Contains("\"limit\"", detail, StringComparison.Ordinal);
        Assert.DoesNotContain("int?", detail, StringComparison.Ordinal);
    }

    /// <summary>The body's fault is named by its JSON path and field; the server's own type names stay on the server.</summary>
    [Theory]
    [InlineData("displayName", null)]
    [InlineData("deliveryMode", "carrier-pigeon")]
    [InlineData("pushEndpoint", 42)]
    [InlineData("redirectUris", 5)]
    public async Task ABodyFaultNamesTheFieldButNoServerType(string field, object? value)
    {
        var @operator = await fixture.Actors.NewOperatorAsync();
        using var admin = fixture.Client().WithToken(@operator.Tokens.AccessToken);
        var body = Sites.RegistrationBody();
        body[field] = value is null ? null : System.Text.Json.Nodes.JsonValue.Create(value);
        var problem = await (await admin.PostAsJsonAsync(Sites.AdminPath, body)).AssertProblemAsync(HttpStatusCode.BadRequest);
        var detail = problem.GetProperty("detail").GetString()!;
        Assert.Contains(field, detail, StringComparison.Ordinal);
        Assert.DoesNotContain("ExchangeGateway", detail, StringComparison.Ordinal);
        Assert.DoesNotContain("System.", detail, StringComparison.Ordinal);
        Assert.DoesNotContain("RegisterRecipientRequest", detail, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("0")]
    [InlineData("-1")]
    [InlineData("10000")]
    [InlineData("101")]
    public async Task OutOfRangeLimitsAre400Problem(string limit)
    {
        using var client = fixture.Client().WithToken(await fixture.Actors.DemoSiteTokenAsync());
        var problem = await (await client.GetAsync($"/api/v1/shared-cvs?limit={limit}")).AssertProblemAsync(HttpStatusCode.BadRequest);
        Assert.True(problem.GetProperty("errors").TryGetProperty("limit", out _));
    }

    [Fact]
    public async Task ForgedCursorsAre400Problem()
    {
        using var client = fixture.Client().WithToken(await fixture.Actors.AuditorClientTokenAsync());
        var problem = await (await client.GetAsync("/api/v1/audit/events?cursor=eyJzZXEiOjF9")).AssertProblemAsync(HttpStatusCode.BadRequest);
        Assert.True(problem.GetProperty("errors").TryGetProperty("cursor", out _));
    }

    [Fact]
    public async Task AnUnknownAuditActionIs400ProblemListingTheKnownOnes()
    {
        using var client = fixture.Client().WithToken(await fixture.Actors.AuditorClientTokenAsync());
        var problem = await (await client.GetAsync("/api/v1/audit/events?action=drop-table")).AssertProblemAsync(HttpStatusCode.BadRequest);
        Assert.Contains("cv.disclosed", problem.GetProperty("errors").GetProperty("action").EnumerateArray().Select(a => a.GetString()));
    }

    [Fact]
    public async Task ErrorsDoNotLeakStackTraces()
    {
        using var client = fixture.Client().WithToken(await fixture.Actors.AuditorClientTokenAsync());
        using var response = await client.GetAsync("/api/v1/audit/events?from=not-a-date");
        var body = await response.Content.ReadAsStringAsync();
        await response.AssertProblemAsync(HttpStatusCode.BadRequest);
        Assert.DoesNotContain("Exception", body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TokenEndpointErrorsAreOAuthErrorsNotHtml()
    {
        using var client = fixture.Client();
        using var response = await client.PostAsync("/connect/token", new StringContent("grant_type=password", Encoding.UTF8, "application/x-www-form-urlencoded"));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.True((await response.ReadJsonAsync()).TryGetProperty("error", out _));
    }
}
