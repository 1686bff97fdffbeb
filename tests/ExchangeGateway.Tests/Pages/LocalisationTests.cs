using System.Globalization;
using System.Net;
using System.Resources;
using ExchangeGateway.Pages;
using ExchangeGateway.Tests.Infrastructure;

namespace ExchangeGateway.Tests.Pages;

[Collection(GatewayCollection.Name)]
public sealed class LocalisationTests(GatewayFixture fixture)
{
    [Fact]
    public async Task PagesAreFrenchByDefaultAndEnglishOnceChosenWhateverTheBrowserAsksFor()
    {
        using var session = new PageSession(fixture.Factory);
        session.Http.DefaultRequestHeaders.AcceptLanguage.ParseAdd("en-US,en;q=0.9");
        var french = await session.GetPageAsync("/Account/Login");
        Assert.Contains("<html lang=\"fr\">", french, StringComparison.Ordinal);
        Assert.Contains("<h1>Connexion</h1>", french, StringComparison.Ordinal);

        using (var switched = await session.SubmitAsync("/Account/Login", new() { ["culture"] = "en", ["returnUrl"] = "/Account/Login" }, "/Culture"))
        {
            Assert.Equal(HttpStatusCode.Redirect, switched.StatusCode);
            Assert.Equal("/Account/Login", switched.Headers.Location!.OriginalString);
        }

        var english = await session.GetPageAsync("/Account/Login");
        Assert.Contains("<html lang=\"en\">", english, StringComparison.Ordinal);
        Assert.Contains("<h1>Sign in</h1>", english, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TheLanguageSwitchGoesBackOnlyToThisSite()
    {
        using var session = new PageSession(fixture.Factory);
        using var switched = await session.SubmitAsync("/Account/Login", new() { ["culture"] = "en", ["returnUrl"] = "https://evil.example/" }, "/Culture");
        Assert.Equal("/", switched.Headers.Location!.OriginalString);
    }

    [Theory]
    [InlineData("fr", 0, "0 jour")]
    [InlineData("fr", 1, "1 jour")]
    [InlineData("fr", 2, "2 jours")]
    [InlineData("fr", 1500, "1\u202f500 jours")]
    [InlineData("en", 0, "0 days")]
    [InlineData("en", 1, "1 day")]
    [InlineData("en", 2, "2 days")]
    [InlineData("en", 1500, "1,500 days")]
    public void DaysArePluralisedAndNumberedByTheLanguageRules(string culture, int days, string expected)
    {
        var format = fixture.Factory.Services.GetService(typeof(PageFormat)) as PageFormat;
        var (before, beforeUi) = (CultureInfo.CurrentCulture, CultureInfo.CurrentUICulture);
        try
        {
            CultureInfo.CurrentCulture = CultureInfo.CurrentUICulture = new CultureInfo(culture);
            Assert.Equal(expected, format!.Plural("Days", days));
        }
        finally
        {
            (CultureInfo.CurrentCulture, CultureInfo.CurrentUICulture) = (before, beforeUi);
        }
    }

    [Fact]
    public void EveryFrenchTextHasItsEnglishTranslation()
    {
        var resources = new ResourceManager("ExchangeGateway.Resources.Pages.PageText", typeof(PageText).Assembly);
        var french = Keys(resources.GetResourceSet(CultureInfo.InvariantCulture, createIfNotExists: true, tryParents: false)!);
        var english = Keys(resources.GetResourceSet(new CultureInfo("en"), createIfNotExists: true, tryParents: false)!);
        Assert.NotEmpty(french);
        Assert.Equal(french, english);

        static SortedSet<string> Keys(ResourceSet set) =>
            new(set.Cast<System.Collections.DictionaryEntry>().Select(e => (string)e.Key), StringComparer.Ordinal);
    }
}
