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
}
