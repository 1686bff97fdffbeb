using System.Net;
using System.Text.Json;
using ExchangeGateway.Audit;
using ExchangeGateway.Auth;
using ExchangeGateway.Tests.Infrastructure;
using ExchangeGateway.Tests.Pages;

namespace ExchangeGateway.Tests.Auth;

/// <summary>
/// How a deployment gets its staff: sign-up makes job seekers only and demo data is for Development, so operators,
/// auditors and the auditors' clients are made from the shell, and each change is in the audit log.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class StaffCommandsTests(GatewayFixture fixture)
{
    [Fact]
    public async Task AnOperatorGrantedFromTheShellSetsAPasswordByTheLinkAndLosesTheRoleWhenRevoked()
    {
        var email = $"first-operator-{Guid.NewGuid():N}@example.test";
        var (granted, output) = await RunAsync("staff", "grant", email, Roles.Operator);
        Assert.Equal(0, granted);
        var printed = JsonDocument.Parse(output).RootElement;
        var account = printed.GetProperty("account").GetString()!;
        var link = new Uri(printed.GetProperty("setPasswordLink").GetString()!);
        // Printed for a person to copy, so as it is: no "\u0026" in place of the query's "&".
        Assert.Contains("&code=", output, StringComparison.Ordinal);

        // The link is the reset page's: it names the account, sets the password and confirms the address.
        using var browser = new PageSession(fixture.Factory);
        Assert.Contains($"Compte : {email}", System.Net.WebUtility.HtmlDecode(await browser.GetPageAsync(link.PathAndQuery)), StringComparison.Ordinal);
        var password = "Staff-Password-8" + Guid.NewGuid().ToString("N")[..6] + "!";
        var query = System.Web.HttpUtility.ParseQueryString(link.Query);
        using (var set = await browser.SubmitAsync(link.PathAndQuery, new()
        {
            ["user"] = query["user"]!, ["Code"] = query["code"]!, ["Password"] = password, ["ConfirmPassword"] = password,
        }))
        {
            Assert.Equal(HttpStatusCode.OK, set.StatusCode);
        }

        var tokens = await fixture.Actors.SignInWithCodeFlowAsync(email, password, $"openid offline_access {ApiScopes.RecipientsAdmin}");
        using (var admin = fixture.Client().WithToken(tokens.AccessToken))
        {
            Assert.Equal(HttpStatusCode.OK, (await admin.GetAsync(Sites.AdminPath)).StatusCode);
        }

        // Granted again: nothing changes, and no new link (the account has its password).
        var (again, againOutput) = await RunAsync("staff", "grant", email, Roles.Operator);
        Assert.Equal(0, again);
        var second = JsonDocument.Parse(againOutput).RootElement;
        Assert.Equal((false, JsonValueKind.Null), (second.GetProperty("changed").GetBoolean(), second.GetProperty("setPasswordLink").ValueKind));

        Assert.Equal(0, (await RunAsync("staff", "revoke", email, Roles.Operator)).Code);
        using (var refresh = await fixture.Actors.RequestRefreshAsync(tokens.RefreshToken!))
        {
            Assert.Equal(HttpStatusCode.BadRequest, refresh.StatusCode);
        }

        // Signed in again, the account is no operator any more: the admin scope is not granted.
        var after = await fixture.Actors.SignInWithCodeFlowAsync(email, password, $"openid {ApiScopes.RecipientsAdmin}");
        using (var former = fixture.Client().WithToken(after.AccessToken))
        {
            Assert.Equal(HttpStatusCode.Forbidden, (await former.GetAsync(Sites.AdminPath)).StatusCode);
        }

        Assert.Equal(3, await fixture.Database.ScalarAsync<long>(
            $"SELECT count(*) FROM audit_events WHERE action IN ('{AuditActions.StaffRoleGranted}', '{AuditActions.StaffRoleRevoked}') AND details LIKE '%{account}%'"));
        Assert.Equal(0, await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM audit_events WHERE details LIKE '%{email}%' OR actor_id = '{email}'"));
    }

    [Fact]
    public async Task AnAuditorsClientRegisteredFromTheShellReadsTheLogAndNothingElse()
    {
        var clientId = "audit-tool-" + Guid.NewGuid().ToString("N")[..8];
        var (code, output) = await RunAsync("staff", "auditor-client", clientId);
        Assert.Equal(0, code);
        var secret = JsonDocument.Parse(output).RootElement.GetProperty("clientSecret").GetString()!;

        using (var auditor = fixture.Client().WithToken(await fixture.Actors.ClientTokenAsync(clientId, secret, ApiScopes.AuditRead)))
        {
            Assert.Equal(HttpStatusCode.OK, (await auditor.GetAsync("/api/v1/audit/events?limit=1")).StatusCode);
        }

        using (var refused = await fixture.Actors.RequestClientTokenAsync(clientId, secret, ApiScopes.CvRead))
        {
            Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        }

        Assert.Equal(1, await fixture.Database.ScalarAsync<long>(
            $"SELECT count(*) FROM audit_events WHERE action = '{AuditActions.AuditorClientRegistered}' AND details LIKE '%{clientId}%'"));
        Assert.Equal(1, (await RunAsync("staff", "auditor-client", clientId)).Code);
        Assert.Equal(64, (await RunAsync("staff", "auditor-client", "Not A Client")).Code);
        Assert.Equal(64, (await RunAsync("staff", "grant", "someone@example.test", "superuser")).Code);
        Assert.Equal(1, (await RunAsync("staff", "revoke", $"nobody-{Guid.NewGuid():N}@example.test", Roles.Auditor)).Code);
    }

    /// <summary>
    /// An auditors' tool whose secret leaked, or that is retired: its secret is replaced (the old one refused at once) or the
    /// client removed; both are in the audit log. Neither command touches a site (the operator API does, with its seekers'
    /// consents) or Swagger UI.
    /// </summary>
    [Fact]
    public async Task AnAuditorsClientsSecretIsRotatedAndTheClientRemovedFromTheShell()
    {
        var clientId = "audit-tool-" + Guid.NewGuid().ToString("N")[..8];
        var (_, registered) = await RunAsync("staff", "auditor-client", clientId);
        var first = JsonDocument.Parse(registered).RootElement.GetProperty("clientSecret").GetString()!;

        var (rotatedCode, rotated) = await RunAsync("staff", "rotate-client-secret", clientId);
        Assert.Equal(0, rotatedCode);
        var second = JsonDocument.Parse(rotated).RootElement.GetProperty("clientSecret").GetString()!;
        using (var old = await fixture.Actors.RequestClientTokenAsync(clientId, first, ApiScopes.AuditRead))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, old.StatusCode);
        }

        await fixture.Actors.ClientTokenAsync(clientId, second, ApiScopes.AuditRead);

        Assert.Equal(0, (await RunAsync("staff", "remove-client", clientId)).Code);
        using (var removed = await fixture.Actors.RequestClientTokenAsync(clientId, second, ApiScopes.AuditRead))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, removed.StatusCode);
        }

        Assert.Equal(2, await fixture.Database.ScalarAsync<long>(
            $"SELECT count(*) FROM audit_events WHERE action IN ('{AuditActions.ClientSecretRotated}', '{AuditActions.ClientRemoved}') AND details LIKE '%{clientId}%'"));
        var site = await Sites.RegisterAsync(fixture.Factory, fixture.Actors);
        Assert.Equal(1, (await RunAsync("staff", "remove-client", site.ClientId)).Code);
        Assert.Equal(1, (await RunAsync("staff", "rotate-client-secret", site.ClientId)).Code);
        Assert.Equal(1, (await RunAsync("staff", "remove-client", ExchangeGateway.Auth.ClientRegistrations.SwaggerClientId)).Code);
        Assert.Equal(1, (await RunAsync("staff", "remove-client", clientId)).Code);
    }

    /// <summary>
    /// One of the service's own apps (a seeker's app at its own address): registered from the shell with its redirect URI,
    /// it signs a seeker in with code and PKCE and gets the seeker's scope, and only that; a URI that is not https (outside
    /// loopback in development) is refused. Removed, it gets no more tokens.
    /// </summary>
    [Fact]
    public async Task AnAppClientRegisteredFromTheShellSignsPeopleInWithTheirOwnScopes()
    {
        var clientId = "seeker-app-" + Guid.NewGuid().ToString("N")[..8];
        const string redirectUri = "https://app.example/callback";
        Assert.Equal(64, (await RunAsync("staff", "app-client", clientId, "http://app.example/callback")).Code);
        Assert.Equal(64, (await RunAsync("staff", "app-client", clientId, "https://app.example/callback#fragment")).Code);
        Assert.Equal(0, (await RunAsync("staff", "app-client", clientId, redirectUri)).Code);
        Assert.Equal(1, (await RunAsync("staff", "app-client", clientId, redirectUri)).Code);

        var seeker = await fixture.Actors.NewSeekerAsync();
        var tokens = await fixture.Actors.SignInWithCodeFlowAsync(seeker.Email, seeker.Password,
            $"openid offline_access {ApiScopes.CvManage} {ApiScopes.AuditRead}", clientId, redirectUri);
        var granted = new Microsoft.IdentityModel.JsonWebTokens.JsonWebToken(tokens.AccessToken).GetClaim("scope").Value.Split(' ');
        Assert.Contains(ApiScopes.CvManage, granted);
        Assert.DoesNotContain(ApiScopes.AuditRead, granted);
        using (var me = fixture.Client().WithToken(tokens.AccessToken))
        {
            Assert.Equal(HttpStatusCode.OK, (await me.GetAsync("/api/v1/me/consents")).StatusCode);
        }

        async Task<HttpStatusCode> RefreshAsync()
        {
            using var client = fixture.Client();
            using var form = new FormUrlEncodedContent(new Dictionary<string, string>
            {
                ["grant_type"] = "refresh_token", ["refresh_token"] = tokens.RefreshToken!, ["client_id"] = clientId,
            });
            using var response = await client.PostAsync("/connect/token", form);
            return response.StatusCode;
        }

        Assert.Equal(HttpStatusCode.OK, await RefreshAsync());
        Assert.Equal(0, (await RunAsync("staff", "remove-client", clientId)).Code);
        Assert.NotEqual(HttpStatusCode.OK, await RefreshAsync());
        Assert.Equal(1, await fixture.Database.ScalarAsync<long>(
            $"SELECT count(*) FROM audit_events WHERE action = '{AuditActions.AppClientRegistered}' AND details LIKE '%{clientId}%'"));
    }

    private async Task<(int Code, string Output)> RunAsync(params string[] args)
    {
        await using var output = new StringWriter();
        var code = await StaffCommands.RunAsync(fixture.Factory.Services, args, output);
        return (code, output.ToString());
    }
}
