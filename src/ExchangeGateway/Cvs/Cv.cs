using ExchangeGateway.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace ExchangeGateway.Cvs;

public enum CvState { Published, Offline, Erased }

/// <summary>
/// A seeker's CV: a JSON Resume document, sealed with the seeker's own data key. Freshness is a rule of the aggregate:
/// whatever the stored state says, a CV whose last refresh is older than the maximum age is offline. The times it records
/// are cut to whole microseconds, as PostgreSQL stores them, so that what a write answers is what a later read returns.
/// </summary>
public sealed class Cv
{
    private Cv() { }

    public Guid Id { get; private set; }
    public string SeekerId { get; private set; } = "";
    public int Version { get; private set; }
    /// <summary>The state last written; <see cref="StateAt"/> is the truth at a given instant.</summary>
    public CvState State { get; private set; }
    public DateTimeOffset CreatedAt { get; private set; }
    public DateTimeOffset UpdatedAt { get; private set; }
    public DateTimeOffset RefreshedAt { get; private set; }
    public DateTimeOffset? ErasedAt { get; private set; }
    /// <summary>nonce ‖ tag ‖ AES-256-GCM ciphertext of the UTF-8 document; null once erased.</summary>
    public byte[]? Sealed { get; private set; }
    /// <summary>SHA-256 of the plaintext document, recorded in the disclosure ledger.</summary>
    public byte[]? ContentHash { get; private set; }
    /// <summary>Largest reminder lead time already sent for the current refresh (so each is sent once).</summary>
    public TimeSpan? LastReminderLead { get; private set; }

    public static Cv Publish(string seekerId, Guid id, byte[] sealedDocument, byte[] contentHash, DateTimeOffset at)
    {
        at = at.TruncateToMicroseconds();
        return new Cv
        {
            Id = id,
            SeekerId = seekerId,
            Version = 1,
            State = CvState.Published,
            CreatedAt = at,
            UpdatedAt = at,
            RefreshedAt = at,
            Sealed = sealedDocument,
            ContentHash = contentHash,
        };
    }

    /// <summary>The version the next replacement will carry (the ciphertext is bound to it).</summary>
    public int NextVersion => Version + 1;

    /// <summary>A new version is also a refresh. Replacing an erased CV starts it again.</summary>
    public void Replace(byte[] sealedDocument, byte[] contentHash, DateTimeOffset at)
    {
        at = at.TruncateToMicroseconds();
        Version = NextVersion;
        Sealed = sealedDocument;
        ContentHash = contentHash;
        State = CvState.Published;
        ErasedAt = null;
        UpdatedAt = at;
        RefreshedAt = at;
        LastReminderLead = null;
    }

    /// <summary>"Still looking": the same version, published again for a full period.</summary>
    public void Refresh(DateTimeOffset at)
    {
        if (State == CvState.Erased)
        {
            throw new InvalidOperationException("An erased CV cannot be refreshed.");
        }

        State = CvState.Published;
        RefreshedAt = at.TruncateToMicroseconds();
        LastReminderLead = null;
    }

    /// <summary>
    /// Content gone, and a new version number for the erased state: a device still holding the old ETag must not publish
    /// over the erasure with If-Match as if nothing had happened since it last looked.
    /// </summary>
    public void Erase(DateTimeOffset at)
    {
        at = at.TruncateToMicroseconds();
        Version = NextVersion;
        Sealed = null;
        ContentHash = null;
        State = CvState.Erased;
        ErasedAt = at;
        UpdatedAt = at;
    }

    public void Reminded(TimeSpan lead) => LastReminderLead = lead;

    public DateTimeOffset OfflineAt(TimeSpan maxAge) => RefreshedAt + maxAge;

    public CvState StateAt(DateTimeOffset now, TimeSpan maxAge) =>
        State != CvState.Published ? State : now >= OfflineAt(maxAge) ? CvState.Offline : CvState.Published;

    public bool IsAvailableAt(DateTimeOffset now, TimeSpan maxAge) => StateAt(now, maxAge) == CvState.Published;
}

public sealed class CvConfiguration : IEntityTypeConfiguration<Cv>
{
    public void Configure(EntityTypeBuilder<Cv> builder)
    {
        builder.ToTable("cvs");
        builder.HasIndex(c => c.SeekerId).IsUnique();
        // Only published CVs can go stale or need a reminder; without the filter the sweep would walk past every CV it has
        // already taken offline (they keep their old refresh date) on each batch.
        builder.HasIndex(c => c.RefreshedAt).HasFilter("state = 'Published'");
        builder.Property(c => c.SeekerId).HasMaxLength(64);
        builder.Property(c => c.State).HasConversion<string>().HasMaxLength(16);
        builder.Property(c => c.Version).IsConcurrencyToken();
    }
}
