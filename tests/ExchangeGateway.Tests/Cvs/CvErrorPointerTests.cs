using System.Net;
using System.Text;
using ExchangeGateway.Tests.Infrastructure;

namespace ExchangeGateway.Tests.Cvs;

/// <summary>
/// A refused CV's 422 keys every fault by a JSON pointer (RFC 6901), as its detail says: the whole document's faults
/// under the empty pointer (they were under "$", which no pointer library reads), and a member whose name holds "/",
/// "~" or "." escaped as the RFC says (read back from the path text, such names pointed somewhere else).
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class CvErrorPointerTests(GatewayFixture fixture)
{
    [Theory]
    [InlineData("[]", "")]
    [InlineData("{\"basics\":{\"name\":\"a\\u0007b\"}}", "/basics/name")]
    [InlineData("{\"x-extra\":{\"a/b.c~d\":\"bell\\u0007\"}}", "/x-extra/a~1b.c~0d")]
    [InlineData("{\"x-list\":[\"fine\",\"bell\\u0007\"]}", "/x-list/1")]
    [InlineData("{\"basics\":{\"email\":\"not an address\"}}", "/basics/email")]
    public async Task EachFaultIsKeyedByItsJsonPointer(string body, string expected)
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        using var client = fixture.Client().WithToken(seeker.Tokens.AccessToken);
        using var refused = await client.PutAsync("/api/v1/me/cv", new StringContent(body, Encoding.UTF8, "application/json"));
        var problem = await refused.AssertProblemAsync(HttpStatusCode.UnprocessableEntity);
        var keys = problem.GetProperty("errors").EnumerateObject().Select(e => e.Name).ToList();
        Assert.Equal([expected], keys);
    }
}
