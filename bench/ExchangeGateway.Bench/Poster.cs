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
        long sent = 0, failed = 0;
        var clock = Stopwatch.StartNew();
        var until = TimeSpan.FromSeconds(seconds);
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
        clock.Stop();
        Console.WriteLine(JsonSerializer.Serialize(new { sent, failed, elapsedMs = clock.Elapsed.TotalMilliseconds, perSecond = sent / clock.Elapsed.TotalSeconds }));
        return 0;
    }
}
