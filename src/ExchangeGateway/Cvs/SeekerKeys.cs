using System.Security.Cryptography;
using System.Text;
using ExchangeGateway.Auth;
using ExchangeGateway.Data;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace ExchangeGateway.Cvs;

/// <summary>A seeker's data key, wrapped by the gateway's data-key wrapping key (kept in another table). Deleting it shreds every copy of the CV.</summary>
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
/// seeker and version it belongs to, so a ciphertext copied onto another row does not decrypt. The seeker's key is
/// stored wrapped (AES-256-GCM again, bound to the seeker) by the gateway's data-key wrapping key, itself kept wrapped
/// by the Data Protection key ring (<see cref="DataKeyRing"/>): reading a document costs two AES-GCM operations (a
/// microsecond, where a Data Protection round costs tens) and no data key is cached anywhere, so deleting the key row is
/// the whole of crypto-shredding.
/// </summary>
public sealed class CvSealer(DataKeyRing keys, IDataProtectionProvider dataProtection)
{
    private const int NonceSize = 12;
    private const int TagSize = 16;
    private const int KeySize = 32;
    private const int KeyIdSize = DataKeyRing.KeyIdSize;

    // Wrapped key: format byte, wrapping key id (DataKeyRing.KeyIdSize), nonce, tag, ciphertext. Data Protection payloads (keys written before
    // this format) start with its magic header 0x09F0C9F0, so the first byte tells the two apart.
    private const byte WrapFormat = 0x01;
    private const int WrappedSize = 1 + KeyIdSize + NonceSize + TagSize + KeySize;

    private readonly IDataProtector _legacy = dataProtection.CreateProtector("ExchangeGateway.SeekerDataKeys.v1");

    public async Task<byte[]> GetOrCreateKeyAsync(GatewayDbContext db, string seekerId, DateTimeOffset at, CancellationToken cancellationToken)
    {
        var stored = await db.Set<SeekerKey>().AsNoTracking().Where(k => k.SeekerId == seekerId).Select(k => k.WrappedKey).SingleOrDefaultAsync(cancellationToken);
        if (stored is not null)
        {
            var existing = Unwrap(seekerId, stored);
            if (!IsWrappedBy(stored, keys.Current))
            {
                // An older form or an older wrapping key: re-wrapped in the writer's transaction, so the key row never holds
                // a form the CV cannot be read with, and a rotation has one row less to do.
                var rewrapped = Wrap(seekerId, existing);
                await db.Set<SeekerKey>().Where(k => k.SeekerId == seekerId)
                    .ExecuteUpdateAsync(k => k.SetProperty(x => x.WrappedKey, rewrapped), cancellationToken);
            }

            return existing;
        }

        var key = RandomNumberGenerator.GetBytes(KeySize);
        db.Add(new SeekerKey { SeekerId = seekerId, WrappedKey = Wrap(seekerId, key), CreatedAt = at });
        return key;
    }

    /// <summary>The data key as stored: only this seeker's row opens it, and only with the gateway's wrapping key.</summary>
    public byte[] Wrap(string seekerId, byte[] key)
    {
        var wrapping = keys.Current;
        var output = new byte[WrappedSize];
        output[0] = WrapFormat;
        wrapping.KeyId.CopyTo(output.AsSpan(1, KeyIdSize));
        var nonce = output.AsSpan(1 + KeyIdSize, NonceSize);
        RandomNumberGenerator.Fill(nonce);
        using var aes = new AesGcm(wrapping.Material, TagSize);
        aes.Encrypt(nonce, key, output.AsSpan(1 + KeyIdSize + NonceSize + TagSize), output.AsSpan(1 + KeyIdSize + NonceSize, TagSize), KeyAssociatedData(seekerId));
        return output;
    }

    /// <summary>The seeker's data key from its stored (wrapped) form, as just read from the database.</summary>
    public byte[] Unwrap(string seekerId, byte[] wrappedKey)
    {
        if (IsLegacy(wrappedKey))
        {
            // Written by an earlier version of the gateway; opened the old way until the seeker's key is written again.
            return _legacy.Unprotect(wrappedKey);
        }

        var wrapping = keys.Find(wrappedKey.AsSpan(1, KeyIdSize))
            ?? throw new CryptographicException("The seeker's key was wrapped by a wrapping key this gateway does not hold.");
        var key = new byte[KeySize];
        using var aes = new AesGcm(wrapping.Material, TagSize);
        aes.Decrypt(
            wrappedKey.AsSpan(1 + KeyIdSize, NonceSize), wrappedKey.AsSpan(1 + KeyIdSize + NonceSize + TagSize),
            wrappedKey.AsSpan(1 + KeyIdSize + NonceSize, TagSize), key, KeyAssociatedData(seekerId));
        return key;
    }

    /// <summary>
    /// SQL naming the wrapping key of <c>wrapped_key</c> (the id bytes of the current form), or NULL for the Data Protection
    /// form: what <see cref="IsLegacy"/> and <see cref="IsWrappedBy"/> read, for set-based work on <c>seeker_keys</c>.
    /// </summary>
    public static readonly string WrappingKeyIdSql =
        $"(CASE WHEN length(wrapped_key) = {WrappedSize} AND get_byte(wrapped_key, 0) = {WrapFormat} THEN substring(wrapped_key FROM 2 FOR {KeyIdSize}) END)";

    private static bool IsLegacy(byte[] wrappedKey) => wrappedKey.Length != WrappedSize || wrappedKey[0] != WrapFormat;

    /// <summary>Whether the stored form is the current one, under <paramref name="wrapping"/>.</summary>
    public static bool IsWrappedBy(byte[] wrappedKey, DataKeyRing.Key wrapping) =>
        !IsLegacy(wrappedKey) && wrappedKey.AsSpan(1, KeyIdSize).SequenceEqual(wrapping.KeyId);

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

    private static byte[] KeyAssociatedData(string seekerId) => Encoding.UTF8.GetBytes($"seeker-key:{seekerId}");

    private static byte[] AssociatedData(string seekerId, int version) => Encoding.UTF8.GetBytes($"cv:{seekerId}:{version}");
}
