using ExchangeGateway.Recipients;

namespace ExchangeGateway.Events;

/// <summary>
/// Long polls waiting on this node, per site. Each waiting poll asks the database twice a second; past
/// <see cref="Limit"/> a poll answers at once with what is due (RFC 8936 lets a server return before its timeout) instead
/// of waiting too.
/// </summary>
public sealed class LongPollSlots() : SiteSlots(Limit)
{
    public const int Limit = 2;
}
