using ExchangeGateway.Data;
using ExchangeGateway.Hosting;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace ExchangeGateway.Recipients;

public enum DeliveryMode { Push, Poll }

public enum ClientAuthentication
{
    [System.Text.Json.Serialization.JsonStringEnumMemberName("client_secret_basic")] ClientSecretBasic,
    [System.Text.Json.Serialization.JsonStringEnumMemberName("private_key_jwt")] PrivateKeyJwt,
}

public enum RecipientStatus { Active, Suspended }

/// <summary>
/// A named third-party job site. Its OAuth client (same client id) lives in OpenIddict's store; this row holds what the
/// gateway and the seekers need to know about the site, and whether it may receive anything at all. Its times are cut to
/// whole microseconds, as PostgreSQL stores them.
/// </summary>
public sealed class Recipient
{
    private Recipient() { }

    public Guid Id { get; private set; }
    public string ClientId { get; private set; } = "";
    public string DisplayName { get; private set; } = "";
    public string LegalName { get; private set; } = "";
    public Uri Website { get; private set; } = null!;
    public Uri PrivacyPolicyUrl { get; private set; } = null!;
    public string ContactEmail { get; private set; } = "";
    public DeliveryMode DeliveryMode { get; private set; }
    public Uri? PushEndpoint { get; private set; }
    public ClientAuthentication ClientAuthentication { get; private set; }
    public RecipientStatus Status { get; private set; }
    public string? StatusReason { get; private set; }
    public DateTimeOffset CreatedAt { get; private set; }
    public DateTimeOffset UpdatedAt { get; private set; }

    /// <summary>The replaced secret's hash, still accepted until <see cref="PreviousSecretValidUntil"/> (rotation grace).</summary>
    public string? PreviousSecretHash { get; private set; }
    public DateTimeOffset? PreviousSecretValidUntil { get; private set; }

    public bool IsActive => Status == RecipientStatus.Active;

    public static Recipient Register(
        string clientId, string displayName, string legalName, Uri website, Uri privacyPolicyUrl, string contactEmail,
        DeliveryMode deliveryMode, Uri? pushEndpoint, ClientAuthentication clientAuthentication, DateTimeOffset at)
    {
        if (deliveryMode == DeliveryMode.Push && pushEndpoint is null)
        {
            throw new ArgumentException("A push recipient needs a push endpoint.", nameof(pushEndpoint));
        }

        at = at.TruncateToMicroseconds();
        return new Recipient
        {
            Id = Guid.CreateVersion7(at),
            ClientId = clientId,
            DisplayName = displayName,
            LegalName = legalName,
            Website = website,
            PrivacyPolicyUrl = privacyPolicyUrl,
            ContactEmail = contactEmail,
            DeliveryMode = deliveryMode,
            PushEndpoint = deliveryMode == DeliveryMode.Push ? pushEndpoint : null,
            ClientAuthentication = clientAuthentication,
            Status = RecipientStatus.Active,
            CreatedAt = at,
            UpdatedAt = at,
        };
    }

    /// <summary>Keeps the old secret's hash for a grace period, or forgets it at once when there is none.</summary>
    public void SecretRotated(string? previousHash, TimeSpan grace, DateTimeOffset at)
    {
        if (ClientAuthentication != ClientAuthentication.ClientSecretBasic)
        {
            throw new InvalidOperationException("Only a secret-authenticated recipient has a secret to rotate.");
        }

        at = at.TruncateToMicroseconds();
        PreviousSecretHash = grace > TimeSpan.Zero ? previousHash : null;
        PreviousSecretValidUntil = grace > TimeSpan.Zero ? (at + grace).TruncateToMicroseconds() : null;
        UpdatedAt = at;
    }

    public void Edit(
        string? displayName, string? legalName, Uri? website, Uri? privacyPolicyUrl, string? contactEmail,
        DeliveryMode? deliveryMode, Uri? pushEndpoint, DateTimeOffset at)
    {
        var mode = deliveryMode ?? DeliveryMode;
        var endpoint = pushEndpoint ?? PushEndpoint;
        if (mode == DeliveryMode.Push && endpoint is null)
        {
            throw new ArgumentException("A push recipient needs a push endpoint.", nameof(pushEndpoint));
        }

        DisplayName = displayName ?? DisplayName;
        LegalName = legalName ?? LegalName;
        Website = website ?? Website;
        PrivacyPolicyUrl = privacyPolicyUrl ?? PrivacyPolicyUrl;
        ContactEmail = contactEmail ?? ContactEmail;
        DeliveryMode = mode;
        PushEndpoint = mode == DeliveryMode.Push ? endpoint : null;
        UpdatedAt = at.TruncateToMicroseconds();
    }

    /// <summary>Returns false when already suspended, so the caller records (and propagates) only real changes.</summary>
    public bool Suspend(string reason, DateTimeOffset at)
    {
        if (Status == RecipientStatus.Suspended)
        {
            return false;
        }

        Status = RecipientStatus.Suspended;
        StatusReason = reason;
        UpdatedAt = at.TruncateToMicroseconds();
        return true;
    }

    public bool Reinstate(string reason, DateTimeOffset at)
    {
        if (Status == RecipientStatus.Active)
        {
            return false;
        }

        Status = RecipientStatus.Active;
        StatusReason = reason;
        UpdatedAt = at.TruncateToMicroseconds();
        return true;
    }
}

public sealed class RecipientConfiguration : IEntityTypeConfiguration<Recipient>
{
    public void Configure(EntityTypeBuilder<Recipient> builder)
    {
        builder.ToTable("recipients");
        builder.HasIndex(r => r.ClientId).IsUnique();
        builder.Property(r => r.ClientId).HasMaxLength(100);
        builder.Property(r => r.DisplayName).HasMaxLength(RequestErrors.MaxNameLength);
        builder.Property(r => r.LegalName).HasMaxLength(RequestErrors.MaxNameLength);
        builder.Property(r => r.ContactEmail).HasMaxLength(RequestErrors.MaxEmailLength);
        builder.Property(r => r.StatusReason).HasMaxLength(RequestErrors.MaxReasonLength);
        builder.Property(r => r.PreviousSecretHash).HasMaxLength(500);
        builder.Property(r => r.DeliveryMode).HasConversion<string>().HasMaxLength(16);
        builder.Property(r => r.ClientAuthentication).HasConversion<string>().HasMaxLength(32);
        builder.Property(r => r.Status).HasConversion<string>().HasMaxLength(16);
    }
}
