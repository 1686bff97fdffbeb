using System.Security.Cryptography;
using System.Text;
using System.Threading.Channels;
using MailKit.Net.Smtp;
using Microsoft.Extensions.Options;

namespace ExchangeGateway.Hosting;

/// <summary>
/// What the account pages do for an address (sign-up, forgotten password) happens here, after the page has answered:
/// looking the address up, creating or reading the account, building the link, sending the message. The answer then
/// costs the same whatever the address, and neither its time nor a mail server that refuses tells a visitor that an
/// address has an account. An address gets at most <see cref="NotifierOptions.PerAddressPerHour"/> such requests an hour
/// from a node, so the forms cannot be used to flood someone's inbox (earlier links stay valid); what is over that, or
/// beyond a full queue, is dropped and counted, and the page says the same. Kept in memory only: a request lost to a
/// restart is made again on the same page, and no address is stored.
/// </summary>
public sealed class AccountMail : BackgroundService
{
    /// <summary>Work for one address, in a scope of its own and the culture of the page that asked; returns the message to send, if any.</summary>
    public delegate Task<Notice?> Preparation(IServiceProvider services, CancellationToken cancellationToken);

    private sealed record Work(Preparation Prepare, System.Globalization.CultureInfo Culture);

    private readonly Channel<Work> _channel;
    private readonly IServiceScopeFactory _scopes;
    private readonly INotifier _notifier;
    private readonly TimeProvider _time;
    private readonly GatewayMetrics _metrics;
    private readonly ILogger<AccountMail> _logger;
    private readonly int _perAddress;
    // Addresses are counted under a keyed hash whose key dies with the process, so the counters hold no address.
    private readonly byte[] _countingKey = RandomNumberGenerator.GetBytes(32);
    private readonly Lock _gate = new();
    private readonly Dictionary<UInt128, int> _sentThisHour = [];
    private DateTimeOffset _hourStarted;
    private int _pending;

    public AccountMail(
        IServiceScopeFactory scopes, INotifier notifier, IOptions<NotifierOptions> options, TimeProvider time, GatewayMetrics metrics, ILogger<AccountMail> logger)
    {
        _scopes = scopes;
        _notifier = notifier;
        _time = time;
        _metrics = metrics;
        _logger = logger;
        _perAddress = options.Value.PerAddressPerHour;
        _hourStarted = time.GetUtcNow();
        _channel = Channel.CreateBounded<Work>(new BoundedChannelOptions(options.Value.QueueCapacity)
        {
            SingleReader = true,
            // Wait, not DropWrite: with Wait, TryWrite answers false when the queue is full (DropWrite says it wrote).
            FullMode = BoundedChannelFullMode.Wait,
        });
    }

    /// <summary>Requests accepted and not yet done: their message handed to the mail server, or given up on.</summary>
    public int Pending => Volatile.Read(ref _pending);

    /// <summary>
    /// Queues the work for <paramref name="address"/> (as typed) unless that address had its share this hour or the queue is
    /// full; the caller answers the same either way. <paramref name="prepare"/> must not capture the request's services.
    /// </summary>
    /// <param name="capped">
    /// False for a security notice that only the account's holder can set off (an authenticator added): the hourly share
    /// is there so that the public forms cannot flood an inbox, and must not let anyone silence such a notice first.
    /// </param>
    public void Enqueue(string address, Preparation prepare, bool capped = true)
    {
        if (capped && !TakeShare(address))
        {
            _metrics.MailDropped.Add(1, new KeyValuePair<string, object?>("reason", "per-address-limit"));
            return;
        }

        Interlocked.Increment(ref _pending);
        if (!_channel.Writer.TryWrite(new Work(prepare, System.Globalization.CultureInfo.CurrentUICulture)))
        {
            Interlocked.Decrement(ref _pending);
            _metrics.MailDropped.Add(1, new KeyValuePair<string, object?>("reason", "queue-full"));
            _logger.LogWarning("The account mail queue is full; a message was dropped");
        }
    }

    private bool TakeShare(string address)
    {
        var key = BitConverter.ToUInt128(HMACSHA256.HashData(_countingKey, Encoding.UTF8.GetBytes(address.Trim().ToUpperInvariant())));
        var now = _time.GetUtcNow();
        lock (_gate)
        {
            // A fixed window is enough here: the point is a ceiling on one inbox, not a smooth rate.
            if (now - _hourStarted >= TimeSpan.FromHours(1) || now < _hourStarted)
            {
                _sentThisHour.Clear();
                _hourStarted = now;
            }

            var sent = _sentThisHour.GetValueOrDefault(key);
            if (sent >= _perAddress)
            {
                return false;
            }

            _sentThisHour[key] = sent + 1;
            return true;
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            await foreach (var work in _channel.Reader.ReadAllAsync(stoppingToken))
            {
                try
                {
                    if (await PrepareAsync(work, stoppingToken) is { } notice)
                    {
                        await SendAsync(notice, stoppingToken);
                    }
                }
                finally
                {
                    Interlocked.Decrement(ref _pending);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            _channel.Writer.TryComplete();
            if (Pending > 0)
            {
                _logger.LogWarning("{Count} account messages were not sent before shutdown", Pending);
            }
        }
    }

    private async Task<Notice?> PrepareAsync(Work work, CancellationToken stoppingToken)
    {
        var culture = System.Globalization.CultureInfo.CurrentUICulture;
        System.Globalization.CultureInfo.CurrentUICulture = work.Culture;
        try
        {
            await using var scope = _scopes.CreateAsyncScope();
            return await work.Prepare(scope.ServiceProvider, stoppingToken);
        }
        catch (Exception e) when (e is not OperationCanceledException || !stoppingToken.IsCancellationRequested)
        {
            // Its message could name the address (a database constraint quoting a value): only the kind is logged.
            _logger.LogError("An account request failed ({Error}); nothing was sent", e.GetType().Name);
            return null;
        }
        finally
        {
            System.Globalization.CultureInfo.CurrentUICulture = culture;
        }
    }

    private async Task SendAsync(Notice notice, CancellationToken stoppingToken)
    {
        // One retry covers a dropped connection; a server that is down stays down for longer than a visitor waits.
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                await _notifier.SendAsync(notice, stoppingToken);
                _metrics.MailSent.Add(1);
                return;
            }
            catch (Exception e) when (e is not OperationCanceledException || !stoppingToken.IsCancellationRequested)
            {
                // The exception's message can quote the recipient (a server refusing a mailbox says which): only its kind is logged.
                var status = e is SmtpCommandException command ? (int)command.StatusCode : 0;
                // A 4xx is the server's "try later" and is tried again like a dropped connection; a 5xx refuses for good.
                if (attempt < 2 && e is not SmtpCommandException { StatusCode: >= (SmtpStatusCode)500 })
                {
                    _logger.LogInformation("Sending an account message failed ({Error}); retrying once", e.GetType().Name);
                    await Task.Delay(TimeSpan.FromSeconds(1), stoppingToken);
                    continue;
                }

                _metrics.MailFailed.Add(1);
                _logger.LogWarning("An account message could not be sent ({Error}, SMTP status {Status})", e.GetType().Name, status);
                return;
            }
        }
    }
}
