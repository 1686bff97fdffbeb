using ExchangeGateway.Data;
using ExchangeGateway.Hosting;
using Hangfire;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using OpenIddict.Abstractions;

namespace ExchangeGateway.Auth;

/// <summary>
/// Recurring: removes expired and revoked tokens and authorizations older than two weeks (or a refresh token's lifetime,
/// if longer) from OpenIddict's tables, and
/// sign-ups never finished: an address typed into the sign-up page (perhaps by someone other than its holder) is not
/// kept once its link is long dead; counts of wrong passwords whose window has ended; and spent client assertions that
/// have expired.
/// </summary>
[AutomaticRetry(Attempts = Jobs.RetryAttempts)]
public sealed class TokenPruningJob(
    IOpenIddictTokenManager tokens, IOpenIddictAuthorizationManager authorizations, GatewayDbContext db, TimeProvider time,
    IOptions<AuthOptions> auth, ILogger<TokenPruningJob> logger)
{
    /// <summary>How long an unfinished sign-up is kept: well past the one-day life of its link.</summary>
    public static readonly TimeSpan UnfinishedSignUpKept = TimeSpan.FromDays(7);

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        // Two weeks, or a refresh token's whole life if longer: a redeemed refresh token's row is how a replay of it is
        // recognised (and its chain revoked); pruned while the token could still be presented, a stolen one replayed later
        // was refused as unknown and the chain it was stolen from lived on.
        var kept = auth.Value.RefreshTokenLifetime > TimeSpan.FromDays(14) ? auth.Value.RefreshTokenLifetime : TimeSpan.FromDays(14);
        var threshold = now - kept;
        await tokens.PruneAsync(threshold, cancellationToken);
        await authorizations.PruneAsync(threshold, cancellationToken);

        // No password and no confirmation: nobody ever signed in, so there is nothing of theirs but the address (and the
        // role row, which cascades).
        var cutoff = now - UnfinishedSignUpKept;
        var removed = await db.Users
            .Where(u => !u.EmailConfirmed && u.PasswordHash == null && u.CreatedAt < cutoff)
            .ExecuteDeleteAsync(cancellationToken);
        if (removed > 0)
        {
            logger.LogInformation("Removed {Count} sign-ups never finished", removed);
        }

        await SignInThrottle.PruneAsync(db, now, cancellationToken);
        await ClientAssertionReplay.PruneAsync(db, now, cancellationToken);
    }
}
