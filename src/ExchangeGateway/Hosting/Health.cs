using ExchangeGateway.Data;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;

namespace ExchangeGateway.Hosting;

public static class Health
{
    private const string Ready = "ready";

    public static IServiceCollection AddGatewayHealth(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddHealthChecks()
            .AddNpgSql(configuration.GetConnectionString(GatewayDatabase.ConnectionStringName)!, name: "postgresql", tags: [Ready], timeout: TimeSpan.FromSeconds(3));
        return services;
    }

    /// <summary>Live: the process answers. Ready: it can reach PostgreSQL, so a load balancer may send it traffic.</summary>
    public static WebApplication MapGatewayHealth(this WebApplication app)
    {
        app.MapHealthChecks("/health/live", new HealthCheckOptions { Predicate = _ => false }).ExcludeFromDescription();
        app.MapHealthChecks("/health/ready", new HealthCheckOptions { Predicate = check => check.Tags.Contains(Ready) }).ExcludeFromDescription();
        return app;
    }
}
