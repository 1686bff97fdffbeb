using ExchangeGateway.Hosting;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Hosting.Internal;

namespace ExchangeGateway.Tests.Hosting;

/// <summary>
/// Demo accounts (published passwords) and pickup mail (seekers' addresses and reset links in files on the node) are for a
/// developer's machine and the tests: any other environment, staging included, refuses to start with them.
/// </summary>
public sealed class LocalOnlyTests
{
    [Theory]
    [InlineData("Production")]
    [InlineData("Staging")]
    [InlineData("Acceptance")]
    public void DemoDataAndPickupMailAreRefusedOutsideDevelopmentAndTesting(string name)
    {
        var environment = new HostingEnvironment { EnvironmentName = name };
        Assert.Contains("DemoData:Enabled", LocalOnly.Refusal(environment, demoData: true, notifierMode: "smtp"), StringComparison.Ordinal);
        Assert.Contains("Notifier:Mode is pickup", LocalOnly.Refusal(environment, demoData: false, notifierMode: "pickup"), StringComparison.Ordinal);
        Assert.Null(LocalOnly.Refusal(environment, demoData: false, notifierMode: "smtp"));
        // What receipts and mails show seekers must not be left at the example defaults.
        Assert.Contains("Consent:ControllerContact is still the example 'dpo@employment-service.example'",
            LocalOnly.Refusal(environment, demoData: false, notifierMode: "smtp", ("Consent:ControllerContact", "dpo@employment-service.example")), StringComparison.Ordinal);
        Assert.Contains("Consent:ControllerUrl",
            LocalOnly.Refusal(environment, demoData: false, notifierMode: "smtp", ("Consent:ControllerUrl", "https://employment-service.example/privacy")), StringComparison.Ordinal);
        Assert.Null(LocalOnly.Refusal(environment, demoData: false, notifierMode: "smtp",
            ("Consent:ControllerContact", "dpo@emploi.gouv.fr"), ("Notifier:From", "Service <no-reply@emploi.gouv.fr>")));
    }

    [Theory]
    [InlineData("Development")]
    [InlineData("Testing")]
    public void DevelopmentAndTestingMayUseThem(string name) =>
        Assert.Null(LocalOnly.Refusal(new HostingEnvironment { EnvironmentName = name }, demoData: true, notifierMode: "pickup",
            ("Consent:ControllerContact", "dpo@employment-service.example")));
}

/// <summary>
/// Wherever cookies are Secure, the session, second-factor and antiforgery cookies carry the __Host- prefix, so a browser
/// takes them only from this host (a sibling subdomain cannot plant its own session); over development's plain http the
/// prefix would make the browser drop them.
/// </summary>
public sealed class CookieNameTests
{
    [Theory]
    [InlineData("Production", "__Host-eg.session")]
    [InlineData("Staging", "__Host-eg.session")]
    [InlineData("Development", "eg.session")]
    [InlineData("Testing", "eg.session")]
    public void SecureCookiesAreHostLocked(string name, string expected)
    {
        var environment = new HostingEnvironment { EnvironmentName = name };
        Assert.Equal(expected, ExchangeGateway.Pages.PagesSetup.CookieName(environment, "eg.session"));
        Assert.Equal(expected != "eg.session", ExchangeGateway.Pages.PagesSetup.SecurePolicy(environment) == Microsoft.AspNetCore.Http.CookieSecurePolicy.Always);
    }
}
