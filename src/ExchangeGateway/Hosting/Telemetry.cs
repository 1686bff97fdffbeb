using System.Diagnostics.Metrics;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;

namespace ExchangeGateway.Hosting;

/// <summary>The gateway's own metrics; exported over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set.</summary>
public sealed class GatewayMetrics
{
    public const string MeterName = "ExchangeGateway";

    public GatewayMetrics(IMeterFactory meters)
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
    }

    public Counter<long> CvsDisclosed { get; }
    public Counter<long> EventsDelivered { get; }
    public Counter<long> EventDeliveryFailures { get; }
    public Counter<long> ObligationsOverdue { get; }
    public Counter<long> MailSent { get; }
    public Counter<long> MailFailed { get; }
    public Counter<long> MailDropped { get; }
    public Counter<long> CvsUnreadable { get; }
    public Counter<long> TokensRefused { get; }
}

public static class Telemetry
{
    public static WebApplicationBuilder AddGatewayTelemetry(this WebApplicationBuilder builder)
    {
        if (!builder.Environment.IsDevelopment())
        {
            builder.Logging.AddJsonConsole(options => options.IncludeScopes = true);
        }

        builder.Services.AddSingleton<GatewayMetrics>();
        var otel = builder.Services.AddOpenTelemetry()
            .ConfigureResource(resource => resource.AddService("exchange-gateway"))
            .WithMetrics(metrics => metrics
                .AddAspNetCoreInstrumentation()
                .AddMeter(GatewayMetrics.MeterName, "Npgsql"));
        if (!string.IsNullOrEmpty(builder.Configuration["OTEL_EXPORTER_OTLP_ENDPOINT"]))
        {
            otel.UseOtlpExporter();
        }

        return builder;
    }
}
