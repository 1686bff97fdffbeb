using System.ComponentModel.DataAnnotations;

namespace ExchangeGateway.Audit;

public sealed class AuditOptions : IValidatableObject
{
    public const string Section = "Audit";

    /// <summary>Base64 key (at least 32 bytes) for the HMAC that turns seeker ids into the pseudonyms the log shows.</summary>
    [Required]
    public string PseudonymKey { get; set; } = "";

    /// <summary>Exports and verifications of the whole log running at once on one node; more are refused with a 429.</summary>
    [Range(1, 64)]
    public int MaxConcurrentScans { get; set; } = 2;

    /// <summary>
    /// Token requests refused for a client id nobody registered are recorded up to this many per caller address and minute;
    /// beyond that they are only counted (metric <c>exchange_gateway.tokens.refused</c>). Anyone can send them, and each row
    /// is kept forever and takes the chain lock every disclosure needs. Refusals naming a registered client are all recorded.
    /// </summary>
    [Range(0, 1_000_000)]
    public int UnknownClientRefusalsPerMinute { get; set; } = 30;

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        byte[]? key = null;
        try
        {
            key = Convert.FromBase64String(PseudonymKey);
        }
        catch (FormatException)
        {
        }

        if (key is null || key.Length < 32)
        {
            yield return new ValidationResult("Audit:PseudonymKey must be base64 for at least 32 random bytes.", [nameof(PseudonymKey)]);
        }
    }

    public byte[] PseudonymKeyBytes => Convert.FromBase64String(PseudonymKey);
}
