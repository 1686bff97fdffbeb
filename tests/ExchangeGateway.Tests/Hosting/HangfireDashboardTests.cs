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

    /// <summary>
    /// An action on the dashboard (here triggering a recurring job) is an audit row naming the operator, the action and the
    /// job; one refused (an auditor's) is recorded as denied. Before, an operator could remove "audit-checkpoint" and stop
    /// the signed checkpoints with nothing in the log.
    /// </summary>
    [Fact]
    public async Task AnActionOnTheDashboardIsAuditedWithItsOperatorAndJobs()
    {
        var @operator = await fixture.Actors.NewOperatorAsync();
        var auditor = await fixture.Actors.NewAuditorAsync();
        using (var browser = await SignedInAsync(@operator))
        {
            var page = await browser.GetStringAsync("/hangfire/recurring");
            var header = System.Text.RegularExpressions.Regex.Match(page, "<meta name=\"csrf-header\" content=\"([^\"]+)\"").Groups[1].Value;
            var token = System.Text.RegularExpressions.Regex.Match(page, "<meta name=\"csrf-token\" content=\"([^\"]+)\"").Groups[1].Value;
            Assert.False(string.IsNullOrEmpty(header) || string.IsNullOrEmpty(token), "the dashboard page carries no antiforgery token");
            using var trigger = new HttpRequestMessage(HttpMethod.Post, "/hangfire/recurring/trigger")
            {
                Content = new FormUrlEncodedContent([KeyValuePair.Create("jobs[]", "token-pruning")]),
            };
            trigger.Headers.Add(header, token);
            using var triggered = await browser.SendAsync(trigger);
            Assert.True(triggered.IsSuccessStatusCode, $"the trigger answered {(int)triggered.StatusCode}");
        }

        using (var browser = await SignedInAsync(auditor))
        using (var refused = await browser.PostAsync("/hangfire/recurring/remove", new FormUrlEncodedContent([KeyValuePair.Create("jobs[]", "audit-checkpoint")])))
        {
            Assert.Equal(HttpStatusCode.Forbidden, refused.StatusCode);
        }

        foreach (var (person, outcome, action, job) in new[] { (@operator, "success", "/recurring/trigger", "token-pruning"), (auditor, "denied", "/recurring/remove", "audit-checkpoint") })
        {
            var row = await fixture.Database.ScalarAsync<string>(
                $"SELECT actor_kind || '|' || outcome || '|' || (details::jsonb ->> 'action') || '|' || (details::jsonb -> 'jobs' ->> 0) FROM audit_events WHERE action = 'jobs.dashboard-action' AND actor_id = '{person.Id}'");
            Assert.Equal($"{(person == auditor ? "auditor" : "operator")}|{outcome}|{action}|{job}", row);
        }
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
