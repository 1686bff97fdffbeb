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
        Assert.True(user!.EmailConfirmed);
        Assert.Equal(1L, await AuditCountAsync(AuditActions.AccountCreated, "success", user.Id));
        Assert.Equal(1L, await AuditCountAsync(AuditActions.AccountConfirmed, "success", user.Id));
    }

    /// <summary>
    /// Sign-up must not tell a visitor who has an account: a known address gets the same answer as a new one, its holder
    /// (not the visitor) is told, and nothing about the account changes.
    /// </summary>
    [Fact]
    public async Task SigningUpWithAnAddressThatHasAnAccountLooksTheSameAndOnlyItsHolderIsTold()
    {
        var (holder, email, password) = await PageSession.SignUpAsync(fixture.Factory);
        holder.Dispose();
        var mailsBefore = (await Mailbox.ForAsync(fixture.Factory, email)).Count;
        var intruderPassword = "Intruder-Pass-8" + Guid.NewGuid().ToString("N")[..6] + "!";

        using var intruder = new PageSession(fixture.Factory);
        var known = await SignUpNoticeAsync(intruder, email, intruderPassword);
        using var newcomer = new PageSession(fixture.Factory);
        var fresh = $"fresh-{Guid.NewGuid():N}@example.test";
        var unknown = await SignUpNoticeAsync(newcomer, fresh, intruderPassword);
        Assert.Equal(unknown.Replace(fresh, "ADDRESS", StringComparison.Ordinal), known.Replace(email, "ADDRESS", StringComparison.Ordinal));

        var told = (await Mailbox.ForAsync(fixture.Factory, email)).Skip(mailsBefore).ToList();
        var message = Assert.Single(told);
        Assert.Equal("Vous avez déjà un compte", message.Subject);
        Assert.NotNull(Mailbox.LinkTo(message, "Login"));
        Assert.Null(Mailbox.LinkTo(message, "ConfirmEmail"));

        // The intruder is not signed in, their password opens nothing, the holder's still works.
        using (var cv = await intruder.Http.GetAsync("/Cv"))
        {
            Assert.Equal(HttpStatusCode.Redirect, cv.StatusCode);
        }

        using (var attempt = new PageSession(fixture.Factory))
        using (var refused = await Actors.PostLoginFormAsync(attempt.Http, new Uri("/Account/Login", UriKind.Relative), email, intruderPassword))
        {
            Assert.Contains("Adresse e-mail ou mot de passe incorrect.", await refused.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        using (var signIn = new PageSession(fixture.Factory))
        {
            Assert.Equal("/", (await Actors.SubmitLoginAsync(signIn.Http, new Uri("/Account/Login?ReturnUrl=%2F", UriKind.Relative), email, password)).OriginalString);
        }

        await using var scope = fixture.Factory.Services.CreateAsyncScope();
        var user = await scope.ServiceProvider.GetRequiredService<UserManager<GatewayUser>>().FindByEmailAsync(email);
        Assert.Equal(1L, await AuditCountAsync(AuditActions.AccountCreated, "denied", user!.Id));
        Assert.Equal(0L, await fixture.Database.ScalarAsync<long>(
            $"SELECT count(*) FROM audit_events WHERE concat_ws(' ', actor_id, subject, details) LIKE '%{email}%'"));
    }

    /// <summary>
    /// An account is used only once its address is confirmed. Before that, the right password gets a new link (a wrong one
    /// the usual refusal); the link signs in once and carries on where sign-up started; used again, it signs no one in.
    /// </summary>
    [Fact]
    public async Task AnUnconfirmedAccountSignsInOnlyThroughItsLinkWhichWorksOnce()
    {
        using var visitor = new PageSession(fixture.Factory);
        var email = $"unconfirmed-{Guid.NewGuid():N}@example.test";
        var password = "Unconfirmed-Pass-4" + Guid.NewGuid().ToString("N")[..6] + "!";
        using (var registered = await visitor.SubmitAsync("/Account/Register?ReturnUrl=%2FSharing", new() { ["Email"] = email, ["Password"] = password, ["ConfirmPassword"] = password }))
        {
            Assert.Contains(PageSession.SentNotice, await registered.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        var first = Mailbox.LinkTo(Assert.Single(await Mailbox.ForAsync(fixture.Factory, email)), "ConfirmEmail")!;
        using (var wrong = await Actors.PostLoginFormAsync(visitor.Http, new Uri("/Account/Login", UriKind.Relative), email, password + "x"))
        {
            Assert.Contains("Adresse e-mail ou mot de passe incorrect.", await wrong.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        Assert.Single(await Mailbox.ForAsync(fixture.Factory, email));
        using (var right = await Actors.PostLoginFormAsync(visitor.Http, new Uri("/Account/Login", UriKind.Relative), email, password))
        {
            Assert.Equal(HttpStatusCode.OK, right.StatusCode);
            Assert.Contains("Confirmez d’abord votre adresse", await right.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        Assert.Equal(2, (await Mailbox.ForAsync(fixture.Factory, email)).Count);
        using (var cv = await visitor.Http.GetAsync("/Cv"))
        {
            Assert.Equal(HttpStatusCode.Redirect, cv.StatusCode);
        }

        using (var forged = await visitor.ConfirmAsync(new Uri(first.AbsoluteUri.Replace("code=", "code=AAAA", StringComparison.Ordinal))))
        {
            Assert.Contains("Ce lien n’est pas valide", await forged.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        using (var confirmed = await visitor.ConfirmAsync(first))
        {
            Assert.Equal(HttpStatusCode.Redirect, confirmed.StatusCode);
            Assert.Equal("/Sharing", confirmed.Headers.Location!.OriginalString);
        }

        Assert.Contains("<h1>Mon CV</h1>", await visitor.GetPageAsync("/Cv"), StringComparison.Ordinal);
        using var other = new PageSession(fixture.Factory);
        using (var again = await other.ConfirmAsync(first))
        {
            Assert.Equal(HttpStatusCode.Redirect, again.StatusCode);
            Assert.StartsWith("/Account/Login", again.Headers.Location!.OriginalString, StringComparison.Ordinal);
        }

        using var stillOut = await other.Http.GetAsync("/Cv");
        Assert.Equal(HttpStatusCode.Redirect, stillOut.StatusCode);
    }

    /// <summary>
    /// A password reset proves the address as well as a confirmation link: the holder of an address that someone else
    /// signed up with takes the account back with it, and signs in.
    /// </summary>
    [Fact]
    public async Task AResetThroughTheMailedLinkAlsoConfirmsTheAddress()
    {
        var email = $"squatted-{Guid.NewGuid():N}@example.test";
        using (var squatter = new PageSession(fixture.Factory))
        {
            var squatterPassword = "Squatter-Pass-2" + Guid.NewGuid().ToString("N")[..6] + "!";
            await SignUpNoticeAsync(squatter, email, squatterPassword);
        }

        using var holder = new PageSession(fixture.Factory);
        using (await holder.SubmitAsync("/Account/ForgotPassword", new() { ["Email"] = email }))
        {
        }

        var link = Mailbox.LinkTo((await Mailbox.ForAsync(fixture.Factory, email)).Last(), "ResetPassword")!;
        var password = "Holder-Pass-6" + Guid.NewGuid().ToString("N")[..6] + "!";
        var query = System.Web.HttpUtility.ParseQueryString(link.Query);
        using (var reset = await holder.SubmitAsync(link.PathAndQuery, new()
        {
            ["user"] = query["user"]!, ["Code"] = query["code"]!, ["Password"] = password, ["ConfirmPassword"] = password,
        }))
        {
            Assert.Contains("Votre mot de passe a été changé", await reset.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        Assert.Equal("/", (await Actors.SubmitLoginAsync(holder.Http, new Uri("/Account/Login?ReturnUrl=%2F", UriKind.Relative), email, password)).OriginalString);
    }

    /// <summary>Submits the sign-up form and returns what the page then says.</summary>
    private static async Task<string> SignUpNoticeAsync(PageSession session, string email, string password)
    {
        using var response = await session.SubmitAsync("/Account/Register", new() { ["Email"] = email, ["Password"] = password, ["ConfirmPassword"] = password });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var notice = NoticeParagraph().Match(await response.Content.ReadAsStringAsync());
        Assert.True(notice.Success, "no notice on the sign-up answer");
        return notice.Value;
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

    [GeneratedRegex("<p class=\"notice\" role=\"status\">[^<]*</p>")]
    private static partial Regex NoticeParagraph();

    [GeneratedRegex(@"http://[^\s]+/Account/ResetPassword\?[^\s]+")]
    private static partial Regex ResetLink();
}
