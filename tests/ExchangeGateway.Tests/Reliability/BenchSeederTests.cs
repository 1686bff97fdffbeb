using System.Diagnostics;
using ExchangeGateway.Tests.Audit;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.Extensions.Time.Testing;

namespace ExchangeGateway.Tests.Reliability;

/// <summary>
/// scripts/bench seeds its database with the gateway's own key ring and sealer, built in the seeder's process. A change
/// to how those are put together must not show first in a benchmark run: the seeder runs here on a few CVs, as the
/// bench runs it, and the running gateway then serves what it wrote.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class BenchSeederTests
{
    [Fact]
    public async Task TheBenchSeederWritesCvsTheGatewayServes()
    {
        await using var database = await TestDatabase.CreateAsync();
        await using var gateway = new GatewayFactory(database, new FakeTimeProvider(DateTimeOffset.UtcNow));
        gateway.StartServer();
        var output = Directory.CreateTempSubdirectory("eg-seed-");
        try
        {
            var configuration = Path.GetFileName(Path.GetDirectoryName(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar)))!;
            var seeder = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "..", "..",
                "bench", "ExchangeGateway.Bench", "bin", configuration, "net10.0", "ExchangeGateway.Bench.dll"));
            Assert.True(File.Exists(seeder), $"the bench driver is not built at {seeder}");
            using var process = Process.Start(new ProcessStartInfo("dotnet")
            {
                ArgumentList =
                {
                    seeder, "seed", "--conn", database.OwnerConnectionString, "--cvs", "20", "--recipients", "3", "--shares", "2",
                    "--audit-events", "50", "--out", output.FullName,
                },
                // The key ring's key-encryption key, as scripts/bench gives it to both.
                Environment = { ["DataProtection__KeyEncryptionKey"] = GatewayFactory.KeyEncryptionKey },
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            })!;
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            if (!process.WaitForExit(TimeSpan.FromMinutes(2)))
            {
                // Not left behind holding connections to a database that is about to be dropped.
                process.Kill(entireProcessTree: true);
                Assert.Fail("the seeder did not finish in two minutes");
            }

            Assert.True(process.ExitCode == 0, $"seed exited {process.ExitCode}: {await stdout} {await stderr}");
            Assert.True(File.Exists(Path.Combine(output.FullName, "seed.json")));

            Assert.Equal(20L, await database.ScalarAsync<long>("SELECT count(*) FROM cvs"));
            var (items, _) = await Sharing.ReadFeedAsync(gateway, await new Actors(gateway).DemoSiteTokenAsync());
            Assert.Equal(20, items.Count(i => i.GetProperty("kind").GetString() == "cv" && i.GetProperty("document").GetProperty("basics").ValueKind == System.Text.Json.JsonValueKind.Object));

            // The seeded events continue the chain the gateway's first start began, and the gateway's own after them: the
            // bench's verify scenario times a chain that holds (seeded history dated before the head would not).
            using var auditor = gateway.CreateHttpClient().WithToken(await new Actors(gateway).AuditorClientTokenAsync());
            var verdict = await AuditLog.VerifyAsync(auditor);
            Assert.True(verdict.GetProperty("ok").GetBoolean(), verdict.ToString());
            Assert.True(verdict.GetProperty("rowsChecked").GetInt64() >= 50);
        }
        finally
        {
            output.Delete(recursive: true);
        }
    }
}
