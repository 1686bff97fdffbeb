using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using ExchangeGateway.Auth;
using ExchangeGateway.Tests.Infrastructure;

namespace ExchangeGateway.Tests.Recipients;

[Collection(GatewayCollection.Name)]
public sealed class RegistrationTests(GatewayFixture fixture)
{
    [Fact]
    public async Task ARegisteredPollSiteGetsACvReadTokenWithItsSecretAndReadsTheFeed()
    {
        var @operator = await fixture.Actors.NewOperatorAsync();
        using var admin = fixture.Client().WithToken(@operator.Tokens.AccessToken);
        var body = Sites.RegistrationBody();

        using var response = await admin.PostAsJsonAsync(Sites.AdminPath, body);
        var created = await response.ReadJsonAsync();
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        var id = created.GetProperty("id").GetGuid();
        var clientId = created.GetProperty("clientId").GetString()!;
        var secret = created.GetProperty("clientSecret").GetString()!;
        Assert.Equal($"/api/v1/admin/recipients/{id}", response.Headers.Location?.OriginalString);
        Assert.Matches("^[a-z0-9][a-z0-9-]{2,63}$", clientId);
        Assert.True(secret.Length >= 43, "a client secret shorter than 256 bits");

        var recipient = created.GetProperty("recipient");
        Assert.Equal(id, recipient.GetProperty("id").GetGuid());
        Assert.Equal(body["displayName"]!.GetValue<string>(), recipient.GetProperty("displayName").GetString());
        Assert.Equal("poll", recipient.GetProperty("deliveryMode").GetString());
        Assert.Equal("client_secret_basic", recipient.GetProperty("clientAuthentication").GetString());
        Assert.Equal("active", recipient.GetProperty("status").GetString());

        var token = await fixture.Actors.ClientTokenAsync(clientId, secret, ApiScopes.CvRead);
        using var site = fixture.Client().WithToken(token);
        using var feed = await site.GetAsync(Sites.FeedPath);
        Assert.Equal(HttpStatusCode.OK, feed.StatusCode);
        Assert.True((await feed.ReadJsonAsync()).TryGetProperty("items", out _));
    }

    [Fact]
    public async Task GettingOneRecipientShowsItsRegistrationAndNeverTheSecret()
    {
        var @operator = await fixture.Actors.NewOperatorAsync();
        using var admin = fixture.Client().WithToken(@operator.Tokens.AccessToken);
        var body = Sites.RegistrationBody();
        var site = await Sites.RegisterAsync(admin, body);

        using var response = await admin.GetAsync($"{Sites.AdminPath}/{site.Id}");
        var text = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var recipient = JsonDocument.Parse(text).RootElement;
        Assert.Equal(site.Id, recipient.GetProperty("id").GetGuid());
        Assert.Equal(site.ClientId, recipient.GetProperty("clientId").GetString());
        foreach (var field in new[] { "displayName", "legalName", "website", "privacyPolicyUrl", "contactEmail" })
        {
            Assert.Equal(body[field]!.GetValue<string>(), recipient.GetProperty(field).GetString());
        }

        Assert.DoesNotContain(site.ClientSecret!, text, StringComparison.Ordinal);
        Assert.False(recipient.TryGetProperty("clientSecret", out _));
        Assert.False(recipient.TryGetProperty("previousSecretHash", out _));
    }

    [Fact]
    public async Task AnUnknownRecipientIs404Problem()
    {
        var @operator = await fixture.Actors.NewOperatorAsync();
        using var admin = fixture.Client().WithToken(@operator.Tokens.AccessToken);
        await (await admin.GetAsync($"{Sites.AdminPath}/{Guid.CreateVersion7()}")).AssertProblemAsync(HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task TheListPagesByCursorAndShowsEachNewSiteExactlyOnce()
    {
        var @operator = await fixture.Actors.NewOperatorAsync();
        using var admin = fixture.Client().WithToken(@operator.Tokens.AccessToken);
        var registered = new List<Guid>();
        for (var i = 0; i < 3; i++)
        {
            registered.Add((await Sites.RegisterAsync(admin)).Id);
        }

        var listed = (await Sites.ReadAllPagesAsync(admin, Sites.AdminPath, limit: 1)).Select(r => r.GetProperty("id").GetGuid()).ToList();

        Assert.Equal(listed.Count, listed.Distinct().Count());
        Assert.Equal(listed.Order().ToList(), listed);
        foreach (var id in registered)
        {
            Assert.Single(listed, id);
        }
    }

    [Fact]
    public async Task AForgedListCursorIs400Problem()
    {
        var @operator = await fixture.Actors.NewOperatorAsync();
        using var admin = fixture.Client().WithToken(@operator.Tokens.AccessToken);
        var problem = await (await admin.GetAsync($"{Sites.AdminPath}?cursor=not-a-cursor")).AssertProblemAsync(HttpStatusCode.BadRequest);
        Assert.True(problem.GetProperty("errors").TryGetProperty("cursor", out _));
    }

    [Fact]
    public async Task RenamingASiteChangesTheNameSeekersSeeInTheDirectory()
    {
        var @operator = await fixture.Actors.NewOperatorAsync();
        using var admin = fixture.Client().WithToken(@operator.Tokens.AccessToken);
        var site = await Sites.RegisterAsync(admin);
        var newName = "Renamed Site " + Guid.NewGuid().ToString("N")[..8];

        using var response = await admin.PatchAsJsonAsync($"{Sites.AdminPath}/{site.Id}", new JsonObject { ["displayName"] = newName });
        var updated = await response.ReadJsonAsync();
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(newName, updated.GetProperty("displayName").GetString());
        // Fields left out keep their value.
        Assert.Equal(site.Recipient.GetProperty("legalName").GetString(), updated.GetProperty("legalName").GetString());
        Assert.Equal(site.Recipient.GetProperty("website").GetString(), updated.GetProperty("website").GetString());

        using (var again = await admin.GetAsync($"{Sites.AdminPath}/{site.Id}"))
        {
            Assert.Equal(newName, (await again.ReadJsonAsync()).GetProperty("displayName").GetString());
        }

        // The OAuth client was renamed with the registry, and its secret survived the update.
        var token = await fixture.Actors.ClientTokenAsync(site.ClientId, site.ClientSecret!, ApiScopes.CvRead);
        var claims = JsonDocument.Parse(Microsoft.IdentityModel.Tokens.Base64UrlEncoder.Decode(token.Split('.')[1])).RootElement;
        Assert.Equal(newName, claims.GetProperty("name").GetString());

        var seeker = await fixture.Actors.NewSeekerAsync();
        using var browser = fixture.Client().WithToken(seeker.Tokens.AccessToken);
        var entry = Assert.Single(await Sites.ReadAllPagesAsync(browser, Sites.DirectoryPath), e => e.GetProperty("id").GetGuid() == site.Id);
        Assert.Equal(newName, entry.GetProperty("displayName").GetString());
        // The directory shows what a seeker needs to decide, not how to reach or authenticate the site.
        Assert.False(entry.TryGetProperty("contactEmail", out _));
        Assert.False(entry.TryGetProperty("clientId", out _));
    }

    [Fact]
    public async Task AnInvalidPatchIs400ProblemAndChangesNothing()
    {
        var @operator = await fixture.Actors.NewOperatorAsync();
        using var admin = fixture.Client().WithToken(@operator.Tokens.AccessToken);
        var site = await Sites.RegisterAsync(admin);

        await (await admin.PatchAsJsonAsync($"{Sites.AdminPath}/{site.Id}", new JsonObject { ["displayName"] = " ", ["contactEmail"] = "nobody" }))
            .AssertProblemAsync(HttpStatusCode.BadRequest);

        using var again = await admin.GetAsync($"{Sites.AdminPath}/{site.Id}");
        var current = await again.ReadJsonAsync();
        Assert.Equal(site.Recipient.GetProperty("displayName").GetString(), current.GetProperty("displayName").GetString());
        Assert.Equal(site.Recipient.GetProperty("contactEmail").GetString(), current.GetProperty("contactEmail").GetString());
    }

    /// <summary>
    /// A PATCH judged before the row lock, against a push site that another edit switches to poll while it waits, is a 409
    /// that says so, not a 500 from the aggregate's rule (a push site needs an endpoint).
    /// </summary>
    [Fact]
    public async Task APatchRacingASwitchToPollIsA409NotA500()
    {
        var @operator = await fixture.Actors.NewOperatorAsync();
        using var admin = fixture.Client().WithToken(@operator.Tokens.AccessToken);
        var site = await Sites.RegisterAsync(admin, SiteOptions.Push(new Uri("http://127.0.0.1:9/events")));

        Task<HttpResponseMessage> patch;
        await using (var other = await HeldTransaction.BeginAsync(fixture.Database))
        {
            await other.ExecuteAsync($"SELECT 1 FROM recipients WHERE id = '{site.Id}' FOR NO KEY UPDATE");
            patch = admin.PatchAsJsonAsync($"{Sites.AdminPath}/{site.Id}", new JsonObject { ["deliveryMode"] = "push", ["displayName"] = "Raced " + Guid.NewGuid().ToString("N")[..6] });
            await HeldTransaction.WaitForWaiterAsync(fixture.Database, "transactionid", "tuple");
            await other.ExecuteAsync($"UPDATE recipients SET delivery_mode = 'Poll', push_endpoint = NULL WHERE id = '{site.Id}'");
            await other.CommitAsync();
        }

        using var answer = await patch;
        await answer.AssertProblemAsync(HttpStatusCode.Conflict);
        using var again = await admin.GetAsync($"{Sites.AdminPath}/{site.Id}");
        Assert.Equal("poll", (await again.ReadJsonAsync()).GetProperty("deliveryMode").GetString());
    }

    /// <summary>Seekers choose sites by name: a second site with a name already taken (in any case) is refused, by registration or rename.</summary>
    [Fact]
    public async Task ANameAnotherSiteHasIs409AndChangesNothing()
    {
        var @operator = await fixture.Actors.NewOperatorAsync();
        using var admin = fixture.Client().WithToken(@operator.Tokens.AccessToken);
        var first = await Sites.RegisterAsync(admin);
        var second = await Sites.RegisterAsync(admin);
        var name = first.DisplayName;

        var body = Sites.RegistrationBody();
        body["displayName"] = " " + name.ToUpperInvariant() + " ";
        var refused = await (await admin.PostAsJsonAsync(Sites.AdminPath, body)).AssertProblemAsync(HttpStatusCode.Conflict);
        Assert.Contains("already named", refused.GetProperty("detail").GetString(), StringComparison.Ordinal);
        Assert.Equal(0L, await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM recipients WHERE contact_email = '{body["contactEmail"]}'"));

        await (await admin.PatchAsJsonAsync($"{Sites.AdminPath}/{second.Id}", new JsonObject { ["displayName"] = name })).AssertProblemAsync(HttpStatusCode.Conflict);
        var kept = await (await admin.GetAsync($"{Sites.AdminPath}/{second.Id}")).ReadJsonAsync();
        Assert.Equal(second.DisplayName, kept.GetProperty("displayName").GetString());

        // Its own name, sent again, is no conflict.
        using var same = await admin.PatchAsJsonAsync($"{Sites.AdminPath}/{first.Id}", new JsonObject { ["displayName"] = name });
        Assert.Equal(HttpStatusCode.OK, same.StatusCode);
    }

    [Fact]
    public async Task AChosenClientIdThatIsTakenIs409ProblemAndCreatesNothing()
    {
        var @operator = await fixture.Actors.NewOperatorAsync();
        using var admin = fixture.Client().WithToken(@operator.Tokens.AccessToken);
        var clientId = "chosen-" + Guid.NewGuid().ToString("N")[..12];
        Assert.Equal(clientId, (await Sites.RegisterAsync(admin, new SiteOptions { ClientId = clientId })).ClientId);

        var before = await Sites.CountRowsAsync(fixture);
        var second = Sites.RegistrationBody();
        second["clientId"] = clientId;
        await (await admin.PostAsJsonAsync(Sites.AdminPath, second)).AssertProblemAsync(HttpStatusCode.Conflict);
        Assert.Equal(before, await Sites.CountRowsAsync(fixture));
    }

    [Fact]
    public async Task RegistrationsRacingForOneClientIdCreateOneSiteAndAnswer409ToTheOthers()
    {
        var @operator = await fixture.Actors.NewOperatorAsync();
        using var admin = fixture.Client().WithToken(@operator.Tokens.AccessToken);
        var clientId = "raced-" + Guid.NewGuid().ToString("N")[..12];

        // Eight at once: all of them pass the "is it taken?" check before the first one commits.

        var attempts = Enumerable.Range(0, 8).Select(async _ =>
        {
            var body = Sites.RegistrationBody();
            body["clientId"] = clientId;
            using var response = await admin.PostAsJsonAsync(Sites.AdminPath, body);
            var text = await response.Content.ReadAsStringAsync();
            return ((int)response.StatusCode, text);
        });
        var results = await Task.WhenAll(attempts);

        Assert.True(results.Count(r => r.Item1 == 201) == 1 && results.Count(r => r.Item1 == 409) == 7,
            string.Join(" | ", results.Select(r => $"{r.Item1} {r.text}")));
        Assert.Equal(1L, await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM recipients WHERE client_id = '{clientId}'"));
        Assert.Equal(1L, await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM \"OpenIddictApplications\" WHERE client_id = '{clientId}'"));
    }
}
