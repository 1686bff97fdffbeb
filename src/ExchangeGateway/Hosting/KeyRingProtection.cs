using System.ComponentModel.DataAnnotations;
using System.Security.Cryptography;
using System.Text;
using System.Xml.Linq;
using ExchangeGateway.Data;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.AspNetCore.DataProtection.KeyManagement;
using Microsoft.AspNetCore.DataProtection.XmlEncryption;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace ExchangeGateway.Hosting;

/// <summary>
/// The key-encryption key of the Data Protection key ring, which lives outside the database (configuration, a secret
/// store). Everything sealed at rest (CVs under per-seeker keys, those under the wrapping key, the signing keys, the
/// staff's authenticator keys) ends in the key ring, and the ring is stored in the same database: without this key a
/// copy of the database would open every CV.
/// </summary>
public sealed class KeyRingOptions : IValidatableObject
{
    public const string Section = "DataProtection";

    /// <summary>Base64, at least 32 random bytes: seals the master keys of the ring as they are stored.</summary>
    [Required]
    public string KeyEncryptionKey { get; set; } = "";

    /// <summary>Keys that sealed the ring before the current one: they only open, until <c>keys seal-ring</c> has resealed every key.</summary>
    public List<string> PreviousKeyEncryptionKeys { get; set; } = [];

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (!IsKey(KeyEncryptionKey))
        {
            yield return new ValidationResult($"{Section}:{nameof(KeyEncryptionKey)} must be base64 for at least 32 random bytes.", [nameof(KeyEncryptionKey)]);
        }

        for (var i = 0; i < PreviousKeyEncryptionKeys.Count; i++)
        {
            if (!IsKey(PreviousKeyEncryptionKeys[i]))
            {
                yield return new ValidationResult($"{Section}:{nameof(PreviousKeyEncryptionKeys)}:{i} must be base64 for at least 32 random bytes.", [nameof(PreviousKeyEncryptionKeys)]);
            }
        }
    }

    private static bool IsKey(string value)
    {
        var bytes = new byte[value.Length];
        return Convert.TryFromBase64String(value, bytes, out var length) && length >= 32;
    }
}

/// <summary>
/// Seals and opens the ring's master keys with AES-256-GCM under a key derived from <see cref="KeyRingOptions"/>; plugged
/// into Data Protection as its XML encryptor, so every key it creates is stored sealed.
/// </summary>
public static class KeyRingProtection
{
    private static readonly XNamespace Ns = "urn:exchange-gateway:key-ring";
    private static readonly XName SealedName = Ns + "sealed";

    // Data Protection's own markup around an encrypted secret, and its mark on an element still to be encrypted.
    private static readonly XNamespace DataProtectionNs = "http://schemas.asp.net/2015/03/dataProtection";
    private static readonly XName EncryptedSecretName = DataProtectionNs + "encryptedSecret";
    private static readonly XName RequiresEncryptionName = DataProtectionNs + "requiresEncryption";

    private const int NonceSize = 12;
    private const int TagSize = 16;

    /// <summary>Data Protection as every node (and the bench's seeder) configures it: one ring in the database, sealed.</summary>
    public static IDataProtectionBuilder AddGatewayDataProtection(this IServiceCollection services)
    {
        services.AddOptions<KeyRingOptions>().BindConfiguration(KeyRingOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        var builder = services.AddDataProtection().SetApplicationName("ExchangeGateway").PersistKeysToDbContext<GatewayDbContext>();
        // After Data Protection's own setup, which would otherwise pick its default (no encryption off Windows).
        services.AddOptions<KeyManagementOptions>().Configure<IOptions<KeyRingOptions>>((management, ring) =>
            management.XmlEncryptor = new Encryptor(SealingKey.Of(ring.Value.KeyEncryptionKey)));
        return builder;
    }

    /// <summary>
    /// Stops a node whose key-encryption key cannot open a stored key: it would fail every cookie, token and CV, and,
    /// finding no usable key, make one of its own that no other node could read. Returns how many stored keys are still in
    /// clear (written before the ring had a key-encryption key), which <c>keys seal-ring</c> seals.
    /// </summary>
    public static async Task<int> CheckStoredKeysAsync(IServiceProvider services, CancellationToken cancellationToken)
    {
        await using var scope = services.CreateAsyncScope();
        return await CheckStoredKeysAsync(scope.ServiceProvider.GetRequiredService<GatewayDbContext>(), services.GetRequiredService<IOptions<KeyRingOptions>>().Value, cancellationToken);
    }

    public static async Task<int> CheckStoredKeysAsync(GatewayDbContext db, KeyRingOptions options, CancellationToken cancellationToken)
    {
        var known = options.PreviousKeyEncryptionKeys.Append(options.KeyEncryptionKey).Select(k => SealingKey.Of(k).Id).ToHashSet(StringComparer.Ordinal);
        var unsealed = 0;
        foreach (var xml in await db.DataProtectionKeys.Select(k => k.Xml).ToListAsync(cancellationToken))
        {
            var root = XElement.Parse(xml ?? "");
            var unknown = root.Descendants(SealedName).Select(s => (string?)s.Attribute("kek") ?? "").FirstOrDefault(kek => !known.Contains(kek));
            if (unknown is not null)
            {
                throw new InvalidOperationException(
                    $"The Data Protection key ring is sealed under a key-encryption key (id {unknown}) that is neither {KeyRingOptions.Section}:{nameof(KeyRingOptions.KeyEncryptionKey)} " +
                    $"nor one of {KeyRingOptions.Section}:{nameof(KeyRingOptions.PreviousKeyEncryptionKeys)}: give this node the key the other nodes have.");
            }

            unsealed += InClear(root).Count > 0 ? 1 : 0;
        }

        return unsealed;
    }

    /// <summary>The parts of a stored key that Data Protection marked for encryption and that are still in clear.</summary>
    private static List<XElement> InClear(XElement key) =>
        key.DescendantsAndSelf().Where(e => (bool?)e.Attribute(RequiresEncryptionName) == true).ToList();

    /// <summary>
    /// Seals every stored key still in clear and reseals those sealed under a previous key-encryption key, in one
    /// transaction. Run once every node has the key (a node without it cannot read a sealed ring).
    /// </summary>
    public static async Task<SealReport> SealStoredKeysAsync(GatewayDbContext db, KeyRingOptions options, CancellationToken cancellationToken)
    {
        var current = SealingKey.Of(options.KeyEncryptionKey);
        var known = options.PreviousKeyEncryptionKeys.Select(SealingKey.Of).Append(current).ToDictionary(k => k.Id);
        await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
        var rows = await db.DataProtectionKeys.FromSql($"SELECT * FROM data_protection_keys ORDER BY id FOR UPDATE").ToListAsync(cancellationToken);
        var (sealedNow, resealed, unchanged) = (0, 0, 0);
        foreach (var row in rows)
        {
            var root = XElement.Parse(row.Xml ?? "");
            var clear = InClear(root);
            foreach (var element in clear)
            {
                element.ReplaceWith(Wrapped(current.Seal(new XElement(element))));
            }

            var stale = root.Descendants(SealedName).Where(s => (string?)s.Attribute("kek") != current.Id).ToList();
            foreach (var element in stale)
            {
                var kek = (string?)element.Attribute("kek") ?? "";
                var opener = known.GetValueOrDefault(kek)
                    ?? throw new InvalidOperationException($"Data Protection key {row.FriendlyName} is sealed under a key-encryption key ({kek}) that is neither {KeyRingOptions.Section}:{nameof(KeyRingOptions.KeyEncryptionKey)} nor one of the previous ones.");
                element.ReplaceWith(current.Seal(opener.Open(element)));
            }

            if (clear.Count + stale.Count == 0)
            {
                unchanged++;
                continue;
            }

            row.Xml = root.ToString(SaveOptions.DisableFormatting);
            sealedNow += clear.Count > 0 ? 1 : 0;
            resealed += clear.Count == 0 ? 1 : 0;
        }

        await db.SaveChangesAsync(cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        return new SealReport(sealedNow, resealed, unchanged);
    }

    public sealed record SealReport(int Sealed, int Resealed, int Unchanged);

    private static XElement Wrapped(XElement sealedElement) =>
        new(EncryptedSecretName, new XAttribute("decryptorType", typeof(Decryptor).AssemblyQualifiedName!), sealedElement);

    private sealed class Encryptor(SealingKey key) : IXmlEncryptor
    {
        public EncryptedXmlInfo Encrypt(XElement plaintextElement) => new(key.Seal(plaintextElement), typeof(Decryptor));
    }

    /// <summary>
    /// Made by Data Protection (by type name, with the application's services) for each sealed key it reads. Its full
    /// name is stored in every sealed key: renaming or moving it leaves the ring unreadable.
    /// </summary>
    public sealed class Decryptor(IServiceProvider services) : IXmlDecryptor
    {
        public XElement Decrypt(XElement encryptedElement)
        {
            var options = services.GetRequiredService<IOptions<KeyRingOptions>>().Value;
            var kek = (string?)encryptedElement.Attribute("kek");
            var key = options.PreviousKeyEncryptionKeys.Prepend(options.KeyEncryptionKey).Select(SealingKey.Of).FirstOrDefault(k => k.Id == kek)
                ?? throw new CryptographicException($"This key of the Data Protection ring is sealed under a key-encryption key ({kek}) this node is not given.");
            return key.Open(encryptedElement);
        }
    }

    /// <summary>An AES-256-GCM key derived from a configured key-encryption key, and a public id that tells which one sealed a key.</summary>
    private sealed class SealingKey
    {
        private readonly byte[] _key;

        private SealingKey(byte[] key, string id) => (_key, Id) = (key, id);

        public string Id { get; }

        public static SealingKey Of(string configured)
        {
            var secret = Convert.FromBase64String(configured);
            var key = HKDF.DeriveKey(HashAlgorithmName.SHA256, secret, 32, info: "ExchangeGateway key ring v1 seal"u8.ToArray());
            var id = HKDF.DeriveKey(HashAlgorithmName.SHA256, secret, 8, info: "ExchangeGateway key ring v1 id"u8.ToArray());
            return new SealingKey(key, Convert.ToHexStringLower(id));
        }

        public XElement Seal(XElement plaintext)
        {
            var clear = Encoding.UTF8.GetBytes(plaintext.ToString(SaveOptions.DisableFormatting));
            var output = new byte[NonceSize + clear.Length + TagSize];
            var nonce = output.AsSpan(0, NonceSize);
            RandomNumberGenerator.Fill(nonce);
            using (var aes = new AesGcm(_key, TagSize))
            {
                aes.Encrypt(nonce, clear, output.AsSpan(NonceSize, clear.Length), output.AsSpan(NonceSize + clear.Length), Context());
            }

            CryptographicOperations.ZeroMemory(clear);
            return new XElement(SealedName, new XAttribute("kek", Id), new XAttribute("alg", "A256GCM"), Convert.ToBase64String(output));
        }

        public XElement Open(XElement sealedElement)
        {
            var input = Convert.FromBase64String(sealedElement.Value);
            if (sealedElement.Name != SealedName || input.Length < NonceSize + TagSize)
            {
                throw new CryptographicException("Not a sealed key of this gateway's ring.");
            }

            var clear = new byte[input.Length - NonceSize - TagSize];
            try
            {
                using var aes = new AesGcm(_key, TagSize);
                aes.Decrypt(input.AsSpan(0, NonceSize), input.AsSpan(NonceSize, clear.Length), input.AsSpan(NonceSize + clear.Length), clear, Context());
                return XElement.Parse(Encoding.UTF8.GetString(clear));
            }
            finally
            {
                CryptographicOperations.ZeroMemory(clear);
            }
        }

        // Binds the ciphertext to this use and this key's id, so a sealed blob means nothing anywhere else.
        private byte[] Context() => Encoding.UTF8.GetBytes("ExchangeGateway key ring v1 " + Id);
    }
}
