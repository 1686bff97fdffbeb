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
    /// person's scope is refused), a person theirs through the code flow (not cv:share: only a site asks for it, and Swagger UI
    /// is not a site).
    /// </summary>
    [Fact]
    public async Task EachFlowOffersTheScopesItCanObtain()
    {
        using var client = fixture.Client();
        var flows = JsonNode.Parse(await client.GetStringAsync("/swagger/v1/swagger.json"))!["components"]!["securitySchemes"]!.AsObject().Single().Value!["flows"]!;
        string[] ScopesOf(string flow) => [.. flows[flow]!["scopes"]!.AsObject().Select(p => p.Key).Order(StringComparer.Ordinal)];
        Assert.Equal(["audit:read", "cv:read"], ScopesOf("clientCredentials"));
        Assert.Equal(["audit:read", "cv:manage", "recipients:admin"], ScopesOf("authorizationCode"));

        // What the document says a client cannot get, the token endpoint refuses.
        using var refused = await fixture.Actors.RequestClientTokenAsync(ExchangeGateway.Hosting.DemoData.AuditorClientId, ExchangeGateway.Hosting.DemoData.AuditorClientSecret, "cv:manage");
        Assert.Equal(System.Net.HttpStatusCode.BadRequest, refused.StatusCode);
    }

    /// <summary>
    /// Each operation asks for the one scope its actor has (a requirement lists scopes that are all needed, so asking for
    /// all four would send generated clients and Swagger UI after every scope), and that scope is the one the API checks.
    /// </summary>
    [Fact]
    public async Task EachOperationAsksForItsActorsScopeAlone()
    {
        using var client = fixture.Client();
        var document = JsonNode.Parse(await client.GetStringAsync("/swagger/v1/swagger.json"))!;
        Assert.Null(document["security"]);
        var scopes = document["paths"]!.AsObject()
            .SelectMany(path => path.Value!.AsObject().Select(operation => (Key: $"{operation.Key.ToUpperInvariant()} {path.Key}",
                Scopes: operation.Value!["security"]?.AsArray().Select(r => string.Join(' ', r!.AsObject().Single().Value!.AsArray().Select(s => s!.GetValue<string>()))).ToList())))
            .ToDictionary(o => o.Key, o => o.Scopes);
        // One operation only is open to all, and says so: no requirement, and no 401 or 403 among its answers.
        Assert.Equal(["GET /api/v1/erasure-requests/{recipientId}/{eventId}"], scopes.Where(o => o.Value is null).Select(o => o.Key));
        var open = document["paths"]!["/api/v1/erasure-requests/{recipientId}/{eventId}"]!["get"]!["responses"]!.AsObject();
        Assert.False(open.ContainsKey("401") || open.ContainsKey("403"));
        Assert.All(scopes.Where(o => o.Value is not null), o => Assert.Single(o.Value!));
        Assert.Equal(["cv:read"], scopes["GET /api/v1/shared-cvs"]);
        Assert.Equal(["cv:manage"], scopes["DELETE /api/v1/me"]);
        Assert.Equal(["audit:read"], scopes["GET /api/v1/audit/verify"]);
        Assert.Equal(["recipients:admin"], scopes["POST /api/v1/admin/recipients/{id}/suspend"]);

        // A site's token, which holds cv:read only, is what the feed takes and what the operators' list refuses.
        using var site = fixture.Client().WithToken(await fixture.Actors.DemoSiteTokenAsync());
        Assert.Equal(System.Net.HttpStatusCode.OK, (await site.GetAsync("/api/v1/shared-cvs?limit=1")).StatusCode);
        Assert.Equal(System.Net.HttpStatusCode.Forbidden, (await site.GetAsync("/api/v1/admin/recipients")).StatusCode);
    }

    /// <summary>
    /// The document describes the events a site receives, and a real SET matches it: every claim and member it carries is
    /// one the schema names, every one the schema requires is there, and its cause and kind are in the document's enums;
    /// the open-events list names the same enums, and the push a site's endpoint answers is described.
    /// </summary>
    [Fact]
    public async Task TheDocumentDescribesTheEventsASiteReceivesAsTheySendThem()
    {
        using var client = fixture.Client();
        var document = JsonNode.Parse(await client.GetStringAsync("/swagger/v1/swagger.json"))!;
        var schemas = document["components"]!["schemas"]!;
        string[] Names(JsonNode schema) => [.. schema["properties"]!.AsObject().Select(p => p.Key)];
        string[] Required(JsonNode schema) => [.. schema["required"]!.AsArray().Select(r => r!.GetValue<string>())];
        string[] Values(string name) => [.. schemas[name]!["enum"]!.AsArray().Select(v => v!.GetValue<string>())];

        var site = await Sites.RegisterAsync(fixture.Factory, fixture.Actors);
        var marker = "openapi-" + Guid.NewGuid().ToString("N");
        var seeker = await Propagation.SeekerWithCvAsync(fixture.Factory, fixture.Actors, marker);
        await Sharing.TickAsync(fixture.Factory, seeker.Tokens.AccessToken, site.Id);
        await Propagation.ReadAsync(fixture.Factory, await fixture.Actors.TokenAsync(site), marker);
        using (var untick = await Sharing.UntickAsync(fixture.Factory, seeker.Tokens.AccessToken, site.Id))
        {
            Assert.Equal(System.Net.HttpStatusCode.OK, untick.StatusCode);
        }

        using var siteClient = fixture.Client().WithToken(await fixture.Actors.TokenAsync(site));
        using var poll = await siteClient.PostAsync("/api/v1/events/poll",
            new StringContent("""{"returnImmediately":true}""", System.Text.Encoding.UTF8, "application/json"));
        var set = Assert.Single((await poll.ReadJsonAsync()).GetProperty("sets").EnumerateObject()).Value.GetString()!;
        var parts = set.Split('.');
        var header = JsonNode.Parse(Microsoft.IdentityModel.Tokens.Base64UrlEncoder.Decode(parts[0]))!.AsObject();
        var claims = JsonNode.Parse(Microsoft.IdentityModel.Tokens.Base64UrlEncoder.Decode(parts[1]))!.AsObject();

        foreach (var (name, sent) in new[] { ("SecurityEventTokenHeader", header), ("SecurityEventToken", claims) })
        {
            Assert.Subset(Names(schemas[name]!).ToHashSet(), sent.Select(p => p.Key).ToHashSet());
            Assert.Subset(sent.Select(p => p.Key).ToHashSet(), Required(schemas[name]!).ToHashSet());
        }

        var (uri, payload) = claims["events"]!.AsObject().Single();
        Assert.Contains(uri, Names(schemas["SecurityEventToken"]!["properties"]!["events"]!));
        Assert.Equal(Required(schemas["EventPayload"]!).Order(), payload!.AsObject().Select(p => p.Key).Order());
        Assert.Contains(payload["cause"]!.GetValue<string>(), Values("ErasureCause"));
        Assert.Contains(uri.Split('/')[^1], Values("EventKind"));
        Assert.Equal(["cv-updated"], Values("EventCause").Except(Values("ErasureCause")));

        Assert.Equal("#/components/schemas/EventCause", schemas["OpenEvent"]!["properties"]!["cause"]!["$ref"]!.GetValue<string>());
        Assert.Equal("#/components/schemas/FeedItemKind", schemas["SharedCvItem"]!["properties"]!["kind"]!["$ref"]!.GetValue<string>());
        var push = document["x-webhooks"]!["securityEventPush"]!["post"]!;
        Assert.NotNull(push["requestBody"]!["content"]!["application/secevent+jwt"]);
        Assert.Equal("#/components/schemas/PushError", push["responses"]!["400"]!["content"]!["application/json"]!["schema"]!["$ref"]!.GetValue<string>());
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
