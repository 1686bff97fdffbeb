using System.Collections.Immutable;
using Microsoft.IdentityModel.Tokens;
using OpenIddict.Server;
using static OpenIddict.Server.OpenIddictServerEvents;

namespace ExchangeGateway.Auth;

/// <summary>
/// Discovery names the algorithms a private_key_jwt assertion may be signed with (RFC 8414 §2 requires the member when
/// private_key_jwt is listed): an OAuth library configured from discovery otherwise refuses the metadata or guesses. They
/// are what the keys a site may register can make: RSA of 2048 bits or more, EC on P-256, P-384 or P-521.
/// </summary>
public sealed class AssertionAlgorithms : IOpenIddictServerHandler<HandleConfigurationRequestContext>
{
    public static readonly IReadOnlyList<string> Supported =
    [
        SecurityAlgorithms.RsaSha256, SecurityAlgorithms.RsaSha384, SecurityAlgorithms.RsaSha512,
        SecurityAlgorithms.RsaSsaPssSha256, SecurityAlgorithms.RsaSsaPssSha384, SecurityAlgorithms.RsaSsaPssSha512,
        SecurityAlgorithms.EcdsaSha256, SecurityAlgorithms.EcdsaSha384, SecurityAlgorithms.EcdsaSha512,
    ];

    public static OpenIddictServerHandlerDescriptor Descriptor { get; } =
        OpenIddictServerHandlerDescriptor.CreateBuilder<HandleConfigurationRequestContext>()
            .UseSingletonHandler<AssertionAlgorithms>()
            .SetOrder(OpenIddictServerHandlers.Discovery.AttachClientAuthenticationMethods.Descriptor.Order + 1_000)
            .SetType(OpenIddictServerHandlerType.Custom)
            .Build();

    public ValueTask HandleAsync(HandleConfigurationRequestContext context)
    {
        context.Metadata["token_endpoint_auth_signing_alg_values_supported"] = Supported.ToImmutableArray<string?>();
        return ValueTask.CompletedTask;
    }
}
