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
/// The claimed client id is recorded as claimed when it is shaped like one (an impostor's guess is exactly what an auditor
/// wants to see), as a keyed digest when it is free text.
/// A refusal naming a registered client is always recorded. One naming nobody costs its sender nothing, so those are
/// recorded up to <see cref="AuditOptions.UnknownClientRefusalsPerMinute"/> per address and minute and only counted beyond:
/// otherwise anyone could grow the append-only log without end and queue every disclosure behind the chain lock.
/// </summary>
public sealed class TokenRefusalAudit(
    AuditTrail audit, IOpenIddictApplicationManager applications, TokenRefusalAudit.Window window, GatewayMetrics metrics,
    Data.GatewayDbContext db)
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

        var claimed = context.Request?.ClientId;
        // Looked up whatever the error: some (an unsupported grant type, a malformed request) come before OpenIddict looks
        // for the client, so the error alone does not say the client exists.
        var known = claimed is { Length: <= 100 } && await applications.FindByClientIdAsync(claimed, context.CancellationToken) is not null;
        // A registered id, or one shaped like the ids the gateway gives out, is recorded as claimed. Anything else is text
        // the sender chose (an e-mail address, a name) that the append-only log would keep forever: a keyed bucket of it
        // still shows the same guess coming back.
        var clientId = claimed is null ? null
            : known || Recipients.RecipientClients.IsWellFormedClientId(claimed) ? claimed
            : audit.Pseudonyms.BucketOf("claimed-client-id", claimed);
        // Counted per network, as the rate limits count: an IPv6 host holds a whole /64.
        var address = ClientNetwork.Of(context.Transaction.GetHttpRequest()?.HttpContext.Connection.RemoteIpAddress);
        if (!known && !window.Admit(address))
        {
            metrics.TokensRefused.Add(1, new KeyValuePair<string, object?>("audited", false));
            return;
        }

        metrics.TokensRefused.Add(1, new KeyValuePair<string, object?>("audited", true));
        // A site's refusals show in its record; another registered client (an auditors' tool, the Swagger UI) is no recipient.
        var site = known && await Microsoft.EntityFrameworkCore.EntityFrameworkQueryableExtensions.AnyAsync(
            db.Recipients, r => r.ClientId == claimed, context.CancellationToken);
        await audit.AppendAsync(
            // Anonymous whatever id it names: the request did not authenticate, and anyone can name a site (client ids are
            // in every authorize URL). A registered site is the refusal's recipient, so its record shows who tried it.
            new AuditEntry(
                ActorKinds.Anonymous,
                clientId,
                AuditActions.TokenRefused,
                Outcomes.Denied,
                Recipient: site ? claimed : null,
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
