using ExchangeGateway.Audit;
using ExchangeGateway.Auth;
using ExchangeGateway.Consents;
using ExchangeGateway.Cvs;
using ExchangeGateway.Data;
using ExchangeGateway.Events;
using Hangfire;
using Hangfire.Dashboard;
using Hangfire.PostgreSql;
using Hangfire.PostgreSql.Factories;

namespace ExchangeGateway.Hosting;

/// <summary>
/// Hangfire on PostgreSQL (its own schema) triggers the background work; the gateway's tables are the queues.
/// Every job is a plain class taking no arguments but a cancellation token: nothing personal ever sits in Hangfire.
/// </summary>
public static class Jobs
{
    /// <summary>
    /// Retries of a failed run (on every job class, with Hangfire's back-off: within about two minutes), instead of its ten
    /// over hours: every job works from the tables, so its next scheduled run (a minute to an hour away) does the rest, and
    /// a database outage would otherwise pile up ten retries per run. A run that still fails stays failed, for operators,
    /// on the dashboard.
    /// </summary>
    public const int RetryAttempts = 2;

    public static IServiceCollection AddGatewayJobs(this IServiceCollection services, IConfiguration configuration)
    {
        // Hangfire creates and owns its schema, so it connects as the owner when one is configured.
        var connectionString = configuration.GetConnectionString("Hangfire")
            ?? configuration.GetConnectionString(GatewayDatabase.OwnerConnectionStringName)
            ?? configuration.GetConnectionString(GatewayDatabase.ConnectionStringName)!;
        var storageOptions = new PostgreSqlStorageOptions
        {
            SchemaName = "hangfire",
            PrepareSchemaIfNecessary = true,
            // No retries at start: the storage is made in the start turn (Startup.PrepareAsync), once the database exists;
            // retrying there only delayed a wrong connection string's failure by a minute.
            StartupConnectionMaxRetries = 0,
            QueuePollInterval = TimeSpan.FromSeconds(1),
            InvisibilityTimeout = TimeSpan.FromMinutes(10),
        };
        // Each host gets its own storage instance from DI: Hangfire's JobStorage.Current is process-wide, and several
        // hosts in one process (tests, or a worker and a web host) must not end up writing into each other's storage.
        services.AddSingleton<JobStorage>(_ => new PostgreSqlStorage(new NpgsqlConnectionFactory(connectionString, storageOptions), storageOptions));
        // And activates jobs from its own container: Hangfire's default is JobActivator.Current, which each host sets as it
        // starts, so with several hosts in a process one host's server could run its jobs in another host's container
        // (another database): seen as a test whose dispatch never came.
        services.AddSingleton<JobActivator>(provider => new HostJobActivator(provider.GetRequiredService<IServiceScopeFactory>()));
        services.AddHangfire((provider, hangfire) => hangfire
            .SetDataCompatibilityLevel(CompatibilityLevel.Version_180)
            .UseSimpleAssemblyNameTypeSerializer()
            .UseRecommendedSerializerSettings()
            .UseLogProvider(new HostLogProvider(provider.GetRequiredService<ILoggerFactory>()))
            .UseStorage(provider.GetRequiredService<JobStorage>()));

        // Tests (and nodes meant only to serve requests) run without a server and call the jobs directly.
        var jobs = StartupOptions.Bind<JobOptions>(services, configuration, JobOptions.Section);
        if (jobs.RunServer)
        {
            services.AddHangfireServer(server =>
            {
                server.WorkerCount = jobs.Workers;
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
        services.AddScoped<DataKeyRotationJob>();
        services.AddScoped<ErasedRecordsPurgeJob>();
        return services;
    }

    /// <summary>
    /// The recurring jobs' ids in Hangfire, derived from their names in <see cref="JobOptions.DefaultSchedules"/>
    /// ("EventDispatch" is "event-dispatch"), so a job added there is registered and watched by the health check alike.
    /// </summary>
    public static readonly IReadOnlyDictionary<string, string> RecurringJobIds = JobOptions.DefaultSchedules.Keys.ToDictionary(
        name => name, name => string.Concat(name.Select((c, i) => char.IsUpper(c) && i > 0 ? "-" + char.ToLowerInvariant(c) : char.ToLowerInvariant(c).ToString())));

    /// <summary>
    /// The recurring schedule, (re)registered at every start so a deployment's schedule is the code's. A cron expression
    /// Hangfire cannot read stops the start with the setting's name (Hangfire's own message names only its parameter).
    /// </summary>
    public static void RegisterRecurringJobs(IRecurringJobManager jobs, JobOptions options)
    {
        void Add<TJob>(string name, System.Linq.Expressions.Expression<Func<TJob, Task>> run)
        {
            var cron = options.ScheduleOf(name);
            try
            {
                jobs.AddOrUpdate(RecurringJobIds[name], run, cron);
            }
            catch (ArgumentException e)
            {
                throw new InvalidOperationException($"{JobOptions.Section}:Schedules:{name}: '{cron}' is not a cron expression.", e);
            }
        }

        Add<EventDispatchJob>("EventDispatch", job => job.RunAsync(CancellationToken.None));
        Add<FreshnessSweepJob>("FreshnessSweep", job => job.RunAsync(CancellationToken.None));
        Add<ReminderJob>("Reminders", job => job.RunAsync(CancellationToken.None));
        Add<ConsentExpiryJob>("ConsentExpiry", job => job.RunAsync(CancellationToken.None));
        Add<OverdueEscalationJob>("OverdueEscalation", job => job.RunAsync(CancellationToken.None));
        Add<AuditCheckpointJob>("AuditCheckpoint", job => job.RunAsync(CancellationToken.None));
        Add<TokenPruningJob>("TokenPruning", job => job.RunAsync(CancellationToken.None));
        Add<DataKeyRotationJob>("DataKeyRotation", job => job.RunAsync(CancellationToken.None));
        Add<ErasedRecordsPurgeJob>("ErasedRecordsPurge", job => job.RunAsync(CancellationToken.None));
    }

    /// <summary>One DI scope per job, from this host's container.</summary>
    private sealed class HostJobActivator(IServiceScopeFactory scopes) : JobActivator
    {
        public override JobActivatorScope BeginScope(JobActivatorContext context) => new Scope(scopes.CreateAsyncScope());

        private sealed class Scope(AsyncServiceScope scope) : JobActivatorScope
        {
            public override object Resolve(Type type) => ActivatorUtilities.GetServiceOrCreateInstance(scope.ServiceProvider, type);

            // Hangfire ends a scope synchronously, on its own worker thread; the scope may hold services that dispose asynchronously.
            public override void DisposeScope() => scope.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
    }

    /// <summary>
    /// Hangfire's storage, made now: making it installs (or upgrades) Hangfire's schema, which must happen in the start
    /// turn, after the database exists, and fail with the setting's name.
    /// </summary>
    public static JobStorage PrepareStorage(IServiceProvider services)
    {
        try
        {
            return services.GetRequiredService<JobStorage>();
        }
        catch (Exception e) when (e is Npgsql.NpgsqlException or ArgumentException or InvalidOperationException)
        {
            throw new InvalidOperationException(
                $"Hangfire's storage could not be prepared ({e.GetType().Name}): check ConnectionStrings:Hangfire (or the owner's or the gateway's connection string it falls back to).", e);
        }
    }

    public static WebApplication MapGatewayDashboard(this WebApplication app)
    {
        app.UseWhen(
            context => HttpMethods.IsPost(context.Request.Method) && context.Request.Path.StartsWithSegments(DashboardPath),
            branch => branch.Use(AuditDashboardActionAsync));
        app.MapHangfireDashboard(DashboardPath, new DashboardOptions
        {
            Authorization = [new OperatorsOnly()],
            DashboardTitle = "ExchangeGateway jobs",
            DisplayStorageConnectionString = false,
        });
        return app;
    }

    private const string DashboardPath = "/hangfire";

    /// <summary>
    /// Every action taken on the dashboard (a POST: trigger, remove or disable a recurring job, requeue or delete jobs) is
    /// an audit row naming the operator, the action and the jobs, with its outcome. Removing "audit-checkpoint" stops the
    /// signed checkpoints until a node starts again; the auditors must be able to see who did it, as for any other
    /// operator action. Job ids and recurring job names hold no personal data (job arguments never do).
    /// </summary>
    private static async Task AuditDashboardActionAsync(HttpContext context, RequestDelegate next)
    {
        var jobs = context.Request.HasFormContentType
            ? (await context.Request.ReadFormAsync(context.RequestAborted))["jobs[]"].Where(j => j is not null).Select(j => SetError.Code(j!)).Take(100).ToArray()
            : [];
        await next(context);
        if (context.User.Identity?.IsAuthenticated != true)
        {
            return;
        }

        var trail = context.RequestServices.GetRequiredService<AuditTrail>();
        var actor = AuditActor.From(context.User, trail.Pseudonyms);
        var outcome = context.Response.StatusCode < 400 ? Outcomes.Success : context.Response.StatusCode is 401 or 403 ? Outcomes.Denied : Outcomes.Failure;
        var action = SetError.Code(context.Request.Path.Value![DashboardPath.Length..]);
        // Not the request's token: the action ran (or was refused) whatever the browser does next, and must be on record.
        await trail.AppendAsync(
            new AuditEntry(actor.Kind, actor.Id, AuditActions.JobsDashboardAction, outcome,
                Details: new Dictionary<string, object?> { ["action"] = action, ["jobs"] = jobs, ["status"] = context.Response.StatusCode }),
            CancellationToken.None);
    }

    /// <summary>
    /// Hangfire's log provider is process-wide and outlives a host: once that host's logger factory is disposed (a host
    /// stopped while another runs on), Hangfire logs nowhere instead of failing the enqueue that wanted to log.
    /// </summary>
    private sealed class HostLogProvider(ILoggerFactory loggers) : Hangfire.Logging.ILogProvider
    {
        private readonly Hangfire.AspNetCore.AspNetCoreLogProvider _inner = new(loggers);

        public Hangfire.Logging.ILog GetLogger(string name)
        {
            try
            {
                return new SafeLog(_inner.GetLogger(name));
            }
            catch (ObjectDisposedException)
            {
                return new SafeLog(null);
            }
        }

        private sealed class SafeLog(Hangfire.Logging.ILog? inner) : Hangfire.Logging.ILog
        {
            public bool Log(Hangfire.Logging.LogLevel logLevel, Func<string>? messageFunc, Exception? exception = null)
            {
                try
                {
                    return inner?.Log(logLevel, messageFunc!, exception) ?? false;
                }
                catch (ObjectDisposedException)
                {
                    return false;
                }
            }
        }
    }

    /// <summary>The dashboard can trigger and delete jobs: operators only, signed in on the gateway's pages.</summary>
    private sealed class OperatorsOnly : IDashboardAuthorizationFilter
    {
        public bool Authorize(DashboardContext context)
        {
            var http = context.GetHttpContext();
            return http.User.Identity?.IsAuthenticated == true && http.User.IsInRole(Roles.Operator)
                && http.RequestServices.GetRequiredService<SecondFactor>().Accepts(http.User);
        }
    }
}
