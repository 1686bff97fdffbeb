using System.Net;
using System.Net.Http.Json;
using System.Text.RegularExpressions;
using ExchangeGateway.Audit;
using ExchangeGateway.Auth;
using ExchangeGateway.Tests.Infrastructure;
using ExchangeGateway.Tests.Pages;
using Microsoft.AspNetCore.Identity;
using Microsoft.Extensions.DependencyInjection;

namespace ExchangeGateway.Tests.Auth;

/// <summary>
/// Operators and auditors give a one-time code besides their password (the test hosts require it, as production does):
/// they add an authenticator at their first sign-in, a password alone opens nothing, a code is good once, wrong codes
/// count with wrong passwords, and a lost authenticator is reset from the shell.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed partial class StaffTwoFactorTests(GatewayFixture fixture)
{
    private const string AdminScope = "openid offline_access " + ApiScopes.RecipientsAdmin;

    [Theory]
    // RFC 6238, appendix B (SHA-1 key), the last six of its eight digits.
    [InlineData(59L, "287082")]
    [InlineData(1111111109L, "081804")]
    [InlineData(1234567890L, "005924")]
    [InlineData(2000000000L, "279037")]
    public void CodesAreThoseOfRfc6238(long unixTime, string code) =>
        Assert.Equal(code, SecondFactor.Code("12345678901234567890"u8.ToArray(), unixTime / 30));

    [Fact]
    public void KeysAreBase32()
    {
        Assert.Equal("foobar"u8.ToArray(), SecondFactor.Base32.Decode("MZXW6YTBOI======"));
        Assert.Equal("foobar"u8.ToArray(), SecondFactor.Base32.Decode("mzxw6ytboi"));
        Assert.Throws<FormatException>(() => SecondFactor.Base32.Decode("MZXW1"));
        Assert.Equal("MZXW6YTBOI", SecondFactor.Base32.Encode("foobar"u8.ToArray()));
        var key = System.Security.Cryptography.RandomNumberGenerator.GetBytes(20);
        Assert.Equal(key, SecondFactor.Base32.Decode(SecondFactor.Base32.Encode(key)));
    }

    [Fact]
    public async Task AnOperatorAddsAnAuthenticatorAtTheFirstSignInAndAPasswordAloneOpensNothing()
    {
        var (email, password, id) = await NewStaffAsync(Roles.Operator);
        using var browser = new PageSession(fixture.Factory);
        var (verifier, challenge) = PageSession.Pkce();
        var authorize = fixture.Actors.AuthorizeUrl(AdminScope, challenge);
        using var toLogin = await browser.Http.GetAsync(authorize);
        var enrol = await Actors.SubmitLoginAsync(browser.Http, toLogin.Headers.Location!, email, password);
        Assert.StartsWith("/Account/EnrollTwoFactor", enrol.OriginalString, StringComparison.Ordinal);
        var cookies = browser.Cookies.GetCookies(fixture.Factory.BaseAddress).Select(c => c.Name).ToList();
        Assert.DoesNotContain("eg.session", cookies);
        Assert.Contains("eg.two-factor", cookies);

        // The right password gave no session: the authorization asks for a sign-in, the dashboard stays shut.
        using (var again = await browser.Http.GetAsync(authorize))
        {
            Assert.StartsWith("/Account/Login", PathOf(again.Headers.Location!), StringComparison.Ordinal);
        }

        using (var dashboard = await browser.Http.GetAsync("/hangfire"))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, dashboard.StatusCode);
        }

        var page = await browser.GetPageAsync(enrol.OriginalString);
        var key = Actors.AuthenticatorKeyField().Match(page).Groups[1].Value.Replace(" ", "", StringComparison.Ordinal).ToUpperInvariant();
        Assert.Equal(32, key.Length);
        Assert.Contains($"otpauth://totp/ExchangeGateway:{Uri.EscapeDataString(email)}?secret={key}", WebUtility.HtmlDecode(page), StringComparison.Ordinal);

        // A wrong code turns nothing on.
        using (var wrong = await Actors.PostFormAsync(browser.Http, enrol, page, new() { ["Code"] = fixture.Actors.WrongCode(key) }))
        {
            Assert.Equal(HttpStatusCode.OK, wrong.StatusCode);
            Assert.Contains("Code incorrect.", await wrong.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        Assert.False(await TwoFactorEnabledAsync(id));

        // The right one does, hands out ten recovery codes once, and opens the session the authorization was waiting for.
        using var done = await Actors.PostFormAsync(browser.Http, enrol, page, new() { ["Code"] = fixture.Actors.NextCode(key) });
        var shown = await done.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.OK, done.StatusCode);
        Assert.Equal(SecondFactor.RecoveryCodes, Actors.RecoveryCodeShown().Count(shown));
        Assert.True(await TwoFactorEnabledAsync(id));
        // The holder hears of it by mail, in case it was not them.
        Assert.Contains(await Mailbox.ForAsync(fixture.Factory, email), m => m.Subject == "Un second facteur a été ajouté à votre compte");
        using var onward = await browser.Http.GetAsync(WebUtility.HtmlDecode(Actors.ContinueLink().Match(shown).Groups[1].Value));
        Assert.Equal(HttpStatusCode.Redirect, onward.StatusCode);
        Assert.Contains("code=", onward.Headers.Location!.Query, StringComparison.Ordinal);

        // Enrolled, the page does not offer a new key to someone who has only the password: it asks for the code.
        using var other = new PageSession(fixture.Factory);
        Assert.StartsWith("/Account/TwoFactor", (await Actors.SubmitLoginAsync(other.Http, new Uri("/Account/Login", UriKind.Relative), email, password)).OriginalString, StringComparison.Ordinal);
        using (var enrolAgain = await other.Http.GetAsync("/Account/EnrollTwoFactor"))
        {
            Assert.StartsWith("/Account/TwoFactor", PathOf(enrolAgain.Headers.Location!), StringComparison.Ordinal);
        }

        // The password, then the factor turned on with the first code, then the password of the second browser; each step
        // says which factor it was.
        Assert.Equal(
            [$"{AuditActions.PasswordAccepted} password", $"{AuditActions.TwoFactorEnabled} ", $"{AuditActions.SignIn} code", $"{AuditActions.PasswordAccepted} password"],
            await fixture.Database.ScalarAsync<string[]>(
                $"SELECT array_agg(action || ' ' || coalesce(details::json->>'factor', '') ORDER BY sequence) FROM audit_events WHERE actor_id = '{id}' AND outcome = 'success'"));
    }

    [Fact]
    public async Task ACodeIsGoodOnceAndARecoveryCodeToo()
    {
        var (email, password, _) = await NewStaffAsync(Roles.Auditor);
        var recovery = await EnrolAsync(email, password);
        var key = fixture.Actors.AuthenticatorOf(email);

        // The code that was just used, again (the same time step): refused. The next step's: accepted.
        var used = Actors.LastCode(key);
        using (var replay = new PageSession(fixture.Factory))
        {
            var codePage = await Actors.SubmitLoginAsync(replay.Http, new Uri("/Account/Login", UriKind.Relative), email, password);
            using var refused = await Actors.PostFormAsync(replay.Http, codePage, await replay.GetPageAsync(codePage.OriginalString), new() { ["Code"] = used });
            Assert.Equal(HttpStatusCode.OK, refused.StatusCode);
            using var accepted = await Actors.PostFormAsync(replay.Http, codePage, await replay.GetPageAsync(codePage.OriginalString), new() { ["Code"] = fixture.Actors.NextCode(key) });
            Assert.Equal(HttpStatusCode.Redirect, accepted.StatusCode);
        }

        // A recovery code (as shown, with its hyphen) signs in once.
        for (var attempt = 0; attempt < 2; attempt++)
        {
            using var session = new PageSession(fixture.Factory);
            var codePage = await Actors.SubmitLoginAsync(session.Http, new Uri("/Account/Login", UriKind.Relative), email, password);
            using var answer = await Actors.PostFormAsync(session.Http, codePage, await session.GetPageAsync(codePage.OriginalString), new() { ["Code"] = recovery[0] });
            Assert.Equal(attempt == 0 ? HttpStatusCode.Redirect : HttpStatusCode.OK, answer.StatusCode);
        }
    }

    [Fact]
    public async Task WrongCodesCountWithWrongPasswordsAndThenEvenTheRightCodeIsRefused()
    {
        var (email, password, id) = await NewStaffAsync(Roles.Operator);
        await EnrolAsync(email, password);
        var key = fixture.Actors.AuthenticatorOf(email);
        using var session = new PageSession(fixture.Factory);
        var codePage = await Actors.SubmitLoginAsync(session.Http, new Uri("/Account/Login", UriKind.Relative), email, password);
        var wrong = fixture.Actors.WrongCode(key);
        for (var i = 0; i < 5; i++)
        {
            using var refused = await Actors.PostFormAsync(session.Http, codePage, await session.GetPageAsync(codePage.OriginalString), new() { ["Code"] = wrong });
            Assert.Equal(HttpStatusCode.OK, refused.StatusCode);
        }

        // The password is still right, and gets the code page, but this network has spent its guesses on the account.
        using var stillRefused = await Actors.PostFormAsync(session.Http, codePage, await session.GetPageAsync(codePage.OriginalString), new() { ["Code"] = fixture.Actors.NextCode(key) });
        Assert.Equal(HttpStatusCode.OK, stillRefused.StatusCode);
        Assert.Equal(6, await fixture.Database.ScalarAsync<long>(
            $"SELECT count(*) FROM audit_events WHERE action = '{AuditActions.SignIn}' AND actor_id = '{id}' AND outcome = 'denied'"));
    }

    [Fact]
    public async Task AStaffSessionOpenedWithAPasswordAloneIsAskedForTheCodeWhereTheSecondFactorIsRequired()
    {
        var (email, password, _) = await NewStaffAsync(Roles.Operator);
        // A node of a deployment that did not require it (as Development does not): the password opens a session.
        await using var lenient = new GatewayFactory(fixture.Database, fixture.Time, issuer: fixture.Factory.Issuer,
            settings: new Dictionary<string, string?> { ["Auth:RequireStaffTwoFactor"] = "false" });
        var cookies = new CookieContainer();
        using (var before = lenient.CreateHttpClient(cookies))
        {
            Assert.Equal("/hangfire", (await Actors.SubmitLoginAsync(before, new Uri("/Account/Login?ReturnUrl=%2Fhangfire", UriKind.Relative), email, password)).OriginalString);
            using var dashboard = await before.GetAsync("/hangfire");
            Assert.Equal(HttpStatusCode.OK, dashboard.StatusCode);
        }

        // The same session cookie, on a node that requires the second factor: no dashboard, no staff scopes without a sign-in.
        cookies.Add(fixture.Factory.BaseAddress, cookies.GetCookies(lenient.BaseAddress));
        using var after = fixture.Factory.CreateHttpClient(cookies);
        // The strict node reads the session (it shows the sign-out button), it only does not let it act for staff.
        Assert.Contains("action=\"/Account/Logout\"", await after.GetStringAsync("/"), StringComparison.Ordinal);
        using (var dashboard = await after.GetAsync("/hangfire"))
        {
            Assert.Equal(HttpStatusCode.Forbidden, dashboard.StatusCode);
        }

        var (_, challenge) = PageSession.Pkce();
        using var authorize = await after.GetAsync(fixture.Actors.AuthorizeUrl(AdminScope, challenge));
        Assert.StartsWith("/Account/Login", PathOf(authorize.Headers.Location!), StringComparison.Ordinal);

        // Nor is a refresh token from such a sign-in renewed there (the lenient node itself renews it).
        var tokens = await new Actors(lenient).SignInWithCodeFlowAsync(email, password, AdminScope);
        using (var renewed = await new Actors(lenient).RequestRefreshAsync(tokens.RefreshToken!))
        {
            Assert.Equal(HttpStatusCode.OK, renewed.StatusCode);
        }

        using var refused = await fixture.Actors.RequestRefreshAsync((await new Actors(lenient).SignInWithCodeFlowAsync(email, password, AdminScope)).RefreshToken!);
        Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        Assert.Contains("second factor", await refused.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }


    [Fact]
    public async Task ALostAuthenticatorIsResetFromTheShellAndTheNextSignInAddsANewOne()
    {
        var (email, password, id) = await NewStaffAsync(Roles.Auditor);
        await EnrolAsync(email, password);
        var oldKey = fixture.Actors.AuthenticatorOf(email);
        var tokens = await fixture.Actors.SignInWithCodeFlowAsync(email, password, "openid offline_access " + ApiScopes.AuditRead);
        using var waiting = new PageSession(fixture.Factory);
        var codePage = await Actors.SubmitLoginAsync(waiting.Http, new Uri("/Account/Login", UriKind.Relative), email, password);
        var codeForm = await waiting.GetPageAsync(codePage.OriginalString);

        var newPassword = await ResetTwoFactorAsync(email);
        Assert.False(await TwoFactorEnabledAsync(id));

        // A code page waiting in a browser ends with it (the old key's code included).
        using (var stale = await Actors.PostFormAsync(waiting.Http, codePage, codeForm, new() { ["Code"] = SecondFactor.Code(SecondFactor.Base32.Decode(oldKey), fixture.Time.GetUtcNow().ToUnixTimeSeconds() / 30 + 1) }))
        {
            Assert.Equal(HttpStatusCode.Redirect, stale.StatusCode);
            Assert.StartsWith("/Account/Login", PathOf(stale.Headers.Location!), StringComparison.Ordinal);
        }

        // Its refresh tokens are revoked; the next sign-in goes through the enrolment again, with a new key.
        using (var refresh = await fixture.Actors.RequestRefreshAsync(tokens.RefreshToken!))
        {
            Assert.Equal(HttpStatusCode.BadRequest, refresh.StatusCode);
        }

        // Whoever knew the old password cannot be the one to add the new authenticator: the password went with the reset.
        using (var old = new PageSession(fixture.Factory))
        using (var refusedPassword = await Actors.PostLoginFormAsync(old.Http, new Uri("/Account/Login", UriKind.Relative), email, password))
        {
            Assert.Equal(HttpStatusCode.OK, refusedPassword.StatusCode);
        }

        await EnrolAsync(email, newPassword);
        Assert.NotEqual(oldKey, fixture.Actors.AuthenticatorOf(email));
        Assert.Equal(1, await fixture.Database.ScalarAsync<long>(
            $"SELECT count(*) FROM audit_events WHERE action = '{AuditActions.TwoFactorReset}' AND details LIKE '%{id}%'"));

        // A seeker has none to reset.
        var seeker = await fixture.Actors.NewSeekerAsync();
        Assert.Equal(1, await StaffCommands.RunAsync(fixture.Factory.Services, ["staff", "reset-two-factor", seeker.Email], new StringWriter()));
    }

    /// <summary>
    /// Someone with the password alone who opens the enrolment first sees a key that is never stored: the holder's own
    /// enrolment makes another, and codes from the first open nothing.
    /// </summary>
    [Fact]
    public async Task AKeyShownToSomeoneWithThePasswordAloneNeverBecomesTheAccounts()
    {
        var (email, password, _) = await NewStaffAsync(Roles.Operator);
        using var intruder = new PageSession(fixture.Factory);
        var intruderEnrol = await Actors.SubmitLoginAsync(intruder.Http, new Uri("/Account/Login", UriKind.Relative), email, password);
        var intruderPage = await intruder.GetPageAsync(intruderEnrol.OriginalString);
        var seen = Actors.KeyShown(intruderPage);

        await EnrolAsync(email, password);
        Assert.NotEqual(seen, fixture.Actors.AuthenticatorOf(email));

        using (var again = new PageSession(fixture.Factory))
        {
            var codePage = await Actors.SubmitLoginAsync(again.Http, new Uri("/Account/Login", UriKind.Relative), email, password);
            Assert.StartsWith("/Account/TwoFactor", codePage.OriginalString, StringComparison.Ordinal);
            using var refused = await Actors.PostFormAsync(again.Http, codePage, await again.GetPageAsync(codePage.OriginalString), new() { ["Code"] = fixture.Actors.NextCode(seen) });
            Assert.Equal(HttpStatusCode.OK, refused.StatusCode);
        }

        // The intruder's form, answered with its own key's code, turns nothing on either: the account changed since.
        using var late = await Actors.PostFormAsync(intruder.Http, intruderEnrol, intruderPage, new() { ["Code"] = fixture.Actors.NextCode(seen) });
        Assert.Equal(HttpStatusCode.Redirect, late.StatusCode);
        Assert.StartsWith("/Account/Login", PathOf(late.Headers.Location!), StringComparison.Ordinal);
    }

    /// <summary>The QR code on the enrolment page is the otpauth URI the page writes out, read back by another library's decoder.</summary>
    [Fact]
    public async Task TheEnrolmentPagesQrCodeReadsAsTheAuthenticatorUri()
    {
        var (email, password, _) = await NewStaffAsync(Roles.Auditor);
        using var browser = new PageSession(fixture.Factory);
        var enrol = await Actors.SubmitLoginAsync(browser.Http, new Uri("/Account/Login", UriKind.Relative), email, password);
        var page = await browser.GetPageAsync(enrol.OriginalString);
        var uri = WebUtility.HtmlDecode(AuthenticatorUriField().Match(page).Groups[1].Value);
        Assert.StartsWith($"otpauth://totp/ExchangeGateway:{Uri.EscapeDataString(email)}?secret={Actors.KeyShown(page)}&", uri, StringComparison.Ordinal);

        var svg = QrSvg().Match(page);
        Assert.True(svg.Success, "no QR code on the enrolment page");
        var side = int.Parse(svg.Groups["size"].Value, System.Globalization.CultureInfo.InvariantCulture);
        var dark = new bool[side, side];
        foreach (Match run in QrRun().Matches(svg.Groups["path"].Value))
        {
            var (x, y, length) = (int.Parse(run.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture), int.Parse(run.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture), int.Parse(run.Groups[3].Value, System.Globalization.CultureInfo.InvariantCulture));
            for (var i = 0; i < length; i++)
            {
                dark[x + i, y] = true;
            }
        }

        // The symbol without its quiet zone: from the first dark module to the last, the finder patterns at its corners.
        var cells = Enumerable.Range(0, side).SelectMany(x => Enumerable.Range(0, side).Where(y => dark[x, y]).Select(y => (x, y))).ToList();
        var (left, top) = (cells.Min(c => c.x), cells.Min(c => c.y));
        var width = cells.Max(c => c.x) - left + 1;
        Assert.Equal(width, cells.Max(c => c.y) - top + 1);
        var symbol = new ZXing.Common.BitMatrix(width, width);
        foreach (var (x, y) in cells)
        {
            symbol[x - left, y - top] = true;
        }

        Assert.Equal(uri, new ZXing.QrCode.Internal.Decoder().decode(symbol, null).Text);
    }

    /// <summary>
    /// An enrolment form left open longer than fifteen minutes (on the gateway's clock) is not taken, even from a browser
    /// whose password is fresh again: the page gives a new key, and only that one turns the factor on.
    /// </summary>
    [Fact]
    public async Task AnEnrolmentFormOlderThanFifteenMinutesGivesANewKey()
    {
        var (email, password, id) = await NewStaffAsync(Roles.Operator);
        using var browser = new PageSession(fixture.Factory);
        var enrol = await Actors.SubmitLoginAsync(browser.Http, new Uri("/Account/Login", UriKind.Relative), email, password);
        var oldPage = await browser.GetPageAsync(enrol.OriginalString);
        var oldKey = Actors.KeyShown(oldPage);

        // Past the fifteen minutes the password itself is forgotten too: sign in again.
        fixture.Time.Advance(SecondFactor.Pending + TimeSpan.FromSeconds(1));
        using (var stale = await Actors.PostFormAsync(browser.Http, enrol, oldPage, new() { ["Code"] = fixture.Actors.NextCode(oldKey) }))
        {
            Assert.Equal(HttpStatusCode.Redirect, stale.StatusCode);
            Assert.StartsWith("/Account/Login", PathOf(stale.Headers.Location!), StringComparison.Ordinal);
        }

        Assert.StartsWith("/Account/EnrollTwoFactor", (await Actors.SubmitLoginAsync(browser.Http, new Uri("/Account/Login", UriKind.Relative), email, password)).OriginalString, StringComparison.Ordinal);
        using var expired = await Actors.PostFormAsync(browser.Http, enrol, oldPage, new() { ["Code"] = fixture.Actors.NextCode(oldKey) });
        var newPage = await expired.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.OK, expired.StatusCode);
        Assert.Contains("Ce formulaire a expiré", WebUtility.HtmlDecode(newPage), StringComparison.Ordinal);
        Assert.False(await TwoFactorEnabledAsync(id));
        var newKey = Actors.KeyShown(newPage);
        Assert.NotEqual(oldKey, newKey);

        using var done = await Actors.PostFormAsync(browser.Http, enrol, newPage, new() { ["Code"] = fixture.Actors.NextCode(newKey) });
        Assert.Equal(SecondFactor.RecoveryCodes, Actors.RecoveryCodeShown().Count(await done.Content.ReadAsStringAsync()));
        Assert.True(await TwoFactorEnabledAsync(id));
    }

    [GeneratedRegex("id=\"authenticator-uri\">([^<]+)<")]
    private static partial Regex AuthenticatorUriField();

    [GeneratedRegex("<svg id=\"authenticator-qr\"[^>]*viewBox=\"0 0 (?<size>\\d+) \\d+\"[\\s\\S]*?<path d=\"(?<path>[^\"]*)\"")]
    private static partial Regex QrSvg();

    [GeneratedRegex("M(\\d+),(\\d+)h(\\d+)v1h-\\d+z")]
    private static partial Regex QrRun();

    /// <summary>Two browsers that both know the password send the same code at the same moment: one session, not two.</summary>
    [Fact]
    public async Task OneCodeSentTwiceAtOnceOpensOneSession()
    {
        var (email, password, _) = await NewStaffAsync(Roles.Operator);
        await EnrolAsync(email, password);
        var key = fixture.Actors.AuthenticatorOf(email);
        using var first = new PageSession(fixture.Factory);
        using var second = new PageSession(fixture.Factory);
        var pages = new List<(PageSession Session, Uri Url, string Page)>();
        foreach (var session in new[] { first, second })
        {
            var codePage = await Actors.SubmitLoginAsync(session.Http, new Uri("/Account/Login", UriKind.Relative), email, password);
            pages.Add((session, codePage, await session.GetPageAsync(codePage.OriginalString)));
        }

        var code = fixture.Actors.NextCode(key);
        var answers = await Task.WhenAll(pages.Select(p => Actors.PostFormAsync(p.Session.Http, p.Url, p.Page, new() { ["Code"] = code })));
        Assert.Equal([HttpStatusCode.OK, HttpStatusCode.Redirect], answers.Select(a => a.StatusCode).Order());
        foreach (var answer in answers)
        {
            answer.Dispose();
        }
    }

    [Fact]
    public async Task ACodeTwoStepsAwayIsRefused()
    {
        var (email, password, _) = await NewStaffAsync(Roles.Auditor);
        await EnrolAsync(email, password);
        var secret = SecondFactor.Base32.Decode(fixture.Actors.AuthenticatorOf(email));
        var now = fixture.Time.GetUtcNow().ToUnixTimeSeconds() / 30;
        using var session = new PageSession(fixture.Factory);
        var codePage = await Actors.SubmitLoginAsync(session.Http, new Uri("/Account/Login", UriKind.Relative), email, password);
        foreach (var step in new[] { now + 2, now - 2 })
        {
            using var refused = await Actors.PostFormAsync(session.Http, codePage, await session.GetPageAsync(codePage.OriginalString), new() { ["Code"] = SecondFactor.Code(secret, step) });
            Assert.Equal(HttpStatusCode.OK, refused.StatusCode);
        }
    }

    /// <summary>
    /// A guess at the code from each of ten networks stays under every network's allowance, but not under the account's
    /// day of wrong codes: then not even the right code is checked, from anywhere, and a new password does not start the
    /// day again; only a reset of the factor does.
    /// </summary>
    [Fact]
    public async Task TheDaysWrongCodesStopEveryNetworkUntilTheFactorIsReset()
    {
        var (email, password, id) = await NewStaffAsync(Roles.Operator);
        await EnrolAsync(email, password);
        var key = fixture.Actors.AuthenticatorOf(email);
        for (var network = 1; network <= 10; network++)
        {
            using var guesser = new PageSession(fixture.Factory);
            using var signedIn = await Actors.PostLoginFormAsync(guesser.Http, new Uri("/Account/Login", UriKind.Relative), email, password, $"198.51.100.{network}");
            var codePage = signedIn.Headers.Location!;
            using var wrong = await Actors.PostFormAsync(guesser.Http, codePage, await guesser.GetPageAsync(codePage.OriginalString),
                new() { ["Code"] = fixture.Actors.WrongCode(key) }, $"198.51.100.{network}");
            Assert.Equal(HttpStatusCode.OK, wrong.StatusCode);
        }

        await using (var scope = fixture.Factory.Services.CreateAsyncScope())
        {
            // What a password reset does to the counts.
            await SignInThrottle.ForgetAsync(scope.ServiceProvider.GetRequiredService<ExchangeGateway.Data.GatewayDbContext>(), id, CancellationToken.None);
        }

        using (var holder = new PageSession(fixture.Factory))
        {
            var codePage = await Actors.SubmitLoginAsync(holder.Http, new Uri("/Account/Login", UriKind.Relative), email, password);
            using var refused = await Actors.PostFormAsync(holder.Http, codePage, await holder.GetPageAsync(codePage.OriginalString), new() { ["Code"] = fixture.Actors.NextCode(key) });
            Assert.Equal(HttpStatusCode.OK, refused.StatusCode);
        }

        var newPassword = await ResetTwoFactorAsync(email);
        await EnrolAsync(email, newPassword);
    }

    /// <summary>
    /// A staff account granted from the shell has no password until its link is used; a sign-up with its address mails a
    /// confirmation link instead, which sets a password too. That proves the mailbox, one factor's worth: the staff
    /// member still adds an authenticator before any session.
    /// </summary>
    [Fact]
    public async Task AStaffAddressConfirmedThroughTheSignUpLinkStillAddsItsSecondFactor()
    {
        var email = $"granted-{Guid.NewGuid():N}@example.test";
        Assert.Equal(0, await StaffCommands.RunAsync(fixture.Factory.Services, ["staff", "grant", email, Roles.Operator], new StringWriter()));
        using var browser = new PageSession(fixture.Factory);
        using (var signUp = await browser.SubmitAsync("/Account/Register", new() { ["Email"] = email }))
        {
            Assert.Equal(HttpStatusCode.OK, signUp.StatusCode);
        }

        var link = Mailbox.LinkTo((await Mailbox.ForAsync(fixture.Factory, email)).Last(), "ConfirmEmail");
        Assert.NotNull(link);
        using var confirmed = await browser.ConfirmAsync(link, "Staff-Password-5" + Guid.NewGuid().ToString("N")[..6] + "!");
        Assert.Equal(HttpStatusCode.Redirect, confirmed.StatusCode);
        Assert.StartsWith("/Account/EnrollTwoFactor", PathOf(confirmed.Headers.Location!), StringComparison.Ordinal);
        using var dashboard = await browser.Http.GetAsync("/hangfire");
        Assert.Equal(HttpStatusCode.Unauthorized, dashboard.StatusCode);
    }

    /// <summary>
    /// A job seeker's account made an operator keeps no password it had: someone else who knows it must not be the one to
    /// add the authenticator at the first staff sign-in. The holder sets a new one by the printed link.
    /// </summary>
    [Fact]
    public async Task AnAccountMadeStaffWithAPasswordOfItsOwnSetsANewOneByTheLinkFirst()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        await using var output = new StringWriter();
        Assert.Equal(0, await StaffCommands.RunAsync(fixture.Factory.Services, ["staff", "grant", seeker.Email, Roles.Operator], output));
        var link = System.Text.Json.JsonDocument.Parse(output.ToString()).RootElement.GetProperty("setPasswordLink").GetString();
        Assert.NotNull(link);
        using (var old = new PageSession(fixture.Factory))
        using (var refused = await Actors.PostLoginFormAsync(old.Http, new Uri("/Account/Login", UriKind.Relative), seeker.Email, seeker.Password))
        {
            Assert.Equal(HttpStatusCode.OK, refused.StatusCode);
        }

        await EnrolAsync(seeker.Email, await fixture.Actors.SetPasswordByLinkAsync(new Uri(link!)));
    }

    /// <summary>
    /// Promise 4 for a job seeker who is also staff and has enrolled: "forget me" takes the second factor with the account
    /// (the stored key, the last step, the recovery codes, the day's wrong codes), and nothing in any table names them,
    /// not even the audit rows of what they did as staff.
    /// </summary>
    [Fact]
    public async Task AnEnrolledStaffMembersOwnSeekerAccountIsErasedWithItsSecondFactor()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        string password;
        await using (var output = new StringWriter())
        {
            Assert.Equal(0, await StaffCommands.RunAsync(fixture.Factory.Services, ["staff", "grant", seeker.Email, Roles.Auditor], output));
            var link = System.Text.Json.JsonDocument.Parse(output.ToString()).RootElement.GetProperty("setPasswordLink").GetString()!;
            password = await fixture.Actors.SetPasswordByLinkAsync(new Uri(link));
            await EnrolAsync(seeker.Email, password);
        }

        using (var guesser = new PageSession(fixture.Factory))
        {
            var codePage = await Actors.SubmitLoginAsync(guesser.Http, new Uri("/Account/Login", UriKind.Relative), seeker.Email, password);
            Assert.StartsWith("/Account/TwoFactor", codePage.OriginalString, StringComparison.Ordinal);
            using var wrong = await Actors.PostFormAsync(guesser.Http, codePage, await guesser.GetPageAsync(codePage.OriginalString),
                new() { ["Code"] = fixture.Actors.WrongCode(fixture.Actors.AuthenticatorOf(seeker.Email)) });
            Assert.Equal(HttpStatusCode.OK, wrong.StatusCode);
        }

        // An auditor's search, made by that account, for its own raw account id and address: the log keeps neither (the
        // searcher is named by pseudonym, the values typed by keyed digest), since the log outlives the account.
        var auditor = await fixture.Actors.SignInWithCodeFlowAsync(seeker.Email, password, "openid " + ApiScopes.AuditRead);
        using (var audit = fixture.Factory.CreateHttpClient().WithToken(auditor.AccessToken))
        using (var searched = await audit.GetAsync($"/api/v1/audit/events?subject={seeker.Id}&actor={Uri.EscapeDataString(seeker.Email)}"))
        {
            Assert.Equal(HttpStatusCode.OK, searched.StatusCode);
        }

        var traces = $"""
            SELECT (SELECT count(*) FROM "AspNetUserTokens" WHERE user_id = '{seeker.Id}')
                 + (SELECT count(*) FROM sign_in_failures WHERE user_id = '{seeker.Id}')
                 + (SELECT count(*) FROM "AspNetUserRoles" WHERE user_id = '{seeker.Id}')
            """;
        Assert.True(await fixture.Database.ScalarAsync<long>(traces) >= 5, "the enrolment left fewer rows than a key, a step, the recovery codes, a failure and two roles");

        using (var me = fixture.Factory.CreateHttpClient().WithToken(seeker.Tokens.AccessToken))
        {
            // Before that, their export holds what the log says about them as staff: the role given to their account (the
            // row's subject is their pseudonym) and the search they made as an auditor (its actor is).
            var trail = (await me.GetFromJsonAsync<System.Text.Json.JsonElement>("/api/v1/me/export")).GetProperty("auditTrail").EnumerateArray()
                .Select(row => row.GetProperty("action").GetString()).ToList();
            Assert.Contains(AuditActions.StaffRoleGranted, trail);
            Assert.Contains(AuditActions.AuditQueried, trail);
            Assert.Equal(HttpStatusCode.OK, (await me.DeleteAsync("/api/v1/me")).StatusCode);
        }

        Assert.Equal(0L, await fixture.Database.ScalarAsync<long>(traces));
        Assert.Empty(await DatabaseScan.FindAsync(fixture.Database, seeker.Id, seeker.Email));
    }

    /// <summary>Runs `staff reset-two-factor` and sets the new password by the link it prints; returns that password.</summary>
    private async Task<string> ResetTwoFactorAsync(string email)
    {
        await using var output = new StringWriter();
        Assert.Equal(0, await StaffCommands.RunAsync(fixture.Factory.Services, ["staff", "reset-two-factor", email], output));
        return await fixture.Actors.SetPasswordByLinkAsync(new Uri(System.Text.Json.JsonDocument.Parse(output.ToString()).RootElement.GetProperty("setPasswordLink").GetString()!));
    }

    /// <summary>A staff account with a password and no second factor yet (as `staff grant` and its link leave it).</summary>
    private async Task<(string Email, string Password, string Id)> NewStaffAsync(string role)
    {
        var email = $"{role}-2fa-{Guid.NewGuid():N}@example.test";
        var password = "Staff-Password-9" + Guid.NewGuid().ToString("N")[..8] + "!";
        await using var scope = fixture.Factory.Services.CreateAsyncScope();
        var users = scope.ServiceProvider.GetRequiredService<UserManager<GatewayUser>>();
        var user = new GatewayUser { UserName = email, Email = email, EmailConfirmed = true };
        Assert.True((await users.CreateAsync(user, password)).Succeeded);
        Assert.True((await users.AddToRoleAsync(user, role)).Succeeded);
        return (email, password, user.Id);
    }

    /// <summary>Signs in through the enrolment page (the helper reads the key it shows); returns the recovery codes.</summary>
    private async Task<List<string>> EnrolAsync(string email, string password)
    {
        using var browser = new PageSession(fixture.Factory);
        var enrol = await Actors.SubmitLoginAsync(browser.Http, new Uri("/Account/Login", UriKind.Relative), email, password);
        Assert.StartsWith("/Account/EnrollTwoFactor", enrol.OriginalString, StringComparison.Ordinal);
        return (await fixture.Actors.EnrolAsync(browser.Http, enrol, email)).RecoveryCodes;
    }

    private static string PathOf(Uri location) => location.IsAbsoluteUri ? location.PathAndQuery : location.OriginalString;

    private async Task<bool> TwoFactorEnabledAsync(string id) =>
        await fixture.Database.ScalarAsync<bool>($"SELECT two_factor_enabled FROM \"AspNetUsers\" WHERE id = '{id}'");

}
