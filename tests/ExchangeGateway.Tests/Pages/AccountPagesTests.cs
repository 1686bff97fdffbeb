using System.Globalization;
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
    /// The "forget me" page says what an erasure keeps, as it is (the sharings and the sites' receipts of the CV without the
    /// seeker's id, the erasure requests, the pseudonymous audit log), not "only the audit log"; and, since the requests
    /// cannot be followed once the account is gone, to download the data first, next to the download, in both languages.
    /// </summary>
    [Fact]
    public async Task TheForgetMePageSaysWhatTheErasureKeepsAndToDownloadTheDataFirst()
    {
        var (session, _, _) = await PageSession.SignUpAsync(fixture.Factory);
        using (session)
        {
            var french = WebUtility.HtmlDecode(await session.GetPageAsync("/Account/Delete"));
            Assert.DoesNotContain("seul reste le journal d’audit", french, StringComparison.Ordinal);
            foreach (var kept in (string[])["les dates du partage", "quelle version il a reçue et quand (sans son contenu)",
                "nos demandes d’effacement et leurs confirmations", "le journal d’audit, sous un pseudonyme"])
            {
                Assert.Contains(kept, french, StringComparison.Ordinal);
            }

            Assert.Contains("vous ne pourrez plus télécharger vos données : gardez-en d’abord une copie. Le reçu affiché après la suppression vous permet de suivre chaque demande d’effacement envoyée aux sites. <a href=\"/my-data.json\" download>",
                french, StringComparison.Ordinal);

            using (await session.SubmitAsync("/Account/Delete", new() { ["culture"] = "en", ["returnUrl"] = "/Account/Delete" }, "/Culture"))
            {
            }

            var english = WebUtility.HtmlDecode(await session.GetPageAsync("/Account/Delete"));
            Assert.DoesNotContain("only the audit log remains", english, StringComparison.Ordinal);
            Assert.Contains("our erasure requests and their confirmations", english, StringComparison.Ordinal);
            Assert.Contains("you can no longer download your data: keep a copy first. The receipt shown after the deletion lets you follow each erasure request sent to the sites. <a href=\"/my-data.json\" download>",
                english, StringComparison.Ordinal);
        }
    }

    /// <summary>
    /// A seeker who uses only the pages can take their data with them: the sign-out-of-everything page (and the disclosures
    /// page) link to a download of the same document as the API's export. Without a session, the sign-in page.
    /// </summary>
    [Fact]
    public async Task TheSeekerDownloadsTheirDataFromThePages()
    {
        var (session, email, _) = await PageSession.SignUpAsync(fixture.Factory);
        using (session)
        {
            Assert.Contains("href=\"/my-data.json\"", await session.GetPageAsync("/Account/Delete"), StringComparison.Ordinal);
            using var download = await session.Http.GetAsync("/my-data.json");
            Assert.Equal(HttpStatusCode.OK, download.StatusCode);
            Assert.Equal("attachment", download.Content.Headers.ContentDisposition?.DispositionType);
            Assert.True(download.Headers.CacheControl?.NoStore, "personal data must not be cached");
            var export = System.Text.Json.JsonDocument.Parse(await download.Content.ReadAsStringAsync()).RootElement;
            Assert.Equal(email, export.GetProperty("account").GetProperty("email").GetString());
            Assert.Equal(System.Text.Json.JsonValueKind.Array, export.GetProperty("consentEvents").ValueKind);
        }

        using (var crossSite = new PageSession(fixture.Factory))
        {
            // Another site's link, even with the seeker's cookie: not an export.
            var (other, _, _) = await PageSession.SignUpAsync(fixture.Factory);
            using (other)
            {
                using var request = new HttpRequestMessage(HttpMethod.Get, "/my-data.json") { Headers = { { "Sec-Fetch-Site", "cross-site" } } };
                using var linked = await other.Http.SendAsync(request);
                await linked.AssertProblemAsync(HttpStatusCode.Forbidden);
            }
        }

        using var anonymous = new PageSession(fixture.Factory);
        using var refused = await anonymous.Http.GetAsync("/my-data.json");
        Assert.Equal(HttpStatusCode.Redirect, refused.StatusCode);
        Assert.Equal("/Account/Login", refused.Headers.Location!.AbsolutePath);
    }

    /// <summary>
    /// RP-initiated logout asks first: a link or a cross-site form to /connect/endsession (any site can send one) leads to
    /// the sign-out page and signs no one out; the page's own form, posted back with its antiforgery token, does.
    /// </summary>
    [Fact]
    public async Task EndSessionSignsOutOnlyThroughTheSignOutPagesForm()
    {
        var (session, _, _) = await PageSession.SignUpAsync(fixture.Factory);
        using (session)
        {
            using (var link = await session.Http.GetAsync("/connect/endsession?state=s1"))
            {
                Assert.Equal(HttpStatusCode.Redirect, link.StatusCode);
                Assert.StartsWith("/Account/Logout", link.Headers.Location!.OriginalString, StringComparison.Ordinal);
            }

            using (var forged = await session.Http.PostAsync("/connect/endsession", new FormUrlEncodedContent(new Dictionary<string, string> { ["state"] = "s2" })))
            {
                Assert.Equal(HttpStatusCode.Redirect, forged.StatusCode);
                Assert.StartsWith("/Account/Logout", forged.Headers.Location!.OriginalString, StringComparison.Ordinal);
            }

            Assert.Contains("<h1>Mon CV</h1>", await session.GetPageAsync("/Cv"), StringComparison.Ordinal);

            var page = await session.GetPageAsync("/Account/Logout?state=s3");
            // The end-session form carries its own antiforgery token (a form with an explicit action gets none by default).
            var form = page[page.IndexOf("action=\"/connect/endsession\"", StringComparison.Ordinal)..];
            form = form[..form.IndexOf("</form>", StringComparison.Ordinal)];
            Assert.Contains("name=\"__RequestVerificationToken\"", form, StringComparison.Ordinal);
            Assert.Contains("value=\"s3\"", form, StringComparison.Ordinal);
            using (var confirmed = await session.SubmitAsync("/Account/Logout?state=s3", new() { ["state"] = "s3" }, "/connect/endsession"))
            {
                Assert.Equal(HttpStatusCode.Redirect, confirmed.StatusCode);
            }

            using var after = await session.Http.GetAsync("/Cv");
            Assert.Equal(HttpStatusCode.Redirect, after.StatusCode);
            Assert.StartsWith("/Account/Login", after.Headers.Location!.AbsolutePath, StringComparison.Ordinal);
        }
    }

    /// <summary>
    /// Any address the form takes is an account's name, not only Identity's default letters: an apostrophe or an accented
    /// letter signs up. Signing in forgives the space a phone keyboard adds after the address.
    /// </summary>
    [Fact]
    public async Task AnAddressWithAnApostropheSignsUpAndSignsInEvenWithATrailingSpace()
    {
        var (session, email, password) = await PageSession.SignUpAsync(fixture.Factory, email: $"o'brien.élise-{Guid.NewGuid():N}@example.test");
        session.Dispose();

        // Only a bare address: a display name around another mailbox would name the account after a string that is not it.
        var wrapped = $"Alice <wrapped-{Guid.NewGuid():N}@example.test>";
        using (var visitor = new PageSession(fixture.Factory))
        using (var refused = await visitor.SubmitAsync("/Account/Register", new() { ["Email"] = wrapped }))
        {
            Assert.Equal(HttpStatusCode.OK, refused.StatusCode);
            Assert.DoesNotContain(PageSession.SentNotice, await refused.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        await Mailbox.SettledAsync(fixture.Factory);
        Assert.Equal(0L, await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM \"AspNetUsers\" WHERE email LIKE '%{wrapped[7..^1]}%'"));

        using var signIn = new PageSession(fixture.Factory);
        Assert.Equal("/", (await Actors.SubmitLoginAsync(signIn.Http, new Uri("/Account/Login?ReturnUrl=%2F", UriKind.Relative), email + " ", password)).OriginalString);
    }

    /// <summary>
    /// Guesses spread over many networks meet the account's ceiling (<c>Auth:AccountLockoutFailures</c>, 20): a browser new
    /// to the account is refused even with the right password. The reset link, which proves the mailbox, signs its holder
    /// in, and the session stays good while the guesses go on: the seeker can still reach their pages and untick (promise 7).
    /// </summary>
    [Fact]
    public async Task AHolderKeptOutByGuessesFromManyNetworksGetsInThroughTheResetLinkAndStaysIn()
    {
        var (first, email, oldPassword) = await PageSession.SignUpAsync(fixture.Factory);
        first.Dispose();
        // A browser someone once signed in with (the holder's old one, or an intruder's).
        using var before = new PageSession(fixture.Factory);
        Assert.True(await SignsInAsync(email, oldPassword, "192.0.2.29", before));
        async Task GuessAsync()
        {
            using var guesser = new PageSession(fixture.Factory);
            await Actors.GuessPasswordsAsync(guesser.Http, email, 20, i => $"203.0.113.{100 + i}");
        }

        await GuessAsync();
        Assert.False(await SignsInAsync(email, oldPassword, "192.0.2.30"));

        using var holder = new PageSession(fixture.Factory);
        using (await holder.SubmitAsync("/Account/ForgotPassword", new() { ["Email"] = email }))
        {
        }

        await Mailbox.SettledAsync(fixture.Factory);
        var link = (await Mailbox.ForAsync(fixture.Factory, email)).Select(m => Mailbox.LinkTo(m, "ResetPassword")).OfType<Uri>().Last();
        var password = "Locked-Out-7" + Guid.NewGuid().ToString("N")[..6] + "!";
        var query = System.Web.HttpUtility.ParseQueryString(link.Query);
        // The page says whose account the link is for before a password is chosen (a link sent for someone else's account).
        Assert.Contains($"Compte : {email}", System.Net.WebUtility.HtmlDecode(await holder.GetPageAsync(link.PathAndQuery)), StringComparison.Ordinal);
        using (var reset = await holder.SubmitAsync(link.PathAndQuery, new()
        {
            ["user"] = query["user"]!, ["Code"] = query["code"]!, ["Password"] = password, ["ConfirmPassword"] = password,
        }))
        {
            Assert.Contains("Vous êtes connecté", await reset.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        Assert.Contains("<h1>Mon CV</h1>", await holder.GetPageAsync("/Cv"), StringComparison.Ordinal);
        await GuessAsync();
        Assert.False(await SignsInAsync(email, password, "192.0.2.31"));
        // The reset made every browser new: the one signed in before the reset is not trusted past the ceiling any more.
        Assert.False(await SignsInAsync(email, password, "192.0.2.32", before));
        // The browser the link was opened in is the holder's: once that session has ended (the browser closed, its session
        // cookie gone, the device cookie kept), it still signs in past the ceiling.
        using var reopened = new PageSession(fixture.Factory);
        var device = holder.Cookies.GetCookies(new Uri(holder.Http.BaseAddress!, "/Account/Login"))[ExchangeGateway.Auth.SignInThrottle.DeviceCookie];
        Assert.NotNull(device);
        reopened.Cookies.Add(device);
        Assert.True(await SignsInAsync(email, password, "192.0.2.33", reopened));
        Assert.Contains("<h1>Mon CV</h1>", await holder.GetPageAsync("/Cv"), StringComparison.Ordinal);
        Assert.Contains("type=\"checkbox\"", await holder.GetPageAsync("/Sharing"), StringComparison.Ordinal);
    }

    /// <summary>
    /// Whoever knows a seeker's address must not be able to lock the seeker out. Wrong passwords stop the network they
    /// come from, for that account only: after five, not even the right password gets in from there, while the holder,
    /// from another network, signs in. Guesses sent side by side all count (each attempt waits for the one before it on
    /// the same address), and none is checked past the fifth. The network is refused until its window (15 minutes) ends,
    /// and its count ends with it: one network guessing window after window never reaches the account's ceiling.
    /// </summary>
    [Fact]
    public async Task WrongPasswordsStopTheNetworkTheyComeFromAndNotTheHolder()
    {
        var (holder, email, password) = await PageSession.SignUpAsync(fixture.Factory);
        holder.Dispose();
        var guessers = Enumerable.Range(0, 8).Select(_ => new PageSession(fixture.Factory)).ToList();
        try
        {
            var answers = await Task.WhenAll(guessers.Select((g, i) =>
                Actors.PostLoginFormAsync(g.Http, new Uri("/Account/Login", UriKind.Relative), email, "wrong-guess-" + i, "203.0.113.20")));
            Assert.All(answers, a => Assert.Equal(HttpStatusCode.OK, a.StatusCode));
            foreach (var answer in answers)
            {
                answer.Dispose();
            }
        }
        finally
        {
            guessers.ForEach(g => g.Dispose());
        }

        var userId = await fixture.Database.ScalarAsync<string>($"SELECT id FROM \"AspNetUsers\" WHERE email = '{email}'");
        Assert.Equal(5, await fixture.Database.ScalarAsync<int>($"SELECT failures FROM sign_in_failures WHERE user_id = '{userId}'"));
        Assert.False(await SignsInAsync(email, password, "203.0.113.20"));
        Assert.True(await SignsInAsync(email, password, "198.51.100.20"));

        // An IPv6 client is its /64: another address in it is the same network, the next /64 is not.
        using (var guesser = new PageSession(fixture.Factory))
        {
            await Actors.GuessPasswordsAsync(guesser.Http, email, 5, _ => "2001:db8:1:2::5");
        }

        Assert.False(await SignsInAsync(email, password, "2001:db8:1:2:ffff::9"));
        Assert.True(await SignsInAsync(email, password, "2001:db8:1:3::9"));

        // Four more windows of five guesses from the one network: twenty in all, and the holder still gets in, from a
        // browser that never signed in before.
        for (var round = 0; round < 4; round++)
        {
            fixture.Time.Advance(TimeSpan.FromMinutes(15));
            using var guesser = new PageSession(fixture.Factory);
            await Actors.GuessPasswordsAsync(guesser.Http, email, 5, _ => "203.0.113.20");
        }

        Assert.True(await SignsInAsync(email, password, "198.51.100.21"));

        // The window ends: the guesser's network may try again, and a right password from it starts its count again.
        fixture.Time.Advance(TimeSpan.FromMinutes(15));
        Assert.True(await SignsInAsync(email, password, "203.0.113.20"));
        Assert.Equal(1L, await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM sign_in_failures WHERE user_id = '{userId}'"));

        // The daily pruning removes counts whose window has ended (the IPv6 network's) and keeps a live one.
        using (var guesser = new PageSession(fixture.Factory))
        {
            await Actors.GuessPasswordsAsync(guesser.Http, email, 1, _ => "192.0.2.1");
        }

        await RunPruningAsync();
        Assert.Equal(1, await fixture.Database.ScalarAsync<int>($"SELECT sum(failures)::int FROM sign_in_failures WHERE user_id = '{userId}'"));
    }

    /// <summary>
    /// A browser that has signed in to the account before (its device cookie says so) still gets its password checked
    /// once guesses from many networks have met the account's ceiling; a new browser, or another account's cookie, does not.
    /// </summary>
    [Fact]
    public async Task ABrowserThatSignedInBeforeStillGetsInPastTheAccountsCeiling()
    {
        var (first, email, password) = await PageSession.SignUpAsync(fixture.Factory);
        first.Dispose();
        var (other, otherEmail, otherPassword) = await PageSession.SignUpAsync(fixture.Factory);
        other.Dispose();
        using var known = new PageSession(fixture.Factory);
        Assert.True(await SignsInAsync(email, password, "192.0.2.40", known));
        using var otherAccounts = new PageSession(fixture.Factory);
        Assert.True(await SignsInAsync(otherEmail, otherPassword, "192.0.2.41", otherAccounts));

        using (var guesser = new PageSession(fixture.Factory))
        {
            await Actors.GuessPasswordsAsync(guesser.Http, email, 20, i => $"198.51.100.{150 + i}");
        }

        Assert.False(await SignsInAsync(email, password, "192.0.2.42"));
        Assert.False(await SignsInAsync(email, password, "192.0.2.43", otherAccounts));
        Assert.True(await SignsInAsync(email, password, "192.0.2.44", known));

        // Nor does a guesser on the browser's own network spend its allowance: a known browser counts for itself.
        using (var neighbour = new PageSession(fixture.Factory))
        {
            await Actors.GuessPasswordsAsync(neighbour.Http, email, 5, _ => "192.0.2.45");
        }

        Assert.True(await SignsInAsync(email, password, "192.0.2.45", known));
    }

    /// <summary>
    /// Posts the sign-in form from <paramref name="from"/> (with a new browser unless one is given): true when it signs in;
    /// a refusal must be the page with the one failure message, not some other error.
    /// </summary>
    private async Task<bool> SignsInAsync(string email, string password, string from, PageSession? browser = null)
    {
        using var fresh = browser is null ? new PageSession(fixture.Factory) : null;
        using var answer = await Actors.PostLoginFormAsync((browser ?? fresh)!.Http, new Uri("/Account/Login", UriKind.Relative), email, password, from);
        if (answer.StatusCode == HttpStatusCode.Redirect)
        {
            return true;
        }

        Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
        Assert.Contains("Adresse e-mail ou mot de passe incorrect.", System.Net.WebUtility.HtmlDecode(await answer.Content.ReadAsStringAsync()), StringComparison.Ordinal);
        return false;
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

        using var intruder = new PageSession(fixture.Factory);
        var known = await SignUpNoticeAsync(intruder, email);
        using var newcomer = new PageSession(fixture.Factory);
        var fresh = $"fresh-{Guid.NewGuid():N}@example.test";
        var unknown = await SignUpNoticeAsync(newcomer, fresh);
        Assert.Equal(unknown.Replace(fresh, "ADDRESS", StringComparison.Ordinal), known.Replace(email, "ADDRESS", StringComparison.Ordinal));

        var told = (await Mailbox.ForAsync(fixture.Factory, email)).Skip(mailsBefore).ToList();
        var message = Assert.Single(told);
        Assert.Equal("Vous avez déjà un compte", message.Subject);
        Assert.NotNull(Mailbox.LinkTo(message, "Login"));
        Assert.Null(Mailbox.LinkTo(message, "ConfirmEmail"));

        // The intruder is not signed in; the holder's password still works.
        using (var cv = await intruder.Http.GetAsync("/Cv"))
        {
            Assert.Equal(HttpStatusCode.Redirect, cv.StatusCode);
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
    /// A sign-up not finished has no password: signing in to it gets the same refusal as an unknown address, whatever the
    /// password (so sign-up then sign-in cannot tell who has an account either), and signing up again sends a new link.
    /// The link's page sets the password, signs in and carries on to the sign-up's ReturnUrl; used again, it signs no one in.
    /// </summary>
    [Fact]
    public async Task AnUnfinishedSignUpHasNoWayInButItsLinkWhichWorksOnce()
    {
        using var visitor = new PageSession(fixture.Factory);
        var email = $"unfinished-{Guid.NewGuid():N}@example.test";
        using (var registered = await visitor.SubmitAsync("/Account/Register?ReturnUrl=%2FSharing", new() { ["Email"] = email }))
        {
            Assert.Contains(PageSession.SentNotice, await registered.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        var first = Mailbox.LinkTo(Assert.Single(await Mailbox.ForAsync(fixture.Factory, email)), "ConfirmEmail")!;
        foreach (var (address, guess) in new[] { (email, "Any-Password-123!"), ($"nobody-{Guid.NewGuid():N}@example.test", "Any-Password-123!") })
        {
            using var refused = await Actors.PostLoginFormAsync(visitor.Http, new Uri("/Account/Login", UriKind.Relative), address, guess);
            Assert.Equal(HttpStatusCode.OK, refused.StatusCode);
            Assert.Contains("Adresse e-mail ou mot de passe incorrect.", await refused.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        await SignUpNoticeAsync(visitor, email);
        var messages = await Mailbox.ForAsync(fixture.Factory, email);
        Assert.Equal(2, messages.Count);
        Assert.All(messages, m => Assert.NotNull(Mailbox.LinkTo(m, "ConfirmEmail")));

        var password = "Unfinished-Pass-4" + Guid.NewGuid().ToString("N")[..6] + "!";
        using (var forged = await visitor.ConfirmAsync(new Uri(first.AbsoluteUri.Replace("code=", "code=AAAA", StringComparison.Ordinal)), password))
        {
            Assert.Contains("Ce lien n’est pas valide", await forged.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        // The page says whose account the link activates before a password is chosen (a link sent to someone else).
        Assert.Contains($"Compte : {email}", System.Net.WebUtility.HtmlDecode(await visitor.GetPageAsync(first.PathAndQuery)), StringComparison.Ordinal);
        using (var confirmed = await visitor.ConfirmAsync(first, password))
        {
            Assert.Equal(HttpStatusCode.Redirect, confirmed.StatusCode);
            Assert.Equal("/Sharing", confirmed.Headers.Location!.OriginalString);
        }

        // And the browser that used the link is one its holder signed in with.
        Assert.NotNull(visitor.Cookies.GetCookies(new Uri(visitor.Http.BaseAddress!, "/Account/Login"))[ExchangeGateway.Auth.SignInThrottle.DeviceCookie]);

        Assert.Contains("<h1>Mon CV</h1>", await visitor.GetPageAsync("/Cv"), StringComparison.Ordinal);
        using var other = new PageSession(fixture.Factory);
        using (var again = await other.ConfirmAsync(first, "Another-Password-9!"))
        {
            // Setting the password renewed the account's security stamp, which the link's token carried: it is spent.
            Assert.Equal(HttpStatusCode.OK, again.StatusCode);
            Assert.Contains("Ce lien n’est pas valide", await again.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        using (var stillOut = await other.Http.GetAsync("/Cv"))
        {
            Assert.Equal(HttpStatusCode.Redirect, stillOut.StatusCode);
        }

        using var signIn = new PageSession(fixture.Factory);
        Assert.Equal("/", (await Actors.SubmitLoginAsync(signIn.Http, new Uri("/Account/Login?ReturnUrl=%2F", UriKind.Relative), email, password)).OriginalString);
    }

    /// <summary>A password reset proves the address as well as the sign-up link: a sign-up whose link was lost is finished with it.</summary>
    [Fact]
    public async Task AResetThroughTheMailedLinkAlsoConfirmsTheAddress()
    {
        var email = $"squatted-{Guid.NewGuid():N}@example.test";
        using (var started = new PageSession(fixture.Factory))
        {
            await SignUpNoticeAsync(started, email);
        }

        using var holder = new PageSession(fixture.Factory);
        using (await holder.SubmitAsync("/Account/ForgotPassword", new() { ["Email"] = email }))
        {
        }

        var link = (await Mailbox.ForAsync(fixture.Factory, email)).Select(m => Mailbox.LinkTo(m, "ResetPassword")).OfType<Uri>().Single();
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

    /// <summary>
    /// A bad, spent or expired link is said when its page opens, with the way to a new one and no password form to fill in
    /// for nothing; a good link's form names the account for password managers (a username field they can read).
    /// </summary>
    [Fact]
    public async Task ABadLinkIsSaidWhenItsPageOpensAndAGoodOneNamesTheAccount()
    {
        var (session, email, _) = await PageSession.SignUpAsync(fixture.Factory);
        session.Dispose();
        using var visitor = new PageSession(fixture.Factory);
        using (await visitor.SubmitAsync("/Account/ForgotPassword", new() { ["Email"] = email }))
        {
        }

        var reset = (await Mailbox.ForAsync(fixture.Factory, email)).Select(m => Mailbox.LinkTo(m, "ResetPassword")).OfType<Uri>().Single();
        var good = WebUtility.HtmlDecode(await visitor.GetPageAsync(reset.PathAndQuery));
        Assert.Contains("type=\"password\"", good, StringComparison.Ordinal);
        Assert.Matches($"<input type=\"email\" autocomplete=\"username\" value=\"{Regex.Escape(email)}\" readonly hidden", good);
        Assert.DoesNotContain("Ce lien n’est pas valide", good, StringComparison.Ordinal);

        var forgedReset = reset.PathAndQuery.Replace("code=", "code=AAAA", StringComparison.Ordinal);
        var stranger = Regex.Replace(reset.PathAndQuery, "user=[^&]+", "user=" + Guid.NewGuid());
        foreach (var bad in new[] { forgedReset, stranger, "/Account/ResetPassword" })
        {
            var html = WebUtility.HtmlDecode(await visitor.GetPageAsync(bad));
            Assert.Contains("role=\"alert\"", html, StringComparison.Ordinal);
            Assert.Contains("Ce lien n’est pas valide ou a expiré", html, StringComparison.Ordinal);
            Assert.Contains("href=\"/Account/ForgotPassword\"", html, StringComparison.Ordinal);
            Assert.DoesNotContain("type=\"password\"", html, StringComparison.Ordinal);
            Assert.DoesNotContain(email, html, StringComparison.Ordinal);
        }

        // A sign-up link: spent once the account has its password, and forged.
        var signUp = Mailbox.LinkTo((await Mailbox.ForAsync(fixture.Factory, email)).First(), "ConfirmEmail")!;
        foreach (var bad in new[] { signUp.PathAndQuery, signUp.PathAndQuery.Replace("code=", "code=AAAA", StringComparison.Ordinal) })
        {
            var html = WebUtility.HtmlDecode(await visitor.GetPageAsync(bad));
            Assert.Contains("Ce lien n’est pas valide ou a expiré", html, StringComparison.Ordinal);
            // The way on: signing in (a spent link usually means the password is set), or a new link.
            Assert.Contains("href=\"/Account/Login", html, StringComparison.Ordinal);
            Assert.Contains("href=\"/Account/ForgotPassword\"", html, StringComparison.Ordinal);
            Assert.DoesNotContain("type=\"password\"", html, StringComparison.Ordinal);
        }
    }

    /// <summary>An address typed into the sign-up page and never confirmed is not kept: the pruning job removes it a week on.</summary>
    [Fact]
    public async Task AnUnfinishedSignUpIsRemovedOnceItsLinkIsLongDead()
    {
        var (finished, finishedEmail, _) = await PageSession.SignUpAsync(fixture.Factory);
        finished.Dispose();
        using var visitor = new PageSession(fixture.Factory);
        var unfinished = $"abandoned-{Guid.NewGuid():N}@example.test";
        await SignUpNoticeAsync(visitor, unfinished);
        // The page answers first; the account is created after, with the message.
        await Mailbox.SettledAsync(fixture.Factory);
        const string Count = "SELECT count(*) FROM \"AspNetUsers\" WHERE email = '{0}'";

        await RunPruningAsync();
        Assert.Equal(1L, await fixture.Database.ScalarAsync<long>(string.Format(CultureInfo.InvariantCulture, Count, unfinished)));

        fixture.Time.Advance(TokenPruningJob.UnfinishedSignUpKept + TimeSpan.FromHours(1));
        await RunPruningAsync();
        Assert.Equal(0L, await fixture.Database.ScalarAsync<long>(string.Format(CultureInfo.InvariantCulture, Count, unfinished)));
        Assert.Equal(1L, await fixture.Database.ScalarAsync<long>(string.Format(CultureInfo.InvariantCulture, Count, finishedEmail)));
    }

    private async Task RunPruningAsync()
    {
        await using var scope = fixture.Factory.Services.CreateAsyncScope();
        await scope.ServiceProvider.GetRequiredService<TokenPruningJob>().RunAsync(CancellationToken.None);
    }

    /// <summary>Submits the sign-up form and returns what the page then says.</summary>
    private static async Task<string> SignUpNoticeAsync(PageSession session, string email)
    {
        using var response = await session.SubmitAsync("/Account/Register", new() { ["Email"] = email });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var notice = NoticeParagraph().Match(await response.Content.ReadAsStringAsync());
        Assert.True(notice.Success, "no notice on the sign-up answer");
        return notice.Value;
    }

    [Fact]
    public async Task AWeakPasswordIsExplainedNextToTheField()
    {
        using var session = new PageSession(fixture.Factory);
        var email = $"weak-{Guid.NewGuid():N}@example.test";
        await SignUpNoticeAsync(session, email);
        var link = Mailbox.LinkTo(Assert.Single(await Mailbox.ForAsync(fixture.Factory, email)), "ConfirmEmail")!;
        using var response = await session.ConfirmAsync(link, "short");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var html = await response.Content.ReadAsStringAsync();
        Assert.Contains("<title>Erreur : Activer votre compte", html, StringComparison.Ordinal);
        Assert.Matches("<span class=\"error field-validation-error\"[^>]*id=\"Password-error\"[^>]*>Le mot de passe doit compter au moins 12 caractères", html);
        Assert.Matches("<input[^>]*aria-describedby=\"password-hint Password-error\"[^>]*aria-invalid=\"true\"|<input[^>]*aria-invalid=\"true\"[^>]*aria-describedby=\"password-hint Password-error\"", html);
        Assert.Contains("href=\"#Password\"", html, StringComparison.Ordinal);

        // The link is not spent by a refused password.
        var password = "Strong-Enough-1" + Guid.NewGuid().ToString("N")[..6] + "!";
        using var done = await session.ConfirmAsync(link, password);
        Assert.Equal("/Cv?done=welcome", done.Headers.Location!.OriginalString);
    }

    [Fact]
    public async Task AForgottenPasswordIsResetThroughTheLinkTheNotifierSends()
    {
        var (session, email, oldPassword) = await PageSession.SignUpAsync(fixture.Factory);
        using var signedIn = session;
        using (var page = await signedIn.Http.GetAsync("/Cv"))
        {
            Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        }

        // A session elsewhere, through the code flow, with a refresh token: the reset must end it.
        var elsewhere = await fixture.Actors.SignInWithCodeFlowAsync(email, oldPassword, "openid offline_access " + ApiScopes.CvManage);
        Assert.NotNull(elsewhere.RefreshToken);
        using var visitor = new PageSession(fixture.Factory);
        var before = (await Mailbox.FilesAsync(fixture.Factory)).ToHashSet();

        using (var asked = await visitor.SubmitAsync("/Account/ForgotPassword", new() { ["Email"] = email }))
        {
            Assert.Contains("Si un compte existe avec cette adresse", await asked.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        var mail = Assert.Single((await Mailbox.FilesAsync(fixture.Factory)).Except(before));
        using var message = await MimeKit.MimeMessage.LoadAsync(mail);
        Assert.Equal(email, message.To.Mailboxes.Single().Address);
        var link = Mailbox.LinkTo(message, "ResetPassword")!;
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

        // The browser signed in with the old password is out at its very next page, not when its cookie is next checked.
        using (var page = await signedIn.Http.GetAsync("/Cv"))
        {
            Assert.Equal(HttpStatusCode.Redirect, page.StatusCode);
            Assert.Contains("/Account/Login", page.Headers.Location!.ToString(), StringComparison.Ordinal);
        }

        using var signIn = new PageSession(fixture.Factory);
        var location = await Actors.SubmitLoginAsync(signIn.Http, new Uri("/Account/Login?ReturnUrl=%2F", UriKind.Relative), email, newPassword);
        Assert.Equal("/", location.OriginalString);
        using (var refresh = await fixture.Client().PostAsync("/connect/token", new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["grant_type"] = "refresh_token", ["refresh_token"] = elsewhere.RefreshToken!, ["client_id"] = ClientRegistrations.SwaggerClientId,
        })))
        {
            Assert.Equal(HttpStatusCode.BadRequest, refresh.StatusCode);
        }

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
        var before = (await Mailbox.FilesAsync(fixture.Factory)).ToHashSet();
        const string Anonymous = $"SELECT count(*) FROM audit_events WHERE action = '{AuditActions.PasswordResetRequested}' AND outcome = 'denied' AND actor_kind = 'anonymous' AND subject IS NULL";
        var anonymousBefore = await fixture.Database.ScalarAsync<long>(Anonymous);
        using var asked = await visitor.SubmitAsync("/Account/ForgotPassword", new() { ["Email"] = $"nobody-{Guid.NewGuid():N}@example.test" });
        Assert.Contains("Si un compte existe avec cette adresse", await asked.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.Empty((await Mailbox.FilesAsync(fixture.Factory)).Except(before));
        Assert.Equal(anonymousBefore + 1, await fixture.Database.ScalarAsync<long>(Anonymous));
    }

    private async Task<long> AuditCountAsync(string action, string outcome, string userId)
    {
        var subject = fixture.Factory.Services.GetRequiredService<Pseudonyms>().Of(userId);
        return await fixture.Database.ScalarAsync<long>(
            $"SELECT count(*) FROM audit_events WHERE action = '{action}' AND outcome = '{outcome}' AND subject = '{subject}'");
    }

    [GeneratedRegex("<p class=\"notice\" role=\"status\">[^<]*</p>")]
    private static partial Regex NoticeParagraph();
}
