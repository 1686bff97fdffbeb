using System.Net;
using System.Text.Json;
using ExchangeGateway.Tests.Infrastructure;

namespace ExchangeGateway.Tests.Audit;

[Collection(GatewayCollection.Name)]
public sealed class AuditExportTests(GatewayFixture fixture)
{
    [Fact]
    public async Task TheExportStreamsOneJsonObjectPerLineInSequenceOrder()
    {
        var ghost = AuditLog.NewGhostClientId();
        for (var i = 0; i < 3; i++)
        {
            await AuditLog.RefuseTokenAsync(fixture.Actors, ghost);
        }

        using var auditor = fixture.Client().WithToken(await fixture.Actors.AuditorClientTokenAsync());
        using var response = await auditor.GetAsync(AuditLog.ExportPath, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("application/x-ndjson", response.Content.Headers.ContentType?.MediaType);
        // Streamed, not buffered: no length is known up front.
        Assert.Null(response.Content.Headers.ContentLength);

        await using var body = await response.Content.ReadAsStreamAsync();
        using var reader = new StreamReader(body);
        var first = await reader.ReadLineAsync();
        Assert.False(string.IsNullOrEmpty(first), "the export has no first line");
        var events = new List<JsonElement> { JsonDocument.Parse(first).RootElement.Clone() };
        while (await reader.ReadLineAsync() is { } line)
        {
            Assert.False(string.IsNullOrWhiteSpace(line), "an empty line in the export");
            var element = JsonDocument.Parse(line).RootElement;
            Assert.Equal(JsonValueKind.Object, element.ValueKind);
            events.Add(element.Clone());
        }

        var ids = events.Select(e => e.GetProperty("id").GetInt64()).ToList();
        Assert.Equal(1, ids[0]);
        Assert.True(ids.Zip(ids.Skip(1)).All(p => p.Second == p.First + 1), "the export skips or repeats sequence numbers");
        Assert.Equal(3, events.Count(e => e.GetProperty("actorId").GetString() == ghost));
        // The export itself was recorded before it started, so it is in its own output.
        Assert.Equal("audit.exported", events[^1].GetProperty("action").GetString());
        Assert.All(events, e =>
        {
            Assert.Equal(64, e.GetProperty("hash").GetString()!.Length);
            Assert.Equal(64, e.GetProperty("previousHash").GetString()!.Length);
        });
    }

    [Fact]
    public async Task TheExportAppliesTheSameFiltersAsTheQuery()
    {
        var ghost = AuditLog.NewGhostClientId();
        for (var i = 0; i < 2; i++)
        {
            await AuditLog.RefuseTokenAsync(fixture.Actors, ghost);
        }

        using var auditor = fixture.Client().WithToken(await fixture.Actors.AuditorClientTokenAsync());
        var queried = (await AuditLog.EventsAsync(auditor, $"actor={ghost}&action=auth.token-refused")).Select(e => e.GetProperty("id").GetInt64());
        var text = await auditor.GetStringAsync($"{AuditLog.ExportPath}?actor={ghost}&action=auth.token-refused");
        var exported = text.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement.GetProperty("id").GetInt64());

        Assert.Equal(queried, exported);
        Assert.Equal(2, exported.Count());
        await (await auditor.GetAsync($"{AuditLog.ExportPath}?action=no-such-action")).AssertProblemAsync(HttpStatusCode.BadRequest);
    }
}
