using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace ExchangeGateway.Tests.Infrastructure;

/// <summary>
/// A mail server on loopback. By default it refuses every recipient with a 550 quoting the address, as real servers do:
/// what the gateway makes of that reply (logs, job state) must still name no one. Started accepting, it takes messages
/// (DATA), and may close each session with a 421 after a number of them, as relays with a per-session limit do.
/// </summary>
public sealed class SmtpStub : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _accepting;
    private readonly bool _accept;
    private readonly int? _mailsPerSession;

    private SmtpStub(bool accept, int? mailsPerSession)
    {
        _accept = accept;
        _mailsPerSession = mailsPerSession;
        _listener.Start();
        _accepting = AcceptAsync();
    }

    /// <summary>Every address a message was taken for, in order.</summary>
    public ConcurrentQueue<string> Delivered { get; } = new();

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    /// <summary>Every address a client tried to send to, in order.</summary>
    public ConcurrentQueue<string> Refused { get; } = new();

    /// <summary>How many SMTP sessions clients opened.</summary>
    public int Sessions => _sessions;

    private int _sessions;

    /// <summary>
    /// How many recipients to answer next with a 452, as a relay throttling its sender does (a temporary refusal: try later),
    /// before answering as usual again.
    /// </summary>
    public int ThrottleNext
    {
        get => Volatile.Read(ref _throttleNext);
        set => Volatile.Write(ref _throttleNext, value);
    }

    private int _throttleNext;

    /// <summary>Every command's verb, in arrival order (EHLO, MAIL, RCPT, QUIT...).</summary>
    public ConcurrentQueue<string> Verbs { get; } = new();

    public static SmtpStub Start() => new(accept: false, mailsPerSession: null);

    public static SmtpStub StartAccepting(int? mailsPerSession = null) => new(accept: true, mailsPerSession);

    private async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await _listener.AcceptTcpClientAsync(_stop.Token);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            Interlocked.Increment(ref _sessions);
            _ = ServeAsync(client);
        }
    }

    private async Task ServeAsync(TcpClient client)
    {
        using (client)
        {
            var stream = client.GetStream();
            using var reader = new StreamReader(stream, Encoding.ASCII);
            await using var writer = new StreamWriter(stream, Encoding.ASCII) { NewLine = "\r\n", AutoFlush = true };
            await writer.WriteLineAsync("220 stub.example ESMTP");
            var taken = 0;
            string? recipient = null;
            while (await reader.ReadLineAsync(_stop.Token) is { } line)
            {
                var verb = line.Split(' ', 2)[0].ToUpperInvariant();
                Verbs.Enqueue(verb);
                if (verb == "MAIL" && taken >= _mailsPerSession)
                {
                    await writer.WriteLineAsync("421 4.7.0 stub.example Too many messages in this session, closing");
                    return;
                }

                if (verb == "RCPT")
                {
                    var address = line[(line.IndexOf('<', StringComparison.Ordinal) + 1)..line.IndexOf('>', StringComparison.Ordinal)];
                    if (Interlocked.Decrement(ref _throttleNext) >= 0)
                    {
                        await writer.WriteLineAsync("452 4.3.1 Insufficient system resources, try again later");
                        continue;
                    }

                    Interlocked.Exchange(ref _throttleNext, 0);
                    if (_accept)
                    {
                        recipient = address;
                        await writer.WriteLineAsync("250 2.1.5 Ok");
                        continue;
                    }

                    Refused.Enqueue(address);
                    await writer.WriteLineAsync($"550 5.1.1 <{address}>: Recipient address rejected: User unknown");
                }
                else if (verb == "DATA" && _accept)
                {
                    await writer.WriteLineAsync("354 End data with <CR><LF>.<CR><LF>");
                    while (await reader.ReadLineAsync(_stop.Token) is { } data && data != ".")
                    {
                    }

                    taken++;
                    Delivered.Enqueue(recipient!);
                    await writer.WriteLineAsync("250 2.0.0 Ok: queued");
                }
                else if (verb == "QUIT")
                {
                    await writer.WriteLineAsync("221 2.0.0 Bye");
                    return;
                }
                else
                {
                    await writer.WriteLineAsync(verb is "EHLO" or "HELO" ? "250 stub.example" : "250 2.0.0 Ok");
                }
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        try
        {
            await _accepting;
        }
        catch (OperationCanceledException)
        {
        }

        _stop.Dispose();
    }
}
