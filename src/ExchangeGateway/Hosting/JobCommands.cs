using System.Diagnostics;
using System.Text.Json;
using ExchangeGateway.Auth;
using ExchangeGateway.Cvs;
using ExchangeGateway.Events;
using Microsoft.EntityFrameworkCore;

namespace ExchangeGateway.Hosting;

/// <summary>
/// `dotnet run --project src/ExchangeGateway -- jobs run freshness-sweep|event-dispatch`: runs one background job now, in
/// this process, and prints what it did and how long it took (an operator's "run it now", and what the benchmark times).
/// </summary>
public static class JobCommands
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    public static bool IsCommand(string[] args) => args is ["jobs", ..];

    public static async Task<int> RunAsync(IServiceProvider services, string[] args)
    {
        await services.GetRequiredService<SigningKeyRing>().LoadAsync(CancellationToken.None);
        await using var scope = services.CreateAsyncScope();
        // What a running node has ready before any job runs: the EF model, a pooled connection, Hangfire's storage (which
        // checks its schema on first use). Primed here so the printed time is the job's own.
        var db = scope.ServiceProvider.GetRequiredService<Data.GatewayDbContext>();
        _ = db.Model;
        await db.Database.ExecuteSqlRawAsync("SELECT 1");
        using (services.GetRequiredService<Hangfire.JobStorage>().GetConnection())
        {
        }

        var clock = Stopwatch.StartNew();
        int result;
        switch (args)
        {
            case ["jobs", "run", "freshness-sweep"]:
                result = await scope.ServiceProvider.GetRequiredService<FreshnessSweepJob>().RunAsync(CancellationToken.None);
                break;
            case ["jobs", "run", "event-dispatch"]:
                result = await scope.ServiceProvider.GetRequiredService<EventDispatchJob>().RunAsync(CancellationToken.None);
                break;
            default:
                await Console.Error.WriteLineAsync("usage: jobs run freshness-sweep | jobs run event-dispatch");
                return 64;
        }

        clock.Stop();
        Console.WriteLine(JsonSerializer.Serialize(new { job = args[2], result, elapsedMs = clock.Elapsed.TotalMilliseconds }, Json));
        return 0;
    }
}
