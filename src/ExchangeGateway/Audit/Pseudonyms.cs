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

    /// <summary>
    /// A 16-bit keyed bucket of free text someone typed (a client id that is an e-mail address, an auditor's filter): the
    /// same text comes back in the same bucket, so repeated guesses still show, but the append-only log cannot link it to
    /// a person after their erasure. A full digest of a public value like an address could be recomputed from the address
    /// by anyone holding the key, for as long as the log lasts; a bucket is shared by one address in 65 536, some
    /// ninety of six million seekers.
    /// </summary>
    public string BucketOf(string purpose, string text) =>
        "b_" + Convert.ToHexStringLower(HMACSHA256.HashData(_key, Encoding.UTF8.GetBytes(purpose + ":" + text))[..2]);
}
