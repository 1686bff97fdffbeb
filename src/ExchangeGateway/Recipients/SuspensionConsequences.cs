namespace ExchangeGateway.Recipients;

/// <summary>
/// What a change of a recipient's status sets in motion inside the same transaction. For now the live gate is the whole
/// effect (a suspended site reads nothing); ending consents and chasing copies joins it with the propagation work.
/// </summary>
public static class SuspensionConsequences
{
    public static Task ApplyAsync(IServiceProvider services, Recipient recipient, CancellationToken cancellationToken) => Task.CompletedTask;
}
