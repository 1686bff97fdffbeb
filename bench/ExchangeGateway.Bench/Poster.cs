using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text.Json;

namespace ExchangeGateway.Bench;

/// <summary>The dispatch baseline: a plain HttpClient posting the same SET bytes to the same receiver, same concurrency.</summary>
internal static class Poster
{
    public static async Task<int> RunAsync(Options options)
    {
        var url = new Uri(options.String("url"));
        var body = await File.ReadAllBytesAsync(options.String("body"));
        var concurrency = options.Int("concurrency", 64);
        var seconds = options.Double("seconds", 10);
        using var client = new HttpClient(new SocketsHttpHandler { UseCookies = false, AllowAutoRedirect = false, MaxConnectionsPerServer = concurrency });
        // Warmed first, as the gateway's paths are: the measured seconds start once the JIT has tiered the client's.
        await PostForAsync(client, url, body, concurrency, TimeSpan.FromSeconds(options.Double("warmup", 3)));
        var (sent, failed, elapsed) = await PostForAsync(client, url, body, concurrency, TimeSpan.FromSeconds(seconds));
        Console.WriteLine(JsonSerializer.Serialize(new { sent, failed, elapsedMs = elapsed.TotalMilliseconds, perSecond = sent / elapsed.TotalSeconds }));
        return 0;
    }

    private static async Task<(long Sent, long Failed, TimeSpan Elapsed)> PostForAsync(HttpClient client, Uri url, byte[] body, int concurrency, TimeSpan until)
    {
        long sent = 0, failed = 0;
        var clock = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, concurrency).Select(async _ =>
        {
            while (clock.Elapsed < until)
            {
                using var content = new ByteArrayContent(body);
                content.Headers.ContentType = new MediaTypeHeaderValue("application/secevent+jwt");
                using var request = new HttpRequestMessage(HttpMethod.Post, url) { Content = content };
                request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/json"));
                using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
                Interlocked.Increment(ref response.IsSuccessStatusCode ? ref sent : ref failed);
            }
        }));
        return (sent, failed, clock.Elapsed);
    }
}
