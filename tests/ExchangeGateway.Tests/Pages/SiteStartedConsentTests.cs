using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using ExchangeGateway.Auth;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.AspNetCore.Identity;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.IdentityModel.Tokens;

namespace ExchangeGateway.Tests.Pages;

/// <summary>A registered job site sends the seeker to /connect/authorize with scope cv:share (code + PKCE).</summary>
[Collection(GatewayCollection.Name)]
public sealed partial class SiteStartedConsentTests(GatewayFixture fixture)
{
    private const string Callback = "https://jobs.example/callback";

    [Fact]
    public async Task AcceptingCreatesTheSameConsentAsThePartagePageWithMethodOauthAndAnsweredWithACode()
    {
        var site = await RegisterSiteAsync();
        var (session, _, _) = await PageSession.SignUpAsync(fixture.Factory);
        using (session)
        {
            var (verifier, challenge) = PageSession.Pkce();
            var (page, fields) = await OpenConsentPageAsync(session, site, challenge, "state-1");
            Assert.Contains($"Partager mon CV avec {site.DisplayName}", page, StringComparison.Ordinal);

            using var answer = await PostDecisionAsync(session, page, fields, "accept", tick: true);
            var callback = answer.Headers.Location!;
            Assert.StartsWith(Callback, callback.AbsoluteUri, StringComparison.Ordinal);
            var query = System.Web.HttpUtility.ParseQueryString(callback.Query);
            Assert.Equal("state-1", query["state"]);

            var tokens = await RedeemAsync(site, query["code"]!, verifier);
            Assert.False(tokens.TryGetProperty("id_token", out _), "the site got an identity token");
            Assert.False(tokens.TryGetProperty("refresh_token", out _), "the site got a refresh token");
            Assert.Equal("cv:share", tokens.GetProperty("scope").GetString());

            var accessToken = tokens.GetProperty("access_token").GetString()!;
            var claims = JsonDocument.Parse(Base64UrlEncoder.Decode(accessToken.Split('.')[1])).RootElement;
            var subject = claims.GetProperty("sub").GetString()!;
            Assert.StartsWith("cv_", subject, StringComparison.Ordinal);
            // Also said in the token response, so that the site need not decode a token OAuth has it treat as opaque.
            Assert.Equal(subject, tokens.GetProperty("cv_id").GetString());
            Assert.False(claims.TryGetProperty("aud", out _), "a cv:share token must name no API audience");

            // Exactly the Partage page's consent: one active episode, a granted receipt, the consent.granted audit event.
            var seekerId = await fixture.Database.ScalarAsync<string>($"SELECT seeker_id FROM consents WHERE pairwise_id = '{subject}'");
            Assert.Equal("Active", await fixture.Database.ScalarAsync<string>($"SELECT state FROM consents WHERE pairwise_id = '{subject}'"));
            Assert.Equal("Oauth", await fixture.Database.ScalarAsync<string>(
                $"SELECT e.collection_method FROM consent_events e JOIN consents c ON c.id = e.consent_id WHERE c.pairwise_id = '{subject}' AND e.kind = 'Granted'"));
            Assert.Equal(1L, await fixture.Database.ScalarAsync<long>(
                $"SELECT count(*) FROM audit_events WHERE action = 'consent.granted' AND recipient = '{site.ClientId}' AND details::jsonb ->> 'method' = 'oauth'"));
            Assert.False(string.IsNullOrEmpty(seekerId));

            var sharing = await session.GetPageAsync("/Sharing");
            Assert.Matches($"value=\"{site.Id}\" checked=\"checked\"", sharing);

            // The seeker's export lists what the site was let do, though OpenIddict files it under the id at the site.
            var export = JsonDocument.Parse(await session.GetPageAsync("/my-data.json")).RootElement;
            Assert.Contains(export.GetProperty("authorizations").EnumerateArray(), a => a.GetProperty("clientId").GetString() == site.ClientId);
        }
    }

    [Fact]
    public async Task TheSitesTokenOpensNothingInTheApi()
    {
        var site = await RegisterSiteAsync();
        var (session, _, _) = await PageSession.SignUpAsync(fixture.Factory);
        using (session)
        {
            var (verifier, challenge) = PageSession.Pkce();
            var (page, fields) = await OpenConsentPageAsync(session, site, challenge, "s");
            using var answer = await PostDecisionAsync(session, page, fields, "accept", tick: true);
            var code = System.Web.HttpUtility.ParseQueryString(answer.Headers.Location!.Query)["code"]!;
            var token = (await RedeemAsync(site, code, verifier)).GetProperty("access_token").GetString()!;

            using var api = fixture.Client().WithToken(token);
            foreach (var path in (string[])["/api/v1/shared-cvs", "/api/v1/me", "/api/v1/me/cv", "/api/v1/recipients", "/api/v1/events/poll"])
            {
                using var response = path.EndsWith("poll", StringComparison.Ordinal) ? await api.PostAsync(path, Sharing.Json(new JsonObject())) : await api.GetAsync(path);
                Assert.True(response.StatusCode is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden, $"{path}: {(int)response.StatusCode}");
            }

            using var userinfo = await api.GetAsync("/connect/userinfo");
            Assert.Equal(HttpStatusCode.Unauthorized, userinfo.StatusCode);
        }
    }

    [Fact]
    public async Task RefusingCreatesNothingAndTheSiteGetsAccessDenied()
    {
        var site = await RegisterSiteAsync();
        var (session, email, _) = await PageSession.SignUpAsync(fixture.Factory);
        using (session)
        {
            var (_, challenge) = PageSession.Pkce();
            var (page, fields) = await OpenConsentPageAsync(session, site, challenge, "state-2");
            using var answer = await PostDecisionAsync(session, page, fields, "refuse", tick: true);
            var query = System.Web.HttpUtility.ParseQueryString(answer.Headers.Location!.Query);
            Assert.StartsWith(Callback, answer.Headers.Location!.AbsoluteUri, StringComparison.Ordinal);
            Assert.Equal("access_denied", query["error"]);
            Assert.Equal("state-2", query["state"]);
            Assert.Null(query["code"]);

            Assert.Equal(0L, await ConsentCountAsync(email));
        }
    }

    [Fact]
    public async Task ShareWithoutTheTickAsksAgainAndCreatesNothing()
    {
        var site = await RegisterSiteAsync();
        var (session, email, _) = await PageSession.SignUpAsync(fixture.Factory);
        using (session)
        {
            var (_, challenge) = PageSession.Pkce();
            var (page, fields) = await OpenConsentPageAsync(session, site, challenge, "s");
            using var answer = await PostDecisionAsync(session, page, fields, "accept", tick: false);
            Assert.StartsWith("/Consent/Share?", answer.Headers.Location!.OriginalString, StringComparison.Ordinal);
            var again = await session.GetPageAsync(answer.Headers.Location!.OriginalString);
            Assert.Contains("role=\"alert\"", again, StringComparison.Ordinal);
            Assert.DoesNotContain("rien n’a encore été partagé", System.Net.WebUtility.HtmlDecode(again), StringComparison.Ordinal);
            Assert.Equal(0L, await ConsentCountAsync(email));
        }
    }

    /// <summary>A decision without a valid antiforgery token is nobody's: nothing is shared, and the seeker is asked again, and told why.</summary>
    [Fact]
    public async Task ADecisionWithoutTheAntiforgeryTokenIsRefused()
    {
        var site = await RegisterSiteAsync();
        var (session, email, _) = await PageSession.SignUpAsync(fixture.Factory);
        using (session)
        {
            var (_, challenge) = PageSession.Pkce();
            var (_, fields) = await OpenConsentPageAsync(session, site, challenge, "s");
            fields.RemoveAll(f => f.Key == "__RequestVerificationToken");
            fields.Add(new("eg_decision", "accept"));
            fields.Add(new("eg_share", "yes"));
            using var answer = await session.Http.PostAsync("/connect/authorize", new FormUrlEncodedContent(fields));
            Assert.Equal(HttpStatusCode.Redirect, answer.StatusCode);
            Assert.StartsWith("/Consent/Share?", answer.Headers.Location!.OriginalString, StringComparison.Ordinal);
            var again = await session.GetPageAsync(answer.Headers.Location!.OriginalString);
            Assert.Contains("name=\"eg_decision\"", again, StringComparison.Ordinal);
            // Told why the question comes back, and that nothing was shared (not the same question again in silence).
            Assert.Contains("rien n’a encore été partagé", System.Net.WebUtility.HtmlDecode(again), StringComparison.Ordinal);
            Assert.DoesNotContain("name=\"eg_expired\"", again, StringComparison.Ordinal);
            Assert.Equal(0L, await ConsentCountAsync(email));
        }
    }

    /// <summary>
    /// A site bouncing its visitors through /connect/authorize without showing them anything (prompt=none, or a staff
    /// visitor sent straight back) must learn nothing about them: not whether they are signed in, nor whether they are a
    /// job seeker or staff, nor since when (max_age).
    /// </summary>
    [Fact]
    public async Task ASiteLearnsNothingAboutItsVisitorWithoutTheirClick()
    {
        var site = await RegisterSiteAsync();
        var (_, challenge) = PageSession.Pkce();
        var (seeker, _, _) = await PageSession.SignUpAsync(fixture.Factory);
        var staff = await fixture.Actors.NewOperatorAsync();
        using var staffSession = new PageSession(fixture.Factory);
        await fixture.Actors.SecondFactorAsync(staffSession.Http,
            await Actors.SubmitLoginAsync(staffSession.Http, new Uri("/Account/Login", UriKind.Relative), staff.Email, staff.Password), staff.Email);
        using var anonymous = new PageSession(fixture.Factory);
        using (seeker)
        {
            var silent = new List<string>();
            foreach (var (who, session) in new[] { ("anonymous", anonymous), ("seeker", seeker), ("staff", staffSession) })
            {
                foreach (var extra in new[] { "&prompt=none", "&prompt=none&max_age=0", "&prompt=none&max_age=100000" })
                {
                    using var answer = await session.Http.GetAsync(AuthorizeUrl(site.ClientId, challenge, "s") + extra);
                    Assert.Equal(HttpStatusCode.Redirect, answer.StatusCode);
                    var location = answer.Headers.Location!;
                    Assert.StartsWith(Callback, location.AbsoluteUri, StringComparison.Ordinal);
                    var query = System.Web.HttpUtility.ParseQueryString(location.Query);
                    silent.Add($"{query["error"]} {query["error_description"]}");
                }
            }

            Assert.Single(silent.Distinct());
            Assert.StartsWith("interaction_required ", silent[0], StringComparison.Ordinal);

            // Without prompt=none, staff land on the consent page (which tells them, and offers only the way back), as a
            // seeker does, instead of going straight back to the site.
            using var asked = await staffSession.Http.GetAsync(AuthorizeUrl(site.ClientId, challenge, "s"));
            Assert.StartsWith("/Consent/Share?", asked.Headers.Location!.OriginalString, StringComparison.Ordinal);
            var page = WebUtility.HtmlDecode(await staffSession.GetPageAsync(asked.Headers.Location!.OriginalString));
            Assert.Contains("seul un demandeur d’emploi peut partager un CV", page, StringComparison.Ordinal);
            Assert.DoesNotContain("name=\"eg_share\"", page, StringComparison.Ordinal);
            var fields = HiddenField().Matches(page)
                .Select(m => new KeyValuePair<string, string>(WebUtility.HtmlDecode(m.Groups[1].Value), WebUtility.HtmlDecode(m.Groups[2].Value)))
                .Append(new("__RequestVerificationToken", PageSession.AntiforgeryToken(page)))
                .Append(new("eg_decision", "accept"))
                .Append(new("eg_share", "yes"))
                .ToList();
            // Even a crafted "accept" from a staff account shares nothing.
            using var back = await staffSession.Http.PostAsync("/connect/authorize", new FormUrlEncodedContent(fields));
            Assert.StartsWith(Callback, back.Headers.Location!.AbsoluteUri, StringComparison.Ordinal);
            Assert.Equal("access_denied", System.Web.HttpUtility.ParseQueryString(back.Headers.Location!.Query)["error"]);
            Assert.Equal(0L, await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM consents WHERE seeker_id = '{staff.Id}'"));
        }
    }

    [Fact]
    public async Task ASiteAskingForAnythingButCvShareIsRefusedBeforeSignIn()
    {
        var site = await RegisterSiteAsync();
        using var client = fixture.Client();
        var (_, challenge) = PageSession.Pkce();
        foreach (var scope in (string[])["cv:read", "cv:share cv:manage", "openid profile"])
        {
            using var response = await client.GetAsync(AuthorizeUrl(site.ClientId, challenge, "s", scope));
            // Refused by our handler (an error sent back to the site) or by OpenIddict's scope permissions (an error page).
            var location = response.Headers.Location?.ToString() ?? "";
            Assert.DoesNotContain("/Account/Login", location, StringComparison.Ordinal);
            Assert.True(response.StatusCode == HttpStatusCode.BadRequest
                || (location.StartsWith(Callback, StringComparison.Ordinal) && location.Contains("error=invalid_scope", StringComparison.Ordinal)),
                $"{scope}: {(int)response.StatusCode} {location}");
        }
    }

    [Fact]
    public async Task RedirectUrisMustBeHttpsOrLoopbackAndWithoutFragment()
    {
        var op = await fixture.Actors.NewOperatorAsync();
        using var client = fixture.Client().WithToken(op.Tokens.AccessToken);
        using var response = await client.PostAsync(Sites.AdminPath, Sharing.Json(Sites.RegistrationBody(new SiteOptions
        {
            RedirectUris = ["http://jobs.example/callback", "https://jobs.example/callback#x", "ftp://jobs.example/"],
        })));
        var problem = await response.AssertProblemAsync(HttpStatusCode.BadRequest);
        var errors = problem.GetProperty("errors");
        Assert.True(errors.TryGetProperty("redirectUris[0]", out _));
        Assert.True(errors.TryGetProperty("redirectUris[1]", out _));
        Assert.True(errors.TryGetProperty("redirectUris[2]", out _));
    }

    [Fact]
    public async Task ASiteWithoutRedirectUrisCannotStartTheFlow()
    {
        var site = await Sites.RegisterAsync(fixture.Factory, fixture.Actors);
        using var client = fixture.Client();
        var (_, challenge) = PageSession.Pkce();
        using var response = await client.GetAsync(AuthorizeUrl(site.ClientId, challenge, "s"));
        Assert.DoesNotContain("/Account/Login", response.Headers.Location?.ToString() ?? "", StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
    }

    [Fact]
    public async Task OperatorsGiveAndTakeBackRedirectUrisByPatch()
    {
        var op = await fixture.Actors.NewOperatorAsync();
        using var admin = fixture.Client().WithToken(op.Tokens.AccessToken);
        var site = await Sites.RegisterAsync(fixture.Factory, fixture.Actors);
        var path = $"{Sites.AdminPath}/{site.Id}";
        var (_, challenge) = PageSession.Pkce();
        using var client = fixture.Client();

        async Task<HttpResponseMessage> AuthorizeAsync() => await client.GetAsync(AuthorizeUrl(site.ClientId, challenge, "s"));

        using (var patched = await admin.PatchAsJsonAsync(path, new JsonObject { ["redirectUris"] = new JsonArray(Callback) }))
        {
            Assert.Equal(HttpStatusCode.OK, patched.StatusCode);
            Assert.Equal([Callback], RedirectUrisOf(await patched.ReadJsonAsync()));
        }

        // Operators read them back.
        Assert.Equal([Callback], RedirectUrisOf(await (await admin.GetAsync(path)).ReadJsonAsync()));

        using (var started = await AuthorizeAsync())
        {
            Assert.Contains("/Account/Login", started.Headers.Location?.ToString() ?? "", StringComparison.Ordinal);
        }

        // A bad list is refused whole and changes nothing.
        await (await admin.PatchAsJsonAsync(path, new JsonObject { ["redirectUris"] = new JsonArray("https://jobs.example/cb#frag") }))
            .AssertProblemAsync(HttpStatusCode.BadRequest);
        using (var still = await AuthorizeAsync())
        {
            Assert.Contains("/Account/Login", still.Headers.Location?.ToString() ?? "", StringComparison.Ordinal);
        }

        // An empty list takes the site's right to start a consent away.
        using (var cleared = await admin.PatchAsJsonAsync(path, new JsonObject { ["redirectUris"] = new JsonArray() }))
        {
            Assert.Equal(HttpStatusCode.OK, cleared.StatusCode);
            Assert.Empty(RedirectUrisOf(await cleared.ReadJsonAsync()));
        }

        using var refused = await AuthorizeAsync();
        Assert.DoesNotContain("/Account/Login", refused.Headers.Location?.ToString() ?? "", StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
    }

    private static string[] RedirectUrisOf(JsonElement recipient) =>
        recipient.GetProperty("redirectUris").EnumerateArray().Select(u => u.GetString()!).ToArray();

    private async Task<long> ConsentCountAsync(string email)
    {
        await using var scope = fixture.Factory.Services.CreateAsyncScope();
        var user = await scope.ServiceProvider.GetRequiredService<UserManager<GatewayUser>>().FindByEmailAsync(email);
        return await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM consents WHERE seeker_id = '{user!.Id}'");
    }

    /// <summary>
    /// The sign-in page met on the way through /connect/authorize names the site's registered redirect origin in
    /// form-action (the post's redirects end there: a code, or access_denied), and only a registered one.
    /// </summary>
    [Fact]
    public async Task TheSignInPageOnTheWayToASiteAllowsOnlyItsRegisteredRedirect()
    {
        var site = await RegisterSiteAsync();
        var (_, challenge) = PageSession.Pkce();
        using var client = fixture.Client();
        async Task<string> PolicyAsync(string redirectUri)
        {
            using var page = await client.GetAsync("/Account/Login?ReturnUrl=" + Uri.EscapeDataString(AuthorizeUrl(site.ClientId, challenge, "s", redirectUri: redirectUri)));
            Assert.Equal(HttpStatusCode.OK, page.StatusCode);
            return page.Headers.GetValues("Content-Security-Policy").Single();
        }

        Assert.Contains("form-action 'self' https://jobs.example;", await PolicyAsync(Callback), StringComparison.Ordinal);
        Assert.Contains("form-action 'self';", await PolicyAsync("https://elsewhere.example/callback"), StringComparison.Ordinal);
    }

    private Task<TestSite> RegisterSiteAsync() =>
        Sites.RegisterAsync(fixture.Factory, fixture.Actors, new SiteOptions { RedirectUris = [Callback, "http://127.0.0.1:5099/callback"] });

    public static string AuthorizeUrl(string clientId, string challenge, string state, string scope = "cv:share", string redirectUri = Callback) =>
        "/connect/authorize?" + string.Join("&", new Dictionary<string, string>
        {
            ["client_id"] = clientId,
            ["response_type"] = "code",
            ["redirect_uri"] = redirectUri,
            ["scope"] = scope,
            ["state"] = state,
            ["code_challenge"] = challenge,
            ["code_challenge_method"] = "S256",
        }.Select(p => $"{p.Key}={Uri.EscapeDataString(p.Value)}"));

    /// <summary>
    /// Asked again while the sharing stands, the page gives that sharing's own end (a yes keeps it), not twelve months from
    /// now, which it promised before.
    /// </summary>
    [Fact]
    public async Task AskedAgainWhileSharingThePageGivesTheSharingsOwnEnd()
    {
        var site = await RegisterSiteAsync();
        var (session, _, _) = await PageSession.SignUpAsync(fixture.Factory);
        using (session)
        {
            var (_, challenge) = PageSession.Pkce();
            var (page, fields) = await OpenConsentPageAsync(session, site, challenge, "first");
            using (await PostDecisionAsync(session, page, fields, "accept", tick: true))
            {
            }

            var active = $"FROM consents c JOIN recipients r ON r.id = c.recipient_id WHERE r.client_id = '{site.ClientId}' AND c.state = 'Active'";
            var fresh = new DateTimeOffset(await fixture.Database.ScalarAsync<DateTime>($"SELECT expires_at {active}"), TimeSpan.Zero);
            // As if it had been given a hundred days earlier.
            await fixture.Database.ExecuteAsync($"UPDATE consents SET expires_at = expires_at - interval '100 days' WHERE id = (SELECT c.id {active})");

            var (again, _) = await OpenConsentPageAsync(session, site, challenge, "second");
            var text = WebUtility.HtmlDecode(again);
            static string Shown(DateTimeOffset at) =>
                TimeZoneInfo.ConvertTime(at, TimeZoneInfo.FindSystemTimeZoneById("Europe/Paris")).ToString("D", new System.Globalization.CultureInfo("fr-FR"));
            Assert.Contains(Shown(fresh.AddDays(-100)), text, StringComparison.Ordinal);
            Assert.DoesNotContain(Shown(fresh), text, StringComparison.Ordinal);
        }
    }

    /// <summary>
    /// The site's question says when a yes would send nothing: no CV yet (with the way to Mon CV), or an offline one, with
    /// "still looking", which comes back to the same question. It also leads to Partage, where the sharing is withdrawn.
    /// </summary>
    [Fact]
    public async Task TheQuestionSaysWhenTheCvIsMissingOrOfflineAndStillLookingComesBackToIt()
    {
        var site = await RegisterSiteAsync();
        var (_, challenge) = PageSession.Pkce();
        var (newcomer, _, _) = await PageSession.SignUpAsync(fixture.Factory);
        using (newcomer)
        {
            var (page, _) = await OpenConsentPageAsync(newcomer, site, challenge, "none");
            var text = WebUtility.HtmlDecode(page);
            Assert.Contains("Vous n’avez pas encore de CV : les sites avec lesquels vous partagez ne reçoivent rien", text, StringComparison.Ordinal);
            Assert.Contains("<a href=\"/Cv\">Rédiger ou importer mon CV</a>", text, StringComparison.Ordinal);
            Assert.Contains("à tout moment, en un clic, dans <a href=\"/Sharing\">Partage</a>.", text, StringComparison.Ordinal);
        }

        var seeker = await Propagation.SeekerWithCvAsync(fixture.Factory, fixture.Actors, "consent-offline-" + Guid.NewGuid().ToString("N"));
        using var session = new PageSession(fixture.Factory);
        await Actors.SubmitLoginAsync(session.Http, new Uri("/Account/Login", UriKind.Relative), seeker.Email, seeker.Password);
        Assert.DoesNotContain("id=\"cv-notice\"", (await OpenConsentPageAsync(session, site, challenge, "online")).Page, StringComparison.Ordinal);
        await fixture.Database.ExecuteAsync($"UPDATE cvs SET refreshed_at = refreshed_at - interval '100 days' WHERE seeker_id = '{seeker.Id}'");

        var (offline, _) = await OpenConsentPageAsync(session, site, challenge, "offline");
        var offlineText = WebUtility.HtmlDecode(offline);
        Assert.Contains("Votre CV est hors ligne depuis le ", offlineText, StringComparison.Ordinal);
        var returnUrl = PageSession.StillLookingReturnUrl(offlineText);
        Assert.StartsWith("/Consent/Share?client_id=", returnUrl, StringComparison.Ordinal);
        Assert.Contains("state=offline", returnUrl, StringComparison.Ordinal);
        using (var refreshed = await session.Http.PostAsync("/Cv?handler=Refresh", new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["returnUrl"] = returnUrl, ["__RequestVerificationToken"] = PageSession.AntiforgeryToken(offline),
        })))
        {
            Assert.Equal(HttpStatusCode.Redirect, refreshed.StatusCode);
            Assert.Equal(returnUrl, refreshed.Headers.Location!.OriginalString);
        }

        // The same question, now with the CV online, whose yes still reaches the site; the page's own mark is not sent on.
        using var back = await session.Http.GetAsync(returnUrl);
        Assert.Equal(HttpStatusCode.OK, back.StatusCode);
        var again = await back.Content.ReadAsStringAsync();
        var againText = WebUtility.HtmlDecode(again);
        Assert.DoesNotContain("id=\"cv-notice\"", againText, StringComparison.Ordinal);
        Assert.Contains("C’est noté : votre CV reste en ligne pour une nouvelle période complète.", againText, StringComparison.Ordinal);
        var fields = HiddenField().Matches(again)
            .Select(m => new KeyValuePair<string, string>(WebUtility.HtmlDecode(m.Groups[1].Value), WebUtility.HtmlDecode(m.Groups[2].Value)))
            .Where(f => f.Key != "returnUrl")
            .ToList();
        Assert.DoesNotContain(fields, f => f.Key.StartsWith("eg_", StringComparison.Ordinal));
        Assert.Contains(fields, f => f.Key == "state" && f.Value == "offline");
        fields.Add(new("__RequestVerificationToken", PageSession.AntiforgeryToken(again)));
        using var answer = await PostDecisionAsync(session, again, fields, "accept", tick: true);
        Assert.Equal("offline", System.Web.HttpUtility.ParseQueryString(answer.Headers.Location!.Query)["state"]);
        Assert.Equal(1L, await fixture.Database.ScalarAsync<long>(
            $"SELECT count(*) FROM consents WHERE seeker_id = '{seeker.Id}' AND recipient_id = '{site.Id}' AND state = 'Active'"));
    }

    /// <summary>/connect/authorize for a signed-in seeker leads to the consent page; returns it and its form's fields.</summary>
    private static async Task<(string Page, List<KeyValuePair<string, string>> Fields)> OpenConsentPageAsync(PageSession session, TestSite site, string challenge, string state)
    {
        using var authorize = await session.Http.GetAsync(AuthorizeUrl(site.ClientId, challenge, state));
        Assert.Equal(HttpStatusCode.Redirect, authorize.StatusCode);
        var consent = authorize.Headers.Location!.OriginalString;
        Assert.StartsWith("/Consent/Share?", consent, StringComparison.Ordinal);

        using var response = await session.Http.GetAsync(consent);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Contains("form-action 'self' https://jobs.example", response.Headers.GetValues("Content-Security-Policy").Single(), StringComparison.Ordinal);
        var page = await response.Content.ReadAsStringAsync();
        var fields = HiddenField().Matches(page)
            .Select(m => new KeyValuePair<string, string>(WebUtility.HtmlDecode(m.Groups[1].Value), WebUtility.HtmlDecode(m.Groups[2].Value)))
            .ToList();
        Assert.Contains(fields, f => f.Key == "client_id" && f.Value == site.ClientId);
        fields.Add(new("__RequestVerificationToken", PageSession.AntiforgeryToken(page)));
        return (page, fields);
    }

    private static async Task<HttpResponseMessage> PostDecisionAsync(
        PageSession session, string page, List<KeyValuePair<string, string>> fields, string decision, bool tick)
    {
        var form = new List<KeyValuePair<string, string>>(fields) { new("eg_decision", decision) };
        if (tick)
        {
            form.Add(new("eg_share", "yes"));
        }

        Assert.Contains(form, f => f.Key == "__RequestVerificationToken");
        Assert.Contains("action=\"/connect/authorize\"", page, StringComparison.Ordinal);
        var response = await session.Http.PostAsync("/connect/authorize", new FormUrlEncodedContent(form));
        Assert.True(response.StatusCode == HttpStatusCode.Redirect, $"decision: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        return response;
    }

    private Task<JsonElement> RedeemAsync(TestSite site, string code, string verifier) =>
        RedeemCodeAsync(fixture.Factory, site.ClientId, site.Secret, code, verifier, Callback);

    /// <summary>What the site's back end does with the code: redeems it with its secret and the PKCE verifier.</summary>
    public static async Task<JsonElement> RedeemCodeAsync(GatewayFactory factory, string clientId, string secret, string code, string verifier, string redirectUri)
    {
        using var client = factory.CreateHttpClient();
        using var request = new HttpRequestMessage(HttpMethod.Post, "/connect/token")
        {
            Content = new FormUrlEncodedContent(new Dictionary<string, string>
            {
                ["grant_type"] = "authorization_code",
                ["code"] = code,
                ["redirect_uri"] = redirectUri,
                ["code_verifier"] = verifier,
            }),
        };
        request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue(
            "Basic", Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes($"{clientId}:{secret}")));
        using var response = await client.SendAsync(request);
        var body = await response.ReadJsonAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, body.ToString());
        return body.Clone();
    }

    [GeneratedRegex("<input type=\"hidden\" name=\"([^\"]+)\" value=\"([^\"]*)\"")]
    private static partial Regex HiddenField();
}
