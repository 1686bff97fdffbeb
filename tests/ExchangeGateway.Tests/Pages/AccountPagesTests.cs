using System.Net;
using System.Text.RegularExpressions;
using ExchangeGateway.Audit;
using ExchangeGateway.Auth;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.AspNetCore.Identity;
using Microsoft.Extensions.DependencyInjection;

namespace ExchangeGateway.Tests.Pages;

[Collection(GatewayCollection.Name)]
public sealed partial class AccountPagesTests(GatewayFixture fixture)
{
    [Fact]
    public async Task SigningUpMakesASignedInJobSeeker()
    {
        var (session, email, _) = await PageSession.SignUpAsync(fixture.Factory);
        using (session)
        {
            Assert.Contains("<h1>Mon CV</h1>", await session.GetPageAsync("/Cv"), StringComparison.Ordinal);
        }

        await using var scope = fixture.Factory.Services.CreateAsyncScope();
        var users = scope.ServiceProvider.GetRequiredService<UserManager<GatewayUser>>();
        var user = await users.FindByEmailAsync(email);
        Assert.True(await users.IsInRoleAsync(user!, Roles.Seeker));
        Assert.Equal(1L, await AuditCountAsync(AuditActions.AccountCreated, "success", user!.Id));
    }

    [Fact]
    public async Task AWeakPasswordIsExplainedNextToTheField()
    {
        using var session = new PageSession(fixture.Factory);
        using var response = await session.SubmitAsync("/Account/Register", new() { ["Email"] = $"weak-{Guid.NewGuid():N}@example.test", ["Password"] = "short", ["ConfirmPassword"] = "short" });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var html = await response.Content.ReadAsStringAsync();
        Assert.Contains("<title>Erreur : Créer un compte", html, StringComparison.Ordinal);
        Assert.Matches("<span class=\"error field-validation-error\"[^>]*id=\"Password-error\"[^>]*>Le mot de passe doit compter au moins 12 caractères", html);
        Assert.Matches("<input[^>]*aria-describedby=\"password-hint Password-error\"[^>]*aria-invalid=\"true\"|<input[^>]*aria-invalid=\"true\"[^>]*aria-describedby=\"password-hint Password-error\"", html);
        Assert.Contains("href=\"#Password\"", html, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AForgottenPasswordIsResetThroughTheLinkTheNotifierSends()
    {
        var (session, email, _) = await PageSession.SignUpAsync(fixture.Factory);
        session.Dispose();
        using var visitor = new PageSession(fixture.Factory);
        var before = MailFiles().ToHashSet();

        using (var asked = await visitor.SubmitAsync("/Account/ForgotPassword", new() { ["Email"] = email }))
        {
            Assert.Contains("Si un compte existe avec cette adresse", await asked.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        var mail = Assert.Single(MailFiles().Except(before));
        using var message = await MimeKit.MimeMessage.LoadAsync(mail);
        Assert.Equal(email, message.To.Mailboxes.Single().Address);
        var link = new Uri(ResetLink().Match(message.TextBody ?? "").Value);
        Assert.Equal(fixture.Factory.Issuer.Authority, link.Authority);

        var newPassword = "Reset-Password-5" + Guid.NewGuid().ToString("N")[..6] + "!";
        using (var reset = await visitor.SubmitAsync(link.PathAndQuery, new()
        {
            ["user"] = System.Web.HttpUtility.ParseQueryString(link.Query)["user"]!,
            ["Code"] = System.Web.HttpUtility.ParseQueryString(link.Query)["code"]!,
            ["Password"] = newPassword,
            ["ConfirmPassword"] = newPassword,
        }))
        {
            Assert.Contains("Votre mot de passe a été changé", await reset.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        using var signIn = new PageSession(fixture.Factory);
        var location = await Actors.SubmitLoginAsync(signIn.Http, new Uri("/Account/Login?ReturnUrl=%2F", UriKind.Relative), email, newPassword);
        Assert.Equal("/", location.OriginalString);

        // The request and the reset are in the audit log, under the account's pseudonym only.
        var userId = System.Web.HttpUtility.ParseQueryString(link.Query)["user"]!;
        Assert.Equal(1L, await AuditCountAsync(AuditActions.PasswordResetRequested, "success", userId));
        Assert.Equal(1L, await AuditCountAsync(AuditActions.PasswordReset, "success", userId));
        Assert.Equal(0L, await fixture.Database.ScalarAsync<long>(
            $"SELECT count(*) FROM audit_events WHERE concat_ws(' ', actor_id, subject, details) LIKE '%{email}%'"));
    }

    [Fact]
    public async Task AnUnknownAddressGetsTheSameAnswerAndNoMail()
    {
        using var visitor = new PageSession(fixture.Factory);
        var before = MailFiles().ToHashSet();
        const string Anonymous = $"SELECT count(*) FROM audit_events WHERE action = '{AuditActions.PasswordResetRequested}' AND outcome = 'denied' AND actor_kind = 'anonymous' AND subject IS NULL";
        var anonymousBefore = await fixture.Database.ScalarAsync<long>(Anonymous);
        using var asked = await visitor.SubmitAsync("/Account/ForgotPassword", new() { ["Email"] = $"nobody-{Guid.NewGuid():N}@example.test" });
        Assert.Contains("Si un compte existe avec cette adresse", await asked.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.Empty(MailFiles().Except(before));
        Assert.Equal(anonymousBefore + 1, await fixture.Database.ScalarAsync<long>(Anonymous));
    }

    private async Task<long> AuditCountAsync(string action, string outcome, string userId)
    {
        var subject = fixture.Factory.Services.GetRequiredService<Pseudonyms>().Of(userId);
        return await fixture.Database.ScalarAsync<long>(
            $"SELECT count(*) FROM audit_events WHERE action = '{action}' AND outcome = '{outcome}' AND subject = '{subject}'");
    }

    private IEnumerable<string> MailFiles() =>
        Directory.Exists(fixture.Factory.MailDirectory) ? Directory.EnumerateFiles(fixture.Factory.MailDirectory, "*.eml") : [];

    [GeneratedRegex(@"http://[^\s]+/Account/ResetPassword\?[^\s]+")]
    private static partial Regex ResetLink();
}
