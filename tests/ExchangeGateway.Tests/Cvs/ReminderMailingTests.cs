using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using ExchangeGateway.Hosting;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Time.Testing;

namespace ExchangeGateway.Tests.Cvs;

/// <summary>
/// Reminders are mailed after their rows are claimed and committed: a seeker who acts on the mail (or on anything else)
/// while the batch is still being mailed is not kept waiting behind the mail server, and a mail server that cannot be
/// reached gives the unsent reminders back to the next run instead of losing them.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class ReminderMailingTests
{
    [Fact]
    public async Task AnUntickWhileTheRemindersAreBeingMailedDoesNotWaitForTheMailServer()
    {
        var notifier = new HeldNotifier();
        await using var database = await TestDatabase.CreateAsync();
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var node = new GatewayFactory(database, clock, services: s => s.Replace(ServiceDescriptor.Singleton<INotifier>(notifier)));
        var actors = new Actors(node);
        var seeker = await Propagation.SeekerWithCvAsync(node, actors, "reminded-" + Guid.NewGuid().ToString("N"));
        var site = await Sharing.RecipientIdAsync(node, seeker.Tokens.AccessToken, "Démo Emploi");
        await Sharing.TickAsync(node, seeker.Tokens.AccessToken, site);

        // Eleven months on: the consent's expiry reminder is due (the CV was refreshed, so only that one).
        clock.Advance(TimeSpan.FromDays(340));
        var token = await actors.FreshTokenAsync(seeker);
        using (var me = node.CreateHttpClient().WithToken(token))
        {
            Assert.Equal(HttpStatusCode.OK, (await me.PostAsync("/api/v1/me/cv/refresh", null)).StatusCode);
        }

        notifier.Armed = true;
        var run = node.RunRemindersAsync();
        await notifier.Sending.Task.WaitAsync(TimeSpan.FromSeconds(30));
        var untick = Sharing.UntickAsync(node, token, site);
        var first = await Task.WhenAny(untick, Task.Delay(TimeSpan.FromSeconds(15)));
        notifier.Release.SetResult();
        Assert.True(first == untick, "the untick waited for the reminder mails");
        using (var response = await untick)
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        Assert.Equal(1, await run);
        Assert.Equal(seeker.Email, Assert.Single(notifier.Sent).To);
    }

    [Fact]
    public async Task RemindersNotSentBecauseTheMailServerIsDownAreSentByTheNextRun()
    {
        var notifier = new HeldNotifier();
        notifier.Release.SetResult();
        await using var database = await TestDatabase.CreateAsync();
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var node = new GatewayFactory(database, clock, services: s => s.Replace(ServiceDescriptor.Singleton<INotifier>(notifier)));
        var actors = new Actors(node);
        var seeker = await Propagation.SeekerWithCvAsync(node, actors, "unreached-" + Guid.NewGuid().ToString("N"));

        // 77 days: the 14-day freshness reminder is due.
        clock.Advance(TimeSpan.FromDays(77));
        notifier.Armed = notifier.Down = true;
        await Assert.ThrowsAsync<NotifierUnavailableException>(node.RunRemindersAsync);
        Assert.Empty(notifier.Sent);
        Assert.Equal(0L, await database.ScalarAsync<long>($"SELECT count(*) FROM cvs WHERE seeker_id = '{seeker.Id}' AND last_reminder_lead IS NOT NULL"));

        notifier.Down = false;
        Assert.Equal(1, await node.RunRemindersAsync());
        Assert.Equal(seeker.Email, Assert.Single(notifier.Sent).To);
    }

    /// <summary>
    /// The batch's addresses are read when it is claimed, and mailing it can take a minute: a seeker who erases their account
    /// meanwhile ("forget me") is not mailed afterwards at an address the gateway no longer holds.
    /// </summary>
    [Fact]
    public async Task ASeekerWhoErasesTheirAccountWhileTheBatchIsMailedIsNotMailed()
    {
        var notifier = new HeldNotifier();
        await using var database = await TestDatabase.CreateAsync();
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var node = new GatewayFactory(database, clock, services: s => s.Replace(ServiceDescriptor.Singleton<INotifier>(notifier)));
        var actors = new Actors(node);
        var first = await Propagation.SeekerWithCvAsync(node, actors, "first-" + Guid.NewGuid().ToString("N"));
        clock.Advance(TimeSpan.FromMinutes(1));
        var leaving = await Propagation.SeekerWithCvAsync(node, actors, "leaving-" + Guid.NewGuid().ToString("N"));

        clock.Advance(TimeSpan.FromDays(77));
        var token = await actors.FreshTokenAsync(leaving);
        notifier.Armed = true;
        var run = node.RunRemindersAsync();
        await notifier.Sending.Task.WaitAsync(TimeSpan.FromSeconds(30));
        using (var me = node.CreateHttpClient().WithToken(token))
        {
            Assert.Equal(HttpStatusCode.OK, (await me.DeleteAsync("/api/v1/me")).StatusCode);
        }

        notifier.Release.SetResult();
        await run;
        Assert.Equal(first.Email, Assert.Single(notifier.Sent).To);
    }

    /// <summary>
    /// A mail server the test holds once armed (account mails before that pass unrecorded): the first send waits for
    /// <see cref="Release"/>; when down, it cannot be reached.
    /// </summary>
    private sealed class HeldNotifier : INotifier
    {
        public volatile bool Armed;
        public volatile bool Down;

        public TaskCompletionSource Sending { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public TaskCompletionSource Release { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public ConcurrentQueue<Notice> Sent { get; } = new();

        public async Task SendAsync(Notice notice, CancellationToken cancellationToken)
        {
            if (!Armed)
            {
                return;
            }

            if (Down)
            {
                throw new SocketException((int)SocketError.ConnectionRefused);
            }

            Sending.TrySetResult();
            await Release.Task.WaitAsync(cancellationToken);
            Sent.Enqueue(notice);
        }
    }
}
