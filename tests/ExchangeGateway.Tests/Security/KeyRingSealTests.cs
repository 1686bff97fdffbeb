using System.Security.Cryptography;
using ExchangeGateway.Audit;
using ExchangeGateway.Data;
using ExchangeGateway.Hosting;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace ExchangeGateway.Tests.Security;

/// <summary>
/// Everything the gateway seals at rest ends in the Data Protection key ring, stored in the same database. The ring's
/// master keys are therefore stored sealed under a key-encryption key the database does not hold: a copy of the database
/// (a dump, a backup, a replica) opens nothing without it. Keys stored in clear by an older gateway are sealed by
/// `keys seal-ring`, and a node given the wrong key does not start.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class KeyRingSealTests(GatewayFixture fixture)
{
    private const string Purpose = "ExchangeGateway.Tests.KeyRing";
    private static readonly string OtherKey = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32));

    [Fact]
    public async Task EveryStoredKeyIsSealedAndTheDatabaseAloneOpensNothing()
    {
        var sealedByGateway = fixture.Factory.Services.GetRequiredService<IDataProtectionProvider>().CreateProtector(Purpose).Protect("a CV's wrapping key");

        var rows = await fixture.Database.ScalarAsync<string[]>("SELECT array_agg(xml) FROM data_protection_keys");
        Assert.NotEmpty(rows);
        Assert.All(rows, xml =>
        {
            Assert.Contains("urn:exchange-gateway:key-ring", xml, StringComparison.Ordinal);
            Assert.DoesNotContain("requiresEncryption", xml, StringComparison.Ordinal);
        });

        // What someone with the database and not the key has: Data Protection as it stands without a key-encryption key,
        // or with another one.
        await using (var plain = RingOver(fixture.Database.OwnerConnectionString, kek: null))
        {
            Assert.ThrowsAny<CryptographicException>(() => plain.GetRequiredService<IDataProtectionProvider>().CreateProtector(Purpose).Unprotect(sealedByGateway));
        }

        await using (var wrong = RingOver(fixture.Database.OwnerConnectionString, OtherKey))
        {
            Assert.ThrowsAny<CryptographicException>(() => wrong.GetRequiredService<IDataProtectionProvider>().CreateProtector(Purpose).Unprotect(sealedByGateway));
        }

        await using var right = RingOver(fixture.Database.OwnerConnectionString, GatewayFactory.KeyEncryptionKey);
        Assert.Equal("a CV's wrapping key", right.GetRequiredService<IDataProtectionProvider>().CreateProtector(Purpose).Unprotect(sealedByGateway));
    }

    /// <summary>An older gateway stored its keys in clear: the new one still reads them, says so at start, and the command seals them.</summary>
    [Fact]
    public async Task KeysStoredInClearAreSealedByTheCommandAndStillOpen()
    {
        await using var database = await MigratedDatabaseAsync();
        string before;
        await using (var old = RingOver(database.OwnerConnectionString, kek: null, createKeys: true))
        {
            before = old.GetRequiredService<IDataProtectionProvider>().CreateProtector(Purpose).Protect("sealed before the upgrade");
        }

        Assert.Equal(1L, await database.ScalarAsync<long>("SELECT count(*) FROM data_protection_keys WHERE xml LIKE '%requiresEncryption=\"true\"%'"));

        await using (var gateway = new GatewayFactory(database, new FakeTimeProvider(DateTimeOffset.UtcNow), captureLogs: true))
        {
            gateway.StartServer();
            Assert.Contains(gateway.Logs!, line => line.Contains("1 Data Protection keys are stored unsealed", StringComparison.Ordinal));
            Assert.Equal("sealed before the upgrade", gateway.Services.GetRequiredService<IDataProtectionProvider>().CreateProtector(Purpose).Unprotect(before));

            Assert.Equal(0, await KeyCommands.RunAsync(gateway.Services, ["keys", "seal-ring"]));
        }

        Assert.Equal(0L, await database.ScalarAsync<long>("SELECT count(*) FROM data_protection_keys WHERE xml LIKE '%requiresEncryption%' OR xml LIKE '%<value>%'"));
        Assert.Equal(1L, await database.ScalarAsync<long>($"SELECT count(*) FROM audit_events WHERE action = '{AuditActions.KeyRingSealed}' AND details::json->>'sealed' = '1'"));
        await using (var plain = RingOver(database.OwnerConnectionString, kek: null))
        {
            Assert.ThrowsAny<CryptographicException>(() => plain.GetRequiredService<IDataProtectionProvider>().CreateProtector(Purpose).Unprotect(before));
        }

        await using var sealedRing = RingOver(database.OwnerConnectionString, GatewayFactory.KeyEncryptionKey);
        Assert.Equal("sealed before the upgrade", sealedRing.GetRequiredService<IDataProtectionProvider>().CreateProtector(Purpose).Unprotect(before));
    }

    /// <summary>
    /// A new key-encryption key: nodes are given it with the old one as previous, the command reseals the ring, and then
    /// the old one can go. A node given neither does not start.
    /// </summary>
    [Fact]
    public async Task ANewKeyEncryptionKeyReplacesTheOldAndANodeWithoutTheRightOneDoesNotStart()
    {
        await using var database = await MigratedDatabaseAsync();
        string payload;
        await using (var first = RingOver(database.OwnerConnectionString, GatewayFactory.KeyEncryptionKey, createKeys: true))
        {
            payload = first.GetRequiredService<IDataProtectionProvider>().CreateProtector(Purpose).Protect("kept across the rotation");
        }

        await using (var wrongNode = new GatewayFactory(database, new FakeTimeProvider(DateTimeOffset.UtcNow),
            settings: new Dictionary<string, string?> { ["DataProtection:KeyEncryptionKey"] = OtherKey }))
        {
            var refused = Record.Exception(() => wrongNode.Services);
            Assert.NotNull(refused);
            Assert.Contains(GatewayCommand.Chain(refused), e => e.Message.Contains("DataProtection:KeyEncryptionKey", StringComparison.Ordinal));
        }

        // Nor does a command run with that key (they run without starting the server), which would otherwise open no key
        // and write one of its own.
        var (exitCode, output) = await GatewayCommand.RunAsync(database, OtherKey, "keys", "export-public", Path.Combine(Path.GetTempPath(), "eg-keys-" + Guid.NewGuid().ToString("N")));
        Assert.NotEqual(0, exitCode);
        Assert.Contains("DataProtection:KeyEncryptionKey", output, StringComparison.Ordinal);

        // Nothing was added to the ring by the node that did not start or the command that did not run.
        Assert.Equal(1L, await database.ScalarAsync<long>("SELECT count(*) FROM data_protection_keys"));

        await using (var rotating = RingOver(database.OwnerConnectionString, OtherKey, previous: GatewayFactory.KeyEncryptionKey))
        {
            Assert.Equal("kept across the rotation", rotating.GetRequiredService<IDataProtectionProvider>().CreateProtector(Purpose).Unprotect(payload));
            await using var scope = rotating.CreateAsyncScope();
            var report = await KeyRingProtection.SealStoredKeysAsync(scope.ServiceProvider.GetRequiredService<GatewayDbContext>(),
                new KeyRingOptions { KeyEncryptionKey = OtherKey, PreviousKeyEncryptionKeys = [GatewayFactory.KeyEncryptionKey] }, CancellationToken.None);
            Assert.Equal(new KeyRingProtection.SealReport(Sealed: 0, Resealed: 1, Unchanged: 0), report);
        }

        await using (var oldOnly = RingOver(database.OwnerConnectionString, GatewayFactory.KeyEncryptionKey))
        {
            Assert.ThrowsAny<CryptographicException>(() => oldOnly.GetRequiredService<IDataProtectionProvider>().CreateProtector(Purpose).Unprotect(payload));
        }

        await using var newOnly = RingOver(database.OwnerConnectionString, OtherKey);
        Assert.Equal("kept across the rotation", newOnly.GetRequiredService<IDataProtectionProvider>().CreateProtector(Purpose).Unprotect(payload));
    }

    /// <summary>A new database with the gateway's schema and nothing in it, not even a key.</summary>
    private static async Task<TestDatabase> MigratedDatabaseAsync()
    {
        var database = await TestDatabase.CreateAsync();
        var options = new DbContextOptionsBuilder<GatewayDbContext>();
        options.UseGateway(database.OwnerConnectionString);
        await using var db = new GatewayDbContext(options.Options);
        await db.Database.MigrateAsync();
        return database;
    }

    /// <summary>
    /// Data Protection over a database's ring, outside any gateway: with no key-encryption key (as the gateway stood
    /// before the ring was sealed), or with one. Only a ring asked to may add a key; the others only read.
    /// </summary>
    private static ServiceProvider RingOver(string connectionString, string? kek, bool createKeys = false, string? previous = null)
    {
        var services = new ServiceCollection();
        services.AddLogging();
        services.AddDbContext<GatewayDbContext>(o => o.UseNpgsql(connectionString).UseSnakeCaseNamingConvention().UseOpenIddict());
        IDataProtectionBuilder dataProtection;
        if (kek is null)
        {
            dataProtection = services.AddDataProtection().SetApplicationName("ExchangeGateway").PersistKeysToDbContext<GatewayDbContext>();
        }
        else
        {
            var settings = new Dictionary<string, string?> { ["DataProtection:KeyEncryptionKey"] = kek };
            if (previous is not null)
            {
                settings["DataProtection:PreviousKeyEncryptionKeys:0"] = previous;
            }

            services.AddSingleton<IConfiguration>(new ConfigurationBuilder().AddInMemoryCollection(settings).Build());
            dataProtection = services.AddGatewayDataProtection();
        }

        if (!createKeys)
        {
            dataProtection.DisableAutomaticKeyGeneration();
        }

        return services.BuildServiceProvider();
    }
}
