using Microsoft.IdentityModel.Tokens;
using OpenIddict.Server;
using static OpenIddict.Server.OpenIddictServerEvents;

namespace ExchangeGateway.Auth;

/// <summary>
/// Publishes the verification keys (<see cref="AuthOptions.VerificationKeyFiles"/>) in the JSON Web Key Set next to the
/// signing keys OpenIddict lists: during a replacement a site then finds the next key before any node signs with it, and
/// the previous one while events and tokens it signed are still about.
/// </summary>
public sealed class VerificationKeysPublisher(SigningKeyRing ring) : IOpenIddictServerHandler<HandleJsonWebKeySetRequestContext>
{
    public static OpenIddictServerHandlerDescriptor Descriptor { get; } =
        OpenIddictServerHandlerDescriptor.CreateBuilder<HandleJsonWebKeySetRequestContext>()
            .UseSingletonHandler<VerificationKeysPublisher>()
            .SetOrder(OpenIddictServerHandlers.Discovery.AttachSigningKeys.Descriptor.Order + 1_000)
            .SetType(OpenIddictServerHandlerType.Custom)
            .Build();

    public ValueTask HandleAsync(HandleJsonWebKeySetRequestContext context)
    {
        foreach (var key in ring.ValidationKeys)
        {
            if (context.Keys.Any(k => k.Kid == key.KeyId))
            {
                continue;
            }

            var jwk = JsonWebKeyConverter.ConvertFromSecurityKey(key);
            jwk.Use = JsonWebKeyUseNames.Sig;
            jwk.Alg = key is ECDsaSecurityKey ? SecurityAlgorithms.EcdsaSha256 : SecurityAlgorithms.RsaSha256;
            context.Keys.Add(jwk);
        }

        return ValueTask.CompletedTask;
    }
}
