using System.Net;
using ExchangeGateway.Recipients;
using Microsoft.Extensions.Options;

namespace ExchangeGateway.Tests.Recipients;

/// <summary>The address rule behind both the registration check and the socket-level check of every delivery.</summary>
public sealed class PushEndpointPolicyTests
{
    private static readonly PushEndpointPolicy Policy = new(Options.Create(new RecipientOptions()));

    [Theory]
    [InlineData("10.0.0.5")]
    [InlineData("169.254.169.254")]
    [InlineData("::1")]
    [InlineData("::ffff:10.0.0.1")]
    [InlineData("64:ff9b::a00:5")]          // NAT64 of 10.0.0.5
    [InlineData("64:ff9b::7f00:1")]         // NAT64 of 127.0.0.1
    [InlineData("64:ff9b:1::a00:5")]        // local-use NAT64
    [InlineData("2002:a9fe:a9fe::1")]       // 6to4 of 169.254.169.254
    [InlineData("::c0a8:101")]              // IPv4-compatible 192.168.1.1
    [InlineData("::ffff:0:7f00:1")]         // IPv4-translated (SIIT) 127.0.0.1
    [InlineData("::ffff:0:a9fe:a9fe")]      // IPv4-translated 169.254.169.254
    [InlineData("2001:0:4136:e378:8000:63bf:3fff:fdd2")] // Teredo
    [InlineData("fd00::1")]
    [InlineData("fec0::1")]                 // site-local (deprecated, still routed in some networks)
    public void AnAddressThatLeadsIntoAPrivateNetworkIsRefused(string address) =>
        Assert.False(Policy.IsAllowed(IPAddress.Parse(address)));

    [Theory]
    [InlineData("93.184.215.14")]
    [InlineData("2606:4700::6810:84e5")]
    [InlineData("64:ff9b::5db8:d70e")]      // NAT64 of 93.184.215.14: how an IPv6-only node reaches an IPv4 site
    [InlineData("2002:5db8:d70e::1")]
    [InlineData("::ffff:0:5db8:d70e")]      // IPv4-translated 93.184.215.14
    public void APublicAddressIsAllowed(string address) =>
        Assert.True(Policy.IsAllowed(IPAddress.Parse(address)));

    [Fact]
    public void TheAllowListMatchesAnIPv6LoopbackAsItselfAndANetworksOwnNat64PrefixIsUnwrapped()
    {
        var policy = new PushEndpointPolicy(Options.Create(new RecipientOptions
        {
            AllowedPrivateNetworks = ["::1/128", "127.0.0.0/8"],
            Nat64Prefixes = ["2001:db8:64::/96"],
        }));
        Assert.True(policy.IsAllowed(IPAddress.Parse("::1")));
        Assert.True(policy.IsAllowed(IPAddress.Parse("127.0.0.1")));
        Assert.True(policy.IsAllowed(IPAddress.Parse("64:ff9b::7f00:1")));
        Assert.False(policy.IsAllowed(IPAddress.Parse("2001:db8:64::a00:5")));   // the network's NAT64 of 10.0.0.5
        Assert.True(policy.IsAllowed(IPAddress.Parse("2001:db8:64::5db8:d70e")));
        Assert.False(Policy.IsAllowed(IPAddress.Parse("::")));
    }
}
