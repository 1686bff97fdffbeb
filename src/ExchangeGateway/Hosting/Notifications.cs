using System.ComponentModel.DataAnnotations;
using MailKit;
using MailKit.Net.Smtp;
using MailKit.Security;
using Microsoft.Extensions.Options;
using MimeKit;

namespace ExchangeGateway.Hosting;

public sealed record Notice(string To, string Subject, string Body);

/// <summary>Sending failed; says how (the exception's kind), never to whom: no inner exception, whose text could quote the address.</summary>
public sealed class NotifierUnavailableException(string kind) : Exception($"The notifier could not send ({kind}); the run is retried.");

/// <summary>Messages to seekers (reminders, password resets). Implementations never log addresses, names or bodies.</summary>
public interface INotifier
{
    Task SendAsync(Notice notice, CancellationToken cancellationToken);
}

public sealed class NotifierOptions : IValidatableObject
{
    public const string Section = "Notifier";

    /// <summary>"pickup" writes .eml files to <see cref="PickupDirectory"/> (development); "smtp" sends through <see cref="SmtpHost"/>.</summary>
    [RegularExpression("^(pickup|smtp)$")]
    public string Mode { get; set; } = "pickup";

    public string PickupDirectory { get; set; } = Path.Combine(Path.GetTempPath(), "exchange-gateway-mail");

    public string? SmtpHost { get; set; }

    [Range(1, 65535)]
    public int SmtpPort { get; set; } = 587;

    /// <summary>
    /// "starttls" (the default: the server must offer STARTTLS, or nothing is sent), "tls" (TLS from the first byte, port
    /// 465) or "none" (a relay on the same host only). Not "when available": a man in the middle strips the offer, and the
    /// reset links (an account's keys), the addresses and the SMTP login would then travel in clear.
    /// </summary>
    [RegularExpression("^(starttls|tls|none)$")]
    public string SmtpSecurity { get; set; } = "starttls";

    public string? SmtpUser { get; set; }
    public string? SmtpPassword { get; set; }

    [Required, EmailAddress]
    public string From { get; set; } = "no-reply@employment-service.example";

    /// <summary>Account messages one address can receive in an hour from one node (sign-up links, resets, notices).</summary>
    [Range(1, 100)]
    public int PerAddressPerHour { get; set; } = 5;

    /// <summary>Account messages waiting to be sent at most; beyond that they are dropped (and counted).</summary>
    [Range(1, 100_000)]
    public int QueueCapacity { get; set; } = 1000;

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (Mode == "smtp" && string.IsNullOrWhiteSpace(SmtpHost))
        {
            yield return new ValidationResult("Notifier:SmtpHost is required when Notifier:Mode is smtp.", [nameof(SmtpHost)]);
        }
    }

    public SecureSocketOptions SmtpSocketOptions => SmtpSecurity switch
    {
        "tls" => SecureSocketOptions.SslOnConnect,
        "none" => SecureSocketOptions.None,
        _ => SecureSocketOptions.StartTls,
    };
}

/// <summary>Builds the MIME message both notifiers send.</summary>
public abstract class MailNotifier(IOptions<NotifierOptions> options) : INotifier
{
    protected NotifierOptions Options => options.Value;

    public async Task SendAsync(Notice notice, CancellationToken cancellationToken)
    {
        using var message = new MimeMessage();
        message.From.Add(MailboxAddress.Parse(options.Value.From));
        message.To.Add(MailboxAddress.Parse(notice.To));
        message.Subject = notice.Subject;
        message.Body = new TextPart("plain") { Text = notice.Body };
        await DeliverAsync(message, cancellationToken);
    }

    protected abstract Task DeliverAsync(MimeMessage message, CancellationToken cancellationToken);
}

public sealed class PickupFolderNotifier(IOptions<NotifierOptions> options) : MailNotifier(options)
{
    protected override async Task DeliverAsync(MimeMessage message, CancellationToken cancellationToken)
    {
        // The files hold addresses and reset links: the folder and each file are the gateway's user's alone.
        if (OperatingSystem.IsWindows())
        {
            Directory.CreateDirectory(Options.PickupDirectory);
        }
        else
        {
            // Also when it already existed (created by an earlier run, or by someone else, in which case this fails and no
            // mail is written into a folder another user controls).
            Directory.CreateDirectory(Options.PickupDirectory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            File.SetUnixFileMode(Options.PickupDirectory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }

        // Named by the moment of writing (100 ns), so that a listing in name order is the order the messages were sent.
        var path = Path.Combine(Options.PickupDirectory, $"{DateTime.UtcNow:yyyyMMdd'T'HHmmssfffffff}-{Guid.NewGuid():N}.eml");
        var file = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, Options = FileOptions.Asynchronous };
        if (!OperatingSystem.IsWindows())
        {
            file.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }

        await using var stream = new FileStream(path, file);
        await message.WriteToAsync(stream, cancellationToken);
    }
}

/// <summary>
/// Sends over one SMTP session kept open while mails follow each other: a session per mail (connection, TLS handshake,
/// login) held a reminder run to a few mails a second, far below the reminders a day at scale. One mail at a time per
/// node; a session idle for longer than <see cref="IdleLimit"/> is not trusted (servers close idle ones) and is replaced.
/// </summary>
public sealed class SmtpNotifier(IOptions<NotifierOptions> options) : MailNotifier(options), IAsyncDisposable
{
    public static readonly TimeSpan IdleLimit = TimeSpan.FromSeconds(30);

    private readonly SemaphoreSlim _gate = new(1, 1);
    private SmtpClient? _session;
    private long _lastUsed;

    protected override async Task DeliverAsync(MimeMessage message, CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken);
        try
        {
            var reused = _session is { IsConnected: true } && Environment.TickCount64 - _lastUsed < IdleLimit.TotalMilliseconds;
            if (!reused)
            {
                await CloseAsync();
                _session = await OpenAsync(cancellationToken);
            }

            try
            {
                await _session!.SendAsync(message, cancellationToken);
            }
            catch (Exception e) when (reused && (e is IOException or ServiceNotConnectedException or SmtpProtocolException || IsClosing(e)))
            {
                // The server closed the session between two mails (a 421, or the connection gone; the message was not
                // taken): once more on a new one.
                await CloseAsync();
                _session = await OpenAsync(cancellationToken);
                await _session.SendAsync(message, cancellationToken);
            }
        }
        catch (Exception e) when (e is not SmtpCommandException || IsClosing(e))
        {
            // A refused mailbox leaves the session usable (the client resets the transaction); anything else may have
            // left it half-way through a command.
            await CloseAsync();
            throw;
        }
        finally
        {
            // A refused mailbox is a session used too.
            _lastUsed = Environment.TickCount64;
            _gate.Release();
        }
    }

    /// <summary>A 421: the server is closing the session (its restart, its limit of mails a session), not refusing this mail.</summary>
    private static bool IsClosing(Exception e) => e is SmtpCommandException { StatusCode: SmtpStatusCode.ServiceNotAvailable };

    public async ValueTask DisposeAsync()
    {
        await _gate.WaitAsync();
        try
        {
            await CloseAsync();
        }
        finally
        {
            _gate.Release();
        }
    }

    private async Task<SmtpClient> OpenAsync(CancellationToken cancellationToken)
    {
        var smtp = new SmtpClient { Timeout = 15_000 };
        try
        {
            await smtp.ConnectAsync(Options.SmtpHost ?? throw new InvalidOperationException("Notifier:SmtpHost is not set."), Options.SmtpPort, Options.SmtpSocketOptions, cancellationToken);
            if (!string.IsNullOrEmpty(Options.SmtpUser))
            {
                await smtp.AuthenticateAsync(Options.SmtpUser, Options.SmtpPassword ?? "", cancellationToken);
            }

            return smtp;
        }
        catch
        {
            smtp.Dispose();
            throw;
        }
    }

    private async Task CloseAsync()
    {
        if (_session is not { } session)
        {
            return;
        }

        _session = null;
        try
        {
            if (session.IsConnected)
            {
                using var quick = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                await session.DisconnectAsync(quit: true, quick.Token);
            }
        }
        catch (Exception e) when (e is IOException or SmtpProtocolException or OperationCanceledException or ServiceNotConnectedException)
        {
            // Closing a session that is already broken: nothing to tell anyone.
        }
        finally
        {
            session.Dispose();
        }
    }
}
