using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace ExchangeGateway.Tests.Infrastructure;

/// <summary>
/// How a test site is registered; the defaults make a poll site with a client secret. <see cref="PushEndpoint"/> makes it a
/// push site, <see cref="Jwks"/> a private_key_jwt one.
/// </summary>
public sealed record SiteOptions
{
    /// <summary>Push delivery to this endpoint; poll delivery when null.</summary>
    public Uri? PushEndpoint { get; init; }

    /// <summary>Lets the site start the cv:share code flow at /connect/authorize.</summary>
    public IReadOnlyList<string>? RedirectUris { get; init; }

    /// <summary>A client id of the test's choosing; the gateway picks one when null.</summary>
    public string? ClientId { get; init; }

    /// <summary>The site's public keys: it authenticates with private_key_jwt and gets no secret.</summary>
    public JsonObject? Jwks { get; init; }

    public static SiteOptions Push(Uri endpoint) => new() { PushEndpoint = endpoint };
}

/// <summary>
/// A site as the operator API returned it at registration (the secret appears only here; null for private_key_jwt).
/// <see cref="Recipient"/> is the registration the response showed.
/// </summary>
public sealed record TestSite(Guid Id, string ClientId, string? ClientSecret, string DisplayName, JsonElement Recipient)
{
    public string Secret => ClientSecret ?? throw new InvalidOperationException($"{ClientId} authenticates with private_key_jwt: it has no secret.");
}

/// <summary>Registering test sites through the operator API, and the operator and directory calls the tests share.</summary>
public static class Sites
{
    public const string AdminPath = "/api/v1/admin/recipients";
    public const string DirectoryPath = "/api/v1/recipients";
    public const string FeedPath = "/api/v1/shared-cvs";

    /// <summary>A valid registration with unique names; validation tests change one field at a time to make it invalid.</summary>
    public static JsonObject RegistrationBody(SiteOptions? options = null)
    {
        var tag = Guid.NewGuid().ToString("N")[..10];
        var body = new JsonObject
        {
            ["displayName"] = $"Test Site {tag}",
            ["legalName"] = $"Test Site {tag} SAS",
            ["website"] = $"https://site-{tag}.example/",
            ["privacyPolicyUrl"] = $"https://site-{tag}.example/privacy",
            ["contactEmail"] = $"dpo@site-{tag}.example",
            ["deliveryMode"] = options?.PushEndpoint is null ? "poll" : "push",
        };
        if (options?.PushEndpoint is { } endpoint)
        {
            body["pushEndpoint"] = endpoint.AbsoluteUri;
        }

        if (options?.RedirectUris is { } redirectUris)
        {
            body["redirectUris"] = new JsonArray([.. redirectUris.Select(u => (JsonNode)JsonValue.Create(u))]);
        }

        if (options?.ClientId is { } clientId)
        {
            body["clientId"] = clientId;
        }

        if (options?.Jwks is { } jwks)
        {
            body["clientAuthentication"] = "private_key_jwt";
            body["jwks"] = jwks;
        }

        return body;
    }

    /// <summary>Registers a site as a new operator.</summary>
    public static async Task<TestSite> RegisterAsync(GatewayFactory factory, Actors actors, SiteOptions? options = null) =>
        await RegisterAsync(factory, (await actors.NewOperatorAsync()).Tokens.AccessToken, options);

    public static async Task<TestSite> RegisterAsync(GatewayFactory factory, string operatorToken, SiteOptions? options = null)
    {
        using var admin = factory.CreateHttpClient().WithToken(operatorToken);
        return await RegisterAsync(admin, options);
    }

    public static Task<TestSite> RegisterAsync(HttpClient admin, SiteOptions? options = null) => RegisterAsync(admin, RegistrationBody(options));

    /// <summary>Registers exactly this body (one from <see cref="RegistrationBody"/>, perhaps changed) and asserts it was created.</summary>
    public static async Task<TestSite> RegisterAsync(HttpClient admin, JsonObject body)
    {
        using var response = await admin.PostAsJsonAsync(AdminPath, body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.Created, $"registration failed: {(int)response.StatusCode} {text}");
        var json = JsonDocument.Parse(text).RootElement;
        var recipient = json.GetProperty("recipient").Clone();
        return new TestSite(
            json.GetProperty("id").GetGuid(),
            json.GetProperty("clientId").GetString()!,
            json.GetProperty("clientSecret").GetString(),
            recipient.GetProperty("displayName").GetString()!,
            recipient);
    }

    /// <summary>Follows nextCursor to the end; other tests add rows to the same tables, so callers look for their own.</summary>
    public static async Task<List<JsonElement>> ReadAllPagesAsync(HttpClient client, string path, int limit = 100)
    {
        var items = new List<JsonElement>();
        string? cursor = null;
        var separator = path.Contains('?', StringComparison.Ordinal) ? "&" : "?";
        for (var page = 0; page < 10_000; page++)
        {
            var url = $"{path}{separator}limit={limit}" + (cursor is null ? "" : $"&cursor={Uri.EscapeDataString(cursor)}");
            using var response = await client.GetAsync(url);
            var text = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.OK, $"GET {url}: {(int)response.StatusCode} {text}");
            var json = JsonDocument.Parse(text).RootElement;
            var pageItems = json.GetProperty("items").EnumerateArray().Select(i => i.Clone()).ToList();
            Assert.True(pageItems.Count <= limit, $"a page of {pageItems.Count} items for limit {limit}");
            items.AddRange(pageItems);
            cursor = json.TryGetProperty("nextCursor", out var next) && next.ValueKind == JsonValueKind.String ? next.GetString() : null;
            if (cursor is null)
            {
                return items;
            }

            Assert.NotEmpty(pageItems);
        }

        throw new InvalidOperationException($"{path} did not end after 10 000 pages.");
    }

    public static async Task<List<Guid>> DirectoryIdsAsync(HttpClient seeker) =>
        [.. (await ReadAllPagesAsync(seeker, DirectoryPath)).Select(e => e.GetProperty("id").GetGuid())];

    /// <summary>Rows of the registry and of OpenIddict's client store, to prove that a refused registration left nothing behind.</summary>
    public static async Task<(long Recipients, long Applications)> CountRowsAsync(GatewayFixture fixture) =>
        (await fixture.Database.ScalarAsync<long>("SELECT count(*) FROM recipients"),
         await fixture.Database.ScalarAsync<long>("SELECT count(*) FROM \"OpenIddictApplications\""));

    public static async Task<string?> TokenErrorAsync(HttpResponseMessage response)
    {
        var json = await response.ReadJsonAsync();
        return json.TryGetProperty("error", out var error) ? error.GetString() : null;
    }
}
