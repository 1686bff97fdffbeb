using System.Security.Cryptography;
using ExchangeGateway.Tests.Infrastructure;

namespace ExchangeGateway.Tests.Auth;

/// <summary>
/// A signing key file that cannot sign as the gateway signs stops the node, naming the setting. Otherwise the node starts,
/// reports itself ready and publishes the key, then fails every token request (RSA) or every event push, poll and audit
/// checkpoint (P-256): the public PEMs of a key replacement sit beside the private ones, and one is easily put in the
/// wrong setting. (Private keys of the right kind are taken: KeyReplacementTests.)
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class SigningKeyFileTests(GatewayFixture fixture) : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("eg-signing-keys-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    [Theory]
    [InlineData("Auth:RsaSigningKeyFile", "rsa-public", "Auth:RsaSigningKeyFile holds no usable private key")]
    [InlineData("Auth:EcdsaSigningKeyFile", "p256-public", "Auth:EcdsaSigningKeyFile holds no usable private key")]
    [InlineData("Auth:RsaSigningKeyFile", "rsa-1024", "Auth:RsaSigningKeyFile holds a 1024-bit RSA key")]
    [InlineData("Auth:EcdsaSigningKeyFile", "p384", "Auth:EcdsaSigningKeyFile holds an elliptic-curve key that is not P-256")]
    [InlineData("Auth:EcdsaSigningKeyFile", "rsa-2048", "Auth:EcdsaSigningKeyFile holds no key it can use")]
    public async Task ASigningKeyFileThatCannotSignStopsTheNodeNamingTheSetting(string setting, string key, string message)
    {
        var file = Path.Combine(_folder, key + ".pem");
        await File.WriteAllTextAsync(file, Pem(key));
        await using var node = new GatewayFactory(fixture.Database, fixture.Time, issuer: fixture.Factory.Issuer,
            settings: new Dictionary<string, string?> { [setting] = file });

        var refused = Record.Exception(() => node.Services);

        Assert.NotNull(refused);
        var messages = GatewayCommand.Chain(refused).Select(e => e.Message).ToList();
        Assert.True(messages.Any(m => m.Contains(message, StringComparison.Ordinal)), string.Join(" | ", messages));
    }

    private static string Pem(string key)
    {
        switch (key)
        {
            case "rsa-public":
            {
                using var rsa = RSA.Create(2048);
                return rsa.ExportSubjectPublicKeyInfoPem();
            }

            case "rsa-1024":
            case "rsa-2048":
            {
                using var rsa = RSA.Create(key == "rsa-1024" ? 1024 : 2048);
                return rsa.ExportPkcs8PrivateKeyPem();
            }

            case "p256-public":
            {
                using var ecdsa = ECDsa.Create(ECCurve.NamedCurves.nistP256);
                return ecdsa.ExportSubjectPublicKeyInfoPem();
            }

            default:
            {
                using var ecdsa = ECDsa.Create(key == "p384" ? ECCurve.NamedCurves.nistP384 : ECCurve.NamedCurves.nistP256);
                return ecdsa.ExportPkcs8PrivateKeyPem();
            }
        }
    }
}
