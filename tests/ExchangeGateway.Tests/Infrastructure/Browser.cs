using Microsoft.Playwright;

namespace ExchangeGateway.Tests.Infrastructure;

/// <summary>
/// One headless Chromium (Debian's, never a downloaded one) for a collection of browser tests, driven by Playwright's
/// bundled driver. <c>scripts/test</c> exports EXCHANGEGATEWAY_CHROMIUM; without it the browser tests are skipped.
/// </summary>
public sealed class BrowserFixture : IAsyncLifetime
{
    public const string Variable = "EXCHANGEGATEWAY_CHROMIUM";

    private IPlaywright? _playwright;

    public IBrowser Browser { get; private set; } = null!;

    /// <summary>Why browser tests cannot run here, or null when they can.</summary>
    public static string? SkipReason =>
        Environment.GetEnvironmentVariable(Variable) is not { Length: > 0 } path
            ? $"{Variable} is not set: run the tests with scripts/test, which finds or installs Chromium."
            : File.Exists(path) ? null : $"{Variable}={path} does not exist.";

    public async Task InitializeAsync()
    {
        if (SkipReason is not null)
        {
            return;
        }

        // Expect's own default (5 s) is shorter than an action's below: a slow POST on a loaded CI machine is not a failure.
        Assertions.SetDefaultExpectTimeout(15_000);
        _playwright = await Playwright.CreateAsync();
        Browser = await _playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = Environment.GetEnvironmentVariable(Variable),
            Headless = true,
            Args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
        });
    }

    public async Task DisposeAsync()
    {
        if (Browser is not null)
        {
            await Browser.CloseAsync();
        }

        _playwright?.Dispose();
    }

    /// <summary>
    /// Runs a browser test in its own context (own cookies) on the gateway; on failure saves a full-page screenshot to
    /// TestResults/screenshots (or EXCHANGEGATEWAY_SCREENSHOTS) and names the file in the failure.
    /// </summary>
    public async Task RunAsync(GatewayFactory factory, string testName, Func<IPage, Task> test)
    {
        await using var context = await Browser.NewContextAsync(new BrowserNewContextOptions { BaseURL = factory.BaseAddress.AbsoluteUri });
        context.SetDefaultTimeout(15_000);
        var page = await context.NewPageAsync();
        try
        {
            await test(page);
        }
        catch (Exception failure)
        {
            var folder = Environment.GetEnvironmentVariable("EXCHANGEGATEWAY_SCREENSHOTS")
                ?? Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "TestResults", "screenshots"));
            Directory.CreateDirectory(folder);
            var file = Path.Combine(folder, $"{testName}-{DateTime.UtcNow:yyyyMMdd-HHmmss}.png");
            try
            {
                await page.ScreenshotAsync(new PageScreenshotOptions { Path = file, FullPage = true });
            }
            catch (PlaywrightException)
            {
                file = "(no screenshot: the page was gone)";
            }

            throw new InvalidOperationException($"{testName} failed at {page.Url}; screenshot: {file}", failure);
        }
    }
}

/// <summary>A test that needs Chromium: skipped, with the reason, where there is none.</summary>
public sealed class BrowserFactAttribute : FactAttribute
{
    public BrowserFactAttribute()
    {
        Skip = BrowserFixture.SkipReason;
    }
}

/// <summary>Browser tests get a gateway of their own: they move its clock, which the other collections must not see.</summary>
[CollectionDefinition(Name)]
public sealed class BrowserCollection : ICollectionFixture<GatewayFixture>, ICollectionFixture<BrowserFixture>
{
    public const string Name = "browser";
}
