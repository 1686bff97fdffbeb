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
