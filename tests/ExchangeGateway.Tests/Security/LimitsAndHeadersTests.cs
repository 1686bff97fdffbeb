using System.Net;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace ExchangeGateway.Tests.Security;

[Collection(GatewayCollection.Name)]
public sealed class LimitsAndHeadersTests(GatewayFixture fixture)
{
    [Fact]
    public async Task ApiResponsesCarryTheSecurityHeaders()
    {
        using var client = fixture.Client().WithToken(await fixture.Actors.DemoSiteTokenAsync());
        using var response = await client.GetAsync("/api/v1/shared-cvs?limit=1");
        Assert.Equal("nosniff", response.Headers.GetValues("X-Content-Type-Options").Single());
        Assert.Equal("DENY", response.Headers.GetValues("X-Frame-Options").Single());
        var csp = response.Headers.GetValues("Content-Security-Policy").Single();
        Assert.Contains("frame-ancestors 'none'", csp, StringComparison.Ordinal);
        Assert.DoesNotContain("unsafe-inline", csp, StringComparison.Ordinal);
        Assert.False(response.Headers.Contains("Server"));
        // CVs and client secrets are kept by no browser or proxy cache.
        Assert.True(response.Headers.CacheControl?.NoStore, "an API answer without Cache-Control: no-store");
        // Development and tests run on http: HSTS is for Production only.
        Assert.False(response.Headers.Contains("Strict-Transport-Security"));
    }

    /// <summary>
    /// A body the API cannot read fails in model binding, and the exception handler writes its 400 after clearing the
    /// response's headers: the allowance is stated all the same.
    /// </summary>
    [Fact]
    public async Task AnAnswerWrittenByTheExceptionHandlerStillStatesTheAllowance()
    {
        var @operator = await fixture.Actors.NewOperatorAsync();
        using var client = fixture.Client().WithToken(@operator.Tokens.AccessToken);
        using var response = await client.PostAsync("/api/v1/admin/recipients", new StringContent("{\"displayName\": \"Unclosed", System.Text.Encoding.UTF8, "application/json"));
        await response.AssertProblemAsync(HttpStatusCode.BadRequest);
        Assert.StartsWith("\"per-caller\";q=", Assert.Single(response.Headers.GetValues("RateLimit-Policy")), StringComparison.Ordinal);
        Assert.Matches("^\"per-caller\";r=\\d+;t=\\d+$", Assert.Single(response.Headers.GetValues("RateLimit")));
    }

    [Fact]
    public async Task CorsIsClosedUnlessConfigured()
    {
        using var client = fixture.Client();
        using var preflight = new HttpRequestMessage(HttpMethod.Options, "/api/v1/shared-cvs");
        preflight.Headers.Add("Origin", "https://evil.example");
        preflight.Headers.Add("Access-Control-Request-Method", "GET");
        using var response = await client.SendAsync(preflight);
        Assert.False(response.Headers.Contains("Access-Control-Allow-Origin"));
    }

    [Fact]
    public async Task TheTokenEndpointAndTheApiAnswer429WithRetryAfterPastTheirLimits()
    {
        await using var database = await TestDatabase.CreateAsync();
        await using var node = new GatewayFactory(database, new FakeTimeProvider(DateTimeOffset.UtcNow), settings: new Dictionary<string, string?>
        {
            ["RateLimits:TokenRequestsPerMinute"] = "5",
            ["RateLimits:ApiRequestsPerMinute"] = "60",
        });
        var actors = new Actors(node);

        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 8; i++)
        {
            using var response = await actors.RequestClientTokenAsync("demo-jobsite", i % 2 == 0 ? "wrong-secret" : "demo-jobsite-secret", "cv:read");
            statuses.Add(response.StatusCode);
            if (response.StatusCode == HttpStatusCode.TooManyRequests)
            {
                Assert.True(response.Headers.RetryAfter?.Delta > TimeSpan.Zero);
                // A problem for HTTP tooling, and OAuth's error member for the OAuth client libraries that call this endpoint.
                var problem = await response.AssertProblemAsync(HttpStatusCode.TooManyRequests);
                Assert.Equal("slow_down", problem.GetProperty("error").GetString());
                Assert.StartsWith("https://", problem.GetProperty("type").GetString(), StringComparison.Ordinal);
            }
        }

        Assert.Equal(5, statuses.Count(s => s != HttpStatusCode.TooManyRequests));
        // Introspection and revocation check the same secret: they draw on the same allowance, not a fresh one each.
        foreach (var endpoint in new[] { "/connect/introspect", "/connect/revoke" })
        {
            using var other = node.CreateHttpClient();
            using var request = new HttpRequestMessage(HttpMethod.Post, endpoint) { Content = new FormUrlEncodedContent(new Dictionary<string, string> { ["token"] = "x" }) };
            request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Basic", Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes("demo-jobsite:wrong-secret")));
            using var refused = await other.SendAsync(request);
            Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        }

        // Another client's bucket is untouched.
        var auditor = await actors.AuditorClientTokenAsync();

        using var client = node.CreateHttpClient().WithToken(auditor);
        // A token's first use counts against the address (the limiter runs before the token is checked); from then on, the
        // auditor's own bucket.
        using (await client.GetAsync("/api/v1/audit/events?limit=1"))
        {
        }

        var api = new List<HttpStatusCode>();
        var left = new List<int>();
        for (var i = 0; i < 30; i++)
        {
            using var response = await client.GetAsync("/api/v1/audit/events?limit=1");
            api.Add(response.StatusCode);
            // Every API answer, a 429 included, states the allowance: 60 a minute is a bucket of ten refilled by one a second...
            Assert.Equal("\"per-caller\";q=10;w=10", Assert.Single(response.Headers.GetValues("RateLimit-Policy")));
            // ...and what is left of it: requests remaining, and seconds until the bucket is full again (refilled by one a
            // second, what is missing comes back in as many seconds); a refusal's Retry-After says when the next may go.
            var state = System.Text.RegularExpressions.Regex.Match(
                Assert.Single(response.Headers.GetValues("RateLimit")), "^\"per-caller\";r=(\\d+);t=(\\d+)$");
            Assert.True(state.Success, response.Headers.GetValues("RateLimit").Single());
            var (remaining, seconds) = (int.Parse(state.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture), int.Parse(state.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture));
            Assert.InRange(remaining, 0, 9);
            Assert.Equal(10 - remaining, seconds);
            if (response.StatusCode == HttpStatusCode.TooManyRequests)
            {
                Assert.Equal(0, remaining);
                Assert.Equal(TimeSpan.FromSeconds(1), response.Headers.RetryAfter?.Delta);
            }
            else
            {
                left.Add(remaining);
            }
        }

        Assert.Contains(HttpStatusCode.TooManyRequests, api);
        Assert.Contains(HttpStatusCode.OK, api);
        // A burst spends the bucket one by one (a refill second may fall inside it, once).
        Assert.Equal(9, left[0]);
        Assert.Contains(0, left);
        Assert.True(left.Zip(left.Skip(1)).Count(pair => pair.Second != pair.First - 1) <= 1, string.Join(",", left));
    }

    /// <summary>
    /// The limiter runs before authentication: a caller is trusted to be a site only with a token this node validated.
    /// A burst of forged tokens naming a client spends the sender's address allowance, not the client's.
    /// </summary>
    [Fact]
    public async Task ForgedTokensNamingAClientDoNotSpendItsAllowance()
    {
        await using var database = await TestDatabase.CreateAsync();
        await using var node = new GatewayFactory(database, new FakeTimeProvider(DateTimeOffset.UtcNow), settings: new Dictionary<string, string?>
        {
            ["RateLimits:ApiRequestsPerMinute"] = "60",
        });
        var auditor = await new Actors(node).AuditorClientTokenAsync();
        using var client = node.CreateHttpClient().WithToken(auditor);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/api/v1/audit/events?limit=1")).StatusCode);
        Assert.Equal("demo-auditor", node.Services.GetRequiredService<ExchangeGateway.Auth.ValidatedTokens>().VerifiedSubject(auditor));

        static string Part(string json) => Microsoft.IdentityModel.Tokens.Base64UrlEncoder.Encode(json);
        var forged = $"{Part("""{"alg":"RS256","typ":"at+jwt"}""")}.{Part("""{"sub":"demo-auditor","client_id":"demo-auditor"}""")}.Zm9yZ2Vk";
        using var attacker = node.CreateHttpClient().WithToken(forged);
        var refused = new List<HttpStatusCode>();
        for (var i = 0; i < 25; i++)
        {
            using var response = await attacker.GetAsync("/api/v1/audit/events?limit=1");
            refused.Add(response.StatusCode);
            // A 401 states the address's allowance too: it was counted before the token was judged.
            Assert.StartsWith("\"per-caller\";r=", Assert.Single(response.Headers.GetValues("RateLimit")), StringComparison.Ordinal);
        }

        Assert.DoesNotContain(HttpStatusCode.OK, refused);
        Assert.Contains(HttpStatusCode.TooManyRequests, refused);
        // The real client's bucket (ten at once) is as it was: its next five requests go through.
        for (var i = 0; i < 5; i++)
        {
            Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/api/v1/audit/events?limit=1")).StatusCode);
        }
    }

    /// <summary>
    /// Behind the configured load balancer each client has its own address allowance (from X-Forwarded-For); reached
    /// directly, a node ignores the header, or a client could pick a fresh bucket with every request.
    /// </summary>
    [Fact]
    public async Task TheClientsAddressComesFromTheConfiguredProxyOnly()
    {
        await using var database = await TestDatabase.CreateAsync();
        var limits = new Dictionary<string, string?> { ["RateLimits:PerAddressPerMinute"] = "3" };
        await using var direct = new GatewayFactory(database, new FakeTimeProvider(DateTimeOffset.UtcNow), settings: limits);
        await using var proxied = new GatewayFactory(database, new FakeTimeProvider(DateTimeOffset.UtcNow), issuer: direct.Issuer,
            settings: new Dictionary<string, string?>(limits) { ["Proxies:KnownProxies:0"] = "127.0.0.1" });

        async Task<HttpStatusCode> GetAsync(GatewayFactory node, string forwardedFor)
        {
            using var client = node.CreateHttpClient();
            using var request = new HttpRequestMessage(HttpMethod.Get, "/");
            request.Headers.Add("X-Forwarded-For", forwardedFor);
            using var response = await client.SendAsync(request);
            return response.StatusCode;
        }

        foreach (var node in new[] { direct, proxied })
        {
            for (var i = 0; i < 3; i++)
            {
                Assert.Equal(HttpStatusCode.OK, await GetAsync(node, "203.0.113.7"));
            }

            Assert.Equal(HttpStatusCode.TooManyRequests, await GetAsync(node, "203.0.113.7"));
        }

        // Another client behind the proxy has its own allowance; a header sent straight to a node changes nothing.
        Assert.Equal(HttpStatusCode.OK, await GetAsync(proxied, "203.0.113.8"));
        Assert.Equal(HttpStatusCode.TooManyRequests, await GetAsync(direct, "203.0.113.8"));

        // An IPv6 host is given a whole /64: a fresh address per request is still the same client; another /64 is not.
        for (var i = 1; i <= 3; i++)
        {
            Assert.Equal(HttpStatusCode.OK, await GetAsync(proxied, $"2001:db8:1:2::{i}"));
        }

        Assert.Equal(HttpStatusCode.TooManyRequests, await GetAsync(proxied, "2001:db8:1:2:ffff:ffff:ffff:ffff"));
        Assert.Equal(HttpStatusCode.OK, await GetAsync(proxied, "2001:db8:1:3::1"));
    }

    /// <summary>Account forms are limited per address: sign-in guesses and sign-up mails to strangers stay slow; reading the pages is not.</summary>
    [Fact]
    public async Task AccountFormsFromOneAddressAreLimitedButThePagesStillOpen()
    {
        await using var database = await TestDatabase.CreateAsync();
        await using var node = new GatewayFactory(database, new FakeTimeProvider(DateTimeOffset.UtcNow), settings: new Dictionary<string, string?>
        {
            ["RateLimits:AccountFormsPerMinute"] = "3",
        });
        // A seeker signed in from the same address first (two of the three forms: the API sign-in and the page's).
        var seeker = await new Actors(node).NewSeekerAsync();
        using var holder = new Pages.PageSession(node);
        await Actors.SubmitLoginAsync(holder.Http, new Uri("/Account/Login", UriKind.Relative), seeker.Email, seeker.Password);
        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 3; i++)
        {
            using var visitor = new Pages.PageSession(node);
            using var response = await visitor.SubmitAsync("/Account/ForgotPassword", new() { ["Email"] = $"someone-{i}@example.test" });
            statuses.Add(response.StatusCode);
        }

        Assert.Equal([HttpStatusCode.OK, HttpStatusCode.TooManyRequests, HttpStatusCode.TooManyRequests], statuses);
        using var reader = new Pages.PageSession(node);
        Assert.Contains("<form", await reader.GetPageAsync("/Account/Login"), StringComparison.Ordinal);

        // The person at the browser is told in words, on a page.
        using (var refused = await reader.SubmitAsync("/Account/Login", new() { ["Email"] = "someone@example.test", ["Password"] = "whatever-it-is" }))
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
            Assert.Equal("text/html", refused.Content.Headers.ContentType!.MediaType);
            var page = await refused.Content.ReadAsStringAsync();
            Assert.Contains("Réessayez dans", page, StringComparison.Ordinal);
            Assert.Contains("<html lang=\"fr\">", page, StringComparison.Ordinal);
        }

        // Signing out is not a guess: with the address's allowance spent, the seeker still ends their session.
        using var signedOut = await holder.SubmitAsync("/Cv", [], "/Account/Logout");
        Assert.Equal(HttpStatusCode.Redirect, signedOut.StatusCode);
        using var afterwards = await holder.Http.GetAsync("/Cv");
        Assert.Equal(HttpStatusCode.Redirect, afterwards.StatusCode);
    }

    /// <summary>
    /// A signed-in account's forms are limited per account (each tick writes rows, a receipt and audit events), whatever
    /// address they come from; another account is not held back, and signing out or leaving never is.
    /// </summary>
    [Fact]
    public async Task FormsFromOneSignedInAccountAreLimitedPerAccount()
    {
        await using var database = await TestDatabase.CreateAsync();
        await using var node = new GatewayFactory(database, new FakeTimeProvider(DateTimeOffset.UtcNow), settings: new Dictionary<string, string?>
        {
            ["RateLimits:SignedInFormsPerMinute"] = "2",
        });
        var actors = new Actors(node);
        var seeker = await actors.NewSeekerAsync();
        var other = await actors.NewSeekerAsync();
        using var session = new Pages.PageSession(node);
        await Actors.SubmitLoginAsync(session.Http, new Uri("/Account/Login", UriKind.Relative), seeker.Email, seeker.Password);
        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 3; i++)
        {
            using var response = await session.SubmitAsync("/Cv", [], "/Cv?handler=Refresh");
            statuses.Add(response.StatusCode);
        }

        Assert.Equal([HttpStatusCode.Redirect, HttpStatusCode.Redirect, HttpStatusCode.TooManyRequests], statuses);
        using (var refused = await session.SubmitAsync("/Sharing", []))
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
            Assert.NotNull(refused.Headers.RetryAfter);
            Assert.Contains("depuis votre compte. Réessayez dans", await refused.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        // Another account from the same address is not held back; and one past its allowance can still leave.
        using (var second = new Pages.PageSession(node))
        {
            await Actors.SubmitLoginAsync(second.Http, new Uri("/Account/Login", UriKind.Relative), other.Email, other.Password);
            for (var i = 0; i < 2; i++)
            {
                using var response = await second.SubmitAsync("/Cv", [], "/Cv?handler=Refresh");
                Assert.Equal(HttpStatusCode.Redirect, response.StatusCode);
            }

            using (var refused = await second.SubmitAsync("/Cv", [], "/Cv?handler=Refresh"))
            {
                Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
            }

            using var forgotten = await second.SubmitAsync("/Account/Delete", new() { ["Confirm"] = "true" });
            Assert.Equal(HttpStatusCode.OK, forgotten.StatusCode);
            Assert.Equal(0L, await database.ScalarAsync<long>($"SELECT count(*) FROM \"AspNetUsers\" WHERE id = '{other.Id}'"));
        }

        using var signedOut = await session.SubmitAsync("/Cv", [], "/Account/Logout");
        Assert.Equal(HttpStatusCode.Redirect, signedOut.StatusCode);
        using var afterwards = await session.Http.GetAsync("/Cv");
        Assert.Equal(HttpStatusCode.Redirect, afterwards.StatusCode);
    }
}
