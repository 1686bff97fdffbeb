using ExchangeGateway.Recipients;

namespace ExchangeGateway.Exchange;

/// <summary>
/// Feed pages a site has in flight on this node: each holds its decrypted documents until it is recorded and sent (up
/// to <see cref="SharedCvFeed.PageBytes"/>), for as long as the site takes to read it. Past <see cref="Limit"/>, a 429.
/// </summary>
public sealed class FeedPageSlots() : SiteSlots(Limit)
{
    public const int Limit = 4;
}
