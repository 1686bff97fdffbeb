using ExchangeGateway.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using OpenIddict.Abstractions;
using OpenIddict.Server;
using static OpenIddict.Abstractions.OpenIddictConstants;
using static OpenIddict.Server.OpenIddictServerEvents;

namespace ExchangeGateway.Auth;

/// <summary>A private_key_jwt assertion already spent, kept until it would have expired anyway.</summary>
public sealed class SpentClientAssertion
{
    public required string ClientId { get; init; }
    public required string Jti { get; init; }
    public DateTimeOffset ExpiresAt { get; init; }
}

public sealed class SpentClientAssertionConfiguration : IEntityTypeConfiguration<SpentClientAssertion>
{
    public void Configure(EntityTypeBuilder<SpentClientAssertion> builder)
    {
        builder.ToTable("spent_client_assertions");
        builder.HasKey(a => new { a.ClientId, a.Jti });
        builder.Property(a => a.ClientId).HasMaxLength(100);
        builder.Property(a => a.Jti).HasMaxLength(ClientAssertionReplay.MaxJtiLength);
        builder.HasIndex(a => a.ExpiresAt);
    }
}

/// <summary>
/// A private_key_jwt assertion authenticates once (OpenID Connect Core §9, RFC 7523 §3): OpenIddict checks its signature,
/// issuer, audience and expiry, but nothing stops the same assertion from being sent again until it expires, so one
/// captured from a proxy's log or a support ticket was as good as the site's key. Each assertion must carry a jti, live at
/// most <see cref="MaxLifetime"/>, and is recorded as spent, across nodes, by the database's primary key.
/// </summary>
public sealed class ClientAssertionReplay(GatewayDbContext db, TimeProvider time) : IOpenIddictServerHandler<ProcessAuthenticationContext>
{
    /// <summary>How far ahead an assertion may expire: the longer it lives, the longer a copy is worth stealing.</summary>
    public static readonly TimeSpan MaxLifetime = TimeSpan.FromMinutes(5);

    public const int MaxJtiLength = 200;

    public static OpenIddictServerHandlerDescriptor Descriptor { get; } =
        OpenIddictServerHandlerDescriptor.CreateBuilder<ProcessAuthenticationContext>()
            .UseScopedHandler<ClientAssertionReplay>()
            // Once the client is authenticated: only a genuine assertion is recorded, so nobody can spend a site's jti for it.
            .SetOrder(OpenIddictServerHandlers.ValidateClientSecret.Descriptor.Order + 1_000)
            .SetType(OpenIddictServerHandlerType.Custom)
            .Build();

    public async ValueTask HandleAsync(ProcessAuthenticationContext context)
    {
        // OpenIddict has checked that the assertion's subject is the client (RFC 7523 §3: sub = client_id).
        if (context.ClientAssertionPrincipal is not { } assertion
            || (context.Request.ClientId ?? assertion.GetClaim(Claims.Subject)) is not { Length: > 0 } clientId)
        {
            return;
        }

        var jti = assertion.GetClaim(Claims.JwtId);
        if (string.IsNullOrEmpty(jti) || jti.Length > MaxJtiLength)
        {
            context.Reject(Errors.InvalidClient, $"The client assertion must carry a jti of at most {MaxJtiLength} characters.");
            return;
        }

        var now = time.GetUtcNow();
        // A minute's grace for a site whose clock runs ahead and that signs with the whole documented lifetime.
        if (assertion.GetExpirationDate() is not { } expires || expires > now + MaxLifetime + TimeSpan.FromMinutes(1))
        {
            context.Reject(Errors.InvalidClient, $"The client assertion must expire within {MaxLifetime.TotalMinutes:0} minutes.");
            return;
        }

        // By this clock, without the validator's leeway: a spent assertion's row is pruned once it expires, so an expired
        // one must be refused here whatever leeway the token validation allowed it.
        if (expires <= now)
        {
            context.Reject(Errors.InvalidClient, "The client assertion has expired.");
            return;
        }

        var recorded = await db.Database.ExecuteSqlAsync(
            $"INSERT INTO spent_client_assertions (client_id, jti, expires_at) VALUES ({clientId}, {jti}, {expires}) ON CONFLICT DO NOTHING",
            context.CancellationToken);
        if (recorded == 0)
        {
            context.Reject(Errors.InvalidClient, "This client assertion was already used: sign a new one for each request.");
        }
    }

    /// <summary>Spent assertions past their expiry: OpenIddict refuses them on that ground alone.</summary>
    public static Task<int> PruneAsync(GatewayDbContext db, DateTimeOffset now, CancellationToken cancellationToken) =>
        db.Set<SpentClientAssertion>().Where(a => a.ExpiresAt < now).ExecuteDeleteAsync(cancellationToken);
}
