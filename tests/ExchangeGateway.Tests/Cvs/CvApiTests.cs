using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using ExchangeGateway.Cvs;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.Extensions.DependencyInjection;

namespace ExchangeGateway.Tests.Cvs;

[Collection(GatewayCollection.Name)]
public sealed class CvApiTests(GatewayFixture fixture)
{
    /// <summary>
    /// meta.lastModified is the server's: the instant of the write on its own clock (to the second, as JSON Resume writes
    /// it), the same as the CV's updatedAt, whatever the client sent, and moved by the next version.
    /// </summary>
    [Fact]
    public async Task PutThenGetReturnsTheDocumentWithServerSetLastModifiedAndAnETag()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        var document = Sharing.Resume("get-" + Guid.NewGuid());
        document["meta"] = new JsonObject { ["lastModified"] = "1999-01-01T00:00:00Z" };
        var firstAt = fixture.Time.GetUtcNow();
        using var put = await Sharing.PutCvAsync(fixture.Factory, seeker.Tokens.AccessToken, document);
        Assert.Equal(HttpStatusCode.Created, put.StatusCode);
        Assert.Equal("\"v1\"", put.Headers.ETag?.ToString());

        using var client = fixture.Client().WithToken(seeker.Tokens.AccessToken);
        using var get = await client.GetAsync("/api/v1/me/cv");
        var cv = await get.ReadJsonAsync();
        Assert.Equal("\"v1\"", get.Headers.ETag?.ToString());
        Assert.Equal("published", cv.GetProperty("state").GetString());
        Assert.Equal(1, cv.GetProperty("version").GetInt32());
        Assert.Equal(ToTheSecond(firstAt), cv.GetProperty("document").GetProperty("meta").GetProperty("lastModified").GetString());
        Assert.Equal(ToTheSecond(firstAt), ToTheSecond(cv.GetProperty("updatedAt").GetDateTimeOffset()));
        var offlineAt = cv.GetProperty("offlineAt").GetDateTimeOffset();
        var refreshedAt = cv.GetProperty("refreshedAt").GetDateTimeOffset();
        Assert.Equal(TimeSpan.FromDays(90), offlineAt - refreshedAt);

        // A minute on, a new version with the client's stale date again: the server's date moves with it.
        fixture.Time.Advance(TimeSpan.FromSeconds(61));
        var secondAt = fixture.Time.GetUtcNow();
        using (var second = await Sharing.PutCvAsync(fixture.Factory, seeker.Tokens.AccessToken, document))
        {
            Assert.Equal(HttpStatusCode.OK, second.StatusCode);
        }

        var v2 = await (await client.GetAsync("/api/v1/me/cv")).ReadJsonAsync();
        Assert.Equal(2, v2.GetProperty("version").GetInt32());
        Assert.Equal(ToTheSecond(secondAt), v2.GetProperty("document").GetProperty("meta").GetProperty("lastModified").GetString());
        Assert.Equal(ToTheSecond(secondAt), ToTheSecond(v2.GetProperty("updatedAt").GetDateTimeOffset()));

        static string ToTheSecond(DateTimeOffset at) => at.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>A file saved with a UTF-8 byte order mark (Notepad, PowerShell 5) is the same document, stored without it.</summary>
    [Fact]
    public async Task ADocumentWithAByteOrderMarkIsAccepted()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        var marker = "bom-" + Guid.NewGuid().ToString("N");
        using var client = fixture.Client().WithToken(seeker.Tokens.AccessToken);
        using var body = new ByteArrayContent([0xEF, 0xBB, 0xBF, .. System.Text.Encoding.UTF8.GetBytes(Sharing.Resume(marker).ToJsonString())]);
        body.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
        using var put = await client.PutAsync("/api/v1/me/cv", body);
        Assert.Equal(HttpStatusCode.Created, put.StatusCode);
        var stored = await client.GetStringAsync("/api/v1/me/cv");
        Assert.Contains(marker, stored, StringComparison.Ordinal);
        Assert.DoesNotContain("\uFEFF", stored, StringComparison.Ordinal);
    }

    /// <summary>.NET keeps 100 ns ticks, PostgreSQL whole microseconds: what a write answers must be what a later read returns.</summary>
    [Fact]
    public async Task TheTimesAPutOrARefreshAnswersAreTheTimesALaterGetReturns()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        using var client = fixture.Client().WithToken(seeker.Tokens.AccessToken);

        fixture.Time.AdvanceToSubMicrosecondTick();
        using (var created = await Sharing.PutCvAsync(fixture.Factory, seeker.Tokens.AccessToken, Sharing.Resume("created")))
        {
            Assert.Equal(HttpStatusCode.Created, created.StatusCode);
            await AssertSameTimesAsync(await created.ReadJsonAsync());
        }

        fixture.Time.AdvanceToSubMicrosecondTick();
        using (var replaced = await Sharing.PutCvAsync(fixture.Factory, seeker.Tokens.AccessToken, Sharing.Resume("replaced")))
        {
            Assert.Equal(HttpStatusCode.OK, replaced.StatusCode);
            await AssertSameTimesAsync(await replaced.ReadJsonAsync());
        }

        fixture.Time.AdvanceToSubMicrosecondTick();
        using (var refreshed = await client.PostAsync("/api/v1/me/cv/refresh", null))
        {
            Assert.Equal(HttpStatusCode.OK, refreshed.StatusCode);
            await AssertSameTimesAsync(await refreshed.ReadJsonAsync());
        }

        async Task AssertSameTimesAsync(JsonElement written)
        {
            var read = await (await client.GetAsync("/api/v1/me/cv")).ReadJsonAsync();
            foreach (var field in (string[])["refreshedAt", "offlineAt", "updatedAt"])
            {
                Assert.Equal(written.GetProperty(field).GetDateTimeOffset(), read.GetProperty(field).GetDateTimeOffset());
            }
        }
    }

    /// <summary>If-Match compares strongly (a weak tag of the current version does not match) and takes a list.</summary>
    [Fact]
    public async Task IfMatchTakesAListAndIgnoresWeakTags()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        using (var first = await Sharing.PutCvAsync(fixture.Factory, seeker.Tokens.AccessToken, Sharing.Resume("v1")))
        {
            Assert.Equal(HttpStatusCode.Created, first.StatusCode);
        }

        using (var weak = await Sharing.PutCvAsync(fixture.Factory, seeker.Tokens.AccessToken, Sharing.Resume("weak"), "W/\"v1\""))
        {
            await weak.AssertProblemAsync(HttpStatusCode.PreconditionFailed);
        }

        using (var listed = await Sharing.PutCvAsync(fixture.Factory, seeker.Tokens.AccessToken, Sharing.Resume("listed"), "\"v7\", \"v1\""))
        {
            Assert.Equal(HttpStatusCode.OK, listed.StatusCode);
        }

        using var client = fixture.Client().WithToken(seeker.Tokens.AccessToken);
        Assert.Equal(2, (await (await client.GetAsync("/api/v1/me/cv")).ReadJsonAsync()).GetProperty("version").GetInt32());
    }

    /// <summary>A device that last saw the CV before it was erased elsewhere cannot publish over the erasure with its old ETag.</summary>
    [Fact]
    public async Task AnIfMatchFromBeforeTheErasureGets412()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        await Sharing.PutCvAsync(fixture.Factory, seeker.Tokens.AccessToken, Sharing.Resume("before"));
        using var client = fixture.Client().WithToken(seeker.Tokens.AccessToken);
        Assert.Equal(HttpStatusCode.NoContent, (await client.DeleteAsync("/api/v1/me/cv")).StatusCode);

        using (var stale = await Sharing.PutCvAsync(fixture.Factory, seeker.Tokens.AccessToken, Sharing.Resume("over"), "\"v1\""))
        {
            await stale.AssertProblemAsync(HttpStatusCode.PreconditionFailed);
        }

        using var erased = await client.GetAsync("/api/v1/me/cv");
        Assert.Equal("erased", (await erased.ReadJsonAsync()).GetProperty("state").GetString());
        // The erased state's own ETag is the one to publish over it with.
        using var again = await Sharing.PutCvAsync(fixture.Factory, seeker.Tokens.AccessToken, Sharing.Resume("again"), erased.Headers.ETag!.Tag);
        Assert.Equal(HttpStatusCode.OK, again.StatusCode);
    }

    [Fact]
    public async Task AStaleIfMatchGets412AndChangesNothing()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        await Sharing.PutCvAsync(fixture.Factory, seeker.Tokens.AccessToken, Sharing.Resume("v1"));
        using (var second = await Sharing.PutCvAsync(fixture.Factory, seeker.Tokens.AccessToken, Sharing.Resume("v2"), "\"v1\""))
        {
            Assert.Equal(HttpStatusCode.OK, second.StatusCode);
        }

        using var stale = await Sharing.PutCvAsync(fixture.Factory, seeker.Tokens.AccessToken, Sharing.Resume("v3"), "\"v1\"");
        await stale.AssertProblemAsync(HttpStatusCode.PreconditionFailed);

        using var client = fixture.Client().WithToken(seeker.Tokens.AccessToken);
        var cv = await (await client.GetAsync("/api/v1/me/cv")).ReadJsonAsync();
        Assert.Equal(2, cv.GetProperty("version").GetInt32());
        Assert.Contains("v2", cv.GetProperty("document").GetProperty("basics").GetProperty("summary").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task TwoPutsWithTheSameIfMatchRaceAndExactlyOneWins()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        await Sharing.PutCvAsync(fixture.Factory, seeker.Tokens.AccessToken, Sharing.Resume("base"));
        var responses = await Task.WhenAll(Enumerable.Range(0, 6).Select(i =>
            Sharing.PutCvAsync(fixture.Factory, seeker.Tokens.AccessToken, Sharing.Resume("race-" + i), "\"v1\"")));
        Assert.Equal(1, responses.Count(r => r.StatusCode == HttpStatusCode.OK));
        Assert.Equal(5, responses.Count(r => r.StatusCode == HttpStatusCode.PreconditionFailed));
        foreach (var response in responses)
        {
            response.Dispose();
        }
    }

    [Fact]
    public async Task ADocumentBreakingTheSchemaGets422NamingTheField()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        var document = Sharing.Resume("bad");
        document["basics"]!["email"] = "not-an-email";
        document["work"] = "should be an array";
        using var response = await Sharing.PutCvAsync(fixture.Factory, seeker.Tokens.AccessToken, document);
        var problem = await response.AssertProblemAsync(HttpStatusCode.UnprocessableEntity);
        var fields = problem.GetProperty("errors").EnumerateObject().Select(p => p.Name).ToList();
        Assert.Contains("/basics/email", fields);
        Assert.Contains("/work", fields);

        using var client = fixture.Client().WithToken(seeker.Tokens.AccessToken);
        await (await client.GetAsync("/api/v1/me/cv")).AssertProblemAsync(HttpStatusCode.NotFound);
    }

    /// <summary>A document wrong in a thousand places gets the first fifty and a count, not a 70 KB list of them all.</summary>
    [Fact]
    public async Task ADocumentWrongInManyPlacesGetsTheFirstFiftyAndACount()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        var document = Sharing.Resume("many");
        document["work"] = new System.Text.Json.Nodes.JsonArray([.. Enumerable.Range(0, 1000).Select(i => (System.Text.Json.Nodes.JsonNode?)i)]);
        using var response = await Sharing.PutCvAsync(fixture.Factory, seeker.Tokens.AccessToken, document);
        var problem = await response.AssertProblemAsync(HttpStatusCode.UnprocessableEntity);
        var errors = problem.GetProperty("errors").EnumerateObject().ToList();
        Assert.InRange(errors.Count, 2, 51);
        Assert.Contains(errors, e => e.Name == "/work/0");
        Assert.Contains(errors, e => e.Value.EnumerateArray().Any(m => m.GetString()!.Contains("more places", StringComparison.Ordinal)));
    }

    [Theory]
    [InlineData("[1,2,3]")]
    [InlineData("\"just a string\"")]
    [InlineData("{\"basics\": ")]
    [InlineData("{\"basics\": {\"name\": \"\u0000\"}")]
    [InlineData("{\"basics\": {\"name\": \"a\"}, \"basics\": {\"name\": \"b\"}}")]
    [InlineData("{\"basics\": {\"name\": \"a\", \"name\": \"b\"}}")]
    public async Task MalformedOrNonObjectJsonGets4xxProblem(string body)
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        using var client = fixture.Client().WithToken(seeker.Tokens.AccessToken);
        using var response = await client.PutAsync("/api/v1/me/cv", new StringContent(body, Encoding.UTF8, "application/json"));
        Assert.InRange((int)response.StatusCode, 400, 499);
        await response.AssertProblemAsync(response.StatusCode);
    }

    [Fact]
    public async Task DeeplyNestedJsonIsRefused()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        var body = "{\"basics\":{\"x\":" + new string('[', 5000) + new string(']', 5000) + "}}";
        using var client = fixture.Client().WithToken(seeker.Tokens.AccessToken);
        using var response = await client.PutAsync("/api/v1/me/cv", new StringContent(body, Encoding.UTF8, "application/json"));
        Assert.InRange((int)response.StatusCode, 400, 499);
        await response.AssertProblemAsync(response.StatusCode);
    }

    [Fact]
    public async Task A300KiBCvGets413()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        var document = Sharing.Resume("big");
        document["basics"]!["summary"] = new string('x', 300 * 1024);
        using var response = await Sharing.PutCvAsync(fixture.Factory, seeker.Tokens.AccessToken, document);
        await response.AssertProblemAsync(HttpStatusCode.RequestEntityTooLarge);
    }

    /// <summary>
    /// The limit holds for the document as stored, which the feed's memory bound rests on: a body at the limit grows by the
    /// server's lastModified and is refused; characters that JSON does not require escaping are stored as sent, not as
    /// six-byte escapes that made a document within the limit several times over it.
    /// </summary>
    [Fact]
    public async Task TheLimitHoldsForTheDocumentAsStored()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        using var client = fixture.Client().WithToken(seeker.Tokens.AccessToken);
        const string Head = "{\"basics\":{\"summary\":\"", Tail = "\"}}";
        var atTheLimit = Head + new string('x', (256 * 1024) - Head.Length - Tail.Length) + Tail;
        Assert.Equal(256 * 1024, Encoding.UTF8.GetByteCount(atTheLimit));
        using (var refused = await client.PutAsync("/api/v1/me/cv", new StringContent(atTheLimit, Encoding.UTF8, "application/json")))
        {
            var problem = await refused.AssertProblemAsync(HttpStatusCode.UnprocessableEntity);
            Assert.Contains("KiB", problem.GetProperty("errors").GetProperty("")[0].GetString(), StringComparison.Ordinal);
        }

        var marked = Head + new string('<', 100 * 1024) + "é€" + Tail;
        using (var stored = await client.PutAsync("/api/v1/me/cv", new StringContent(marked, Encoding.UTF8, "application/json")))
        {
            Assert.Equal(HttpStatusCode.Created, stored.StatusCode);
        }

        var served = await client.GetByteArrayAsync("/api/v1/me/cv");
        Assert.InRange(served.Length, 100 * 1024, 101 * 1024);
    }

    [Fact]
    public async Task ATenMegabyteBodyGets413ProblemNotACrash()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        using var client = fixture.Client().WithToken(seeker.Tokens.AccessToken);
        using var request = new HttpRequestMessage(HttpMethod.Put, "/api/v1/me/cv")
        {
            Content = new StringContent("{\"a\":\"" + new string('x', 10 * 1024 * 1024) + "\"}", Encoding.UTF8, "application/json"),
        };
        // As a well-behaved client would: the gateway refuses by the announced length before any of the body is sent.
        request.Headers.ExpectContinue = true;
        using var response = await client.SendAsync(request);
        await response.AssertProblemAsync(HttpStatusCode.RequestEntityTooLarge);
    }

    [Fact]
    public async Task TheWrongContentTypeGets415()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        using var client = fixture.Client().WithToken(seeker.Tokens.AccessToken);
        using var response = await client.PutAsync("/api/v1/me/cv", new StringContent(Sharing.Resume("x").ToJsonString(), Encoding.UTF8, "text/plain"));
        await response.AssertProblemAsync(HttpStatusCode.UnsupportedMediaType);
    }

    [Fact]
    public async Task TheCvIsEncryptedAtRest()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        var marker = "plaintext-marker-" + Guid.NewGuid().ToString("N");
        await Sharing.PutCvAsync(fixture.Factory, seeker.Tokens.AccessToken, Sharing.Resume(marker));
        var stored = await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM cvs WHERE seeker_id = '{seeker.Id}' AND sealed IS NOT NULL");
        Assert.Equal(1, stored);
        // Nowhere in clear: not in the sealed column, nor in any other column or table (audit details, Hangfire, ...).
        Assert.Empty(await DatabaseScan.FindAsync(fixture.Database, marker));
    }

    /// <summary>
    /// Erasing the CV alone (not the account): the content and its key are gone, and the site holding a copy is told why,
    /// subject-erased (not consent-revoked), on the obligation, on the SET it polls and in its feed's withdrawal.
    /// </summary>
    [Fact]
    public async Task ErasingTheCvShredsItsKeyAndNoSiteCanReadIt()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        var marker = "erase-" + Guid.NewGuid().ToString("N");
        await Sharing.PutCvAsync(fixture.Factory, seeker.Tokens.AccessToken, Sharing.Resume(marker));
        // A poll site of its own: what it polls and reads is this test's alone.
        var recipient = await Sites.RegisterAsync(fixture.Factory, fixture.Actors);
        await Sharing.TickAsync(fixture.Factory, seeker.Tokens.AccessToken, recipient.Id);
        var site = await fixture.Actors.TokenAsync(recipient);
        var id = Sharing.PairwiseIdOf((await Sharing.ReadFeedAsync(fixture.Factory, site)).Items, marker);
        Assert.NotNull(id);

        using var client = fixture.Client().WithToken(seeker.Tokens.AccessToken);
        Assert.Equal(HttpStatusCode.NoContent, (await client.DeleteAsync("/api/v1/me/cv")).StatusCode);
        var cv = await (await client.GetAsync("/api/v1/me/cv")).ReadJsonAsync();
        Assert.Equal("erased", cv.GetProperty("state").GetString());
        Assert.Equal(System.Text.Json.JsonValueKind.Null, cv.GetProperty("document").ValueKind);
        Assert.Equal(0L, await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM seeker_keys WHERE seeker_id = '{seeker.Id}'"));
        Assert.Equal(0L, await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM cvs WHERE seeker_id = '{seeker.Id}' AND sealed IS NOT NULL"));
        // The ledger still says who received a version and when (the seeker's own record), but no hash that would
        // recognise a copy of what was erased.
        Assert.True(await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM disclosures WHERE seeker_id = '{seeker.Id}'") > 0);
        Assert.Equal(0L, await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM disclosures WHERE seeker_id = '{seeker.Id}' AND content_hash IS NOT NULL"));

        using var siteClient = fixture.Client().WithToken(site);
        await (await siteClient.GetAsync($"/api/v1/shared-cvs/{id}")).AssertProblemAsync(HttpStatusCode.NotFound);

        Assert.Equal($"{id} erasure-required subject-erased", await fixture.Database.ScalarAsync<string>(
            $"SELECT coalesce(string_agg(pairwise_id || ' ' || kind || ' ' || cause, ', '), '') FROM erasure_obligations WHERE recipient_id = '{recipient.Id}'"));
        using (var poll = await siteClient.PostAsync("/api/v1/events/poll", Sharing.Json(new JsonObject { ["returnImmediately"] = true })))
        {
            Assert.Equal(HttpStatusCode.OK, poll.StatusCode);
            var polled = Assert.Single((await poll.ReadJsonAsync()).GetProperty("sets").EnumerateObject());
            var set = await SecurityEventTokens.VerifyAsync(fixture.Factory, polled.Value.GetString()!, recipient.ClientId);
            Assert.Equal(("erasure-required", "subject-erased", id), (set.Kind, set.Cause, set.SubjectId));
        }

        var withdrawal = Assert.Single((await Sharing.ReadFeedAsync(fixture.Factory, site)).Items, i => i.GetProperty("id").GetString() == id);
        Assert.Equal(("withdrawal", "subject-erased"), (withdrawal.GetProperty("kind").GetString(), withdrawal.GetProperty("cause").GetString()));

        // The sharing ended with it: a CV published again is not sent to the site told to delete the old one (under the
        // same id, without a new tick); ticking again shares it under a new id.
        var consents = (await (await client.GetAsync("/api/v1/me/consents")).ReadJsonAsync()).GetProperty("items").EnumerateArray();
        Assert.Equal("ended", consents.Single(c => c.GetProperty("recipientId").GetGuid() == recipient.Id).GetProperty("state").GetString());
        await Sharing.PutCvAsync(fixture.Factory, seeker.Tokens.AccessToken, Sharing.Resume(marker + "-again"));
        await (await siteClient.GetAsync($"/api/v1/shared-cvs/{id}")).AssertProblemAsync(HttpStatusCode.NotFound);
        await Sharing.TickAsync(fixture.Factory, seeker.Tokens.AccessToken, recipient.Id);
        var again = Sharing.PairwiseIdOf((await Sharing.ReadFeedAsync(fixture.Factory, site)).Items, marker + "-again");
        Assert.NotNull(again);
        Assert.NotEqual(id, again);
    }

    /// <summary>
    /// A CV erased by an earlier release left its sharing active; publishing again ends that sharing first, so the sites
    /// told to delete the old CV do not get the new one under the same ids.
    /// </summary>
    [Fact]
    public async Task PublishingOverACvErasedWithItsSharingStillActiveEndsThatSharingFirst()
    {
        var marker = "legacy-erased-" + Guid.NewGuid().ToString("N");
        var seeker = await Propagation.SeekerWithCvAsync(fixture.Factory, fixture.Actors, marker);
        var demo = await Sharing.RecipientIdAsync(fixture.Factory, seeker.Tokens.AccessToken, "Démo Emploi");
        await Sharing.TickAsync(fixture.Factory, seeker.Tokens.AccessToken, demo);
        var site = await fixture.Actors.DemoSiteTokenAsync();
        var id = await Propagation.ReadAsync(fixture.Factory, site, marker);
        await fixture.Database.ExecuteAsync(
            $"UPDATE cvs SET state = 'Erased', sealed = NULL, content_hash = NULL, erased_at = '{fixture.Time.GetUtcNow().AddSeconds(1):O}' WHERE seeker_id = '{seeker.Id}'");

        await Sharing.PutCvAsync(fixture.Factory, seeker.Tokens.AccessToken, Sharing.Resume(marker + "-new"));

        using var siteClient = fixture.Client().WithToken(site);
        await (await siteClient.GetAsync($"/api/v1/shared-cvs/{id}")).AssertProblemAsync(HttpStatusCode.NotFound);
        Assert.Equal("Ended", await fixture.Database.ScalarAsync<string>(
            $"SELECT state FROM consents WHERE seeker_id = '{seeker.Id}' AND recipient_id = '{demo}' ORDER BY granted_at DESC LIMIT 1"));
        // The site told to delete the old CV is told why: the CV was erased.
        Assert.Equal($"{id} erasure-required subject-erased", await fixture.Database.ScalarAsync<string>(
            $"SELECT coalesce(string_agg(pairwise_id || ' ' || kind || ' ' || cause, ', '), '') FROM erasure_obligations WHERE pairwise_id = '{id}'"));
    }

    /// <summary>
    /// A tick given after the CV was erased is the seeker asking to share the CV they publish next: publishing keeps it,
    /// and the site reads the new CV (found by the sharing property test: Put, EraseCv, Tick, Put).
    /// </summary>
    [Fact]
    public async Task ATickGivenAfterAnErasureSharesTheCvPublishedNext()
    {
        var marker = "tick-after-erasure-" + Guid.NewGuid().ToString("N");
        var seeker = await Propagation.SeekerWithCvAsync(fixture.Factory, fixture.Actors, marker);
        using (var me = fixture.Client().WithToken(seeker.Tokens.AccessToken))
        {
            Assert.Equal(HttpStatusCode.NoContent, (await me.DeleteAsync("/api/v1/me/cv")).StatusCode);
        }

        // In the same instant as the erasure, as in the property test (the fake clock stands still).
        var site = await Sites.RegisterAsync(fixture.Factory, fixture.Actors);
        await Sharing.TickAsync(fixture.Factory, seeker.Tokens.AccessToken, site.Id);
        await Sharing.PutCvAsync(fixture.Factory, seeker.Tokens.AccessToken, Sharing.Resume(marker + "-new"));

        Assert.False(string.IsNullOrEmpty(await Propagation.ReadAsync(fixture.Factory, await fixture.Actors.TokenAsync(site), marker + "-new")));
    }

    [Fact]
    public async Task SeekerKeysAreBoundToTheirSeekerAndKeysWrappedTheOldWayStillOpenUntilRewrapped()
    {
        var owner = await fixture.Actors.NewSeekerAsync();
        var other = await fixture.Actors.NewSeekerAsync();
        var marker = "wrap-" + Guid.NewGuid().ToString("N");
        await Sharing.PutCvAsync(fixture.Factory, owner.Tokens.AccessToken, Sharing.Resume(marker));
        await Sharing.PutCvAsync(fixture.Factory, other.Tokens.AccessToken, Sharing.Resume("other"));
        var stored = await fixture.Database.ScalarAsync<byte[]>($"SELECT wrapped_key FROM seeker_keys WHERE seeker_id = '{owner.Id}'");
        Assert.Equal(0x01, stored[0]);

        // A wrapped key copied onto another seeker's row opens nothing there: it is bound to the seeker it was made for.
        var sealer = fixture.Factory.Services.GetRequiredService<CvSealer>();
        var otherStored = await fixture.Database.ScalarAsync<byte[]>($"SELECT wrapped_key FROM seeker_keys WHERE seeker_id = '{other.Id}'");
        Assert.ThrowsAny<CryptographicException>(() => sealer.Unwrap(other.Id, stored));
        Assert.Equal(32, sealer.Unwrap(other.Id, otherStored).Length);

        // Keys written by earlier versions were wrapped by Data Protection: the CV still opens, and the seeker's next write
        // re-wraps the key in the current form (the key itself, and so every stored version, stays the same).
        var key = sealer.Unwrap(owner.Id, stored);
        var legacy = fixture.Factory.Services.GetRequiredService<IDataProtectionProvider>()
            .CreateProtector("ExchangeGateway.SeekerDataKeys.v1").Protect(key);
        await fixture.Database.ExecuteAsync(
            $"UPDATE seeker_keys SET wrapped_key = '\\x{Convert.ToHexString(legacy)}' WHERE seeker_id = '{owner.Id}'");
        using var client = fixture.Client().WithToken(owner.Tokens.AccessToken);
        var read = await (await client.GetAsync("/api/v1/me/cv")).ReadJsonAsync();
        Assert.Contains(marker, read.GetProperty("document").GetRawText(), StringComparison.Ordinal);

        await Sharing.PutCvAsync(fixture.Factory, owner.Tokens.AccessToken, Sharing.Resume(marker + "-v2"));
        var rewrapped = await fixture.Database.ScalarAsync<byte[]>($"SELECT wrapped_key FROM seeker_keys WHERE seeker_id = '{owner.Id}'");
        Assert.Equal(0x01, rewrapped[0]);
        Assert.Equal(key, sealer.Unwrap(owner.Id, rewrapped));
        var again = await (await client.GetAsync("/api/v1/me/cv")).ReadJsonAsync();
        Assert.Contains(marker + "-v2", again.GetProperty("document").GetRawText(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task RefreshKeepsTheVersionAndMovesTheOfflineDate()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        await Sharing.PutCvAsync(fixture.Factory, seeker.Tokens.AccessToken, Sharing.Resume("refresh"));
        using var client = fixture.Client().WithToken(seeker.Tokens.AccessToken);
        var before = await (await client.GetAsync("/api/v1/me/cv")).ReadJsonAsync();
        fixture.Time.Advance(TimeSpan.FromDays(1));
        using var later = fixture.Client().WithToken(await fixture.Actors.FreshTokenAsync(seeker));
        var refreshed = await (await later.PostAsync("/api/v1/me/cv/refresh", null)).ReadJsonAsync();
        Assert.Equal(before.GetProperty("version").GetInt32(), refreshed.GetProperty("version").GetInt32());
        var moved = refreshed.GetProperty("offlineAt").GetDateTimeOffset() - before.GetProperty("offlineAt").GetDateTimeOffset();
        Assert.InRange(moved, TimeSpan.FromDays(1) - TimeSpan.FromMilliseconds(1), TimeSpan.FromDays(1) + TimeSpan.FromMilliseconds(1));
    }
}
