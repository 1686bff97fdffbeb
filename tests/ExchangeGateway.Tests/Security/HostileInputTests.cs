using System.Net;
using System.Net.Http.Headers;
using System.Text;
using ExchangeGateway.Tests.Infrastructure;
using Npgsql;

namespace ExchangeGateway.Tests.Security;

/// <summary>
/// Every endpoint that takes input, fed what an attacker or a broken client sends. Each answer must be a 4xx problem,
/// never a 500, and the database must be exactly as before (a checksum of every table of every schema).
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class HostileInputTests(GatewayFixture fixture)
{
    private const string SqlPayload = "x'); DROP TABLE consents; --";
    private const string ScriptPayload = "<script>alert(1)</script>";

    private sealed record Case(string Caller, string Method, string Url, byte[]? Body, string ContentType = "application/json")
    {
        public string? IfMatch { get; init; }
    }

    /// <summary>
    /// PostgreSQL stores no U+0000 in text: a NUL in a query string, a form field or a Basic credential is a 400 at the door,
    /// never a 500 from the lookup it would reach (an account, a client, the sign-in lock, an audit filter). Sent as a
    /// literal %00 in the URL and as a raw byte in the form, which is how a client gets one through.
    /// </summary>
    [Fact]
    public async Task ANulCharacterIsRefusedAsABadRequestWhereverItIsSent()
    {
        using var anonymous = fixture.Client();
        foreach (var (url, expected) in new[]
        {
            ("/Account/ResetPassword?user=%00&code=x", HttpStatusCode.BadRequest),
            ("/Account/ConfirmEmail?user=%00&code=x", HttpStatusCode.BadRequest),
            ("/connect/authorize?client_id=%00&response_type=code&scope=openid&redirect_uri=http%3A%2F%2F127.0.0.1%2Fcb&code_challenge=x&code_challenge_method=S256", HttpStatusCode.BadRequest),
            // Encoded twice, the NUL is only in the page's own reading of where it leads: the sign-in page, without that.
            ("/Account/Login?ReturnUrl=%2Fconnect%2Fauthorize%3Fclient_id%3D%2500", HttpStatusCode.OK),
            // Nor is a return address without a redirect_uri a 500.
            ("/Account/Login?ReturnUrl=%2Fconnect%2Fauthorize%3Fclient_id%3Ddemo-jobsite", HttpStatusCode.OK),
        })
        {
            using var response = await anonymous.GetAsync(url);
            Assert.True(response.StatusCode == expected, $"GET {url}: {(int)response.StatusCode}");
        }

        using (var auditor = fixture.Client().WithToken(await fixture.Actors.AuditorClientTokenAsync()))
        {
            foreach (var filter in new[] { "actor", "subject", "recipient" })
            {
                using var response = await auditor.GetAsync($"/api/v1/audit/events?{filter}=a%00b");
                await response.AssertProblemAsync(HttpStatusCode.BadRequest);
            }
        }

        using (var token = new HttpRequestMessage(HttpMethod.Post, "/connect/token"))
        {
            token.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Basic", Convert.ToBase64String("demo%00jobsite:secret"u8.ToArray()));
            token.Content = new FormUrlEncodedContent(new Dictionary<string, string> { ["grant_type"] = "client_credentials", ["scope"] = "cv:read" });
            using var response = await anonymous.SendAsync(token);
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        }

        // A raw NUL byte in the sign-in form's address, with a valid antiforgery token: it would reach the sign-in lock.
        using var browser = new Pages.PageSession(fixture.Factory);
        var page = await browser.GetPageAsync("/Account/Login");
        var antiforgery = System.Net.WebUtility.HtmlDecode(Actors.AntiforgeryField().Match(page).Groups[1].Value);
        using var login = new HttpRequestMessage(HttpMethod.Post, "/Account/Login")
        {
            Content = new StringContent($"Email=a\0b%40example.test&Password=x&__RequestVerificationToken={Uri.EscapeDataString(antiforgery)}",
                System.Text.Encoding.UTF8, "application/x-www-form-urlencoded"),
        };
        using var refused = await browser.Http.SendAsync(login);
        Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
    }

    /// <summary>
    /// A 400 the framework raises (a JSON member of the wrong type, an unknown member, a query parameter it cannot bind, a
    /// NUL) names the faulty field in <c>errors</c>, as the gateway's own validation does and the OpenAPI document promises:
    /// a generated client requires the member.
    /// </summary>
    [Fact]
    public async Task EveryBadRequestNamesItsFaultyFieldInErrors()
    {
        var site = await Sites.RegisterAsync(fixture.Factory, fixture.Actors);
        using var client = fixture.Client().WithToken(await fixture.Actors.TokenAsync(site));
        foreach (var (body, field) in new[] { ("{\"maxEvents\":true}", "maxEvents"), ("{\"nope\":true}", "nope"), ("[", "") })
        {
            using var content = new StringContent(body, Encoding.UTF8, "application/json");
            using var response = await client.PostAsync("/api/v1/events/poll", content);
            var problem = await response.AssertProblemAsync(HttpStatusCode.BadRequest);
            Assert.True(problem.GetProperty("errors").TryGetProperty(field, out var messages), $"{body}: {problem}");
            Assert.NotEmpty(messages.EnumerateArray());
        }

        using (var response = await client.GetAsync("/api/v1/shared-cvs?limit=many"))
        {
            Assert.True((await response.AssertProblemAsync(HttpStatusCode.BadRequest)).GetProperty("errors").TryGetProperty("limit", out _));
        }

        using (var response = await client.GetAsync("/api/v1/shared-cvs?cursor=a%00b"))
        {
            Assert.True((await response.AssertProblemAsync(HttpStatusCode.BadRequest)).GetProperty("errors").TryGetProperty("", out _));
        }
    }

    /// <summary>
    /// Bodies the framework's readers throw on, sent anonymously to any path: they were 500s before routing and before the
    /// rate limiter (a multipart type without a boundary, a cut multipart body, more form values than the reader's limit,
    /// a charset .NET does not know). The quoted charset HTTP allows is read as the plain one.
    /// </summary>
    [Fact]
    public async Task BodiesTheReadersCannotTakeAreClientErrors()
    {
        using var anonymous = fixture.Client();
        var tooMany = string.Join('&', Enumerable.Range(0, 10_001).Select(i => $"v{i}=1"));
        foreach (var (contentType, body, expected) in new[]
        {
            ("multipart/form-data", "x", HttpStatusCode.BadRequest),
            ("multipart/form-data; boundary=b", "--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nunfinished", HttpStatusCode.BadRequest),
            ("application/x-www-form-urlencoded", tooMany, HttpStatusCode.BadRequest),
            ("application/json; charset=klingon", "{}", HttpStatusCode.UnsupportedMediaType),
        })
        {
            foreach (var path in new[] { "/health/live", "/api/v1/events/poll", "/connect/token", "/Account/Login" })
            {
                using var content = new ByteArrayContent(Encoding.UTF8.GetBytes(body));
                content.Headers.TryAddWithoutValidation("Content-Type", contentType);
                using var response = await anonymous.PostAsync(path, content);
                Assert.True(response.StatusCode == expected, $"POST {path} ({contentType}): {(int)response.StatusCode}");
                Assert.DoesNotContain("   at ", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
            }
        }

        var site = await Sites.RegisterAsync(fixture.Factory, fixture.Actors);
        using var client = fixture.Client().WithToken(await fixture.Actors.TokenAsync(site));
        using var poll = new ByteArrayContent("{\"returnImmediately\":true}"u8.ToArray());
        poll.Headers.TryAddWithoutValidation("Content-Type", "application/json; charset=\"utf-8\"");
        using var polled = await client.PostAsync("/api/v1/events/poll", poll);
        Assert.Equal(HttpStatusCode.OK, polled.StatusCode);

        // The charset check is JSON's: a form with a charset .NET does not know is read as UTF-8, as it always was, and a
        // site sending one still gets its token.
        using var token = new HttpRequestMessage(HttpMethod.Post, "/connect/token")
        {
            Content = new ByteArrayContent(Encoding.UTF8.GetBytes("grant_type=client_credentials&scope=cv%3Aread")),
        };
        token.Content.Headers.TryAddWithoutValidation("Content-Type", "application/x-www-form-urlencoded; charset=klingon");
        token.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{site.ClientId}:{site.ClientSecret}")));
        using var issued = await anonymous.SendAsync(token);
        Assert.Equal(HttpStatusCode.OK, issued.StatusCode);
    }

    [Fact]
    public async Task HostileRequestsGet4xxProblemsAndChangeNothing()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        await Sharing.PutCvAsync(fixture.Factory, seeker.Tokens.AccessToken, Sharing.Resume("hostile"));
        var site = await Sites.RegisterAsync(fixture.Factory, fixture.Actors);
        var tokens = new Dictionary<string, string>
        {
            ["seeker"] = seeker.Tokens.AccessToken,
            ["site"] = await fixture.Actors.TokenAsync(site),
            ["operator"] = (await fixture.Actors.NewOperatorAsync()).Tokens.AccessToken,
            ["auditor"] = await fixture.Actors.AuditorClientTokenAsync(),
        };

        var cases = Cases(site).ToList();
        var before = await ChecksumAsync();
        var failures = new List<string>();
        foreach (var c in cases)
        {
            using var client = fixture.Client().WithToken(tokens[c.Caller]);
            using var request = new HttpRequestMessage(new HttpMethod(c.Method), c.Url);
            if (c.Body is not null)
            {
                request.Content = new ByteArrayContent(c.Body);
                request.Content.Headers.ContentType = MediaTypeHeaderValue.Parse(c.ContentType);
                request.Headers.ExpectContinue = c.Body.Length > 1024 * 1024;
            }

            if (c.IfMatch is not null)
            {
                request.Headers.TryAddWithoutValidation("If-Match", c.IfMatch);
            }

            using var response = await client.SendAsync(request);
            var status = (int)response.StatusCode;
            var text = await response.Content.ReadAsStringAsync();
            if (status is < 400 or >= 500)
            {
                failures.Add($"{c.Method} {Shorten(c.Url)} [{Shorten(Encoding.UTF8.GetString(c.Body ?? []))}] → {status}");
            }
            else if (response.Content.Headers.ContentType?.MediaType != "application/problem+json" || text.Contains("   at ", StringComparison.Ordinal))
            {
                failures.Add($"{c.Method} {Shorten(c.Url)} → {status} without a clean problem body");
            }
        }

        Assert.True(failures.Count == 0, $"{failures.Count} of {cases.Count} cases:\n" + string.Join("\n", failures));
        Assert.Equal(before, await ChecksumAsync());
    }

    private static string Shorten(string value) => value.Length > 80 ? value[..80] + "…" : value;

    private static byte[] Utf8(string text) => Encoding.UTF8.GetBytes(text);

    private static IEnumerable<Case> Cases(TestSite site)
    {
        var invalidUtf8 = new byte[] { (byte)'{', (byte)'"', (byte)'a', (byte)'"', (byte)':', (byte)'"', 0xC3, 0x28, 0xFF, (byte)'"', (byte)'}' };
        var nested = Utf8(new string('[', 10_000) + new string(']', 10_000));
        var tenMegabytes = Utf8("{\"displayName\":\"" + new string('x', 10 * 1024 * 1024) + "\"}");
        string[] malformed = ["{", "{\"a\":}", "nul", "[]", "\"text\"", "{\"displayName\": 12}"];

        // The CV.
        // (A JSON Resume document may carry extra members, so {"displayName": 12} is not malformed for a CV.)
        foreach (var body in malformed.SkipLast(1).Select(Utf8).Append(invalidUtf8).Append(nested).Append(tenMegabytes))
        {
            yield return new Case("seeker", "PUT", "/api/v1/me/cv", body);
        }

        yield return new Case("seeker", "PUT", "/api/v1/me/cv", Utf8("{\"basics\":{\"name\":\"a\\u0007b\"}}"));
        // Escapes of half a character: the parser keeps them, only writing the text finds them.
        yield return new Case("seeker", "PUT", "/api/v1/me/cv", Utf8("{\"basics\":{\"name\":\"\\ud800\"}}"));
        yield return new Case("seeker", "PUT", "/api/v1/me/cv", Utf8("{\"\\udc00\":1}"));
        yield return new Case("seeker", "PUT", "/api/v1/me/cv", Utf8("{\"work\":\"" + ScriptPayload + "\"}"));
        yield return new Case("seeker", "PUT", "/api/v1/me/cv", Utf8("{\"basics\":{\"email\":\"" + SqlPayload + "\"}}"));
        yield return new Case("seeker", "PUT", "/api/v1/me/cv", Utf8("{\"basics\":{\"name\":\"x\"}}"), "text/xml");
        var cvPreconditions = new[] { "\"v999\"", "garbage", "\"v-1\"", "\"v99999999999999999999\"" };
        foreach (var ifMatch in cvPreconditions)
        {
            yield return new Case("seeker", "PUT", "/api/v1/me/cv", Utf8("{\"basics\":{\"name\":\"a\"}}")) { IfMatch = ifMatch };
        }

        // Consents and receipts: forged and malformed ids.
        foreach (var id in new[] { "not-a-guid", "00000000-0000-0000-0000-000000000000", "' OR 1=1 --", "99999999999999999999", "-1", "%00" })
        {
            yield return new Case("seeker", "PUT", $"/api/v1/me/consents/{Uri.EscapeDataString(id)}", null);
            yield return new Case("seeker", "DELETE", $"/api/v1/me/consents/{Uri.EscapeDataString(id)}", null);
            yield return new Case("seeker", "GET", $"/api/v1/me/receipts/{Uri.EscapeDataString(id)}", null);
            yield return new Case("site", "GET", $"/api/v1/shared-cvs/{Uri.EscapeDataString(id)}", null);
            yield return new Case("site", "POST", $"/api/v1/erasures/{Uri.EscapeDataString(id)}/confirmation", null);
            yield return new Case("operator", "GET", $"/api/v1/admin/recipients/{Uri.EscapeDataString(id)}", null);
        }

        yield return new Case("site", "GET", "/api/v1/shared-cvs/" + new string('a', 5000), null);

        // Collections: limits, cursors and filters.
        foreach (var query in new[] { "limit=0", "limit=-1", "limit=10000", "limit=99999999999999999999", "limit=abc", "cursor=forged", "cursor=" + new string('A', 5000), "cursor=%27%3B%20DROP%20TABLE%20cvs%3B--" })
        {
            yield return new Case("site", "GET", "/api/v1/shared-cvs?" + query, null);
            yield return new Case("seeker", "GET", "/api/v1/me/disclosures?" + query, null);
            yield return new Case("seeker", "GET", "/api/v1/recipients?" + query, null);
            yield return new Case("auditor", "GET", "/api/v1/audit/events?" + query, null);
            yield return new Case("auditor", "GET", "/api/v1/audit/erasures?" + query, null);
            yield return new Case("operator", "GET", "/api/v1/admin/recipients?" + query, null);
        }

        foreach (var query in new[] { "from=yesterday", "to=2026-13-45", "action=" + Uri.EscapeDataString(SqlPayload), "actor=" + new string('a', 500), "from=2030-01-01T00:00:00Z&to=2020-01-01T00:00:00Z", "actor=a&actor=b", "subject=p_a&subject=p_b" })
        {
            yield return new Case("auditor", "GET", "/api/v1/audit/events?" + query, null);
            yield return new Case("auditor", "GET", "/api/v1/audit/events/export?" + query, null);
        }

        yield return new Case("auditor", "GET", "/api/v1/audit/erasures?status=" + Uri.EscapeDataString(ScriptPayload), null);

        // Registering a site.
        const string valid = "\"displayName\":\"Hostile\",\"legalName\":\"Hostile SAS\",\"website\":\"https://h.example/\",\"privacyPolicyUrl\":\"https://h.example/p\",\"contactEmail\":\"dpo@h.example\",\"deliveryMode\":\"poll\"";
        foreach (var body in malformed.Select(Utf8).Append(invalidUtf8).Append(nested).Append(tenMegabytes).Concat(new[]
        {
            "{" + valid + ",\"unknown\":1}",
            "{" + valid.Replace("\"poll\"", "\"carrier-pigeon\"", StringComparison.Ordinal) + "}",
            "{" + valid.Replace("https://h.example/p", "javascript:alert(1)", StringComparison.Ordinal) + "}",
            "{" + valid.Replace("dpo@h.example", SqlPayload, StringComparison.Ordinal) + "}",
            "{" + valid.Replace("Hostile SAS", "Hostile\\u0000SAS", StringComparison.Ordinal) + "}",
            "{" + valid + ",\"clientId\":\"" + SqlPayload + "\"}",
            "{" + valid + ",\"clientId\":\"" + ScriptPayload + "\"}",
            "{" + valid.Replace("\"poll\"", "\"push\"", StringComparison.Ordinal) + ",\"pushEndpoint\":\"http://169.254.169.254/latest/meta-data\"}",
            "{" + valid.Replace("\"poll\"", "\"push\"", StringComparison.Ordinal) + ",\"pushEndpoint\":\"file:///etc/passwd\"}",
            "{" + valid + ",\"clientAuthentication\":\"private_key_jwt\",\"jwks\":{\"keys\":[{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}]}}",
            "{\"displayName\":\"" + new string('x', 100_000) + "\"," + valid[(valid.IndexOf(',', StringComparison.Ordinal) + 1)..] + "}",
        }.Select(Utf8)))
        {
            yield return new Case("operator", "POST", "/api/v1/admin/recipients", body);
        }

        // Changing a site.
        foreach (var body in new[] { "{\"website\":\"not a url\"}", "{\"contactEmail\":12}", "{\"deliveryMode\":\"push\"}", "{\"nope\":true}", "[", "{\"displayName\":\"\"}" })
        {
            yield return new Case("operator", "PATCH", $"/api/v1/admin/recipients/{site.Id}", Utf8(body));
        }

        foreach (var body in new[] { "{}", "{\"reason\":\"\"}", "{\"reason\":\"a\\u0001b\"}", "{\"reason\":\"" + new string('r', 600) + "\"}", "{\"reason\":42}" })
        {
            yield return new Case("operator", "POST", $"/api/v1/admin/recipients/{site.Id}/suspend", Utf8(body));
        }

        foreach (var body in new[] { "{\"gracePeriodSeconds\":-1}", "{\"gracePeriodSeconds\":99999999999}", "{\"gracePeriodSeconds\":\"soon\"}", "{\"grace\":1}" })
        {
            yield return new Case("operator", "POST", $"/api/v1/admin/recipients/{site.Id}/rotate-secret", Utf8(body));
        }

        // Polling for events.
        foreach (var body in new[]
        {
            "{\"ack\":[\"not-a-jti\"]}", "{\"ack\":\"" + SqlPayload + "\"}", "{\"maxEvents\":-5}", "{\"maxEvents\":1e300}",
            "{\"setErrs\":{\"x\":{\"err\":\"e\"}}}", "{\"setErrs\":[1,2]}", "{\"returnImmediately\":\"yes\"}", "{\"unknown\":1}", "{",
        })
        {
            yield return new Case("site", "POST", "/api/v1/events/poll", Utf8(body));
        }

        yield return new Case("site", "POST", "/api/v1/events/poll", invalidUtf8);
        yield return new Case("site", "POST", "/api/v1/events/poll", nested);
    }

    /// <summary>One md5 per table over its rows in a stable order, for every table of every schema but the system ones.</summary>
    private async Task<string> ChecksumAsync()
    {
        await using var connection = await fixture.Database.OpenOwnerConnectionAsync();
        var tables = new List<string>();
        await using (var list = new NpgsqlCommand(
            "SELECT format('%I.%I', table_schema, table_name) FROM information_schema.tables WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
            connection))
        await using (var reader = await list.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync())
            {
                tables.Add(reader.GetString(0));
            }
        }

        var sums = new StringBuilder();
        foreach (var table in tables)
        {
            await using var sum = new NpgsqlCommand($"SELECT coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM {table} t", connection);
            sums.Append(table).Append('=').Append(await sum.ExecuteScalarAsync()).Append('\n');
        }

        return sums.ToString();
    }
}
