using ExchangeGateway.Data;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;

namespace ExchangeGateway.Hosting;

public static class Health
{
    private const string Ready = "ready";
    private const string JobsTag = "jobs";

    public static IServiceCollection AddGatewayHealth(this IServiceCollection services, IConfiguration configuration)
    {
        // A pool of its own, and a small one: the probe must not depend on the app's pool being free, nor open a hundred
        // connections when it is called often.
        var probe = new Npgsql.NpgsqlConnectionStringBuilder(configuration.GetConnectionString(GatewayDatabase.ConnectionStringName)) { MaxPoolSize = 2 };
        services.AddHealthChecks()
            .AddNpgSql(probe.ConnectionString, name: "postgresql", tags: [Ready], timeout: TimeSpan.FromSeconds(3))
            .AddCheck<JobsHealthCheck>("jobs", tags: [JobsTag]);
        return services;
    }

    /// <summary>
    /// Live: the process answers; not rate limited (it touches nothing, and an orchestrator restarting a node for a 429
    /// would be worse than the traffic). Ready: it can reach PostgreSQL, so a load balancer may send it traffic; limited per
    /// address like everything else, since each call opens a database connection (configure <c>Proxies</c>, or every client
    /// shares the proxy's address and allowance). Jobs: the background work runs somewhere (see <see cref="JobsHealthCheck"/>),
    /// for monitoring, not for load balancers; limited like readiness.
    /// </summary>
    public static WebApplication MapGatewayHealth(this WebApplication app)
    {
        app.MapHealthChecks("/health/live", new HealthCheckOptions { Predicate = _ => false }).ExcludeFromDescription().DisableRateLimiting();
        app.MapHealthChecks("/health/ready", new HealthCheckOptions { Predicate = check => check.Tags.Contains(Ready) }).ExcludeFromDescription();
        app.MapHealthChecks("/health/jobs", new HealthCheckOptions
        {
            Predicate = check => check.Tags.Contains(JobsTag),
            ResponseWriter = JobsHealthCheck.WriteAsync,
        }).ExcludeFromDescription();
        return app;
    }
}
