using ExchangeGateway.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace ExchangeGateway.Audit;

/// <summary>
/// Where the auditors' reads go (listing, export, verification): ConnectionStrings:AuditReads, a streaming replica, when it
/// is set, otherwise the primary. A long export or a verification of millions of rows then costs the primary nothing. A
/// replica lags but never shows a broken chain: rows are committed in sequence order under the chain lock, and replayed
/// in commit order. What the auditors' reads write (their own audit events) goes to the primary as ever.
/// </summary>
public sealed class AuditReads
{
    public const string ConnectionStringName = "AuditReads";

    private readonly DbContextOptions<GatewayDbContext> _options;

    public AuditReads(IConfiguration configuration, IOptions<DatabaseOptions> database)
    {
        var replica = configuration.GetConnectionString(ConnectionStringName);
        OnReplica = !string.IsNullOrWhiteSpace(replica);
        var connectionString = OnReplica ? replica! : configuration.GetConnectionString(GatewayDatabase.ConnectionStringName)!;
        _options = new DbContextOptionsBuilder<GatewayDbContext>()
            .UseNpgsql(GatewayDatabase.Pooled(connectionString, database.Value))
            .UseSnakeCaseNamingConvention()
            .UseOpenIddict()
            .Options;
    }

    public bool OnReplica { get; }

    /// <summary>A context of its own for one read; the caller disposes it.</summary>
    public GatewayDbContext Open() => new(_options);
}
