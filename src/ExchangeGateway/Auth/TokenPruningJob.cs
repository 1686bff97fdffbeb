using ExchangeGateway.Hosting;
using Hangfire;
using OpenIddict.Abstractions;

namespace ExchangeGateway.Auth;

/// <summary>Recurring: removes expired and revoked tokens and authorizations older than two weeks from OpenIddict's tables.</summary>
[AutomaticRetry(Attempts = Jobs.RetryAttempts, DelaysInSeconds = [30, 120])]
public sealed class TokenPruningJob(IOpenIddictTokenManager tokens, IOpenIddictAuthorizationManager authorizations, TimeProvider time)
{
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        var threshold = time.GetUtcNow() - TimeSpan.FromDays(14);
        await tokens.PruneAsync(threshold, cancellationToken);
        await authorizations.PruneAsync(threshold, cancellationToken);
    }
}
