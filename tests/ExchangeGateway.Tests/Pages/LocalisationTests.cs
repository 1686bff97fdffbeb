using System.Globalization;
using System.Net;
using System.Resources;
using ExchangeGateway.Pages;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

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

    /// <summary>
    /// A time on a page says which offset it is in (Europe/Paris here): 13:00 in January and 14:00 in July are the same noon
    /// UTC, and a receipt read after the clocks changed, or from abroad, must not leave the seeker guessing.
    /// </summary>
    [Fact]
    public void PageTimesNameTheirOffset()
    {
        var format = fixture.Factory.Services.GetRequiredService<PageFormat>();
        var previous = CultureInfo.CurrentCulture;
        CultureInfo.CurrentCulture = CultureInfo.GetCultureInfo("fr-FR");
        try
        {
            var winter = format.DateTime(new DateTimeOffset(2026, 1, 15, 12, 0, 0, TimeSpan.Zero));
            var summer = format.DateTime(new DateTimeOffset(2026, 7, 15, 12, 0, 0, TimeSpan.Zero));
            Assert.Contains("13:00", winter, StringComparison.Ordinal);
            Assert.EndsWith("(UTC+1)", winter, StringComparison.Ordinal);
            Assert.Contains("14:00", summer, StringComparison.Ordinal);
            Assert.EndsWith("(UTC+2)", summer, StringComparison.Ordinal);
        }
        finally
        {
            CultureInfo.CurrentCulture = previous;
        }

        Assert.Equal("UTC", PageFormat.Offset(TimeSpan.Zero));
        Assert.Equal("UTC−3:30", PageFormat.Offset(TimeSpan.FromHours(-3.5)));
        Assert.Equal("UTC+5:45", PageFormat.Offset(new TimeSpan(5, 45, 0)));
    }

    /// <summary>A mistyped zone would show every date in UTC without a word: the gateway refuses to start with it.</summary>
    [Fact]
    public void AnUnknownPagesTimeZoneIsRefusedAtStart()
    {
        Assert.True(PageFormat.IsKnownZone("Europe/Paris"));
        Assert.False(PageFormat.IsKnownZone("Europe/Pariss"));
        var validator = fixture.Factory.Services.GetServices<IValidateOptions<PagesOptions>>();
        var failures = validator.Select(v => v.Validate(Options.DefaultName, new PagesOptions { TimeZone = "Europe/Pariss" }))
            .Where(r => r.Failed).SelectMany(r => r.Failures ?? []).ToList();
        Assert.Contains(failures, f => f.Contains("Pages:TimeZone", StringComparison.Ordinal));
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
