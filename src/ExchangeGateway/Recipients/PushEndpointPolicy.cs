using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Options;

namespace ExchangeGateway.Recipients;

public sealed class RecipientOptions : System.ComponentModel.DataAnnotations.IValidatableObject
{
    public const string Section = "Recipients";

    /// <summary>Push endpoints must use https (true by default; development and tests may allow http).</summary>
    public bool RequireHttps { get; set; } = true;

    /// <summary>
    /// CIDR ranges that push endpoints may resolve to although they are private, loopback or link-local
    /// (e.g. "127.0.0.0/8" for the demo and tests). Empty in production: the gateway must not be a pivot into its own network.
    /// </summary>
    public List<string> AllowedPrivateNetworks { get; set; } = [];

    /// <summary>
    /// The network's own NAT64 prefixes (each a /96, RFC 6052), besides the well-known 64:ff9b::/96: on an IPv6-only node
    /// behind DNS64, a site's name comes back inside them, and the IPv4 address they carry is the one judged.
    /// </summary>
    public List<string> Nat64Prefixes { get; set; } = [];

    public IEnumerable<System.ComponentModel.DataAnnotations.ValidationResult> Validate(System.ComponentModel.DataAnnotations.ValidationContext validationContext)
    {
        foreach (var network in AllowedPrivateNetworks.Where(n => !IPNetwork.TryParse(n, out _)))
        {
            yield return new($"Recipients:AllowedPrivateNetworks: '{network}' is not a CIDR range.", [nameof(AllowedPrivateNetworks)]);
        }

        foreach (var prefix in Nat64Prefixes.Where(p => !IPNetwork.TryParse(p, out var n) || n.BaseAddress.AddressFamily != AddressFamily.InterNetworkV6 || n.PrefixLength != 96))
        {
            yield return new($"Recipients:Nat64Prefixes: '{prefix}' is not an IPv6 /96 prefix.", [nameof(Nat64Prefixes)]);
        }
    }
}

public sealed class PushEndpointRefusedException(string message) : Exception(message);

/// <summary>
/// Guards against server-side request forgery: an endpoint is accepted only if every address its host resolves to is
/// public, or inside a configured allow-list. Checked at registration and again before every delivery, since DNS can change.
/// </summary>
public sealed class PushEndpointPolicy(IOptions<RecipientOptions> options)
{
    // Parsed once: every delivery's connection is judged against them (the options are validated at start).
    private readonly IPNetwork[] _allowed = [.. options.Value.AllowedPrivateNetworks.Select(IPNetwork.Parse)];
    private readonly IPNetwork[] _nat64 = [.. options.Value.Nat64Prefixes.Select(IPNetwork.Parse)];

    public async Task<string?> CheckAsync(Uri endpoint, CancellationToken cancellationToken)
    {
        if (CheckForm(endpoint) is { } fault)
        {
            return fault;
        }

        IPAddress[] addresses;
        try
        {
            addresses = IPAddress.TryParse(endpoint.IdnHost, out var literal)
                ? [literal]
                : await Dns.GetHostAddressesAsync(endpoint.IdnHost, cancellationToken);
        }
        catch (Exception e) when (e is SocketException or ArgumentException)
        {
            return "has a host name that does not resolve";
        }

        if (addresses.Length == 0)
        {
            return "has a host name that does not resolve";
        }

        return addresses.All(IsAllowed) ? null : "resolves to a private, loopback or link-local address";
    }

    /// <summary>
    /// What can be judged from the URL alone (scheme, https, credentials, lengths). Delivery asks again: an endpoint
    /// registered before <c>RequireHttps</c> was turned on must not go on receiving events over plain HTTP.
    /// </summary>
    public string? CheckForm(Uri endpoint)
    {
        if (!endpoint.IsAbsoluteUri || (endpoint.Scheme != Uri.UriSchemeHttps && endpoint.Scheme != Uri.UriSchemeHttp))
        {
            return "must be an absolute http(s) URL";
        }

        if (endpoint.Scheme != Uri.UriSchemeHttps && options.Value.RequireHttps)
        {
            return "must use https";
        }

        if (!string.IsNullOrEmpty(endpoint.UserInfo) || !string.IsNullOrEmpty(endpoint.Fragment))
        {
            return "must not carry credentials or a fragment";
        }

        if (Hosting.RequestErrors.IsTooLong(endpoint))
        {
            return $"is longer than {Hosting.RequestErrors.MaxUrlLength} characters";
        }

        if (endpoint.IdnHost.Length > 253)
        {
            return "has a host name longer than 253 characters";
        }

        return null;
    }

    public bool IsAllowed(IPAddress address)
    {
        var embedded = EmbeddedIPv4(address, _nat64);
        var judged = embedded ?? address;
        // The allow-list is matched against the address as given and the IPv4 address it carries ("::1/128" and
        // "127.0.0.0/8" both work).
        return !IsRestricted(judged) || _allowed.Any(network => network.Contains(address) || (embedded is not null && network.Contains(embedded)));
    }

    /// <summary>
    /// The IPv4 address an IPv6 address carries to the IPv4 network: mapped (::ffff:a.b.c.d), translated (::ffff:0:a.b.c.d,
    /// which a SIIT translator forwards), NAT64 (64:ff9b::a.b.c.d, which an IPv6-only host's NAT64 gateway forwards to
    /// a.b.c.d), compatible (::a.b.c.d) and 6to4 (2002:AABB:CCDD::).
    /// Checked as itself, "64:ff9b::a00:5" would pass as a public IPv6 address and reach 10.0.0.5.
    /// </summary>
    private static IPAddress? EmbeddedIPv4(IPAddress address, IPNetwork[] nat64Prefixes)
    {
        if (address.AddressFamily != AddressFamily.InterNetworkV6)
        {
            return null;
        }

        if (address.IsIPv4MappedToIPv6)
        {
            return address.MapToIPv4();
        }

        var bytes = address.GetAddressBytes();
        // "::" and "::1" are IPv6's own unspecified and loopback addresses, not IPv4-compatible ones (RFC 4291).
        if (Nat64.Contains(address) || Translated.Contains(address) || (Compatible.Contains(address) && !Unspecified.Contains(address))
            || nat64Prefixes.Any(prefix => prefix.Contains(address)))
        {
            return new IPAddress(bytes.AsSpan(12, 4));
        }

        return SixToFour.Contains(address) ? new IPAddress(bytes.AsSpan(2, 4)) : null;
    }

    private static readonly IPNetwork Nat64 = IPNetwork.Parse("64:ff9b::/96");
    private static readonly IPNetwork Translated = IPNetwork.Parse("::ffff:0:0:0/96");
    private static readonly IPNetwork Compatible = IPNetwork.Parse("::/96");
    private static readonly IPNetwork Unspecified = IPNetwork.Parse("::/127");
    private static readonly IPNetwork SixToFour = IPNetwork.Parse("2002::/16");

    /// <summary>
    /// The socket-level check for outbound deliveries: the address actually connected to is the one checked, so a DNS
    /// answer that changes between the check and the connection (rebinding) cannot reach an internal host.
    /// </summary>
    public async ValueTask<Stream> ConnectAsync(SocketsHttpConnectionContext context, CancellationToken cancellationToken)
    {
        var host = context.DnsEndPoint.Host;
        var addresses = IPAddress.TryParse(host, out var literal) ? [literal] : await Dns.GetHostAddressesAsync(host, cancellationToken);
        var allowed = addresses.Where(IsAllowed).ToList();
        if (allowed.Count == 0 || allowed.Count != addresses.Length)
        {
            throw new PushEndpointRefusedException($"refused: {host} resolves to a private, loopback or link-local address");
        }

        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(allowed.ToArray(), context.DnsEndPoint.Port, cancellationToken);
            return new NetworkStream(socket, ownsSocket: true);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    private static readonly IPNetwork[] Restricted =
    [
        IPNetwork.Parse("0.0.0.0/8"), IPNetwork.Parse("10.0.0.0/8"), IPNetwork.Parse("100.64.0.0/10"), IPNetwork.Parse("127.0.0.0/8"),
        IPNetwork.Parse("169.254.0.0/16"), IPNetwork.Parse("172.16.0.0/12"), IPNetwork.Parse("192.0.0.0/24"), IPNetwork.Parse("192.168.0.0/16"),
        IPNetwork.Parse("198.18.0.0/15"), IPNetwork.Parse("224.0.0.0/4"), IPNetwork.Parse("240.0.0.0/4"),
        IPNetwork.Parse("::/128"), IPNetwork.Parse("::1/128"), IPNetwork.Parse("fc00::/7"), IPNetwork.Parse("fe80::/10"),
        // Site-local (deprecated by RFC 3879, still routed inside some networks).
        IPNetwork.Parse("fec0::/10"), IPNetwork.Parse("ff00::/8"),
        // Local-use NAT64 (its IPv4 part sits where the operator chose) and Teredo (obfuscated): nothing to unwrap, so refused.
        IPNetwork.Parse("64:ff9b:1::/48"), IPNetwork.Parse("2001::/32"),
    ];

    private static bool IsRestricted(IPAddress address) => Restricted.Any(network => network.Contains(address));
}
