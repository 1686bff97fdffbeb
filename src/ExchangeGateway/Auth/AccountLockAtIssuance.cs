using ExchangeGateway.Data;
using Microsoft.EntityFrameworkCore;
using OpenIddict.Abstractions;
using OpenIddict.Server;
using static OpenIddict.Abstractions.OpenIddictConstants;
using static OpenIddict.Server.OpenIddictServerEvents;

namespace ExchangeGateway.Auth;

/// <summary>
/// A person's code or tokens are issued under a share lock on their account row, held until OpenIddict has written its
/// authorization and token rows. "Forget me" locks that row for update before it deletes the account's tokens and
/// authorizations, so the two are ordered: an issuance that started first has committed its rows before the erasure deletes
/// them, and one that comes second finds the account gone and is refused. Without it, a code requested while the erasure
/// waited to commit (a silent renew while the seeker pressed the button) left an authorization and a code holding the
/// account id and e-mail address for weeks, and a refresh in the same moment answered 500 on the deleted authorization.
/// Sites' tokens (client credentials, the cv_ subjects of site-started consent) carry no account and are not touched.
/// </summary>
public static class AccountLockAtIssuance
{
    public static IEnumerable<OpenIddictServerHandlerDescriptor> Descriptors { get; } =
    [
        OpenIddictServerHandlerDescriptor.CreateBuilder<ProcessSignInContext>()
            .UseScopedHandler<Take>()
            // Before the presented code or refresh token is redeemed: a refused issuance must not spend it either.
            .SetOrder(OpenIddictServerHandlers.ValidateSignInDemand.Descriptor.Order + 500)
            .SetType(OpenIddictServerHandlerType.Custom)
            .Build(),
        OpenIddictServerHandlerDescriptor.CreateBuilder<ProcessSignInContext>()
            .UseScopedHandler<Release>()
            .SetOrder(OpenIddictServerHandlers.AttachCustomSignInParameters.Descriptor.Order + 500)
            .SetType(OpenIddictServerHandlerType.Custom)
            .Build(),
    ];

    /// <summary>Persons' identities carry the account's security stamp; nothing else does.</summary>
    private static bool IsPerson(ProcessSignInContext context) =>
        context.Principal?.HasClaim(claim => claim.Type == AuthorizationEndpoints.StampClaim) == true;

    public sealed class Take(GatewayDbContext db) : IOpenIddictServerHandler<ProcessSignInContext>
    {
        public async ValueTask HandleAsync(ProcessSignInContext context)
        {
            if (!IsPerson(context) || context.Principal!.GetClaim(Claims.Subject) is not { } subject)
            {
                return;
            }

            // OpenIddict's stores share this scoped context, so its inserts join the transaction; an issuance refused or
            // failing later is rolled back when the request's scope disposes the context.
            await db.Database.BeginTransactionAsync(context.CancellationToken);
            var held = await db.Database
                .SqlQuery<int>($"SELECT 1 AS \"Value\" FROM \"AspNetUsers\" WHERE id = {subject} FOR KEY SHARE")
                .ToListAsync(context.CancellationToken);
            if (held.Count == 0)
            {
                await db.Database.RollbackTransactionAsync(context.CancellationToken);
                context.Reject(
                    context.EndpointType == OpenIddictServerEndpointType.Authorization ? Errors.LoginRequired : Errors.InvalidGrant,
                    "The account no longer exists.");
            }
        }
    }

    public sealed class Release(GatewayDbContext db) : IOpenIddictServerHandler<ProcessSignInContext>
    {
        public async ValueTask HandleAsync(ProcessSignInContext context)
        {
            if (db.Database.CurrentTransaction is not null && IsPerson(context))
            {
                await db.Database.CommitTransactionAsync(context.CancellationToken);
            }
        }
    }
}
