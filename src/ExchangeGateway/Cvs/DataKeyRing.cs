using System.ComponentModel.DataAnnotations;
using System.Security.Cryptography;
using ExchangeGateway.Data;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using Microsoft.Extensions.Options;

namespace ExchangeGateway.Cvs;

/// <summary>A key that wraps seekers' data keys, itself kept wrapped by the Data Protection key ring.</summary>
public sealed class DataKeyWrappingKey
{
    public Guid Id { get; init; }
    public required string ProtectedKey { get; init; }
    public DateTimeOffset CreatedAt { get; init; }
    /// <summary>From when nodes wrap new data keys with it; until then they only learn it (see <see cref="DataKeyOptions.ActivationDelay"/>).</summary>
    public DateTimeOffset ActivatesAt { get; init; }
}

public sealed class DataKeyWrappingKeyConfiguration : IEntityTypeConfiguration<DataKeyWrappingKey>
{
    public void Configure(EntityTypeBuilder<DataKeyWrappingKey> builder)
    {
        builder.ToTable("data_key_wrapping_keys");
        builder.Property(k => k.Id).ValueGeneratedNever();
    }
}

public sealed class DataKeyOptions : IValidatableObject
{
    public const string Section = "DataKeys";

    /// <summary>How often a node re-reads the wrapping keys, so that it learns a new one.</summary>
    [Range(typeof(TimeSpan), "00:00:05", "01:00:00")]
    public TimeSpan RefreshInterval { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>How long a new wrapping key is only known before it is used: every node must have read it by then.</summary>
    [Range(typeof(TimeSpan), "00:00:10", "7.00:00:00")]
    public TimeSpan ActivationDelay { get; set; } = TimeSpan.FromMinutes(10);

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (ActivationDelay < 2 * RefreshInterval)
        {
            yield return new ValidationResult(
                "DataKeys:ActivationDelay must be at least twice DataKeys:RefreshInterval, or a node could meet a key it has not read yet.",
                [nameof(ActivationDelay)]);
        }
    }
}

/// <summary>
/// The wrapping keys of the seekers' data keys (<see cref="CvSealer"/>), each named by the first bytes of its SHA-256.
/// The newest active key wraps; any key still held unwraps. Rotation adds a key that activates later
/// (<see cref="DataKeyOptions.ActivationDelay"/>); every node re-reads the keys each <see cref="DataKeyOptions.RefreshInterval"/>,
/// so all of them know the new key before any of them wraps with it, and they all switch at the same instant.
/// <see cref="DataKeyRotationJob"/> then re-wraps the stored keys and deletes the old wrapping key once nothing uses it.
/// </summary>
public sealed class DataKeyRing(
    IServiceScopeFactory scopes, IDataProtectionProvider dataProtection, IOptions<DataKeyOptions> options, TimeProvider time, ILogger<DataKeyRing> logger)
    : IDisposable
{
    public const int KeyIdSize = 8;

    // The purpose the first wrapping key was protected under while it lived among the signing keys (the migration moved it as is).
    private readonly IDataProtector _protector = dataProtection.CreateProtector("ExchangeGateway.SigningKeys.v1");
    private readonly SemaphoreSlim _gate = new(1, 1);
    private volatile Snapshot? _snapshot;
    private int _refreshing;

    public void Dispose() => _gate.Dispose();

    public sealed record Key(Guid Id, byte[] KeyId, byte[] Material, DateTimeOffset ActivatesAt);

    public sealed record Snapshot(IReadOnlyList<Key> Keys, DateTimeOffset ReadAt)
    {
        /// <summary>The newest key whose activation has come; the oldest when none has (cannot happen once one was created active).</summary>
        public Key CurrentAt(DateTimeOffset now) => Keys.LastOrDefault(k => k.ActivatesAt <= now) ?? Keys[0];

        public Key? Find(ReadOnlySpan<byte> keyId)
        {
            foreach (var key in Keys)
            {
                if (keyId.SequenceEqual(key.KeyId))
                {
                    return key;
                }
            }

            return null;
        }
    }

    /// <summary>The key that wraps now.</summary>
    public Key Current
    {
        get
        {
            var now = time.GetUtcNow();
            return Fresh(now, mustBeCurrent: true).CurrentAt(now);
        }
    }

    /// <summary>The key named by <paramref name="keyId"/>, or null when this node holds no such key, even after reading them again.</summary>
    public Key? Find(ReadOnlySpan<byte> keyId)
    {
        var now = time.GetUtcNow();
        var snapshot = Fresh(now, mustBeCurrent: false);
        if (snapshot.Find(keyId) is { } found)
        {
            return found;
        }

        // A key added since the last read (this node was behind): read once more, at most once a second for all callers.
        return now - snapshot.ReadAt >= TimeSpan.FromSeconds(1)
            ? RefreshAsync(TimeSpan.FromSeconds(1), CancellationToken.None).GetAwaiter().GetResult().Find(keyId)
            : null;
    }

    /// <summary>What this node knows, re-read in the background once it is older than the refresh interval.</summary>
    private Snapshot Fresh(DateTimeOffset now, bool mustBeCurrent)
    {
        var snapshot = _snapshot ?? LoadAsync(CancellationToken.None).GetAwaiter().GetResult();
        var age = now - snapshot.ReadAt;
        if (mustBeCurrent && age >= options.Value.ActivationDelay)
        {
            // The refreshes failed (or none ran) for longer than a new key waits before use: wrapping with what this node
            // knows could use a key a rotation is about to delete, so it reads the keys now, or fails the write.
            return RefreshAsync(options.Value.RefreshInterval, CancellationToken.None).GetAwaiter().GetResult();
        }

        if (age >= options.Value.RefreshInterval && Interlocked.CompareExchange(ref _refreshing, 1, 0) == 0)
        {
            _ = Task.Run(async () =>
            {
                try
                {
                    await ReloadAsync(CancellationToken.None);
                }
                catch (Exception e)
                {
                    // The keys already held stay in use; the next access tries again. Said, so that a failing database or
                    // Data Protection is seen before writes start failing once the keys are too old to trust.
                    logger.LogWarning("Refreshing the data-key ring failed ({Error}); the keys held stay in use", e.GetType().Name);
                }
                finally
                {
                    Volatile.Write(ref _refreshing, 0);
                }
            });
        }

        return snapshot;
    }

    public async Task<Snapshot> LoadAsync(CancellationToken cancellationToken) => _snapshot ?? await ReloadAsync(cancellationToken);

    /// <summary>Reads every wrapping key; creates the first one (active at once) when there is none.</summary>
    public Task<Snapshot> ReloadAsync(CancellationToken cancellationToken) => RefreshAsync(TimeSpan.Zero, cancellationToken);

    /// <summary>
    /// The keys as read at most <paramref name="maxAge"/> ago: callers that queued for the read while another one did it
    /// take its result instead of reading again one after the other.
    /// </summary>
    private async Task<Snapshot> RefreshAsync(TimeSpan maxAge, CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken);
        try
        {
            if (_snapshot is { } recent && maxAge > TimeSpan.Zero && time.GetUtcNow() - recent.ReadAt < maxAge)
            {
                return recent;
            }

            await using var scope = scopes.CreateAsyncScope();
            var db = scope.ServiceProvider.GetRequiredService<GatewayDbContext>();
            var rows = await ReadAsync(db, cancellationToken);
            if (rows.Count == 0)
            {
                await AddAsync(db, time.GetUtcNow(), cancellationToken);
                rows = await ReadAsync(db, cancellationToken);
            }

            var snapshot = new Snapshot(rows.Select(Open).ToList(), time.GetUtcNow());
            _snapshot = snapshot;
            return snapshot;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// A new wrapping key, used from <paramref name="activatesAt"/>; null when it was to be the deployment's first key and
    /// another node created that meanwhile (the first key is created under a lock, so nodes starting together agree on it).
    /// </summary>
    public async Task<DataKeyWrappingKey?> AddAsync(GatewayDbContext db, DateTimeOffset activatesAt, CancellationToken cancellationToken)
    {
        var material = RandomNumberGenerator.GetBytes(32);
        var row = new DataKeyWrappingKey
        {
            Id = Guid.CreateVersion7(), ProtectedKey = _protector.Protect(Convert.ToBase64String(material)), CreatedAt = time.GetUtcNow(),
            ActivatesAt = activatesAt,
        };
        await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
        await db.Database.ExecuteSqlAsync($"SELECT pg_advisory_xact_lock({Locks.DataKeys})", cancellationToken);
        var first = activatesAt <= time.GetUtcNow();
        if (first && await db.Set<DataKeyWrappingKey>().AnyAsync(cancellationToken))
        {
            return null;
        }

        db.Add(row);
        await db.SaveChangesAsync(cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        return row;
    }

    public static string Name(byte[] keyId) => Convert.ToHexStringLower(keyId);

    private static Task<List<DataKeyWrappingKey>> ReadAsync(GatewayDbContext db, CancellationToken cancellationToken) =>
        db.Set<DataKeyWrappingKey>().AsNoTracking().OrderBy(k => k.ActivatesAt).ThenBy(k => k.Id).ToListAsync(cancellationToken);

    private Key Open(DataKeyWrappingKey row)
    {
        var material = Convert.FromBase64String(_protector.Unprotect(row.ProtectedKey));
        return new Key(row.Id, SHA256.HashData(material)[..KeyIdSize], material, row.ActivatesAt);
    }
}
