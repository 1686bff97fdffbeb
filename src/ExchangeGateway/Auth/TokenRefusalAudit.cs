using System.Threading.RateLimiting;
using ExchangeGateway.Audit;
using ExchangeGateway.Hosting;
using Microsoft.AspNetCore;
using Microsoft.Extensions.Options;
using OpenIddict.Abstractions;
using OpenIddict.Server;
using static OpenIddict.Server.OpenIddictServerEvents;

namespace ExchangeGateway.Auth;

/// <summary>
/// Records refused token requests (wrong secret, bad grant, suspended site, unknown client) in the audit log.
/// The claimed client id is recorded as claimed: it may be an impostor's guess, which is exactly what an auditor wants to see.
/// A refusal naming a registered client is always recorded. One naming nobody costs its sender nothing, so those are
/// recorded up to <see cref="AuditOptions.UnknownClientRefusalsPerMinute"/> per address and minute and only counted beyond:
/// otherwise anyone could grow the append-only log without end and queue every disclosure behind the chain lock.
/// </summary>
public sealed class TokenRefusalAudit(
    AuditTrail audit, IOpenIddictApplicationManager applications, TokenRefusalAudit.Window window, GatewayMetrics metrics)
    : IOpenIddictServerHandler<ApplyTokenResponseContext>
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

        var clientId = context.Request?.ClientId is { Length: <= 100 } claimed ? claimed : null;
        // Looked up whatever the error: some (an unsupported grant type, a malformed request) come before OpenIddict looks
        // for the client, so the error alone does not say the client exists.
        var known = clientId is not null && await applications.FindByClientIdAsync(clientId, context.CancellationToken) is not null;
        var address = context.Transaction.GetHttpRequest()?.HttpContext.Connection.RemoteIpAddress?.ToString() ?? "";
        if (!known && !window.Admit(address))
        {
            metrics.TokensRefused.Add(1, new KeyValuePair<string, object?>("audited", false));
            return;
        }

        metrics.TokensRefused.Add(1, new KeyValuePair<string, object?>("audited", true));
        await audit.AppendAsync(
            new AuditEntry(
                context.Request?.ClientId is null ? ActorKinds.Anonymous : ActorKinds.Recipient,
                clientId,
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

    /// <summary>Per node and address, the unknown-client refusals still to be recorded this minute.</summary>
    public sealed class Window(IOptions<AuditOptions> options) : IDisposable
    {
        private readonly PartitionedRateLimiter<string> _limiter = PartitionedRateLimiter.Create<string, string>(address =>
            RateLimitPartition.GetFixedWindowLimiter(address, _ => new FixedWindowRateLimiterOptions
            {
                PermitLimit = Math.Max(1, options.Value.UnknownClientRefusalsPerMinute),
                Window = TimeSpan.FromMinutes(1),
                QueueLimit = 0,
            }));

        public bool Admit(string address)
        {
            if (options.Value.UnknownClientRefusalsPerMinute == 0)
            {
                return false;
            }

            using var lease = _limiter.AttemptAcquire(address);
            return lease.IsAcquired;
        }

        public void Dispose() => _limiter.Dispose();
    }
}
