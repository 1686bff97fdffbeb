using System.Globalization;
using System.Net;
using System.Text.RegularExpressions;
using ExchangeGateway.Auth;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.AspNetCore.Identity;
using Microsoft.Extensions.DependencyInjection;

namespace ExchangeGateway.Tests.Pages;

[Collection(GatewayCollection.Name)]
public sealed partial class SharingPageTests(GatewayFixture fixture)
{
    /// <summary>
    /// The Partage page acts only on the boxes the seeker changed: a sharing that lapsed while the page was open, sent back
    /// still ticked beside another box the seeker did tick, is not renewed for twelve months behind their back.
    /// </summary>
    [Fact]
    public async Task ASharingThatLapsedWhileThePageWasOpenIsNotRenewedByAnotherChange()
    {
        var (session, email, _) = await PageSession.SignUpAsync(fixture.Factory);
        using (session)
        {
            string seekerId;
            await using (var scope = fixture.Factory.Services.CreateAsyncScope())
            {
                seekerId = (await scope.ServiceProvider.GetRequiredService<UserManager<GatewayUser>>().FindByEmailAsync(email))!.Id;
            }

            var sites = ShownSites().Matches(await session.GetPageAsync("/Sharing")).Select(m => m.Groups[1].Value).Take(2).ToList();
            Assert.Equal(2, sites.Count);
            var (lapsing, other) = (sites[0], sites[1]);
            using (await PostAsync(session, shown: [lapsing, other], shared: [lapsing], wasShared: []))
            {
            }

            // The page as the seeker now sees it: the first site ticked. Then that sharing lapses while the page stays open.
            var page = await session.GetPageAsync("/Sharing");
            Assert.Contains($"name=\"WasShared\" value=\"{lapsing}\"", page, StringComparison.Ordinal);
            var lapsedAt = fixture.Time.GetUtcNow().AddMinutes(-1).ToString("O", CultureInfo.InvariantCulture);
            await fixture.Database.ExecuteAsync($"UPDATE consents SET expires_at = '{lapsedAt}' WHERE seeker_id = '{seekerId}' AND recipient_id = '{lapsing}'");

            using (await PostAsync(session, shown: [lapsing, other], shared: [lapsing, other], wasShared: [lapsing], page))
            {
            }

            Assert.Equal(1L, await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM consents WHERE seeker_id = '{seekerId}' AND recipient_id = '{lapsing}'"));
            Assert.Equal(1L, await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM consents WHERE seeker_id = '{seekerId}' AND recipient_id = '{other}' AND state = 'Active'"));
        }
    }

    /// <summary>
    /// A site the operator suspends leaves the list of sites; the seeker who shared with it is told, on the same page, that
    /// the sharing ended and when, with its receipt, instead of seeing the box vanish without a word.
    /// </summary>
    [Fact]
    public async Task ASharingEndedByTheSitesSuspensionIsExplainedOnThePage()
    {
        var operatorToken = (await fixture.Actors.NewOperatorAsync()).Tokens.AccessToken;
        var site = await Sites.RegisterAsync(fixture.Factory, operatorToken);
        var (session, _, _) = await PageSession.SignUpAsync(fixture.Factory);
        using (session)
        {
            using (await PostAsync(session, shown: [site.Id.ToString()], shared: [site.Id.ToString()], wasShared: []))
            {
            }

            Assert.DoesNotContain("Sites suspendus", await session.GetPageAsync("/Sharing"), StringComparison.Ordinal);
            using (var admin = fixture.Factory.CreateHttpClient().WithToken(operatorToken))
            using (var suspended = await admin.PostAsync($"/api/v1/admin/recipients/{site.Id}/suspend", Sharing.Json(new System.Text.Json.Nodes.JsonObject { ["reason"] = "test" })))
            {
                Assert.Equal(HttpStatusCode.OK, suspended.StatusCode);
            }

            var page = System.Net.WebUtility.HtmlDecode(await session.GetPageAsync("/Sharing"));
            Assert.DoesNotContain($"name=\"Shown\" value=\"{site.Id}\"", page, StringComparison.Ordinal);
            Assert.Contains("<h2 id=\"suspended-title\">Sites suspendus</h2>", page, StringComparison.Ordinal);
            Assert.Contains($"{site.DisplayName} a été suspendu par Service public de l'emploi le ", page, StringComparison.Ordinal);
            Assert.Contains($"Dernier reçu pour {site.DisplayName}", page, StringComparison.Ordinal);
            // It never received a CV (the seeker has none): there is no erasure request to follow.
            Assert.DoesNotContain("Suivre la demande d’effacement", page, StringComparison.Ordinal);

            // The end receipt does not send the seeker to tick a site the page no longer offers.
            var receiptLink = ReceiptLink().Matches(page).Select(m => m.Groups[1].Value).Last();
            var receipt = System.Net.WebUtility.HtmlDecode(await session.GetPageAsync(receiptLink));
            Assert.Contains("Le site n’est pas proposé dans Partage pour le moment.", receipt, StringComparison.Ordinal);
            Assert.DoesNotContain("pour partager de nouveau", receipt, StringComparison.Ordinal);
        }
    }

    /// <summary>The sites are listed by name, as a seeker looks for one, not in the order they were registered.</summary>
    [Fact]
    public async Task TheSitesAreListedByName()
    {
        var operatorToken = (await fixture.Actors.NewOperatorAsync()).Tokens.AccessToken;
        // Registered in reverse order of their names, one of them starting with an accented capital.
        var suffix = Guid.NewGuid().ToString("N")[..8];
        using (var admin = fixture.Factory.CreateHttpClient().WithToken(operatorToken))
        {
            foreach (var name in new[] { $"Zèbre Emploi {suffix}", $"Élan Travail {suffix}", $"abeille jobs {suffix}" })
            {
                var body = Sites.RegistrationBody();
                body["displayName"] = name;
                await Sites.RegisterAsync(admin, body);
            }
        }

        var (session, _, _) = await PageSession.SignUpAsync(fixture.Factory);
        using (session)
        {
            var page = System.Net.WebUtility.HtmlDecode(await session.GetPageAsync("/Sharing"));
            var names = SiteLabels().Matches(page).Select(m => m.Groups[1].Value).ToList();
            Assert.Equal(names.Order(StringComparer.Create(CultureInfo.GetCultureInfo("fr-FR"), ignoreCase: false)), names);
            var ours = names.Where(n => n.EndsWith(suffix, StringComparison.Ordinal)).ToList();
            Assert.Equal([$"abeille jobs {suffix}", $"Élan Travail {suffix}", $"Zèbre Emploi {suffix}"], ours);
        }
    }

    /// <summary>
    /// Promise 7 on the page, without a browser: one form post with the box unticked ends the sharing, the site's very next
    /// read is a 404, and the site is asked to erase its copy.
    /// </summary>
    [Fact]
    public async Task OnePostWithTheBoxUntickedStopsTheSitesNextRead()
    {
        var marker = "page-untick-" + Guid.NewGuid().ToString("N");
        var seeker = await Propagation.SeekerWithCvAsync(fixture.Factory, fixture.Actors, marker);
        var site = await Sites.RegisterAsync(fixture.Factory, fixture.Actors);
        using var session = new PageSession(fixture.Factory);
        await Actors.SubmitLoginAsync(session.Http, new Uri("/Account/Login", UriKind.Relative), seeker.Email, seeker.Password);
        using (await PostAsync(session, shown: [site.Id.ToString()], shared: [site.Id.ToString()], wasShared: []))
        {
        }

        var siteToken = await fixture.Actors.TokenAsync(site);
        var id = await Propagation.ReadAsync(fixture.Factory, siteToken, marker);
        using var client = fixture.Client().WithToken(siteToken);

        using (await PostAsync(session, shown: [site.Id.ToString()], shared: [], wasShared: [site.Id.ToString()]))
        {
        }

        using (var next = await client.GetAsync($"/api/v1/shared-cvs/{id}"))
        {
            Assert.DoesNotContain(marker, (await next.AssertProblemAsync(HttpStatusCode.NotFound)).GetRawText(), StringComparison.Ordinal);
        }

        Assert.Equal("Revoked", await fixture.Database.ScalarAsync<string>($"SELECT state FROM consents WHERE seeker_id = '{seeker.Id}' AND recipient_id = '{site.Id}'"));
        Assert.Equal(1L, await fixture.Database.ScalarAsync<long>(
            $"SELECT count(*) FROM erasure_obligations WHERE recipient_id = '{site.Id}' AND cause = 'consent-revoked' AND pairwise_id = '{id}'"));
    }

    /// <summary>
    /// A seeker offered hundreds of sites can still save the page: the form carries up to three values a site, which passed
    /// the form reader's default 1 024 and was a 500. Ticking more sites at once than the page shows receipts for saves them
    /// all and says how many more changed, instead of a redirect longer than a request line may be (a bare 414).
    /// </summary>
    [Fact]
    public async Task ALongListOfSitesIsSavedInOnePost()
    {
        var operatorToken = (await fixture.Actors.NewOperatorAsync()).Tokens.AccessToken;
        var (session, _, _) = await PageSession.SignUpAsync(fixture.Factory);
        using (session)
        {
            var shown = ShownSites().Matches(await session.GetPageAsync("/Sharing")).Select(m => m.Groups[1].Value).ToList();
            using (var admin = fixture.Factory.CreateHttpClient().WithToken(operatorToken))
            {
                while (shown.Count < 60)
                {
                    shown.Add((await Sites.RegisterAsync(admin)).Id.ToString());
                }
            }

            // Sites the page did not show (registered since, or made up) are left alone, but still count as form values.
            var unknown = Enumerable.Range(0, 1200).Select(_ => Guid.NewGuid().ToString()).ToArray();
            using var saved = await PostAsync(session, shown: [.. shown, .. unknown], shared: [.. shown], wasShared: []);
            var location = saved.Headers.Location!.OriginalString;
            Assert.True(location.Length < 4096, $"redirect of {location.Length} characters");
            var receipts = location.Split('&', '?').Count(part => part.StartsWith("receipt=", StringComparison.Ordinal));
            Assert.Equal(50, receipts);
            Assert.Contains($"more={shown.Count - 50}", location, StringComparison.Ordinal);

            var page = System.Net.WebUtility.HtmlDecode(await session.GetPageAsync(location));
            Assert.Contains($"{shown.Count - 50} autre(s) changement(s) enregistré(s)", page, StringComparison.Ordinal);
            Assert.Equal(shown.Count, Regex.Count(page, "name=\"WasShared\""));
        }
    }

    /// <summary>
    /// Promise 7 with many sites: every site shared with has its own button at the top of the page, and one press of it
    /// ends that one sharing through the form's own untick (receipt, audit row, erasure request), leaving the others.
    /// </summary>
    [Fact]
    public async Task EachSharedSiteHasItsOwnStopButtonThatEndsThatSharingInOneClick()
    {
        var marker = "page-stop-" + Guid.NewGuid().ToString("N");
        var (seeker, session) = await SignedInWithCvAsync(marker);
        using (session)
        {
            var (stopped, kept, never) = (await Sites.RegisterAsync(fixture.Factory, fixture.Actors),
                await Sites.RegisterAsync(fixture.Factory, fixture.Actors), await Sites.RegisterAsync(fixture.Factory, fixture.Actors));
            using (await PostAsync(session, shown: [stopped.Id.ToString(), kept.Id.ToString()], shared: [stopped.Id.ToString(), kept.Id.ToString()], wasShared: []))
            {
            }

            var pairwiseId = await Propagation.ReadAsync(fixture.Factory, await fixture.Actors.TokenAsync(stopped), marker);
            var page = await session.GetPageAsync("/Sharing");
            var text = WebUtility.HtmlDecode(page);
            var stops = StopButtons().Matches(text).Select(m => (Id: m.Groups[1].Value, Name: m.Groups[2].Value)).ToList();
            Assert.Contains((stopped.Id.ToString(), stopped.DisplayName), stops);
            Assert.Contains((kept.Id.ToString(), kept.DisplayName), stops);
            Assert.DoesNotContain(stops, s => s.Id == never.Id.ToString());
            // Before the list of every site, and the long "what is shared" said once, not once a site.
            Assert.True(text.IndexOf("Vos partages en cours", StringComparison.Ordinal) < text.IndexOf("name=\"Shown\"", StringComparison.Ordinal));
            Assert.Equal(1, Regex.Count(text, "Ce qui est partagé"));

            // Without the page's antiforgery token, nothing.
            using (var forged = await session.Http.PostAsync("/Sharing?handler=Stop", new FormUrlEncodedContent(new Dictionary<string, string> { ["stop"] = stopped.Id.ToString() })))
            {
                Assert.Equal(HttpStatusCode.BadRequest, forged.StatusCode);
            }

            string location;
            using (var stop = await StopAsync(session, stopped.Id, page))
            {
                location = stop.Headers.Location!.OriginalString;
                Assert.StartsWith("/Sharing?receipt=", location, StringComparison.Ordinal);
            }

            var after = WebUtility.HtmlDecode(await session.GetPageAsync(location));
            Assert.Contains($"Partage retiré à {stopped.DisplayName}", after, StringComparison.Ordinal);
            Assert.DoesNotContain($"Arrêter le partage avec {stopped.DisplayName}<", after, StringComparison.Ordinal);
            Assert.Contains($"Arrêter le partage avec {kept.DisplayName}<", after, StringComparison.Ordinal);

            var consents = $"FROM consents WHERE seeker_id = '{seeker.Id}'";
            Assert.Equal("Revoked", await fixture.Database.ScalarAsync<string>($"SELECT state {consents} AND recipient_id = '{stopped.Id}'"));
            Assert.Equal("Active", await fixture.Database.ScalarAsync<string>($"SELECT state {consents} AND recipient_id = '{kept.Id}'"));
            Assert.Equal("Web", await fixture.Database.ScalarAsync<string>(
                $"SELECT collection_method FROM consent_events WHERE seeker_id = '{seeker.Id}' AND recipient_id = '{stopped.Id}' AND kind = 'Revoked'"));
            Assert.Equal(1L, await fixture.Database.ScalarAsync<long>(
                $"SELECT count(*) FROM audit_events WHERE action = 'consent.revoked' AND recipient = '{stopped.ClientId}' AND details::jsonb ->> 'method' = 'web'"));
            Assert.Equal(1L, await fixture.Database.ScalarAsync<long>(
                $"SELECT count(*) FROM erasure_obligations WHERE recipient_id = '{stopped.Id}' AND cause = 'consent-revoked' AND pairwise_id = '{pairwiseId}'"));

            // A second press (a double click, or a page left open) changes nothing more.
            using (var again = await StopAsync(session, stopped.Id, page))
            {
                Assert.Equal("/Sharing?unchanged=True", again.Headers.Location!.OriginalString);
            }

            Assert.Equal(1L, await fixture.Database.ScalarAsync<long>($"SELECT count(*) {consents} AND recipient_id = '{stopped.Id}'"));
        }
    }

    /// <summary>
    /// A seeker without a CV is told, where they tick, that the sites receive nothing until they save one, with the way to
    /// it; the receipt of a tick says the site will receive the CV once there is one, not that it may now.
    /// </summary>
    [Fact]
    public async Task WithoutACvThePageAndTheReceiptSayTheSitesReceiveNothingYet()
    {
        var site = await Sites.RegisterAsync(fixture.Factory, fixture.Actors);
        var (session, _, _) = await PageSession.SignUpAsync(fixture.Factory);
        using (session)
        {
            var page = WebUtility.HtmlDecode(await session.GetPageAsync("/Sharing"));
            Assert.Contains("Vous n’avez pas encore de CV : les sites avec lesquels vous partagez ne reçoivent rien", page, StringComparison.Ordinal);
            Assert.Contains("<a href=\"/Cv\">Rédiger ou importer mon CV</a>", page, StringComparison.Ordinal);

            using var ticked = await PostAsync(session, shown: [site.Id.ToString()], shared: [site.Id.ToString()], wasShared: []);
            var withReceipt = WebUtility.HtmlDecode(await session.GetPageAsync(ticked.Headers.Location!.OriginalString));
            var said = $"{site.DisplayName} recevra votre CV dès que vous en aurez enregistré un";
            Assert.Contains(said, withReceipt, StringComparison.Ordinal);
            Assert.DoesNotContain($"{site.DisplayName} peut maintenant recevoir votre CV", withReceipt, StringComparison.Ordinal);
            Assert.Contains(said, WebUtility.HtmlDecode(await session.GetPageAsync(ReceiptLink().Matches(withReceipt).First().Groups[1].Value)), StringComparison.Ordinal);
        }
    }

    /// <summary>
    /// An offline CV is said on the page with its date and "still looking", which puts it back online and returns to the
    /// page (only to a page of this site); the receipt of a tick meanwhile says the site will receive the CV once it is back.
    /// </summary>
    [Fact]
    public async Task AnOfflineCvIsSaidOnThePageWithStillLookingWhichComesBackHere()
    {
        var (seeker, session) = await SignedInWithCvAsync("page-offline-" + Guid.NewGuid().ToString("N"));
        using (session)
        {
            var site = await Sites.RegisterAsync(fixture.Factory, fixture.Actors);
            Assert.DoesNotContain("id=\"cv-notice\"", await session.GetPageAsync("/Sharing"), StringComparison.Ordinal);
            await fixture.Database.ExecuteAsync($"UPDATE cvs SET refreshed_at = refreshed_at - interval '100 days' WHERE seeker_id = '{seeker.Id}'");

            var page = await session.GetPageAsync("/Sharing");
            var text = WebUtility.HtmlDecode(page);
            Assert.Contains("Votre CV est hors ligne depuis le ", text, StringComparison.Ordinal);
            Assert.Equal("/Sharing?refreshed=True", PageSession.StillLookingReturnUrl(text));

            using (var ticked = await PostAsync(session, shown: [site.Id.ToString()], shared: [site.Id.ToString()], wasShared: [], page))
            {
                Assert.Contains($"{site.DisplayName} recevra votre CV dès qu’il sera de nouveau en ligne",
                    WebUtility.HtmlDecode(await session.GetPageAsync(ticked.Headers.Location!.OriginalString)), StringComparison.Ordinal);
            }

            // Only back to this site: any other address lands on Mon CV.
            using (var elsewhere = await RefreshAsync(session, page, "https://evil.example/"))
            {
                Assert.Equal("/Cv?done=refreshed", elsewhere.Headers.Location!.OriginalString);
            }

            await fixture.Database.ExecuteAsync($"UPDATE cvs SET refreshed_at = refreshed_at - interval '100 days' WHERE seeker_id = '{seeker.Id}'");
            using (var refreshed = await RefreshAsync(session, page, "/Sharing?refreshed=True"))
            {
                Assert.Equal("/Sharing?refreshed=True", refreshed.Headers.Location!.OriginalString);
            }

            var back = WebUtility.HtmlDecode(await session.GetPageAsync("/Sharing?refreshed=True"));
            Assert.DoesNotContain("id=\"cv-notice\"", back, StringComparison.Ordinal);
            Assert.Contains("C’est noté : votre CV reste en ligne pour une nouvelle période complète.", back, StringComparison.Ordinal);
        }
    }

    /// <summary>
    /// An end receipt offers to follow the erasure request only when one was sent: a site that never received the CV has
    /// nothing to erase, and the link led to an empty list. When the site did receive it, the link is there.
    /// </summary>
    [Fact]
    public async Task AnEndReceiptOffersToFollowTheErasureRequestOnlyWhenOneWasSent()
    {
        var marker = "page-follow-" + Guid.NewGuid().ToString("N");
        var (_, session) = await SignedInWithCvAsync(marker);
        using (session)
        {
            var site = await Sites.RegisterAsync(fixture.Factory, fixture.Actors);
            var id = site.Id.ToString();
            async Task<string> UntickAsync()
            {
                using var unticked = await PostAsync(session, shown: [id], shared: [], wasShared: [id]);
                return WebUtility.HtmlDecode(await session.GetPageAsync(unticked.Headers.Location!.OriginalString));
            }

            // Ticked, then unticked before the site ever read its feed.
            using (await PostAsync(session, shown: [id], shared: [id], wasShared: []))
            {
            }

            var unread = await UntickAsync();
            Assert.Contains($"{site.DisplayName} ne reçoit plus votre CV. Il ne l’avait pas reçu : il n’y a rien à effacer.", unread, StringComparison.Ordinal);
            Assert.DoesNotContain("Suivre la demande d’effacement", unread, StringComparison.Ordinal);
            Assert.DoesNotContain("Suivre la demande d’effacement",
                WebUtility.HtmlDecode(await session.GetPageAsync(ReceiptLink().Matches(unread).First().Groups[1].Value)), StringComparison.Ordinal);

            // Ticked again (a moment later: the test clock stands still, and the page takes the latest episode by its
            // grant), read by the site, unticked: there is a request to follow.
            fixture.Time.Advance(TimeSpan.FromSeconds(1));
            using (await PostAsync(session, shown: [id], shared: [id], wasShared: []))
            {
            }

            await Propagation.ReadAsync(fixture.Factory, await fixture.Actors.TokenAsync(site), marker);
            var read = await UntickAsync();
            Assert.Contains("Suivre la demande d’effacement", read, StringComparison.Ordinal);
            Assert.DoesNotContain("Il ne l’avait pas reçu", read, StringComparison.Ordinal);
        }
    }

    /// <summary>A seeker with a CV published through the API, signed in on the pages.</summary>
    private async Task<(Person Seeker, PageSession Session)> SignedInWithCvAsync(string marker)
    {
        var seeker = await Propagation.SeekerWithCvAsync(fixture.Factory, fixture.Actors, marker);
        var session = new PageSession(fixture.Factory);
        await Actors.SubmitLoginAsync(session.Http, new Uri("/Account/Login", UriKind.Relative), seeker.Email, seeker.Password);
        return (seeker, session);
    }

    private static async Task<HttpResponseMessage> StopAsync(PageSession session, Guid site, string page)
    {
        var form = new Dictionary<string, string> { ["stop"] = site.ToString(), ["__RequestVerificationToken"] = PageSession.AntiforgeryToken(page) };
        var response = await session.Http.PostAsync("/Sharing?handler=Stop", new FormUrlEncodedContent(form));
        Assert.Equal(HttpStatusCode.Redirect, response.StatusCode);
        return response;
    }

    /// <summary>"Still looking" as the notice on a page posts it, with the address to come back to.</summary>
    private static async Task<HttpResponseMessage> RefreshAsync(PageSession session, string page, string returnUrl)
    {
        var form = new Dictionary<string, string> { ["returnUrl"] = returnUrl, ["__RequestVerificationToken"] = PageSession.AntiforgeryToken(page) };
        var response = await session.Http.PostAsync("/Cv?handler=Refresh", new FormUrlEncodedContent(form));
        Assert.Equal(HttpStatusCode.Redirect, response.StatusCode);
        return response;
    }

    private static async Task<HttpResponseMessage> PostAsync(PageSession session, string[] shown, string[] shared, string[] wasShared, string? page = null)
    {
        page ??= await session.GetPageAsync("/Sharing");
        var form = shown.Select(s => KeyValuePair.Create("Shown", s))
            .Concat(shared.Select(s => KeyValuePair.Create("Shared", s)))
            .Concat(wasShared.Select(s => KeyValuePair.Create("WasShared", s)))
            .Append(KeyValuePair.Create("__RequestVerificationToken", PageSession.AntiforgeryToken(page)));
        var response = await session.Http.PostAsync("/Sharing", new FormUrlEncodedContent(form));
        Assert.Equal(HttpStatusCode.Redirect, response.StatusCode);
        return response;
    }

    [GeneratedRegex("name=\"Shown\" value=\"([0-9a-f-]+)\"")]
    private static partial Regex ShownSites();

    [GeneratedRegex("<label for=\"site-[0-9a-f]{32}\">Partager mon CV avec (.+?)</label>")]
    private static partial Regex SiteLabels();

    [GeneratedRegex("href=\"(/Sharing/Receipt/[0-9a-f-]+)\"")]
    private static partial Regex ReceiptLink();

    [GeneratedRegex("<button type=\"submit\" name=\"stop\" value=\"([0-9a-f-]+)\"[^>]*>Arrêter le partage avec (.+?)</button>")]
    private static partial Regex StopButtons();
}
