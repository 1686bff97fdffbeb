using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace ExchangeGateway.Audit;

/// <summary>
/// One row of the append-only, hash-chained audit log. Rows are written only by <see cref="AuditTrail"/> and never
/// change (the database rejects UPDATE, DELETE and TRUNCATE). Subjects appear only as pseudonyms.
/// </summary>
public sealed class AuditEvent
{
    public long Sequence { get; init; }
    public DateTimeOffset OccurredAt { get; init; }
    public required string ActorKind { get; init; }
    public string? ActorId { get; init; }
    public required string Action { get; init; }
    public string? Subject { get; init; }
    public string? Recipient { get; init; }
    public required string Outcome { get; init; }
    public string? Details { get; init; }
    public required byte[] PreviousHash { get; init; }
    public required byte[] Hash { get; init; }
}

public sealed class AuditEventConfiguration : IEntityTypeConfiguration<AuditEvent>
{
    public void Configure(EntityTypeBuilder<AuditEvent> builder)
    {
        builder.ToTable("audit_events");
        builder.HasKey(e => e.Sequence);
        builder.Property(e => e.Sequence).ValueGeneratedNever();
        builder.Property(e => e.ActorKind).HasMaxLength(16);
        builder.Property(e => e.ActorId).HasMaxLength(100);
        builder.Property(e => e.Action).HasMaxLength(64);
        builder.Property(e => e.Subject).HasMaxLength(64);
        builder.Property(e => e.Recipient).HasMaxLength(100);
        builder.Property(e => e.Outcome).HasMaxLength(16);
        // text, not jsonb: the hash covers the exact bytes, and jsonb would re-order keys.
        builder.Property(e => e.Details).HasColumnType("text");
        builder.HasIndex(e => e.OccurredAt);
        builder.HasIndex(e => new { e.Subject, e.Sequence });
        builder.HasIndex(e => new { e.Recipient, e.Sequence });
        builder.HasIndex(e => new { e.Action, e.Sequence });
        // "Everything this operator (or site, or job) did" is an auditor's first question; without it the actor filter read
        // the whole log.
        builder.HasIndex(e => new { e.ActorId, e.Sequence });
    }
}

/// <summary>A signed statement that the chain had a given head at a given time; rows up to it cannot be rewritten unnoticed.</summary>
public sealed class AuditCheckpoint
{
    public long Sequence { get; init; }
    public required byte[] Hash { get; init; }
    public DateTimeOffset SignedAt { get; init; }
    public required string Signature { get; init; }
}

public sealed class AuditCheckpointConfiguration : IEntityTypeConfiguration<AuditCheckpoint>
{
    public void Configure(EntityTypeBuilder<AuditCheckpoint> builder)
    {
        builder.ToTable("audit_checkpoints");
        builder.HasKey(c => c.Sequence);
        builder.Property(c => c.Sequence).ValueGeneratedNever();
    }
}

public static class ActorKinds
{
    public const string Seeker = "seeker";
    public const string Recipient = "recipient";
    public const string Auditor = "auditor";
    public const string Operator = "operator";
    public const string System = "system";
    public const string Anonymous = "anonymous";
}

public static class Outcomes
{
    public const string Success = "success";
    public const string Denied = "denied";
    public const string Failure = "failure";
}

/// <summary>The enumerated set of audited actions; the auditor API accepts only these in its filter.</summary>
public static class AuditActions
{
    public const string SignIn = "auth.sign-in";
    public const string PasswordAccepted = "auth.password-accepted";
    public const string AccountCreated = "account.created";
    public const string AccountConfirmed = "account.confirmed";
    public const string PasswordResetRequested = "account.password-reset-requested";
    public const string PasswordReset = "account.password-reset";
    public const string StaffRoleGranted = "account.role-granted";
    public const string StaffRoleRevoked = "account.role-revoked";
    public const string TwoFactorEnabled = "account.two-factor-enabled";
    public const string TwoFactorReset = "account.two-factor-reset";
    public const string TwoFactorDisabled = "account.two-factor-disabled";
    public const string AppAccessRevoked = "account.app-revoked";
    public const string AuditorClientRegistered = "auditor-client.registered";
    public const string AppClientRegistered = "app-client.registered";
    public const string ClientSecretRotated = "client.secret-rotated";
    public const string ClientRemoved = "client.removed";
    public const string TokenRefused = "auth.token-refused";
    public const string RecipientRegistered = "recipient.registered";
    public const string RecipientUpdated = "recipient.updated";
    public const string RecipientSuspended = "recipient.suspended";
    public const string RecipientReinstated = "recipient.reinstated";
    public const string RecipientSecretRotated = "recipient.secret-rotated";
    public const string RecipientKeysRotated = "recipient.keys-rotated";
    public const string AuditQueried = "audit.queried";
    public const string AuditExported = "audit.exported";
    public const string AuditVerified = "audit.verified";
    public const string JobsDashboardAction = "jobs.dashboard-action";
    public const string DataKeyAdded = "data-key.added";
    public const string DataKeysRewrapped = "data-key.rewrapped";
    public const string KeyRingSealed = "key-ring.sealed";
    public const string CvPublished = "cv.published";
    public const string CvRefreshed = "cv.refreshed";
    public const string CvWentOffline = "cv.went-offline";
    public const string CvErased = "cv.erased";
    public const string CvDisclosed = "cv.disclosed";
    public const string ConsentGranted = "consent.granted";
    public const string ConsentRevoked = "consent.revoked";
    public const string ConsentExpired = "consent.expired";
    public const string ConsentEnded = "consent.ended";
    public const string SeekerExported = "seeker.exported";
    public const string SeekerErased = "seeker.erased";
    public const string ErasuresReapplied = "seeker.erasures-reapplied";
    public const string ErasureDelivered = "erasure.delivered";
    public const string ErasureConfirmed = "erasure.confirmed";
    public const string ErasureOverdue = "erasure.overdue";
    public const string ErasedRecordsPurged = "erasure.records-purged";

    public static readonly IReadOnlySet<string> All = typeof(AuditActions)
        .GetFields(System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Static)
        .Where(f => f.IsLiteral)
        .Select(f => (string)f.GetRawConstantValue()!)
        .ToHashSet(StringComparer.Ordinal);
}
