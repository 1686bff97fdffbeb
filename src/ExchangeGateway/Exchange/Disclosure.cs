using ExchangeGateway.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace ExchangeGateway.Exchange;

/// <summary>One document that left the gateway: which episode, which version, what exactly (its hash), when.</summary>
public sealed class Disclosure
{
    public long Id { get; init; }
    public Guid ConsentId { get; init; }
    public Guid RecipientId { get; init; }
    public string? SeekerId { get; init; }
    public int CvVersion { get; init; }
    public required byte[] ContentHash { get; init; }
    public DateTimeOffset DisclosedAt { get; init; }
}

public sealed class DisclosureConfiguration : IEntityTypeConfiguration<Disclosure>
{
    public void Configure(EntityTypeBuilder<Disclosure> builder)
    {
        builder.ToTable("disclosures");
        builder.Property(d => d.Id).UseIdentityAlwaysColumn();
        builder.Property(d => d.SeekerId).HasMaxLength(64);
        builder.HasIndex(d => new { d.SeekerId, d.Id });
        builder.HasIndex(d => new { d.ConsentId, d.CvVersion });
        builder.HasOne<Consents.Consent>().WithMany().HasForeignKey(d => d.ConsentId).OnDelete(DeleteBehavior.Restrict);
    }
}

/// <summary>
/// Positions in the recipients' change feeds. They are handed out under the chain lock, which is held until commit, so
/// positions become visible in the order they were assigned: a reader that saw N+1 has necessarily seen N.
/// </summary>
public static class FeedPositions
{
    public static async Task BumpAsync(GatewayDbContext db, IReadOnlyCollection<Guid> consentIds, CancellationToken cancellationToken)
    {
        if (consentIds.Count == 0)
        {
            return;
        }

        await Locks.ChainAsync(db, cancellationToken);
        var ids = consentIds.ToArray();
        await db.Database.ExecuteSqlAsync(
            $"UPDATE consents SET feed_position = nextval('feed_positions') WHERE id = ANY({ids})", cancellationToken);
    }

    /// <summary>Every active share of a seeker: the CV changed, so each site's view of it changed.</summary>
    public static async Task BumpSeekerAsync(GatewayDbContext db, string seekerId, CancellationToken cancellationToken)
    {
        await Locks.ChainAsync(db, cancellationToken);
        await db.Database.ExecuteSqlAsync(
            $"UPDATE consents SET feed_position = nextval('feed_positions') WHERE seeker_id = {seekerId} AND state = 'Active'", cancellationToken);
    }
}
