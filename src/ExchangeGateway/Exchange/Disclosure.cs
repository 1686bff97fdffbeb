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
