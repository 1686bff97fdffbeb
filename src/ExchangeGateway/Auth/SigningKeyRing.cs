using System.Security.Cryptography;
using ExchangeGateway.Data;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.Tokens;

namespace ExchangeGateway.Auth;

/// <summary>A private signing key kept in PostgreSQL, wrapped by Data Protection, so every node and every restart signs alike.</summary>
public sealed class SigningKey
{
    public Guid Id { get; init; }
    public required string Algorithm { get; init; }
    public required string KeyId { get; init; }
    public required string ProtectedPrivateKey { get; init; }
    public DateTimeOffset CreatedAt { get; init; }
}

public sealed class SigningKeyConfiguration : IEntityTypeConfiguration<SigningKey>
{
    public void Configure(EntityTypeBuilder<SigningKey> builder)
    {
        builder.ToTable("signing_keys");
        builder.HasIndex(k => k.Algorithm).IsUnique();
        builder.Property(k => k.Algorithm).HasMaxLength(16);
        builder.Property(k => k.KeyId).HasMaxLength(64);
    }
}

/// <summary>
/// The gateway's signing keys: RS256 for access and identity tokens (what every OAuth client expects), ES256 for
/// security event tokens (an order of magnitude cheaper to sign, which matters at millions of events a day).
/// Keys come from PEM files when configured (production), otherwise they are created once and stored in PostgreSQL.
/// Signatures are also checked against <see cref="AuthOptions.VerificationKeyFiles"/>, which is how a key is replaced.
/// </summary>
public sealed class SigningKeyRing(
    IServiceScopeFactory scopeFactory,
    IDataProtectionProvider dataProtection,
    IOptions<AuthOptions> options,
    TimeProvider time) : IDisposable
{
    private const string Rs256 = SecurityAlgorithms.RsaSha256;
    private const string Es256 = SecurityAlgorithms.EcdsaSha256;
    private const string A256Kw = SecurityAlgorithms.Aes256KW;
    private const string RsaFileSetting = "Auth:RsaSigningKeyFile";
    private const string EcdsaFileSetting = "Auth:EcdsaSigningKeyFile";

    /// <summary>The smallest RSA key IdentityModel signs with; a smaller one would fail every token request.</summary>
    public const int MinimumRsaKeySize = 2048;

    private readonly IDataProtector _protector = dataProtection.CreateProtector("ExchangeGateway.SigningKeys.v1");
    private readonly SemaphoreSlim _gate = new(1, 1);
    private Loaded? _loaded;

    public void Dispose() => _gate.Dispose();

    public SigningCredentials TokenCredentials => Keys.Token;
    public SigningCredentials EventCredentials => Keys.Event;

    /// <summary>The public halves of the signing keys in use, as PEM files' contents: what other nodes verify with during a replacement.</summary>
    public (string Rsa, string Ecdsa) PublicPems() =>
        (((RsaSecurityKey)Keys.Token.Key).Rsa.ExportSubjectPublicKeyInfoPem(), ((ECDsaSecurityKey)Keys.Event.Key).ECDsa.ExportSubjectPublicKeyInfoPem());

    /// <summary>Encrypts what only the server reads back: authorization codes and refresh tokens.</summary>
    public EncryptingCredentials ServerEncryptionCredentials => Keys.Encryption;

    /// <summary>
    /// Keys that only decrypt: <see cref="AuthOptions.DecryptionKeys"/>, and the key the gateway stored before one was
    /// configured, so that moving to a configured key does not sign everyone out.
    /// </summary>
    public IReadOnlyList<EncryptingCredentials> DecryptionCredentials => Keys.Decryption;

    /// <summary>Public halves of the signing keys and the verification keys, for checking our own signatures without a metadata round trip.</summary>
    public IReadOnlyList<SecurityKey> ValidationKeys => Keys.Validation;

    private Loaded Keys => _loaded ?? LoadAsync(CancellationToken.None).GetAwaiter().GetResult();

    /// <summary>
    /// Loads the keys once. Only a node's start creates a key that is neither configured nor stored
    /// (<paramref name="createMissing"/>): a command run without the node's key settings would otherwise store keys of its
    /// own, sign with them (a checkpoint, events) and make the node's signatures look forged to itself.
    /// </summary>
    public async Task<Loaded> LoadAsync(CancellationToken cancellationToken, bool createMissing = false)
    {
        if (_loaded is not null)
        {
            return _loaded;
        }

        await _gate.WaitAsync(cancellationToken);
        try
        {
            if (_loaded is not null)
            {
                return _loaded;
            }

            var rsa = options.Value.RsaSigningKeyFile is { Length: > 0 } rsaFile
                ? SigningKeyFile(ImportRsa, await File.ReadAllTextAsync(rsaFile, cancellationToken), RsaFileSetting)
                : ImportRsa(await GetOrCreateStoredAsync(Rs256, createMissing ? CreateRsaPem : null, RsaFileSetting, cancellationToken));
            var ecdsa = options.Value.EcdsaSigningKeyFile is { Length: > 0 } ecFile
                ? SigningKeyFile(pem => ImportEcdsa(pem, EcdsaFileSetting), await File.ReadAllTextAsync(ecFile, cancellationToken), EcdsaFileSetting)
                : ImportEcdsa(await GetOrCreateStoredAsync(Es256, createMissing ? CreateEcdsaPem : null, EcdsaFileSetting, cancellationToken), $"The stored {Es256} key");

            var encryption = new SymmetricSecurityKey(Convert.FromBase64String(options.Value.EncryptionKey is { Length: > 0 } configured
                ? configured
                : await GetOrCreateStoredAsync(A256Kw, createMissing ? CreateSymmetricKey : null, "Auth:EncryptionKey", cancellationToken)));
            var decryption = options.Value.DecryptionKeys.ToList();
            if (options.Value.EncryptionKey is { Length: > 0 } && await ReadStoredAsync(A256Kw, cancellationToken) is { } superseded)
            {
                decryption.Add(superseded);
            }

            // Public halves only: these are also what the JWKS publishes beside OpenIddict's own list, and a private key
            // object there would be exported whole (d, p, q…) the day OpenIddict stopped listing that key itself.
            var validation = new List<SecurityKey> { PublicHalf(rsa.Rsa), PublicHalf(ecdsa.ECDsa) };
            foreach (var file in options.Value.VerificationKeyFiles)
            {
                var key = ImportPublic(await File.ReadAllTextAsync(file, cancellationToken));
                if (!validation.Any(k => k.KeyId == key.KeyId))
                {
                    validation.Add(key);
                }
            }

            _loaded = new Loaded(
                new SigningCredentials(rsa, Rs256),
                new SigningCredentials(ecdsa, Es256),
                Encrypting(encryption),
                [.. decryption.Distinct(StringComparer.Ordinal).Select(key => Encrypting(new SymmetricSecurityKey(Convert.FromBase64String(key))))],
                validation);
            return _loaded;
        }
        finally
        {
            _gate.Release();
        }
    }

    private static EncryptingCredentials Encrypting(SymmetricSecurityKey key) => new(key, A256Kw, SecurityAlgorithms.Aes256CbcHmacSha512);

    /// <summary>
    /// A key the gateway stored, unwrapped; null when it never stored one, or when Data Protection can no longer unwrap it
    /// (then nothing it protected can be read either, and that must not stop the node).
    /// </summary>
    private async Task<string?> ReadStoredAsync(string algorithm, CancellationToken cancellationToken)
    {
        await using var scope = scopeFactory.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<GatewayDbContext>();
        var stored = await db.SigningKeys.AsNoTracking().SingleOrDefaultAsync(k => k.Algorithm == algorithm, cancellationToken);
        try
        {
            return stored is null ? null : _protector.Unprotect(stored.ProtectedPrivateKey);
        }
        catch (CryptographicException)
        {
            return null;
        }
    }

    private async Task<string> GetOrCreateStoredAsync(
        string algorithm, Func<(string Pem, string KeyId)>? create, string setting, CancellationToken cancellationToken)
    {
        await using var scope = scopeFactory.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<GatewayDbContext>();

        var stored = await db.SigningKeys.AsNoTracking().SingleOrDefaultAsync(k => k.Algorithm == algorithm, cancellationToken);
        if (stored is null)
        {
            if (create is null)
            {
                throw new InvalidOperationException(
                    $"No {algorithm} key is stored and {setting} is not set: give this command the same key settings as the nodes (Auth:*), or start a node first.");
            }

            var (pem, keyId) = create();
            // Two nodes may start together: the unique index lets exactly one key win, and both then read it.
            await db.Database.ExecuteSqlAsync(
                $"""
                INSERT INTO signing_keys (id, algorithm, key_id, protected_private_key, created_at)
                VALUES ({Guid.CreateVersion7()}, {algorithm}, {keyId}, {_protector.Protect(pem)}, {time.GetUtcNow()})
                ON CONFLICT (algorithm) DO NOTHING
                """,
                cancellationToken);
            stored = await db.SigningKeys.AsNoTracking().SingleAsync(k => k.Algorithm == algorithm, cancellationToken);
        }

        return _protector.Unprotect(stored.ProtectedPrivateKey);
    }

    private static (string Pem, string KeyId) CreateRsaPem()
    {
        using var rsa = RSA.Create(2048);
        return (rsa.ExportPkcs8PrivateKeyPem(), KeyIdOf(rsa.ExportSubjectPublicKeyInfo()));
    }

    private static (string Pem, string KeyId) CreateEcdsaPem()
    {
        using var ecdsa = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        return (ecdsa.ExportPkcs8PrivateKeyPem(), KeyIdOf(ecdsa.ExportSubjectPublicKeyInfo()));
    }

    private static (string Key, string KeyId) CreateSymmetricKey()
    {
        var key = System.Security.Cryptography.RandomNumberGenerator.GetBytes(32);
        return (Convert.ToBase64String(key), Base64UrlEncoder.Encode(SHA256.HashData(key)[..8]));
    }

    private static RsaSecurityKey ImportRsa(string pem)
    {
        var rsa = RSA.Create();
        rsa.ImportFromPem(pem);
        return new RsaSecurityKey(rsa) { KeyId = KeyIdOf(rsa.ExportSubjectPublicKeyInfo()) };
    }

    private static ECDsaSecurityKey ImportEcdsa(string pem, string what)
    {
        var ecdsa = ECDsa.Create();
        ecdsa.ImportFromPem(pem);
        RequireP256(ecdsa, what);
        return new ECDsaSecurityKey(ecdsa) { KeyId = KeyIdOf(ecdsa.ExportSubjectPublicKeyInfo()) };
    }

    /// <summary>
    /// A signing key from the file <paramref name="setting"/> names, refused (naming the setting) unless it signs a small
    /// payload that its public half then verifies. ImportFromPem takes a public PEM as readily as a private one, and
    /// OpenIddict checks only that a key is asymmetric: a node given one would start, report itself ready and publish the
    /// key, then fail every token (RSA) or every event and checkpoint (P-256).
    /// </summary>
    private static TKey SigningKeyFile<TKey>(Func<string, TKey> import, string pem, string setting) where TKey : AsymmetricSecurityKey
    {
        TKey key;
        try
        {
            key = import(pem);
        }
        catch (Exception e) when (e is CryptographicException or ArgumentException)
        {
            throw new InvalidOperationException(
                $"{setting} holds no key it can use: it needs {(typeof(TKey) == typeof(RsaSecurityKey) ? "an RSA" : "a P-256")} private key in PEM form ({e.GetType().Name}).", e);
        }

        if (key is RsaSecurityKey { Rsa.KeySize: < MinimumRsaKeySize and var bits })
        {
            throw new InvalidOperationException($"{setting} holds a {bits}-bit RSA key: RS256 tokens need at least {MinimumRsaKeySize} bits.");
        }

        var payload = "ExchangeGateway signing key check"u8.ToArray();
        bool verified;
        try
        {
            switch (key)
            {
                case RsaSecurityKey { Rsa: var rsa }:
                    using (var check = RSA.Create())
                    {
                        check.ImportSubjectPublicKeyInfo(rsa.ExportSubjectPublicKeyInfo(), out _);
                        verified = check.VerifyData(payload, rsa.SignData(payload, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1),
                            HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
                    }

                    break;
                case ECDsaSecurityKey { ECDsa: var ecdsa }:
                    using (var check = ECDsa.Create())
                    {
                        check.ImportSubjectPublicKeyInfo(ecdsa.ExportSubjectPublicKeyInfo(), out _);
                        verified = check.VerifyData(payload, ecdsa.SignData(payload, HashAlgorithmName.SHA256), HashAlgorithmName.SHA256);
                    }

                    break;
                default:
                    verified = false;
                    break;
            }
        }
        catch (CryptographicException e)
        {
            throw new InvalidOperationException($"{setting} holds no usable private key (a public PEM belongs in Auth:VerificationKeyFiles).", e);
        }

        return verified
            ? key
            : throw new InvalidOperationException($"{setting} holds a private key whose signatures its own public half does not verify.");
    }

    /// <summary>Events and checkpoints are signed and published as ES256, which is P-256 only.</summary>
    private static void RequireP256(ECDsa ecdsa, string what)
    {
        if (ecdsa.ExportParameters(false).Curve.Oid?.Value != ECCurve.NamedCurves.nistP256.Oid.Value)
        {
            throw new InvalidOperationException($"{what} holds an elliptic-curve key that is not P-256.");
        }
    }

    /// <summary>
    /// A verification key from a PEM file, private or public, RSA or P-256; only its public half is kept, under the key id
    /// its signatures carry.
    /// </summary>
    private static SecurityKey ImportPublic(string pem)
    {
        using (var ecdsa = ECDsa.Create())
        {
            if (TryImportFromPem(ecdsa, pem))
            {
                RequireP256(ecdsa, "A verification key file");
                return PublicHalf(ecdsa);
            }
        }

        using var rsa = RSA.Create();
        rsa.ImportFromPem(pem);
        return PublicHalf(rsa);
    }

    /// <summary>A key holding only the public half of <paramref name="key"/>, with the key id the gateway gives it.</summary>
    private static SecurityKey PublicHalf(AsymmetricAlgorithm key)
    {
        var spki = key.ExportSubjectPublicKeyInfo();
        if (key is ECDsa)
        {
            var publicOnly = ECDsa.Create();
            publicOnly.ImportSubjectPublicKeyInfo(spki, out _);
            return new ECDsaSecurityKey(publicOnly) { KeyId = KeyIdOf(spki) };
        }

        var rsaPublic = RSA.Create();
        rsaPublic.ImportSubjectPublicKeyInfo(spki, out _);
        return new RsaSecurityKey(rsaPublic) { KeyId = KeyIdOf(spki) };
    }

    private static bool TryImportFromPem(AsymmetricAlgorithm key, string pem)
    {
        try
        {
            key.ImportFromPem(pem);
            return true;
        }
        catch (Exception e) when (e is CryptographicException or ArgumentException)
        {
            return false;
        }
    }

    /// <summary>A stable key id: the first 16 bytes of the SHA-256 of the public key, base64url.</summary>
    private static string KeyIdOf(byte[] subjectPublicKeyInfo) =>
        Base64UrlEncoder.Encode(SHA256.HashData(subjectPublicKeyInfo)[..16]);

    public sealed record Loaded(
        SigningCredentials Token, SigningCredentials Event, EncryptingCredentials Encryption, IReadOnlyList<EncryptingCredentials> Decryption,
        IReadOnlyList<SecurityKey> Validation);
}
