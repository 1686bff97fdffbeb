using ExchangeGateway.Audit;
using ExchangeGateway.Auth;
using ExchangeGateway.Consents;
using ExchangeGateway.Cvs;
using ExchangeGateway.Data;
using ExchangeGateway.Events;
using Hangfire;
using Hangfire.Dashboard;
using Hangfire.PostgreSql;

namespace ExchangeGateway.Hosting;

/// <summary>
/// Hangfire on PostgreSQL (its own schema) triggers the background work; the gateway's tables are the queues.
/// Every job is a plain class taking no arguments but a cancellation token: nothing personal ever sits in Hangfire.
/// </summary>
public static class Jobs
{
    public static IServiceCollection AddGatewayJobs(this IServiceCollection services, IConfiguration configuration)
    {
        // Hangfire creates and owns its schema, so it connects as the owner when one is configured.
        var connectionString = configuration.GetConnectionString("Hangfire")
            ?? configuration.GetConnectionString(GatewayDatabase.OwnerConnectionStringName)
            ?? configuration.GetConnectionString(GatewayDatabase.ConnectionStringName)!;
        services.AddHangfire(hangfire => hangfire
            .SetDataCompatibilityLevel(CompatibilityLevel.Version_180)
            .UseSimpleAssemblyNameTypeSerializer()
            .UseRecommendedSerializerSettings()
            .UsePostgreSqlStorage(storage => storage.UseNpgsqlConnection(connectionString), new PostgreSqlStorageOptions
            {
                SchemaName = "hangfire",
                PrepareSchemaIfNecessary = true,
                QueuePollInterval = TimeSpan.FromSeconds(1),
                InvisibilityTimeout = TimeSpan.FromMinutes(10),
            }));

        // Tests (and nodes meant only to serve requests) run without a server and call the jobs directly.
        if (configuration.GetValue("Jobs:RunServer", true))
        {
            services.AddHangfireServer(server =>
            {
                server.WorkerCount = configuration.GetValue("Jobs:Workers", 4);
                server.ServerName = $"{Environment.MachineName}:{Environment.ProcessId}";
            });
        }

        services.AddScoped<DispatchSignal>();
        services.AddScoped<EventDispatchJob>();
        services.AddScoped<FreshnessSweepJob>();
        services.AddScoped<ReminderJob>();
        services.AddScoped<ConsentExpiryJob>();
        services.AddScoped<OverdueEscalationJob>();
        services.AddScoped<AuditCheckpointJob>();
        services.AddScoped<TokenPruningJob>();
        return services;
    }

    /// <summary>The recurring schedule, (re)registered at every start so a deployment's schedule is the code's.</summary>
    public static void RegisterRecurringJobs(IRecurringJobManager jobs, IConfiguration configuration)
    {
        string Schedule(string name, string fallback) => configuration[$"Jobs:Schedules:{name}"] ?? fallback;
        jobs.AddOrUpdate<EventDispatchJob>("event-dispatch", job => job.RunAsync(CancellationToken.None), Schedule("EventDispatch", Cron.Minutely()));
        jobs.AddOrUpdate<FreshnessSweepJob>("freshness-sweep", job => job.RunAsync(CancellationToken.None), Schedule("FreshnessSweep", "*/10 * * * *"));
        jobs.AddOrUpdate<ReminderJob>("reminders", job => job.RunAsync(CancellationToken.None), Schedule("Reminders", "15 * * * *"));
        jobs.AddOrUpdate<ConsentExpiryJob>("consent-expiry", job => job.RunAsync(CancellationToken.None), Schedule("ConsentExpiry", "*/10 * * * *"));
        jobs.AddOrUpdate<OverdueEscalationJob>("overdue-escalation", job => job.RunAsync(CancellationToken.None), Schedule("OverdueEscalation", "*/15 * * * *"));
        jobs.AddOrUpdate<AuditCheckpointJob>("audit-checkpoint", job => job.RunAsync(CancellationToken.None), Schedule("AuditCheckpoint", Cron.Hourly()));
        jobs.AddOrUpdate<TokenPruningJob>("token-pruning", job => job.RunAsync(CancellationToken.None), Schedule("TokenPruning", Cron.Daily(3)));
    }

    public static WebApplication MapGatewayDashboard(this WebApplication app)
    {
        app.MapHangfireDashboard("/hangfire", new DashboardOptions
        {
            Authorization = [new OperatorsOnly()],
            DashboardTitle = "ExchangeGateway jobs",
            DisplayStorageConnectionString = false,
        });
        return app;
    }

    /// <summary>The dashboard can trigger and delete jobs: operators only, signed in on the gateway's pages.</summary>
    private sealed class OperatorsOnly : IDashboardAuthorizationFilter
    {
        public bool Authorize(DashboardContext context)
        {
            var user = context.GetHttpContext().User;
            return user.Identity?.IsAuthenticated == true && user.IsInRole(Roles.Operator);
        }
    }
}
