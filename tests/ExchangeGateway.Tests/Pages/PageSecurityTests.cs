using System.Net;
using ExchangeGateway.Pages;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Hosting.Internal;

namespace ExchangeGateway.Tests.Pages;

[Collection(GatewayCollection.Name)]
public sealed class PageSecurityTests(GatewayFixture fixture)
{
    [Fact]
    public async Task PagesForbidInlineScriptsAndFramingAndCarryNoScriptOfTheirOwn()
    {
        using var client = fixture.Client();
        using var response = await client.GetAsync("/Account/Login");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);

        var csp = response.Headers.GetValues("Content-Security-Policy").Single();
        Assert.DoesNotContain("unsafe-inline", csp, StringComparison.Ordinal);
        Assert.DoesNotContain("unsafe-eval", csp, StringComparison.Ordinal);
        Assert.Contains("script-src 'self'", csp, StringComparison.Ordinal);
        Assert.Contains("frame-ancestors 'none'", csp, StringComparison.Ordinal);
        Assert.Contains("form-action 'self'", csp, StringComparison.Ordinal);
        Assert.Equal("DENY", response.Headers.GetValues("X-Frame-Options").Single());
        Assert.Equal("nosniff", response.Headers.GetValues("X-Content-Type-Options").Single());

        var html = await response.Content.ReadAsStringAsync();
        Assert.DoesNotContain("<script", html, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotMatch(" on[a-z]+=\"", html);
        Assert.DoesNotContain("style=\"", html, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TheApiKeepsItsOwnHeaders()
    {
        using var client = fixture.Client();
        using var response = await client.GetAsync("/api/v1/me");
        var csp = response.Headers.GetValues("Content-Security-Policy").Single();
        Assert.DoesNotContain("script-src", csp, StringComparison.Ordinal);
        Assert.DoesNotContain("style-src", csp, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SeekerPagesSendVisitorsToSignIn()
    {
        using var client = fixture.Client();
        foreach (var page in (string[])["/Cv", "/Sharing", "/Disclosures", "/Erasures", "/Account/TwoStep", "/Account/Delete"])
        {
            using var response = await client.GetAsync(page);
            Assert.Equal(HttpStatusCode.Redirect, response.StatusCode);
            Assert.StartsWith("/Account/Login", response.Headers.Location!.PathAndQuery(), StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task AFormPostWithoutTheAntiforgeryTokenChangesNothing()
    {
        var (session, _, _) = await PageSession.SignUpAsync(fixture.Factory);
        using (session)
        {
            var sites = await session.GetPageAsync("/Sharing");
            var siteId = System.Text.RegularExpressions.Regex.Match(sites, "name=\"Shown\" value=\"([0-9a-f-]+)\"").Groups[1].Value;
            using var response = await session.Http.PostAsync("/Sharing", new FormUrlEncodedContent(new Dictionary<string, string> { ["Shown"] = siteId, ["Shared"] = siteId }));
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            Assert.Contains("name=\"Shared\" value=\"" + siteId + "\" aria-describedby", await session.GetPageAsync("/Sharing"), StringComparison.Ordinal);
            // The person is told, on a page in their language, that nothing was saved and what to do (not the API's JSON).
            await AssertErrorPageAsync(response, "La page a expiré");
        }
    }

    /// <summary>
    /// A page's error is a page: a receipt that does not exist, or a form whose token no longer matches the session (signed
    /// out in another tab), answers HTML in the person's language with the same status. The API keeps problem+json, and
    /// the error page cannot be opened for itself.
    /// </summary>
    [Fact]
    public async Task ErrorsOnThePagesArePagesInThePersonsLanguage()
    {
        var (session, _, _) = await PageSession.SignUpAsync(fixture.Factory);
        using (session)
        {
            using (var missing = await session.Http.GetAsync($"/Sharing/Receipt/{Guid.NewGuid()}"))
            {
                Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
                await AssertErrorPageAsync(missing, "Cette page n’existe pas");
            }

            var form = await session.GetPageAsync("/Account/Logout");
            using (var stale = await session.Http.PostAsync("/Account/Logout", new FormUrlEncodedContent(new Dictionary<string, string>
            {
                ["__RequestVerificationToken"] = PageSession.AntiforgeryToken(form) + "x",
            })))
            {
                Assert.Equal(HttpStatusCode.BadRequest, stale.StatusCode);
                await AssertErrorPageAsync(stale, "La page a expiré");
            }

            Assert.Contains("<h1>Mon CV</h1>", await session.GetPageAsync("/Cv"), StringComparison.Ordinal);
        }

        using var anonymous = fixture.Client();
        using (var direct = await anonymous.GetAsync("/Error/500"))
        {
            Assert.Equal(HttpStatusCode.NotFound, direct.StatusCode);
            await AssertErrorPageAsync(direct, "Cette page n’existe pas");
        }

        using var api = await anonymous.GetAsync("/api/v1/no-such-thing");
        Assert.Equal("application/problem+json", api.Content.Headers.ContentType?.MediaType);
    }

    private static async Task AssertErrorPageAsync(HttpResponseMessage response, string text)
    {
        Assert.Equal("text/html", response.Content.Headers.ContentType?.MediaType);
        var html = System.Net.WebUtility.HtmlDecode(await response.Content.ReadAsStringAsync());
        Assert.Contains("lang=\"fr\"", html, StringComparison.Ordinal);
        Assert.Contains(text, html, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TheSessionAndAntiforgeryCookiesAreHttpOnlyAndSecureOutsideDevelopment()
    {
        var (session, _, _) = await PageSession.SignUpAsync(fixture.Factory);
        using (session)
        {
            var cookies = session.Cookies.GetAllCookies();
            Assert.True(cookies["eg.session"]!.HttpOnly);
            Assert.True(cookies["eg.antiforgery"]!.HttpOnly);
        }

        Assert.Equal(CookieSecurePolicy.Always, PagesSetup.SecurePolicy(new HostingEnvironment { EnvironmentName = Environments.Production }));
        Assert.Equal(CookieSecurePolicy.Always, PagesSetup.SecurePolicy(new HostingEnvironment { EnvironmentName = Environments.Staging }));
    }
}

internal static class UriExtensions
{
    public static string PathAndQuery(this Uri uri) => uri.IsAbsoluteUri ? uri.PathAndQuery : uri.OriginalString;
}
