using Microsoft.EntityFrameworkCore;
using System.ComponentModel.DataAnnotations;
using Microsoft.Extensions.Options;
using Npgsql;

namespace ExchangeGateway.Data;

public static class GatewayDatabase
{
    public const string ConnectionStringName = "Gateway";
    public const string OwnerConnectionStringName = "GatewayOwner";

    public static IServiceCollection AddGatewayDatabase(this IServiceCollection services, IConfiguration configuration)
    {
        var connectionString = configuration.GetConnectionString(ConnectionStringName);
        if (string.IsNullOrWhiteSpace(connectionString))
        {
            throw new InvalidOperationException(
                $"ConnectionStrings:{ConnectionStringName} is not set (environment variable ConnectionStrings__{ConnectionStringName}).");
        }

        services.AddOptions<DatabaseOptions>().BindConfiguration(DatabaseOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        // The gateway leaves no session state on its connections (advisory locks are transaction-scoped; no SET, LISTEN or
        // temporary tables), so the reset Npgsql sends when a pooled connection is taken again would be one more statement
        // per request, a tenth of PostgreSQL's time on the single-CV path. Hangfire and the health check keep their own pools.
        services.AddDbContextPool<GatewayDbContext>((sp, options) =>
            options.UseGateway(Pooled(connectionString, sp.GetRequiredService<IOptions<DatabaseOptions>>().Value)));
        return services;
    }

    /// <summary>How every context of the gateway talks to PostgreSQL, whichever connection (node pool, owner, audit replica).</summary>
    public static DbContextOptionsBuilder UseGateway(this DbContextOptionsBuilder options, string connectionString) =>
        options.UseNpgsql(connectionString).UseSnakeCaseNamingConvention().UseOpenIddict();

    /// <summary>The connection string as the gateway's pools use it: no reset on close, and the node's pool size unless it names one.</summary>
    public static string Pooled(string connectionString, DatabaseOptions options)
    {
        var poolGiven = new System.Data.Common.DbConnectionStringBuilder { ConnectionString = connectionString }.Keys.Cast<string>()
            .Any(k => PoolSizeKeywords.Contains(k.Replace(" ", "", StringComparison.Ordinal)));
        var pooled = new NpgsqlConnectionStringBuilder(connectionString) { NoResetOnClose = true };
        if (!poolGiven)
        {
            pooled.MaxPoolSize = options.MaxPoolSize;
        }

        return pooled.ConnectionString;
    }

    private static readonly HashSet<string> PoolSizeKeywords = new(["MaximumPoolSize", "MaxPoolSize"], StringComparer.OrdinalIgnoreCase);

    /// <summary>
    /// Applies pending migrations (EF Core serialises concurrent migrators with a lock). When ConnectionStrings:GatewayOwner
    /// is set, migrations run as that owner role, so the gateway itself can log in as a role that may only append to the
    /// audit log.
    /// </summary>
    public static async Task MigrateAsync(IServiceProvider services, CancellationToken cancellationToken = default)
    {
        var configuration = services.GetRequiredService<IConfiguration>();
        var owner = configuration.GetConnectionString(OwnerConnectionStringName);
        await using var scope = services.CreateAsyncScope();
        if (string.IsNullOrWhiteSpace(owner))
        {
            await scope.ServiceProvider.GetRequiredService<GatewayDbContext>().Database.MigrateAsync(cancellationToken);
            return;
        }

        var options = new DbContextOptionsBuilder<GatewayDbContext>();
        options.UseGateway(owner);
        await using var db = new GatewayDbContext(options.Options);
        await db.Database.MigrateAsync(cancellationToken);
    }
}

/// <summary>How this node uses PostgreSQL (section <c>Database</c>).</summary>
public sealed class DatabaseOptions
{
    public const string Section = "Database";

    /// <summary>Connections per node when neither the connection string nor Database:MaxPoolSize says otherwise.</summary>
    public const int DefaultMaxPoolSize = 16;

    /// <summary>
    /// Connections this node keeps, unless the connection string sets Maximum Pool Size. Npgsql's default of 100 lets a
    /// burst open that many backends, which the pool then takes in turn: on a 2-core database the single-CV read served
    /// 800 requests/s through 100 connections and 1 100 through 8, and the feed fell to a third as each backend first
    /// touched the shared buffers. About twice the database's cores, divided among the nodes.
    /// </summary>
    [Range(4, 500, ErrorMessage = "Database:MaxPoolSize must be between 4 and 500.")]
    public int MaxPoolSize { get; set; } = DefaultMaxPoolSize;

    public bool MigrateOnStart { get; set; } = true;
}
