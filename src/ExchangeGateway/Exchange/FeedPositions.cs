using ExchangeGateway.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace ExchangeGateway.Exchange;

/// <summary>
/// Where a consent episode stands in its recipient's change feed. Kept apart from <c>consents</c> because it is the
/// most written column of the gateway (every change of what a site may hold moves it, the freshness sweep by the
/// hundred thousand): here a move rewrites a narrow row and two indexes instead of a wide row and all of its indexes.
/// </summary>
public sealed class FeedEntry
{
    public Guid ConsentId { get; init; }
    public Guid RecipientId { get; init; }
    public long Position { get; init; }
}

public sealed class FeedEntryConfiguration : IEntityTypeConfiguration<FeedEntry>
{
    public void Configure(EntityTypeBuilder<FeedEntry> builder)
    {
        builder.ToTable("feed_entries");
        builder.HasKey(e => e.ConsentId);
        builder.HasIndex(e => new { e.RecipientId, e.Position });
        builder.HasOne<Consents.Consent>().WithOne().HasForeignKey<FeedEntry>(e => e.ConsentId).OnDelete(DeleteBehavior.Cascade);
    }
}

/// <summary>
/// Positions in the recipients' change feeds. They are handed out under the chain lock, which is held until commit, so
/// positions become visible in the order they were assigned: a reader that saw N+1 has necessarily seen N.
/// </summary>
public static class FeedPositions
{
    /// <summary>Moves the given episodes to the end of their feeds (a new episode enters its feed here).</summary>
    public static async Task BumpAsync(GatewayDbContext db, IReadOnlyCollection<Guid> consentIds, CancellationToken cancellationToken)
    {
        if (consentIds.Count == 0)
        {
            return;
        }

        await Locks.ChainAsync(db, cancellationToken);
        var ids = consentIds.ToArray();
        await db.Database.ExecuteSqlAsync(
            $"""
            INSERT INTO feed_entries (consent_id, recipient_id, position)
            SELECT c.id, c.recipient_id, nextval('feed_positions') FROM consents c WHERE c.id = ANY({ids}) ORDER BY c.id
            ON CONFLICT (consent_id) DO UPDATE SET position = excluded.position
            """,
            cancellationToken);
    }

    /// <summary>Every active share of a seeker: the CV changed, so each site's view of it changed.</summary>
    public static async Task BumpSeekerAsync(GatewayDbContext db, string seekerId, CancellationToken cancellationToken)
    {
        await Locks.ChainAsync(db, cancellationToken);
        await db.Database.ExecuteSqlAsync(
            $"""
            UPDATE feed_entries f SET position = nextval('feed_positions')
            FROM consents c WHERE c.id = f.consent_id AND c.seeker_id = {seekerId} AND c.state = 'Active'
            """,
            cancellationToken);
    }
}
