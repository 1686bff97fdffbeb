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

    private async Task<(int Code, string Output)> RunAsync(params string[] args)
    {
        await using var output = new StringWriter();
        var code = await StaffCommands.RunAsync(fixture.Factory.Services, args, output);
        return (code, output.ToString());
    }
}
