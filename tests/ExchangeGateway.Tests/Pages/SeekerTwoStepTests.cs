using System.Net;
using ExchangeGateway.Audit;
using ExchangeGateway.Auth;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace ExchangeGateway.Tests.Pages;

/// <summary>
/// A job seeker may turn two-step sign-in on from their own pages, and off again with a code; it is never imposed on them.
/// Each change ends the account's other sessions, is told to the holder by mail and is in the log under the seeker's
/// pseudonym; a lost phone is reset by an operator; and erasure takes the factor with the account.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class SeekerTwoStepTests(GatewayFixture fixture)
{
    private static readonly Uri TwoStep = new("/Account/TwoStep", UriKind.Relative);

    [Fact]
    public async Task ASeekerTurnsItOnAndTheNextSignInAsksForTheCode()
    {
        var (session, email, password) = await PageSession.SignUpAsync(fixture.Factory);
        using var _ = session;
        var id = await IdOfAsync(email);
        using var other = new PageSession(fixture.Factory);
        Assert.Equal("/", (await Actors.SubmitLoginAsync(other.Http, new Uri("/Account/Login", UriKind.Relative), email, password)).OriginalString);

        // Off by default, offered from the seeker's menu.
        var page = await session.GetPageAsync(TwoStep.OriginalString);
        Assert.Contains("href=\"/Account/TwoStep\"", page, StringComparison.Ordinal);
        Assert.Contains("La connexion en deux étapes est désactivée", page, StringComparison.Ordinal);
        var key = Actors.KeyShown(page);
        Assert.Equal(32, key.Length);

        // A wrong code turns nothing on; nor does the session alone, without the password (a right code and a wrong
        // password: refused, counted as at the sign-in page, and logged as denied).
        using (var wrong = await Actors.PostFormAsync(session.Http, TwoStep, page, new() { ["Password"] = password, ["Code"] = fixture.Actors.WrongCode(key) }))
        {
            Assert.Equal(HttpStatusCode.OK, wrong.StatusCode);
            Assert.Contains("Code incorrect.", await wrong.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        using (var noPassword = await Actors.PostFormAsync(session.Http, TwoStep, page, new() { ["Password"] = "not-the-password", ["Code"] = fixture.Actors.CodesNear(key).First() }))
        {
            Assert.Equal(HttpStatusCode.OK, noPassword.StatusCode);
            Assert.Contains("Mot de passe incorrect.", await noPassword.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        Assert.False(await TwoFactorEnabledAsync(id));
        Assert.Equal(1L, await fixture.Database.ScalarAsync<long>($"SELECT coalesce(sum(failures), 0) FROM sign_in_failures WHERE user_id = '{id}'"));
        // As at the sign-in page, a source that spent its wrong passwords (five) gets no check, and its refusals are not
        // counted on: one network cannot push the account to its ceiling from this form.
        for (var attempt = 0; attempt < 6; attempt++)
        {
            using var again = await Actors.PostFormAsync(session.Http, TwoStep, page, new() { ["Password"] = "not-the-password", ["Code"] = "000000" });
            Assert.Equal(HttpStatusCode.OK, again.StatusCode);
        }

        Assert.Equal(5L, await fixture.Database.ScalarAsync<long>($"SELECT coalesce(sum(failures), 0) FROM sign_in_failures WHERE user_id = '{id}'"));
        using (var refused = await Actors.PostFormAsync(session.Http, TwoStep, page, new() { ["Password"] = password, ["Code"] = fixture.Actors.CodesNear(key).First() }))
        {
            Assert.Contains("Mot de passe incorrect.", await refused.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        Assert.False(await TwoFactorEnabledAsync(id));
        await fixture.Database.ExecuteAsync($"DELETE FROM sign_in_failures WHERE user_id = '{id}'");
        // Every attempt is in the log as denied, the refused ones too (counted or not, an auditor sees the guessing).
        Assert.Equal(8L, await fixture.Database.ScalarAsync<long>(
            $"SELECT count(*) FROM audit_events WHERE action = '{AuditActions.TwoFactorEnabled}' AND outcome = 'denied' AND details::json->>'factor' = 'password'" +
            $" AND subject = '{PseudonymOf(id)}'"));

        // The right one does, and shows the recovery codes once; this session goes on, and the browser is still known as
        // the holder's (a new device cookie, for the new stamp).
        var device = DeviceCookie(session)?.Value;
        Assert.NotNull(device);
        var (_, recovery) = await fixture.Actors.EnrolAsync(session.Http, TwoStep, email, password);
        Assert.NotEqual(device, DeviceCookie(session)?.Value);
        Assert.NotNull(DeviceCookie(session));
        Assert.Equal(SecondFactor.RecoveryCodes, recovery.Count);
        Assert.True(await TwoFactorEnabledAsync(id));
        Assert.Contains("La connexion en deux étapes est activée", await session.GetPageAsync(TwoStep.OriginalString), StringComparison.Ordinal);
        Assert.Contains(await Mailbox.ForAsync(fixture.Factory, email), m => m.Subject == "La connexion en deux étapes a été activée sur votre compte");

        // The account's other session is over: its next page asks for a sign-in.
        using (var ended = await other.Http.GetAsync("/Cv"))
        {
            Assert.Equal(HttpStatusCode.Redirect, ended.StatusCode);
            Assert.StartsWith("/Account/Login", PathOf(ended.Headers.Location!), StringComparison.Ordinal);
        }

        // A password alone no longer opens the account: the code is asked for, and with it the API's tokens come as before.
        using (var next = new PageSession(fixture.Factory))
        {
            var step = await Actors.SubmitLoginAsync(next.Http, new Uri("/Account/Login", UriKind.Relative), email, password);
            Assert.StartsWith("/Account/TwoFactor", step.OriginalString, StringComparison.Ordinal);
            using var shut = await next.Http.GetAsync("/Cv");
            Assert.Equal(HttpStatusCode.Redirect, shut.StatusCode);
        }

        // Nor does a password reset by the mailed link: it signs nobody in while the second step is on.
        using (var forgot = new PageSession(fixture.Factory))
        {
            using (var asked = await forgot.SubmitAsync("/Account/ForgotPassword", new() { ["Email"] = email }))
            {
                Assert.Equal(HttpStatusCode.OK, asked.StatusCode);
            }

            await Mailbox.SettledAsync(fixture.Factory);
            var (reset, signedIn) = await SetPasswordAsync(Mailbox.LinkTo((await Mailbox.ForAsync(fixture.Factory, email)).Last(), "ResetPassword")!);
            Assert.False(signedIn);
            password = reset;
        }

        var tokens = await fixture.Actors.SignInWithCodeFlowAsync(email, password, "openid " + ApiScopes.CvManage);
        using (var api = fixture.Factory.CreateHttpClient().WithToken(tokens.AccessToken))
        {
            // The account says so, and so does the seeker's export of their data.
            using var me = await api.GetAsync("/api/v1/me");
            Assert.True(System.Text.Json.JsonDocument.Parse(await me.Content.ReadAsStringAsync()).RootElement.GetProperty("twoStepSignIn").GetBoolean());
            using var export = await api.GetAsync("/api/v1/me/export");
            Assert.True(System.Text.Json.JsonDocument.Parse(await export.Content.ReadAsStringAsync()).RootElement.GetProperty("account").GetProperty("twoStepSignIn").GetBoolean());
        }

        // In the log as the seeker's pseudonym, never the account id or the address.
        var pseudonym = await fixture.Database.ScalarAsync<string?>(
            $"SELECT actor_id FROM audit_events WHERE action = '{AuditActions.TwoFactorEnabled}' AND outcome = 'success' AND actor_kind = 'seeker' AND subject = actor_id ORDER BY sequence DESC LIMIT 1");
        Assert.Equal(PseudonymOf(id), pseudonym);
        Assert.Equal(0L, await fixture.Database.ScalarAsync<long>(
            $"SELECT count(*) FROM audit_events WHERE actor_id IN ('{id}', '{email}') OR subject IN ('{id}', '{email}')"));
    }

    [Fact]
    public async Task ItIsTurnedOffWithACodeOnlyAndErasureTakesItWithTheAccount()
    {
        var (session, email, password) = await PageSession.SignUpAsync(fixture.Factory);
        using var _ = session;
        var id = await IdOfAsync(email);
        var (_, recovery) = await fixture.Actors.EnrolAsync(session.Http, TwoStep, email, password);
        var key = fixture.Actors.AuthenticatorOf(email);
        using var other = new PageSession(fixture.Factory);
        await fixture.Actors.SecondFactorAsync(other.Http, await Actors.SubmitLoginAsync(other.Http, new Uri("/Account/Login", UriKind.Relative), email, password), email);
        Assert.Equal(HttpStatusCode.OK, (await other.Http.GetAsync("/Cv")).StatusCode);

        // A recovery code signs in once, and the page counts what is left.
        Assert.Contains("Codes de secours restants : 10 sur 10.", WebUtility.HtmlDecode(await session.GetPageAsync(TwoStep.OriginalString)), StringComparison.Ordinal);
        using (var withRecovery = new PageSession(fixture.Factory))
        {
            var codePage = await Actors.SubmitLoginAsync(withRecovery.Http, new Uri("/Account/Login", UriKind.Relative), email, password);
            using var answer = await Actors.PostFormAsync(withRecovery.Http, codePage, await withRecovery.GetPageAsync(codePage.OriginalString), new() { ["Code"] = recovery[2] });
            Assert.Equal(HttpStatusCode.Redirect, answer.StatusCode);
        }

        Assert.Contains("Codes de secours restants : 9 sur 10.", WebUtility.HtmlDecode(await session.GetPageAsync(TwoStep.OriginalString)), StringComparison.Ordinal);

        // The session alone cannot take the second step away: a wrong code is refused, counted and logged, and so is the
        // right code without the password.
        var page = await session.GetPageAsync(TwoStep.OriginalString);
        using (var noPassword = await Actors.PostFormAsync(session.Http, new Uri("/Account/TwoStep?handler=Off", UriKind.Relative), page,
            new() { ["Password"] = "not-the-password", ["Code"] = recovery[1] }))
        {
            Assert.Equal(HttpStatusCode.OK, noPassword.StatusCode);
            Assert.Contains("Mot de passe incorrect.", await noPassword.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        Assert.True(await TwoFactorEnabledAsync(id));
        await fixture.Database.ExecuteAsync($"DELETE FROM sign_in_failures WHERE user_id = '{id}'");
        using (var wrong = await Actors.PostFormAsync(session.Http, new Uri("/Account/TwoStep?handler=Off", UriKind.Relative), page,
            new() { ["Password"] = password, ["Code"] = fixture.Actors.WrongCode(key) }))
        {
            Assert.Equal(HttpStatusCode.OK, wrong.StatusCode);
            Assert.Contains("Code incorrect.", await wrong.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        Assert.True(await TwoFactorEnabledAsync(id));
        // Counted as at the code page: against this network, and in the account's day of wrong codes.
        Assert.Equal(2L, await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM sign_in_failures WHERE user_id = '{id}' AND failures = 1"));
        Assert.Equal(2L, await fixture.Database.ScalarAsync<long>(
            $"SELECT count(*) FROM audit_events WHERE action = '{AuditActions.TwoFactorDisabled}' AND outcome = 'denied' AND actor_kind = 'seeker'" +
            $" AND subject = '{PseudonymOf(id)}'"));

        // A recovery code does: off, the holder told, the other session over, and the password alone signs in again.
        page = await session.GetPageAsync(TwoStep.OriginalString);
        using (var off = await Actors.PostFormAsync(session.Http, new Uri("/Account/TwoStep?handler=Off", UriKind.Relative), page,
            new() { ["Password"] = password, ["Code"] = recovery[0] }))
        {
            Assert.Equal(HttpStatusCode.OK, off.StatusCode);
            Assert.Contains("La connexion en deux étapes est désactivée", await off.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        Assert.False(await TwoFactorEnabledAsync(id));
        Assert.Equal(0L, await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM \"AspNetUserTokens\" WHERE user_id = '{id}'"));
        Assert.Contains(await Mailbox.ForAsync(fixture.Factory, email), m => m.Subject == "La connexion en deux étapes a été désactivée sur votre compte");
        Assert.Equal(HttpStatusCode.OK, (await session.Http.GetAsync("/Cv")).StatusCode);
        Assert.Equal(HttpStatusCode.Redirect, (await other.Http.GetAsync("/Cv")).StatusCode);
        using (var again = new PageSession(fixture.Factory))
        {
            Assert.Equal("/", (await Actors.SubmitLoginAsync(again.Http, new Uri("/Account/Login", UriKind.Relative), email, password)).OriginalString);
        }

        // On again, then "forget me": the key, the last step and the recovery codes go with the account, and nothing names it.
        await fixture.Actors.EnrolAsync(session.Http, TwoStep, email, password);
        Assert.True(await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM \"AspNetUserTokens\" WHERE user_id = '{id}'") >= 3);
        var delete = await session.GetPageAsync("/Account/Delete");
        using (var erased = await Actors.PostFormAsync(session.Http, new Uri("/Account/Delete", UriKind.Relative), delete, new() { ["Confirm"] = "true" }))
        {
            Assert.Equal(HttpStatusCode.OK, erased.StatusCode);
        }

        Assert.Equal(0L, await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM \"AspNetUserTokens\" WHERE user_id = '{id}'"));
        Assert.Empty(await DatabaseScan.FindAsync(fixture.Database, id, email));
    }

    [Fact]
    public async Task AnOperatorResetsALostPhoneAndStaffWhoMustKeepItCannotTurnItOff()
    {
        var (session, email, password) = await PageSession.SignUpAsync(fixture.Factory);
        using var _ = session;
        var id = await IdOfAsync(email);

        // A seeker without the factor has nothing to reset.
        await using (var output = new StringWriter())
        {
            Assert.Equal(1, await StaffCommands.RunAsync(fixture.Factory.Services, ["staff", "reset-two-factor", email], output));
        }

        await fixture.Actors.EnrolAsync(session.Http, TwoStep, email, password);
        string newPassword;
        await using (var output = new StringWriter())
        {
            Assert.Equal(0, await StaffCommands.RunAsync(fixture.Factory.Services, ["staff", "reset-two-factor", email], output));
            var printed = System.Text.Json.JsonDocument.Parse(output.ToString()).RootElement;
            Assert.Contains("turn two-step sign-in on again", printed.GetProperty("twoFactor").GetString(), StringComparison.Ordinal);
            Assert.False(await TwoFactorEnabledAsync(id));
            // The session that was open is over (a new stamp).
            Assert.Equal(HttpStatusCode.Redirect, (await session.Http.GetAsync("/Cv")).StatusCode);
            // The link sets a new password and, the factor being off, signs the seeker in, with no enrolment forced on them.
            (newPassword, var signedIn) = await SetPasswordAsync(new Uri(printed.GetProperty("setPasswordLink").GetString()!));
            Assert.True(signedIn);
        }

        using (var back = new PageSession(fixture.Factory))
        {
            Assert.Equal("/", (await Actors.SubmitLoginAsync(back.Http, new Uri("/Account/Login", UriKind.Relative), email, newPassword)).OriginalString);
        }

        // An auditor, for whom the test hosts require the factor, sees it on and no way to turn it off; a posted form changes nothing.
        var auditor = await fixture.Actors.NewAuditorAsync();
        using var staff = new PageSession(fixture.Factory);
        await fixture.Actors.SecondFactorAsync(staff.Http, await Actors.SubmitLoginAsync(staff.Http, new Uri("/Account/Login", UriKind.Relative), auditor.Email, auditor.Password), auditor.Email);
        var page = await staff.GetPageAsync(TwoStep.OriginalString);
        Assert.Contains("doivent la garder", page, StringComparison.Ordinal);
        Assert.DoesNotContain("handler=Off", page, StringComparison.Ordinal);
        using (var refused = await Actors.PostFormAsync(staff.Http, new Uri("/Account/TwoStep?handler=Off", UriKind.Relative), page,
            new() { ["Password"] = auditor.Password, ["Code"] = fixture.Actors.NextCode(fixture.Actors.AuthenticatorOf(auditor.Email)) }))
        {
            Assert.Equal(HttpStatusCode.Redirect, refused.StatusCode);
        }

        Assert.True(await TwoFactorEnabledAsync(auditor.Id));
    }

    /// <summary>
    /// What a seeker's pages set up does not carry over into a staff role: an authenticator put on the account as a seeker
    /// (by its holder or by whoever else had the password) and the sessions opened with it. `staff grant` takes the factor
    /// and the password away; the holder sets a new password by the printed link and enrols at the first staff sign-in.
    /// </summary>
    [Fact]
    public async Task AFactorTurnedOnAsASeekerDoesNotCarryOverIntoAStaffRole()
    {
        var (session, email, password) = await PageSession.SignUpAsync(fixture.Factory);
        using var _ = session;
        var id = await IdOfAsync(email);
        await fixture.Actors.EnrolAsync(session.Http, TwoStep, email, password);
        Assert.True(await TwoFactorEnabledAsync(id));

        string link;
        await using (var output = new StringWriter())
        {
            Assert.Equal(0, await StaffCommands.RunAsync(fixture.Factory.Services, ["staff", "grant", email, Roles.Auditor], output));
            link = System.Text.Json.JsonDocument.Parse(output.ToString()).RootElement.GetProperty("setPasswordLink").GetString()!;
        }

        Assert.False(await TwoFactorEnabledAsync(id));
        Assert.Equal(0L, await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM \"AspNetUserTokens\" WHERE user_id = '{id}'"));
        // The session that carried both factors is over, and the old password opens nothing.
        Assert.Equal(HttpStatusCode.Redirect, (await session.Http.GetAsync("/Cv")).StatusCode);
        using (var old = new PageSession(fixture.Factory))
        using (var refused = await Actors.PostLoginFormAsync(old.Http, new Uri("/Account/Login", UriKind.Relative), email, password))
        {
            Assert.Equal(HttpStatusCode.OK, refused.StatusCode);
        }

        // The holder's new password leads to the staff enrolment, with a new key.
        var (newPassword, signedIn) = await SetPasswordAsync(new Uri(link));
        Assert.False(signedIn);
        using var browser = new PageSession(fixture.Factory);
        var next = await Actors.SubmitLoginAsync(browser.Http, new Uri("/Account/Login", UriKind.Relative), email, newPassword);
        Assert.StartsWith("/Account/EnrollTwoFactor", next.OriginalString, StringComparison.Ordinal);
    }

    /// <summary>
    /// The page lists the applications that can act for the seeker, and ends one's access at once: its refresh token is
    /// refused from then on, the page no longer lists it, and the log says which application it was.
    /// </summary>
    [Fact]
    public async Task AnApplicationsAccessIsListedAndEndedFromThePage()
    {
        var (session, email, password) = await PageSession.SignUpAsync(fixture.Factory);
        using var _ = session;
        var id = await IdOfAsync(email);
        Assert.Contains("Aucune application n’a accès à votre compte", WebUtility.HtmlDecode(await session.GetPageAsync(TwoStep.OriginalString)), StringComparison.Ordinal);

        // Two sign-ins of the same app are one row.
        var first = await fixture.Actors.SignInWithCodeFlowAsync(email, password, "openid offline_access " + ApiScopes.CvManage);
        var second = await fixture.Actors.SignInWithCodeFlowAsync(email, password, "openid offline_access " + ApiScopes.CvManage);
        var page = WebUtility.HtmlDecode(await session.GetPageAsync(TwoStep.OriginalString));
        Assert.Single(System.Text.RegularExpressions.Regex.Matches(page, "<td>Swagger UI</td>"));
        Assert.Contains("cv:manage", page, StringComparison.Ordinal);

        // Another seeker's sign-in with the same app is theirs, and stays.
        var (otherSession, otherEmail, otherPassword) = await PageSession.SignUpAsync(fixture.Factory);
        otherSession.Dispose();
        var others = await fixture.Actors.SignInWithCodeFlowAsync(otherEmail, otherPassword, "openid offline_access " + ApiScopes.CvManage);

        using (var ended = await Actors.PostFormAsync(session.Http, new Uri("/Account/TwoStep?handler=Revoke", UriKind.Relative), page,
            new() { ["ClientId"] = ClientRegistrations.SwaggerClientId }))
        {
            Assert.Equal(HttpStatusCode.Redirect, ended.StatusCode);
            var answer = WebUtility.HtmlDecode(await session.GetPageAsync(PathOf(ended.Headers.Location!)));
            Assert.Contains("Swagger UI n’a plus accès à votre compte.", answer, StringComparison.Ordinal);
            Assert.Contains("Aucune application n’a accès à votre compte", answer, StringComparison.Ordinal);
        }

        foreach (var refresh in new[] { first.RefreshToken!, second.RefreshToken! })
        {
            using var refused = await fixture.Actors.RequestRefreshAsync(refresh);
            Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
            Assert.Contains("invalid_grant", await refused.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        // The tokens themselves are revoked too, not only what they hang on.
        Assert.Equal(0L, await fixture.Database.ScalarAsync<long>(
            $"SELECT count(*) FROM \"OpenIddictTokens\" WHERE subject = '{id}' AND status = 'valid'"));
        using (var theirs = await fixture.Actors.RequestRefreshAsync(others.RefreshToken!))
        {
            Assert.Equal(HttpStatusCode.OK, theirs.StatusCode);
        }

        // The seeker's own session goes on; the log names the application, and the seeker by pseudonym.
        Assert.Equal(HttpStatusCode.OK, (await session.Http.GetAsync("/Cv")).StatusCode);
        Assert.Equal(1L, await fixture.Database.ScalarAsync<long>(
            $"SELECT count(*) FROM audit_events WHERE action = '{AuditActions.AppAccessRevoked}' AND subject = '{PseudonymOf(id)}'" +
            $" AND details::json->>'client' = '{ClientRegistrations.SwaggerClientId}'"));

        // A client id the account has not authorized changes nothing.
        var third = await fixture.Actors.SignInWithCodeFlowAsync(email, password, "openid offline_access " + ApiScopes.CvManage);
        using (var other = await Actors.PostFormAsync(session.Http, new Uri("/Account/TwoStep?handler=Revoke", UriKind.Relative),
            await session.GetPageAsync(TwoStep.OriginalString), new() { ["ClientId"] = "demo-jobsite" }))
        {
            Assert.Equal(HttpStatusCode.Redirect, other.StatusCode);
        }

        using (var still = await fixture.Actors.RequestRefreshAsync(third.RefreshToken!))
        {
            Assert.Equal(HttpStatusCode.OK, still.StatusCode);
        }
    }

    /// <summary>
    /// Every sign-in leaves an authorization that stays valid for two weeks; one whose tokens have all expired can do
    /// nothing, and the page does not list it as an application with access.
    /// </summary>
    [Fact]
    public async Task ASignInWhoseTokensHaveExpiredIsNotListed()
    {
        var (session, email, password) = await PageSession.SignUpAsync(fixture.Factory);
        using var _ = session;
        await fixture.Actors.SignInWithCodeFlowAsync(email, password, "openid " + ApiScopes.CvManage);
        Assert.Contains("<td>Swagger UI</td>", await session.GetPageAsync(TwoStep.OriginalString), StringComparison.Ordinal);
        // Past the access token's life (ten minutes), with no refresh token asked for.
        fixture.Time.Advance(TimeSpan.FromMinutes(11));
        Assert.Contains("Aucune application n’a accès à votre compte", WebUtility.HtmlDecode(await session.GetPageAsync(TwoStep.OriginalString)), StringComparison.Ordinal);
    }

    /// <summary>
    /// Promise 4 on the one log line the second factor writes about an account (its key can no longer be read): now that
    /// job seekers have a factor too, it names the account by pseudonym, never by account id or address.
    /// </summary>
    [Fact]
    public async Task AnUnreadableKeyIsLoggedByPseudonymOnly()
    {
        await using var database = await TestDatabase.CreateAsync();
        await using var node = new GatewayFactory(database, new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow), captureLogs: true);
        var actors = new Actors(node);
        var (session, email, password) = await PageSession.SignUpAsync(node);
        using var _ = session;
        var id = await database.ScalarAsync<string>($"SELECT id FROM \"AspNetUsers\" WHERE normalized_email = '{email.ToUpperInvariant()}'");
        await actors.EnrolAsync(session.Http, TwoStep, email, password);
        await database.ExecuteAsync($"UPDATE \"AspNetUserTokens\" SET value = 'not-a-protected-key' WHERE user_id = '{id}' AND name = 'TotpKey'");

        using var browser = new PageSession(node);
        var codePage = await Actors.SubmitLoginAsync(browser.Http, new Uri("/Account/Login", UriKind.Relative), email, password);
        using (var refused = await Actors.PostFormAsync(browser.Http, codePage, await browser.GetPageAsync(codePage.OriginalString),
            new() { ["Code"] = actors.CodesNear(actors.AuthenticatorOf(email)).First() }))
        {
            Assert.Equal(HttpStatusCode.OK, refused.StatusCode);
        }

        var pseudonym = node.Services.GetRequiredService<Pseudonyms>().Of(id);
        Assert.Contains(node.Logs!, line => line.Contains("cannot be read", StringComparison.Ordinal) && line.Contains(pseudonym, StringComparison.Ordinal));
        Assert.DoesNotContain(node.Logs!, line => line.Contains(id, StringComparison.Ordinal) || line.Contains(email, StringComparison.OrdinalIgnoreCase));
    }

    /// <summary>Sets a new password by a set-password or reset link; returns it, and whether that browser came out signed in.</summary>
    private async Task<(string Password, bool SignedIn)> SetPasswordAsync(Uri link)
    {
        var password = "Seeker-Password-8" + Guid.NewGuid().ToString("N")[..6] + "!";
        var query = System.Web.HttpUtility.ParseQueryString(link.Query);
        using var browser = new PageSession(fixture.Factory);
        using var set = await browser.SubmitAsync(link.PathAndQuery, new()
        {
            ["user"] = query["user"]!, ["Code"] = query["code"]!, ["Password"] = password, ["ConfirmPassword"] = password,
        });
        Assert.True(set.StatusCode is HttpStatusCode.OK or HttpStatusCode.Redirect, $"setting the password answered {(int)set.StatusCode}");
        using var cv = await browser.Http.GetAsync("/Cv");
        return (password, cv.StatusCode == HttpStatusCode.OK);
    }

    private static Cookie? DeviceCookie(PageSession session) =>
        session.Cookies.GetCookies(new Uri(session.Http.BaseAddress!, "/Account/Login"))[SignInThrottle.DeviceCookie];

    private string PseudonymOf(string id) => fixture.Factory.Services.GetRequiredService<Pseudonyms>().Of(id);

    private static string PathOf(Uri location) => location.IsAbsoluteUri ? location.PathAndQuery : location.OriginalString;

    /// <summary>
    /// Promise 4 in a race: "forget me" pressed in one tab while the form that turns the factor on is posted in another.
    /// The form takes its turn on the account row, which the erasure holds for update: it waits, finds the account gone,
    /// and the session ends at the sign-in page. It used to insert the factor's rows for the deleted account: a 500, and
    /// the erased id in PostgreSQL's own log (a foreign-key failure names the key).
    /// </summary>
    [Fact]
    public async Task TurningItOnWhileTheAccountIsErasedEndsTheSessionAndWritesNothing()
    {
        var (session, email, password) = await PageSession.SignUpAsync(fixture.Factory);
        using var _ = session;
        var id = await IdOfAsync(email);
        var page = await session.GetPageAsync(TwoStep.OriginalString);
        var code = fixture.Actors.CodesNear(Actors.KeyShown(page)).First();

        Task<HttpResponseMessage> posting;
        await using (var erasure = await HeldTransaction.BeginAsync(fixture.Database))
        {
            Assert.Equal(1, await erasure.ScalarAsync<int>($"SELECT 1 FROM \"AspNetUsers\" WHERE id = '{id}' FOR UPDATE"));
            posting = Actors.PostFormAsync(session.Http, TwoStep, page, new() { ["Password"] = password, ["Code"] = code });
            await HeldTransaction.WaitForWaiterAsync(fixture.Database, "transactionid", "tuple");
            await erasure.ExecuteAsync($"DELETE FROM \"AspNetUsers\" WHERE id = '{id}'");
            await erasure.CommitAsync();
        }

        using var response = await posting;
        Assert.Equal(HttpStatusCode.Redirect, response.StatusCode);
        Assert.Equal("/Account/Login", response.Headers.Location?.OriginalString);
        Assert.Empty(await DatabaseScan.FindAsync(fixture.Database, id, email));
    }

    private Task<string> IdOfAsync(string email) =>
        fixture.Database.ScalarAsync<string>($"SELECT id FROM \"AspNetUsers\" WHERE normalized_email = '{email.ToUpperInvariant()}'");

    private async Task<bool> TwoFactorEnabledAsync(string id) =>
        await fixture.Database.ScalarAsync<bool>($"SELECT two_factor_enabled FROM \"AspNetUsers\" WHERE id = '{id}'");
}
