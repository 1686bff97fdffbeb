using System.Net;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.Extensions.Time.Testing;

namespace ExchangeGateway.Tests.Pages;

/// <summary>
/// Account mail goes out after the page has answered: a mail server that refuses cannot turn "forgotten password" into a
/// test of who has an account, and one address cannot be flooded through the forms.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class AccountMailTests(GatewayFixture fixture)
{
    private const string ResetNotice = "Si un compte existe avec cette adresse";

    [Fact]
    public async Task AMailServerThatRefusesChangesNothingTheVisitorSeesAndNoAddressIsLogged()
    {
        var (holder, email, _) = await PageSession.SignUpAsync(fixture.Factory);
        holder.Dispose();
        // A node of the same deployment whose mail server is not there: nothing listens on the port FreePort just handed back.
        await using var node = new GatewayFactory(fixture.Database, new FakeTimeProvider(DateTimeOffset.UtcNow), issuer: fixture.Factory.Issuer,
            settings: new Dictionary<string, string?>
            {
                ["Notifier:Mode"] = "smtp", ["Notifier:SmtpHost"] = "127.0.0.1", ["Notifier:SmtpPort"] = GatewayFactory.FreePort().ToString(System.Globalization.CultureInfo.InvariantCulture),
            },
            captureLogs: true);

        var unknown = $"nobody-{Guid.NewGuid():N}@example.test";
        var answers = new List<(HttpStatusCode Status, string Body)>();
        foreach (var address in new[] { email, unknown })
        {
            using var visitor = new PageSession(node);
            using var response = await visitor.SubmitAsync("/Account/ForgotPassword", new() { ["Email"] = address });
            answers.Add((response.StatusCode, Notice(await response.Content.ReadAsStringAsync())));
        }

        Assert.All(answers, a => Assert.Equal(HttpStatusCode.OK, a.Status));
        Assert.Contains(ResetNotice, answers[0].Body, StringComparison.Ordinal);
        Assert.Equal(answers[1].Body, answers[0].Body);

        await Mailbox.SettledAsync(node);
        var lines = node.Logs!.ToList();
        Assert.Contains(lines, line => line.Contains("could not be sent", StringComparison.Ordinal));
        Assert.DoesNotContain(lines, line => line.Contains(email, StringComparison.OrdinalIgnoreCase));
    }

    [Fact]
    public async Task AnAddressGetsAtMostItsHourlyShareOfAccountMail()
    {
        var (first, flooded, _) = await PageSession.SignUpAsync(fixture.Factory);
        var (second, other, _) = await PageSession.SignUpAsync(fixture.Factory);
        first.Dispose();
        second.Dispose();
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var node = new GatewayFactory(fixture.Database, clock, issuer: fixture.Factory.Issuer,
            settings: new Dictionary<string, string?> { ["Notifier:PerAddressPerHour"] = "3" });

        var notices = new HashSet<string>();
        for (var i = 0; i < 5; i++)
        {
            notices.Add(await AskForResetAsync(node, i % 2 == 0 ? flooded : flooded.ToUpperInvariant()));
        }

        // Five asks, three messages; every answer the same, so the visitor cannot tell where the limit fell.
        Assert.Equal(3, (await Mailbox.ForAsync(node, flooded)).Count);
        Assert.Contains(ResetNotice, Assert.Single(notices), StringComparison.Ordinal);

        // Another address is not held back by the first one's count.
        await AskForResetAsync(node, other);
        Assert.Single(await Mailbox.ForAsync(node, other));

        // An hour later the address has a new share.
        clock.Advance(TimeSpan.FromMinutes(61));
        await AskForResetAsync(node, flooded);
        Assert.Equal(4, (await Mailbox.ForAsync(node, flooded)).Count);
    }

    [Theory]
    [InlineData("/Account/Register")]
    [InlineData("/Account/ForgotPassword")]
    public async Task ABlankAddressIsExplainedOnThePage(string page)
    {
        using var visitor = new PageSession(fixture.Factory);
        using var response = await visitor.SubmitAsync(page, new() { ["Email"] = "   " });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Contains("class=\"error-summary\"", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    private static async Task<string> AskForResetAsync(GatewayFactory node, string address)
    {
        using var visitor = new PageSession(node);
        using var response = await visitor.SubmitAsync("/Account/ForgotPassword", new() { ["Email"] = address });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return Notice(await response.Content.ReadAsStringAsync());
    }

    /// <summary>The page's message to the visitor (the rest of the page carries a fresh antiforgery token each time).</summary>
    private static string Notice(string html)
    {
        var start = html.IndexOf("<main", StringComparison.Ordinal);
        var end = html.IndexOf("</main>", StringComparison.Ordinal);
        Assert.True(start >= 0 && end > start, "the page has no main element");
        return System.Text.RegularExpressions.Regex.Replace(html[start..end], "name=\"__RequestVerificationToken\"[^>]*>", "");
    }
}
