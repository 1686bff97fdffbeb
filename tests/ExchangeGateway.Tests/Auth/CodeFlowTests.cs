using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using ExchangeGateway.Auth;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.AspNetCore.Identity;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.IdentityModel.Tokens;

namespace ExchangeGateway.Tests.Auth;

[Collection(GatewayCollection.Name)]
public sealed class CodeFlowTests(GatewayFixture fixture)
{
    [Fact]
    public async Task ASeekerSignsInWithCodeAndPkceThenCallsTheApiThenRefreshes()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        Assert.NotNull(seeker.Tokens.RefreshToken);
        Assert.NotNull(seeker.Tokens.IdToken);

        using (var client = fixture.Client().WithToken(seeker.Tokens.AccessToken))
        {
            var me = await (await client.GetAsync("/api/v1/me")).ReadJsonAsync();
            Assert.Equal(seeker.Id, me.GetProperty("id").GetString());
            Assert.Equal(seeker.Email, me.GetProperty("email").GetString());
            Assert.False(me.GetProperty("twoStepSignIn").GetBoolean());
            // What the account holds besides: confirmed address, when it was made (by the gateway's clock), its roles.
            Assert.True(me.GetProperty("emailConfirmed").GetBoolean());
            Assert.InRange(me.GetProperty("createdAt").GetDateTimeOffset(), fixture.Time.GetUtcNow().AddDays(-1), fixture.Time.GetUtcNow());
            Assert.Equal(["seeker"], me.GetProperty("roles").EnumerateArray().Select(r => r.GetString()));
        }

        var refreshed = await fixture.Actors.RefreshAsync(seeker.Tokens.RefreshToken!);
        Assert.NotEqual(seeker.Tokens.AccessToken, refreshed.AccessToken);
        using (var client = fixture.Client().WithToken(refreshed.AccessToken))
        {
            Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/api/v1/me")).StatusCode);
        }
    }

    [Fact]
    public async Task AccessTokensCarryNoEmailAddress()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        var payload = Base64UrlEncoder.Decode(seeker.Tokens.AccessToken.Split('.')[1]);
        Assert.DoesNotContain(seeker.Email, payload, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task APersonGetsOnlyTheApiScopesTheirRolePermits()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        var tokens = await fixture.Actors.SignInWithCodeFlowAsync(seeker.Email, seeker.Password, "openid cv:manage audit:read recipients:admin");
        var scope = JsonDocument.Parse(Base64UrlEncoder.Decode(tokens.AccessToken.Split('.')[1])).RootElement.GetProperty("scope").GetString()!;
        Assert.Contains("cv:manage", scope.Split(' '));
        Assert.DoesNotContain("audit:read", scope.Split(' '));
        Assert.DoesNotContain("recipients:admin", scope.Split(' '));

        using var client = fixture.Client().WithToken(tokens.AccessToken);
        await (await client.GetAsync("/api/v1/audit/events")).AssertProblemAsync(HttpStatusCode.Forbidden);
    }

    /// <summary>
    /// max_age is judged by the gateway's clock, the one that stamped the session: a site asking for a sign-in at most five
    /// minutes old gets a code while the session is that young, and the sign-in page once it is older.
    /// </summary>
    [Fact]
    public async Task MaxAgeSendsAnOlderSessionBackToTheSignInPage()
    {
        await using var database = await TestDatabase.CreateAsync();
        // Days away from the machine's clock, so that judging by the wrong clock fails either way.
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow.AddDays(3));
        await using var node = new GatewayFactory(database, time);
        var actors = new Actors(node);
        var seeker = await actors.NewSeekerAsync();
        using var browser = node.CreateHttpClient(new CookieContainer());
        var challenge = Base64UrlEncoder.Encode(SHA256.HashData(RandomNumberGenerator.GetBytes(32)));
        const string Scope = "openid " + ApiScopes.CvManage;

        using (var toLogin = await browser.GetAsync(actors.AuthorizeUrl(Scope, challenge)))
        {
            using var toClient = await browser.GetAsync(await Actors.SubmitLoginAsync(browser, toLogin.Headers.Location!, seeker.Email, seeker.Password));
            Assert.Contains("code=", toClient.Headers.Location!.Query, StringComparison.Ordinal);
        }

        async Task<string> WhereAsync(params (string, string)[] extra)
        {
            using var response = await browser.GetAsync(actors.AuthorizeUrl(Scope, challenge, extra));
            Assert.Equal(HttpStatusCode.Redirect, response.StatusCode);
            var location = new Uri(node.Issuer, response.Headers.Location!);
            return location.AbsolutePath == new Uri(node.Issuer, Actors.SwaggerRedirect).AbsolutePath
                && System.Web.HttpUtility.ParseQueryString(location.Query)["code"] is { Length: > 0 } ? "code" : location.AbsolutePath;
        }

        time.Advance(TimeSpan.FromMinutes(4));
        Assert.Equal("code", await WhereAsync(("max_age", "300")));

        time.Advance(TimeSpan.FromMinutes(2));
        Assert.Equal("/Account/Login", await WhereAsync(("max_age", "300")));
        // Without max_age the same session still does: the request asked for a fresh sign-in, it did not end the session.
        Assert.Equal("code", await WhereAsync());
    }

    /// <summary>
    /// prompt=login asks that whoever is at the keyboard signs in now (a shared computer at the job centre). The sign-in page's
    /// return address no longer carries prompt=login (signing in would loop otherwise), but it carries a protected "signed
    /// in since": opening it with the old session leads to the sign-in page again, not to a code under the previous
    /// person's name. The session itself is not ended (a link from any site would otherwise sign seekers out): a request
    /// without prompt=login still passes with it.
    /// </summary>
    [Fact]
    public async Task PromptLoginIsMetOnlyByASignInMadeAfterItAndEndsNoSession()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        using var browser = fixture.Factory.CreateHttpClient(new CookieContainer());
        var challenge = Base64UrlEncoder.Encode(SHA256.HashData(RandomNumberGenerator.GetBytes(32)));
        using (var toLogin = await browser.GetAsync(fixture.Actors.AuthorizeUrl("openid", challenge)))
        {
            using var toClient = await browser.GetAsync(await Actors.SubmitLoginAsync(browser, toLogin.Headers.Location!, seeker.Email, seeker.Password));
            Assert.Contains("code=", toClient.Headers.Location!.Query, StringComparison.Ordinal);
        }

        fixture.Time.Advance(TimeSpan.FromSeconds(1));
        using var again = await browser.GetAsync(fixture.Actors.AuthorizeUrl("openid", challenge, ("prompt", "login")));
        var loginUrl = new Uri(fixture.Factory.Issuer, again.Headers.Location!);
        Assert.Equal("/Account/Login", loginUrl.AbsolutePath);
        var returnUrl = System.Web.HttpUtility.ParseQueryString(loginUrl.Query)["ReturnUrl"]!;
        Assert.DoesNotContain("prompt", returnUrl, StringComparison.Ordinal);

        using (var skipped = await browser.GetAsync(returnUrl))
        {
            Assert.Equal("/Account/Login", new Uri(fixture.Factory.Issuer, skipped.Headers.Location!).AbsolutePath);
        }

        // A forged "signed in since" is no marker at all: the sign-in page again.
        using (var forged = await browser.GetAsync(fixture.Actors.AuthorizeUrl("openid", challenge, ("eg_signed_in_after", "0"))))
        {
            Assert.Equal("/Account/Login", new Uri(fixture.Factory.Issuer, forged.Headers.Location!).AbsolutePath);
        }

        using (var plain = await browser.GetAsync(fixture.Actors.AuthorizeUrl("openid", challenge)))
        {
            Assert.Contains("code=", plain.Headers.Location!.Query, StringComparison.Ordinal);
        }

        using var signedIn = await browser.GetAsync(await Actors.SubmitLoginAsync(browser, loginUrl, seeker.Email, seeker.Password));
        Assert.Contains("code=", signedIn.Headers.Location!.Query, StringComparison.Ordinal);
    }

    /// <summary>
    /// max_age=0 is OIDC's "sign in now": met by the sign-in just made (auth_time has whole seconds), not a loop back to the
    /// sign-in page. The id_token says when the person signed in, and a refresh keeps that time.
    /// </summary>
    [Fact]
    public async Task MaxAgeZeroIsMetByTheSignInJustMadeAndTheIdTokenCarriesAuthTime()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        using var browser = fixture.Factory.CreateHttpClient(new CookieContainer());
        var challenge = Base64UrlEncoder.Encode(SHA256.HashData(RandomNumberGenerator.GetBytes(32)));
        using var toLogin = await browser.GetAsync(fixture.Actors.AuthorizeUrl("openid", challenge, ("max_age", "0")));
        using var toClient = await browser.GetAsync(await Actors.SubmitLoginAsync(browser, toLogin.Headers.Location!, seeker.Email, seeker.Password));
        Assert.Contains("code=", toClient.Headers.Location!.Query, StringComparison.Ordinal);

        var before = fixture.Factory.Time.GetUtcNow().ToUnixTimeSeconds();
        var tokens = await fixture.Actors.SignInWithCodeFlowAsync(seeker.Email, seeker.Password, "openid offline_access " + ApiScopes.CvManage);
        var authTime = AuthTimeOf(tokens.IdToken!);
        Assert.InRange(authTime, before, fixture.Factory.Time.GetUtcNow().ToUnixTimeSeconds());
        Assert.DoesNotContain("auth_time", Base64UrlEncoder.Decode(tokens.AccessToken.Split('.')[1]), StringComparison.Ordinal);

        var refreshed = await fixture.Actors.RefreshAsync(tokens.RefreshToken!);
        Assert.Equal(authTime, AuthTimeOf(refreshed.IdToken!));

        static long AuthTimeOf(string idToken) =>
            JsonDocument.Parse(Base64UrlEncoder.Decode(idToken.Split('.')[1])).RootElement.GetProperty("auth_time").GetInt64();
    }

    /// <summary>
    /// The account's ceiling stops password guesses from many networks; anyone who knows a seeker's address can set it off.
    /// It must not also stop the seeker's own signed-in apps (and with them the untick): a refresh token keeps working.
    /// </summary>
    [Fact]
    public async Task GuessesThatLockTheAccountDoNotStopItsRefreshTokens()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        // Guesses from many networks meet the account's ceiling: a browser new to the account is refused the right password.
        using var guesser = fixture.Factory.CreateHttpClient(new CookieContainer());
        await Actors.GuessPasswordsAsync(guesser, seeker.Email, 20, i => $"198.51.100.{100 + i}");
        using (var newcomer = fixture.Factory.CreateHttpClient(new CookieContainer()))
        using (var refused = await Actors.PostLoginFormAsync(newcomer, new Uri("/Account/Login", UriKind.Relative), seeker.Email, seeker.Password, "192.0.2.99"))
        {
            Assert.Equal(HttpStatusCode.OK, refused.StatusCode);
        }

        var refreshed = await fixture.Actors.RefreshAsync(seeker.Tokens.RefreshToken!);
        using var client = fixture.Client().WithToken(refreshed.AccessToken);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/api/v1/me")).StatusCode);
    }

    /// <summary>
    /// Refresh tokens live 30 days here: a refresh token redeemed two weeks ago is still recognised when replayed (its row
    /// outlives the pruning), so the replay revokes the chain it was stolen from, the holder's newer token included.
    /// </summary>
    [Fact]
    public async Task ARefreshTokenReplayedAfterTheTwoWeekPruningStillRevokesItsChain()
    {
        await using var database = await TestDatabase.CreateAsync();
        var clock = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var node = new GatewayFactory(database, clock, settings: new Dictionary<string, string?> { ["Auth:RefreshTokenLifetime"] = "30.00:00:00" });
        var actors = new Actors(node);
        var seeker = await actors.NewSeekerAsync();
        var stolen = seeker.Tokens.RefreshToken!;
        var current = (await actors.RefreshAsync(stolen)).RefreshToken!;

        clock.Advance(TimeSpan.FromDays(15));
        await using (var scope = node.Services.CreateAsyncScope())
        {
            await scope.ServiceProvider.GetRequiredService<TokenPruningJob>().RunAsync(CancellationToken.None);
        }

        using (var replayed = await actors.RequestRefreshAsync(stolen))
        {
            Assert.Equal(HttpStatusCode.BadRequest, replayed.StatusCode);
        }

        using var holder = await actors.RequestRefreshAsync(current);
        Assert.Equal(HttpStatusCode.BadRequest, holder.StatusCode);
    }

    [Fact]
    public async Task PkcePlainIsRefused()
    {
        using var client = fixture.Client();
        var verifier = Base64UrlEncoder.Encode(RandomNumberGenerator.GetBytes(32));
        var redirect = new Uri(fixture.Factory.Issuer, Actors.SwaggerRedirect).AbsoluteUri;
        using var response = await client.GetAsync(
            $"/connect/authorize?client_id={ClientRegistrations.SwaggerClientId}&response_type=code&scope=cv%3Amanage" +
            $"&redirect_uri={Uri.EscapeDataString(redirect)}&code_challenge={verifier}&code_challenge_method=plain&state=x");

        // Refused before any sign-in page: either an error page or an error redirect, never the login form.
        var location = response.Headers.Location?.ToString() ?? "";
        Assert.DoesNotContain("/Account/Login", location, StringComparison.Ordinal);
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(location.Contains("error=", StringComparison.Ordinal) || body.Contains("invalid_request", StringComparison.Ordinal),
            $"plain PKCE was not refused: {(int)response.StatusCode} {location} {body}");
    }

    /// <summary>
    /// Refused before any sign-in page, with OAuth's error for a missing parameter. The gateway (OpenIddict) checks PKCE
    /// before it has vetted the redirect URI, so it answers the browser itself, 400 with error=invalid_request naming
    /// code_challenge, rather than redirecting the error to the client: never a code, never the login form, never a 500.
    /// </summary>
    [Fact]
    public async Task ACodeRequestWithoutPkceIsRefused()
    {
        using var client = fixture.Client();
        var redirect = new Uri(fixture.Factory.Issuer, Actors.SwaggerRedirect).AbsoluteUri;
        using var response = await client.GetAsync(
            $"/connect/authorize?client_id={ClientRegistrations.SwaggerClientId}&response_type=code&scope=cv%3Amanage&redirect_uri={Uri.EscapeDataString(redirect)}&state=x");
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.BadRequest && response.Headers.Location is null,
            $"not refused: {(int)response.StatusCode} {response.Headers.Location} {body}");
        // OpenIddict's error page: one "name:value" line per OAuth error parameter.
        var error = body.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(line => line.Split(':', 2)).Where(pair => pair.Length == 2).ToDictionary(pair => pair[0], pair => pair[1]);
        Assert.Equal("invalid_request", error.GetValueOrDefault("error"));
        Assert.Contains("'code_challenge'", error.GetValueOrDefault("error_description") ?? "", StringComparison.Ordinal);
    }

    [Fact]
    public async Task AWrongPasswordShowsTheFormAgainWithoutSayingWhetherTheAccountExists()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        var cookies = new CookieContainer();
        using var browser = fixture.Factory.CreateHttpClient(cookies);
        var page = await browser.GetStringAsync("/Account/Login");
        var token = System.Text.RegularExpressions.Regex.Match(page, "name=\"__RequestVerificationToken\"[^>]*value=\"([^\"]+)\"").Groups[1].Value;

        async Task<string> Attempt(string email) => await (await browser.PostAsync("/Account/Login", new FormUrlEncodedContent(
            new Dictionary<string, string> { ["Email"] = email, ["Password"] = "wrong-password-123", ["__RequestVerificationToken"] = WebUtility.HtmlDecode(token) })))
            .Content.ReadAsStringAsync();

        var known = await Attempt(seeker.Email);
        var unknown = await Attempt("nobody-" + Guid.NewGuid() + "@example.test");
        Assert.Contains("role=\"alert\"", known, StringComparison.Ordinal);
        Assert.Equal(ErrorLine(known), ErrorLine(unknown));

        static string ErrorLine(string html) => System.Text.RegularExpressions.Regex.Match(html, "role=\"alert\">([^<]*)<").Groups[1].Value;
    }

    [Fact]
    public async Task UserInfoAnswersForTheSignedInPerson()
    {
        var seeker = await fixture.Actors.NewPersonAsync(Roles.Seeker, scope: "openid email offline_access");
        using var client = fixture.Client().WithToken(seeker.Tokens.AccessToken);
        var info = await (await client.GetAsync("/connect/userinfo")).ReadJsonAsync();
        Assert.Equal(seeker.Id, info.GetProperty("sub").GetString());
        Assert.Equal(seeker.Email, info.GetProperty("email").GetString());
    }

    /// <summary>
    /// The user name is the e-mail address: a client given profile but not email learns it neither from the id_token (name)
    /// nor from userinfo (preferred_username); given both, it gets both.
    /// </summary>
    [Fact]
    public async Task ProfileWithoutEmailDoesNotGiveTheAddressAsAName()
    {
        var profileOnly = await fixture.Actors.NewPersonAsync(Roles.Seeker, scope: "openid profile");
        var idToken = Encoding.UTF8.GetString(Base64UrlEncoder.DecodeBytes(profileOnly.Tokens.IdToken!.Split('.')[1]));
        Assert.DoesNotContain(profileOnly.Email, idToken, StringComparison.OrdinalIgnoreCase);
        using (var client = fixture.Client().WithToken(profileOnly.Tokens.AccessToken))
        {
            var info = await (await client.GetAsync("/connect/userinfo")).ReadJsonAsync();
            Assert.Equal(profileOnly.Id, info.GetProperty("sub").GetString());
            Assert.DoesNotContain(profileOnly.Email, info.ToString(), StringComparison.OrdinalIgnoreCase);
        }

        var both = await fixture.Actors.NewPersonAsync(Roles.Seeker, scope: "openid profile email");
        Assert.Contains(both.Email, Encoding.UTF8.GetString(Base64UrlEncoder.DecodeBytes(both.Tokens.IdToken!.Split('.')[1])), StringComparison.OrdinalIgnoreCase);
        using (var client = fixture.Client().WithToken(both.Tokens.AccessToken))
        {
            Assert.Equal(both.Email, (await (await client.GetAsync("/connect/userinfo")).ReadJsonAsync()).GetProperty("preferred_username").GetString());
        }
    }

    [Fact]
    public async Task ARevokedRefreshTokenCannotBeUsed()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        using var client = fixture.Client();
        using var revoked = await client.PostAsync("/connect/revoke", new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["token"] = seeker.Tokens.RefreshToken!, ["token_type_hint"] = "refresh_token", ["client_id"] = ClientRegistrations.SwaggerClientId,
        }));
        Assert.Equal(HttpStatusCode.OK, revoked.StatusCode);

        using var refresh = await client.PostAsync("/connect/token", new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["grant_type"] = "refresh_token", ["refresh_token"] = seeker.Tokens.RefreshToken!, ["client_id"] = ClientRegistrations.SwaggerClientId,
        }));
        Assert.Equal(HttpStatusCode.BadRequest, refresh.StatusCode);
        Assert.Equal("invalid_grant", (await refresh.ReadJsonAsync()).GetProperty("error").GetString());
    }

    /// <summary>
    /// An access token is a JWT the API checks by signature: the revocation endpoint says it does not revoke one
    /// (unsupported_token_type) instead of answering 200 while the token goes on working.
    /// </summary>
    [Fact]
    public async Task RevokingAnAccessTokenIsRefusedRatherThanPretended()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        using var client = fixture.Client();
        using var revoked = await client.PostAsync("/connect/revoke", new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["token"] = seeker.Tokens.AccessToken, ["token_type_hint"] = "access_token", ["client_id"] = ClientRegistrations.SwaggerClientId,
        }));
        Assert.Equal(HttpStatusCode.BadRequest, revoked.StatusCode);
        Assert.Equal("unsupported_token_type", (await revoked.ReadJsonAsync()).GetProperty("error").GetString());

        using var api = fixture.Client().WithToken(seeker.Tokens.AccessToken);
        Assert.Equal(HttpStatusCode.OK, (await api.GetAsync("/api/v1/me")).StatusCode);
    }

    /// <summary>
    /// A password reset changes the account's stamp; a refresh token issued before it is refused even when the reset's
    /// revocation of the account's tokens did not run (here the stamp changes without any revocation).
    /// </summary>
    [Fact]
    public async Task ARefreshTokenFromBeforeANewPasswordIsRefusedEvenIfItWasNotRevoked()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        var refreshed = await fixture.Actors.RefreshAsync(seeker.Tokens.RefreshToken!);
        Assert.NotNull(refreshed.AccessToken);
        // The stamp's digest stays in codes and refresh tokens: never in what clients and APIs can read.
        foreach (var readable in new[] { seeker.Tokens.AccessToken, seeker.Tokens.IdToken, refreshed.AccessToken }.OfType<string>())
        {
            Assert.False(new Microsoft.IdentityModel.JsonWebTokens.JsonWebToken(readable).TryGetClaim("eg_stamp", out _));
        }

        await using (var scope = fixture.Factory.Services.CreateAsyncScope())
        {
            var users = scope.ServiceProvider.GetRequiredService<UserManager<GatewayUser>>();
            Assert.True((await users.UpdateSecurityStampAsync((await users.FindByIdAsync(seeker.Id))!)).Succeeded);
        }

        using var client = fixture.Client();
        using var refresh = await client.PostAsync("/connect/token", new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["grant_type"] = "refresh_token", ["refresh_token"] = refreshed.RefreshToken!, ["client_id"] = ClientRegistrations.SwaggerClientId,
        }));
        Assert.Equal(HttpStatusCode.BadRequest, refresh.StatusCode);
        Assert.Equal("invalid_grant", (await refresh.ReadJsonAsync()).GetProperty("error").GetString());
    }
}
