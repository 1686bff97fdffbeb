using ExchangeGateway.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace ExchangeGateway.Audit;

/// <summary>
/// Where the auditors' reads go (the audit log's listing, export and verification, the erasure obligations and a site's
/// compliance): ConnectionStrings:AuditReads, a streaming replica, when it is set, otherwise the primary. A long export or
/// verification then reads from the replica's disks and cores. A replica lags but never shows a broken chain: rows are
/// committed in sequence order under the chain lock, and replayed in commit order. What these reads write (the auditors'
/// own audit events) goes to the primary as ever.
/// </summary>
public sealed class AuditReads
{
    public const string ConnectionStringName = "AuditReads";

    private readonly DbContextOptions<GatewayDbContext> _options;

    public AuditReads(IConfiguration configuration, IOptions<DatabaseOptions> database, ILoggerFactory logging)
    {
        var replica = configuration.GetConnectionString(ConnectionStringName);
        OnReplica = !string.IsNullOrWhiteSpace(replica);
        var connectionString = OnReplica ? replica! : configuration.GetConnectionString(GatewayDatabase.ConnectionStringName)!;
        var options = new DbContextOptionsBuilder<GatewayDbContext>();
        options.UseGateway(GatewayDatabase.Pooled(connectionString, database.Value)).UseLoggerFactory(logging);
        _options = options.Options;
    }

    public bool OnReplica { get; }

    /// <summary>A context of its own for one read; the caller disposes it.</summary>
    public GatewayDbContext Open() => new(_options);
}
