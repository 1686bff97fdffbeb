using System.Net;
using System.Net.Sockets;

namespace ExchangeGateway.Hosting;

/// <summary>
/// Where a request comes from, as the rate limits and the sign-in throttle count it: an IPv4 address, or the /64 of an
/// IPv6 one. A single IPv6 host is given a whole /64, so counting full addresses would let it take a new one per request.
/// </summary>
public static class ClientNetwork
{
    public static string Of(IPAddress? address)
    {
        if (address is null)
        {
            return "unknown";
        }

        if (address.IsIPv4MappedToIPv6)
        {
            address = address.MapToIPv4();
        }

        return address.AddressFamily == AddressFamily.InterNetworkV6
            ? new IPNetwork(new IPAddress(address.GetAddressBytes()[..8].Concat(new byte[8]).ToArray()), 64).ToString()
            : address.ToString();
    }
}
