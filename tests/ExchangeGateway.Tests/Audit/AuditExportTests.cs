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

        // The last line says where the stream ends: the sequence of the last event sent.
        var trailer = events[^1];
        events.RemoveAt(events.Count - 1);
        var ids = events.Select(e => e.GetProperty("id").GetInt64()).ToList();
        Assert.Equal(ids[^1], trailer.GetProperty("end").GetInt64());
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
        var exported = text.Split('\n', StringSplitOptions.RemoveEmptyEntries).SkipLast(1).Select(l => JsonDocument.Parse(l).RootElement.GetProperty("id").GetInt64());

        Assert.Equal(queried, exported);
        Assert.Equal(2, exported.Count());
        await (await auditor.GetAsync($"{AuditLog.ExportPath}?action=no-such-action")).AssertProblemAsync(HttpStatusCode.BadRequest);
    }

    /// <summary>
    /// A stream cut short (a proxy's timeout, a dropped connection) must be told from a complete one, and resumed where it
    /// stopped: after=N sends the events after row N, and the last line, {"end": N}, is where to resume from.
    /// </summary>
    [Fact]
    public async Task TheExportResumesAfterASequenceAndEndsWithTheSequenceToResumeFrom()
    {
        var ghost = AuditLog.NewGhostClientId();
        for (var i = 0; i < 3; i++)
        {
            await AuditLog.RefuseTokenAsync(fixture.Actors, ghost);
        }

        using var auditor = fixture.Client().WithToken(await fixture.Actors.AuditorClientTokenAsync());
        async Task<(List<long> Ids, long End)> ExportAsync(string query)
        {
            var lines = (await auditor.GetStringAsync($"{AuditLog.ExportPath}?{query}")).Split('\n', StringSplitOptions.RemoveEmptyEntries);
            var end = JsonDocument.Parse(lines[^1]).RootElement;
            Assert.Equal(["end"], end.EnumerateObject().Select(p => p.Name));
            return ([.. lines[..^1].Select(l => JsonDocument.Parse(l).RootElement.GetProperty("id").GetInt64())], end.GetProperty("end").GetInt64());
        }

        var all = await ExportAsync($"actor={ghost}");
        Assert.Equal(3, all.Ids.Count);
        Assert.Equal(all.Ids[^1], all.End);

        var resumed = await ExportAsync($"actor={ghost}&after={all.Ids[0]}");
        Assert.Equal(all.Ids[1..], resumed.Ids);
        Assert.Equal(all.End, resumed.End);

        var nothingNew = await ExportAsync($"actor={ghost}&after={all.End}");
        Assert.Empty(nothingNew.Ids);
        Assert.Equal(all.End, nothingNew.End);

        await (await auditor.GetAsync($"{AuditLog.ExportPath}?after=-1")).AssertProblemAsync(HttpStatusCode.BadRequest);
    }
}
