using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using System.ComponentModel.DataAnnotations;
using Microsoft.Extensions.Options;
using Npgsql;

namespace ExchangeGateway.Data;

public static partial class GatewayDatabase
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
    /// Applies pending migrations. When ConnectionStrings:GatewayOwner is set, migrations run as that owner role, so the
    /// gateway itself can log in as a role that may only append to the audit log. Take <see cref="StartTurnAsync"/> first:
    /// EF Core's own migration lock lasts one transaction, and the migrations that build an index concurrently run outside one.
    /// </summary>
    public static async Task MigrateAsync(IServiceProvider services, CancellationToken cancellationToken = default)
    {
        await using var db = OwnerContext(services);
        await DropInvalidIndexesAsync(db, services, cancellationToken);
        await db.Database.MigrateAsync(cancellationToken);
    }

    // An index a migration builds with CREATE INDEX CONCURRENTLY IF NOT EXISTS (those of a table every request writes).
    [System.Text.RegularExpressions.GeneratedRegex(@"CREATE INDEX CONCURRENTLY IF NOT EXISTS (\w+)", System.Text.RegularExpressions.RegexOptions.IgnoreCase)]
    private static partial System.Text.RegularExpressions.Regex ConcurrentIndexIfNotExists();

    /// <summary>
    /// A concurrent build that failed half-way (cancelled, the node stopped) leaves an INVALID index under its name, and the
    /// migration's IF NOT EXISTS, run again, would then take it for built and record the migration as applied: the planner
    /// never uses the index, every write maintains it. So before the pending migrations run, each index they build that way
    /// and that exists invalid is dropped, and the migration builds it again. Under the start turn, so no other node is
    /// building it right now (a build under way is invalid too). The migrations themselves are unchanged.
    /// </summary>
    private static async Task DropInvalidIndexesAsync(GatewayDbContext db, IServiceProvider services, CancellationToken cancellationToken)
    {
        var pending = (await db.Database.GetPendingMigrationsAsync(cancellationToken)).ToHashSet(StringComparer.Ordinal);
        if (pending.Count == 0)
        {
            return;
        }

        var migrations = db.GetService<Microsoft.EntityFrameworkCore.Migrations.IMigrationsAssembly>();
        var indexes = migrations.Migrations.Where(m => pending.Contains(m.Key))
            .SelectMany(m => migrations.CreateMigration(m.Value, db.Database.ProviderName!).UpOperations
                .OfType<Microsoft.EntityFrameworkCore.Migrations.Operations.SqlOperation>()
                .SelectMany(sql => ConcurrentIndexIfNotExists().Matches(sql.Sql).Select(match => (Migration: m.Key, Index: match.Groups[1].Value))))
            .ToList();
        foreach (var (migration, index) in indexes)
        {
            var invalid = await db.Database.SqlQuery<bool>(
                    $"SELECT NOT indisvalid AS \"Value\" FROM pg_index WHERE indexrelid = to_regclass({index})")
                .ToListAsync(cancellationToken);
            if (invalid is [true])
            {
                services.GetService<ILoggerFactory>()?.CreateLogger(typeof(GatewayDatabase).FullName!).LogWarning(
                    "Index {Index} was left invalid by a build that did not finish; dropped, so that migration {Migration} builds it again", index, migration);
                // The name comes from the gateway's own migrations (a plain identifier, matched above), never from input;
                // an index name cannot be a parameter.
#pragma warning disable EF1002
                await db.Database.ExecuteSqlRawAsync($"DROP INDEX CONCURRENTLY IF EXISTS \"{index}\"", cancellationToken);
#pragma warning restore EF1002
            }
        }
    }

    /// <summary>The migrations this version has and the database has not applied.</summary>
    public static async Task<IReadOnlyList<string>> PendingMigrationsAsync(IServiceProvider services, CancellationToken cancellationToken = default)
    {
        await using var db = OwnerContext(services);
        return (await db.Database.GetPendingMigrationsAsync(cancellationToken)).ToList();
    }

    /// <summary>
    /// Whether the node's own login could switch off the audit log's append-only triggers: a superuser, or a member of
    /// the role that owns the table (the case when no separate schema owner is configured).
    /// </summary>
    public static async Task<bool> LoginCanAlterAuditLogAsync(IServiceProvider services, CancellationToken cancellationToken = default)
    {
        var connectionString = services.GetRequiredService<IConfiguration>().GetConnectionString(ConnectionStringName)
            ?? throw new InvalidOperationException($"ConnectionStrings:{ConnectionStringName} is not set.");
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync(cancellationToken);
        await using var check = new NpgsqlCommand(
            """
            SELECT r.rolsuper OR pg_has_role(current_user, c.relowner, 'MEMBER')
            FROM pg_roles r, pg_class c
            WHERE r.rolname = current_user AND c.oid = 'audit_events'::regclass
            """, connection);
        return await check.ExecuteScalarAsync(cancellationToken) is true;
    }

    /// <summary>The schema owner's connection string where one is set; else the node's own.</summary>
    private static string OwnerConnectionString(IServiceProvider services)
    {
        var configuration = services.GetRequiredService<IConfiguration>();
        return configuration.GetConnectionString(OwnerConnectionStringName) is { } owner && !string.IsNullOrWhiteSpace(owner)
            ? owner
            : configuration.GetConnectionString(ConnectionStringName)
                ?? throw new InvalidOperationException($"ConnectionStrings:{ConnectionStringName} is not set.");
    }

    /// <summary>How long a migration waits for a lock before it gives up (and the start fails, to be tried again).</summary>
    public static readonly TimeSpan MigrationLockTimeout = TimeSpan.FromSeconds(30);

    private static GatewayDbContext OwnerContext(IServiceProvider services)
    {
        // A lock timeout instead: an ALTER TABLE waiting behind a long transaction (a dump, a session left idle in one)
        // would otherwise wait for ever, and every request touching that table would queue behind it.
        var builder = new NpgsqlConnectionStringBuilder(OwnerConnectionString(services));
        builder.Options = $"{builder.Options} -c lock_timeout={(int)MigrationLockTimeout.TotalMilliseconds}".Trim();
        var options = new DbContextOptionsBuilder<GatewayDbContext>();
        options.UseGateway(builder.ConnectionString);
        var db = new GatewayDbContext(options.Options);
        // No command timeout (0): under Npgsql's 30 seconds a concurrent index build on a table of millions of rows was
        // cancelled, leaving an invalid index and a failed start. The start turn already keeps it to one node at a time.
        db.Database.SetCommandTimeout(0);
        return db;
    }

    /// <summary>
    /// A session-level advisory lock (<see cref="Locks.Start"/>) on a connection of its own, outside every pool: held while a
    /// node (or the <c>migrate</c> command) prepares the database, released when disposed or when the process dies. A
    /// database that does not exist yet is created first, by whichever node gets there first.
    /// </summary>
    public static async Task<IAsyncDisposable> StartTurnAsync(IServiceProvider services, CancellationToken cancellationToken = default) =>
        await StartTurnAsync(services, createDatabase: true, cancellationToken);

    private static async Task<IAsyncDisposable> StartTurnAsync(IServiceProvider services, bool createDatabase, CancellationToken cancellationToken)
    {
        var connectionString = OwnerConnectionString(services);
        var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(connectionString) { Pooling = false, CommandTimeout = 0 }.ConnectionString);
        try
        {
            await connection.OpenAsync(cancellationToken);
            // Tried, not waited for in one statement: a session blocked in pg_advisory_lock holds a snapshot, and the node
            // holding the lock would wait for that snapshot in CREATE INDEX CONCURRENTLY, each waiting for the other.
            await using var command = new NpgsqlCommand($"SELECT pg_try_advisory_lock({Locks.Start})", connection);
            while (await command.ExecuteScalarAsync(cancellationToken) is not true)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(250), cancellationToken);
            }

            return connection;
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.InvalidCatalogName && createDatabase)
        {
            // No database yet: created here (by whichever node gets there first), so that the turn is taken in it.
            await connection.DisposeAsync();
            await using (var db = OwnerContext(services))
            {
                try
                {
                    await db.Database.GetService<Microsoft.EntityFrameworkCore.Storage.IRelationalDatabaseCreator>().CreateAsync(cancellationToken);
                }
                catch (PostgresException exists) when (exists.SqlState == PostgresErrorCodes.DuplicateDatabase)
                {
                }
            }

            return await StartTurnAsync(services, createDatabase: false, cancellationToken);
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
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
