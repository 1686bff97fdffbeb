using System.Security.Claims;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.Extensions.Caching.Memory;
using Microsoft.IdentityModel.JsonWebTokens;

namespace ExchangeGateway.Auth;

/// <summary>
/// Remembers access tokens this node has already validated, until they expire, so a site that calls with the same token
/// many times (as every site does for the token's lifetime) pays for the RS256 check and the claims parsing once rather
/// than on every request. Only a token byte-for-byte identical to one that passed every JwtBearer check is recognised;
/// expiry is judged by the gateway's clock on each use. Nothing else changes: a token never carried consent or
/// suspension, and those are still read from the database on every request. Bounded in size; off with
/// <c>Auth:CacheValidatedTokens=false</c>.
/// </summary>
public sealed class ValidatedTokens(TimeProvider time) : IDisposable
{
    private const int Capacity = 10_000;
    private readonly MemoryCache _cache = new(new MemoryCacheOptions { SizeLimit = Capacity });

    public void Dispose() => _cache.Dispose();

    private sealed record Entry(ClaimsPrincipal Principal, DateTimeOffset Expires);

    /// <summary>OnMessageReceived: a remembered, unexpired token authenticates without being parsed again.</summary>
    public Task TryRecallAsync(MessageReceivedContext context)
    {
        var header = context.Request.Headers.Authorization.ToString();
        if (header.Length > 7 && header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)
            && _cache.TryGetValue(header[7..].Trim(), out Entry? entry) && entry is not null)
        {
            if (time.GetUtcNow() < entry.Expires)
            {
                // A copy per request: downstream code may add identities or claims to its own principal.
                context.Principal = entry.Principal.Clone();
                context.Success();
            }
        }

        return Task.CompletedTask;
    }

    /// <summary>
    /// The subject of a token this node validated and that has not expired, or null (never seen, forged, expired): what
    /// the rate limiter, which runs before authentication, may trust to pick a caller's bucket.
    /// </summary>
    public string? VerifiedSubject(string token) =>
        _cache.TryGetValue(token, out Entry? entry) && entry is not null && time.GetUtcNow() < entry.Expires
            ? entry.Principal.FindFirst("sub")?.Value
            : null;

    /// <summary>OnTokenValidated: the token passed signature, issuer, audience, type and lifetime checks.</summary>
    public Task RememberAsync(TokenValidatedContext context)
    {
        if (context.SecurityToken is JsonWebToken token && context.Principal is { } principal && token.ValidTo > DateTime.MinValue)
        {
            var expires = new DateTimeOffset(token.ValidTo, TimeSpan.Zero);
            _cache.Set(token.EncodedToken, new Entry(principal.Clone(), expires), new MemoryCacheEntryOptions
            {
                Size = 1,
                AbsoluteExpiration = expires,
            });
        }

        return Task.CompletedTask;
    }
}
