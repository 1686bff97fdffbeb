using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using ExchangeGateway.Auth;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.AspNetCore.Identity;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.IdentityModel.Tokens;
using Microsoft.Playwright;
using static Microsoft.Playwright.Assertions;

namespace ExchangeGateway.Tests.Pages;

/// <summary>The seeker's pages in a real browser (headless Chromium), with no script on the pages at all.</summary>
[Collection(BrowserCollection.Name)]
public sealed class SeekerPagesBrowserTests(GatewayFixture gateway, BrowserFixture browser)
{
    private GatewayFactory Factory => gateway.Factory;

    [BrowserFact]
    public Task ASeekerSignsUpSharesWithDrawsRefreshesSwitchesLanguageAndDeletesEverything() =>
        browser.RunAsync(Factory, nameof(ASeekerSignsUpSharesWithDrawsRefreshesSwitchesLanguageAndDeletesEverything), async page =>
        {
            var email = $"browser-{Guid.NewGuid():N}@example.test";
            var password = "Browser-Pass-" + Guid.NewGuid().ToString("N")[..6] + "!";
            var marker = "browser-" + Guid.NewGuid().ToString("N");

            // Sign up (the browser asks for English; the pages stay French until the seeker chooses).
            await page.GotoAsync("/");
            await Expect(page.Locator("html")).ToHaveAttributeAsync("lang", "fr");
            await page.GetByRole(AriaRole.Link, new() { Name = "Créer un compte" }).ClickAsync();
            await page.GetByLabel("Adresse e-mail").FillAsync(email);
            await page.GetByRole(AriaRole.Button, new() { Name = "Créer mon compte" }).ClickAsync();
            await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync(email);

            // The link the mail carries leads to the password: choosing it activates the account and signs in.
            var link = Mailbox.LinkTo((await Mailbox.ForAsync(Factory, email)).Last(), "ConfirmEmail");
            Assert.NotNull(link);
            await page.GotoAsync(link.PathAndQuery);
            await page.GetByLabel("Mot de passe", new() { Exact = true }).FillAsync(password);
            await page.GetByLabel("Confirmez le mot de passe").FillAsync(password);
            await page.GetByRole(AriaRole.Button, new() { Name = "Activer mon compte" }).ClickAsync();
            await Expect(page).ToHaveTitleAsync("Mon CV — ExchangeGateway");

            // Fill in the CV; a wrong date is explained next to its field, then corrected.
            await page.GetByLabel("Nom et prénom").FillAsync("Camille Navigateur");
            await page.GetByLabel("Titre").FillAsync("Développeuse web");
            await page.GetByLabel("Présentez-vous en quelques lignes").FillAsync("Summary " + marker);
            await page.GetByLabel("Poste").FillAsync("Intégratrice");
            await page.GetByLabel("Employeur").FillAsync("Atelier Web");
            await page.GetByLabel("Début").First.FillAsync("septembre 2019");
            await page.GetByLabel("Langue", new() { Exact = true }).FillAsync("Français");
            await page.GetByRole(AriaRole.Button, new() { Name = "Enregistrer mon CV" }).First.ClickAsync();
            await Expect(page).ToHaveTitleAsync("Erreur : Mon CV — ExchangeGateway");
            var start = page.GetByLabel("Début").First;
            await Expect(start).ToHaveAttributeAsync("aria-invalid", "true");
            await Expect(start).ToHaveAccessibleDescriptionAsync(new Regex("AAAA-MM"));
            await start.FillAsync("2019-09");
            await page.GetByRole(AriaRole.Button, new() { Name = "Enregistrer mon CV" }).First.ClickAsync();
            await Expect(page.GetByRole(AriaRole.Status)).ToHaveTextAsync("Votre CV est enregistré.");
            await Expect(page.Locator("#freshness")).ToContainTextAsync("dans 90 jours");

            // Tick "Démo Emploi": the receipt is shown.
            await page.GetByRole(AriaRole.Link, new() { Name = "Partage", Exact = true }).ClickAsync();
            await Expect(page.GetByText("Ce qui est partagé").First).ToBeVisibleAsync();
            await page.GetByLabel("Partager mon CV avec Démo Emploi").CheckAsync();
            await page.GetByRole(AriaRole.Button, new() { Name = "Enregistrer mes choix" }).ClickAsync();
            await Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Partage accordé à Démo Emploi" })).ToBeVisibleAsync();
            await Expect(page.Locator(".receipt")).ToContainTextAsync("sur la page Partage");
            // On its own page the receipt's heading comes right under the page's h1, with no level skipped.
            await page.GetByRole(AriaRole.Link, new() { Name = "Voir le reçu complet" }).ClickAsync();
            await Expect(page.GetByRole(AriaRole.Heading, new() { Level = 1 })).ToHaveTextAsync("Reçu de consentement");
            await Expect(page.GetByRole(AriaRole.Heading, new() { Level = 2, Name = "Partage accordé à Démo Emploi" })).ToBeVisibleAsync();
            await Expect(page.Locator("h3")).ToHaveCountAsync(0);
            await Expect(page.GetByRole(AriaRole.Link, new() { Name = "Voir le reçu complet" })).ToHaveCountAsync(0);

            // The site pulls the CV over the API, and the seeker sees it.
            var site = await gateway.Actors.DemoSiteTokenAsync();
            var (items, _) = await Sharing.ReadFeedAsync(Factory, site);
            var id = Sharing.PairwiseIdOf(items, marker);
            Assert.NotNull(id);
            using var api = gateway.Client().WithToken(site);
            Assert.Equal(HttpStatusCode.OK, (await api.GetAsync($"/api/v1/shared-cvs/{id}")).StatusCode);
            await page.GetByRole(AriaRole.Link, new() { Name = "Qui a consulté mon CV" }).ClickAsync();
            await Expect(page.GetByRole(AriaRole.Table)).ToContainTextAsync("Démo Emploi");

            // Untick: the next pull is 404 and the obligation shows on the erasure page.
            await page.GetByRole(AriaRole.Link, new() { Name = "Partage", Exact = true }).ClickAsync();
            await Expect(page.GetByText("Si vous décochez : Démo Emploi ne reçoit plus votre CV").First).ToBeVisibleAsync();
            await page.GetByLabel("Partager mon CV avec Démo Emploi").UncheckAsync();
            await page.GetByRole(AriaRole.Button, new() { Name = "Enregistrer mes choix" }).ClickAsync();
            await Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Partage retiré à Démo Emploi" })).ToBeVisibleAsync();
            await (await api.GetAsync($"/api/v1/shared-cvs/{id}")).AssertProblemAsync(HttpStatusCode.NotFound);
            await page.GetByRole(AriaRole.Link, new() { Name = "Suivre la demande d’effacement" }).ClickAsync();
            var demo = page.GetByRole(AriaRole.Region, new() { Name = "Démo Emploi" });
            await Expect(demo).ToContainTextAsync("Effacer votre CV");
            await Expect(demo).ToContainTextAsync("vous avez retiré le partage");
            await Expect(demo.Locator(".status").First).ToHaveTextAsync(new Regex("Envoyée|Reçue par le site"));

            // Ten days later the banner counts down; "still looking" starts a full period again.
            gateway.Time.Advance(TimeSpan.FromDays(10));
            await page.GetByRole(AriaRole.Link, new() { Name = "Mon CV", Exact = true }).ClickAsync();
            await Expect(page.Locator("#freshness")).ToContainTextAsync("dans 80 jours");
            await page.GetByRole(AriaRole.Button, new() { Name = "Je suis toujours en recherche" }).ClickAsync();
            await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync("votre CV reste en ligne");
            await Expect(page.Locator("#freshness")).ToContainTextAsync("dans 90 jours");

            // English, then back to French, from the switch on the page.
            await page.GetByRole(AriaRole.Button, new() { Name = "English" }).ClickAsync();
            await Expect(page.Locator("html")).ToHaveAttributeAsync("lang", "en");
            await Expect(page.GetByRole(AriaRole.Heading, new() { Level = 1 })).ToHaveTextAsync("My CV");
            await Expect(page.Locator("#freshness")).ToContainTextAsync(new Regex(@"in 90 days, on \w+day, \w+ \d{1,2}, \d{4}"));
            await page.GetByRole(AriaRole.Button, new() { Name = "Français" }).ClickAsync();
            await Expect(page.Locator("html")).ToHaveAttributeAsync("lang", "fr");
            await Expect(page.Locator("#freshness")).ToContainTextAsync(new Regex(@"dans 90 jours, le \w+ \d{1,2} \w+ \d{4}"));

            // Delete everything: a confirmation first, then the same erasure as DELETE /api/v1/me.
            await page.GetByRole(AriaRole.Link, new() { Name = "Supprimer mes données" }).ClickAsync();
            await page.GetByRole(AriaRole.Button, new() { Name = "Supprimer mes données" }).ClickAsync();
            await Expect(page.GetByRole(AriaRole.Alert)).ToContainTextAsync("Cochez la case");
            await page.GetByLabel("J’ai compris").CheckAsync();
            await page.GetByRole(AriaRole.Button, new() { Name = "Supprimer mes données" }).ClickAsync();
            await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync("Votre compte et vos données ont été supprimés");
            // The receipt, on the answer itself (nothing keeps it for a later page): the site, and the id it read the CV under.
            await Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Votre reçu d’effacement" })).ToBeVisibleAsync();
            await Expect(page.Locator("#erasure-receipt")).ToContainTextAsync("Démo Emploi");
            await Expect(page.Locator("#erasure-receipt")).ToContainTextAsync(id!);
            await Expect(page.GetByRole(AriaRole.Link, new() { Name = "Supprimer mes données" })).ToHaveCountAsync(0);
            // Each reference on it follows its request, with no account.
            await page.Locator("#erasure-receipt a").First.ClickAsync();
            await Expect(page.GetByRole(AriaRole.Heading, new() { Level = 1 })).ToHaveTextAsync("Suivi d’une demande d’effacement");
            await Expect(page.Locator("#erasure-request")).ToContainTextAsync("vous avez retiré le partage");
            await using (var scope = Factory.Services.CreateAsyncScope())
            {
                Assert.Null(await scope.ServiceProvider.GetRequiredService<UserManager<GatewayUser>>().FindByEmailAsync(email));
            }


            await page.GotoAsync("/Account/Login");
            await page.GetByLabel("Adresse e-mail").FillAsync(email);
            await page.GetByLabel("Mot de passe").FillAsync(password);
            await page.GetByRole(AriaRole.Button, new() { Name = "Se connecter" }).Last.ClickAsync();
            await Expect(page.GetByRole(AriaRole.Alert)).ToContainTextAsync("Adresse e-mail ou mot de passe incorrect.");
        });

    /// <summary>
    /// The Hangfire dashboard works in a real browser under the gateway's Content-Security-Policy: its scripts run (the
    /// live graph draws, the stats poll) and nothing is blocked, so an operator's retry and trigger buttons act.
    /// </summary>
    [BrowserFact]
    public Task TheJobsDashboardRunsItsScriptsUnderThePolicy() =>
        browser.RunAsync(Factory, nameof(TheJobsDashboardRunsItsScriptsUnderThePolicy), async page =>
        {
            var blocked = new List<string>();
            page.Console += (_, message) =>
            {
                if (message.Text.Contains("Content Security Policy", StringComparison.OrdinalIgnoreCase))
                {
                    blocked.Add(message.Text);
                }
            };
            var @operator = await gateway.Actors.NewOperatorAsync();
            await page.GotoAsync("/Account/Login?ReturnUrl=%2Fhangfire");
            await page.GetByLabel("Adresse e-mail").FillAsync(@operator.Email);
            await page.GetByLabel("Mot de passe").FillAsync(@operator.Password);
            await page.GetByRole(AriaRole.Button, new() { Name = "Se connecter" }).ClickAsync();
            // Staff give a code from their authenticator (the test holds the one this operator added at its first sign-in).
            await Expect(page).ToHaveTitleAsync(new Regex("Code de vérification"));
            await page.GetByLabel("Code").FillAsync(gateway.Actors.NextCode(gateway.Actors.AuthenticatorOf(@operator.Email)));
            await page.GetByRole(AriaRole.Button, new() { Name = "Vérifier" }).ClickAsync();
            await Expect(page).ToHaveTitleAsync(new Regex("ExchangeGateway jobs"));
            // The dashboard's stats are fetched by its script; they answer only if the script ran and was allowed to connect.
            var stats = await page.WaitForResponseAsync(r => r.Url.Contains("/hangfire/stats", StringComparison.Ordinal));
            Assert.Equal(200, stats.Status);
            await page.GetByRole(AriaRole.Link, new() { Name = "Recurring Jobs" }).ClickAsync();
            await Expect(page.GetByText("event-dispatch").First).ToBeVisibleAsync();
            Assert.Empty(blocked);
        });

    [BrowserFact]
    public Task PartageWorksWithTheKeyboardAloneWithAVisibleFocus() =>
        browser.RunAsync(Factory, nameof(PartageWorksWithTheKeyboardAloneWithAVisibleFocus), async page =>
        {
            var seeker = await gateway.Actors.NewSeekerAsync();
            await page.GotoAsync("/Account/Login?ReturnUrl=%2FSharing");
            await page.Keyboard.PressAsync("Tab");
            Assert.Equal("Aller au contenu", await FocusedTextAsync(page));
            await TabUntilAsync(page, "Adresse e-mail", by: "label");
            await page.Keyboard.TypeAsync(seeker.Email);
            await page.Keyboard.PressAsync("Tab");
            await page.Keyboard.TypeAsync(seeker.Password);
            await page.Keyboard.PressAsync("Enter");
            await Expect(page).ToHaveTitleAsync("Partage — ExchangeGateway");

            await page.Keyboard.PressAsync("Tab");
            Assert.Equal("Aller au contenu", await FocusedTextAsync(page));
            await page.Keyboard.PressAsync("Enter");
            await TabUntilAsync(page, "Partager mon CV avec Démo Emploi", by: "label");
            await page.Keyboard.PressAsync("Space");
            await Expect(page.GetByLabel("Partager mon CV avec Démo Emploi")).ToBeCheckedAsync();
            await TabUntilAsync(page, "Enregistrer mes choix", by: "text");
            await page.Keyboard.PressAsync("Enter");
            await Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Partage accordé à Démo Emploi" })).ToBeVisibleAsync();
            await LandedOnMainAsync(page);

            await TabUntilAsync(page, "Partager mon CV avec Démo Emploi", by: "label");
            await page.Keyboard.PressAsync("Space");
            await TabUntilAsync(page, "Enregistrer mes choix", by: "text");
            await page.Keyboard.PressAsync("Enter");
            await Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Partage retiré à Démo Emploi" })).ToBeVisibleAsync();
        });

    [BrowserFact]
    public Task ASiteSendsTheSeekerToShareAndGetsAnOrdinaryAuthorizationResponse() =>
        browser.RunAsync(Factory, nameof(ASiteSendsTheSeekerToShareAndGetsAnOrdinaryAuthorizationResponse), async page =>
        {
            const string callback = "http://127.0.0.1:5081/callback";
            var seeker = await gateway.Actors.NewSeekerAsync();
            // Nothing listens on the demo site's address: the browser's arrival there is the authorization response.
            await page.RouteAsync(new Regex("^http://127\\.0\\.0\\.1:5081/"), route => route.FulfillAsync(new() { Status = 200, ContentType = "text/plain", Body = "callback reached" }));
            var (verifier, challenge) = PageSession.Pkce();

            await page.GotoAsync(SiteStartedConsentTests.AuthorizeUrl("demo-jobsite", challenge, "browser-state", redirectUri: callback));
            await page.GetByLabel("Adresse e-mail").FillAsync(seeker.Email);
            await page.GetByLabel("Mot de passe").FillAsync(seeker.Password);
            await page.GetByRole(AriaRole.Button, new() { Name = "Se connecter" }).Last.ClickAsync();

            await Expect(page.GetByRole(AriaRole.Heading, new() { Level = 1 })).ToHaveTextAsync("Partager votre CV avec Démo Emploi ?");
            await page.GetByRole(AriaRole.Button, new() { Name = "Valider" }).ClickAsync();
            await Expect(page.GetByRole(AriaRole.Alert)).ToContainTextAsync("Cochez la case");
            await page.GetByLabel("Partager mon CV avec Démo Emploi").CheckAsync();
            var arrival = page.WaitForRequestAsync(r => r.Url.StartsWith(callback, StringComparison.Ordinal));
            await page.GetByRole(AriaRole.Button, new() { Name = "Valider" }).ClickAsync();
            var response = new Uri((await arrival).Url);
            await Expect(page.GetByText("callback reached")).ToBeVisibleAsync();
            var query = System.Web.HttpUtility.ParseQueryString(response.Query);
            Assert.Equal("browser-state", query["state"]);

            var tokens = await SiteStartedConsentTests.RedeemCodeAsync(Factory, "demo-jobsite", "demo-jobsite-secret", query["code"]!, verifier, callback);
            var subject = JsonDocument.Parse(Base64UrlEncoder.Decode(tokens.GetProperty("access_token").GetString()!.Split('.')[1])).RootElement.GetProperty("sub").GetString();
            Assert.Equal(seeker.Id, await gateway.Database.ScalarAsync<string>($"SELECT seeker_id FROM consents WHERE pairwise_id = '{subject}'"));

            // The same consent the Partage page makes, with its receipt (collected at the site's request).
            await page.GotoAsync("/Sharing");
            await Expect(page.GetByLabel("Partager mon CV avec Démo Emploi")).ToBeCheckedAsync();
            await page.GetByRole(AriaRole.Link, new() { Name = "Dernier reçu pour Démo Emploi" }).ClickAsync();
            await Expect(page.Locator(".receipt")).ToContainTextAsync("à la demande du site, après connexion");
        });

    /// <summary>
    /// A save redirects to the page's #main, which the browser focuses once the document is ready; a Tab pressed
    /// before that starts from the top, and the focus then jumps back to main under the test.
    /// </summary>
    private static async Task LandedOnMainAsync(IPage page) =>
        await page.WaitForFunctionAsync("() => document.activeElement && document.activeElement.id === 'main'");

    private static Task<string> FocusedTextAsync(IPage page) =>
        page.EvaluateAsync<string>("() => (document.activeElement.innerText || '').trim()");

    /// <summary>Presses Tab until the focused element has this label (or text); every stop on the way must show its focus.</summary>
    private static async Task TabUntilAsync(IPage page, string name, string by)
    {
        for (var presses = 0; presses < 40; presses++)
        {
            await page.Keyboard.PressAsync("Tab");
            var focused = await page.EvaluateAsync<JsonElement>("""
                () => {
                    const el = document.activeElement;
                    const style = getComputedStyle(el);
                    const label = el.labels && el.labels.length ? el.labels[0].innerText : '';
                    return { label: label.trim(), text: (el.innerText || el.value || '').trim(), outline: style.outlineStyle, width: style.outlineWidth, visible: el.matches(':focus-visible') };
                }
                """);
            Assert.True(focused.GetProperty("visible").GetBoolean() && focused.GetProperty("outline").GetString() != "none",
                $"no visible focus on {focused}");
            if ((by == "label" ? focused.GetProperty("label") : focused.GetProperty("text")).GetString() == name)
            {
                return;
            }
        }

        Assert.Fail($"\"{name}\" was not reached with the Tab key");
    }
}
