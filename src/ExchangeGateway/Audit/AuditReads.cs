using ExchangeGateway.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Npgsql;

namespace ExchangeGateway.Audit;

/// <summary>
/// Where the auditors' reads go (the audit log's listing, export and verification, the erasure obligations and a site's
/// compliance): ConnectionStrings:AuditReads, a streaming replica, when it is set, otherwise the primary. A long export or
/// verification then reads from the replica's disks and cores. A replica lags but never shows a broken chain: rows are
/// committed in sequence order under the chain lock, and replayed in commit order. What these reads write (the auditors'
/// own audit events) goes to the primary as ever.
/// </summary>
public sealed class AuditReads : IDisposable
{
    public const string ConnectionStringName = "AuditReads";

    private readonly DbContextOptions<GatewayDbContext> _options;
    private readonly string _scanConnectionString;
    private readonly SemaphoreSlim _scans;

    public AuditReads(IConfiguration configuration, IOptions<DatabaseOptions> database, IOptions<AuditOptions> audit, ILoggerFactory logging)
    {
        _scans = new SemaphoreSlim(audit.Value.MaxConcurrentScans);
        var replica = configuration.GetConnectionString(ConnectionStringName);
        OnReplica = !string.IsNullOrWhiteSpace(replica);
        var connectionString = OnReplica ? replica! : configuration.GetConnectionString(GatewayDatabase.ConnectionStringName)!;
        var options = new DbContextOptionsBuilder<GatewayDbContext>();
        var pooled = GatewayDatabase.Pooled(connectionString, database.Value);
        options.UseGateway(pooled).UseLoggerFactory(logging);
        _options = options.Options;
        // A whole-log read takes its rows in large reads (the default 8 KiB buffer armed and reset the read timer 32 times as
        // often), as UTF-8 whatever the connection string says: the verifier hashes the text bytes as the server sends them.
        _scanConnectionString = new NpgsqlConnectionStringBuilder(pooled) { ReadBufferSize = 256 * 1024, ClientEncoding = "UTF8", Encoding = "UTF8" }
            .ConnectionString;
    }

    public bool OnReplica { get; }

    /// <summary>A context of its own for one read; the caller disposes it.</summary>
    public GatewayDbContext Open() => new(_options);

    /// <summary>A connection (not yet open) for reading the whole log in one statement; the caller disposes it.</summary>
    public NpgsqlConnection ScanConnection() => new(_scanConnectionString);

    /// <summary>
    /// A slot for a whole-log scan (an export or a verification), or null when <see cref="AuditOptions.MaxConcurrentScans"/>
    /// are running on this node. Each holds a connection and a snapshot for as long as it runs (an export, as long as the
    /// client reads): a handful of slow downloads must not take every connection the node's other requests need.
    /// </summary>
    public IDisposable? TryStartScan() => _scans.Wait(0) ? new Scan(_scans) : null;

    public void Dispose() => _scans.Dispose();

    private sealed class Scan(SemaphoreSlim scans) : IDisposable
    {
        private int _released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0)
            {
                try
                {
                    scans.Release();
                }
                catch (ObjectDisposedException)
                {
                    // An export still streaming when the node shut down: there is no slot left to give back.
                }
            }
        }
    }
}
