using ExchangeGateway.Hosting;
using Hangfire;

namespace ExchangeGateway.Audit;

/// <summary>Recurring: seals the chain head with a signed checkpoint.</summary>
[AutomaticRetry(Attempts = Jobs.RetryAttempts)]
public sealed class AuditCheckpointJob(AuditCheckpoints checkpoints)
{
    public async Task RunAsync(CancellationToken cancellationToken) => await checkpoints.CreateAsync(cancellationToken);
}
