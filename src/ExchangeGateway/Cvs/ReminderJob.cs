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
/// consent lapsing. Rows are claimed with SKIP LOCKED so several nodes never remind twice; each batch is one job.
/// </summary>
[AutomaticRetry(Attempts = Jobs.RetryAttempts)]
public sealed class ReminderJob(
    GatewayDbContext db, INotifier notifier, TimeProvider time, IOptions<FreshnessOptions> freshness, IOptions<ConsentOptions> consents,
    ILogger<ReminderJob> logger)
{
    public const int BatchSize = 500;

    public async Task<int> RunAsync(CancellationToken cancellationToken)
    {
        var sent = 0;
        // Shortest lead first: a CV already inside it (the job was paused while it crossed the longer ones) gets that one
        // reminder, which also marks the longer leads as passed; longest first would send it one mail per lead.
        foreach (var lead in freshness.Value.RemindBefore.Order())
        {
            sent += await RemindFreshnessAsync(lead, cancellationToken);
        }

        sent += await RemindConsentExpiryAsync(cancellationToken);
        return sent;
    }

    private async Task<int> RemindFreshnessAsync(TimeSpan lead, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        var maxAge = freshness.Value.MaxAge;
        await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
        var due = await db.Set<Cv>().FromSql($"""
            SELECT * FROM cvs
            WHERE state = 'Published' AND refreshed_at + {maxAge} - {lead} <= {now} AND refreshed_at + {maxAge} > {now}
              AND (last_reminder_lead IS NULL OR last_reminder_lead > {lead})
            ORDER BY refreshed_at LIMIT {BatchSize} FOR UPDATE SKIP LOCKED
            """).ToListAsync(cancellationToken);
        var emails = await EmailsOfAsync(due.Select(c => c.SeekerId).ToList(), cancellationToken);
        foreach (var cv in due)
        {
            if (emails.TryGetValue(cv.SeekerId, out var email))
            {
                var days = Math.Max(1, (int)Math.Ceiling((cv.OfflineAt(maxAge) - now).TotalDays));
                await SendAsync(new Notice(email, "Votre CV sera bientôt hors ligne / Your CV goes offline soon",
                    string.Create(CultureInfo.InvariantCulture,
                        $"Votre CV ne sera plus partagé dans {days} jour(s). Connectez-vous et cliquez sur « Je suis toujours en recherche ».\n\n" +
                        $"Your CV stops being shared in {days} day(s). Sign in and click \"I am still looking\".")), cancellationToken);
            }

            cv.Reminded(lead);
        }

        await db.SaveChangesAsync(cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        if (due.Count > 0)
        {
            logger.LogInformation("Sent {Count} freshness reminders ({LeadDays} days ahead)", due.Count, lead.TotalDays);
        }

        return due.Count;
    }

    private async Task<int> RemindConsentExpiryAsync(CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        var before = consents.Value.RemindBefore;
        await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
        // NO KEY UPDATE: the rows stay locked while the mails go out, and a disclosure recorded meanwhile (under the
        // chain lock, which every writer needs) must not queue behind the mail server for its KEY SHARE.
        var due = await db.Set<Consent>().FromSql($"""
            SELECT * FROM consents
            WHERE state = 'Active' AND NOT expiry_reminder_sent AND expires_at - {before} <= {now}
            ORDER BY expires_at LIMIT {BatchSize} FOR NO KEY UPDATE SKIP LOCKED
            """).ToListAsync(cancellationToken);
        var emails = await EmailsOfAsync(due.Where(c => c.SeekerId is not null).Select(c => c.SeekerId!).ToList(), cancellationToken);
        var names = await db.Recipients.AsNoTracking().Where(r => due.Select(c => c.RecipientId).Contains(r.Id)).ToDictionaryAsync(r => r.Id, r => r.DisplayName, cancellationToken);
        foreach (var consent in due)
        {
            if (consent.SeekerId is not null && emails.TryGetValue(consent.SeekerId, out var email))
            {
                var date = consent.ExpiresAt.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture);
                await SendAsync(new Notice(email, "Votre partage de CV arrive à échéance / Your CV sharing ends soon",
                    $"Le partage de votre CV avec {names[consent.RecipientId]} prend fin le {date}. Ensuite, cochez de nouveau la case pour continuer à partager.\n\n" +
                    $"Sharing your CV with {names[consent.RecipientId]} ends on {date}. After that, tick the box again to go on sharing."), cancellationToken);
            }

            consent.ExpiryReminded();
        }

        await db.SaveChangesAsync(cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        return due.Count;
    }

    /// <summary>
    /// A message the server refuses (its recipient, or the message itself), or an address that cannot be written, is
    /// logged (by kind and SMTP status only) and not tried again: failing the run would roll back the batch and mail the
    /// reminders already sent once more on every retry. A server that cannot be reached fails the run, to be retried, with
    /// an exception of our own: a mail server's message can quote the address, and Hangfire keeps a failed run's exception
    /// text (inner exceptions included) in its tables.
    /// </summary>
    private async Task SendAsync(Notice notice, CancellationToken cancellationToken)
    {
        try
        {
            await notifier.SendAsync(notice, cancellationToken);
        }
        catch (SmtpCommandException e)
        {
            logger.LogWarning("The mail server refused a reminder ({Error}, SMTP status {Status}); it is not sent again", e.ErrorCode, (int)e.StatusCode);
        }
        catch (MimeKit.ParseException)
        {
            logger.LogWarning("A reminder's address could not be written as a mailbox; it is not sent");
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            throw new NotifierUnavailableException(e.GetType().Name);
        }
    }

    private Task<Dictionary<string, string>> EmailsOfAsync(List<string> seekerIds, CancellationToken cancellationToken) =>
        db.Users.AsNoTracking().Where(u => seekerIds.Contains(u.Id) && u.Email != null).ToDictionaryAsync(u => u.Id, u => u.Email!, cancellationToken);
}
