using System.Net;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.Extensions.Time.Testing;

namespace ExchangeGateway.Tests.Exchange;

/// <summary>
/// Promise 2, "if the record cannot be written, the CV is not sent": the database refuses the disclosure ledger's insert, or
/// the audit event's, and a site with a consented, fresh CV gets an error with no byte of the CV, while nothing of the
/// disclosure is left behind. Dropping the refusal then lets the very same reads through (the setup was right). Each case
/// has a gateway on its own database, since the refusal would break every other test's reads.
/// </summary>
public sealed class DisclosureRecordFailureTests
{
    private const string Refusal = "refused-by-the-test";

    /// <summary>
    /// <paramref name="errorCode"/>: P0001 is a plain RAISE (a fault that will not pass: 500); 40P01 is a deadlock, which
    /// the gateway treats as transient (503 with Retry-After). Either way, nothing is sent and nothing is recorded.
    /// </summary>
    [Theory]
    [InlineData("disclosures", "P0001", HttpStatusCode.InternalServerError)]
    [InlineData("disclosures", "40P01", HttpStatusCode.ServiceUnavailable)]
    [InlineData("audit_events", "P0001", HttpStatusCode.InternalServerError)]
    public async Task WhenTheRecordCannotBeWrittenTheCvIsNotSentAndNothingIsRecorded(string table, string errorCode, HttpStatusCode expected)
    {
        await using var database = await TestDatabase.CreateAsync();
        await using var gateway = new GatewayFactory(database, new FakeTimeProvider(DateTimeOffset.UtcNow));
        var actors = new Actors(gateway);
        var site = await Sites.RegisterAsync(gateway, actors);
        var marker = "unrecorded-" + Guid.NewGuid().ToString("N");
        var seeker = await Propagation.SeekerWithCvAsync(gateway, actors, marker);
        var consentId = (await Sharing.TickAsync(gateway, seeker.Tokens.AccessToken, site.Id)).GetProperty("id").GetGuid();
        // The site's id for the CV, from the table: reading the feed to learn it would record a disclosure.
        var id = await database.ScalarAsync<string>($"SELECT pairwise_id FROM consents WHERE id = '{consentId}'");
        var ledger = $"SELECT count(*) FROM disclosures WHERE consent_id = '{consentId}'";
        var audited = $"SELECT count(*) FROM audit_events WHERE action = 'cv.disclosed' AND recipient = '{site.ClientId}'";

        // As the owner: every insert into the table is refused (on the audit log, only a disclosure's, so that sign-ins and
        // token requests, which are audited too, still work).
        var only = table == "audit_events" ? "WHEN (NEW.action = 'cv.disclosed')" : "";
        await database.ExecuteAsync($"""
            CREATE FUNCTION test_refuse_insert() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '{Refusal}: % on %', TG_OP, TG_TABLE_NAME USING ERRCODE = '{errorCode}';
            END
            $$;
            CREATE TRIGGER test_refuse_insert BEFORE INSERT ON {table} FOR EACH ROW {only} EXECUTE FUNCTION test_refuse_insert();
            """);

        var token = await actors.TokenAsync(site);
        using var client = gateway.CreateHttpClient().WithToken(token);
        using (var one = await client.GetAsync($"{Sites.FeedPath}/{id}"))
        {
            await AssertRefusedAsync(one, expected, marker);
        }

        using (var feed = await client.GetAsync(Sites.FeedPath))
        {
            await AssertRefusedAsync(feed, expected, marker);
        }

        Assert.Equal(0L, await database.ScalarAsync<long>(ledger));
        Assert.Equal(0L, await database.ScalarAsync<long>(audited));
        // Nor any other row: the ledger and the disclosure events are empty in this database.
        Assert.Equal(0L, await database.ScalarAsync<long>("SELECT count(*) FROM disclosures"));
        Assert.Equal(0L, await database.ScalarAsync<long>("SELECT count(*) FROM audit_events WHERE action = 'cv.disclosed'"));

        // The refusal gone, the same reads succeed and are recorded: what stopped them was the failed record.
        await database.ExecuteAsync($"DROP TRIGGER test_refuse_insert ON {table}; DROP FUNCTION test_refuse_insert();");
        using (var one = await client.GetAsync($"{Sites.FeedPath}/{id}"))
        {
            var text = await one.Content.ReadAsStringAsync();
            Assert.True(one.StatusCode == HttpStatusCode.OK, $"{(int)one.StatusCode} {text}");
            Assert.Contains(marker, text, StringComparison.Ordinal);
        }

        Assert.Equal(1L, await database.ScalarAsync<long>(ledger));
        Assert.Equal(1L, await database.ScalarAsync<long>(audited));
        var (items, _) = await Sharing.ReadFeedAsync(gateway, token);
        Assert.Equal(id, Sharing.PairwiseIdOf(items, marker));
        Assert.Equal(2L, await database.ScalarAsync<long>(ledger));
        Assert.Equal(2L, await database.ScalarAsync<long>(audited));
        // Each disclosure event names its own ledger row of this episode.
        Assert.Equal(2L, await database.ScalarAsync<long>($"""
            SELECT count(DISTINCT d.id) FROM disclosures d
            JOIN audit_events a ON a.action = 'cv.disclosed' AND (a.details::jsonb ->> 'ledger')::bigint = d.id
            WHERE d.consent_id = '{consentId}'
            """));
    }

    /// <summary>
    /// A fault that passes is answered 503 (Retry-After) and, since .NET 10 records nothing about an exception a handler took,
    /// logged by the gateway itself: one Warning with the route, the exceptions' types and the SQLSTATE, and no word of the
    /// database's message, which here quotes a value of the refused row (as a deadlock's or a unique violation's detail can).
    /// </summary>
    [Fact]
    public async Task ATransientFaultIsLoggedOnceByRouteTypeAndSqlStateWithoutTheRowsValues()
    {
        await using var database = await TestDatabase.CreateAsync();
        await using var gateway = new GatewayFactory(database, new FakeTimeProvider(DateTimeOffset.UtcNow), captureLogs: true);
        var actors = new Actors(gateway);
        var site = await Sites.RegisterAsync(gateway, actors);
        var seeker = await Propagation.SeekerWithCvAsync(gateway, actors, "logged-" + Guid.NewGuid().ToString("N"));
        var consentId = (await Sharing.TickAsync(gateway, seeker.Tokens.AccessToken, site.Id)).GetProperty("id").GetGuid();
        var id = await database.ScalarAsync<string>($"SELECT pairwise_id FROM consents WHERE id = '{consentId}'");
        var seekerId = await database.ScalarAsync<string>($"SELECT seeker_id FROM consents WHERE id = '{consentId}'");
        await database.ExecuteAsync($"""
            CREATE FUNCTION test_refuse_insert() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '{Refusal}: row of %', NEW.seeker_id USING ERRCODE = '40P01', DETAIL = 'Key (seeker_id)=(' || NEW.seeker_id || ')';
            END
            $$;
            CREATE TRIGGER test_refuse_insert BEFORE INSERT ON disclosures FOR EACH ROW EXECUTE FUNCTION test_refuse_insert();
            """);
        var token = await actors.TokenAsync(site);
        using var client = gateway.CreateHttpClient().WithToken(token);
        var before = gateway.Logs!.Count;

        using (var response = await client.GetAsync($"{Sites.FeedPath}/{id}"))
        {
            await AssertRefusedAsync(response, HttpStatusCode.ServiceUnavailable, seekerId);
        }

        var logged = gateway.Logs.Skip(before).ToList();
        var warning = Assert.Single(logged, line => line.Contains("Answered 503", StringComparison.Ordinal));
        Assert.StartsWith("Warning ", warning, StringComparison.Ordinal);
        Assert.Contains("GET /api/v1/shared-cvs/{id}", warning, StringComparison.Ordinal);
        Assert.Contains("PostgresException", warning, StringComparison.Ordinal);
        Assert.Contains("SQLSTATE 40P01", warning, StringComparison.Ordinal);
        Assert.DoesNotContain(logged, line => line.Contains(seekerId, StringComparison.Ordinal) || line.Contains(Refusal, StringComparison.Ordinal));
    }

    private static async Task AssertRefusedAsync(HttpResponseMessage response, HttpStatusCode expected, string marker)
    {
        var text = await response.Content.ReadAsStringAsync();
        await response.AssertProblemAsync(expected);
        Assert.DoesNotContain(marker, text, StringComparison.Ordinal);
        // The database's message stays in the gateway: no SQL, no trigger text, no exception type.
        Assert.DoesNotContain(Refusal, text, StringComparison.Ordinal);
        Assert.DoesNotContain("Exception", text, StringComparison.Ordinal);
        if (expected == HttpStatusCode.ServiceUnavailable)
        {
            Assert.True(response.Headers.RetryAfter is not null, "a 503 without Retry-After");
        }
    }
}
