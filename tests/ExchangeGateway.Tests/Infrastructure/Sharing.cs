using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace ExchangeGateway.Tests.Infrastructure;

/// <summary>Steps most sharing tests take: a seeker with a CV, ticking a site, a site reading its feed.</summary>
public static class Sharing
{
    private static readonly string Sample = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Cvs", "sample.resume.json"));

    /// <summary>A valid JSON Resume document, made unique with a marker in the summary (to find it, or prove it is gone).</summary>
    public static JsonObject Resume(string marker, string? name = null, string? email = null)
    {
        var document = JsonNode.Parse(Sample)!.AsObject();
        var basics = document["basics"]!.AsObject();
        basics["summary"] = $"Summary {marker}";
        if (name is not null)
        {
            basics["name"] = name;
        }

        if (email is not null)
        {
            basics["email"] = email;
        }

        return document;
    }

    public static StringContent Json(JsonNode document) => new(document.ToJsonString(), Encoding.UTF8, "application/json");

    public static async Task<HttpResponseMessage> PutCvAsync(GatewayFactory factory, string token, JsonNode document, string? ifMatch = null)
    {
        using var client = factory.CreateHttpClient().WithToken(token);
        using var request = new HttpRequestMessage(HttpMethod.Put, "/api/v1/me/cv") { Content = Json(document) };
        if (ifMatch is not null)
        {
            request.Headers.TryAddWithoutValidation("If-Match", ifMatch);
        }

        return await client.SendAsync(request);
    }

    public static async Task<Guid> RecipientIdAsync(GatewayFactory factory, string seekerToken, string displayName)
    {
        using var client = factory.CreateHttpClient().WithToken(seekerToken);
        var directory = await (await client.GetAsync("/api/v1/recipients?limit=500")).ReadJsonAsync();
        return directory.GetProperty("items").EnumerateArray().First(r => r.GetProperty("displayName").GetString() == displayName).GetProperty("id").GetGuid();
    }

    public static async Task<JsonElement> TickAsync(GatewayFactory factory, string seekerToken, Guid recipientId)
    {
        using var client = factory.CreateHttpClient().WithToken(seekerToken);
        using var response = await client.PutAsync($"/api/v1/me/consents/{recipientId}", null);
        Assert.True(response.StatusCode is HttpStatusCode.Created or HttpStatusCode.OK, $"tick failed: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        return await response.ReadJsonAsync();
    }

    public static async Task<HttpResponseMessage> UntickAsync(GatewayFactory factory, string seekerToken, Guid recipientId)
    {
        using var client = factory.CreateHttpClient().WithToken(seekerToken);
        return await client.DeleteAsync($"/api/v1/me/consents/{recipientId}");
    }

    /// <summary>Pages through the whole feed from the given cursor; returns the items and the resume cursor.</summary>
    public static async Task<(List<JsonElement> Items, string Resume)> ReadFeedAsync(GatewayFactory factory, string siteToken, string? cursor = null, int limit = 100)
    {
        using var client = factory.CreateHttpClient().WithToken(siteToken);
        var items = new List<JsonElement>();
        while (true)
        {
            var url = $"/api/v1/shared-cvs?limit={limit}" + (cursor is null ? "" : $"&cursor={Uri.EscapeDataString(cursor)}");
            using var response = await client.GetAsync(url);
            Assert.True(response.StatusCode == HttpStatusCode.OK, $"feed: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
            var page = await response.ReadJsonAsync();
            items.AddRange(page.GetProperty("items").EnumerateArray().Select(i => i.Clone()));
            var resume = page.GetProperty("resumeCursor").GetString()!;
            if (page.GetProperty("nextCursor").ValueKind == JsonValueKind.Null)
            {
                return (items, resume);
            }

            cursor = page.GetProperty("nextCursor").GetString();
        }
    }

    /// <summary>The site's id for this seeker's CV, found by the marker in the document.</summary>
    public static string? PairwiseIdOf(IEnumerable<JsonElement> items, string marker) =>
        items.LastOrDefault(i => i.GetProperty("kind").GetString() == "cv"
            && i.GetProperty("document").GetProperty("basics").GetProperty("summary").GetString()!.Contains(marker, StringComparison.Ordinal))
            is { ValueKind: JsonValueKind.Object } item ? item.GetProperty("id").GetString() : null;

    public static MediaTypeHeaderValue JsonMedia => new("application/json");
}
