using System.Net;
using System.Text.Json;
using ExchangeGateway.Auth;
using ExchangeGateway.Tests.Infrastructure;

namespace ExchangeGateway.Tests.Audit;

/// <summary>The auditor's side of the audit log, and cheap ways to make the gateway write rows the tests can find again.</summary>
internal static class AuditLog
{
    public const string EventsPath = "/api/v1/audit/events";
    public const string ExportPath = "/api/v1/audit/events/export";
    public const string VerifyPath = "/api/v1/audit/verify";

    /// <summary>Every event matching the query string, following the cursor to the end.</summary>
    public static Task<List<JsonElement>> EventsAsync(HttpClient auditor, string query, int limit = 500) =>
        Sites.ReadAllPagesAsync(auditor, $"{EventsPath}?{query}", limit);

    public static async Task<JsonElement> VerifyAsync(HttpClient auditor)
    {
        using var response = await auditor.GetAsync(VerifyPath);
        var verdict = await response.ReadJsonAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"verify answered {(int)response.StatusCode}: {verdict}");
        return verdict;
    }

    /// <summary>A client id nobody registered; refused token requests record it as claimed, so it names a test's own rows.</summary>
    public static string NewGhostClientId() => "ghost-" + Guid.NewGuid().ToString("N")[..12];

    /// <summary>One refused token request, hence one auth.token-refused row with the claimed client id as actor.</summary>
    public static async Task RefuseTokenAsync(Actors actors, string clientId, string secret = "not-the-secret")
    {
        using var response = await actors.RequestClientTokenAsync(clientId, secret, ApiScopes.CvRead);
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
    }

    public static string Q(DateTimeOffset at) => Uri.EscapeDataString(at.ToString("O", System.Globalization.CultureInfo.InvariantCulture));

    public static List<string?> Actions(IEnumerable<JsonElement> events) => [.. events.Select(e => e.GetProperty("action").GetString())];
}
