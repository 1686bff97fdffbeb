using System.Security.Cryptography;
using System.Text.Json;
using ExchangeGateway.Audit;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace ExchangeGateway.Tests.Audit;

/// <summary>
/// Someone with full database access edits the log behind the gateway's back; verification must name the first bad row.
/// Each test damages a chain of its own (<see cref="IsolatedGateway"/>), never the shared fixture's, so the class is not in
/// the gateway collection and runs beside it. Each database is a copy of one seeded template, which keeps the starts cheap.
/// </summary>
public sealed class TamperDetectionTests(SeededTemplate template) : IClassFixture<SeededTemplate>
{
    /// <summary>The row every test damages: one of the refused token requests written first, with rows after it.</summary>
    private const long Target = 3;

    [Fact]
    public async Task AnIntactChainVerifiesThroughTheApiAndTheCli()
    {
        await using var gateway = await IsolatedGateway.StartAsync(template);
        await gateway.WriteRowsAsync(5);

        var verdict = await gateway.VerifyAsync();

        Assert.True(verdict.GetProperty("ok").GetBoolean(), verdict.ToString());
        Assert.Equal(5, verdict.GetProperty("headSequence").GetInt64());
        Assert.Equal(5, verdict.GetProperty("rowsChecked").GetInt64());
        Assert.Equal(JsonValueKind.Null, verdict.GetProperty("firstBadSequence").ValueKind);
        Assert.Equal(JsonValueKind.Null, verdict.GetProperty("problem").ValueKind);
        // The verification was recorded as the sixth row, and the chain still holds with it.
        Assert.Equal(6, await gateway.HeadAsync());
        Assert.Equal(0, await AuditCommands.RunAsync(gateway.Node.Services, ["audit", "verify"]));
        // The command's verification is in the log too.
        Assert.Equal(7, await gateway.HeadAsync());
        Assert.Equal("audit-command", await gateway.Database.ScalarAsync<string>($"SELECT actor_id FROM audit_events WHERE sequence = 7 AND action = '{AuditActions.AuditVerified}'"));
    }

    /// <summary>An altered row must stay readable: details changed into something that is not JSON are shown as stored.</summary>
    [Fact]
    public async Task ARowWhoseDetailsAreNoLongerJsonIsListedAsStoredAndNamedAltered()
    {
        await using var gateway = await IsolatedGateway.StartAsync(template);
        await gateway.WriteRowsAsync(6);
        await gateway.TamperAsync($"UPDATE audit_events SET details = '{{\"reason\": cut' WHERE sequence = {Target}");

        Assert.Equal(Target, (await gateway.VerifyAsync()).GetProperty("firstBadSequence").GetInt64());
        using var auditor = gateway.Node.CreateHttpClient().WithToken(await gateway.Actors.AuditorClientTokenAsync());
        using var listed = await auditor.GetAsync("/api/v1/audit/events?limit=100");
        Assert.Equal(System.Net.HttpStatusCode.OK, listed.StatusCode);
        var row = (await listed.ReadJsonAsync()).GetProperty("items").EnumerateArray().Single(e => e.GetProperty("id").GetInt64() == Target);
        Assert.Equal("{\"reason\": cut", row.GetProperty("details").GetString());
        var exported = await auditor.GetStringAsync("/api/v1/audit/events/export");
        Assert.True(exported.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length >= 6, exported);
    }

    [Fact]
    public async Task ARowWhoseContentWasChangedIsReportedAsAltered()
    {
        await using var gateway = await IsolatedGateway.StartAsync(template);
        await gateway.WriteRowsAsync(6);
        Assert.True((await gateway.VerifyAsync()).GetProperty("ok").GetBoolean());

        await gateway.TamperAsync($"UPDATE audit_events SET action = 'auth.sign-in', outcome = 'success' WHERE sequence = {Target}");

        var verdict = await gateway.VerifyAsync();
        Assert.False(verdict.GetProperty("ok").GetBoolean());
        Assert.Equal("altered", verdict.GetProperty("problem").GetString());
        Assert.Equal(Target, verdict.GetProperty("firstBadSequence").GetInt64());
        Assert.Equal(2, await AuditCommands.RunAsync(gateway.Node.Services, ["audit", "verify"]));
    }

    /// <summary>A row whose stored link alone was changed is altered, not an intruder: its content still hashes with the true link.</summary>
    [Fact]
    public async Task ARowWhoseLinkAloneWasChangedIsReportedAsAltered()
    {
        await using var gateway = await IsolatedGateway.StartAsync(template);
        await gateway.WriteRowsAsync(6);
        await gateway.TamperAsync($"UPDATE audit_events SET previous_hash = sha256(previous_hash) WHERE sequence = {Target}");

        var verdict = await gateway.VerifyAsync();
        Assert.Equal(("altered", Target), (verdict.GetProperty("problem").GetString(), verdict.GetProperty("firstBadSequence").GetInt64()));
    }

    [Fact]
    public async Task ARowRewrittenWithARecomputedHashIsCaughtByTheNextLink()
    {
        await using var gateway = await IsolatedGateway.StartAsync(template);
        await gateway.WriteRowsAsync(6);

        // The forger knows the hashing scheme (it is public) and re-hashes the row so that it is self-consistent.
        var row = await ReadRowAsync(gateway, Target);
        var forged = new AuditEvent
        {
            Sequence = row.Sequence, OccurredAt = row.OccurredAt, ActorKind = row.ActorKind, ActorId = "someone-else", Action = row.Action,
            Subject = row.Subject, Recipient = row.Recipient, Outcome = row.Outcome, Details = row.Details, PreviousHash = row.PreviousHash, Hash = [],
        };
        await gateway.TamperAsync(
            $"UPDATE audit_events SET actor_id = 'someone-else', hash = $1 WHERE sequence = {Target}",
            new NpgsqlParameter { Value = AuditChain.HashOf(forged) });

        var verdict = await gateway.VerifyAsync();
        Assert.False(verdict.GetProperty("ok").GetBoolean());
        Assert.Equal("altered", verdict.GetProperty("problem").GetString());
        Assert.Equal(Target, verdict.GetProperty("firstBadSequence").GetInt64());
    }

    [Fact]
    public async Task ARowDeletedFromTheMiddleIsReportedAsRemoved()
    {
        await using var gateway = await IsolatedGateway.StartAsync(template);
        await gateway.WriteRowsAsync(6);
        Assert.True((await gateway.VerifyAsync()).GetProperty("ok").GetBoolean());

        await gateway.TamperAsync($"DELETE FROM audit_events WHERE sequence = {Target}");

        var verdict = await gateway.VerifyAsync();
        Assert.False(verdict.GetProperty("ok").GetBoolean());
        Assert.Equal("removed", verdict.GetProperty("problem").GetString());
        Assert.Equal(Target, verdict.GetProperty("firstBadSequence").GetInt64());
        Assert.Equal(2, await AuditCommands.RunAsync(gateway.Node.Services, ["audit", "verify"]));
    }

    /// <summary>
    /// The verifier hashes rows as PostgreSQL's binary COPY sends them, never decoding them, so rows hashed by the writer's
    /// encoding (<see cref="AuditChain.HashOf(long, DateTimeOffset, string, string?, string, string?, string?, string, string?, byte[])"/>)
    /// must verify whatever they hold: nulls, empty and non-ASCII text, times before 1970 and before 2000, a row larger
    /// than the reader's buffers, and more rows than one batch. One character changed in the large row is still caught.
    /// </summary>
    [Fact]
    public async Task RowsOfEveryShapeHashedByTheWritersEncodingVerify()
    {
        await using var gateway = await IsolatedGateway.StartAsync(template);
        // The shapes make a chain of their own, from row 1: their times run from 1969 to now, and a chain's times never go
        // back (a row dated before the one it follows is named as inserted).
        await gateway.Database.ExecuteAsync("SET session_replication_role = replica; DELETE FROM audit_checkpoints; DELETE FROM audit_events");
        var large = "{\"note\":\"" + new string('x', 3_000_000) + "\"}";
        var rows = new List<(DateTimeOffset At, string Kind, string? Actor, string? Subject, string? Recipient, string? Details)>
        {
            (new DateTimeOffset(1969, 7, 20, 20, 17, 40, TimeSpan.Zero).AddTicks(1_234_560), "system", null, "", null, null),
            (new DateTimeOffset(1999, 12, 31, 23, 59, 59, TimeSpan.Zero).AddTicks(9_999_990), "recipient", "site-é", "Zoë 東京 🚀", "site-é", "{\"naïve\":\"ß\"}"),
            (gateway.Node.Time.GetUtcNow(), "system", "gateway", null, "", large),
        };
        rows.AddRange(Enumerable.Range(0, 5000).Select(i => (gateway.Node.Time.GetUtcNow().AddTicks(i * 10L), "system", (string?)$"gateway-{i}", (string?)null, (string?)null, (string?)$"{{\"i\":{i}}}")));

        var head = 0L;
        var previous = AuditChain.Genesis;
        await using (var connection = await gateway.Database.OpenOwnerConnectionAsync())
        await using (var copy = await connection.BeginBinaryImportAsync(
            "COPY audit_events (sequence, occurred_at, actor_kind, actor_id, action, subject, recipient, outcome, details, previous_hash, hash) FROM STDIN (FORMAT BINARY)"))
        {
            foreach (var row in rows)
            {
                var sequence = ++head;
                var at = AuditChain.Truncate(row.At);
                var hash = AuditChain.HashOf(sequence, at, row.Kind, row.Actor, "test.shape", row.Subject, row.Recipient, "success", row.Details, previous);
                await copy.WriteRowAsync(default, sequence, at, row.Kind, row.Actor, "test.shape", row.Subject, row.Recipient, "success", row.Details, previous, hash);
                previous = hash;
            }

            await copy.CompleteAsync();
        }

        var intact = await gateway.VerifyAsync();
        Assert.True(intact.GetProperty("ok").GetBoolean(), intact.ToString());
        Assert.Equal(head, intact.GetProperty("headSequence").GetInt64());

        var bigRow = head - 5000;
        await gateway.TamperAsync($"UPDATE audit_events SET details = overlay(details placing 'y' from 2000000 for 1) WHERE sequence = {bigRow}");
        var verdict = await gateway.VerifyAsync();
        Assert.Equal("altered", verdict.GetProperty("problem").GetString());
        Assert.Equal(bigRow, verdict.GetProperty("firstBadSequence").GetInt64());
    }

    /// <summary>
    /// A live log is not stored in sequence order (concurrent appenders fill different pages, and vacuumed pages take new
    /// rows), and the verifier streams rows without decoding them: it must still judge them in sequence order. A row
    /// rewritten unchanged is stored after the others: the chain holds, and a row then removed from the middle is named,
    /// not the one stored out of place.
    /// </summary>
    [Fact]
    public async Task AChainStoredOutOfSequenceOrderIsJudgedInSequenceOrder()
    {
        await using var gateway = await IsolatedGateway.StartAsync(template);
        await gateway.WriteRowsAsync(6);
        await gateway.TamperAsync("UPDATE audit_events SET outcome = outcome WHERE sequence = 2");
        var stored = await gateway.Database.ScalarAsync<string>("SELECT string_agg(sequence::text, ',' ORDER BY ctid) FROM audit_events");
        Assert.NotEqual("1,2,3,4,5,6", stored);

        var intact = await gateway.VerifyAsync();
        Assert.True(intact.GetProperty("ok").GetBoolean(), intact.ToString());
        Assert.Equal(6, intact.GetProperty("rowsChecked").GetInt64());
        Assert.Equal(6, intact.GetProperty("headSequence").GetInt64());

        await gateway.TamperAsync("DELETE FROM audit_events WHERE sequence = 4");
        var verdict = await gateway.VerifyAsync();
        Assert.Equal("removed", verdict.GetProperty("problem").GetString());
        Assert.Equal(4, verdict.GetProperty("firstBadSequence").GetInt64());
    }

    /// <summary>
    /// Rows inserted with care: each self-consistent and linked to the one before, and the rows after them renumbered, so
    /// that no number is missing or doubled. The first genuine row moved still carries its old number in its hash.
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public async Task RowsInsertedWithTheRestRenumberedAreNamedAsInserted(int count)
    {
        await using var gateway = await IsolatedGateway.StartAsync(template);
        await gateway.WriteRowsAsync(6);
        await RenumberAsync(gateway, Target, count);

        // Dated as the row before them, as a careful forger would (an earlier date is named at once; see below).
        var before = await ReadRowAsync(gateway, Target - 1);
        var previous = before.Hash;
        for (var i = 0; i < count; i++)
        {
            var forged = new AuditEvent
            {
                Sequence = Target + i, OccurredAt = before.OccurredAt, ActorKind = "operator", ActorId = "nobody",
                Action = "recipient.reinstated", Recipient = "demo-jobsite", Outcome = "success", PreviousHash = previous, Hash = [],
            };
            var hash = AuditChain.HashOf(forged);
            await gateway.TamperAsync(
                $"""
                INSERT INTO audit_events (sequence, occurred_at, actor_kind, actor_id, action, subject, recipient, outcome, details, previous_hash, hash)
                VALUES ({Target + i}, $3, 'operator', 'nobody', 'recipient.reinstated', NULL, 'demo-jobsite', 'success', NULL, $1, $2)
                """,
                new NpgsqlParameter { Value = previous }, new NpgsqlParameter { Value = hash }, new NpgsqlParameter { Value = before.OccurredAt });
            previous = hash;
        }

        var verdict = await gateway.VerifyAsync();
        Assert.False(verdict.GetProperty("ok").GetBoolean());
        Assert.Equal(("inserted", Target), (verdict.GetProperty("problem").GetString(), verdict.GetProperty("firstBadSequence").GetInt64()));
        Assert.Contains($"was written as row {Target}", verdict.GetProperty("detail").GetString(), StringComparison.Ordinal);
    }

    /// <summary>A genuine row copied further down, the rows after it renumbered: the copy is named, not the rows between.</summary>
    [Fact]
    public async Task ACopyOfAGenuineRowIsNamedAsTheInsertedRow()
    {
        await using var gateway = await IsolatedGateway.StartAsync(template);
        await gateway.WriteRowsAsync(6);
        const long Copy = Target + 2;
        await RenumberAsync(gateway, Copy, 1);
        await gateway.TamperAsync(
            $"""
            INSERT INTO audit_events (sequence, occurred_at, actor_kind, actor_id, action, subject, recipient, outcome, details, previous_hash, hash)
            SELECT {Copy}, occurred_at, actor_kind, actor_id, action, subject, recipient, outcome, details, previous_hash, hash FROM audit_events WHERE sequence = {Target}
            """);

        var verdict = await gateway.VerifyAsync();
        Assert.Equal(("inserted", Copy), (verdict.GetProperty("problem").GetString(), verdict.GetProperty("firstBadSequence").GetInt64()));
        Assert.Contains($"copy of row {Target}", verdict.GetProperty("detail").GetString(), StringComparison.Ordinal);
    }

    /// <summary>Rows deleted and the rows after them renumbered to close the gap.</summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public async Task RowsRemovedWithTheRestRenumberedAreNamedAsRemoved(int count)
    {
        await using var gateway = await IsolatedGateway.StartAsync(template);
        await gateway.WriteRowsAsync(6);
        await gateway.TamperAsync(count, $"DELETE FROM audit_events WHERE sequence >= {Target} AND sequence < {Target + count}");
        await RenumberAsync(gateway, Target + count, -count);

        var verdict = await gateway.VerifyAsync();
        Assert.False(verdict.GetProperty("ok").GetBoolean());
        Assert.Equal(("removed", Target), (verdict.GetProperty("problem").GetString(), verdict.GetProperty("firstBadSequence").GetInt64()));
        Assert.Contains($"was written as row {Target + count}", verdict.GetProperty("detail").GetString(), StringComparison.Ordinal);
    }

    /// <summary>
    /// Whoever can write to the database can append a row hashed and linked as the gateway would (the chain's encoding is
    /// public). Dated before the head, to make an act look older than the rows around it, it is named: the gateway never
    /// dates a row before the one it follows. The rows the gateway writes after it are judged no further.
    /// </summary>
    [Fact]
    public async Task ABackDatedRowAppendedWithAValidHashIsReportedAsInserted()
    {
        await using var gateway = await IsolatedGateway.StartAsync(template);
        await gateway.WriteRowsAsync(4);
        var head = await gateway.HeadAsync();
        await AppendBackDatedAsync(gateway, head);
        await gateway.WriteRowsAsync(2);

        var verdict = await gateway.VerifyAsync();
        Assert.False(verdict.GetProperty("ok").GetBoolean());
        Assert.Equal(("inserted", head + 1), (verdict.GetProperty("problem").GetString(), verdict.GetProperty("firstBadSequence").GetInt64()));
        Assert.Contains($"dated before row {head}", verdict.GetProperty("detail").GetString(), StringComparison.Ordinal);
    }

    /// <summary>
    /// A row linked to the head as the gateway would link it, but numbered past it: no row was removed (a row after a
    /// removed one links to that one, not to the row before the gap), so it is named as what it is, an insertion, at its own
    /// number, not as a removal of the number it skipped.
    /// </summary>
    [Fact]
    public async Task ARowNumberedPastTheHeadButLinkedToItIsReportedAsInsertedNotAsARemoval()
    {
        await using var gateway = await IsolatedGateway.StartAsync(template);
        await gateway.WriteRowsAsync(3);
        var head = await gateway.HeadAsync();
        await AppendForgedAsync(gateway, head, head + 100, TimeSpan.FromSeconds(1));

        var verdict = await gateway.VerifyAsync();
        Assert.False(verdict.GetProperty("ok").GetBoolean());
        Assert.Equal(("inserted", head + 100), (verdict.GetProperty("problem").GetString(), verdict.GetProperty("firstBadSequence").GetInt64()));
        Assert.Contains($"follows row {head}", verdict.GetProperty("detail").GetString(), StringComparison.Ordinal);
    }

    /// <summary>
    /// A walk from a checkpoint starts from its row's time: a back-dated row appended right after the checkpointed head is
    /// named as well.
    /// </summary>
    [Fact]
    public async Task ABackDatedRowRightAfterTheCheckpointVerifiedFromIsNamed()
    {
        await using var gateway = await IsolatedGateway.StartAsync(template);
        await gateway.WriteRowsAsync(3);
        using var auditor = gateway.Node.CreateHttpClient().WithToken(await gateway.Actors.AuditorClientTokenAsync());
        string token;
        await using (var scope = gateway.Node.Services.CreateAsyncScope())
        {
            token = (await scope.ServiceProvider.GetRequiredService<AuditCheckpoints>().CreateAsync(CancellationToken.None))!.Signature;
        }

        var head = await gateway.HeadAsync();
        Assert.Equal(head, (await AuditCheckpoints.ReadTokenAsync(token, gateway.Node.Services.GetRequiredService<ExchangeGateway.Auth.SigningKeyRing>()))!.Sequence);
        await AppendBackDatedAsync(gateway, head);

        var verdict = await (await auditor.GetAsync(AuditLog.VerifyPath + "?since=" + Uri.EscapeDataString(token))).ReadJsonAsync();
        Assert.Equal(("inserted", head + 1), (verdict.GetProperty("problem").GetString(), verdict.GetProperty("firstBadSequence").GetInt64()));
    }

    /// <summary>
    /// Rows written before the gateway kept the log's times in order (before the AuditTimeOrderFrom migration, which records
    /// the first row after it) are not judged on their order, and the verdict says so; the rows after it are.
    /// </summary>
    [Fact]
    public async Task RowsFromBeforeTimesWereKeptInOrderAreNotJudgedOnTheirOrder()
    {
        await using var gateway = await IsolatedGateway.StartAsync(template);
        await gateway.WriteRowsAsync(3);
        var head = await gateway.HeadAsync();
        // As a database upgraded with a row from before: the migration recorded the row after it.
        await AppendBackDatedAsync(gateway, head);
        await gateway.Database.ExecuteAsync(
            $"CREATE OR REPLACE FUNCTION audit_time_order_from() RETURNS bigint LANGUAGE sql IMMUTABLE AS 'SELECT {head + 2}::bigint'");
        await gateway.WriteRowsAsync(2);

        var verdict = await gateway.VerifyAsync();
        Assert.True(verdict.GetProperty("ok").GetBoolean(), verdict.ToString());
        Assert.Contains(verdict.GetProperty("warnings").EnumerateArray(), w => w.GetString()!.Contains($"Rows up to {head + 1} ", StringComparison.Ordinal));

        // A row after the recorded one is judged.
        await AppendBackDatedAsync(gateway, await gateway.HeadAsync());
        var after = await gateway.VerifyAsync();
        Assert.Equal("inserted", after.GetProperty("problem").GetString());
    }

    /// <summary>Appends after row <paramref name="head"/> a row hashed and linked as the gateway would, dated three days before it.</summary>
    private static Task AppendBackDatedAsync(IsolatedGateway gateway, long head) => AppendForgedAsync(gateway, head, head + 1, TimeSpan.FromDays(-3));

    /// <summary>
    /// Appends after row <paramref name="head"/>, numbered <paramref name="sequence"/>, a row hashed and linked to it as the
    /// gateway would, dated <paramref name="shift"/> from it.
    /// </summary>
    private static async Task AppendForgedAsync(IsolatedGateway gateway, long head, long sequence, TimeSpan shift)
    {
        var last = await ReadRowAsync(gateway, head);
        var forged = new AuditEvent
        {
            Sequence = sequence, OccurredAt = last.OccurredAt + shift, ActorKind = "operator", ActorId = "nobody",
            Action = "recipient.reinstated", Recipient = "demo-jobsite", Outcome = "success", PreviousHash = last.Hash, Hash = [],
        };
        await gateway.TamperAsync(
            $"""
            INSERT INTO audit_events (sequence, occurred_at, actor_kind, actor_id, action, subject, recipient, outcome, details, previous_hash, hash)
            VALUES ({sequence}, $3, 'operator', 'nobody', 'recipient.reinstated', NULL, 'demo-jobsite', 'success', NULL, $1, $2)
            """,
            new NpgsqlParameter { Value = last.Hash }, new NpgsqlParameter { Value = AuditChain.HashOf(forged) },
            new NpgsqlParameter { Value = forged.OccurredAt });
    }

    [Fact]
    public async Task ARowAppendedOutsideTheGatewayIsReportedAsInserted()
    {
        await using var gateway = await IsolatedGateway.StartAsync(template);
        await gateway.WriteRowsAsync(4);
        Assert.True((await gateway.VerifyAsync()).GetProperty("ok").GetBoolean());
        var intruder = await gateway.HeadAsync() + 1;

        await gateway.TamperAsync(
            $"""
            INSERT INTO audit_events (sequence, occurred_at, actor_kind, actor_id, action, subject, recipient, outcome, details, previous_hash, hash)
            VALUES ({intruder}, now(), 'operator', 'nobody', 'recipient.reinstated', NULL, 'demo-jobsite', 'success', NULL, $1, $2)
            """,
            new NpgsqlParameter { Value = RandomNumberGenerator.GetBytes(32) },
            new NpgsqlParameter { Value = RandomNumberGenerator.GetBytes(32) });

        var verdict = await gateway.VerifyAsync();
        Assert.False(verdict.GetProperty("ok").GetBoolean());
        Assert.Equal("inserted", verdict.GetProperty("problem").GetString());
        Assert.Equal(intruder, verdict.GetProperty("firstBadSequence").GetInt64());
    }

    /// <summary>
    /// A forged head numbered before row 1 and linked to the genesis is self-consistent: it is named as the inserted row,
    /// not the genuine row 1 after it. The database refuses such a row; a forger who owns it drops the check first.
    /// </summary>
    [Fact]
    public async Task ARowNumberedBeforeTheFirstIsReportedAsInserted()
    {
        await using var gateway = await IsolatedGateway.StartAsync(template);
        await gateway.WriteRowsAsync(2);
        var forged = new AuditEvent
        {
            Sequence = 0, OccurredAt = DateTimeOffset.UnixEpoch, ActorKind = "operator", ActorId = "nobody", Action = "recipient.reinstated",
            Recipient = "demo-jobsite", Outcome = "success", PreviousHash = AuditChain.Genesis, Hash = [],
        };
        const string Insert = """
            INSERT INTO audit_events (sequence, occurred_at, actor_kind, actor_id, action, subject, recipient, outcome, details, previous_hash, hash)
            VALUES (0, 'epoch', 'operator', 'nobody', 'recipient.reinstated', NULL, 'demo-jobsite', 'success', NULL, $1, $2)
            """;
        var refused = await Assert.ThrowsAsync<PostgresException>(() => gateway.TamperAsync(
            Insert, new NpgsqlParameter { Value = AuditChain.Genesis }, new NpgsqlParameter { Value = AuditChain.HashOf(forged) }));
        Assert.Equal(PostgresErrorCodes.CheckViolation, refused.SqlState);

        await gateway.Database.ExecuteAsync("ALTER TABLE audit_events DROP CONSTRAINT ck_audit_events_sequence_positive");
        await gateway.TamperAsync(Insert, new NpgsqlParameter { Value = AuditChain.Genesis }, new NpgsqlParameter { Value = AuditChain.HashOf(forged) });

        var verdict = await gateway.VerifyAsync();
        Assert.False(verdict.GetProperty("ok").GetBoolean());
        Assert.Equal("inserted", verdict.GetProperty("problem").GetString());
        Assert.Equal(0, verdict.GetProperty("firstBadSequence").GetInt64());
    }

    [Fact]
    public async Task ASignedCheckpointExposesTheRemovalOfTheLastRow()
    {
        await using var gateway = await IsolatedGateway.StartAsync(template);
        await gateway.WriteRowsAsync(5);
        var head = await gateway.HeadAsync();

        await using (var scope = gateway.Node.Services.CreateAsyncScope())
        {
            var checkpoint = await scope.ServiceProvider.GetRequiredService<AuditCheckpoints>().CreateAsync(CancellationToken.None);
            Assert.NotNull(checkpoint);
            Assert.Equal(head, checkpoint.Sequence);
            // Nothing new since: no second checkpoint for the same head.
            Assert.Null(await scope.ServiceProvider.GetRequiredService<AuditCheckpoints>().CreateAsync(CancellationToken.None));

            // Verified without the API, which would append a row after the checkpointed one.
            var intact = await scope.ServiceProvider.GetRequiredService<AuditVerifier>().VerifyAsync(null, CancellationToken.None);
            Assert.True(intact.Ok, intact.Detail);
            Assert.Equal(head, intact.LastCheckpoint);
        }

        // Without the checkpoint, dropping the newest row would leave a shorter chain that is perfectly consistent.
        await gateway.TamperAsync($"DELETE FROM audit_events WHERE sequence = {head}");

        var verdict = await gateway.VerifyAsync();
        Assert.False(verdict.GetProperty("ok").GetBoolean());
        Assert.Equal("removed", verdict.GetProperty("problem").GetString());
        Assert.Equal(head, verdict.GetProperty("firstBadSequence").GetInt64());
        Assert.Equal(2, await AuditCommands.RunAsync(gateway.Node.Services, ["audit", "verify"]));
    }

    /// <summary>
    /// Someone who can rewrite the database drops the newest rows and the checkpoint over them, and lets the gateway write
    /// on: the chain is consistent again, and so are the database's own checkpoints. The checkpoint the auditor kept from
    /// an earlier verification still exposes it.
    /// </summary>
    [Fact]
    public async Task ACheckpointTheAuditorKeptExposesARewriteTheDatabaseNoLongerShows()
    {
        await using var gateway = await IsolatedGateway.StartAsync(template);
        await gateway.WriteRowsAsync(5);
        await using (var scope = gateway.Node.Services.CreateAsyncScope())
        {
            Assert.NotNull(await scope.ServiceProvider.GetRequiredService<AuditCheckpoints>().CreateAsync(CancellationToken.None));
        }

        var earlier = await gateway.VerifyAsync();
        Assert.Equal(5, earlier.GetProperty("lastCheckpoint").GetInt64());
        var kept = earlier.GetProperty("lastCheckpointToken").GetString()!;

        await gateway.TamperAsync("DELETE FROM audit_events WHERE sequence = 6");
        await gateway.TamperAsync("DELETE FROM audit_events WHERE sequence = 5");
        await gateway.TamperAsync("DELETE FROM audit_checkpoints WHERE sequence = 5");
        await gateway.WriteRowsAsync(2);
        Assert.True((await gateway.VerifyAsync()).GetProperty("ok").GetBoolean(), "the rewrite should be invisible without the kept checkpoint");

        using var auditor = gateway.Node.CreateHttpClient().WithToken(await gateway.Actors.AuditorClientTokenAsync());
        var verdict = await (await auditor.GetAsync("/api/v1/audit/verify?anchor=" + Uri.EscapeDataString(kept))).ReadJsonAsync();
        Assert.False(verdict.GetProperty("ok").GetBoolean());
        Assert.Equal("checkpoint", verdict.GetProperty("problem").GetString());
        Assert.Equal(5, verdict.GetProperty("firstBadSequence").GetInt64());
        Assert.Equal(2, await AuditCommands.RunAsync(gateway.Node.Services, ["audit", "verify", "--anchor", kept]));

        // Something that is not a checkpoint signed by this gateway is refused, not taken as "no anchor".
        var forged = kept[..kept.LastIndexOf('.')] + ".AAAA";
        foreach (var bad in new[] { "not-a-token", forged, new string('a', 5000) })
        {
            var problem = await (await auditor.GetAsync("/api/v1/audit/verify?anchor=" + Uri.EscapeDataString(bad))).AssertProblemAsync(System.Net.HttpStatusCode.BadRequest);
            Assert.Contains("anchor", problem.GetProperty("detail").GetString(), StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task ACheckpointWithAForgedSignatureIsReported()
    {
        await using var gateway = await IsolatedGateway.StartAsync(template);
        await gateway.WriteRowsAsync(3);
        var head = await gateway.HeadAsync();
        var row = await ReadRowAsync(gateway, head);

        await gateway.TamperAsync(
            $"INSERT INTO audit_checkpoints (sequence, hash, signed_at, signature) VALUES ({head}, $1, now(), 'eyJhbGciOiJub25lIn0.eyJzZXEiOjN9.')",
            new NpgsqlParameter { Value = row.Hash });

        var verdict = await gateway.VerifyAsync();
        Assert.False(verdict.GetProperty("ok").GetBoolean());
        Assert.Equal("checkpoint", verdict.GetProperty("problem").GetString());
        Assert.Equal(head, verdict.GetProperty("firstBadSequence").GetInt64());
        // The rows were walked all the same.
        Assert.True(verdict.GetProperty("rowsChecked").GetInt64() >= head);

        // A row altered as well is what gets reported first: a bad checkpoint must not hide it.
        await gateway.TamperAsync($"UPDATE audit_events SET outcome = 'success' WHERE sequence = 2");
        verdict = await gateway.VerifyAsync();
        Assert.Equal(("altered", 2L), (verdict.GetProperty("problem").GetString(), verdict.GetProperty("firstBadSequence").GetInt64()));
    }

    [Fact]
    public async Task TheCliCommandCreatesACheckpointAndRefusesUnknownCommands()
    {
        await using var gateway = await IsolatedGateway.StartAsync(template);
        await gateway.WriteRowsAsync(2);

        Assert.Equal(0, await AuditCommands.RunAsync(gateway.Node.Services, ["audit", "checkpoint"]));
        Assert.Equal(2, await gateway.Database.ScalarAsync<long>("SELECT max(sequence) FROM audit_checkpoints"));
        Assert.Equal(64, await AuditCommands.RunAsync(gateway.Node.Services, ["audit", "erase-everything"]));
    }

    /// <summary>Moves the rows from <paramref name="from"/> on by <paramref name="by"/>, in two steps so no number is held twice.</summary>
    private static async Task RenumberAsync(IsolatedGateway gateway, long from, int by)
    {
        var rows = (int)await gateway.Database.ScalarAsync<long>($"SELECT count(*) FROM audit_events WHERE sequence >= {from}");
        Assert.True(rows > 0);
        await gateway.TamperAsync(
            2 * rows,
            $"UPDATE audit_events SET sequence = sequence + 1000000 WHERE sequence >= {from}; UPDATE audit_events SET sequence = sequence - {1000000 - by} WHERE sequence >= 1000000");
    }

    private static async Task<AuditEvent> ReadRowAsync(IsolatedGateway gateway, long sequence)
    {
        await using var connection = await gateway.Database.OpenOwnerConnectionAsync();
        await using var command = new NpgsqlCommand(
            "SELECT sequence, occurred_at, actor_kind, actor_id, action, subject, recipient, outcome, details, previous_hash, hash FROM audit_events WHERE sequence = $1",
            connection) { Parameters = { new() { Value = sequence } } };
        await using var reader = await command.ExecuteReaderAsync();
        Assert.True(await reader.ReadAsync(), $"no audit row {sequence}");
        return new AuditEvent
        {
            Sequence = reader.GetInt64(0),
            OccurredAt = reader.GetFieldValue<DateTimeOffset>(1),
            ActorKind = reader.GetString(2),
            ActorId = reader.IsDBNull(3) ? null : reader.GetString(3),
            Action = reader.GetString(4),
            Subject = reader.IsDBNull(5) ? null : reader.GetString(5),
            Recipient = reader.IsDBNull(6) ? null : reader.GetString(6),
            Outcome = reader.GetString(7),
            Details = reader.IsDBNull(8) ? null : reader.GetString(8),
            PreviousHash = reader.GetFieldValue<byte[]>(9),
            Hash = reader.GetFieldValue<byte[]>(10),
        };
    }
}
