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

    /// <summary>
    /// Live: the process answers. Ready: it can reach PostgreSQL, so a load balancer may send it traffic. Neither is rate
    /// limited: behind a proxy every request shares the proxy's address, and a burst of traffic answering the probes 429
    /// would take every node out of the pool at once.
    /// </summary>
    public static WebApplication MapGatewayHealth(this WebApplication app)
    {
        app.MapHealthChecks("/health/live", new HealthCheckOptions { Predicate = _ => false }).ExcludeFromDescription().DisableRateLimiting();
        app.MapHealthChecks("/health/ready", new HealthCheckOptions { Predicate = check => check.Tags.Contains(Ready) }).ExcludeFromDescription().DisableRateLimiting();
        return app;
    }
}
