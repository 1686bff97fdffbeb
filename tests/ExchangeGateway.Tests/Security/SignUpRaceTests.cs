using System.Net;
using ExchangeGateway.Tests.Infrastructure;
using ExchangeGateway.Tests.Pages;

namespace ExchangeGateway.Tests.Security;

[Collection(GatewayCollection.Name)]
public sealed class SignUpRaceTests(GatewayFixture fixture)
{
    /// <summary>
    /// A double click reaching two nodes: both sign up the same new address at the same moment. One account is made, each
    /// request mails its link, and the address never reaches PostgreSQL's own log, where no erasure can reach it (a unique
    /// violation's detail names the key it refused). scripts/test names that log in EXCHANGEGATEWAY_TEST_PG_LOG.
    /// </summary>
    [Fact]
    public async Task TwoNodesSigningUpOneAddressAtOnceMakeOneAccountAndKeepTheAddressOutOfTheServerLog()
    {
        await using var node = new GatewayFactory(fixture.Database, fixture.Time, issuer: fixture.Factory.Issuer);
        var tags = Enumerable.Range(0, 24).Select(_ => Guid.NewGuid().ToString("N")).ToList();
        var addresses = tags.Select(t => $"race-{t}@example.test").ToList();

        // Each node's mail queue signs its addresses up one after the other, in the order given: the two queues meet on
        // every address at about the same moment.
        using var here = new PageSession(fixture.Factory);
        using var there = new PageSession(node);
        foreach (var address in addresses)
        {
            var answers = await Task.WhenAll(
                here.SubmitAsync("/Account/Register", new() { ["Email"] = address }),
                there.SubmitAsync("/Account/Register", new() { ["Email"] = address }));
            Assert.All(answers, a => Assert.Equal(HttpStatusCode.OK, a.StatusCode));
            foreach (var answer in answers)
            {
                answer.Dispose();
            }
        }

        foreach (var address in addresses)
        {
            Assert.NotNull(Mailbox.LinkTo(Assert.Single(await Mailbox.ForAsync(fixture.Factory, address)), "ConfirmEmail"));
            Assert.NotNull(Mailbox.LinkTo(Assert.Single(await Mailbox.ForAsync(node, address)), "ConfirmEmail"));
        }

        var list = string.Join(",", addresses.Select(a => $"'{a.ToUpperInvariant()}'"));
        Assert.Equal(addresses.Count, await fixture.Database.ScalarAsync<long>(
            $"SELECT count(*) FROM \"AspNetUsers\" WHERE normalized_email IN ({list})"));

        // The server's log is the only place the race shows: without it this test would check nothing that matters.
        var serverLog = Environment.GetEnvironmentVariable("EXCHANGEGATEWAY_TEST_PG_LOG");
        Assert.True(serverLog is not null, "EXCHANGEGATEWAY_TEST_PG_LOG must name the test PostgreSQL's log file (scripts/test sets it)");
        await using var stream = new FileStream(serverLog, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        var logged = await new StreamReader(stream).ReadToEndAsync();
        Assert.DoesNotContain(tags, t => logged.Contains(t, StringComparison.OrdinalIgnoreCase));
    }
}
