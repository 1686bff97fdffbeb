using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using ExchangeGateway.Auth;
using ExchangeGateway.Tests.Infrastructure;

namespace ExchangeGateway.Tests.Recipients;

[Collection(GatewayCollection.Name)]
public sealed class SecretRotationTests(GatewayFixture fixture)
{
    /// <summary>
    /// The remedy for a leaked secret: the old secret gets no token, and the tokens it already got (which would otherwise
    /// read CVs for the rest of their lifetime) are refused on their next request, CV reads and event calls alike.
    /// </summary>
    [Fact]
    public async Task RotatingWithoutAGracePeriodRetiresTheOldSecretAndItsTokensAtOnce()
    {
        var @operator = await fixture.Actors.NewOperatorAsync();
        using var admin = fixture.Client().WithToken(@operator.Tokens.AccessToken);
        var site = await Sites.RegisterAsync(admin);
        using var leaked = fixture.Client().WithToken(await fixture.Actors.ClientTokenAsync(site.ClientId, site.ClientSecret!, ApiScopes.CvRead));
        Assert.Equal(HttpStatusCode.OK, (await leaked.GetAsync(Sites.FeedPath)).StatusCode);

        using var response = await admin.PostAsync($"{Sites.AdminPath}/{site.Id}/rotate-secret", null);
        var rotated = await response.ReadJsonAsync();
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var newSecret = rotated.GetProperty("clientSecret").GetString()!;
        Assert.NotEqual(site.ClientSecret, newSecret);
        Assert.Equal(site.ClientId, rotated.GetProperty("clientId").GetString());
        Assert.Equal(System.Text.Json.JsonValueKind.Null, rotated.GetProperty("previousSecretValidUntil").ValueKind);

        var token = await fixture.Actors.ClientTokenAsync(site.ClientId, newSecret, ApiScopes.CvRead);
        using (var client = fixture.Client().WithToken(token))
        {
            Assert.Equal(HttpStatusCode.OK, (await client.GetAsync(Sites.FeedPath)).StatusCode);
        }

        using var old = await fixture.Actors.RequestClientTokenAsync(site.ClientId, site.ClientSecret!, ApiScopes.CvRead);
        Assert.Equal(HttpStatusCode.Unauthorized, old.StatusCode);
        Assert.Equal("invalid_client", await Sites.TokenErrorAsync(old));

        using var refused = await leaked.GetAsync(Sites.FeedPath);
        await refused.AssertProblemAsync(HttpStatusCode.Unauthorized);
        Assert.Contains("invalid_token", refused.Headers.WwwAuthenticate.ToString(), StringComparison.Ordinal);
        using var poll = await leaked.PostAsync("/api/v1/events/poll", JsonContent.Create(new { returnImmediately = true }));
        Assert.Equal(HttpStatusCode.Unauthorized, poll.StatusCode);

        // The site's contact is told of the change (which it may not have asked for), and is not sent the secret.
        var contact = site.Recipient.GetProperty("contactEmail").GetString()!;
        var told = Assert.Single(await Mailbox.ForAsync(fixture.Factory, contact));
        Assert.Contains(site.ClientId, told.TextBody, StringComparison.Ordinal);
        Assert.DoesNotContain(newSecret, told.TextBody, StringComparison.Ordinal);
    }

    /// <summary>
    /// Nodes are stateless: a rotation made on one node retires the old secret on every node at once, also on one that had
    /// authenticated the site with it just before (OpenIddict 7 caches clients per request scope, not per node: this keeps
    /// it so); and that node can rotate again itself.
    /// </summary>
    [Fact]
    public async Task ASecretRotatedOnOneNodeIsRefusedAtOnceByAnotherThatHadReadTheClient()
    {
        await using var database = await TestDatabase.CreateAsync();
        var clock = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var nodeA = new GatewayFactory(database, clock);
        await using var nodeB = new GatewayFactory(database, clock, issuer: nodeA.Issuer);
        var (actorsA, actorsB) = (new Actors(nodeA), new Actors(nodeB));
        var @operator = await actorsA.NewOperatorAsync();
        using var adminA = nodeA.CreateHttpClient().WithToken(@operator.Tokens.AccessToken);
        var site = await Sites.RegisterAsync(adminA);
        await actorsB.ClientTokenAsync(site.ClientId, site.Secret, ApiScopes.CvRead);

        using (var rotated = await adminA.PostAsync($"{Sites.AdminPath}/{site.Id}/rotate-secret", null))
        {
            Assert.Equal(HttpStatusCode.OK, rotated.StatusCode);
        }

        using (var old = await actorsB.RequestClientTokenAsync(site.ClientId, site.Secret, ApiScopes.CvRead))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, old.StatusCode);
            Assert.Equal("invalid_client", await Sites.TokenErrorAsync(old));
        }

        using var adminB = nodeB.CreateHttpClient().WithToken(@operator.Tokens.AccessToken);
        using var again = await adminB.PostAsync($"{Sites.AdminPath}/{site.Id}/rotate-secret", null);
        Assert.Equal(HttpStatusCode.OK, again.StatusCode);
        var newest = (await again.ReadJsonAsync()).GetProperty("clientSecret").GetString()!;
        await actorsA.ClientTokenAsync(site.ClientId, newest, ApiScopes.CvRead);
    }

    [Fact]
    public async Task RotatingWithAGracePeriodKeepsTheOldSecretWorkingUntilItEnds()
    {
        var @operator = await fixture.Actors.NewOperatorAsync();
        using var admin = fixture.Client().WithToken(@operator.Tokens.AccessToken);
        var site = await Sites.RegisterAsync(admin);
        using var before = fixture.Client().WithToken(await fixture.Actors.ClientTokenAsync(site.ClientId, site.ClientSecret!, ApiScopes.CvRead));
        var rotatedAt = fixture.Time.GetUtcNow();

        using var response = await admin.PostAsJsonAsync($"{Sites.AdminPath}/{site.Id}/rotate-secret", new JsonObject { ["gracePeriodSeconds"] = 3600 });
        var rotated = await response.ReadJsonAsync();
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var newSecret = rotated.GetProperty("clientSecret").GetString()!;
        var validUntil = rotated.GetProperty("previousSecretValidUntil").GetDateTimeOffset();
        Assert.InRange(validUntil, rotatedAt.AddHours(1).AddSeconds(-1), rotatedAt.AddHours(1).AddSeconds(1));

        // The old secret still gets tokens during the grace period, so the tokens it got before are not refused either.
        Assert.Equal(HttpStatusCode.OK, (await before.GetAsync(Sites.FeedPath)).StatusCode);
        await fixture.Actors.ClientTokenAsync(site.ClientId, site.ClientSecret!, ApiScopes.CvRead);
        await fixture.Actors.ClientTokenAsync(site.ClientId, newSecret, ApiScopes.CvRead);

        fixture.Time.Advance(TimeSpan.FromHours(2));

        using (var old = await fixture.Actors.RequestClientTokenAsync(site.ClientId, site.ClientSecret!, ApiScopes.CvRead))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, old.StatusCode);
            Assert.Equal("invalid_client", await Sites.TokenErrorAsync(old));
        }

        var token = await fixture.Actors.ClientTokenAsync(site.ClientId, newSecret, ApiScopes.CvRead);
        using var client = fixture.Client().WithToken(token);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync(Sites.FeedPath)).StatusCode);
    }

    [Fact]
    public async Task ASecondRotationRetiresTheFirstSecretEvenWithinItsGracePeriod()
    {
        var @operator = await fixture.Actors.NewOperatorAsync();
        using var admin = fixture.Client().WithToken(@operator.Tokens.AccessToken);
        var site = await Sites.RegisterAsync(admin);

        using var first = await admin.PostAsJsonAsync($"{Sites.AdminPath}/{site.Id}/rotate-secret", new JsonObject { ["gracePeriodSeconds"] = 3600 });
        var second = (await first.ReadJsonAsync()).GetProperty("clientSecret").GetString()!;
        using var again = await admin.PostAsJsonAsync($"{Sites.AdminPath}/{site.Id}/rotate-secret", new JsonObject { ["gracePeriodSeconds"] = 3600 });
        var third = (await again.ReadJsonAsync()).GetProperty("clientSecret").GetString()!;

        // Only the secret replaced last has a grace period: at most two secrets work at any time.
        using (var original = await fixture.Actors.RequestClientTokenAsync(site.ClientId, site.ClientSecret!, ApiScopes.CvRead))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, original.StatusCode);
        }

        await fixture.Actors.ClientTokenAsync(site.ClientId, second, ApiScopes.CvRead);
        await fixture.Actors.ClientTokenAsync(site.ClientId, third, ApiScopes.CvRead);
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(2_592_001)]
    public async Task AGracePeriodOutsideZeroToThirtyDaysIs400ProblemAndKeepsTheSecret(int seconds)
    {
        var @operator = await fixture.Actors.NewOperatorAsync();
        using var admin = fixture.Client().WithToken(@operator.Tokens.AccessToken);
        var site = await Sites.RegisterAsync(admin);

        var problem = await (await admin.PostAsJsonAsync($"{Sites.AdminPath}/{site.Id}/rotate-secret", new JsonObject { ["gracePeriodSeconds"] = seconds }))
            .AssertProblemAsync(HttpStatusCode.BadRequest);
        Assert.True(problem.GetProperty("errors").TryGetProperty("gracePeriodSeconds", out _));
        await fixture.Actors.ClientTokenAsync(site.ClientId, site.ClientSecret!, ApiScopes.CvRead);
    }

    [Fact]
    public async Task RotatingTheSecretOfAnUnknownRecipientIs404Problem()
    {
        var @operator = await fixture.Actors.NewOperatorAsync();
        using var admin = fixture.Client().WithToken(@operator.Tokens.AccessToken);
        await (await admin.PostAsync($"{Sites.AdminPath}/{Guid.CreateVersion7()}/rotate-secret", null)).AssertProblemAsync(HttpStatusCode.NotFound);
    }

    /// <summary>
    /// Rotations and edits of one site at the same moment (an operator's double click, two operators) run one after the
    /// other: each answers, none fails on the OAuth client's concurrency token, and exactly the last secret works.
    /// </summary>
    [Fact]
    public async Task ConcurrentRotationsAndEditsOfOneSiteAllSucceedAndTheLastSecretWins()
    {
        var @operator = await fixture.Actors.NewOperatorAsync();
        using var admin = fixture.Client().WithToken(@operator.Tokens.AccessToken);
        var site = await Sites.RegisterAsync(admin);

        var rotations = Enumerable.Range(0, 4).Select(_ => admin.PostAsync($"{Sites.AdminPath}/{site.Id}/rotate-secret", null)).ToList();
        var edits = Enumerable.Range(0, 3).Select(i => admin.PatchAsJsonAsync($"{Sites.AdminPath}/{site.Id}", new JsonObject { ["displayName"] = $"Renamed {i} {site.ClientId}" })).ToList();
        await Task.WhenAll(rotations.Concat(edits));
        foreach (var response in rotations.Concat(edits).Select(t => t.Result))
        {
            Assert.True(response.StatusCode == HttpStatusCode.OK, $"{(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        }

        var secrets = new List<string>();
        foreach (var response in rotations.Select(t => t.Result))
        {
            secrets.Add((await response.ReadJsonAsync()).GetProperty("clientSecret").GetString()!);
            response.Dispose();
        }

        var working = 0;
        foreach (var secret in secrets)
        {
            using var token = await fixture.Actors.RequestClientTokenAsync(site.ClientId, secret, ApiScopes.CvRead);
            working += token.IsSuccessStatusCode ? 1 : 0;
        }

        Assert.Equal(1, working);
    }

    /// <summary>
    /// An edit that changes nothing (an empty body, or the values the site already has) writes nothing: no trail entry
    /// claiming a rename that did not happen, and the site's updatedAt stays. An edit that changes one of two fields sent
    /// names that one only.
    /// </summary>
    [Fact]
    public async Task AnEditThatChangesNothingRecordsNothing()
    {
        var @operator = await fixture.Actors.NewOperatorAsync();
        using var admin = fixture.Client().WithToken(@operator.Tokens.AccessToken);
        var site = await Sites.RegisterAsync(admin);
        var updated = site.Recipient.GetProperty("updatedAt").GetString();
        string Count() => $"SELECT count(*) FROM audit_events WHERE action = 'recipient.updated' AND recipient = '{site.ClientId}'";

        foreach (var body in new[]
        {
            new JsonObject(),
            new JsonObject { ["displayName"] = site.DisplayName, ["website"] = site.Recipient.GetProperty("website").GetString() },
        })
        {
            using var edited = await admin.PatchAsJsonAsync($"{Sites.AdminPath}/{site.Id}", body);
            Assert.Equal(HttpStatusCode.OK, edited.StatusCode);
            Assert.Equal(updated, (await edited.ReadJsonAsync()).GetProperty("updatedAt").GetString());
            Assert.Equal(0L, await fixture.Database.ScalarAsync<long>(Count()));
        }

        using (var edited = await admin.PatchAsJsonAsync($"{Sites.AdminPath}/{site.Id}",
                   new JsonObject { ["displayName"] = site.DisplayName, ["legalName"] = "Renamed SAS " + Guid.NewGuid().ToString("N")[..6] }))
        {
            Assert.Equal(HttpStatusCode.OK, edited.StatusCode);
        }

        Assert.Equal(1L, await fixture.Database.ScalarAsync<long>(Count()));
        var details = JsonNode.Parse(await fixture.Database.ScalarAsync<string>(
            $"SELECT details FROM audit_events WHERE action = 'recipient.updated' AND recipient = '{site.ClientId}'"))!;
        Assert.Equal(["legalName"], details["fields"]!.AsArray().Select(f => f!.GetValue<string>()));
    }

    [Fact]
    public async Task AnEditOfThePushEndpointIsInTheAuditTrail()
    {
        var @operator = await fixture.Actors.NewOperatorAsync();
        using var admin = fixture.Client().WithToken(@operator.Tokens.AccessToken);
        var site = await Sites.RegisterAsync(admin);
        var endpoint = $"http://127.0.0.1:9/events/{Guid.NewGuid():N}";

        using var edited = await admin.PatchAsJsonAsync($"{Sites.AdminPath}/{site.Id}", new JsonObject { ["deliveryMode"] = "push", ["pushEndpoint"] = endpoint });
        Assert.Equal(HttpStatusCode.OK, edited.StatusCode);

        var details = await fixture.Database.ScalarAsync<string>(
            $"SELECT details FROM audit_events WHERE action = 'recipient.updated' AND recipient = '{site.ClientId}' ORDER BY sequence DESC LIMIT 1");
        var recorded = JsonNode.Parse(details)!;
        Assert.Equal(endpoint, recorded["pushEndpoint"]!.GetValue<string>());
        Assert.Equal("push", recorded["deliveryMode"]!.GetValue<string>());
        Assert.Equal(["deliveryMode", "pushEndpoint"], recorded["fields"]!.AsArray().Select(f => f!.GetValue<string>()));
    }
}
