using System.Net;
using ExchangeGateway.Tests.Infrastructure;

namespace ExchangeGateway.Tests.Hosting;

/// <summary>The Hangfire dashboard can trigger and delete jobs: operators only, signed in on the gateway's own pages.</summary>
[Collection(GatewayCollection.Name)]
public sealed class HangfireDashboardTests(GatewayFixture fixture)
{
    [Fact]
    public async Task AnonymousIsRefused()
    {
        using var client = fixture.Client();
        using var response = await client.GetAsync("/hangfire");
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
    }

    [Fact]
    public async Task AnAuditorSignedInIsForbidden()
    {
        var auditor = await fixture.Actors.NewAuditorAsync();
        using var browser = await SignedInAsync(auditor);
        using var response = await browser.GetAsync("/hangfire");
        Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
    }

    [Fact]
    public async Task AnOperatorSignedInSeesTheDashboard()
    {
        var @operator = await fixture.Actors.NewOperatorAsync();
        using var browser = await SignedInAsync(@operator);
        using var response = await browser.GetAsync("/hangfire");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Contains("ExchangeGateway jobs", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task ABearerTokenDoesNotOpenTheDashboard()
    {
        var @operator = await fixture.Actors.NewOperatorAsync();
        using var client = fixture.Client().WithToken(@operator.Tokens.AccessToken);
        using var response = await client.GetAsync("/hangfire");
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
    }

    /// <summary>A browser with the gateway's session cookie, signed in through the real sign-in page.</summary>
    private async Task<HttpClient> SignedInAsync(Person person)
    {
        var browser = fixture.Factory.CreateHttpClient(new CookieContainer());
        var landing = await fixture.Actors.SecondFactorAsync(browser,
            await Actors.SubmitLoginAsync(browser, new Uri("/Account/Login?ReturnUrl=%2Fhangfire", UriKind.Relative), person.Email, person.Password), person.Email);
        Assert.Equal("/hangfire", landing.OriginalString);
        return browser;
    }
}
