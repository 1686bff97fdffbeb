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
    private readonly IDataProtector _wrapper = dataProtection.CreateProtector("ExchangeGateway.SeekerDataKeys.v1");

    public async Task<byte[]> GetOrCreateKeyAsync(GatewayDbContext db, string seekerId, DateTimeOffset at, CancellationToken cancellationToken)
    {
        var stored = await db.Set<SeekerKey>().AsNoTracking().Where(k => k.SeekerId == seekerId).Select(k => k.WrappedKey).SingleOrDefaultAsync(cancellationToken);
        if (stored is not null)
        {
            return Unwrap(stored);
        }

        var key = RandomNumberGenerator.GetBytes(32);
        db.Add(new SeekerKey { SeekerId = seekerId, WrappedKey = Wrap(key), CreatedAt = at });
        return key;
    }

    /// <summary>The data key as stored: protected by the Data Protection key ring shared by every node.</summary>
    public byte[] Wrap(byte[] key) => _wrapper.Protect(key);

    public byte[] Unwrap(byte[] wrappedKey) => _wrapper.Unprotect(wrappedKey);

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

    private static byte[] AssociatedData(string seekerId, int version) => Encoding.UTF8.GetBytes($"cv:{seekerId}:{version}");
}
