using ExchangeGateway.Tests.Infrastructure;
using ExchangeGateway.Tests.Pages;
using Microsoft.Extensions.Time.Testing;

namespace ExchangeGateway.Tests.Hosting;

/// <summary>
/// A mail server that refuses a mailbox says which one ("550 &lt;address&gt; rejected"). The gateway goes on (a reminder
/// run completes and does not send again; a reset request answers as ever) and writes that address nowhere: not in its
/// logs, and not in an exception a job would leave in Hangfire's tables.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class RefusedMailTests
{
    [Fact]
    public async Task ARefusedMailboxIsSkippedAndNamedNowhere()
    {
        await using var smtp = SmtpStub.Start();
        await using var database = await TestDatabase.CreateAsync();
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var node = new GatewayFactory(database, clock, captureLogs: true, settings: Smtp(smtp, "none"));
        var actors = new Actors(node);
        var seeker = await Propagation.SeekerWithCvAsync(node, actors, "refused-" + Guid.NewGuid().ToString("N"));

        clock.Advance(TimeSpan.FromDays(77));
        var reminded = await node.RunRemindersAsync();
        Assert.True(reminded >= 1, $"{reminded} reminders");
        Assert.Contains(seeker.Email, smtp.Refused);
        var tries = smtp.Refused.Count(a => a == seeker.Email);

        // Marked as reminded: the next run does not knock on the same door.
        await node.RunRemindersAsync();
        Assert.Equal(tries, smtp.Refused.Count(a => a == seeker.Email));

        // The reset page answers as for anyone; its message is refused too, after the answer.
        using (var visitor = new PageSession(node))
        using (var asked = await visitor.SubmitAsync("/Account/ForgotPassword", new() { ["Email"] = seeker.Email }))
        {
            Assert.Contains("Si un compte existe avec cette adresse", await asked.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        await Mailbox.SettledAsync(node);
        Assert.Equal(tries + 1, smtp.Refused.Count(a => a == seeker.Email));
        var lines = node.Logs!.ToList();
        Assert.Contains(lines, line => line.Contains("refused a reminder", StringComparison.Ordinal));
        Assert.Contains(lines, line => line.Contains("could not be sent", StringComparison.Ordinal));
        Assert.DoesNotContain(lines, line => line.Contains(seeker.Email, StringComparison.OrdinalIgnoreCase));
        Assert.Equal(0L, await database.ScalarAsync<long>(
            $"SELECT count(*) FROM hangfire.state WHERE data::text ILIKE '%{seeker.Email}%' OR reason ILIKE '%{seeker.Email}%'"));
    }

    /// <summary>
    /// A relay that throttles (a 4xx to a recipient: try later) refuses nothing for good: the run fails and hands its
    /// reminders back, and the retry sends them. Taken for a refused mailbox, the reminder was marked sent and lost, and so
    /// was every other of the run while the throttle lasted.
    /// </summary>
    [Fact]
    public async Task AThrottlingRelayDelaysARemindersButLosesNone()
    {
        await using var smtp = SmtpStub.StartAccepting();
        await using var database = await TestDatabase.CreateAsync();
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var node = new GatewayFactory(database, clock, settings: Smtp(smtp, "none"));
        var seeker = await Propagation.SeekerWithCvAsync(node, new Actors(node), "throttled-" + Guid.NewGuid().ToString("N"));

        clock.Advance(TimeSpan.FromDays(77));
        smtp.ThrottleNext = 1;
        await Assert.ThrowsAnyAsync<Exception>(() => node.RunRemindersAsync());
        Assert.DoesNotContain(seeker.Email, smtp.Delivered);

        Assert.True(await node.RunRemindersAsync() >= 1);
        Assert.Contains(seeker.Email, smtp.Delivered);
    }

    /// <summary>
    /// A run's reminders go over one SMTP session, not one each (a connection, a TLS handshake and a login per mail held a
    /// run to a few mails a second), and a mailbox the server refuses does not end the session for the others.
    /// </summary>
    [Fact]
    public async Task ARunsRemindersShareOneSession()
    {
        await using var smtp = SmtpStub.Start();
        await using var database = await TestDatabase.CreateAsync();
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var node = new GatewayFactory(database, clock, settings: Smtp(smtp, "none"));
        var actors = new Actors(node);
        var seekers = new List<Person>();
        for (var i = 0; i < 3; i++)
        {
            seekers.Add(await Propagation.SeekerWithCvAsync(node, actors, "session-" + Guid.NewGuid().ToString("N")));
        }

        clock.Advance(TimeSpan.FromDays(77));
        Assert.Equal(3, await node.RunRemindersAsync());
        Assert.All(seekers, seeker => Assert.Contains(seeker.Email, smtp.Refused));
        Assert.True(smtp.Sessions == 1, $"{smtp.Sessions} sessions: {string.Join(" ", smtp.Verbs)}");
        Assert.Equal(3, smtp.Verbs.Count(v => v == "MAIL"));
    }

    /// <summary>
    /// Mails the server takes go over one session too, and a server that closes the session after a number of mails (a
    /// 421 on the next one, as relays with a per-session limit do) loses none: the mail it turned away is sent again on a
    /// new session, once.
    /// </summary>
    [Fact]
    public async Task ASessionTheServerClosesLosesNoMail()
    {
        await using var smtp = SmtpStub.StartAccepting(mailsPerSession: 2);
        await using var database = await TestDatabase.CreateAsync();
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var node = new GatewayFactory(database, clock, settings: Smtp(smtp, "none"));
        var actors = new Actors(node);
        var seekers = new List<Person>();
        for (var i = 0; i < 5; i++)
        {
            seekers.Add(await Propagation.SeekerWithCvAsync(node, actors, "closing-" + Guid.NewGuid().ToString("N")));
        }

        clock.Advance(TimeSpan.FromDays(77));
        Assert.Equal(5, await node.RunRemindersAsync());
        Assert.Equal(seekers.Select(s => s.Email).Order(), smtp.Delivered.Order());
        // Two mails a session: three sessions, where one a mail would have opened five.
        Assert.Equal(3, smtp.Sessions);
    }

    /// <summary>
    /// By default the mail server must offer STARTTLS: one that does not (or whose offer a man in the middle stripped) gets
    /// no address, no reset link and no login in clear. The run fails (Hangfire retries it) and has sent nothing.
    /// </summary>
    [Fact]
    public async Task AServerWithoutStartTlsGetsNothingByDefault()
    {
        await using var smtp = SmtpStub.Start();
        await using var database = await TestDatabase.CreateAsync();
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var node = new GatewayFactory(database, clock, settings: Smtp(smtp, security: null));
        var seeker = await Propagation.SeekerWithCvAsync(node, new Actors(node), "plain-" + Guid.NewGuid().ToString("N"));

        clock.Advance(TimeSpan.FromDays(77));
        await Assert.ThrowsAsync<ExchangeGateway.Hosting.NotifierUnavailableException>(() => node.RunRemindersAsync());
        Assert.DoesNotContain(seeker.Email, smtp.Refused);
        Assert.Contains("EHLO", smtp.Verbs);
        Assert.DoesNotContain("MAIL", smtp.Verbs);
    }

    /// <summary>
    /// A node mailing through the stub; <paramref name="security"/> "none" because the stub offers no STARTTLS (a relay on
    /// the same host, the one case for plain SMTP), null for the default, which requires it.
    /// </summary>
    private static Dictionary<string, string?> Smtp(SmtpStub smtp, string? security)
    {
        var settings = new Dictionary<string, string?>
        {
            ["Notifier:Mode"] = "smtp", ["Notifier:SmtpHost"] = "127.0.0.1", ["Notifier:SmtpPort"] = smtp.Port.ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
        if (security is not null)
        {
            settings["Notifier:SmtpSecurity"] = security;
        }

        return settings;
    }
}
