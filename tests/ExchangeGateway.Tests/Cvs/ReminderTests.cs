using ExchangeGateway.Tests.Infrastructure;
using Microsoft.Extensions.Configuration;
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

    /// <summary>
    /// One run takes batch after batch: with batches of two, five CVs nearing their end all hear in the same run (a run of
    /// one batch an hour fell behind a day's CVs at scale, and the rest went offline unwarned). A consent that had
    /// already lapsed when the job first saw it gets no "ends on" mail for a date gone by.
    /// </summary>
    [Fact]
    public async Task OneRunRemindsEveryDueCvBatchAfterBatchAndNoLapsedConsent()
    {
        await using var database = await TestDatabase.CreateAsync();
        await using var gateway = new GatewayFactory(database, new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow),
            settings: new Dictionary<string, string?> { ["Freshness:ReminderBatchSize"] = "2" });
        var actors = new Actors(gateway);
        var site = await Sites.RegisterAsync(gateway, actors);
        var seekers = new List<Person>();
        for (var i = 0; i < 5; i++)
        {
            var seeker = await Propagation.SeekerWithCvAsync(gateway, actors, $"batch-{i}-" + Guid.NewGuid().ToString("N"));
            await Sharing.TickAsync(gateway, seeker.Tokens.AccessToken, site.Id);
            seekers.Add(seeker);
        }

        gateway.Time.Advance(TimeSpan.FromDays(77));
        Assert.Equal(5, await gateway.RunRemindersAsync());
        Assert.All(seekers, seeker => Assert.Single(MailTo(gateway, seeker.Email)));

        // A year on, every consent has lapsed unnoticed (no expiry job ran): nothing to remind of any more.
        gateway.Time.Advance(TimeSpan.FromDays(300));
        Assert.Equal(0, await gateway.RunRemindersAsync());
        Assert.All(seekers, seeker => Assert.Single(MailTo(gateway, seeker.Email)));
    }

    /// <summary>
    /// The reminder window is counted in fixed days, as the offline date is, whatever time zone the database session runs
    /// in: on a server in Paris, 90 days added as calendar days across the spring change of time ended an hour early, and
    /// a reminder went out an hour before its window, telling "15 days" where 14 remained.
    /// </summary>
    [Fact]
    public async Task TheReminderWindowIgnoresTheDatabasesSummerTime()
    {
        await using var database = await TestDatabase.CreateAsync();
        await database.ExecuteAsync("""
            DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET timezone = %L', current_database(), 'Europe/Paris'); END $$
            """);
        var published = new DateTimeOffset(2027, 1, 15, 10, 0, 0, TimeSpan.Zero);
        await using var gateway = new GatewayFactory(database, new Microsoft.Extensions.Time.Testing.FakeTimeProvider(published));
        var actors = new Actors(gateway);
        var seeker = await Propagation.SeekerWithCvAsync(gateway, actors, "dst-" + Guid.NewGuid().ToString("N"));

        // 14 days before going offline (2027-04-15 10:00 UTC) less half an hour: not yet.
        gateway.Time.Advance(new DateTimeOffset(2027, 4, 1, 9, 30, 0, TimeSpan.Zero) - gateway.Time.GetUtcNow());
        Assert.Equal(0, await gateway.RunRemindersAsync());
        Assert.Empty(MailTo(gateway, seeker.Email));

        gateway.Time.Advance(TimeSpan.FromMinutes(31));
        Assert.Equal(1, await gateway.RunRemindersAsync());
        Assert.Contains("dans 14 jour(s)", Assert.Single(MailTo(gateway, seeker.Email)).Text, StringComparison.Ordinal);
    }

    /// <summary>Configured lead times replace the defaults (the binder added them to a filled list), and each is checked.</summary>
    [Fact]
    public void ConfiguredLeadTimesReplaceTheDefaultsAndMustFallInsideMaxAge()
    {
        var configured = new Microsoft.Extensions.Configuration.ConfigurationBuilder()
            .AddInMemoryCollection(new Dictionary<string, string?> { ["RemindBefore:0"] = "7.00:00:00" }).Build()
            .Get<ExchangeGateway.Cvs.FreshnessOptions>()!;
        Assert.Equal([TimeSpan.FromDays(7)], configured.ReminderLeads);
        Assert.Equal([TimeSpan.FromDays(14), TimeSpan.FromDays(3)], new ExchangeGateway.Cvs.FreshnessOptions().ReminderLeads);
        // Defaults longer than a short MaxAge are dropped, not sent the hour a CV is published.
        Assert.Equal([TimeSpan.FromDays(3)], new ExchangeGateway.Cvs.FreshnessOptions { MaxAge = TimeSpan.FromDays(10) }.ReminderLeads);

        var tooLong = new ExchangeGateway.Cvs.FreshnessOptions { RemindBefore = [TimeSpan.FromDays(90)] };
        Assert.NotEmpty(tooLong.Validate(new System.ComponentModel.DataAnnotations.ValidationContext(tooLong)));
        Assert.Empty(configured.Validate(new System.ComponentModel.DataAnnotations.ValidationContext(configured)));

        // The consent's "ends soon" lead too: as long as the consent itself, it would go out the moment consent is given.
        var consent = new ExchangeGateway.Consents.ConsentOptions { MaxAge = TimeSpan.FromDays(30), RemindBefore = TimeSpan.FromDays(30) };
        Assert.NotEmpty(consent.Validate(new System.ComponentModel.DataAnnotations.ValidationContext(consent)));
        var usual = new ExchangeGateway.Consents.ConsentOptions();
        Assert.Empty(usual.Validate(new System.ComponentModel.DataAnnotations.ValidationContext(usual)));
    }

    /// <summary>A reminder mail dates the end of a sharing in the pages' time zone, as the Sharing page does, not in UTC.</summary>
    [Fact]
    public void AnEndAfterElevenPmUtcIsTheNextDayInParis() =>
        Assert.Equal(new DateTime(2026, 7, 1), ExchangeGateway.Pages.PageFormat.InZone(new DateTimeOffset(2026, 6, 30, 22, 30, 0, TimeSpan.Zero), "Europe/Paris").Date);

    /// <summary>
    /// The consent-expiry reminder (Consent:RemindBefore, 30 days, ahead of the year's end): one mail per episode however
    /// often the job runs (every ten minutes), naming the site and the end date as the seeker's Sharing page shows it (Paris time: the
    /// consent ends at 23:30 UTC, already the next day there), and nothing of the CV. A seeker who unticked gets none.
    /// </summary>
    [Fact]
    public async Task AConsentNearingItsEndGetsOneReminderNamingTheSiteAndTheEndDate()
    {
        await using var database = await TestDatabase.CreateAsync();
        await using var gateway = new GatewayFactory(database, new Microsoft.Extensions.Time.Testing.FakeTimeProvider(
            new DateTimeOffset(2027, 3, 1, 23, 30, 0, TimeSpan.Zero)));
        var actors = new Actors(gateway);
        var site = await Sites.RegisterAsync(gateway, actors);
        var marker = "consent-remind-" + Guid.NewGuid().ToString("N");
        var sharing = await Propagation.SeekerWithCvAsync(gateway, actors, marker);
        await Sharing.TickAsync(gateway, sharing.Tokens.AccessToken, site.Id);
        var unticked = await Propagation.SeekerWithCvAsync(gateway, actors, "consent-unticked-" + Guid.NewGuid().ToString("N"));
        await Sharing.TickAsync(gateway, unticked.Tokens.AccessToken, site.Id);
        using (var untick = await Sharing.UntickAsync(gateway, unticked.Tokens.AccessToken, site.Id))
        {
            Assert.Equal(System.Net.HttpStatusCode.OK, untick.StatusCode);
        }

        var expiresAt = new DateTimeOffset(await database.ScalarAsync<DateTime>(
            $"SELECT expires_at FROM consents WHERE seeker_id = '{sharing.Id}' AND recipient_id = '{site.Id}'"), TimeSpan.Zero);
        var endDate = TimeZoneInfo.ConvertTime(expiresAt, TimeZoneInfo.FindSystemTimeZoneById("Europe/Paris")).ToString("yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture);
        // The setup must tell the zones apart, or a mail dated in UTC would pass.
        Assert.NotEqual(expiresAt.UtcDateTime.ToString("yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture), endDate);

        // Day 340: inside the 30 days before the end. Both CVs refreshed, so no freshness reminder is due for either.
        gateway.Time.Advance(TimeSpan.FromDays(340));
        foreach (var seeker in new[] { sharing, unticked })
        {
            using var me = gateway.CreateHttpClient().WithToken(await actors.FreshTokenAsync(seeker));
            Assert.Equal(System.Net.HttpStatusCode.OK, (await me.PostAsync("/api/v1/me/cv/refresh", null)).StatusCode);
        }

        Assert.Equal(1, await gateway.RunRemindersAsync());
        var mail = Assert.Single(MailTo(gateway, sharing.Email));
        Assert.Contains($"Sharing your CV with {site.DisplayName} ends on {endDate}.", mail.Text, StringComparison.Ordinal);
        Assert.Contains($"Le partage de votre CV avec {site.DisplayName} prend fin le {endDate}.", mail.Text, StringComparison.Ordinal);
        Assert.DoesNotContain(marker, mail.Raw, StringComparison.Ordinal);
        Assert.Empty(MailTo(gateway, unticked.Email));

        // The job runs every ten minutes: the episode was reminded once, and stays so.
        gateway.Time.Advance(TimeSpan.FromHours(1));
        Assert.Equal(0, await gateway.RunRemindersAsync());
        gateway.Time.Advance(TimeSpan.FromDays(10));
        Assert.Equal(0, await gateway.RunRemindersAsync());
        Assert.Single(MailTo(gateway, sharing.Email));
        Assert.Empty(MailTo(gateway, unticked.Email));
    }

    /// <summary>The .eml files the pickup notifier wrote to this address (other seekers get reminders in the same folder).</summary>
    private List<(string Path, string Text, string Raw)> MailTo(string address) => MailTo(fixture.Factory, address);

    private static List<(string Path, string Text, string Raw)> MailTo(GatewayFactory factory, string address)
    {
        var directory = factory.MailDirectory;
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
