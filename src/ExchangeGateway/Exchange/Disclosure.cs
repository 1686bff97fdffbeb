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
    /// <summary>SHA-256 of exactly the bytes sent; cleared at the seeker's erasure, when it could only serve to recognise a copy.</summary>
    public byte[]? ContentHash { get; init; }
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
        // No foreign key to consents, as for the obligations: the only writer is an INSERT … SELECT joined on consents
        // under the chain lock, and consents are never deleted, so the check could only pass; it was an eighth of the
        // ledger insert that every read waits for.
    }
}
