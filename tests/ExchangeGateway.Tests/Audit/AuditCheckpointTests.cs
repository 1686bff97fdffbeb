using System.Security.Cryptography;
using System.Text.Json;
using ExchangeGateway.Audit;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using Npgsql;

namespace ExchangeGateway.Tests.Audit;

/// <summary>
/// The signed checkpoints: what the database lets the gateway's own login store, how the verifier judges one it cannot
/// verify, and what an auditor can do with the tokens. Each test on a chain of its own (<see cref="IsolatedGateway"/>).
/// </summary>
public sealed class AuditCheckpointTests(SeededTemplate template) : IClassFixture<SeededTemplate>
{
    /// <summary>
    /// The app login must insert checkpoints, so it could insert junk: a row the log does not have, or a hash that is not
    /// that row's. Stored, either would fail every verification for good (append-only: nobody can remove it).
    /// </summary>
    [Fact]
    public async Task TheAppLoginCannotStoreACheckpointForARowTheLogDoesNotHoldOrWithAnotherHash()
    {
        await using var gateway = await IsolatedGateway.StartAsync(template);
        await gateway.WriteRowsAsync(3);
        var head = await gateway.HeadAsync();

        await using var app = new NpgsqlConnection(gateway.Database.AppConnectionString);
        await app.OpenAsync();
        foreach (var (sequence, hash) in new[] { ("1000000000", "'\\x00'::bytea"), (head.ToString(System.Globalization.CultureInfo.InvariantCulture), "sha256(hash)") })
        {
            await using var insert = new NpgsqlCommand(
                $"INSERT INTO audit_checkpoints (sequence, hash, signed_at, signature) SELECT {sequence}, {hash}, now(), 'junk' FROM audit_events WHERE sequence = {head}", app);
            var refused = await Assert.ThrowsAsync<PostgresException>(() => insert.ExecuteNonQueryAsync());
            Assert.Equal(PostgresErrorCodes.CheckViolation, refused.SqlState);
            Assert.Contains("audit checkpoint refused", refused.MessageText, StringComparison.Ordinal);
        }

        // A temporary table of the same name, which the app login may create, does not stand in for the log.
        await using (var shadow = new NpgsqlCommand(
            "CREATE TEMP TABLE audit_events (sequence bigint, hash bytea); INSERT INTO audit_events VALUES (1000000000, '\\x00')", app))
        {
            await shadow.ExecuteNonQueryAsync();
        }

        await using (var insert = new NpgsqlCommand("INSERT INTO audit_checkpoints (sequence, hash, signed_at, signature) VALUES (1000000000, '\\x00', now(), 'junk')", app))
        {
            Assert.Equal(PostgresErrorCodes.CheckViolation, (await Assert.ThrowsAsync<PostgresException>(() => insert.ExecuteNonQueryAsync())).SqlState);
        }

        Assert.Equal(0, await gateway.Database.ScalarAsync<long>("SELECT count(*) FROM audit_checkpoints"));
        var verdict = await gateway.VerifyAsync();
        Assert.True(verdict.GetProperty("ok").GetBoolean(), verdict.ToString());
    }

    /// <summary>
    /// A checkpoint over a genuine row, signed with a key the gateway does not hold (a key lost, or one the app login made
    /// up: the database lets it store any signature over a true row). While nothing signed follows it, verification fails on
    /// it, as before; once a signed checkpoint supersedes it, the chain holds and it is only a warning.
    /// </summary>
    [Fact]
    public async Task AnUnverifiableCheckpointThatASignedOneSupersedesIsAWarningNotABrokenChain()
    {
        await using var gateway = await IsolatedGateway.StartAsync(template);
        await gateway.WriteRowsAsync(3);
        const long Unknown = 2;
        var hash = await gateway.Database.ScalarAsync<byte[]>($"SELECT hash FROM audit_events WHERE sequence = {Unknown}");
        await using (var app = new NpgsqlConnection(gateway.Database.AppConnectionString))
        {
            await app.OpenAsync();
            await using var insert = new NpgsqlCommand("INSERT INTO audit_checkpoints (sequence, hash, signed_at, signature) VALUES ($1, $2, now(), $3)", app)
            {
                Parameters = { new() { Value = Unknown }, new() { Value = hash }, new() { Value = SignedWithAnUnknownKey(Unknown, hash) } },
            };
            Assert.Equal(1, await insert.ExecuteNonQueryAsync());
        }

        var alone = await gateway.VerifyAsync();
        Assert.False(alone.GetProperty("ok").GetBoolean(), alone.ToString());
        Assert.True(alone.GetProperty("chainOk").GetBoolean(), alone.ToString());
        Assert.Equal(("checkpoint", Unknown), (alone.GetProperty("problem").GetString(), alone.GetProperty("firstBadSequence").GetInt64()));
        Assert.False(alone.GetProperty("checkpoints").GetProperty("ok").GetBoolean());

        await using (var scope = gateway.Node.Services.CreateAsyncScope())
        {
            Assert.NotNull(await scope.ServiceProvider.GetRequiredService<AuditCheckpoints>().CreateAsync(CancellationToken.None));
        }

        var superseded = await gateway.VerifyAsync();
        Assert.True(superseded.GetProperty("ok").GetBoolean(), superseded.ToString());
        Assert.True(superseded.GetProperty("chainOk").GetBoolean());
        Assert.Equal(JsonValueKind.Null, superseded.GetProperty("problem").ValueKind);
        var checkpoints = superseded.GetProperty("checkpoints");
        Assert.True(checkpoints.GetProperty("ok").GetBoolean());
        Assert.Equal(new[] { Unknown }, checkpoints.GetProperty("unverifiable").EnumerateArray().Select(s => s.GetInt64()));
        Assert.True(checkpoints.GetProperty("authentic").GetInt32() >= 1);
        var warning = Assert.Single(superseded.GetProperty("warnings").EnumerateArray()).GetString();
        Assert.Contains($"row {Unknown}", warning, StringComparison.Ordinal);
        Assert.Contains("supersedes", warning, StringComparison.Ordinal);
    }

    /// <summary>
    /// An auditor checks a checkpoint offline with an ordinary JWT library: it must not expire (the handler's defaults
    /// gave it an hour), must name the gateway that signed it, and its iat is the gateway's clock. Lifetime validation is
    /// left on; only exp is not required, as for a SET (RFC 8417), which is a statement of fact too.
    /// </summary>
    [Fact]
    public async Task ACheckpointTokenNeverExpiresNamesItsIssuerAndVerifiesUnderTheJwks()
    {
        await using var gateway = await IsolatedGateway.StartAsync(template);
        await gateway.WriteRowsAsync(2);
        gateway.Node.Time.Advance(TimeSpan.FromDays(3));
        AuditCheckpoint checkpoint;
        await using (var scope = gateway.Node.Services.CreateAsyncScope())
        {
            checkpoint = (await scope.ServiceProvider.GetRequiredService<AuditCheckpoints>().CreateAsync(CancellationToken.None))!;
        }

        var token = new JsonWebToken(checkpoint.Signature);
        Assert.False(token.TryGetPayloadValue<long>("exp", out _), checkpoint.Signature);
        Assert.False(token.TryGetPayloadValue<long>("nbf", out _), checkpoint.Signature);
        Assert.Equal(gateway.Node.Issuer.AbsoluteUri, token.Issuer);
        Assert.Equal(gateway.Node.Time.GetUtcNow().ToUnixTimeSeconds(), token.GetPayloadValue<long>("iat"));
        Assert.Equal(checkpoint.Sequence, token.GetPayloadValue<long>("seq"));
        Assert.Equal(Base64UrlEncoder.Encode(checkpoint.Hash), token.GetPayloadValue<string>("hash"));

        var keys = await SecurityEventTokens.FetchKeysAsync(gateway.Node);
        var result = await new JsonWebTokenHandler().ValidateTokenAsync(checkpoint.Signature, new TokenValidationParameters
        {
            ValidIssuer = gateway.Node.Issuer.AbsoluteUri,
            ValidateAudience = false,
            IssuerSigningKeys = keys.GetSigningKeys(),
            ValidTypes = ["audit-checkpoint+jwt"],
            RequireExpirationTime = false,
        });
        Assert.True(result.IsValid, result.Exception?.Message);
    }

    /// <summary>
    /// The hourly checkpoint vouches for row 3; rows 4 to 8 follow and an auditor verifies them. Someone with owner access
    /// then cuts everything after row 3, checkpoints included. The token the verification returned seals row 8, the head
    /// it walked, not row 3: kept and handed back as anchor, it exposes the cut. Stored, the same checkpoint exposes a cut
    /// of the rows alone to a verification without anchor.
    /// </summary>
    [Fact]
    public async Task AVerificationSealsTheHeadItWalkedSoACutTailIsExposedByItsToken()
    {
        await using var gateway = await IsolatedGateway.StartAsync(template);
        await gateway.WriteRowsAsync(3);
        await using (var scope = gateway.Node.Services.CreateAsyncScope())
        {
            Assert.Equal(3, (await scope.ServiceProvider.GetRequiredService<AuditCheckpoints>().CreateAsync(CancellationToken.None))!.Sequence);
        }

        await gateway.WriteRowsAsync(5);
        var verified = await gateway.VerifyAsync();
        Assert.True(verified.GetProperty("ok").GetBoolean(), verified.ToString());
        Assert.Equal(8, verified.GetProperty("headSequence").GetInt64());
        var head = await gateway.Database.ScalarAsync<byte[]>("SELECT hash FROM audit_events WHERE sequence = 8");
        Assert.Equal(Convert.ToHexStringLower(head), verified.GetProperty("headHash").GetString());
        Assert.Equal(8, verified.GetProperty("lastCheckpoint").GetInt64());
        var kept = verified.GetProperty("lastCheckpointToken").GetString()!;
        Assert.Equal(8, new JsonWebToken(kept).GetPayloadValue<long>("seq"));

        // Listed newest first, one a page, and the listing is itself in the log.
        using var auditor = gateway.Node.CreateHttpClient().WithToken(await gateway.Actors.AuditorClientTokenAsync());
        var listed = await Sites.ReadAllPagesAsync(auditor, "/api/v1/audit/checkpoints", 1);
        Assert.Equal(new long[] { 8, 3 }, listed.Select(c => c.GetProperty("sequence").GetInt64()));
        Assert.Equal(kept, listed[0].GetProperty("token").GetString());
        Assert.All(listed, c => Assert.True(c.GetProperty("authentic").GetBoolean()));
        Assert.True(await gateway.Database.ScalarAsync<long>("SELECT count(*) FROM audit_events WHERE action = 'audit.queried' AND details LIKE '%checkpoints%'") >= 2);

        var rows = (int)await gateway.Database.ScalarAsync<long>("SELECT count(*) FROM audit_events WHERE sequence > 3");
        await gateway.TamperAsync(rows, "DELETE FROM audit_events WHERE sequence > 3");
        var cut = await gateway.VerifyAsync();
        Assert.False(cut.GetProperty("ok").GetBoolean(), cut.ToString());
        Assert.Equal(("removed", 4L), (cut.GetProperty("problem").GetString(), cut.GetProperty("firstBadSequence").GetInt64()));

        // The checkpoints go too: without the kept token the chain (rows 1 to 3, and the record of the failed verification)
        // holds again; with it, the cut shows.
        await gateway.TamperAsync("DELETE FROM audit_checkpoints WHERE sequence > 3");
        Assert.True((await gateway.VerifyAsync()).GetProperty("ok").GetBoolean());
        var anchored = await (await auditor.GetAsync("/api/v1/audit/verify?anchor=" + Uri.EscapeDataString(kept))).ReadJsonAsync();
        Assert.False(anchored.GetProperty("ok").GetBoolean(), anchored.ToString());
        Assert.Equal("removed", anchored.GetProperty("problem").GetString());
        Assert.Equal(2, await AuditCommands.RunAsync(gateway.Node.Services, ["audit", "verify", "--anchor", kept]));
    }

    /// <summary>
    /// Rows 1 to 4 are gone, as when old partitions are detached to cold storage after the retention period, and a
    /// checkpoint over row 4 was kept. Verified from row 1 the log can never hold again; verified from that checkpoint it
    /// does, and a row after it that is altered is still named.
    /// </summary>
    [Fact]
    public async Task AVerificationFromACheckpointSurvivesTheRemovalOfTheRowsBeforeIt()
    {
        await using var gateway = await IsolatedGateway.StartAsync(template);
        await gateway.WriteRowsAsync(4);
        string token;
        await using (var scope = gateway.Node.Services.CreateAsyncScope())
        {
            var checkpoint = (await scope.ServiceProvider.GetRequiredService<AuditCheckpoints>().CreateAsync(CancellationToken.None))!;
            Assert.Equal(4, checkpoint.Sequence);
            token = checkpoint.Signature;
        }

        await gateway.WriteRowsAsync(2);
        await gateway.TamperAsync(4, "DELETE FROM audit_events WHERE sequence <= 4");

        var full = await gateway.VerifyAsync();
        Assert.False(full.GetProperty("ok").GetBoolean(), full.ToString());
        Assert.Equal(("removed", 1L), (full.GetProperty("problem").GetString(), full.GetProperty("firstBadSequence").GetInt64()));

        using var auditor = gateway.Node.CreateHttpClient().WithToken(await gateway.Actors.AuditorClientTokenAsync());
        var since = await (await auditor.GetAsync("/api/v1/audit/verify?since=" + Uri.EscapeDataString(token))).ReadJsonAsync();
        Assert.True(since.GetProperty("ok").GetBoolean(), since.ToString());
        // Rows 5 and 6, and the record of the full verification.
        Assert.Equal((3L, 7L), (since.GetProperty("rowsChecked").GetInt64(), since.GetProperty("headSequence").GetInt64()));
        Assert.Equal(0, await AuditCommands.RunAsync(gateway.Node.Services, ["audit", "verify", "--since", token]));

        await gateway.TamperAsync("UPDATE audit_events SET action = 'auth.sign-in' WHERE sequence = 5");
        var altered = await (await auditor.GetAsync("/api/v1/audit/verify?since=" + Uri.EscapeDataString(token))).ReadJsonAsync();
        Assert.Equal(("altered", 5L), (altered.GetProperty("problem").GetString(), altered.GetProperty("firstBadSequence").GetInt64()));
        Assert.Equal(2, await AuditCommands.RunAsync(gateway.Node.Services, ["audit", "verify", "--since", token]));

        var problem = await (await auditor.GetAsync("/api/v1/audit/verify?since=not-a-token")).AssertProblemAsync(System.Net.HttpStatusCode.BadRequest);
        Assert.Contains("since", problem.GetProperty("detail").GetString(), StringComparison.Ordinal);
        Assert.Equal(64, await AuditCommands.RunAsync(gateway.Node.Services, ["audit", "verify", "--since", "not-a-token"]));
    }

    /// <summary>A checkpoint as the gateway makes them, but signed with a fresh ES256 key nobody configured.</summary>
    private static string SignedWithAnUnknownKey(long sequence, byte[] hash)
    {
        using var lost = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        return new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
        {
            Claims = new Dictionary<string, object> { ["seq"] = sequence, ["hash"] = Base64UrlEncoder.Encode(hash) },
            SigningCredentials = new SigningCredentials(new ECDsaSecurityKey(lost) { KeyId = "lost" }, SecurityAlgorithms.EcdsaSha256),
            TokenType = "audit-checkpoint+jwt",
        });
    }
}
