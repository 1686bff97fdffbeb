using ExchangeGateway.Tests.Infrastructure;
using Microsoft.Extensions.Time.Testing;

namespace ExchangeGateway.Tests.Audit;

/// <summary>
/// The log's times never go back along its sequence, whatever a node's clock says, so that a time range is a range of
/// sequence numbers (which is how from and to are answered). A gateway of its own: its clock is set back.
/// </summary>
public sealed class AuditTimeOrderTests(SeededTemplate template) : IClassFixture<SeededTemplate>
{
    [Fact]
    public async Task ARowStampedByALaggingClockTakesTheHeadsTimeAndTimeRangesFollowTheSequence()
    {
        await using var gateway = await IsolatedGateway.StartAsync(template);
        var clock = gateway.Node.Time;
        using var auditor = gateway.Node.CreateHttpClient().WithToken(await gateway.Actors.AuditorClientTokenAsync());
        var ghost = AuditLog.NewGhostClientId();

        await AuditLog.RefuseTokenAsync(gateway.Actors, ghost);
        // A second node whose clock lags five minutes (or this one after an NTP step back): its row must not go back too.
        await using (var lagging = new GatewayFactory(gateway.Database, new FakeTimeProvider(clock.GetUtcNow() - TimeSpan.FromMinutes(5))))
        {
            await AuditLog.RefuseTokenAsync(new Actors(lagging), ghost);
        }

        clock.Advance(TimeSpan.FromMinutes(5));
        await AuditLog.RefuseTokenAsync(gateway.Actors, ghost);

        var mine = await AuditLog.EventsAsync(auditor, $"actor={ghost}");
        Assert.Equal(3, mine.Count);
        var times = mine.Select(e => e.GetProperty("occurredAt").GetDateTimeOffset()).ToList();
        var head = times[0];
        Assert.Equal(head, times[1]);
        Assert.Equal(head.AddMinutes(5), times[2]);
        Assert.True(await gateway.Database.ScalarAsync<bool>(
            "SELECT bool_and(occurred_at >= prior) FROM (SELECT occurred_at, lag(occurred_at) OVER (ORDER BY sequence) AS prior FROM audit_events) t WHERE prior IS NOT NULL"),
            "a row of the log is older than the row before it");

        var ids = mine.Select(e => e.GetProperty("id").GetInt64()).ToList();
        async Task<List<long>> WindowAsync(string range) =>
            [.. (await AuditLog.EventsAsync(auditor, $"actor={ghost}&{range}")).Select(e => e.GetProperty("id").GetInt64())];

        Assert.Equal(ids[..2], await WindowAsync($"from={AuditLog.Q(head.AddMinutes(-1))}&to={AuditLog.Q(head.AddMinutes(1))}"));
        Assert.Empty(await WindowAsync($"to={AuditLog.Q(head.AddMinutes(-1))}"));
        Assert.Equal(ids[2..], await WindowAsync($"from={AuditLog.Q(head.AddMinutes(4))}"));
        Assert.Equal(ids, await WindowAsync($"from={AuditLog.Q(head)}&to={AuditLog.Q(head.AddMinutes(5).AddTicks(10))}"));
        Assert.Empty(await WindowAsync($"from={AuditLog.Q(head.AddHours(1))}"));

        // The export reads the same ranges.
        using var export = await auditor.GetAsync($"{AuditLog.ExportPath}?actor={ghost}&from={AuditLog.Q(head.AddMinutes(-1))}&to={AuditLog.Q(head.AddMinutes(1))}");
        var lines = (await export.Content.ReadAsStringAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(3, lines.Length);
        Assert.StartsWith("{\"end\":", lines[^1], StringComparison.Ordinal);

        Assert.True((await gateway.VerifyAsync()).GetProperty("ok").GetBoolean());
    }
}
