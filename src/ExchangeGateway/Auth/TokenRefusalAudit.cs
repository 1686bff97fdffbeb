using ExchangeGateway.Audit;
using OpenIddict.Server;
using static OpenIddict.Server.OpenIddictServerEvents;

namespace ExchangeGateway.Auth;

/// <summary>
/// Records every refused token request (wrong secret, unknown client, bad grant, suspended site) in the audit log.
/// The claimed client id is recorded as claimed: it may be an impostor's guess, which is exactly what an auditor wants to see.
/// </summary>
public sealed class TokenRefusalAudit(AuditTrail audit) : IOpenIddictServerHandler<ApplyTokenResponseContext>
{
    public static OpenIddictServerHandlerDescriptor Descriptor { get; } =
        OpenIddictServerHandlerDescriptor.CreateBuilder<ApplyTokenResponseContext>()
            .UseScopedHandler<TokenRefusalAudit>()
            .SetOrder(int.MinValue + 100_000)
            .SetType(OpenIddictServerHandlerType.Custom)
            .Build();

    public async ValueTask HandleAsync(ApplyTokenResponseContext context)
    {
        if (string.IsNullOrEmpty(context.Response.Error))
        {
            return;
        }

        var clientId = context.Request?.ClientId;
        await audit.AppendAsync(
            new AuditEntry(
                clientId is null ? ActorKinds.Anonymous : ActorKinds.Recipient,
                clientId is { Length: <= 100 } ? clientId : null,
                AuditActions.TokenRefused,
                Outcomes.Denied,
                Recipient: null,
                Details: new Dictionary<string, object?>
                {
                    ["error"] = context.Response.Error,
                    ["grantType"] = context.Request?.GrantType is { Length: <= 100 } grant ? grant : null,
                }),
            context.CancellationToken);
    }
}
