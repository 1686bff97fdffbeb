using ExchangeGateway.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using OpenIddict.Abstractions;
using OpenIddict.Core;
using OpenIddict.EntityFrameworkCore.Models;

namespace ExchangeGateway.Recipients;

/// <summary>
/// OpenIddict's application manager, taught one thing: during a rotation's grace period a recipient's previous secret
/// is still accepted, so a site can roll its new secret out without an outage.
/// </summary>
public sealed class GatewayApplicationManager(
    IOpenIddictApplicationCache<OpenIddictEntityFrameworkCoreApplication> cache,
    ILogger<OpenIddictApplicationManager<OpenIddictEntityFrameworkCoreApplication>> logger,
    IOptionsMonitor<OpenIddictCoreOptions> options,
    IOpenIddictApplicationStore<OpenIddictEntityFrameworkCoreApplication> store,
    GatewayDbContext db,
    TimeProvider time)
    : OpenIddictApplicationManager<OpenIddictEntityFrameworkCoreApplication>(cache, logger, options, store)
{
    public override async ValueTask<bool> ValidateClientSecretAsync(
        OpenIddictEntityFrameworkCoreApplication application, string secret, CancellationToken cancellationToken = default)
    {
        if (await base.ValidateClientSecretAsync(application, secret, cancellationToken))
        {
            return true;
        }

        var now = time.GetUtcNow();
        var previous = await db.Recipients.AsNoTracking()
            .Where(r => r.ClientId == application.ClientId && r.PreviousSecretHash != null && r.PreviousSecretValidUntil > now)
            .Select(r => r.PreviousSecretHash)
            .SingleOrDefaultAsync(cancellationToken);
        return previous is not null && await ValidateClientSecretAsync(secret, previous, cancellationToken);
    }
}
