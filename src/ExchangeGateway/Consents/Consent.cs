using System.ComponentModel.DataAnnotations;
using System.Security.Cryptography;
using ExchangeGateway.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using Microsoft.IdentityModel.Tokens;

namespace ExchangeGateway.Consents;

public enum ConsentState { Active, Revoked, Expired, Ended }

public enum CollectionMethod { Web, Api, Oauth }

public sealed class ConsentOptions : IValidatableObject
{
    public const string Section = "Consent";

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (ControllerUrl is { IsAbsoluteUri: false })
        {
            // Receipts link to it from wherever they are read.
            yield return new ValidationResult("Consent:ControllerUrl must be an absolute URL.", [nameof(ControllerUrl)]);
        }

        if (RemindBefore >= MaxAge)
        {
            // The "ends soon" mail would go out the moment a consent is given.
            yield return new ValidationResult("Consent:RemindBefore must be shorter than Consent:MaxAge.", [nameof(RemindBefore)]);
        }
    }

    /// <summary>A consent lapses this long after it was given (the seeker is reminded before).</summary>
    [Range(typeof(TimeSpan), "1.00:00:00", "3650.00:00:00")]
    public TimeSpan MaxAge { get; set; } = TimeSpan.FromDays(365);

    [Range(typeof(TimeSpan), "1.00:00:00", "365.00:00:00")]
    public TimeSpan RemindBefore { get; set; } = TimeSpan.FromDays(30);

    /// <summary>The data controller named on every receipt.</summary>
    [Required]
    public string ControllerName { get; set; } = "Service public de l'emploi";

    [Required]
    public string ControllerContact { get; set; } = "dpo@employment-service.example";

    [Required]
    public Uri ControllerUrl { get; set; } = new("https://employment-service.example/privacy");

    [Required]
    public string Jurisdiction { get; set; } = "EU";
}

/// <summary>
/// One consent episode of one seeker towards one recipient. Once it has ended, in whatever way, it can never be active
/// again: a new tick is a new episode with a new pairwise id, so the site cannot link the two. Its times are cut to whole
/// microseconds, as PostgreSQL stores them.
/// </summary>
public sealed class Consent
{
    private Consent() { }

    public Guid Id { get; private set; }
    public string? SeekerId { get; private set; }
    public Guid RecipientId { get; private set; }
    /// <summary>The only id the recipient ever sees for this CV (promise 6).</summary>
    public string PairwiseId { get; private set; } = "";
    public ConsentState State { get; private set; }
    public CollectionMethod CollectionMethod { get; private set; }
    public DateTimeOffset GrantedAt { get; private set; }
    public DateTimeOffset ExpiresAt { get; private set; }
    public DateTimeOffset? EndedAt { get; private set; }
    public bool ExpiryReminderSent { get; private set; }
    /// <summary>Why the episode ended, in the words of the events sent to recipients (consent-revoked, ...).</summary>
    public string? EndCause { get; private set; }

    public bool IsActive => State == ConsentState.Active;

    /// <summary>The state as a seeker should see it now: lapsed is expired, whether or not the expiry job has run yet.</summary>
    public ConsentState StateAt(DateTimeOffset now) => IsActive && ExpiresAt <= now ? ConsentState.Expired : State;

    public static Consent Grant(string seekerId, Guid recipientId, CollectionMethod method, DateTimeOffset at, TimeSpan maxAge)
    {
        at = at.TruncateToMicroseconds();
        return new Consent
        {
            Id = Guid.CreateVersion7(at),
            SeekerId = seekerId,
            RecipientId = recipientId,
            PairwiseId = "cv_" + Base64UrlEncoder.Encode(RandomNumberGenerator.GetBytes(16)),
            State = ConsentState.Active,
            CollectionMethod = method,
            GrantedAt = at,
            ExpiresAt = (at + maxAge).TruncateToMicroseconds(),
        };
    }

    public void Revoke(DateTimeOffset at) => End(ConsentState.Revoked, ErasureCauses.ConsentRevoked, at);

    /// <summary>
    /// Dated when it lapsed, not when a job or a new tick noticed: no read was allowed after that moment, and a new episode
    /// opened by a tick that notices it comes after it in the history.
    /// </summary>
    public void Expire(DateTimeOffset now)
    {
        if (now < ExpiresAt)
        {
            throw new InvalidOperationException("A consent expires only once its time is up.");
        }

        End(ConsentState.Expired, ErasureCauses.ConsentExpired, ExpiresAt);
    }

    /// <summary>
    /// An end by the gateway decided before its moment was final (a suspension's batch is written before its time is read
    /// under the chain lock) for an episode that lapsed in between: it expired, when it lapsed; the gateway did not end it.
    /// </summary>
    public void LapsedBeforeItsEnd()
    {
        if (State != ConsentState.Ended)
        {
            throw new InvalidOperationException($"A {State} consent was not ended by the gateway.");
        }

        State = ConsentState.Expired;
        EndCause = ErasureCauses.ConsentExpired;
        EndedAt = ExpiresAt.TruncateToMicroseconds();
    }

    /// <summary>Ended by the gateway: the seeker was erased or the recipient suspended.</summary>
    public void EndBySystem(string cause, DateTimeOffset at) => End(ConsentState.Ended, cause, at);

    /// <summary>
    /// Ended by the gateway for <paramref name="cause"/> (the seeker's CV erased, the recipient suspended), or expired, dated
    /// when it lapsed, if it had lapsed already: the gateway did not end an episode that was over, and its receipt must not
    /// say so.
    /// </summary>
    public void EndByGateway(string cause, DateTimeOffset now)
    {
        if (ExpiresAt <= now)
        {
            Expire(now);
        }
        else
        {
            EndBySystem(cause, now);
        }
    }

    /// <summary>
    /// The audit record of an episode the gateway ended, under its site: consent.expired or consent.ended, with its cause,
    /// and its receipt when it still has one (an account's erasure takes the receipts with it).
    /// </summary>
    public Audit.AuditEntry EndRecord(string actorKind, string? actorId, string seekerId, string clientId, Guid? receiptId)
    {
        var details = new Dictionary<string, object?> { ["cause"] = EndCause };
        if (receiptId is { } receipt)
        {
            details["receipt"] = receipt;
        }

        return new Audit.AuditEntry(actorKind, actorId, State == ConsentState.Expired ? Audit.AuditActions.ConsentExpired : Audit.AuditActions.ConsentEnded,
            Audit.Outcomes.Success, SeekerId: seekerId, Recipient: clientId, Details: details);
    }

    /// <summary>After erasure the episode keeps only what chasing the recipient's copy needs.</summary>
    public void ForgetSeeker() => SeekerId = null;

    public void ExpiryReminded() => ExpiryReminderSent = true;

    private void End(ConsentState state, string cause, DateTimeOffset at)
    {
        if (State != ConsentState.Active)
        {
            throw new InvalidOperationException($"A {State} consent cannot become {state}: give a new consent instead.");
        }

        State = state;
        EndCause = cause;
        EndedAt = at.TruncateToMicroseconds();
    }
}

public sealed class ConsentConfiguration : IEntityTypeConfiguration<Consent>
{
    public void Configure(EntityTypeBuilder<Consent> builder)
    {
        builder.ToTable("consents");
        builder.Property(c => c.SeekerId).HasMaxLength(64);
        builder.Property(c => c.PairwiseId).HasMaxLength(40);
        builder.Property(c => c.State).HasConversion<string>().HasMaxLength(16);
        builder.Property(c => c.CollectionMethod).HasConversion<string>().HasMaxLength(8);
        builder.Property(c => c.EndCause).HasMaxLength(32);
        builder.HasIndex(c => c.PairwiseId).IsUnique();
        // At most one active episode per seeker and site: the database, not only the code, says so.
        builder.HasIndex(c => new { c.SeekerId, c.RecipientId }).IsUnique().HasFilter("state = 'Active'");
        builder.HasIndex(c => new { c.SeekerId, c.RecipientId, c.GrantedAt });
        builder.HasIndex(c => c.ExpiresAt).HasFilter("state = 'Active'");
        // What an erasure kept, by the end of its episode, for the retention job (ErasedRecordsPurgeJob); no other row is in it.
        builder.HasIndex(c => c.EndedAt).HasFilter("seeker_id IS NULL").HasDatabaseName("ix_consents_erased_by_end");
        builder.HasOne<Recipients.Recipient>().WithMany().HasForeignKey(c => c.RecipientId).OnDelete(DeleteBehavior.Restrict);
    }
}

/// <summary>Why a recipient must delete its copy (the cause carried by erasure events).</summary>
public static class ErasureCauses
{
    public const string ConsentRevoked = "consent-revoked";
    public const string ConsentExpired = "consent-expired";
    public const string CvOffline = "cv-offline";
    public const string SubjectErased = "subject-erased";
    public const string RecipientSuspended = "recipient-suspended";
}

public enum ConsentEventKind { Granted, Revoked, Expired, Ended }

/// <summary>An append-only fact about a consent; its id is the receipt id the seeker keeps.</summary>
public sealed class ConsentEvent
{
    public Guid Id { get; init; }
    public Guid ConsentId { get; init; }
    public string? SeekerId { get; set; }
    public Guid RecipientId { get; init; }
    public ConsentEventKind Kind { get; init; }
    public DateTimeOffset At { get; init; }
    public CollectionMethod CollectionMethod { get; init; }
    /// <summary>The recipient's name, policy and website as they were when the seeker decided.</summary>
    public required string RecipientName { get; init; }
    public required string PolicyUrl { get; init; }

    /// <summary>Null on receipts written before it was kept: they show the site's current website.</summary>
    public string? RecipientWebsite { get; init; }

    /// <summary>
    /// The receipt of an episode the gateway ended (expired, or ended by an erasure or a suspension): its kind and time
    /// are the episode's own, so no caller can date an expiry at the moment it noticed instead of when it lapsed.
    /// </summary>
    public static ConsentEvent EndOf(Consent consent, Recipients.Recipient recipient) => For(
        consent,
        consent.State switch
        {
            ConsentState.Expired => ConsentEventKind.Expired,
            ConsentState.Ended => ConsentEventKind.Ended,
            _ => throw new InvalidOperationException($"A {consent.State} consent has no end for the gateway to record."),
        },
        recipient, consent.CollectionMethod, consent.EndedAt!.Value);

    public static ConsentEvent For(Consent consent, ConsentEventKind kind, Recipients.Recipient recipient, CollectionMethod method, DateTimeOffset at)
    {
        at = at.TruncateToMicroseconds();
        return new ConsentEvent
        {
            Id = Guid.CreateVersion7(at),
            ConsentId = consent.Id,
            SeekerId = consent.SeekerId,
            RecipientId = consent.RecipientId,
            Kind = kind,
            At = at,
            CollectionMethod = method,
            RecipientName = recipient.DisplayName,
            PolicyUrl = recipient.PrivacyPolicyUrl.AbsoluteUri,
            RecipientWebsite = recipient.Website.AbsoluteUri,
        };
    }
}

public sealed class ConsentEventConfiguration : IEntityTypeConfiguration<ConsentEvent>
{
    public void Configure(EntityTypeBuilder<ConsentEvent> builder)
    {
        builder.ToTable("consent_events");
        builder.Property(e => e.SeekerId).HasMaxLength(64);
        builder.Property(e => e.Kind).HasConversion<string>().HasMaxLength(16);
        builder.Property(e => e.CollectionMethod).HasConversion<string>().HasMaxLength(8);
        builder.Property(e => e.RecipientName).HasMaxLength(200);
        builder.Property(e => e.PolicyUrl).HasMaxLength(2000);
        builder.Property(e => e.RecipientWebsite).HasMaxLength(2000);
        builder.HasIndex(e => new { e.SeekerId, e.RecipientId, e.At });
        builder.HasIndex(e => e.ConsentId);
        builder.HasOne<Consent>().WithMany().HasForeignKey(e => e.ConsentId).OnDelete(DeleteBehavior.Cascade);
    }
}
