using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace ExchangeGateway.Bench;

/// <summary>
/// The minimal push receiver (RFC 8935 from the receiving side, minus all checks): Kestrel on loopback answering 202 to any
/// POST, keeping one body as a sample for the plain-client baseline. Stops by itself after --max-seconds.
/// </summary>
internal static class Receiver
{
    public static async Task<int> RunAsync(Options options)
    {
        var port = options.Int("port");
        var samplePath = options.String("sample");
        var maxSeconds = options.Int("max-seconds", 1800);
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls($"http://127.0.0.1:{port}");
        var app = builder.Build();
        long received = 0;
        var sampled = 0;
        app.MapPost("/{**path}", async (HttpContext context) =>
        {
            using var body = new MemoryStream();
            await context.Request.Body.CopyToAsync(body);
            Interlocked.Increment(ref received);
            if (Interlocked.Exchange(ref sampled, 1) == 0)
            {
                await File.WriteAllBytesAsync(samplePath, body.ToArray());
            }

            return Results.StatusCode(StatusCodes.Status202Accepted);
        });
        app.MapGet("/count", () => Results.Text(Interlocked.Read(ref received).ToString(System.Globalization.CultureInfo.InvariantCulture)));
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(maxSeconds));
        await app.StartAsync();
        Console.Error.WriteLine($"[bench] receiver on 127.0.0.1:{port}");
        try
        {
            await Task.Delay(Timeout.Infinite, stop.Token).WaitAsync(app.Lifetime.ApplicationStopping);
        }
        catch (OperationCanceledException)
        {
        }

        await app.StopAsync();
        return 0;
    }
}
