using System.Diagnostics.Metrics;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;

namespace ExchangeGateway.Hosting;

/// <summary>The gateway's own metrics; exported over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set.</summary>
public sealed class GatewayMetrics
{
    public const string MeterName = "ExchangeGateway";

    /// <summary>The attribute that says why a delivery attempt failed, from a fixed set of words (see EventDispatchJob).</summary>
    public const string ErrorType = "error.type";

    public GatewayMetrics(IMeterFactory meters, Events.ObligationBacklog backlog)
    {
        var meter = meters.Create(MeterName);
        CvsDisclosed = meter.CreateCounter<long>("exchange_gateway.cvs.disclosed", description: "CV documents sent to recipients");
        EventsDelivered = meter.CreateCounter<long>("exchange_gateway.events.delivered", description: "Security event tokens delivered");
        EventDeliveryFailures = meter.CreateCounter<long>("exchange_gateway.events.delivery_failures", description: "Failed delivery attempts");
        ObligationsOverdue = meter.CreateCounter<long>("exchange_gateway.erasures.overdue", description: "Erasure obligations escalated as overdue");
        MailSent = meter.CreateCounter<long>("exchange_gateway.mail.sent", description: "Account messages handed to the mail server");
        MailFailed = meter.CreateCounter<long>("exchange_gateway.mail.failed", description: "Account messages the mail server did not take");
        MailDropped = meter.CreateCounter<long>("exchange_gateway.mail.dropped", description: "Account messages not queued (per-address limit, full queue)");
        CvsUnreadable = meter.CreateCounter<long>("exchange_gateway.cvs.unreadable", description: "CVs skipped because their key could not be unwrapped or their content opened");
        TokensRefused = meter.CreateCounter<long>("exchange_gateway.tokens.refused", description: "Refused token requests (tag audited: whether an audit event records it)");

        // The instruments above keep the names dashboards know. Those below follow OpenTelemetry's conventions: a singular
        // namespace, a unit, seconds for durations; none carries a seeker, a site or any other unbounded value.
        CvsTakenOffline = meter.CreateCounter<long>("exchange_gateway.cv.taken_offline", unit: "{cv}",
            description: "CVs the freshness sweep took offline");
        ConsentsExpired = meter.CreateCounter<long>("exchange_gateway.consent.expired", unit: "{consent}",
            description: "Consents the expiry job ended as expired");
        DisclosureBatchSize = meter.CreateHistogram("exchange_gateway.disclosure.batch.size", unit: "{document}",
            description: "Documents in one group commit of the disclosure ledger and its audit events",
            advice: new InstrumentAdvice<int> { HistogramBucketBoundaries = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000] });
        // From taking a connection to the commit, the wait for the chain lock included: it grows as the recorder nears the
        // load at which readers start getting 503s.
        DisclosureBatchDuration = meter.CreateHistogram("exchange_gateway.disclosure.batch.duration", unit: "s",
            description: "Time to record one batch of disclosures, from its transaction's start to its commit",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10] });
        meter.CreateObservableGauge("exchange_gateway.erasure.open_obligations", () => Observe(backlog, c => c.Open), unit: "{obligation}",
            description: "Erasure and update obligations not yet confirmed by their site, on the whole deployment (read at most every 30 s)");
        meter.CreateObservableGauge("exchange_gateway.erasure.overdue_obligations", () => Observe(backlog, c => c.Overdue), unit: "{obligation}",
            description: "Open obligations past their deadline, on the whole deployment (read at most every 30 s)");
    }

    private static IEnumerable<Measurement<long>> Observe(Events.ObligationBacklog backlog, Func<Events.ObligationBacklog.Counts, long> value) =>
        backlog.Current() is { } counts ? [new Measurement<long>(value(counts))] : [];

    public Counter<long> CvsDisclosed { get; }
    public Counter<long> EventsDelivered { get; }
    public Counter<long> EventDeliveryFailures { get; }
    public Counter<long> ObligationsOverdue { get; }
    public Counter<long> MailSent { get; }
    public Counter<long> MailFailed { get; }
    public Counter<long> MailDropped { get; }
    public Counter<long> CvsUnreadable { get; }
    public Counter<long> TokensRefused { get; }
    public Counter<long> CvsTakenOffline { get; }
    public Counter<long> ConsentsExpired { get; }
    public Histogram<int> DisclosureBatchSize { get; }
    public Histogram<double> DisclosureBatchDuration { get; }
}

public static class Telemetry
{
    public static WebApplicationBuilder AddGatewayTelemetry(this WebApplicationBuilder builder)
    {
        if (!builder.Environment.IsDevelopment())
        {
            builder.Logging.AddJsonConsole(options => options.IncludeScopes = true);
        }

        builder.Services.AddSingleton<Events.ObligationBacklog>();
        builder.Services.AddSingleton<GatewayMetrics>();
        // Metrics only: UseOtlpExporter() would also ship every log line to the collector, a second store off the node
        // under its own retention, which an operator asking for metrics did not choose.
        var export = !string.IsNullOrEmpty(builder.Configuration["OTEL_EXPORTER_OTLP_ENDPOINT"]);
        builder.Services.AddOpenTelemetry()
            .ConfigureResource(resource => resource.AddService("exchange-gateway"))
            .WithMetrics(metrics =>
            {
                metrics.AddAspNetCoreInstrumentation().AddMeter(GatewayMetrics.MeterName, "Npgsql");
                if (export)
                {
                    metrics.AddOtlpExporter();
                }
            });
        return builder;
    }
}
