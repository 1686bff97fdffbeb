using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.IdentityModel.Tokens;

namespace ExchangeGateway.Tests.Recipients;

[Collection(GatewayCollection.Name)]
public sealed class RegistrationValidationTests(GatewayFixture fixture)
{
    /// <summary>Each case breaks one thing in an otherwise valid registration and names the field the problem must point at.</summary>
    [Theory]
    [InlineData("missing displayName", "displayName")]
    [InlineData("blank displayName", "displayName")]
    [InlineData("website not a url", "website")]
    [InlineData("website not http", "website")]
    [InlineData("bad contactEmail", "contactEmail")]
    [InlineData("unknown field", "favouriteColour")]
    [InlineData("unknown deliveryMode", "deliveryMode")]
    [InlineData("push without pushEndpoint", "pushEndpoint")]
    [InlineData("poll with pushEndpoint", "pushEndpoint")]
    [InlineData("push to private 10.0.0.1", "pushEndpoint")]
    [InlineData("push to private 192.168.1.1", "pushEndpoint")]
    [InlineData("push to cloud metadata 169.254.169.254", "pushEndpoint")]
    [InlineData("push to IPv6 loopback", "pushEndpoint")]
    [InlineData("push to IPv4-mapped private address", "pushEndpoint")]
    [InlineData("push to NAT64 private address", "pushEndpoint")]
    [InlineData("push to 6to4 private address", "pushEndpoint")]
    [InlineData("push to IPv4-compatible private address", "pushEndpoint")]
    [InlineData("push to Teredo address", "pushEndpoint")]
    [InlineData("push endpoint with credentials", "pushEndpoint")]
    [InlineData("push endpoint not http", "pushEndpoint")]
    [InlineData("malformed clientId", "clientId")]
    [InlineData("private_key_jwt without jwks", "jwks")]
    [InlineData("jwks holding a private key", "jwks")]
    [InlineData("jwks holding a symmetric key", "jwks")]
    [InlineData("jwks with client_secret_basic", "jwks")]
    [InlineData("jwks RSA key without n and e", "jwks.keys[0]")]
    [InlineData("jwks RSA key of 1024 bits", "jwks.keys[0]")]
    [InlineData("jwks EC key on secp256k1", "jwks.keys[0]")]
    [InlineData("jwks EC point off the curve", "jwks.keys[0]")]
    [InlineData("privacy policy URL long once escaped", "privacyPolicyUrl")]
    [InlineData("push host over 253 characters", "pushEndpoint")]
    [InlineData("redirect URI OpenIddict refuses", "client")]
    [InlineData("push endpoint relative", "pushEndpoint")]
    [InlineData("deliveryMode as a number", "deliveryMode")]
    [InlineData("deliveryMode as a numeric string", "deliveryMode")]
    [InlineData("clientAuthentication as a number", "clientAuthentication")]
    [InlineData("displayName with a zero-width space", "displayName")]
    [InlineData("displayName with a bidirectional override", "displayName")]
    [InlineData("legalName with a soft hyphen", "legalName")]
    [InlineData("website with credentials", "website")]
    [InlineData("privacy policy URL with credentials", "privacyPolicyUrl")]
    [InlineData("redirect URI with credentials", "redirectUris[0]")]
    public async Task AnInvalidRegistrationIs400ProblemAndCreatesNothing(string fault, string field)
    {
        var @operator = await fixture.Actors.NewOperatorAsync();
        using var admin = fixture.Client().WithToken(@operator.Tokens.AccessToken);
        using var key = new SiteKey();
        var body = Sites.RegistrationBody();
        switch (fault)
        {
            case "missing displayName": body.Remove("displayName"); break;
            case "blank displayName": body["displayName"] = "   "; break;
            case "website not a url": body["website"] = "not a url"; break;
            case "website not http": body["website"] = "ftp://files.example/"; break;
            case "bad contactEmail": body["contactEmail"] = "dpo at example"; break;
            case "unknown field": body["favouriteColour"] = "blue"; break;
            case "unknown deliveryMode": body["deliveryMode"] = "carrier-pigeon"; break;
            // Enum members by number: 2 is no mode at all, and 0 would bypass the name every client is documented to send.
            case "deliveryMode as a number": Push(body, "https://events.example/set"); body["deliveryMode"] = 2; break;
            case "deliveryMode as a numeric string": body["deliveryMode"] = "1"; break;
            case "clientAuthentication as a number": body["clientAuthentication"] = 1; break;
            case "push without pushEndpoint": body["deliveryMode"] = "push"; break;
            case "poll with pushEndpoint": body["pushEndpoint"] = "https://events.example/set"; break;
            case "push to private 10.0.0.1": Push(body, "https://10.0.0.1/x"); break;
            case "push to private 192.168.1.1": Push(body, "https://192.168.1.1/events"); break;
            case "push to cloud metadata 169.254.169.254": Push(body, "http://169.254.169.254/latest/meta-data/"); break;
            // The test gateway allows 127.0.0.0/8 only: IPv6 loopback stays refused.
            case "push to IPv6 loopback": Push(body, "http://[::1]/"); break;
            case "push to IPv4-mapped private address": Push(body, "https://[::ffff:10.0.0.1]/events"); break;
            case "push to NAT64 private address": Push(body, "https://[64:ff9b::a00:5]/events"); break;
            case "push to 6to4 private address": Push(body, "https://[2002:a9fe:a9fe::1]/events"); break;
            case "push to IPv4-compatible private address": Push(body, "https://[::c0a8:101]/events"); break;
            case "push to Teredo address": Push(body, "https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/events"); break;
            case "push endpoint with credentials": Push(body, "https://user:pass@events.example/set"); break;
            case "push endpoint not http": Push(body, "ftp://events.example/set"); break;
            case "malformed clientId": body["clientId"] = "Not A Client Id!"; break;
            case "private_key_jwt without jwks": body["clientAuthentication"] = "private_key_jwt"; break;
            case "jwks holding a private key":
                body["clientAuthentication"] = "private_key_jwt";
                body["jwks"] = key.PrivateJwks();
                break;
            case "jwks holding a symmetric key":
                body["clientAuthentication"] = "private_key_jwt";
                body["jwks"] = new JsonObject { ["keys"] = new JsonArray(new JsonObject { ["kty"] = "oct", ["k"] = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0" }) };
                break;
            case "jwks with client_secret_basic": body["jwks"] = key.PublicJwks(); break;
            // Keys without what makes a key answered 500 (the thumbprint step threw).
            case "jwks RSA key without n and e": OneKey(body, new JsonObject { ["kty"] = "RSA" }); break;
            case "jwks RSA key of 1024 bits":
                using (var weak = System.Security.Cryptography.RSA.Create(1024))
                {
                    var p = weak.ExportParameters(false);
                    OneKey(body, new JsonObject { ["kty"] = "RSA", ["n"] = Base64UrlEncoder.Encode(p.Modulus), ["e"] = Base64UrlEncoder.Encode(p.Exponent) });
                }

                break;
            case "jwks EC key on secp256k1": OneKey(body, new JsonObject { ["kty"] = "EC", ["crv"] = "secp256k1", ["x"] = Base64UrlEncoder.Encode(new byte[32]), ["y"] = Base64UrlEncoder.Encode(new byte[32]) }); break;
            case "jwks EC point off the curve": OneKey(body, new JsonObject { ["kty"] = "EC", ["crv"] = "P-256", ["x"] = Base64UrlEncoder.Encode(new byte[32]), ["y"] = Base64UrlEncoder.Encode(new byte[32]) }); break;
            // 1 000 characters as sent, six thousand once percent-encoded: the column holds 2 000.
            case "privacy policy URL long once escaped": body["privacyPolicyUrl"] = "https://site.example/" + new string('é', 1000); break;
            case "push host over 253 characters": Push(body, "https://" + string.Join('.', Enumerable.Repeat(new string('a', 63), 5)) + "/events"); break;
            case "push endpoint relative": Push(body, "/events"); break;
            case "redirect URI OpenIddict refuses": body["redirectUris"] = new JsonArray("https://site.example/callback?iss=someone"); break;
            // Seekers would see two identical boxes, or the sentence around the name turned backwards.
            case "displayName with a zero-width space": body["displayName"] = "Démo\u200b Emploi " + Guid.NewGuid().ToString("N")[..6]; break;
            case "displayName with a bidirectional override": body["displayName"] = "Emploi \u202e" + Guid.NewGuid().ToString("N")[..6]; break;
            case "legalName with a soft hyphen": body["legalName"] = "Em\u00adploi SAS"; break;
            // Shown to every seeker and kept in the append-only trail.
            case "website with credentials": body["website"] = "https://user:pass@site.example/"; break;
            case "privacy policy URL with credentials": body["privacyPolicyUrl"] = "https://user:pass@site.example/privacy"; break;
            case "redirect URI with credentials": body["redirectUris"] = new JsonArray("https://user:pass@site.example/callback"); break;
            default: throw new ArgumentOutOfRangeException(nameof(fault), fault, "no such case");
        }

        var before = await Sites.CountRowsAsync(fixture);
        using var response = await admin.PostAsJsonAsync(Sites.AdminPath, body);
        var problem = await response.AssertProblemAsync(HttpStatusCode.BadRequest);

        // Field checks name the field in "errors"; JSON binding faults name it in "detail".
        var named = (problem.TryGetProperty("errors", out var errors) && errors.TryGetProperty(field, out _))
            || (problem.TryGetProperty("detail", out var detail) && detail.GetString()!.Contains(field, StringComparison.OrdinalIgnoreCase));
        Assert.True(named, $"the problem does not name {field}: {problem}");
        Assert.Equal(before, await Sites.CountRowsAsync(fixture));
    }

    [Fact]
    public async Task EveryFaultOfARegistrationIsReportedAtOnce()
    {
        var @operator = await fixture.Actors.NewOperatorAsync();
        using var admin = fixture.Client().WithToken(@operator.Tokens.AccessToken);
        var body = Sites.RegistrationBody();
        body["displayName"] = "";
        body["contactEmail"] = "nobody";
        Push(body, "https://10.0.0.1/x");

        var problem = await (await admin.PostAsJsonAsync(Sites.AdminPath, body)).AssertProblemAsync(HttpStatusCode.BadRequest);
        var errors = problem.GetProperty("errors");
        Assert.True(errors.TryGetProperty("displayName", out _));
        Assert.True(errors.TryGetProperty("contactEmail", out _));
        Assert.True(errors.TryGetProperty("pushEndpoint", out _));
    }

    [Fact]
    public async Task APushSiteOnALoopbackAddressInTheTestAllowListIsAccepted()
    {
        var @operator = await fixture.Actors.NewOperatorAsync();
        using var admin = fixture.Client().WithToken(@operator.Tokens.AccessToken);
        var body = Sites.RegistrationBody();
        Push(body, "http://127.0.0.1:9/events");

        var site = await Sites.RegisterAsync(admin, body);

        Assert.Equal("push", site.Recipient.GetProperty("deliveryMode").GetString());
        Assert.Equal("http://127.0.0.1:9/events", site.Recipient.GetProperty("pushEndpoint").GetString());
    }

    [Fact]
    public async Task ABodyOverOneMebibyteIs413ProblemAndCreatesNothing()
    {
        var @operator = await fixture.Actors.NewOperatorAsync();
        using var admin = fixture.Client().WithToken(@operator.Tokens.AccessToken);
        var body = Sites.RegistrationBody();
        body["legalName"] = new string('x', 1024 * 1024 + 1);

        var before = await Sites.CountRowsAsync(fixture);
        using var response = await admin.PostAsJsonAsync(Sites.AdminPath, body);
        await response.AssertProblemAsync(HttpStatusCode.RequestEntityTooLarge);
        Assert.Equal(before, await Sites.CountRowsAsync(fixture));
    }

    [Fact]
    public async Task ABodyThatIsNotJsonIs415ProblemAndCreatesNothing()
    {
        var @operator = await fixture.Actors.NewOperatorAsync();
        using var admin = fixture.Client().WithToken(@operator.Tokens.AccessToken);

        var before = await Sites.CountRowsAsync(fixture);
        using var content = new StringContent(Sites.RegistrationBody().ToJsonString(), Encoding.UTF8, "text/plain");
        using var response = await admin.PostAsync(Sites.AdminPath, content);
        await response.AssertProblemAsync(HttpStatusCode.UnsupportedMediaType);
        Assert.Equal(before, await Sites.CountRowsAsync(fixture));
    }

    [Fact]
    public async Task MalformedJsonIs400ProblemAndCreatesNothing()
    {
        var @operator = await fixture.Actors.NewOperatorAsync();
        using var admin = fixture.Client().WithToken(@operator.Tokens.AccessToken);

        var before = await Sites.CountRowsAsync(fixture);
        using var content = new StringContent("{\"displayName\": \"Unclosed", Encoding.UTF8, "application/json");
        await (await admin.PostAsync(Sites.AdminPath, content)).AssertProblemAsync(HttpStatusCode.BadRequest);
        Assert.Equal(before, await Sites.CountRowsAsync(fixture));
    }

    private static void OneKey(JsonObject body, JsonObject key)
    {
        body["clientAuthentication"] = "private_key_jwt";
        body["jwks"] = new JsonObject { ["keys"] = new JsonArray(key) };
    }

    private static void Push(JsonObject body, string endpoint)
    {
        body["deliveryMode"] = "push";
        body["pushEndpoint"] = endpoint;
    }
}
