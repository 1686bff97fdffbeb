using System.Collections.Concurrent;

namespace ExchangeGateway.Events;

/// <summary>
/// Long polls waiting on this node, per site. Each waiting poll asks the database twice a second; the rate limit bounds
/// how often a site starts one, not how many it holds open, so past <see cref="PerSite"/> a poll answers at once with
/// what is due (RFC 8936 lets a server return before its timeout) instead of waiting too.
/// </summary>
public sealed class LongPollSlots
{
    public const int PerSite = 2;

    private readonly ConcurrentDictionary<Guid, int> _waiting = new();

    public bool TryEnter(Guid site)
    {
        while (true)
        {
            var current = _waiting.GetOrAdd(site, 0);
            if (current >= PerSite)
            {
                return false;
            }

            if (_waiting.TryUpdate(site, current + 1, current))
            {
                return true;
            }
        }
    }

    public void Leave(Guid site)
    {
        if (_waiting.AddOrUpdate(site, 0, (_, count) => count - 1) == 0)
        {
            // Only if still nought: another poll may have entered meanwhile.
            _waiting.TryRemove(KeyValuePair.Create(site, 0));
        }
    }

    /// <summary>Polls of this site waiting now on this node.</summary>
    public int Waiting(Guid site) => _waiting.GetValueOrDefault(site);
}
