using System.Collections.Concurrent;
using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using ExchangeGateway.Data;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace ExchangeGateway.Cvs;

/// <summary>A seeker's data key, wrapped by the Data Protection key ring (kept in another table). Deleting it shreds every copy of the CV.</summary>
public sealed class SeekerKey
{
    public required string SeekerId { get; init; }
    public required byte[] WrappedKey { get; init; }
    public DateTimeOffset CreatedAt { get; init; }
}

public sealed class SeekerKeyConfiguration : IEntityTypeConfiguration<SeekerKey>
{
    public void Configure(EntityTypeBuilder<SeekerKey> builder)
    {
        builder.ToTable("seeker_keys");
        builder.HasKey(k => k.SeekerId);
        builder.Property(k => k.SeekerId).HasMaxLength(64);
    }
}

/// <summary>
/// Envelope encryption of CVs: AES-256-GCM under a per-seeker key, the ciphertext bound (as associated data) to the
/// seeker and version it belongs to, so a ciphertext copied onto another row does not decrypt.
/// </summary>
public sealed class CvSealer(IDataProtectionProvider dataProtection)
{
    private const int NonceSize = 12;
    private const int TagSize = 16;
    private const int MaxCachedKeys = 50_000;
    private static readonly TimeSpan KeyLifetime = TimeSpan.FromMinutes(5);
    private readonly IDataProtector _wrapper = dataProtection.CreateProtector("ExchangeGateway.SeekerDataKeys.v1");

    // Unwrapping through Data Protection costs more than decrypting a whole 8 KB CV, and recipients read the same CVs
    // again and again. An entry is used only when the wrapped key the caller just read from the database is the one it
    // was made from: once the key row is gone (erasure), no cached key can open anything. The whole cache is dropped
    // when it is full or older than KeyLifetime (cheaper than evicting one by one while a feed streams past it), and a
    // seeker's entry is dropped at once on this node when their key is deleted.
    private readonly ConcurrentDictionary<string, CachedKey> _unwrapped = new(StringComparer.Ordinal);
    private long _generationStarted = Stopwatch.GetTimestamp();

    public async Task<byte[]> GetOrCreateKeyAsync(GatewayDbContext db, string seekerId, DateTimeOffset at, CancellationToken cancellationToken)
    {
        var stored = await db.Set<SeekerKey>().AsNoTracking().Where(k => k.SeekerId == seekerId).Select(k => k.WrappedKey).SingleOrDefaultAsync(cancellationToken);
        if (stored is not null)
        {
            return Unwrap(seekerId, stored);
        }

        var key = RandomNumberGenerator.GetBytes(32);
        db.Add(new SeekerKey { SeekerId = seekerId, WrappedKey = Wrap(key), CreatedAt = at });
        return key;
    }

    /// <summary>The data key as stored: protected by the Data Protection key ring shared by every node.</summary>
    public byte[] Wrap(byte[] key) => _wrapper.Protect(key);

    /// <summary>The seeker's data key from its stored (wrapped) form, as just read from the database.</summary>
    public byte[] Unwrap(string seekerId, byte[] wrappedKey)
    {
        var now = Stopwatch.GetTimestamp();
        if (Stopwatch.GetElapsedTime(Interlocked.Read(ref _generationStarted), now) > KeyLifetime || _unwrapped.Count >= MaxCachedKeys)
        {
            _unwrapped.Clear();
            Interlocked.Exchange(ref _generationStarted, now);
        }

        if (_unwrapped.TryGetValue(seekerId, out var cached) && cached.Wrapped.AsSpan().SequenceEqual(wrappedKey))
        {
            return cached.Key;
        }

        var key = _wrapper.Unprotect(wrappedKey);
        _unwrapped[seekerId] = new CachedKey(wrappedKey, key);
        return key;
    }

    /// <summary>The seeker's key was deleted: forget it here too.</summary>
    public void Forget(string seekerId) => _unwrapped.TryRemove(seekerId, out _);

    public static byte[] Seal(byte[] key, string seekerId, int version, ReadOnlySpan<byte> plaintext)
    {
        var output = new byte[NonceSize + TagSize + plaintext.Length];
        var nonce = output.AsSpan(0, NonceSize);
        RandomNumberGenerator.Fill(nonce);
        using var aes = new AesGcm(key, TagSize);
        aes.Encrypt(nonce, plaintext, output.AsSpan(NonceSize + TagSize), output.AsSpan(NonceSize, TagSize), AssociatedData(seekerId, version));
        return output;
    }

    public static byte[] Open(byte[] key, string seekerId, int version, byte[] sealedDocument)
    {
        var plaintext = new byte[sealedDocument.Length - NonceSize - TagSize];
        using var aes = new AesGcm(key, TagSize);
        aes.Decrypt(
            sealedDocument.AsSpan(0, NonceSize), sealedDocument.AsSpan(NonceSize + TagSize), sealedDocument.AsSpan(NonceSize, TagSize),
            plaintext, AssociatedData(seekerId, version));
        return plaintext;
    }

    private sealed record CachedKey(byte[] Wrapped, byte[] Key);

    private static byte[] AssociatedData(string seekerId, int version) => Encoding.UTF8.GetBytes($"cv:{seekerId}:{version}");
}
