using System.Text.Json;
using System.Text.Json.Nodes;
using ExchangeGateway.Tests.Infrastructure;

namespace ExchangeGateway.Tests.Hosting;

[Collection(GatewayCollection.Name)]
public sealed class OpenApiDocumentTests(GatewayFixture fixture)
{
    /// <summary>Set this variable to rewrite the committed document from the running app (scripts/openapi does).</summary>
    public const string UpdateVariable = "EXCHANGEGATEWAY_UPDATE_OPENAPI";

    [Fact]
    public async Task TheCommittedOpenApiDocumentMatchesTheRunningApp()
    {
        using var client = fixture.Client();
        var live = JsonNode.Parse(await client.GetStringAsync("/swagger/v1/swagger.json"))!;
        var path = Path.Combine(RepositoryRoot(), "openapi", "exchange-gateway.v1.json");
        var pretty = live.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";

        if (Environment.GetEnvironmentVariable(UpdateVariable) == "1")
        {
            await File.WriteAllTextAsync(path, pretty);
        }

        Assert.True(File.Exists(path), $"{path} is missing: run scripts/openapi");
        var committed = JsonNode.Parse(await File.ReadAllTextAsync(path))!;
        Assert.True(JsonNode.DeepEquals(committed, live),
            "openapi/exchange-gateway.v1.json differs from the running app's document: run scripts/openapi and commit the result.");
    }

    /// <summary>
    /// Each OAuth flow offers the scopes it can obtain: a site's or an auditors' client its own (a client asking for a
    /// person's scope is refused), a person theirs through the code flow.
    /// </summary>
    [Fact]
    public async Task EachFlowOffersTheScopesItCanObtain()
    {
        using var client = fixture.Client();
        var flows = JsonNode.Parse(await client.GetStringAsync("/swagger/v1/swagger.json"))!["components"]!["securitySchemes"]!.AsObject().Single().Value!["flows"]!;
        string[] ScopesOf(string flow) => [.. flows[flow]!["scopes"]!.AsObject().Select(p => p.Key).Order(StringComparer.Ordinal)];
        Assert.Equal(["audit:read", "cv:read"], ScopesOf("clientCredentials"));
        Assert.Equal(["audit:read", "cv:manage", "cv:share", "recipients:admin"], ScopesOf("authorizationCode"));

        // What the document says a client cannot get, the token endpoint refuses.
        using var refused = await fixture.Actors.RequestClientTokenAsync(ExchangeGateway.Hosting.DemoData.AuditorClientId, ExchangeGateway.Hosting.DemoData.AuditorClientSecret, "cv:manage");
        Assert.Equal(System.Net.HttpStatusCode.BadRequest, refused.StatusCode);
    }

    private static string RepositoryRoot()
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "ExchangeGateway.sln")))
        {
            directory = directory.Parent;
        }

        return directory?.FullName ?? throw new InvalidOperationException("ExchangeGateway.sln not found above the test binaries.");
    }
}
