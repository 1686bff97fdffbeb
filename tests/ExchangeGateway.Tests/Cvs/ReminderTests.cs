using ExchangeGateway.Tests.Infrastructure;
using MimeKit;

namespace ExchangeGateway.Tests.Cvs;

/// <summary>Seekers hear before their CV goes offline: once per lead time (14 and 3 days by default), and never with its content.</summary>
[Collection(GatewayCollection.Name)]
public sealed class ReminderTests(GatewayFixture fixture)
{
    [Fact]
    public async Task ACvNearingNinetyDaysGetsOneReminderPerLeadTimeWithoutItsContent()
    {
        var marker = "remind-" + Guid.NewGuid().ToString("N");
        var seeker = await Propagation.SeekerWithCvAsync(fixture.Factory, fixture.Actors, marker);

        fixture.Time.Advance(TimeSpan.FromDays(77));
        await fixture.Factory.RunRemindersAsync();
        var first = Assert.Single(MailTo(seeker.Email));
        Assert.Contains("Your CV stops being shared in 13 day(s)", first.Text, StringComparison.Ordinal);
        Assert.Contains("dans 13 jour(s)", first.Text, StringComparison.Ordinal);
        Assert.DoesNotContain(marker, first.Raw, StringComparison.Ordinal);

        await fixture.Factory.RunRemindersAsync();
        Assert.Single(MailTo(seeker.Email));

        fixture.Time.Advance(TimeSpan.FromDays(11));
        await fixture.Factory.RunRemindersAsync();
        var mails = MailTo(seeker.Email);
        Assert.Equal(2, mails.Count);
        var last = Assert.Single(mails, m => m.Path != first.Path);
        Assert.Contains("Your CV stops being shared in 2 day(s)", last.Text, StringComparison.Ordinal);
        Assert.DoesNotContain(marker, last.Raw, StringComparison.Ordinal);

        await fixture.Factory.RunRemindersAsync();
        Assert.Equal(2, MailTo(seeker.Email).Count);
    }

    [Fact]
    public async Task ACvFirstSeenInsideTheLastLeadTimeGetsOneReminderNotOnePerLeadTime()
    {
        var marker = "late-" + Guid.NewGuid().ToString("N");
        var seeker = await Propagation.SeekerWithCvAsync(fixture.Factory, fixture.Actors, marker);

        // The job did not run while the CV crossed the 14-day mark (a pause, a deployment): it finds it at 88 days.
        fixture.Time.Advance(TimeSpan.FromDays(88));
        await fixture.Factory.RunRemindersAsync();
        var mail = Assert.Single(MailTo(seeker.Email));
        Assert.Contains("Your CV stops being shared in 2 day(s)", mail.Text, StringComparison.Ordinal);

        await fixture.Factory.RunRemindersAsync();
        Assert.Single(MailTo(seeker.Email));
    }

    /// <summary>The .eml files the pickup notifier wrote to this address (other seekers get reminders in the same folder).</summary>
    private List<(string Path, string Text, string Raw)> MailTo(string address)
    {
        var directory = fixture.Factory.MailDirectory;
        if (!Directory.Exists(directory))
        {
            return [];
        }

        var mails = new List<(string, string, string)>();
        foreach (var path in Directory.GetFiles(directory, "*.eml"))
        {
            using var message = MimeMessage.Load(path);
            if (message.To.Mailboxes.Any(m => string.Equals(m.Address, address, StringComparison.OrdinalIgnoreCase)))
            {
                mails.Add((path, message.TextBody ?? "", File.ReadAllText(path)));
            }
        }

        return mails;
    }
}
