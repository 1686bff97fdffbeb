using System.Globalization;
using System.Text;
using System.Text.Json;

namespace ExchangeGateway.Bench;

/// <summary>
/// Turns the run's measurements ("key value" lines written by scripts/bench) into the one table of figures and ratios,
/// printed and written as Markdown and JSON.
/// </summary>
internal static class Report
{
    private sealed record Row(string Scenario, string Gateway, string Baseline, double? Ratio, string Target, bool? Met, string Note);

    public static int Run(Options options)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var line in File.ReadAllLines(options.String("measurements")))
        {
            var space = line.IndexOf(' ', StringComparison.Ordinal);
            if (space > 0)
            {
                values[line[..space]] = line[(space + 1)..].Trim();
            }
        }

        double? N(string key) => values.TryGetValue(key, out var v) && double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) ? d : null;
        string S(string key) => values.TryGetValue(key, out var v) ? v : "?";
        static string F(double? value, string format = "0") => value is null ? "—" : value.Value.ToString(format, CultureInfo.InvariantCulture);
        static double? Div(double? a, double? b) => a is null || b is null || b == 0 ? null : a / b;

        var rows = new List<Row>();
        var feed = Div(N("feed.gateway.docs_per_s"), N("feed.baseline.docs_per_s"));
        rows.Add(new("feed (documents/s, GET /api/v1/shared-cvs, 100 a page)",
            $"{F(N("feed.gateway.docs_per_s"))} docs/s ({F(N("feed.gateway.pages_per_s"), "0.0")} pages/s, p50 {F(N("feed.gateway.p50_ms"), "0.0")} ms)",
            $"{F(N("feed.baseline.docs_per_s"))} docs/s (pgbench, same keyset SQL)", feed, "≥ 0.70", feed >= 0.70,
            $"{S("feed.concurrency")} connections, both sides"));
        var deep = Div(N("deep.p50_ms"), N("first.p50_ms"));
        rows.Add(new("deep page (page at 90% depth vs first page, median latency)",
            $"{F(N("deep.p50_ms"), "0.0")} ms at 90%", $"{F(N("first.p50_ms"), "0.0")} ms first page (the gateway's own; no raw baseline)", deep, "≤ 1.2 ×",
            deep <= 1.2, "1 connection"));
        var single = Div(N("single.gateway.rps"), N("single.baseline.tps"));
        rows.Add(new("single CV (GET /api/v1/shared-cvs/{id})",
            $"{F(N("single.gateway.rps"))} req/s (p50 {F(N("single.gateway.p50_ms"), "0.0")} ms, p99 {F(N("single.gateway.p99_ms"), "0.0")} ms)",
            $"{F(N("single.baseline.tps"))} reads/s (pgbench -M prepared)", single, "≥ 0.50", single >= 0.50,
            $"{S("single.concurrency")} connections, both sides"));
        var token = Div(N("token.protected.rps"), N("token.anonymous.rps"));
        rows.Add(new("token validation (trivial endpoint with a JWT vs anonymous), as deployed",
            $"{F(N("token.protected.rps"))} req/s with token", $"{F(N("token.anonymous.rps"))} req/s anonymous", token, "≥ 0.55", token >= 0.55,
            $"{S("token.concurrency")} connections; one token, so after its first use the validated-token cache answers"));
        var uncached = Div(N("token_uncached.protected.rps"), N("token_uncached.anonymous.rps"));
        rows.Add(new("token validation, signature checked on every request",
            $"{F(N("token_uncached.protected.rps"))} req/s with token", $"{F(N("token_uncached.anonymous.rps"))} req/s anonymous", uncached, "≥ 0.55",
            uncached >= 0.55, "Auth:CacheValidatedTokens=false, gateway restarted"));
        var sweep = Div(N("sweep.gateway.s"), N("sweep.baseline.s"));
        rows.Add(new("freshness sweep (30% of CVs stale)",
            $"{F(N("sweep.gateway.s"), "0.00")} s for {F(N("sweep.gateway.cvs"))} CVs, {F(N("sweep.gateway.obligations"))} obligations",
            $"{F(N("sweep.baseline.s"), "0.00")} s (one UPDATE … RETURNING, {F(N("sweep.baseline.rows"))} rows)", sweep, "time ≤ 2 ×", sweep <= 2.0, ""));
        var dispatch = Div(N("dispatch.gateway.eps"), N("dispatch.baseline.rps"));
        rows.Add(new("dispatch (signed SETs pushed to a loopback receiver)",
            $"{F(N("dispatch.gateway.eps"))} events/s ({F(N("dispatch.gateway.delivered"))} delivered)",
            $"{F(N("dispatch.baseline.rps"))} posts/s (plain HttpClient, same bytes)", dispatch, "≥ 0.25 and ≥ 1 000/s",
            dispatch >= 0.25 && N("dispatch.gateway.eps") >= 1000, $"concurrency {S("dispatch.concurrency")}"));
        var audit = Div(N("audit.gateway.s"), N("audit.baseline.s"));
        rows.Add(new("audit verify (whole chain)",
            $"{F(N("audit.gateway.s"), "0.00")} s for {F(N("audit.rows"))} events ({F(N("audit.gateway.process_s"), "0.00")} s with process start)",
            $"{F(N("audit.baseline.s"), "0.00")} s (COPY audit_events TO /dev/null)", audit, "time ≤ 2 ×", audit <= 2.0, ""));
        var rss = N("memory.peak_rss_mb");
        rows.Add(new("memory (gateway peak RSS during the feed)", $"{F(rss)} MB", "—", null, "≤ 512 MB", rss <= 512, ""));

        var markdown = new StringBuilder();
        markdown.AppendLine(CultureInfo.InvariantCulture, $"### {options.String("title", "ExchangeGateway benchmark")}");
        markdown.AppendLine();
        markdown.AppendLine(CultureInfo.InvariantCulture,
            $"{S("run.date")} · {S("machine.cores")} cores, {S("machine.memory_gb")} GB · PostgreSQL {S("machine.postgres")} · .NET {S("machine.dotnet")} · "
            + $"--cvs {S("params.cvs")} --recipients {S("params.recipients")} --shares {S("params.shares")} --duration {S("params.duration")}s · "
            + $"seed {S("seed.seconds")} s, whole run {S("run.seconds")} s");
        markdown.AppendLine();
        markdown.AppendLine(CultureInfo.InvariantCulture, $"Machine load: {S("machine.load")}");
        markdown.AppendLine();
        markdown.AppendLine("| scenario | gateway | raw baseline (same run) | ratio | target | met |");
        markdown.AppendLine("|---|---|---|---|---|---|");
        foreach (var row in rows)
        {
            var note = row.Note.Length > 0 ? $" <br>*{row.Note}*" : "";
            markdown.AppendLine(CultureInfo.InvariantCulture,
                $"| {row.Scenario}{note} | {row.Gateway} | {row.Baseline} | {(row.Ratio is null ? "—" : row.Ratio.Value.ToString("0.00", CultureInfo.InvariantCulture))} | {row.Target} | {(row.Met is null ? "?" : row.Met.Value ? "yes" : "**no**")} |");
        }

        var outDir = options.String("out-dir");
        Directory.CreateDirectory(outDir);
        var stamp = options.String("stamp", DateTime.UtcNow.ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture));
        File.WriteAllText(Path.Combine(outDir, stamp + ".md"), markdown.ToString());
        var json = new
        {
            measurements = values,
            table = rows.Select(r => new { r.Scenario, r.Gateway, r.Baseline, r.Ratio, r.Target, r.Met, r.Note }),
        };
        File.WriteAllText(Path.Combine(outDir, stamp + ".json"), JsonSerializer.Serialize(json, new JsonSerializerOptions { WriteIndented = true }));
        Console.WriteLine(markdown);
        return 0;
    }
}
