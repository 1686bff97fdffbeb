using System.Net;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.Extensions.Time.Testing;
using Npgsql;

namespace ExchangeGateway.Tests.Cvs;

/// <summary>
/// Promise 4: after "forget me" nothing of the seeker is left, in any column of any table of any schema (Hangfire's
/// included), in the logs, or in the mail folder; the sites that held a copy are told. A host and database of its own,
/// so its logs are its own and the scan sees only what this story wrote.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class ErasureIsRealTests
{
    [Fact]
    public async Task AfterForgetMeNoTableLogOrMailHoldsTheSeekersNameEmailOrCv()
    {
        await using var database = await TestDatabase.CreateAsync();
        // Logging at Debug everywhere: a leak that only shows at Debug is still a leak once someone turns it on.
        await using var gateway = new GatewayFactory(database, new FakeTimeProvider(DateTimeOffset.UtcNow), captureLogs: true,
            settings: new Dictionary<string, string?>
            {
                ["Logging:LogLevel:Default"] = "Debug", ["Logging:LogLevel:Microsoft"] = "Debug", ["Logging:LogLevel:OpenIddict"] = "Debug",
                ["Logging:Console:LogLevel:Default"] = "Warning",
            });
        var actors = new Actors(gateway);
        await using var receiverA = await PushReceiver.StartAsync();
        await using var receiverB = await PushReceiver.StartAsync();
        var operatorToken = (await actors.NewOperatorAsync()).Tokens.AccessToken;
        var siteA = await Sites.RegisterAsync(gateway, operatorToken, SiteOptions.Push(receiverA.Endpoint));
        var siteB = await Sites.RegisterAsync(gateway, operatorToken, SiteOptions.Push(receiverB.Endpoint));

        var tag = Guid.NewGuid().ToString("N")[..16];
        var name = $"Forgotten Person {tag}n";
        var email = $"forget-{tag}e@example.test";
        var cvText = $"cvtext{tag}c";
        var seeker = await actors.NewSeekerAsync(email);
        using (var put = await Sharing.PutCvAsync(gateway, seeker.Tokens.AccessToken, Sharing.Resume(cvText, name, email)))
        {
            Assert.Equal(HttpStatusCode.Created, put.StatusCode);
        }

        foreach (var site in new[] { siteA, siteB })
        {
            await Sharing.TickAsync(gateway, seeker.Tokens.AccessToken, site.Id);
            await Propagation.ReadAsync(gateway, await actors.TokenAsync(site), cvText);
        }

        // More of a seeker's life than a CV and two shares, so their traces are there to be left behind: a wrong password on
        // the sign-in page, a password reset asked for, a refresh, an export.
        using (var browser = new Pages.PageSession(gateway))
        using (var wrong = await Actors.PostLoginFormAsync(browser.Http, new Uri("/Account/Login", UriKind.Relative), email, "not-the-password"))
        {
            Assert.Equal(HttpStatusCode.OK, wrong.StatusCode);
            using var reset = await browser.SubmitAsync("/Account/ForgotPassword", new() { ["Email"] = email });
            Assert.Equal(HttpStatusCode.OK, reset.StatusCode);
        }

        await Mailbox.SettledAsync(gateway);
        var mailBefore = (await Mailbox.FilesAsync(gateway)).ToHashSet();
        using (var me = gateway.CreateHttpClient().WithToken(seeker.Tokens.AccessToken))
        {
            Assert.Equal(HttpStatusCode.OK, (await me.PostAsync("/api/v1/me/cv/refresh", null)).StatusCode);
            Assert.Contains(cvText, await me.GetStringAsync("/api/v1/me/export"), StringComparison.Ordinal);
        }

        // The seeker's own id must go too: it is what would link the rows left behind back to the person.
        string[] markers = [$"{tag}n", $"{tag}e", $"{tag}c", seeker.Id];
        // The scan works: before erasure it finds the account.
        Assert.Contains(await ScanAsync(database, markers), hit => hit.StartsWith("public.AspNetUsers.email:", StringComparison.Ordinal));

        using (var me = gateway.CreateHttpClient().WithToken(seeker.Tokens.AccessToken))
        {
            Assert.Equal(HttpStatusCode.NoContent, (await me.DeleteAsync("/api/v1/me")).StatusCode);
        }

        await gateway.RunDispatchAsync();
        var keys = await SecurityEventTokens.FetchKeysAsync(gateway);
        foreach (var (receiver, site) in new[] { (receiverA, siteA), (receiverB, siteB) })
        {
            var push = Assert.Single(receiver.Received);
            Assert.Equal("subject-erased", SecurityEventTokens.VerifyPush(push, keys, gateway.Issuer, site.ClientId).Cause);
            Assert.DoesNotContain(markers, m => SecurityEventTokens.Claims(push.Body).GetRawText().Contains(m, StringComparison.OrdinalIgnoreCase));
        }

        Assert.Empty(await ScanAsync(database, markers));
        // The ledger keeps what chasing the copies needs, not the hash of what was sent: that would recognise a copy.
        Assert.Equal(2L, await database.ScalarAsync<long>("SELECT count(*) FROM disclosures WHERE seeker_id IS NULL"));
        Assert.Equal(0L, await database.ScalarAsync<long>("SELECT count(*) FROM disclosures WHERE content_hash IS NOT NULL"));

        // Audit rows name the seeker by pseudonym only, and there are such rows.
        var pseudonymous = await database.ScalarAsync<long>("SELECT count(*) FROM audit_events WHERE subject LIKE 'p\\_%'");
        Assert.True(pseudonymous >= 5, $"only {pseudonymous} audit rows about a seeker");

        Assert.NotEmpty(gateway.Logs!);
        var leaks = gateway.Logs!.Where(line => markers[..3].Any(m => line.Contains(m, StringComparison.OrdinalIgnoreCase))).ToList();
        Assert.True(leaks.Count == 0, "log lines with personal data:\n" + string.Join("\n", leaks.Take(5)));

        // Mail handed to the mail system before the erasure (the reset link) is the mail system's; nothing written since names them.
        await Mailbox.SettledAsync(gateway);
        var mail = (await Mailbox.FilesAsync(gateway)).Where(file => !mailBefore.Contains(file));
        Assert.DoesNotContain(mail, file => markers.Any(m => File.ReadAllText(file).Contains(m, StringComparison.OrdinalIgnoreCase)));
    }

    /// <summary>
    /// Every text-like (text, varchar, char, json, jsonb, xml, arrays) and bytea column of every base table in every
    /// schema, then every whole row as text, searched case-insensitively for each marker; returns "schema.table.column:
    /// marker" (or "schema.table.(row): marker") for each hit.
    /// </summary>
    private static async Task<List<string>> ScanAsync(TestDatabase database, string[] markers)
    {
        await using var connection = await database.OpenOwnerConnectionAsync();
        var columns = new List<(string Schema, string Table, string Column, bool Bytes)>();
        await using (var list = new NpgsqlCommand(
            """
            SELECT c.table_schema, c.table_name, c.column_name, c.data_type = 'bytea'
            FROM information_schema.columns c
            JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name AND t.table_type = 'BASE TABLE'
            WHERE c.table_schema NOT IN ('pg_catalog', 'information_schema')
              AND c.data_type IN ('text', 'character varying', 'character', 'json', 'jsonb', 'xml', 'ARRAY', 'bytea')
            ORDER BY 1, 2, 3
            """, connection))
        await using (var reader = await list.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync())
            {
                columns.Add((reader.GetString(0), reader.GetString(1), reader.GetString(2), reader.GetBoolean(3)));
            }
        }

        Assert.Contains(columns, c => c.Schema == "hangfire");
        Assert.Contains(columns, c => c.Table == "audit_events");
        var hits = new List<string>();
        foreach (var (schema, table, column, bytes) in columns)
        {
            var target = $"\"{schema}\".\"{table}\"";
            var value = $"\"{column}\"";
            // bytea is searched for the UTF-8 bytes as given and in upper case (normalised e-mails, for instance).
            var condition = bytes
                ? $"position(convert_to($1, 'UTF8') IN {value}) > 0 OR position(convert_to(upper($1), 'UTF8') IN {value}) > 0"
                : $"strpos(lower({value}::text), lower($1)) > 0";
            foreach (var marker in markers)
            {
                await using var search = new NpgsqlCommand($"SELECT count(*) FROM {target} WHERE {condition}", connection) { Parameters = { new() { Value = marker } } };
                if ((long)(await search.ExecuteScalarAsync())! > 0)
                {
                    hits.Add($"{schema}.{table}.{column}: {marker}");
                }
            }
        }

        // Whole rows as text as well, of every table (one with no text-like column at all included): a column of a type
        // not listed above (uuid, citext, an enum, a composite) is in there.
        var tables = new List<(string Schema, string Table)>();
        await using (var list = new NpgsqlCommand(
            """
            SELECT table_schema, table_name FROM information_schema.tables
            WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2
            """, connection))
        await using (var reader = await list.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync())
            {
                tables.Add((reader.GetString(0), reader.GetString(1)));
            }
        }

        Assert.Contains(tables, t => t.Table == "feed_entries");
        foreach (var (schema, table) in tables)
        {
            foreach (var marker in markers)
            {
                await using var search = new NpgsqlCommand(
                    $"SELECT count(*) FROM \"{schema}\".\"{table}\" AS t WHERE strpos(lower(t::text), lower($1)) > 0", connection)
                {
                    Parameters = { new() { Value = marker } },
                };
                if ((long)(await search.ExecuteScalarAsync())! > 0)
                {
                    hits.Add($"{schema}.{table}.(row): {marker}");
                }
            }
        }

        return hits;
    }
}
