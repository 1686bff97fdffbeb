using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using ExchangeGateway.Hosting;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace ExchangeGateway.Tests.Hosting;

/// <summary>
/// The metrics an operator watches the promises with, read as an exporter reads them (a listener on the node's meter), on
/// a node with a database of its own so that every count is this test's: CVs the sweep took offline, consents the expiry
/// job ended, the disclosure recorder's batches, failed pushes by kind of failure, and the erasure backlog read from the
/// database.
/// </summary>
public sealed class MetricsTests
{
    /// <summary>
    /// OTEL_EXPORTER_OTLP_ENDPOINT exports the metrics, as the README says, and only them: the logs stay where the operator
    /// sends them (OpenTelemetry's UseOtlpExporter would have shipped every log line to the collector as well).
    /// </summary>
    [Fact]
    public async Task AnOtlpEndpointExportsTheMetricsAndNotTheLogs()
    {
        await using var database = await TestDatabase.CreateAsync();
        await using var node = new GatewayFactory(database, new FakeTimeProvider(DateTimeOffset.UtcNow),
            settings: new Dictionary<string, string?> { ["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://127.0.0.1:9" });
        Assert.NotNull(node.Services.GetService<OpenTelemetry.Metrics.MeterProvider>());
        Assert.DoesNotContain(node.Services.GetServices<Microsoft.Extensions.Logging.ILoggerProvider>(),
            p => p.GetType().FullName!.StartsWith("OpenTelemetry", StringComparison.Ordinal));
    }

    [Fact]
    public async Task TheJobsTheRecorderAndFailedPushesAreMeasuredAndTheBacklogIsGauged()
    {
        await using var database = await TestDatabase.CreateAsync();
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var node = new GatewayFactory(database, clock);
        await using var receiver = await PushReceiver.StartAsync();
        receiver.Default = new PushReply(500);
        var actors = new Actors(node);
        var site = await Sites.RegisterAsync(node, actors, SiteOptions.Push(receiver.Endpoint));
        var marker = "metrics-" + Guid.NewGuid().ToString("N");
        var seeker = await Propagation.SeekerWithCvAsync(node, actors, marker);
        await Sharing.TickAsync(node, seeker.Tokens.AccessToken, site.Id);
        using var measured = new Measurements(node.Services.GetRequiredService<GatewayMetrics>().CvsDisclosed.Meter);

        // One feed read: one batch of the recorder, with its one document.
        await Propagation.ReadAsync(node, await actors.TokenAsync(site), marker);
        var batch = Assert.Single(measured.Of("exchange_gateway.disclosure.batch.size"));
        Assert.Equal(1, batch.Value);
        Assert.InRange(Assert.Single(measured.Of("exchange_gateway.disclosure.batch.duration")).Value, double.Epsilon, 60);

        // The CV goes stale: the sweep takes it (and the demo seekers' CVs) offline, and the site's push fails with a 500.
        clock.Advance(TimeSpan.FromDays(91));
        var swept = await node.RunFreshnessSweepAsync();
        Assert.True(swept >= 1);
        Assert.Equal(swept, measured.Sum("exchange_gateway.cv.taken_offline"));
        await node.RunDispatchAsync();
        Assert.NotEmpty(receiver.Received);
        var failures = measured.Of("exchange_gateway.events.delivery_failures");
        Assert.NotEmpty(failures);
        Assert.All(failures, f => Assert.Equal("http_5xx", f.Tags.GetValueOrDefault("error.type")));

        // A year after the tick the consent lapses.
        clock.Advance(TimeSpan.FromDays(275));
        var expired = await node.RunConsentExpiryAsync();
        Assert.True(expired >= 1);
        Assert.Equal(expired, measured.Sum("exchange_gateway.consent.expired"));

        // The backlog, as the database holds it: the sweep's obligation is open and long past its deadline, the expiry's open.
        var now = $"'{clock.GetUtcNow():O}'::timestamptz";
        var open = await database.ScalarAsync<long>("SELECT count(*) FROM erasure_obligations WHERE status <> 'Confirmed'");
        var overdue = await database.ScalarAsync<long>(
            $"SELECT count(*) FROM erasure_obligations WHERE status <> 'Confirmed' AND (overdue OR confirm_before <= {now})");
        Assert.True(open >= 2 && overdue >= 1, $"open {open}, overdue {overdue}");
        measured.Observe();
        Assert.Equal(open, Assert.Single(measured.Of("exchange_gateway.erasure.open_obligations")).Value);
        Assert.Equal(overdue, Assert.Single(measured.Of("exchange_gateway.erasure.overdue_obligations")).Value);
    }

    /// <summary>Every measurement of one meter's instruments, with its attributes.</summary>
    private sealed class Measurements : IDisposable
    {
        private readonly MeterListener _listener = new();
        private readonly ConcurrentQueue<(string Instrument, double Value, Dictionary<string, object?> Tags)> _seen = new();

        public Measurements(Meter meter)
        {
            _listener.InstrumentPublished = (instrument, listener) =>
            {
                // This node's meter only: other tests' nodes in the process have meters of the same name.
                if (instrument.Meter == meter)
                {
                    listener.EnableMeasurementEvents(instrument);
                }
            };
            _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) => Add(instrument, value, tags));
            _listener.SetMeasurementEventCallback<int>((instrument, value, tags, _) => Add(instrument, value, tags));
            _listener.SetMeasurementEventCallback<double>((instrument, value, tags, _) => Add(instrument, value, tags));
            _listener.Start();
        }

        /// <summary>Reads the observable instruments (the gauges), as an exporter does at each collection.</summary>
        public void Observe() => _listener.RecordObservableInstruments();

        public List<(double Value, Dictionary<string, object?> Tags)> Of(string instrument) =>
            [.. _seen.Where(m => m.Instrument == instrument).Select(m => (m.Value, m.Tags))];

        public double Sum(string instrument) => Of(instrument).Sum(m => m.Value);

        public void Dispose() => _listener.Dispose();

        private void Add(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags) =>
            _seen.Enqueue((instrument.Name, value, tags.ToArray().ToDictionary(t => t.Key, t => t.Value)));
    }
}
