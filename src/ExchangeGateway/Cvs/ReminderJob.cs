using System.Globalization;
using ExchangeGateway.Consents;
using ExchangeGateway.Data;
using ExchangeGateway.Hosting;
using Hangfire;
using MailKit.Net.Smtp;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace ExchangeGateway.Cvs;

/// <summary>
/// Tells seekers before something ends without them: their CV going offline (at each configured lead time, once) and a
/// consent lapsing. Rows are claimed with SKIP LOCKED and marked before the mails go, so several nodes never remind twice
/// and nothing waits for the mail server. A run takes batch after batch until one comes back short or its time is spent
/// (a single batch an hour capped reminders at 12 000 a day per lead, far below a day's CVs at scale, and the rest went
/// offline unwarned); the mails of a run share one SMTP session (<see cref="SmtpNotifier"/>). A reminder is sent at most once: a run that fails (mail server unreachable, cancelled) gives its
/// unsent claims back, but a node that dies mid-batch loses the rest of that batch.
/// </summary>
[AutomaticRetry(Attempts = Jobs.RetryAttempts)]
public sealed class ReminderJob(
    GatewayDbContext db, INotifier notifier, TimeProvider time, IOptions<FreshnessOptions> freshness, IOptions<ConsentOptions> consents,
    IOptions<Pages.PagesOptions> pages, Microsoft.AspNetCore.Identity.ILookupNormalizer normalizer, ILogger<ReminderJob> logger,
    Hosting.GatewayMetrics metrics)
{
    /// <summary>
    /// Well inside Hangfire's invisibility timeout (10 minutes), after which another worker would take the same job while
    /// this run still mails: the budget is checked between batches, and a batch of mails can take a minute.
    /// </summary>
    private static readonly TimeSpan MaxRunTime = TimeSpan.FromMinutes(5);

    public async Task<int> RunAsync(CancellationToken cancellationToken)
    {
        var sent = 0;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        async Task DrainAsync(Func<CancellationToken, Task<int>> batch, TimeSpan until)
        {
            int claimed;
            do
            {
                claimed = await batch(cancellationToken);
                sent += claimed;
                // The batch's rows are done with: a run of many batches must not keep them all tracked.
                db.ChangeTracker.Clear();
            }
            while (claimed == freshness.Value.ReminderBatchSize && clock.Elapsed < until && !cancellationToken.IsCancellationRequested);
        }

        // Shortest lead first: a CV already inside it (the job was paused while it crossed the longer ones) gets that one
        // reminder, which also marks the longer leads as passed; longest first would send it one mail per lead. The CVs
        // have half the budget, so that a backlog of them cannot starve the consents (which lapse unwarned otherwise).
        foreach (var lead in freshness.Value.ReminderLeads.Order())
        {
            await DrainAsync(ct => RemindFreshnessAsync(lead, ct), MaxRunTime / 2);
        }

        await DrainAsync(RemindConsentExpiryAsync, MaxRunTime);
        return sent;
    }

    /// <summary>
    /// Claims and marks a batch in a short transaction, then mails after the commit: mailing while the rows stayed locked
    /// made an untick, an erasure or the very refresh the mail asks for wait behind a whole batch of mails (and time out).
    /// </summary>
    private async Task<int> RemindFreshnessAsync(TimeSpan lead, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        var maxAge = freshness.Value.MaxAge;
        var notices = new List<(Guid Id, TimeSpan? Previous, Notice? Notice)>();
        await using (var transaction = await db.Database.BeginTransactionAsync(cancellationToken))
        {
            // Bounds as instants, worked out here: a TimeSpan of days reaches PostgreSQL as an interval of calendar days, which
            // it adds in the session's time zone, so across a change of summer time the window moved by an hour, and the mail
            // then told one day more than the offline date the pages show (fixed 24-hour days, as OfflineAt counts).
            var remindFrom = now - maxAge + lead;
            var offlineFrom = now - maxAge;
            var due = await db.Set<Cv>().FromSql($"""
                SELECT * FROM cvs
                WHERE state = 'Published' AND refreshed_at <= {remindFrom} AND refreshed_at > {offlineFrom}
                  AND (last_reminder_lead IS NULL OR last_reminder_lead > {lead})
                ORDER BY refreshed_at LIMIT {freshness.Value.ReminderBatchSize} FOR UPDATE SKIP LOCKED
                """).ToListAsync(cancellationToken);
            var emails = await EmailsOfAsync(due.Select(c => c.SeekerId).ToList(), cancellationToken);
            foreach (var cv in due)
            {
                Notice? notice = null;
                if (emails.TryGetValue(cv.SeekerId, out var email))
                {
                    var days = Math.Max(1, (int)Math.Ceiling((cv.OfflineAt(maxAge) - now).TotalDays));
                    notice = new Notice(email, "Votre CV sera bientôt hors ligne / Your CV goes offline soon",
                        string.Create(CultureInfo.InvariantCulture,
                            $"Votre CV ne sera plus partagé dans {days} jour(s). Connectez-vous et cliquez sur « Je suis toujours en recherche ».\n\n" +
                            $"Your CV stops being shared in {days} day(s). Sign in and click \"I am still looking\"."));
                }

                notices.Add((cv.Id, cv.LastReminderLead, notice));
                cv.Reminded(lead);
            }

            await db.SaveChangesAsync(cancellationToken);
            await transaction.CommitAsync(cancellationToken);
        }

        // Not sent after all (the mail server unreachable, the run cancelled): the claim is given back for the retry.
        await SendAllAsync(notices.Select(n => n.Notice).ToList(), async first =>
        {
            var ids = notices.Skip(first).Select(n => n.Id).ToArray();
            var previous = notices.Skip(first).Select(n => n.Previous).ToArray();
            await db.Database.ExecuteSqlAsync($"""
                UPDATE cvs SET last_reminder_lead = p.lead
                FROM unnest({ids}, {previous}) AS p(id, lead)
                WHERE cvs.id = p.id AND cvs.last_reminder_lead = {lead}
                """, CancellationToken.None);
        }, cancellationToken);
        if (notices.Count > 0)
        {
            logger.LogInformation("Sent {Count} freshness reminders ({LeadDays} days ahead)", notices.Count, lead.TotalDays);
        }

        return notices.Count;
    }

    private async Task<int> RemindConsentExpiryAsync(CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        var before = consents.Value.RemindBefore;
        var notices = new List<(Guid Id, Notice? Notice)>();
        await using (var transaction = await db.Database.BeginTransactionAsync(cancellationToken))
        {
            // NO KEY UPDATE: a disclosure recorded meanwhile (under the chain lock) needs only KEY SHARE on its consent.
            var due = await db.Set<Consent>().FromSql($"""
                SELECT * FROM consents
                WHERE state = 'Active' AND NOT expiry_reminder_sent AND expires_at <= {now + before} AND expires_at > {now}
                ORDER BY expires_at LIMIT {freshness.Value.ReminderBatchSize} FOR NO KEY UPDATE SKIP LOCKED
                """).ToListAsync(cancellationToken);
            var emails = await EmailsOfAsync(due.Where(c => c.SeekerId is not null).Select(c => c.SeekerId!).ToList(), cancellationToken);
            var names = await db.Recipients.AsNoTracking().Where(r => due.Select(c => c.RecipientId).Contains(r.Id)).ToDictionaryAsync(r => r.Id, r => r.DisplayName, cancellationToken);
            foreach (var consent in due)
            {
                Notice? notice = null;
                if (consent.SeekerId is not null && emails.TryGetValue(consent.SeekerId, out var email))
                {
                    // The date the seeker's Sharing page shows for it: in the pages' time zone, not UTC (a consent given
                    // after 23:00 in Paris ends a day later there than in UTC).
                    var date = Pages.PageFormat.InZone(consent.ExpiresAt, pages.Value.TimeZone).ToString("yyyy-MM-dd", CultureInfo.InvariantCulture);
                    notice = new Notice(email, "Votre partage de CV arrive à échéance / Your CV sharing ends soon",
                        $"Le partage de votre CV avec {names[consent.RecipientId]} prend fin le {date}. Ensuite, cochez de nouveau la case pour continuer à partager.\n\n" +
                        $"Sharing your CV with {names[consent.RecipientId]} ends on {date}. After that, tick the box again to go on sharing.");
                }

                notices.Add((consent.Id, notice));
                consent.ExpiryReminded();
            }

            await db.SaveChangesAsync(cancellationToken);
            await transaction.CommitAsync(cancellationToken);
        }

        await SendAllAsync(notices.Select(n => n.Notice).ToList(), async first =>
        {
            var unsent = notices.Skip(first).Select(n => n.Id).ToList();
            await db.Set<Consent>().Where(c => unsent.Contains(c.Id))
                .ExecuteUpdateAsync(c => c.SetProperty(x => x.ExpiryReminderSent, false), CancellationToken.None);
        }, cancellationToken);
        return notices.Count;
    }

    /// <summary>
    /// Sends in order; when the run cannot go on (mail server unreachable, cancelled), <paramref name="giveBack"/> gets the
    /// index of the first notice not sent, so those rows are claimed again by the retry, and the failure goes on up.
    /// </summary>
    private async Task SendAllAsync(List<Notice?> notices, Func<int, Task> giveBack, CancellationToken cancellationToken)
    {
        for (var i = 0; i < notices.Count; i++)
        {
            try
            {
                // Sending a batch can take a minute: a seeker who erased their account meanwhile is not mailed after all
                // (one look-up per mail on Identity's normalized-address index, next to an SMTP exchange).
                if (notices[i] is { } notice && await StillHeldAsync(notice.To, cancellationToken))
                {
                    await SendAsync(notice, cancellationToken);
                }
            }
            // The database too, since each mail's address is checked there first: the rest of a claimed batch must be given
            // back, or its seekers (already marked reminded) would never get this reminder.
            catch (Exception e) when (e is NotifierUnavailableException or OperationCanceledException or System.Data.Common.DbException)
            {
                try
                {
                    await giveBack(i);
                }
                catch (Exception lost) when (lost is not OperationCanceledException)
                {
                    // The run's own failure is what goes up; these reminders stay marked and are not sent.
                    logger.LogWarning("{Count} reminders could not be given back for the retry ({Error}); they are not sent", notices.Count - i, lost.GetType().Name);
                }

                throw;
            }
        }
    }

    /// <summary>
    /// A message the server refuses for good (its recipient, or the message itself: a 5xx), or an address that cannot be
    /// written, is logged (by kind and SMTP status only) and not tried again: failing the run would roll back the batch and mail the
    /// reminders already sent once more on every retry. A server that cannot be reached fails the run, to be retried, with
    /// an exception of our own: a mail server's message can quote the address, and Hangfire keeps a failed run's exception
    /// text (inner exceptions included) in its tables.
    /// </summary>
    private async Task SendAsync(Notice notice, CancellationToken cancellationToken)
    {
        try
        {
            await notifier.SendAsync(notice, cancellationToken);
            metrics.MailSent.Add(1, new KeyValuePair<string, object?>("kind", "reminder"));
        }
        catch (SmtpCommandException e) when ((int)e.StatusCode >= 500)
        {
            // Only a permanent refusal (5xx): a 4xx is the server's "try later" (a throttling relay, a full queue), which
            // fails the run below, so that the rest of the batch is handed back and sent on the retry.
            metrics.MailFailed.Add(1, new KeyValuePair<string, object?>("kind", "reminder"));
            logger.LogWarning("The mail server refused a reminder ({Error}, SMTP status {Status}); it is not sent again", e.ErrorCode, (int)e.StatusCode);
        }
        catch (MimeKit.ParseException)
        {
            metrics.MailFailed.Add(1, new KeyValuePair<string, object?>("kind", "reminder"));
            logger.LogWarning("A reminder's address could not be written as a mailbox; it is not sent");
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            throw new NotifierUnavailableException(e.GetType().Name);
        }
    }

    private Task<bool> StillHeldAsync(string address, CancellationToken cancellationToken)
    {
        var normalized = normalizer.NormalizeEmail(address);
        return db.Users.AsNoTracking().AnyAsync(u => u.NormalizedEmail == normalized, cancellationToken);
    }

    private Task<Dictionary<string, string>> EmailsOfAsync(List<string> seekerIds, CancellationToken cancellationToken) =>
        db.Users.AsNoTracking().Where(u => seekerIds.Contains(u.Id) && u.Email != null).ToDictionaryAsync(u => u.Id, u => u.Email!, cancellationToken);
}
