using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using ExchangeGateway.Auth;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace ExchangeGateway.Tests.Security;

/// <summary>
/// Every API endpoint of the running app × every kind of caller, with the status each must get. The endpoint list comes
/// from the app's own endpoint data source: an endpoint added without a row here fails the test.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class AuthorizationMatrixTests(GatewayFixture fixture)
{
    private enum Caller { Anonymous, SeekerA, SeekerB, SiteX, SiteY, Suspended, Auditor, Operator, WrongAudience, Expired }

    private sealed record Row(string Method, string Pattern, string Url, Func<HttpContent?>? Body, Dictionary<Caller, HttpStatusCode> Expected);

    [Fact]
    public async Task EveryEndpointAnswersEveryCallerAsExpected()
    {
        var world = await SetUpAsync();
        var rows = Rows(world);

        var mapped = fixture.Factory.Services.GetRequiredService<EndpointDataSource>().Endpoints.OfType<RouteEndpoint>()
            .Where(e => e.RoutePattern.RawText?.StartsWith("/api/", StringComparison.Ordinal) == true)
            .SelectMany(e => (e.Metadata.GetMetadata<HttpMethodMetadata>()?.HttpMethods ?? []).Select(m => $"{m} {Normalize(e.RoutePattern.RawText!)}"))
            .ToHashSet();
        var covered = rows.Select(r => $"{r.Method} {Normalize(r.Pattern)}").ToHashSet();
        Assert.Empty(mapped.Except(covered));
        Assert.Empty(covered.Except(mapped));

        var failures = new List<string>();
        foreach (var row in rows)
        {
            foreach (var caller in Enum.GetValues<Caller>())
            {
                var expected = row.Expected.TryGetValue(caller, out var status) ? status
                    : caller is Caller.Anonymous or Caller.WrongAudience or Caller.Expired ? HttpStatusCode.Unauthorized
                    : HttpStatusCode.Forbidden;
                using var client = fixture.Client();
                if (world.Tokens.TryGetValue(caller, out var token))
                {
                    client.WithToken(token);
                }

                using var request = new HttpRequestMessage(new HttpMethod(row.Method), row.Url) { Content = row.Body?.Invoke() };
                using var response = await client.SendAsync(request);
                if (response.StatusCode != expected)
                {
                    failures.Add($"{row.Method} {row.Url} as {caller}: expected {(int)expected}, got {(int)response.StatusCode}");
                }
                else if ((int)expected >= 400)
                {
                    Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
                }
            }
        }

        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    private static string Normalize(string pattern) => pattern.TrimEnd('/');

    private sealed record World(
        Dictionary<Caller, string> Tokens, TestSite X, TestSite Y, TestSite W, string PairwiseX, Guid ReceiptA, Guid JtiX);

    private async Task<World> SetUpAsync()
    {
        var a = await fixture.Actors.NewSeekerAsync();
        var b = await fixture.Actors.NewSeekerAsync();
        var c = await fixture.Actors.NewSeekerAsync();
        var x = await Infrastructure.Sites.RegisterAsync(fixture.Factory, fixture.Actors);
        var y = await Infrastructure.Sites.RegisterAsync(fixture.Factory, fixture.Actors);
        var s = await Infrastructure.Sites.RegisterAsync(fixture.Factory, fixture.Actors);
        var w = await Infrastructure.Sites.RegisterAsync(fixture.Factory, fixture.Actors);

        var marker = "matrix-" + Guid.NewGuid().ToString("N");
        await Sharing.PutCvAsync(fixture.Factory, a.Tokens.AccessToken, Sharing.Resume(marker));
        await Sharing.PutCvAsync(fixture.Factory, c.Tokens.AccessToken, Sharing.Resume("matrix-other-" + Guid.NewGuid().ToString("N")));
        var receipt = (await Sharing.TickAsync(fixture.Factory, a.Tokens.AccessToken, x.Id)).GetProperty("receiptId").GetGuid();
        await Sharing.TickAsync(fixture.Factory, c.Tokens.AccessToken, x.Id);
        var xToken = await fixture.Actors.TokenAsync(x);
        var pairwise = Sharing.PairwiseIdOf((await Sharing.ReadFeedAsync(fixture.Factory, xToken)).Items, marker)!;
        (await Sharing.UntickAsync(fixture.Factory, c.Tokens.AccessToken, x.Id)).Dispose();
        var jti = await fixture.Database.ScalarAsync<Guid>($"SELECT jti FROM erasure_obligations WHERE recipient_id = '{x.Id}' ORDER BY id DESC LIMIT 1");

        var sToken = await fixture.Actors.TokenAsync(s);
        var @operator = await fixture.Actors.NewOperatorAsync();
        using (var admin = fixture.Client().WithToken(@operator.Tokens.AccessToken))
        {
            using var suspended = await admin.PostAsync($"/api/v1/admin/recipients/{s.Id}/suspend", Sharing.Json(new JsonObject { ["reason"] = "matrix" }));
            Assert.Equal(HttpStatusCode.OK, suspended.StatusCode);
        }

        var tokens = new Dictionary<Caller, string>
        {
            [Caller.SeekerA] = a.Tokens.AccessToken,
            [Caller.SeekerB] = b.Tokens.AccessToken,
            [Caller.SiteX] = xToken,
            [Caller.SiteY] = await fixture.Actors.TokenAsync(y),
            [Caller.Suspended] = sToken,
            [Caller.Auditor] = (await fixture.Actors.NewAuditorAsync()).Tokens.AccessToken,
            [Caller.Operator] = @operator.Tokens.AccessToken,
            [Caller.WrongAudience] = Forge("another-api", TimeSpan.FromMinutes(5)),
            [Caller.Expired] = Forge(ApiScopes.Audience, TimeSpan.FromMinutes(-1)),
        };
        return new World(tokens, x, y, w, pairwise, receipt, jti);
    }

    /// <summary>Signed with the gateway's real key, so only the audience or the lifetime is wrong.</summary>
    private string Forge(string audience, TimeSpan expiresIn)
    {
        var ring = fixture.Factory.Services.GetRequiredService<SigningKeyRing>();
        var now = fixture.Time.GetUtcNow().UtcDateTime;
        return new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
        {
            Issuer = fixture.Factory.Issuer.AbsoluteUri,
            Audience = audience,
            TokenType = "at+jwt",
            IssuedAt = now.AddMinutes(-10),
            NotBefore = now.AddMinutes(-10),
            Expires = now + expiresIn,
            Claims = new Dictionary<string, object> { ["sub"] = "demo-jobsite", ["scope"] = "cv:read cv:manage audit:read recipients:admin" },
            SigningCredentials = ring.TokenCredentials,
        });
    }

    private static Dictionary<Caller, HttpStatusCode> Seekers(HttpStatusCode a, HttpStatusCode b) => new() { [Caller.SeekerA] = a, [Caller.SeekerB] = b };

    private static Dictionary<Caller, HttpStatusCode> Sites(HttpStatusCode x, HttpStatusCode y, HttpStatusCode suspended) =>
        new() { [Caller.SiteX] = x, [Caller.SiteY] = y, [Caller.Suspended] = suspended };

    private static Dictionary<Caller, HttpStatusCode> Auditors(HttpStatusCode status) => new() { [Caller.Auditor] = status };

    /// <summary>Open to all: any token, none, or one that is not valid here.</summary>
    private static Dictionary<Caller, HttpStatusCode> Everyone(HttpStatusCode status) => Enum.GetValues<Caller>().ToDictionary(c => c, _ => status);

    private static Dictionary<Caller, HttpStatusCode> Operators(HttpStatusCode status) => new() { [Caller.Operator] = status };

    private static List<Row> Rows(World w)
    {
        const HttpStatusCode Ok = HttpStatusCode.OK, Created = HttpStatusCode.Created, NoContent = HttpStatusCode.NoContent, NotFound = HttpStatusCode.NotFound;
        static HttpContent Json(JsonNode node) => new StringContent(node.ToJsonString(), Encoding.UTF8, "application/json");
        HttpContent Cv() => Json(Sharing.Resume("matrix-put"));
        HttpContent NewSite() => Json(new JsonObject
        {
            ["displayName"] = "Matrix " + Guid.NewGuid().ToString("N")[..6], ["legalName"] = "Matrix SAS", ["website"] = "https://m.example/",
            ["privacyPolicyUrl"] = "https://m.example/privacy", ["contactEmail"] = "dpo@m.example", ["deliveryMode"] = "poll",
        });
        HttpContent Reason() => Json(new JsonObject { ["reason"] = "matrix" });
        HttpContent Keys()
        {
            using var key = new Recipients.SiteKey();
            return Json(new JsonObject { ["jwks"] = key.PublicJwks() });
        }

        return
        [
            new("GET", "/api/v1/me", "/api/v1/me", null, Seekers(Ok, Ok)),
            new("GET", "/api/v1/me/cv", "/api/v1/me/cv", null, Seekers(Ok, NotFound)),
            new("PUT", "/api/v1/me/cv", "/api/v1/me/cv", Cv, Seekers(Ok, Created)),
            new("POST", "/api/v1/me/cv/refresh", "/api/v1/me/cv/refresh", null, Seekers(Ok, Ok)),
            new("GET", "/api/v1/recipients", "/api/v1/recipients", null, Seekers(Ok, Ok)),
            new("GET", "/api/v1/me/consents", "/api/v1/me/consents", null, Seekers(Ok, Ok)),
            new("PUT", "/api/v1/me/consents/{recipientId:guid}", $"/api/v1/me/consents/{w.X.Id}", null, Seekers(Ok, Created)),
            new("GET", "/api/v1/me/consents/{recipientId:guid}/history", $"/api/v1/me/consents/{w.X.Id}/history", null, Seekers(Ok, Ok)),
            new("GET", "/api/v1/me/receipts/{receiptId:guid}", $"/api/v1/me/receipts/{w.ReceiptA}", null, Seekers(Ok, NotFound)),
            new("GET", "/api/v1/me/disclosures", "/api/v1/me/disclosures", null, Seekers(Ok, Ok)),
            new("GET", "/api/v1/me/erasures", "/api/v1/me/erasures", null, Seekers(Ok, Ok)),
            new("GET", "/api/v1/me/export", "/api/v1/me/export", null, Seekers(Ok, Ok)),
            new("DELETE", "/api/v1/me/consents/{recipientId:guid}", $"/api/v1/me/consents/{w.Y.Id}", null, Seekers(NoContent, NoContent)),
            new("GET", "/api/v1/shared-cvs", "/api/v1/shared-cvs", null, Sites(Ok, Ok, HttpStatusCode.Forbidden)),
            new("GET", "/api/v1/shared-cvs/{id}", $"/api/v1/shared-cvs/{w.PairwiseX}", null, Sites(Ok, NotFound, HttpStatusCode.Forbidden)),
            new("POST", "/api/v1/events/poll", "/api/v1/events/poll", () => Json(new JsonObject { ["returnImmediately"] = true, ["maxEvents"] = 0 }), Sites(Ok, Ok, Ok)),
            // A suspended site still lists its open events: it holds copies and must go on confirming.
            new("GET", "/api/v1/erasures", "/api/v1/erasures?limit=1", null, Sites(Ok, Ok, Ok)),
            new("POST", "/api/v1/erasures/{jti:guid}/confirmation", $"/api/v1/erasures/{w.JtiX}/confirmation", null, Sites(Ok, NotFound, NotFound)),
            new("GET", "/api/v1/audit/events", "/api/v1/audit/events?limit=1", null, Auditors(Ok)),
            new("GET", "/api/v1/audit/events/export", $"/api/v1/audit/events/export?recipient={w.X.ClientId}", null, Auditors(Ok)),
            new("GET", "/api/v1/audit/verify", "/api/v1/audit/verify", null, Auditors(Ok)),
            new("GET", "/api/v1/audit/checkpoints", "/api/v1/audit/checkpoints?limit=1", null, Auditors(Ok)),
            new("GET", "/api/v1/audit/erasures", "/api/v1/audit/erasures?limit=1", null, Auditors(Ok)),
            new("GET", "/api/v1/audit/recipients/{id:guid}/compliance", $"/api/v1/audit/recipients/{w.X.Id}/compliance", null, Auditors(Ok)),
            new("GET", "/api/v1/admin/recipients", "/api/v1/admin/recipients?limit=1", null, Operators(Ok)),
            new("POST", "/api/v1/admin/recipients", "/api/v1/admin/recipients", NewSite, Operators(Created)),
            new("GET", "/api/v1/admin/recipients/{id:guid}", $"/api/v1/admin/recipients/{w.X.Id}", null, Operators(Ok)),
            new("GET", "/api/v1/admin/recipients/{id:guid}/delivery", $"/api/v1/admin/recipients/{w.X.Id}/delivery", null, Operators(Ok)),
            new("PATCH", "/api/v1/admin/recipients/{id:guid}", $"/api/v1/admin/recipients/{w.X.Id}", () => Json(new JsonObject()), Operators(Ok)),
            new("POST", "/api/v1/admin/recipients/{id:guid}/suspend", $"/api/v1/admin/recipients/{w.W.Id}/suspend", Reason, Operators(Ok)),
            new("POST", "/api/v1/admin/recipients/{id:guid}/reinstate", $"/api/v1/admin/recipients/{w.W.Id}/reinstate", Reason, Operators(Ok)),
            new("POST", "/api/v1/admin/recipients/{id:guid}/rotate-secret", $"/api/v1/admin/recipients/{w.W.Id}/rotate-secret", null, Operators(Ok)),
            // A secret site: the operator gets through to the rule that it has no keys to rotate.
            new("POST", "/api/v1/admin/recipients/{id:guid}/rotate-keys", $"/api/v1/admin/recipients/{w.W.Id}/rotate-keys", Keys, Operators(HttpStatusCode.Conflict)),
            new("DELETE", "/api/v1/me/cv", "/api/v1/me/cv", null, Seekers(NoContent, NoContent)),
            new("DELETE", "/api/v1/me", "/api/v1/me", null, Seekers(Ok, Ok)),
            new("GET", "/api/v1/erasure-requests/{recipientId:guid}/{eventId:guid}", $"/api/v1/erasure-requests/{w.X.Id}/{w.JtiX}", null, Everyone(Ok)),
        ];
    }
}
