using System.Net;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.Extensions.Time.Testing;

namespace ExchangeGateway.Tests.Audit;

/// <summary>
/// Exports and verifications of the whole log each hold a connection and a snapshot while they run; past
/// Audit:MaxConcurrentScans on a node, the next one is a 429 with Retry-After instead of a wait for a connection.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class AuditScanLimitTests
{
    [Fact]
    public async Task AScanBeyondTheNodesLimitIsRefusedWhileTheOthersRun()
    {
        await using var database = await TestDatabase.CreateAsync();
        await using var node = new GatewayFactory(database, new FakeTimeProvider(DateTimeOffset.UtcNow),
            settings: new Dictionary<string, string?> { ["Audit:MaxConcurrentScans"] = "1" });
        using var auditor = node.CreateHttpClient().WithToken(await new Actors(node).AuditorClientTokenAsync());
        Assert.Equal(HttpStatusCode.OK, (await auditor.GetAsync("/api/v1/audit/verify")).StatusCode);

        Task<HttpResponseMessage> first;
        await using (var held = await HeldTransaction.BeginAsync(database))
        {
            // The first export takes the node's only slot, then waits for the table.
            await held.ExecuteAsync("LOCK TABLE audit_events IN ACCESS EXCLUSIVE MODE");
            first = auditor.GetAsync("/api/v1/audit/events/export");
            await HeldTransaction.WaitForWaiterAsync(database, "relation");

            foreach (var path in new[] { "/api/v1/audit/events/export", "/api/v1/audit/verify" })
            {
                using var refused = await auditor.GetAsync(path);
                await refused.AssertProblemAsync(HttpStatusCode.TooManyRequests);
                Assert.Equal(TimeSpan.FromSeconds(5), refused.Headers.RetryAfter?.Delta);
            }

            await held.CommitAsync();
        }

        using (var exported = await first)
        {
            Assert.Equal(HttpStatusCode.OK, exported.StatusCode);
            Assert.NotEmpty(await exported.Content.ReadAsStringAsync());
        }

        // The slot came back with the end of the stream.
        Assert.Equal(HttpStatusCode.OK, (await auditor.GetAsync("/api/v1/audit/verify")).StatusCode);
    }
}
