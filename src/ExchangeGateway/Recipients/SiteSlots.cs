using System.Collections.Concurrent;

namespace ExchangeGateway.Recipients;

/// <summary>
/// Requests of one kind a site has in flight on this node, at most <see cref="PerSite"/>. The rate limit bounds how often
/// a site starts requests, not how many it holds open at once: a site replaying one cursor two hundred times at once, and
/// reading the answers slowly, would otherwise hold their memory (or their database polls) all together.
/// </summary>
public abstract class SiteSlots(int perSite)
{
    private readonly ConcurrentDictionary<Guid, int> _inFlight = new();

    public int PerSite { get; } = perSite;

    public bool TryEnter(Guid site)
    {
        while (true)
        {
            var current = _inFlight.GetOrAdd(site, 0);
            if (current >= PerSite)
            {
                return false;
            }

            if (_inFlight.TryUpdate(site, current + 1, current))
            {
                return true;
            }
        }
    }

    public void Leave(Guid site)
    {
        if (_inFlight.AddOrUpdate(site, 0, (_, count) => count - 1) == 0)
        {
            // Only if still nought: another request may have entered meanwhile.
            _inFlight.TryRemove(KeyValuePair.Create(site, 0));
        }
    }

    /// <summary>This site's requests of this kind in flight now on this node.</summary>
    public int InFlight(Guid site) => _inFlight.GetValueOrDefault(site);
}
