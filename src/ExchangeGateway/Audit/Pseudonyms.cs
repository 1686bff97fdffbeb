using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.Tokens;

namespace ExchangeGateway.Audit;

/// <summary>Keyed pseudonyms for seekers: stable, so an auditor can follow one person, but meaningless without the key.</summary>
public sealed class Pseudonyms
{
    private readonly byte[] _key;

    public Pseudonyms(IOptions<AuditOptions> options) => _key = options.Value.PseudonymKeyBytes;

    public string Of(string seekerId) =>
        "p_" + Base64UrlEncoder.Encode(HMACSHA256.HashData(_key, Encoding.UTF8.GetBytes(seekerId))[..18]);
}
