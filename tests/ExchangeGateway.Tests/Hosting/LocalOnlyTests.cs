using ExchangeGateway.Auth;
using ExchangeGateway.Hosting;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.AspNetCore.Identity;
using Microsoft.Extensions.DependencyInjection;
using OpenIddict.Abstractions;
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
/// A database first run in Development keeps its demo accounts and clients, whose credentials the README publishes: a node
/// outside Development refuses to serve it while one of them still opens with them, and only then (one given a password or
/// secret of its own, or removed, stops nothing).
/// </summary>
public sealed class DemoLeftoversTests
{
    [Fact]
    public async Task ADemoAccountOrClientThatStillOpensWithItsPublishedCredentialIsFound()
    {
        await using var database = await TestDatabase.CreateAsync();
        await using var node = new GatewayFactory(database, new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow));
        await using var scope = node.Services.CreateAsyncScope();
        var services = scope.ServiceProvider;
        Assert.Equal("the demo account seeker@example.org", await DemoData.StillOpenAsync(services, CancellationToken.None));

        var users = services.GetRequiredService<UserManager<GatewayUser>>();
        foreach (var (email, _) in DemoData.People)
        {
            var user = (await users.FindByEmailAsync(email))!;
            Assert.True((await users.ChangePasswordAsync(user, DemoData.Password, "Their-Own-Password-9" + Guid.NewGuid().ToString("N")[..6])).Succeeded);
        }

        Assert.Equal("the demo client demo-jobsite", await DemoData.StillOpenAsync(services, CancellationToken.None));
        var applications = services.GetRequiredService<IOpenIddictApplicationManager>();
        foreach (var clientId in DemoData.Sites.Select(s => s.ClientId).Append(DemoData.AuditorClientId))
        {
            await applications.DeleteAsync((await applications.FindByClientIdAsync(clientId))!);
        }

        Assert.Null(await DemoData.StillOpenAsync(services, CancellationToken.None));
    }
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
