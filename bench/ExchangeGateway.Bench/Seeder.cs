using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using System.Threading.Channels;
using ExchangeGateway.Audit;
using ExchangeGateway.Auth;
using ExchangeGateway.Cvs;
using ExchangeGateway.Data;
using ExchangeGateway.Hosting;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.IdentityModel.Tokens;
using Npgsql;
using NpgsqlTypes;

namespace ExchangeGateway.Bench;

/// <summary>
/// Loads the benchmark's data set with binary COPY, in the shape the gateway writes it: N seekers, each with a CV (an
/// ~8 KB JSON Resume sealed with AES-256-GCM under the seeker's own key, that key wrapped by the gateway's Data Protection
/// key ring read from the same database), consents to S of the R sites (always site 0, the measured one, plus S-1 others),
/// one ledger row per consent (every site already pulled every CV once: the steady state), and an audit log of A events
/// with a valid hash chain continuing the gateway's own. Secondary indexes are dropped for the load and rebuilt after.
/// </summary>
internal static class Seeder
{
    public const string SiteZero = "demo-jobsite";
    private const int Chunk = 1000;
    private static readonly string[] Tables = ["cvs", "seeker_keys", "consents", "feed_entries", "disclosures", "audit_events"];

    public static string SeekerId(long index) => $"00000000-0000-4000-8000-{index:D12}";

    public static async Task<int> RunAsync(Options options)
    {
        var conn = options.String("conn");
        var cvs = options.Int("cvs");
        var recipients = options.Int("recipients", 20);
        var shares = Math.Clamp(options.Int("shares", 3), 1, recipients);
        var auditEvents = options.Int("audit-events", 1_000_000);
        var outDir = options.String("out");
        Directory.CreateDirectory(outDir);
        var total = Stopwatch.StartNew();

        await using var services = DataProtectionServices(conn);
        var dataProtection = services.GetRequiredService<IDataProtectionProvider>();
        var sealer = services.GetRequiredService<CvSealer>();
        await services.GetRequiredService<SigningKeyRing>().LoadAsync(CancellationToken.None);
        await services.GetRequiredService<DataKeyRing>().LoadAsync(CancellationToken.None);
        await using var dataSource = NpgsqlDataSource.Create(conn);

        // Recipients: site 0 is the demo site (it has an OAuth client with a known secret), the others are plain rows.
        var now = DateTimeOffset.UtcNow;
        var sites = await EnsureSitesAsync(dataSource, recipients, now);
        var basePosition = await ScalarAsync<long>(dataSource, "SELECT COALESCE(max(position), 0) FROM feed_entries");
        var (headSequence, headHash, headTime) = await AuditHeadAsync(dataSource);

        var indexes = await DropSecondaryIndexesAsync(dataSource);
        Log($"dropped {indexes.Count} secondary indexes for the load");

        var load = Stopwatch.StartNew();
        var rows = await LoadSeekersAsync(dataSource, sealer, sites, cvs, shares, basePosition, now);
        Log($"loaded {cvs} CVs, {rows.Consents} consents and ledger rows in {load.Elapsed.TotalSeconds:0.0} s");

        load.Restart();
        var head = await LoadAuditAsync(dataSource, auditEvents, headSequence, headHash, headTime, sites, now);
        Log($"loaded {auditEvents} audit events (chain head {head}) in {load.Elapsed.TotalSeconds:0.0} s");

        load.Restart();
        await RebuildAsync(dataSource, indexes, basePosition + ((long)cvs * shares));
        Log($"rebuilt indexes and analysed in {load.Elapsed.TotalSeconds:0.0} s");

        // What the load generators need: cursors (minted with the same key ring and purpose as the gateway's), ids.
        var cursors = new Cursors(dataProtection);
        var collection = "shared-cvs:" + sites[0];
        var random = new Random(42);
        var siteZeroPosition = (long i) => basePosition + (i * shares) + 1; // i is 0-based; site 0 is each seeker's first consent
        await File.WriteAllLinesAsync(Path.Combine(outDir, "feed-cursors.txt"),
            Enumerable.Range(0, 2000).Select(_ => cursors.Encode(collection, siteZeroPosition(random.NextInt64(0, Math.Max(1, (long)(cvs * 0.98)))) - 1)));
        var deepIndex = (long)(cvs * 0.9);
        await File.WriteAllTextAsync(Path.Combine(outDir, "deep-cursor.txt"), cursors.Encode(collection, siteZeroPosition(deepIndex) - 1));
        await File.WriteAllLinesAsync(Path.Combine(outDir, "ids.txt"), rows.SiteZeroSample);

        var summary = new
        {
            cvs,
            recipients,
            shares,
            consents = rows.Consents,
            auditEvents,
            siteZero = sites[0],
            siteZeroClientId = SiteZero,
            firstPosition = basePosition + 1,
            lastPosition = basePosition + ((long)cvs * shares),
            deepPosition = siteZeroPosition(deepIndex),
            averageDocumentBytes = rows.DocumentBytes / Math.Max(1, cvs),
            seedSeconds = total.Elapsed.TotalSeconds,
        };
        await File.WriteAllTextAsync(Path.Combine(outDir, "seed.json"), JsonSerializer.Serialize(summary, new JsonSerializerOptions { WriteIndented = true }));
        Log($"seeded in {total.Elapsed.TotalSeconds:0.0} s; average document {summary.averageDocumentBytes} bytes");
        return 0;
    }

    /// <summary>Data Protection and the key ring exactly as the gateway configures them: same application name, keys in the same tables, sealed with the same key.</summary>
    public static ServiceProvider DataProtectionServices(string conn)
    {
        var services = new ServiceCollection();
        services.AddLogging();
        services.AddDbContext<GatewayDbContext>(o => o.UseNpgsql(conn).UseSnakeCaseNamingConvention().UseOpenIddict());
        // The ring's key-encryption key as the gateway is given it: DataProtection__KeyEncryptionKey (scripts/bench sets it for both).
        services.AddSingleton<IConfiguration>(new ConfigurationBuilder().AddEnvironmentVariables().Build());
        services.AddGatewayDataProtection();
        services.AddSingleton(TimeProvider.System);
        services.AddOptions<AuthOptions>();
        services.AddSingleton<SigningKeyRing>();
        services.AddOptions<DataKeyOptions>();
        services.AddSingleton<DataKeyRing>();
        services.AddSingleton<CvSealer>();
        return services.BuildServiceProvider();
    }

    private static async Task<Guid[]> EnsureSitesAsync(NpgsqlDataSource dataSource, int count, DateTimeOffset now)
    {
        var siteZero = await ScalarAsync<Guid?>(dataSource, $"SELECT id FROM recipients WHERE client_id = '{SiteZero}'")
            ?? throw new InvalidOperationException($"recipient {SiteZero} not found: start the gateway once in Development (demo data) first");
        var sites = new Guid[count];
        sites[0] = siteZero;
        for (var i = 1; i < count; i++)
        {
            var clientId = $"bench-site-{i:D3}";
            await using var insert = dataSource.CreateCommand(
                """
                INSERT INTO recipients (id, client_id, display_name, legal_name, website, privacy_policy_url, contact_email,
                                        delivery_mode, client_authentication, status, created_at, updated_at)
                VALUES ($1, $2, $3, $3, $4, $5, $6, 'Poll', 'ClientSecretBasic', 'Active', $7, $7)
                ON CONFLICT (client_id) DO UPDATE SET updated_at = excluded.updated_at
                RETURNING id
                """);
            insert.Parameters.Add(new() { Value = Guid.CreateVersion7(now) });
            insert.Parameters.Add(new() { Value = clientId });
            insert.Parameters.Add(new() { Value = $"Bench site {i}" });
            insert.Parameters.Add(new() { Value = $"https://{clientId}.example/" });
            insert.Parameters.Add(new() { Value = $"https://{clientId}.example/privacy" });
            insert.Parameters.Add(new() { Value = $"dpo@{clientId}.example" });
            insert.Parameters.Add(new() { Value = now });
            sites[i] = (Guid)(await insert.ExecuteScalarAsync())!;
        }

        return sites;
    }

    private sealed record SeekerRows(
        string SeekerId, Guid CvId, DateTime RefreshedAt, byte[] Sealed, byte[] Hash, byte[] WrappedKey, (Guid Id, int Site, string Pairwise, long Position)[] Consents);

    private sealed record LoadResult(long Consents, long DocumentBytes, List<string> SiteZeroSample);

    private static async Task<LoadResult> LoadSeekersAsync(
        NpgsqlDataSource dataSource, CvSealer sealer, Guid[] sites, int cvs, int shares, long basePosition, DateTimeOffset now)
    {
        var channel = Channel.CreateBounded<SeekerRows[]>(new BoundedChannelOptions(8) { SingleReader = true });
        long documentBytes = 0;
        var producer = Task.Run(async () =>
        {
            try
            {
                var chunks = (cvs + Chunk - 1) / Chunk;
                await Parallel.ForAsync(0, chunks, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount }, async (chunk, ct) =>
                {
                    var from = (long)chunk * Chunk;
                    var to = Math.Min(cvs, from + Chunk);
                    var batch = new SeekerRows[to - from];
                    var bytes = 0L;
                    for (var i = from; i < to; i++)
                    {
                        batch[i - from] = MakeSeeker(sealer, sites, i, shares, basePosition, now, ref bytes);
                    }

                    Interlocked.Add(ref documentBytes, bytes);
                    await channel.Writer.WriteAsync(batch, ct);
                });
                channel.Writer.Complete();
            }
            catch (Exception e)
            {
                channel.Writer.Complete(e);
            }
        });

        await using var cvConnection = await OpenBulkAsync(dataSource);
        await using var keyConnection = await OpenBulkAsync(dataSource);
        await using var consentConnection = await OpenBulkAsync(dataSource);
        await using var ledgerConnection = await OpenBulkAsync(dataSource);
        await using var feedConnection = await OpenBulkAsync(dataSource);
        await using var cvCopy = await cvConnection.BeginBinaryImportAsync(
            "COPY cvs (id, seeker_id, version, state, created_at, updated_at, refreshed_at, sealed, content_hash) FROM STDIN (FORMAT BINARY)");
        await using var keyCopy = await keyConnection.BeginBinaryImportAsync(
            "COPY seeker_keys (seeker_id, wrapped_key, created_at) FROM STDIN (FORMAT BINARY)");
        await using var consentCopy = await consentConnection.BeginBinaryImportAsync(
            "COPY consents (id, seeker_id, recipient_id, pairwise_id, state, collection_method, granted_at, expires_at, expiry_reminder_sent) FROM STDIN (FORMAT BINARY)");
        await using var feedCopy = await feedConnection.BeginBinaryImportAsync(
            "COPY feed_entries (consent_id, recipient_id, position) FROM STDIN (FORMAT BINARY)");
        await using var ledgerCopy = await ledgerConnection.BeginBinaryImportAsync(
            "COPY disclosures (consent_id, recipient_id, seeker_id, cv_version, content_hash, disclosed_at) FROM STDIN (FORMAT BINARY)");

        long consents = 0, written = 0;
        var sample = new List<string>();
        var sampleRandom = new Random(7);
        var clock = Stopwatch.StartNew();
        await foreach (var batch in channel.Reader.ReadAllAsync())
        {
            foreach (var seeker in batch)
            {
                await cvCopy.StartRowAsync();
                await cvCopy.WriteAsync(seeker.CvId, NpgsqlDbType.Uuid);
                await cvCopy.WriteAsync(seeker.SeekerId, NpgsqlDbType.Varchar);
                await cvCopy.WriteAsync(1, NpgsqlDbType.Integer);
                await cvCopy.WriteAsync("Published", NpgsqlDbType.Varchar);
                await cvCopy.WriteAsync(seeker.RefreshedAt, NpgsqlDbType.TimestampTz);
                await cvCopy.WriteAsync(seeker.RefreshedAt, NpgsqlDbType.TimestampTz);
                await cvCopy.WriteAsync(seeker.RefreshedAt, NpgsqlDbType.TimestampTz);
                await cvCopy.WriteAsync(seeker.Sealed, NpgsqlDbType.Bytea);
                await cvCopy.WriteAsync(seeker.Hash, NpgsqlDbType.Bytea);

                await keyCopy.StartRowAsync();
                await keyCopy.WriteAsync(seeker.SeekerId, NpgsqlDbType.Varchar);
                await keyCopy.WriteAsync(seeker.WrappedKey, NpgsqlDbType.Bytea);
                await keyCopy.WriteAsync(seeker.RefreshedAt, NpgsqlDbType.TimestampTz);

                foreach (var (id, site, pairwise, position) in seeker.Consents)
                {
                    var granted = seeker.RefreshedAt.AddDays(-1);
                    await consentCopy.StartRowAsync();
                    await consentCopy.WriteAsync(id, NpgsqlDbType.Uuid);
                    await consentCopy.WriteAsync(seeker.SeekerId, NpgsqlDbType.Varchar);
                    await consentCopy.WriteAsync(sites[site], NpgsqlDbType.Uuid);
                    await consentCopy.WriteAsync(pairwise, NpgsqlDbType.Varchar);
                    await consentCopy.WriteAsync("Active", NpgsqlDbType.Varchar);
                    await consentCopy.WriteAsync("Web", NpgsqlDbType.Varchar);
                    await consentCopy.WriteAsync(granted, NpgsqlDbType.TimestampTz);
                    await consentCopy.WriteAsync(granted.AddDays(365), NpgsqlDbType.TimestampTz);
                    await consentCopy.WriteAsync(false, NpgsqlDbType.Boolean);

                    await feedCopy.StartRowAsync();
                    await feedCopy.WriteAsync(id, NpgsqlDbType.Uuid);
                    await feedCopy.WriteAsync(sites[site], NpgsqlDbType.Uuid);
                    await feedCopy.WriteAsync(position, NpgsqlDbType.Bigint);

                    await ledgerCopy.StartRowAsync();
                    await ledgerCopy.WriteAsync(id, NpgsqlDbType.Uuid);
                    await ledgerCopy.WriteAsync(sites[site], NpgsqlDbType.Uuid);
                    await ledgerCopy.WriteAsync(seeker.SeekerId, NpgsqlDbType.Varchar);
                    await ledgerCopy.WriteAsync(1, NpgsqlDbType.Integer);
                    await ledgerCopy.WriteAsync(seeker.Hash, NpgsqlDbType.Bytea);
                    await ledgerCopy.WriteAsync(seeker.RefreshedAt.AddHours(1), NpgsqlDbType.TimestampTz);
                    consents++;
                }

                if (sample.Count < 20_000 && sampleRandom.Next(Math.Max(1, cvs / 20_000)) == 0)
                {
                    sample.Add(seeker.Consents[0].Pairwise);
                }
            }

            written += batch.Length;
            if (written % 50_000 < Chunk)
            {
                Log($"  {written} seekers ({written / clock.Elapsed.TotalSeconds:0}/s)");
            }
        }

        await producer;
        await cvCopy.CompleteAsync();
        await keyCopy.CompleteAsync();
        await consentCopy.CompleteAsync();
        await feedCopy.CompleteAsync();
        await ledgerCopy.CompleteAsync();
        return new LoadResult(consents, documentBytes, sample);
    }

    private static SeekerRows MakeSeeker(CvSealer sealer, Guid[] sites, long index, int shares, long basePosition, DateTimeOffset now, ref long bytes)
    {
        var seekerId = SeekerId(index + 1);
        // Fresh CVs, refreshed at some point in the last 60 days (the freshness scenario ages 30% of them later).
        var refreshed = now.AddSeconds(-Random.Shared.Next(3600, 60 * 86400));
        var document = Resumes.Create(index, refreshed);
        bytes += document.Length;
        var key = RandomNumberGenerator.GetBytes(32);
        var consents = new (Guid, int, string, long)[shares];
        var others = new HashSet<int>();
        var random = new Random(unchecked((int)index));
        for (var j = 0; j < shares; j++)
        {
            var site = 0;
            if (j > 0)
            {
                do
                {
                    site = random.Next(1, sites.Length);
                }
                while (!others.Add(site));
            }

            consents[j] = (Guid.CreateVersion7(refreshed), site, "cv_" + Base64UrlEncoder.Encode(RandomNumberGenerator.GetBytes(16)),
                basePosition + (index * shares) + j + 1);
        }

        return new SeekerRows(
            seekerId, Guid.CreateVersion7(refreshed), refreshed.UtcDateTime, CvSealer.Seal(key, seekerId, 1, document),
            SHA256.HashData(document), sealer.Wrap(seekerId, key), consents);
    }

    private static async Task<long> LoadAuditAsync(
        NpgsqlDataSource dataSource, int count, long headSequence, byte[] headHash, DateTimeOffset headTime, Guid[] sites, DateTimeOffset now)
    {
        await using var connection = await OpenBulkAsync(dataSource);
        await using var copy = await connection.BeginBinaryImportAsync(
            "COPY audit_events (sequence, occurred_at, actor_kind, actor_id, action, subject, recipient, outcome, details, previous_hash, hash) FROM STDIN (FORMAT BINARY)");
        var previous = headHash;
        var sequence = headSequence;
        // Spread over the last 30 days, but never before the head (the gateway's first start wrote it): a chain's times
        // never go back, and the verifier names a row dated before the one it follows. They end before any event the
        // gateway writes from now on.
        var start = headTime > now.AddDays(-30) ? headTime : now.AddDays(-30);
        var step = Math.Max(0, (now - start).Ticks - TimeSpan.TicksPerSecond) / Math.Max(1, count);
        var random = new Random(11);
        var pseudonym = new byte[18];
        for (var i = 0; i < count; i++)
        {
            sequence++;
            var at = AuditChain.Truncate(start.AddTicks(step * i));
            var site = i % sites.Length == 0 ? Seeder.SiteZero : $"bench-site-{i % sites.Length:D3}";
            random.NextBytes(pseudonym);
            var subject = "p_" + Base64UrlEncoder.Encode(pseudonym);
            var details = $$"""{"ledger":{{i + 1}},"version":1}""";
            var hash = AuditChain.HashOf(sequence, at, ActorKinds.Recipient, site, AuditActions.CvDisclosed, subject, site, Outcomes.Success, details, previous);
            await copy.StartRowAsync();
            await copy.WriteAsync(sequence, NpgsqlDbType.Bigint);
            await copy.WriteAsync(at.UtcDateTime, NpgsqlDbType.TimestampTz);
            await copy.WriteAsync(ActorKinds.Recipient, NpgsqlDbType.Varchar);
            await copy.WriteAsync(site, NpgsqlDbType.Varchar);
            await copy.WriteAsync(AuditActions.CvDisclosed, NpgsqlDbType.Varchar);
            await copy.WriteAsync(subject, NpgsqlDbType.Varchar);
            await copy.WriteAsync(site, NpgsqlDbType.Varchar);
            await copy.WriteAsync(Outcomes.Success, NpgsqlDbType.Varchar);
            await copy.WriteAsync(details, NpgsqlDbType.Text);
            await copy.WriteAsync(previous, NpgsqlDbType.Bytea);
            await copy.WriteAsync(hash, NpgsqlDbType.Bytea);
            previous = hash;
        }

        await copy.CompleteAsync();
        return sequence;
    }

    private static async Task<(long, byte[], DateTimeOffset)> AuditHeadAsync(NpgsqlDataSource dataSource)
    {
        await using var command = dataSource.CreateCommand("SELECT sequence, hash, occurred_at FROM audit_events ORDER BY sequence DESC LIMIT 1");
        await using var reader = await command.ExecuteReaderAsync();
        return await reader.ReadAsync()
            ? (reader.GetInt64(0), (byte[])reader[1], reader.GetFieldValue<DateTimeOffset>(2))
            : (0, AuditChain.Genesis, DateTimeOffset.MinValue);
    }

    private static async Task<List<string>> DropSecondaryIndexesAsync(NpgsqlDataSource dataSource)
    {
        var definitions = new List<(string Name, string Definition)>();
        await using (var command = dataSource.CreateCommand(
            """
            SELECT i.indexname, i.indexdef FROM pg_indexes i
            WHERE i.schemaname = 'public' AND i.tablename = ANY($1)
              AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)
            """))
        {
            command.Parameters.Add(new() { Value = Tables });
            await using var reader = await command.ExecuteReaderAsync();
            while (await reader.ReadAsync())
            {
                definitions.Add((reader.GetString(0), reader.GetString(1)));
            }
        }

        foreach (var (name, _) in definitions)
        {
            await using var drop = dataSource.CreateCommand($"DROP INDEX \"{name}\"");
            await drop.ExecuteNonQueryAsync();
        }

        return definitions.Select(d => d.Definition).ToList();
    }

    private static async Task RebuildAsync(NpgsqlDataSource dataSource, List<string> indexes, long lastPosition)
    {
        // Two at a time: the machine has two cores.
        await Parallel.ForEachAsync(indexes, new ParallelOptions { MaxDegreeOfParallelism = 2 }, async (definition, ct) =>
        {
            await using var connection = await dataSource.OpenConnectionAsync(ct);
            await using var settings = new NpgsqlCommand("SET maintenance_work_mem = '512MB'", connection);
            await settings.ExecuteNonQueryAsync(ct);
            await using var create = new NpgsqlCommand(definition, connection) { CommandTimeout = 0 };
            await create.ExecuteNonQueryAsync(ct);
        });
        await using var setval = dataSource.CreateCommand($"SELECT setval('feed_positions', {lastPosition.ToString(CultureInfo.InvariantCulture)})");
        await setval.ExecuteNonQueryAsync();
        foreach (var table in Tables)
        {
            await using var analyze = dataSource.CreateCommand($"VACUUM (ANALYZE) {table}");
            analyze.CommandTimeout = 0;
            await analyze.ExecuteNonQueryAsync();
        }
    }

    /// <summary>A connection for COPY: foreign-key triggers off for the load (the rows are consistent by construction).</summary>
    private static async Task<NpgsqlConnection> OpenBulkAsync(NpgsqlDataSource dataSource)
    {
        var connection = await dataSource.OpenConnectionAsync();
        await using var command = new NpgsqlCommand("SET session_replication_role = replica; SET synchronous_commit = off", connection);
        await command.ExecuteNonQueryAsync();
        return connection;
    }

    private static async Task<T> ScalarAsync<T>(NpgsqlDataSource dataSource, string sql)
    {
        await using var command = dataSource.CreateCommand(sql);
        var value = await command.ExecuteScalarAsync();
        return value is null or DBNull ? default! : (T)value;
    }

    public static void Log(string message) => Console.Error.WriteLine($"[bench] {message}");
}
