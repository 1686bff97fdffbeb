using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using ExchangeGateway.Auth;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace ExchangeGateway.Tests.Recipients;

/// <summary>
/// Sites that authenticate with a signed JWT (private_key_jwt) instead of a shared secret. OpenIddict 7 follows RFC 10070,
/// the update of RFC 7523 that closes the audience-confusion hole: the assertion's "aud" must be the gateway's issuer
/// (not the token endpoint URL) and its "typ" must be "client-authentication+jwt".
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class PrivateKeyJwtTests(GatewayFixture fixture)
{
    private const string AssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

    private Uri Issuer => fixture.Factory.Issuer;
    private Uri TokenEndpoint => new(fixture.Factory.Issuer, "connect/token");

    [Fact]
    public async Task ASiteRegisteredWithItsPublicKeyGetsATokenWithASignedAssertion()
    {
        using var key = new SiteKey();
        var (site, _) = await RegisterWithKeyAsync(key);
        Assert.Null(site.ClientSecret);
        Assert.Equal("private_key_jwt", site.Recipient.GetProperty("clientAuthentication").GetString());

        using var response = await RequestTokenAsync(key.Assertion(site.ClientId, Issuer, fixture.Time.GetUtcNow()));
        var body = await response.ReadJsonAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"token request refused: {body}");
        var token = body.GetProperty("access_token").GetString()!;
        var payload = JsonDocument.Parse(Microsoft.IdentityModel.Tokens.Base64UrlEncoder.Decode(token.Split('.')[1])).RootElement;
        Assert.Equal(site.ClientId, payload.GetProperty("sub").GetString());
        Assert.Equal(ApiScopes.CvRead, payload.GetProperty("scope").GetString());

        using var client = fixture.Client().WithToken(token);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync(Sites.FeedPath)).StatusCode);
    }

    public static TheoryData<string> DiscoveredAlgorithms => [.. ExchangeGateway.Auth.AssertionAlgorithms.Supported];

    /// <summary>
    /// Every algorithm discovery names for assertions works with a key of the matching type, including from a site whose
    /// clock runs half a minute ahead and that signs with the whole documented five minutes.
    /// </summary>
    [Theory]
    [MemberData(nameof(DiscoveredAlgorithms))]
    public async Task EveryAlgorithmDiscoveryNamesSignsAnAcceptedAssertion(string algorithm)
    {
        using (var discovery = await fixture.Client().GetAsync("/.well-known/openid-configuration"))
        {
            var advertised = (await discovery.ReadJsonAsync()).GetProperty("token_endpoint_auth_signing_alg_values_supported");
            Assert.Contains(algorithm, advertised.EnumerateArray().Select(a => a.GetString()));
        }

        using var key = new SiteKey(algorithm);
        var (site, _) = await RegisterWithKeyAsync(key);
        var siteClock = fixture.Time.GetUtcNow() + TimeSpan.FromSeconds(30);
        using var response = await RequestTokenAsync(key.Assertion(site.ClientId, Issuer, siteClock, lifetime: TimeSpan.FromMinutes(5)));
        var body = await response.ReadJsonAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{algorithm}: {body}");
    }

    [Fact]
    public async Task AnAssertionSignedByAnotherKeyIsInvalidClient()
    {
        using var key = new SiteKey();
        using var impostor = new SiteKey();
        var (site, _) = await RegisterWithKeyAsync(key);

        using var response = await RequestTokenAsync(impostor.Assertion(site.ClientId, Issuer, fixture.Time.GetUtcNow()));

        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Equal("invalid_client", await Sites.TokenErrorAsync(response));
    }

    /// <summary>Assertions in the pre-RFC 10070 shape (untyped, or addressed to the token endpoint) are refused.</summary>
    [Theory]
    [InlineData("JWT", "issuer")]
    [InlineData(null, "issuer")]
    [InlineData(SiteKey.ClientAuthenticationType, "token endpoint")]
    [InlineData(SiteKey.ClientAuthenticationType, "another server")]
    public async Task AnAssertionOfTheWrongTypeOrForAnotherAudienceIsRefused(string? tokenType, string audience)
    {
        using var key = new SiteKey();
        var (site, _) = await RegisterWithKeyAsync(key);
        var aud = audience switch
        {
            "issuer" => Issuer,
            "token endpoint" => TokenEndpoint,
            _ => new Uri("https://elsewhere.example/"),
        };

        using var response = await RequestTokenAsync(key.Assertion(site.ClientId, aud, fixture.Time.GetUtcNow(), tokenType));

        Assert.False(response.IsSuccessStatusCode, $"an assertion typed {tokenType ?? "(none)"} for the {audience} was accepted");
        Assert.Contains(await Sites.TokenErrorAsync(response), new[] { "invalid_client", "invalid_token" });
    }

    [Fact]
    public async Task AnExpiredAssertionIsRefused()
    {
        using var key = new SiteKey();
        var (site, _) = await RegisterWithKeyAsync(key);

        using var response = await RequestTokenAsync(key.Assertion(site.ClientId, Issuer, fixture.Time.GetUtcNow().AddMinutes(-10)));

        Assert.False(response.IsSuccessStatusCode, "an expired assertion was accepted");
        Assert.Contains(await Sites.TokenErrorAsync(response), new[] { "invalid_client", "invalid_token" });
    }

    [Fact]
    public async Task ASiteWithAKeyHasNoSecretToRotate()
    {
        using var key = new SiteKey();
        var (site, operatorToken) = await RegisterWithKeyAsync(key);
        using (var admin = fixture.Client().WithToken(operatorToken))
        {
            await (await admin.PostAsync($"{Sites.AdminPath}/{site.Id}/rotate-secret", null)).AssertProblemAsync(HttpStatusCode.Conflict);
        }

        using var response = await RequestTokenAsync(key.Assertion(site.ClientId, Issuer, fixture.Time.GetUtcNow()));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    /// <summary>
    /// A site whose key leaked gets new keys without losing its consents: the operator replaces the set, first with the
    /// old and the new key (a changeover without a gap), then with the new key alone, and the old key is refused from then
    /// on, and so is every token the site got before it: adding a key leaves the tokens to run out, dropping one refuses them. A
    /// secret site has no keys to rotate; the audit row names the keys by thumbprint.
    /// </summary>
    [Fact]
    public async Task RotatingASitesKeysSwapsTheKeysItMaySignWith()
    {
        using var old = new SiteKey();
        using var next = new SiteKey();
        var (site, operatorToken) = await RegisterWithKeyAsync(old);
        using var admin = fixture.Client().WithToken(operatorToken);
        async Task<HttpStatusCode> TokenWithAsync(SiteKey key)
        {
            using var response = await RequestTokenAsync(key.Assertion(site.ClientId, Issuer, fixture.Time.GetUtcNow()));
            return response.StatusCode;
        }

        async Task<HttpStatusCode> FeedWithAsync(string token)
        {
            using var client = fixture.Client().WithToken(token);
            using var response = await client.GetAsync(Sites.FeedPath);
            return response.StatusCode;
        }

        using var issued = await RequestTokenAsync(old.Assertion(site.ClientId, Issuer, fixture.Time.GetUtcNow()));
        var oldKeysToken = (await issued.ReadJsonAsync()).GetProperty("access_token").GetString()!;

        JsonObject Set(params SiteKey[] keys) =>
            new() { ["jwks"] = new JsonObject { ["keys"] = new JsonArray(keys.Select(k => k.PublicJwks()["keys"]![0]!.DeepClone()).ToArray()) } };

        using (var both = await admin.PostAsJsonAsync($"{Sites.AdminPath}/{site.Id}/rotate-keys", Set(old, next)))
        {
            Assert.Equal(HttpStatusCode.OK, both.StatusCode);
        }

        Assert.Equal(HttpStatusCode.OK, await TokenWithAsync(old));
        Assert.Equal(HttpStatusCode.OK, await TokenWithAsync(next));
        Assert.Equal(HttpStatusCode.OK, await FeedWithAsync(oldKeysToken));

        using (var only = await admin.PostAsJsonAsync($"{Sites.AdminPath}/{site.Id}/rotate-keys", Set(next)))
        {
            Assert.Equal(HttpStatusCode.OK, only.StatusCode);
        }

        Assert.Equal(HttpStatusCode.Unauthorized, await TokenWithAsync(old));
        Assert.Equal(HttpStatusCode.OK, await TokenWithAsync(next));
        Assert.Equal(HttpStatusCode.Unauthorized, await FeedWithAsync(oldKeysToken));
        using (var fresh = await RequestTokenAsync(next.Assertion(site.ClientId, Issuer, fixture.Time.GetUtcNow())))
        {
            Assert.Equal(HttpStatusCode.OK, await FeedWithAsync((await fresh.ReadJsonAsync()).GetProperty("access_token").GetString()!));
        }

        // Each change is told to the site's contact: a key added by someone else would let them sign as the site.
        Assert.Equal(2, (await Mailbox.ForAsync(fixture.Factory, site.Recipient.GetProperty("contactEmail").GetString()!))
            .Count(m => m.TextBody?.Contains(site.ClientId, StringComparison.Ordinal) == true));

        var details = await fixture.Database.ScalarAsync<string>(
            $"SELECT details FROM audit_events WHERE action = 'recipient.keys-rotated' AND recipient = '{site.ClientId}' ORDER BY sequence DESC LIMIT 1");
        Assert.Contains(Microsoft.IdentityModel.Tokens.Base64UrlEncoder.Encode(
            Microsoft.IdentityModel.Tokens.JsonWebKeyConverter.ConvertFromSecurityKey(next.SecurityKey).ComputeJwkThumbprint()), details, StringComparison.Ordinal);

        // A private key, or no set at all, is refused and changes nothing; a secret site has no keys to rotate.
        await (await admin.PostAsJsonAsync($"{Sites.AdminPath}/{site.Id}/rotate-keys", new JsonObject { ["jwks"] = old.PrivateJwks() }))
            .AssertProblemAsync(HttpStatusCode.BadRequest);
        Assert.Equal(HttpStatusCode.OK, await TokenWithAsync(next));
        var secretSite = await Sites.RegisterAsync(admin);
        await (await admin.PostAsJsonAsync($"{Sites.AdminPath}/{secretSite.Id}/rotate-keys", Set(next))).AssertProblemAsync(HttpStatusCode.Conflict);
    }

    [Fact]
    public async Task ASuspendedKeySiteGetsATokenThatReachesOnlyItsEvents()
    {
        using var key = new SiteKey();
        var (site, operatorToken) = await RegisterWithKeyAsync(key);
        using (var admin = fixture.Client().WithToken(operatorToken))
        {
            using var suspended = await admin.PostAsync($"{Sites.AdminPath}/{site.Id}/suspend",
                new StringContent("{\"reason\":\"under investigation\"}", System.Text.Encoding.UTF8, "application/json"));
            Assert.Equal(HttpStatusCode.OK, suspended.StatusCode);
        }

        using var response = await RequestTokenAsync(key.Assertion(site.ClientId, Issuer, fixture.Time.GetUtcNow()));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var client = fixture.Client().WithToken((await response.ReadJsonAsync()).GetProperty("access_token").GetString()!);
        await (await client.GetAsync(Sites.FeedPath)).AssertProblemAsync(HttpStatusCode.Forbidden);
        Assert.Equal(HttpStatusCode.OK, (await client.PostAsync("/api/v1/events/poll", JsonContent.Create(new { returnImmediately = true }))).StatusCode);
    }

    /// <summary>
    /// An assertion authenticates once: the same one sent again (captured from a proxy's log, say) is refused, on this node
    /// or another; so are one without a jti, which could not be told from its copies, and one that lives for a day.
    /// </summary>
    [Fact]
    public async Task AnAssertionIsSpentByItsFirstUseAndMustBeShortLivedAndNamed()
    {
        using var key = new SiteKey();
        var (site, _) = await RegisterWithKeyAsync(key);
        var now = fixture.Time.GetUtcNow();
        var assertion = key.Assertion(site.ClientId, Issuer, now);
        using (var first = await RequestTokenAsync(assertion))
        {
            Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        }

        using (var again = await RequestTokenAsync(assertion))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, again.StatusCode);
            Assert.Equal("invalid_client", await Sites.TokenErrorAsync(again));
        }

        await using (var node = new GatewayFactory(fixture.Database, fixture.Time, issuer: fixture.Factory.Issuer))
        {
            using var elsewhere = node.CreateHttpClient();
            using var form = TokenForm(assertion);
            using var replayed = await elsewhere.PostAsync("/connect/token", form);
            Assert.Equal(HttpStatusCode.Unauthorized, replayed.StatusCode);
        }

        foreach (var refused in new[] { key.Assertion(site.ClientId, Issuer, now, withJti: false), key.Assertion(site.ClientId, Issuer, now, lifetime: TimeSpan.FromDays(1)) })
        {
            using var response = await RequestTokenAsync(refused);
            Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
            Assert.Equal("invalid_client", await Sites.TokenErrorAsync(response));
        }

        // Spent assertions are kept only until they expire: OpenIddict refuses them on that ground from then on.
        fixture.Time.Advance(TimeSpan.FromMinutes(3));
        await using (var scope = fixture.Factory.Services.CreateAsyncScope())
        {
            await scope.ServiceProvider.GetRequiredService<TokenPruningJob>().RunAsync(CancellationToken.None);
        }

        Assert.Equal(0L, await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM spent_client_assertions WHERE client_id = '{site.ClientId}'"));
        using var late = await RequestTokenAsync(assertion);
        Assert.Equal(HttpStatusCode.Unauthorized, late.StatusCode);
    }

    /// <summary>Returns the operator's token too, for the tests that go on administering the site.</summary>
    private async Task<(TestSite Site, string OperatorToken)> RegisterWithKeyAsync(SiteKey key)
    {
        var @operator = await fixture.Actors.NewOperatorAsync();
        using var admin = fixture.Client().WithToken(@operator.Tokens.AccessToken);
        return (await Sites.RegisterAsync(admin, new SiteOptions { Jwks = key.PublicJwks() }), @operator.Tokens.AccessToken);
    }

    /// <summary>No client_id parameter: the assertion's sub names the client.</summary>
    private async Task<HttpResponseMessage> RequestTokenAsync(string assertion)
    {
        using var client = fixture.Client();
        using var form = TokenForm(assertion);
        return await client.PostAsync("/connect/token", form);
    }

    private static FormUrlEncodedContent TokenForm(string assertion) => new(new Dictionary<string, string>
    {
        ["grant_type"] = "client_credentials",
        ["scope"] = ApiScopes.CvRead,
        ["client_assertion_type"] = AssertionType,
        ["client_assertion"] = assertion,
    });
}
