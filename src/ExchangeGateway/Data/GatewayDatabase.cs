using Microsoft.EntityFrameworkCore;
using Npgsql;

namespace ExchangeGateway.Data;

public static class GatewayDatabase
{
    public const string ConnectionStringName = "Gateway";
    public const string OwnerConnectionStringName = "GatewayOwner";

    /// <summary>Connections per node when neither the connection string nor Database:MaxPoolSize says otherwise.</summary>
    public const int DefaultMaxPoolSize = 16;

    public static IServiceCollection AddGatewayDatabase(this IServiceCollection services, IConfiguration configuration)
    {
        var connectionString = configuration.GetConnectionString(ConnectionStringName);
        if (string.IsNullOrWhiteSpace(connectionString))
        {
            throw new InvalidOperationException(
                $"ConnectionStrings:{ConnectionStringName} is not set (environment variable ConnectionStrings__{ConnectionStringName}).");
        }

        // The gateway leaves no session state on its connections (advisory locks are transaction-scoped; no SET, LISTEN or
        // temporary tables), so the reset Npgsql sends when a pooled connection is taken again would be one more statement
        // per request, a tenth of PostgreSQL's time on the single-CV path. Hangfire and the health check keep their own pools.
        var builder = new NpgsqlConnectionStringBuilder(connectionString) { NoResetOnClose = true };
        if (!HasPoolSize(connectionString))
        {
            // Npgsql's default of 100 lets a burst open that many backends, which the pool then takes in turn: on a 2-core
            // database the single-CV read served 800 requests/s through 100 connections and 1 100 through 8, the feed
            // fell to a third as each backend first touched the shared buffers. See Database:MaxPoolSize in the README.
            builder.MaxPoolSize = configuration.GetValue("Database:MaxPoolSize", DefaultMaxPoolSize);
            if (builder.MaxPoolSize is < 4 or > 500)
            {
                throw new InvalidOperationException("Database:MaxPoolSize must be between 4 and 500.");
            }
        }

        var pooled = builder.ConnectionString;
        services.AddDbContextPool<GatewayDbContext>(options => options
            .UseNpgsql(pooled)
            .UseSnakeCaseNamingConvention()
            .UseOpenIddict());
        return services;
    }

    private static bool HasPoolSize(string connectionString)
    {
        var given = new System.Data.Common.DbConnectionStringBuilder { ConnectionString = connectionString };
        return given.Keys.Cast<string>().Any(k => k.Replace(" ", "", StringComparison.Ordinal).Equals("MaximumPoolSize", StringComparison.OrdinalIgnoreCase)
            || k.Replace(" ", "", StringComparison.Ordinal).Equals("MaxPoolSize", StringComparison.OrdinalIgnoreCase));
    }

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

        var options = new DbContextOptionsBuilder<GatewayDbContext>()
            .UseNpgsql(owner)
            .UseSnakeCaseNamingConvention()
            .UseOpenIddict()
            .Options;
        await using var db = new GatewayDbContext(options);
        await db.Database.MigrateAsync(cancellationToken);
    }
}
