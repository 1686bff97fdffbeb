using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using ExchangeGateway.Tests.Infrastructure;

namespace ExchangeGateway.Tests.Recipients;

/// <summary>A site as the operator API returned it at registration (the secret appears only here).</summary>
internal sealed record RegisteredSite(Guid Id, string ClientId, string? ClientSecret, JsonElement Recipient);

/// <summary>Registration bodies with unique names, and the operator and directory calls the recipient tests share.</summary>
internal static class Sites
{
    public const string AdminPath = "/api/v1/admin/recipients";
    public const string DirectoryPath = "/api/v1/recipients";
    public const string FeedPath = "/api/v1/shared-cvs";

    /// <summary>A valid poll-mode registration; tests change one field at a time to make it invalid.</summary>
    public static JsonObject PollSite(string? displayName = null)
    {
        var tag = Guid.NewGuid().ToString("N")[..10];
        return new JsonObject
        {
            ["displayName"] = displayName ?? $"Test Site {tag}",
            ["legalName"] = $"Test Site {tag} SAS",
            ["website"] = $"https://site-{tag}.example/",
            ["privacyPolicyUrl"] = $"https://site-{tag}.example/privacy",
            ["contactEmail"] = $"dpo@site-{tag}.example",
            ["deliveryMode"] = "poll",
        };
    }

    public static async Task<RegisteredSite> RegisterAsync(HttpClient admin, JsonObject? body = null)
    {
        using var response = await admin.PostAsJsonAsync(AdminPath, body ?? PollSite());
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.Created, $"registration failed: {(int)response.StatusCode} {text}");
        var json = JsonDocument.Parse(text).RootElement;
        return new RegisteredSite(
            json.GetProperty("id").GetGuid(),
            json.GetProperty("clientId").GetString()!,
            json.GetProperty("clientSecret").GetString(),
            json.GetProperty("recipient").Clone());
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
