using System.Collections.Concurrent;
using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace ExchangeGateway.Tests.Infrastructure;

/// <summary>One request as the receiver saw it.</summary>
public sealed record ReceivedPush(string Method, string? ContentType, IReadOnlyDictionary<string, string> Headers, string Body, DateTimeOffset At);

/// <summary>
/// How the receiver answers one request: a status, an optional body and Retry-After, and an optional wait first (a delay,
/// or a task the test completes once it has done what must happen while the push is on the wire).
/// </summary>
public sealed record PushReply(int Status, string? Body = null, TimeSpan? RetryAfter = null, TimeSpan? Delay = null, Task? Hold = null)
{
    public static PushReply Accepted { get; } = new(StatusCodes.Status202Accepted);
}

/// <summary>
/// A recipient's push endpoint (RFC 8935) on a real loopback port: Kestrel, HTTP/1.1, recording every request it gets on
/// its own path and answering with programmed replies (202 once they run out). The path is unique per receiver, so a
/// delivery meant for another test's site that happens to reach a reused port is answered 404 and not recorded.
/// It can be stopped and started again on the same port, like a site that goes down and comes back.
/// </summary>
public sealed class PushReceiver : IAsyncDisposable
{
    private readonly ConcurrentQueue<ReceivedPush> _received = new();
    private readonly ConcurrentQueue<PushReply> _replies = new();
    private readonly string _path = "/events/" + Guid.NewGuid().ToString("N")[..12];
    private WebApplication? _app;

    private PushReceiver(int port) => Port = port;

    public int Port { get; private set; }

    /// <summary>The URL to register as the site's push endpoint.</summary>
    public Uri Endpoint => new($"http://127.0.0.1:{Port}{_path}");

    public IReadOnlyList<ReceivedPush> Received => [.. _received];

    /// <summary>The SETs received so far (request bodies), in arrival order.</summary>
    public IReadOnlyList<string> Sets => [.. _received.Select(r => r.Body)];

    /// <summary>Answered by this reply until it is changed (instead of 202).</summary>
    public PushReply Default { get; set; } = PushReply.Accepted;

    public static async Task<PushReceiver> StartAsync()
    {
        var receiver = new PushReceiver(0);
        await receiver.StartAsync(0);
        return receiver;
    }

    /// <summary>The next requests get these replies, in order; then <see cref="Default"/> again.</summary>
    public void ReplyNext(params PushReply[] replies)
    {
        foreach (var reply in replies)
        {
            _replies.Enqueue(reply);
        }
    }

    /// <summary>Goes down: the port stops listening and connections are refused.</summary>
    public async Task StopAsync()
    {
        if (_app is { } app)
        {
            _app = null;
            await app.StopAsync();
            await app.DisposeAsync();
        }
    }

    /// <summary>Comes back on the same port.</summary>
    public Task RestartAsync() => StartAsync(Port);

    /// <summary>Waits (on the wall clock: this is about real sockets) until at least <paramref name="count"/> requests arrived.</summary>
    public async Task<IReadOnlyList<ReceivedPush>> WaitForAsync(int count, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(30));
        while (_received.Count < count && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20);
        }

        return Received;
    }

    public ValueTask DisposeAsync() => new(StopAsync());

    private async Task StartAsync(int port)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, port));
        var app = builder.Build();
        app.Run(HandleAsync);
        await app.StartAsync();
        Port = new Uri(app.Urls.Single()).Port;
        _app = app;
    }

    private async Task HandleAsync(HttpContext context)
    {
        if (context.Request.Path != _path)
        {
            context.Response.StatusCode = StatusCodes.Status404NotFound;
            return;
        }

        using var reader = new StreamReader(context.Request.Body);
        var body = await reader.ReadToEndAsync(context.RequestAborted);
        _received.Enqueue(new ReceivedPush(
            context.Request.Method, context.Request.ContentType,
            context.Request.Headers.ToDictionary(h => h.Key, h => h.Value.ToString(), StringComparer.OrdinalIgnoreCase),
            body, DateTimeOffset.UtcNow));

        var reply = _replies.TryDequeue(out var next) ? next : Default;
        if (reply.Delay is not null || reply.Hold is not null)
        {
            try
            {
                await (reply.Hold ?? Task.Delay(reply.Delay!.Value, context.RequestAborted)).WaitAsync(context.RequestAborted);
            }
            catch (OperationCanceledException)
            {
                return; // the gateway gave up waiting
            }
        }

        context.Response.StatusCode = reply.Status;
        if (reply.RetryAfter is { } retryAfter)
        {
            context.Response.Headers.RetryAfter = ((int)retryAfter.TotalSeconds).ToString(System.Globalization.CultureInfo.InvariantCulture);
        }

        if (reply.Body is not null)
        {
            context.Response.ContentType = "application/json";
            await context.Response.WriteAsync(reply.Body, context.RequestAborted);
        }
    }
}
