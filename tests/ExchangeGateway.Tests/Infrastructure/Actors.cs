using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.RegularExpressions;
using ExchangeGateway.Auth;
using Microsoft.AspNetCore.Identity;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.IdentityModel.Tokens;

namespace ExchangeGateway.Tests.Infrastructure;

public sealed record TokenSet(string AccessToken, string? RefreshToken, string? IdToken);

/// <summary>A person with an account, signed in through the real authorization code + PKCE flow.</summary>
public sealed record Person(string Id, string Email, string Password, TokenSet Tokens);

/// <summary>Gets real tokens from the real token endpoint, the way each kind of caller would.</summary>
public sealed partial class Actors(GatewayFactory factory)
{
    public const string DemoPassword = "ChangeMe-Demo-1!";
    public const string SwaggerRedirect = "swagger/oauth2-redirect.html";

    public async Task<HttpResponseMessage> RequestClientTokenAsync(string clientId, string secret, string scope)
    {
        using var client = factory.CreateHttpClient();
        using var request = new HttpRequestMessage(HttpMethod.Post, "/connect/token")
        {
            Content = new FormUrlEncodedContent(new Dictionary<string, string> { ["grant_type"] = "client_credentials", ["scope"] = scope }),
        };
        request.Headers.Authorization = new AuthenticationHeaderValue(
            "Basic", Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes($"{Uri.EscapeDataString(clientId)}:{Uri.EscapeDataString(secret)}")));
        return await client.SendAsync(request);
    }

    public async Task<string> ClientTokenAsync(string clientId, string secret, string scope)
    {
        using var response = await RequestClientTokenAsync(clientId, secret, scope);
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"token request for {clientId} failed: {body}");
        return JsonDocument.Parse(body).RootElement.GetProperty("access_token").GetString()!;
    }

    public Task<string> DemoSiteTokenAsync() => ClientTokenAsync("demo-jobsite", "demo-jobsite-secret", ApiScopes.CvRead);
    public Task<string> OtherSiteTokenAsync() => ClientTokenAsync("other-jobsite", "other-jobsite-secret", ApiScopes.CvRead);
    public Task<string> AuditorClientTokenAsync() => ClientTokenAsync("demo-auditor", "demo-auditor-secret", ApiScopes.AuditRead);

    /// <summary>A new account with the given role, signed in with code + PKCE for the scope that role may have.</summary>
    public async Task<Person> NewPersonAsync(string role, string? email = null, string scope = "openid offline_access")
    {
        email ??= $"{role}-{Guid.NewGuid():N}@example.test";
        var password = "Test-Password-7" + Guid.NewGuid().ToString("N")[..8] + "!";
        string id;
        await using (var scopeProvider = factory.Services.CreateAsyncScope())
        {
            var users = scopeProvider.ServiceProvider.GetRequiredService<UserManager<GatewayUser>>();
            var user = new GatewayUser { UserName = email, Email = email, EmailConfirmed = true, CreatedAt = factory.Time.GetUtcNow() };
            var created = await users.CreateAsync(user, password);
            Assert.True(created.Succeeded, string.Join(";", created.Errors.Select(e => e.Description)));
            await users.AddToRoleAsync(user, role);
            id = user.Id;
        }

        var apiScope = role switch { Roles.Seeker => ApiScopes.CvManage, Roles.Auditor => ApiScopes.AuditRead, _ => ApiScopes.RecipientsAdmin };
        var tokens = await SignInWithCodeFlowAsync(email, password, $"{scope} {apiScope}");
        return new Person(id, email, password, tokens);
    }

    public Task<Person> NewSeekerAsync(string? email = null) => NewPersonAsync(Roles.Seeker, email);
    public Task<Person> NewOperatorAsync() => NewPersonAsync(Roles.Operator);
    public Task<Person> NewAuditorAsync() => NewPersonAsync(Roles.Auditor);

    /// <summary>
    /// The browser's part of the flow, over HTTP with cookies: authorize, sign-in form, back to authorize, code. Swagger UI's
    /// client unless another public client (and its redirect URI) is named.
    /// </summary>
    public async Task<TokenSet> SignInWithCodeFlowAsync(string email, string password, string scope, string? clientId = null, string? redirectUri = null)
    {
        var cookies = new CookieContainer();
        using var browser = factory.CreateHttpClient(cookies);
        var verifier = Base64UrlEncoder.Encode(RandomNumberGenerator.GetBytes(32));
        var challenge = Base64UrlEncoder.Encode(SHA256.HashData(System.Text.Encoding.ASCII.GetBytes(verifier)));
        clientId ??= ClientRegistrations.SwaggerClientId;
        redirectUri ??= new Uri(factory.Issuer, SwaggerRedirect).AbsoluteUri;
        using var toLogin = await browser.GetAsync(AuthorizeUrl(scope, challenge, ("client_id", clientId), ("redirect_uri", redirectUri)));
        Assert.Equal(HttpStatusCode.Redirect, toLogin.StatusCode);
        var loginUrl = toLogin.Headers.Location!;
        Assert.StartsWith("/Account/Login", loginUrl.IsAbsoluteUri ? loginUrl.PathAndQuery : loginUrl.OriginalString, StringComparison.Ordinal);

        var location = await SecondFactorAsync(browser, await SubmitLoginAsync(browser, loginUrl, email, password), email);
        using var toClient = await browser.GetAsync(location);
        Assert.Equal(HttpStatusCode.Redirect, toClient.StatusCode);
        var callback = toClient.Headers.Location!;
        Assert.StartsWith(redirectUri, callback.AbsoluteUri, StringComparison.Ordinal);
        var code = System.Web.HttpUtility.ParseQueryString(callback.Query)["code"];
        Assert.False(string.IsNullOrEmpty(code), $"no code in {callback}");

        using var tokenResponse = await browser.PostAsync("/connect/token", new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["grant_type"] = "authorization_code",
            ["code"] = code!,
            ["redirect_uri"] = redirectUri,
            ["client_id"] = clientId,
            ["code_verifier"] = verifier,
        }));
        return await ReadTokensAsync(tokenResponse);
    }

    /// <summary>The Swagger client's authorization request (code flow, S256 PKCE) for <paramref name="scope"/>, with any extra parameters (which replace the defaults they name).</summary>
    public string AuthorizeUrl(string scope, string challenge, params (string Name, string Value)[] extra) =>
        "/connect/authorize?" + string.Join("&", new Dictionary<string, string>
        {
            ["client_id"] = ClientRegistrations.SwaggerClientId,
            ["response_type"] = "code",
            ["redirect_uri"] = new Uri(factory.Issuer, SwaggerRedirect).AbsoluteUri,
            ["scope"] = scope,
            ["state"] = "s-" + Guid.NewGuid().ToString("N"),
            ["code_challenge"] = challenge,
            ["code_challenge_method"] = "S256",
        }.Where(p => !extra.Any(e => e.Name == p.Key)).Concat(extra.Select(e => KeyValuePair.Create(e.Name, e.Value))).Select(p => $"{p.Key}={Uri.EscapeDataString(p.Value)}"));

    /// <summary>A fresh access token for a person (after the clock moved past the old one's lifetime).</summary>
    public async Task<string> FreshTokenAsync(Person person, string scope = "openid offline_access " + ApiScopes.CvManage) =>
        (await SignInWithCodeFlowAsync(person.Email, person.Password, scope)).AccessToken;

    public async Task<TokenSet> RefreshAsync(string refreshToken)
    {
        using var response = await RequestRefreshAsync(refreshToken);
        return await ReadTokensAsync(response);
    }

    /// <summary>The Swagger client's refresh_token request, answered as it is (the caller judges it).</summary>
    public async Task<HttpResponseMessage> RequestRefreshAsync(string refreshToken)
    {
        using var client = factory.CreateHttpClient();
        return await client.PostAsync("/connect/token", new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["grant_type"] = "refresh_token",
            ["refresh_token"] = refreshToken,
            ["client_id"] = ClientRegistrations.SwaggerClientId,
        }));
    }

    /// <summary>
    /// The authenticators the tests hold, by database and account address: staff add one at their first sign-in, through
    /// the enrolment page, as a person would (reading the key it shows).
    /// </summary>
    private static readonly ConcurrentDictionary<(string Database, string Email), string> Authenticators = new();

    /// <summary>The last time step used with each key: the gateway takes each code once.</summary>
    private static readonly ConcurrentDictionary<string, long> LastSteps = new();

    /// <summary>
    /// Where a sign-in that stopped at <paramref name="location"/> goes once its second factor is given: the code page gets
    /// a code from the account's authenticator; the enrolment page is read for its key, answered, and left by its link.
    /// Any other location is returned as it is.
    /// </summary>
    public async Task<Uri> SecondFactorAsync(HttpClient browser, Uri location, string email)
    {
        var path = (location.IsAbsoluteUri ? location.PathAndQuery : location.OriginalString).Split('?')[0];
        if (path == "/Account/EnrollTwoFactor")
        {
            return (await EnrolAsync(browser, location, email)).Onward;
        }

        if (path == "/Account/TwoFactor")
        {
            Assert.True(Authenticators.TryGetValue((factory.DatabaseName, email), out var key), $"no authenticator is held for {email}");
            var page = await browser.GetStringAsync(location);
            using var answered = await PostFormAsync(browser, location, page, new() { ["Code"] = NextCode(key) });
            Assert.True(answered.StatusCode == HttpStatusCode.Redirect, $"the code was refused: {(int)answered.StatusCode}");
            return answered.Headers.Location!;
        }

        return location;
    }

    /// <summary>Sets a new password by the link `staff grant` or `staff reset-two-factor` printed (which signs nobody in); returns it.</summary>
    public async Task<string> SetPasswordByLinkAsync(Uri link)
    {
        var password = "Staff-Password-6" + Guid.NewGuid().ToString("N")[..6] + "!";
        var query = System.Web.HttpUtility.ParseQueryString(link.Query);
        using var browser = new Pages.PageSession(factory);
        using var set = await browser.SubmitAsync(link.PathAndQuery, new()
        {
            ["user"] = query["user"]!, ["Code"] = query["code"]!, ["Password"] = password, ["ConfirmPassword"] = password,
        });
        Assert.Equal(HttpStatusCode.OK, set.StatusCode);
        Assert.DoesNotContain("eg.session", browser.Cookies.GetCookies(factory.BaseAddress).Select(c => c.Name));
        return password;
    }

    /// <summary>
    /// Answers the enrolment page at <paramref name="location"/> as a person would: reads the key it shows, adds it to the
    /// test's authenticators, sends a code made from it (and the password, where given). Returns where the page leads on and the recovery codes it showed.
    /// </summary>
    public async Task<(Uri Onward, List<string> RecoveryCodes)> EnrolAsync(HttpClient browser, Uri location, string email, string? password = null)
    {
        var page = await browser.GetStringAsync(location);
        var key = KeyShown(page);
        Assert.False(string.IsNullOrEmpty(key), "the enrolment page shows no key");
        Authenticators[(factory.DatabaseName, email)] = key;
        var fields = new Dictionary<string, string> { ["Code"] = NextCode(key) };
        if (password is not null)
        {
            // A signed-in account's own page (Account/TwoStep) asks for the password too.
            fields["Password"] = password;
        }

        using var enrolled = await PostFormAsync(browser, location, page, fields);
        var done = await enrolled.Content.ReadAsStringAsync();
        Assert.True(enrolled.StatusCode == HttpStatusCode.OK, $"enrolment answered {(int)enrolled.StatusCode}");
        var onward = ContinueLink().Match(done).Groups[1].Value;
        Assert.False(string.IsNullOrEmpty(onward), "the enrolment did not finish: " + done);
        return (new Uri(System.Net.WebUtility.HtmlDecode(onward), UriKind.Relative), RecoveryCodeShown().Matches(done).Select(m => m.Groups[1].Value).ToList());
    }

    /// <summary>The authenticator key an enrolment page shows, as an app takes it.</summary>
    public static string KeyShown(string page) =>
        AuthenticatorKeyField().Match(page).Groups[1].Value.Replace(" ", "", StringComparison.Ordinal).ToUpperInvariant();

    /// <summary>
    /// A code the gateway has not seen yet, from its own clock: the step a step ago, now, or a step ahead (it takes each
    /// once). A test that signs one account in more often than that without the clock moving says so itself; the shared
    /// clock is not moved here behind the other tests' backs.
    /// </summary>
    public string NextCode(string key)
    {
        var now = factory.Time.GetUtcNow().ToUnixTimeSeconds() / 30;
        var last = LastSteps.GetValueOrDefault(key, long.MinValue);
        for (var step = now - 1; step <= now + 1; step++)
        {
            if (step > last)
            {
                LastSteps[key] = step;
                return ExchangeGateway.Auth.SecondFactor.Code(ExchangeGateway.Auth.SecondFactor.Base32.Decode(key), step);
            }
        }

        throw new InvalidOperationException("Every code this key can make on the test clock is used: advance the clock by 30 s in the test.");
    }

    /// <summary>The authenticator key a test holds for an account, once it has enrolled.</summary>
    public string AuthenticatorOf(string email) => Authenticators[(factory.DatabaseName, email)];

    /// <summary>The code of the step last used with this key (which the gateway must not take again).</summary>
    public static string LastCode(string key) => ExchangeGateway.Auth.SecondFactor.Code(ExchangeGateway.Auth.SecondFactor.Base32.Decode(key), LastSteps[key]);

    /// <summary>Every code the gateway could take from this key now (a step either side), used or not.</summary>
    public IReadOnlySet<string> CodesNear(string key)
    {
        var now = factory.Time.GetUtcNow().ToUnixTimeSeconds() / 30;
        var secret = ExchangeGateway.Auth.SecondFactor.Base32.Decode(key);
        return new HashSet<string> { ExchangeGateway.Auth.SecondFactor.Code(secret, now - 1), ExchangeGateway.Auth.SecondFactor.Code(secret, now), ExchangeGateway.Auth.SecondFactor.Code(secret, now + 1) };
    }

    /// <summary>A six-digit code this key cannot make now.</summary>
    public string WrongCode(string key) =>
        Enumerable.Range(0, 10).Select(d => new string((char)('0' + d), 6)).First(c => !CodesNear(key).Contains(c));

    /// <summary>Posts a page's form with its antiforgery token, its other hidden fields, and these fields.</summary>
    public static async Task<HttpResponseMessage> PostFormAsync(HttpClient browser, Uri pageUrl, string page, Dictionary<string, string> fields, string? from = null)
    {
        var antiforgery = AntiforgeryField().Match(page).Groups[1].Value;
        Assert.False(string.IsNullOrEmpty(antiforgery), "the form has no antiforgery token");
        fields["__RequestVerificationToken"] = System.Net.WebUtility.HtmlDecode(antiforgery);
        foreach (Match hidden in HiddenField().Matches(page))
        {
            fields.TryAdd(hidden.Groups[1].Value, System.Net.WebUtility.HtmlDecode(hidden.Groups[2].Value));
        }

        var query = (pageUrl.IsAbsoluteUri ? pageUrl.PathAndQuery : pageUrl.OriginalString) is var url && url.Contains('?', StringComparison.Ordinal)
            ? url[url.IndexOf('?', StringComparison.Ordinal)..] : "";
        if (System.Web.HttpUtility.ParseQueryString(query)["ReturnUrl"] is { } returnUrl)
        {
            fields.TryAdd("ReturnUrl", returnUrl);
        }

        using var request = new HttpRequestMessage(HttpMethod.Post, pageUrl) { Content = new FormUrlEncodedContent(fields) };
        if (from is not null)
        {
            request.Headers.Add("X-Forwarded-For", from);
        }

        return await browser.SendAsync(request);
    }

    /// <summary>Fills in and posts the sign-in form (with its antiforgery token); returns where the page redirects.</summary>
    public static async Task<Uri> SubmitLoginAsync(HttpClient browser, Uri loginUrl, string email, string password)
    {
        using var posted = await PostLoginFormAsync(browser, loginUrl, email, password);
        Assert.True(posted.StatusCode == HttpStatusCode.Redirect, $"sign-in did not redirect: {(int)posted.StatusCode}");
        return posted.Headers.Location!;
    }

    /// <summary>
    /// Gets the sign-in page and posts its form, keeping the page's ReturnUrl; the caller judges the answer. With
    /// <paramref name="from"/>, the form is posted from that address, as the load balancer the test hosts trust would say.
    /// </summary>
    public static async Task<HttpResponseMessage> PostLoginFormAsync(HttpClient browser, Uri loginUrl, string email, string password, string? from = null)
    {
        var page = await browser.GetStringAsync(loginUrl);
        var antiforgery = AntiforgeryField().Match(page).Groups[1].Value;
        Assert.False(string.IsNullOrEmpty(antiforgery), "the sign-in form has no antiforgery token");
        var query = loginUrl.IsAbsoluteUri ? loginUrl.Query : loginUrl.OriginalString.Contains('?', StringComparison.Ordinal)
            ? loginUrl.OriginalString[loginUrl.OriginalString.IndexOf('?', StringComparison.Ordinal)..]
            : "";
        var returnUrl = System.Web.HttpUtility.ParseQueryString(query)["ReturnUrl"] ?? "/";
        using var form = new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["Email"] = email,
            ["Password"] = password,
            ["ReturnUrl"] = returnUrl,
            ["__RequestVerificationToken"] = System.Net.WebUtility.HtmlDecode(antiforgery),
        });
        using var request = new HttpRequestMessage(HttpMethod.Post, loginUrl) { Content = form };
        if (from is not null)
        {
            request.Headers.Add("X-Forwarded-For", from);
        }

        return await browser.SendAsync(request);
    }

    /// <summary>Wrong passwords for an account, one after the other, the i-th from <paramref name="from"/>(i).</summary>
    public static async Task GuessPasswordsAsync(HttpClient browser, string email, int count, Func<int, string?> from)
    {
        for (var i = 0; i < count; i++)
        {
            using var refused = await PostLoginFormAsync(browser, new Uri("/Account/Login", UriKind.Relative), email, "wrong-guess-" + i, from(i));
            Assert.Equal(HttpStatusCode.OK, refused.StatusCode);
        }
    }

    private static async Task<TokenSet> ReadTokensAsync(HttpResponseMessage response)
    {
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"token endpoint refused: {body}");
        var json = JsonDocument.Parse(body).RootElement;
        return new TokenSet(
            json.GetProperty("access_token").GetString()!,
            json.TryGetProperty("refresh_token", out var refresh) ? refresh.GetString() : null,
            json.TryGetProperty("id_token", out var id) ? id.GetString() : null);
    }

    // The page's own fields (tag helpers give them an id); the layout's language switch has a returnUrl of its own.
    [GeneratedRegex("<input type=\"hidden\" id=\"[^\"]+\" name=\"([^\"]+)\" value=\"([^\"]*)\"")]
    private static partial Regex HiddenField();

    [GeneratedRegex("id=\"authenticator-key\">([^<]+)<")]
    internal static partial Regex AuthenticatorKeyField();

    [GeneratedRegex("id=\"continue\" href=\"([^\"]+)\"")]
    internal static partial Regex ContinueLink();

    [GeneratedRegex("<li><code>([^<]+)</code></li>")]
    internal static partial Regex RecoveryCodeShown();

    [GeneratedRegex("name=\"__RequestVerificationToken\"[^>]*value=\"([^\"]+)\"")]
    internal static partial Regex AntiforgeryField();
}

public static class HttpClientExtensions
{
    public static HttpClient WithToken(this HttpClient client, string token)
    {
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        return client;
    }

    public static async Task<JsonElement> ReadJsonAsync(this HttpResponseMessage response)
    {
        var text = await response.Content.ReadAsStringAsync();
        return JsonDocument.Parse(text).RootElement;
    }

    /// <summary>Asserts the status and that the body is RFC 9457 problem details; returns the problem.</summary>
    public static async Task<JsonElement> AssertProblemAsync(this HttpResponseMessage response, HttpStatusCode status)
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(status == response.StatusCode, $"expected {(int)status}, got {(int)response.StatusCode}: {text}");
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var problem = JsonDocument.Parse(text).RootElement;
        Assert.Equal((int)status, problem.GetProperty("status").GetInt32());
        Assert.False(string.IsNullOrWhiteSpace(problem.GetProperty("title").GetString()));
        Assert.DoesNotContain("   at ", text, StringComparison.Ordinal);
        return problem;
    }

    public static Task<HttpResponseMessage> PostJsonAsync<T>(this HttpClient client, string url, T body) => client.PostAsJsonAsync(url, body);
}
