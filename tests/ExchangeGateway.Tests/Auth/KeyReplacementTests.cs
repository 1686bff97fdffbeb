using System.Net;
using System.Security.Cryptography;
using ExchangeGateway.Audit;
using ExchangeGateway.Tests.Audit;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Microsoft.IdentityModel.JsonWebTokens;

namespace ExchangeGateway.Tests.Auth;

/// <summary>
/// Replacing the signing and encryption keys, as the README says, on nodes of one deployment. Node A signs with keys A and
/// already accepts B's (the next keys, given first); node B signs with keys B and still accepts A's. Both directions
/// work, earlier refresh tokens still redeem, the checkpoint A signed still verifies, and a node configured with B's keys
/// alone shows that the configuration is what carries it.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class KeyReplacementTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("eg-keys-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    [Fact]
    public async Task TokensAndCheckpointsSignedBeforeAReplacementStayValidAcrossNodes()
    {
        await using var database = await TestDatabase.CreateAsync();
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var a = KeySet("a");
        var b = KeySet("b");
        await using var nodeA = new GatewayFactory(database, clock, settings: Settings(a, accepted: b.PublicFiles, decrypting: b));
        await using var nodeB = new GatewayFactory(database, clock, issuer: nodeA.Issuer, settings: Settings(b, accepted: a.PublicFiles, decrypting: a));
        await using var nodeBAlone = new GatewayFactory(database, clock, issuer: nodeA.Issuer, settings: Settings(b));

        var seeker = await new Actors(nodeA).NewSeekerAsync();
        long checkpoint;
        await using (var scope = nodeA.Services.CreateAsyncScope())
        {
            checkpoint = (await scope.ServiceProvider.GetRequiredService<AuditCheckpoints>().CreateAsync(CancellationToken.None))!.Sequence;
        }

        // A's access token on B; A's refresh token redeemed on B, for a token signed with B's key, which A accepts.
        Assert.Equal(HttpStatusCode.OK, await MeAsync(nodeB, seeker.Tokens.AccessToken));
        var renewed = await new Actors(nodeB).RefreshAsync(seeker.Tokens.RefreshToken!);
        Assert.Equal(b.RsaKeyId, new JsonWebToken(renewed.AccessToken).Kid);
        Assert.Equal(a.RsaKeyId, new JsonWebToken(seeker.Tokens.AccessToken).Kid);
        Assert.Equal(HttpStatusCode.OK, await MeAsync(nodeA, renewed.AccessToken));
        // And the other way: B's refresh token (encrypted and signed with B's keys) redeems on A, still on keys A, and what
        // A issues is encrypted with A's key, not with the one it only decrypts with: a node without B's key reads it.
        var back = await new Actors(nodeA).RefreshAsync(renewed.RefreshToken!);
        Assert.Equal(a.RsaKeyId, new JsonWebToken(back.AccessToken).Kid);
        await using (var nodeAAlone = new GatewayFactory(database, clock, issuer: nodeA.Issuer, settings: Settings(a)))
        {
            Assert.NotNull((await new Actors(nodeAAlone).RefreshAsync(back.RefreshToken!)).RefreshToken);
        }

        // The checkpoint A signed verifies on B; both keys of both sets are in every node's key set.
        using (var auditor = nodeB.CreateHttpClient().WithToken(await new Actors(nodeB).AuditorClientTokenAsync()))
        {
            var verdict = await AuditLog.VerifyAsync(auditor);
            Assert.True(verdict.GetProperty("ok").GetBoolean(), verdict.ToString());
            // Its own, over the head it walked, is at A's row or after it; A's checkpoint is signed by a key B trusts.
            Assert.True(verdict.GetProperty("lastCheckpoint").GetInt64() >= checkpoint, verdict.ToString());
            Assert.Empty(verdict.GetProperty("checkpoints").GetProperty("unverifiable").EnumerateArray());
            Assert.True(verdict.GetProperty("checkpoints").GetProperty("authentic").GetInt32() >= 1);
        }

        foreach (var node in new[] { nodeA, nodeB })
        {
            var published = (await SecurityEventTokens.FetchKeysAsync(node)).Keys.Select(k => k.Kid).ToHashSet();
            Assert.True(published.SetEquals([a.RsaKeyId, a.EcdsaKeyId, b.RsaKeyId, b.EcdsaKeyId]), string.Join(", ", published));
        }

        // Without the earlier keys configured: A's token, a refresh token A issued (never used) and A's checkpoint are refused.
        var again = await new Actors(nodeA).SignInWithCodeFlowAsync(seeker.Email, seeker.Password, "openid offline_access " + ExchangeGateway.Auth.ApiScopes.CvManage);
        Assert.Equal(HttpStatusCode.Unauthorized, await MeAsync(nodeBAlone, again.AccessToken));
        using (var client = nodeBAlone.CreateHttpClient())
        using (var refused = await client.PostAsync("/connect/token", new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["grant_type"] = "refresh_token",
            ["refresh_token"] = again.RefreshToken!,
            ["client_id"] = ExchangeGateway.Auth.ClientRegistrations.SwaggerClientId,
        })))
        {
            Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        }

        using (var auditor = nodeBAlone.CreateHttpClient().WithToken(await new Actors(nodeBAlone).AuditorClientTokenAsync()))
        {
            var verdict = await AuditLog.VerifyAsync(auditor);
            Assert.False(verdict.GetProperty("ok").GetBoolean());
            Assert.Equal("checkpoint", verdict.GetProperty("problem").GetString());
        }
    }

    /// <summary>
    /// A deployment whose keys the gateway created and stored moves to key files: the command writes the stored keys'
    /// public halves, and a node signing with new files accepts what the old keys signed through them.
    /// </summary>
    [Fact]
    public async Task StoredKeysAreWrittenOutAsPublicPemsThatANodeWithNewKeysAccepts()
    {
        await using var database = await TestDatabase.CreateAsync();
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var stored = new GatewayFactory(database, clock);
        var seeker = await new Actors(stored).NewSeekerAsync();
        var signedIn = await new Actors(stored).SignInWithCodeFlowAsync(seeker.Email, seeker.Password, "openid offline_access " + ExchangeGateway.Auth.ApiScopes.CvManage);

        var exported = Path.Combine(_folder, "exported");
        Assert.Equal(0, await ExchangeGateway.Hosting.KeyCommands.RunAsync(stored.Services, ["keys", "export-public", exported]));
        var published = (await SecurityEventTokens.FetchKeysAsync(stored)).Keys.Select(k => k.Kid).ToHashSet();
        string[] files = [Path.Combine(exported, "rs256.pub.pem"), Path.Combine(exported, "es256.pub.pem")];
        Assert.Equal(published, new HashSet<string> { KeyIdOf(RSA.Create(), files[0]), KeyIdOf(ECDsa.Create(), files[1]) });

        await using var replaced = new GatewayFactory(database, clock, issuer: stored.Issuer, settings: Settings(KeySet("new"), accepted: files));
        Assert.Equal(HttpStatusCode.OK, await MeAsync(replaced, seeker.Tokens.AccessToken));
        // The stored encryption key still decrypts once a key is configured: nobody is signed out by the move.
        Assert.NotNull((await new Actors(replaced).RefreshAsync(signedIn.RefreshToken!)).RefreshToken);
    }

    /// <summary>The key id the gateway gives a key: the first 16 bytes of the SHA-256 of its public key, base64url.</summary>
    private static string KeyIdOf(AsymmetricAlgorithm key, string pemFile)
    {
        using (key)
        {
            key.ImportFromPem(File.ReadAllText(pemFile));
            return Microsoft.IdentityModel.Tokens.Base64UrlEncoder.Encode(SHA256.HashData(key.ExportSubjectPublicKeyInfo())[..16]);
        }
    }

    private static async Task<HttpStatusCode> MeAsync(GatewayFactory node, string accessToken)
    {
        using var client = node.CreateHttpClient().WithToken(accessToken);
        using var response = await client.GetAsync("/api/v1/me");
        return response.StatusCode;
    }

    private sealed record Keys(string RsaFile, string EcdsaFile, string RsaPublicFile, string EcdsaPublicFile, string EncryptionKey, string RsaKeyId, string EcdsaKeyId)
    {
        public string[] PublicFiles => [RsaPublicFile, EcdsaPublicFile];
    }

    /// <summary>A key set as an operator keeps it: private PEMs for the nodes that sign, public PEMs for those that only verify.</summary>
    private Keys KeySet(string name)
    {
        using var rsa = RSA.Create(2048);
        using var ecdsa = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        string Write(string file, string pem)
        {
            var path = Path.Combine(_folder, file);
            File.WriteAllText(path, pem);
            return path;
        }

        var (rsaPublic, ecdsaPublic) = (Write($"{name}-rsa.pub.pem", rsa.ExportSubjectPublicKeyInfoPem()), Write($"{name}-ec.pub.pem", ecdsa.ExportSubjectPublicKeyInfoPem()));
        return new Keys(
            Write($"{name}-rsa.pem", rsa.ExportPkcs8PrivateKeyPem()), Write($"{name}-ec.pem", ecdsa.ExportECPrivateKeyPem()), rsaPublic, ecdsaPublic,
            Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)), KeyIdOf(RSA.Create(), rsaPublic), KeyIdOf(ECDsa.Create(), ecdsaPublic));
    }

    private static Dictionary<string, string?> Settings(Keys signing, string[]? accepted = null, Keys? decrypting = null)
    {
        var settings = new Dictionary<string, string?>
        {
            ["Auth:RsaSigningKeyFile"] = signing.RsaFile,
            ["Auth:EcdsaSigningKeyFile"] = signing.EcdsaFile,
            ["Auth:EncryptionKey"] = signing.EncryptionKey,
        };
        for (var i = 0; i < (accepted?.Length ?? 0); i++)
        {
            settings[$"Auth:VerificationKeyFiles:{i}"] = accepted![i];
        }

        if (decrypting is not null)
        {
            settings["Auth:DecryptionKeys:0"] = decrypting.EncryptionKey;
        }

        return settings;
    }
}
