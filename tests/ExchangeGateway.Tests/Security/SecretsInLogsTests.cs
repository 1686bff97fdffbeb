using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.Extensions.Time.Testing;

namespace ExchangeGateway.Tests.Security;

/// <summary>
/// A host logging at Debug level for every category goes through everything that handles a secret — client secrets
/// right and wrong, passwords right and wrong, code flow, refresh, registration and rotation of a site's secret, token
/// refusals — and not one of those secrets, nor any token it issued, may appear in what it logged.
/// (scripts/test also scans the console output of the whole suite for the demo secrets.)
/// </summary>
public sealed class SecretsInLogsTests
{
    [Fact]
    public async Task NoSecretPasswordOrTokenReachesTheLogs()
    {
        await using var database = await TestDatabase.CreateAsync();
        await using var node = new GatewayFactory(database, new FakeTimeProvider(DateTimeOffset.UtcNow),
            settings: new Dictionary<string, string?>
            {
                ["Logging:LogLevel:Default"] = "Debug", ["Logging:LogLevel:OpenIddict"] = "Debug", ["Logging:LogLevel:Microsoft"] = "Debug",
                ["Logging:Console:LogLevel:Default"] = "Warning",
            },
            captureLogs: true);
        node.StartServer();
        var actors = new Actors(node);
        var secrets = new List<string> { "demo-jobsite-secret", "other-jobsite-secret", "demo-auditor-secret", "ChangeMe-Demo-1!", "wrong-secret-on-purpose" };

        secrets.Add(await actors.DemoSiteTokenAsync());
        secrets.Add(await actors.OtherSiteTokenAsync());
        secrets.Add(await actors.AuditorClientTokenAsync());
        (await actors.RequestClientTokenAsync("demo-jobsite", "wrong-secret-on-purpose", "cv:read")).Dispose();

        var demo = await actors.SignInWithCodeFlowAsync("seeker@example.org", "ChangeMe-Demo-1!", "openid offline_access cv:manage");
        secrets.AddRange(new[] { demo.AccessToken, demo.RefreshToken!, demo.IdToken! });
        var refreshed = await actors.RefreshAsync(demo.RefreshToken!);
        secrets.Add(refreshed.AccessToken);
        using (var browser = node.CreateHttpClient(new CookieContainer()))
        {
            // A failed sign-in with a password that is not the account's.
            var page = await browser.GetStringAsync("/Account/Login");
            var antiforgery = System.Text.RegularExpressions.Regex.Match(page, "name=\"__RequestVerificationToken\"[^>]*value=\"([^\"]+)\"").Groups[1].Value;
            (await browser.PostAsync("/Account/Login", new FormUrlEncodedContent(new Dictionary<string, string>
            {
                ["Email"] = "seeker@example.org", ["Password"] = "Not-The-Password-42!", ["__RequestVerificationToken"] = WebUtility.HtmlDecode(antiforgery),
            }))).Dispose();
            secrets.Add("Not-The-Password-42!");
        }

        var @operator = await actors.SignInWithCodeFlowAsync("operator@example.org", "ChangeMe-Demo-1!", "openid recipients:admin");
        using var admin = node.CreateHttpClient().WithToken(@operator.AccessToken);
        var site = await Sites.RegisterAsync(node, @operator.AccessToken);
        secrets.Add(site.Secret);
        var rotated = await (await admin.PostAsync($"/api/v1/admin/recipients/{site.Id}/rotate-secret", Sharing.Json(new JsonObject { ["gracePeriodSeconds"] = 60 }))).ReadJsonAsync();
        secrets.Add(rotated.GetProperty("clientSecret").GetString()!);
        secrets.Add(await actors.ClientTokenAsync(site.ClientId, rotated.GetProperty("clientSecret").GetString()!, "cv:read"));

        var lines = node.Logs!.ToArray();
        Assert.True(lines.Length > 100, $"only {lines.Length} log lines: the capture is not working, so this test proves nothing");
        foreach (var secret in secrets)
        {
            var leak = lines.FirstOrDefault(line => line.Contains(secret, StringComparison.Ordinal));
            Assert.True(leak is null, $"a secret reached the logs: {leak?[..Math.Min(leak.Length, 300)]}");
        }

        Assert.DoesNotContain(lines, line => line.Contains("seeker@example.org", StringComparison.OrdinalIgnoreCase));
    }

    /// <summary>
    /// The reset and sign-up links carry an account id and a one-time code in their query string. Raising
    /// Microsoft.AspNetCore to Information, as one does for a diagnosis, must not bring back the request URLs that would
    /// write them into the logs.
    /// </summary>
    [Fact]
    public async Task ALinksCodeStaysOutOfTheLogsWhenAspNetCoreLogsMore()
    {
        await using var database = await TestDatabase.CreateAsync();
        await using var node = new GatewayFactory(database, new FakeTimeProvider(DateTimeOffset.UtcNow),
            settings: new Dictionary<string, string?>
            {
                ["Logging:LogLevel:Microsoft.AspNetCore"] = "Information", ["Logging:Console:LogLevel:Default"] = "Warning",
            },
            captureLogs: true);
        using var browser = node.CreateHttpClient();
        var code = "code-" + Guid.NewGuid().ToString("N");
        var account = Guid.NewGuid().ToString();
        using (var page = await browser.GetAsync($"/Account/ResetPassword?user={account}&code={code}"))
        {
            Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        }

        using (var page = await browser.GetAsync($"/Account/ConfirmEmail?user={account}&code={code}"))
        {
            Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        }

        // The raised level is in force (some Microsoft.AspNetCore line was written), yet no line holds the code or the id.
        Assert.Contains(node.Logs!, line => line.Contains("Microsoft.AspNetCore", StringComparison.Ordinal) && line.StartsWith("Information", StringComparison.Ordinal));
        Assert.DoesNotContain(node.Logs!, line => line.Contains(code, StringComparison.Ordinal) || line.Contains(account, StringComparison.Ordinal));
    }
}
