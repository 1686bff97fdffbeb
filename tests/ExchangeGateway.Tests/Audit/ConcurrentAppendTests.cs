using ExchangeGateway.Audit;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace ExchangeGateway.Tests.Audit;

[Collection(GatewayCollection.Name)]
public sealed class ConcurrentAppendTests(GatewayFixture fixture)
{
    private const int Writers = 8;
    private const int AppendsPerWriter = 25;

    [Fact]
    public async Task EightConcurrentWritersKeepOneUnbrokenChain()
    {
        var run = Guid.NewGuid().ToString("N")[..8];
        var writers = Enumerable.Range(0, Writers).Select(writer => Task.Run(async () =>
        {
            // Each writer is its own unit of work, as concurrent requests are: its own scope, DbContext and connection.
            await using var scope = fixture.Factory.Services.CreateAsyncScope();
            var trail = scope.ServiceProvider.GetRequiredService<AuditTrail>();
            for (var i = 0; i < AppendsPerWriter; i++)
            {
                var batch = Enumerable.Range(0, 1 + i % 3)
                    .Select(n => new AuditEntry(ActorKinds.System, $"writer-{run}-{writer}", AuditActions.AuditVerified, Outcomes.Success,
                        Details: new Dictionary<string, object?> { ["append"] = i, ["n"] = n }))
                    .ToList();
                await trail.AppendAsync(batch, CancellationToken.None);
            }
        }));
        await Task.WhenAll(writers);

        var perWriter = Enumerable.Range(0, AppendsPerWriter).Sum(i => 1 + i % 3);
        Assert.Equal(Writers * perWriter, await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM audit_events WHERE actor_id LIKE 'writer-{run}-%'"));
        // Contiguous from 1 to the head: no gaps, no duplicates.
        Assert.True(await fixture.Database.ScalarAsync<bool>("SELECT min(sequence) = 1 AND max(sequence) = count(*) AND count(DISTINCT sequence) = count(*) FROM audit_events"));
        // Each multi-row append landed as one contiguous block.
        Assert.Equal(0L, await fixture.Database.ScalarAsync<long>(
            $"""
            SELECT count(*) FROM (
                SELECT actor_id, details::json->>'append' AS append, max(sequence) - min(sequence) + 1 AS span, count(*) AS n
                FROM audit_events WHERE actor_id LIKE 'writer-{run}-%' GROUP BY 1, 2) blocks
            WHERE span <> n
            """));

        using var auditor = fixture.Client().WithToken(await fixture.Actors.AuditorClientTokenAsync());
        var head = await fixture.Database.ScalarAsync<long>("SELECT max(sequence) FROM audit_events");
        var verdict = await AuditLog.VerifyAsync(auditor);
        Assert.True(verdict.GetProperty("ok").GetBoolean(), verdict.ToString());
        Assert.Equal(head, verdict.GetProperty("headSequence").GetInt64());
    }
}
