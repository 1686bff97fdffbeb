using OpenIddict.Abstractions;
using OpenIddict.Server;
using static OpenIddict.Abstractions.OpenIddictConstants;
using static OpenIddict.Server.OpenIddictServerEvents;

namespace ExchangeGateway.Auth;

/// <summary>
/// Access tokens are self-contained JWTs that the API validates by signature (and remembers once validated), so marking
/// one revoked in the token store would change what introspection says and nothing the API does: the token would keep
/// working until it expires. The revocation endpoint says so (RFC 7009 §2.2.1, <c>unsupported_token_type</c>) rather than
/// answer 200 for a revocation that does not happen. Refresh tokens are revoked; access tokens live ten minutes.
/// </summary>
public sealed class AccessTokenRevocation : IOpenIddictServerHandler<ValidateRevocationRequestContext>
{
    public static OpenIddictServerHandlerDescriptor Descriptor { get; } =
        OpenIddictServerHandlerDescriptor.CreateBuilder<ValidateRevocationRequestContext>()
            .UseSingletonHandler<AccessTokenRevocation>()
            .SetOrder(OpenIddictServerHandlers.Revocation.ValidateTokenType.Descriptor.Order + 500)
            .SetType(OpenIddictServerHandlerType.Custom)
            .Build();

    public ValueTask HandleAsync(ValidateRevocationRequestContext context)
    {
        if (context.GenericTokenPrincipal?.GetTokenType() is TokenTypeIdentifiers.AccessToken)
        {
            context.Reject(Errors.UnsupportedTokenType,
                "Access tokens are not revoked: they expire within minutes. Revoke the refresh token that obtained it.");
        }

        return ValueTask.CompletedTask;
    }
}
