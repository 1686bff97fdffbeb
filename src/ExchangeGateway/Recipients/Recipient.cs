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

    /// <summary>
    /// Moves on when a rotation retires every credential the site had: its access tokens carry the generation they were
    /// issued under (<see cref="CredentialClaim"/>), and the gate refuses an older one. Without it a leaked secret's tokens
    /// kept reading CVs for their remaining lifetime after the operator had rotated the secret away.
    /// </summary>
    public int CredentialGeneration { get; private set; }

    /// <summary>The access-token claim holding <see cref="CredentialGeneration"/> at issue.</summary>
    public const string CredentialClaim = "eg_cred";

    public bool IsActive => Status == RecipientStatus.Active;

    /// <summary>Whether a token carrying this generation (null: issued before tokens carried one) may still act for the site.</summary>
    public bool Honours(int? tokenGeneration) => (tokenGeneration ?? 0) >= CredentialGeneration;

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
        // With a grace period the old secret still gets tokens, so refusing those it already got would protect nothing.
        if (grace <= TimeSpan.Zero)
        {
            CredentialGeneration++;
        }

        UpdatedAt = at;
    }

    /// <summary>
    /// The site's public keys replaced. A set that drops a key retires it, and every token the site got before: which key
    /// a token was got with is not known, and the dropped one may be the leaked one. A set that only adds keys (the first
    /// half of a changeover) leaves the tokens to run out.
    /// </summary>
    public void KeysRotated(bool droppedAKey, DateTimeOffset at)
    {
        if (ClientAuthentication != ClientAuthentication.PrivateKeyJwt)
        {
            throw new InvalidOperationException("Only a key-authenticated recipient has keys to rotate.");
        }

        if (droppedAKey)
        {
            CredentialGeneration++;
        }

        UpdatedAt = at.TruncateToMicroseconds();
    }

    /// <summary>
    /// Applies the fields given (null: unchanged) and returns the names of those that really changed: an edit re-sending
    /// what is already there changes nothing, not even <see cref="UpdatedAt"/>, so the trail records only real changes.
    /// </summary>
    public IReadOnlyList<string> Edit(
        string? displayName, string? legalName, Uri? website, Uri? privacyPolicyUrl, string? contactEmail,
        DeliveryMode? deliveryMode, Uri? pushEndpoint, DateTimeOffset at)
    {
        var mode = deliveryMode ?? DeliveryMode;
        var endpoint = mode == DeliveryMode.Push ? pushEndpoint ?? PushEndpoint : null;
        if (mode == DeliveryMode.Push && endpoint is null)
        {
            throw new ArgumentException("A push recipient needs a push endpoint.", nameof(pushEndpoint));
        }

        var changed = new List<string>();
        void Set<T>(string field, T current, T? wanted, Action<T> apply, Func<T, T, bool> same)
        {
            if (wanted is not null && (current is null || !same(current, wanted)))
            {
                apply(wanted);
                changed.Add(field);
            }
        }

        // AbsoluteUri, not Uri.Equals, which ignores the user info and the fragment.
        static bool SameUri(Uri a, Uri b) => a.AbsoluteUri == b.AbsoluteUri;
        Set("displayName", DisplayName, displayName, v => DisplayName = v, string.Equals);
        Set("legalName", LegalName, legalName, v => LegalName = v, string.Equals);
        Set("website", Website, website, v => Website = v, SameUri);
        Set("privacyPolicyUrl", PrivacyPolicyUrl, privacyPolicyUrl, v => PrivacyPolicyUrl = v, SameUri);
        Set("contactEmail", ContactEmail, contactEmail, v => ContactEmail = v, string.Equals);
        if (mode != DeliveryMode)
        {
            DeliveryMode = mode;
            changed.Add("deliveryMode");
        }

        if (endpoint?.AbsoluteUri != PushEndpoint?.AbsoluteUri)
        {
            PushEndpoint = endpoint;
            changed.Add("pushEndpoint");
        }

        if (changed.Count > 0)
        {
            UpdatedAt = at.TruncateToMicroseconds();
        }

        return changed;
    }

    /// <summary>A change kept outside this row (the OAuth client's redirect URIs) dates the site's description too.</summary>
    public void Touch(DateTimeOffset at) => UpdatedAt = at.TruncateToMicroseconds();

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
