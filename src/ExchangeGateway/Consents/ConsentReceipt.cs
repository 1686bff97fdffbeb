using ExchangeGateway.Data;
using System.Text.Json.Serialization;
using Microsoft.EntityFrameworkCore;

namespace ExchangeGateway.Consents;

public sealed record ReceiptController(string Name, string Contact, Uri Url);

public sealed record ReceiptRecipient(Guid Id, string Name, Uri? Website);

/// <summary>
/// A consent receipt with the fields of Kantara Consent Receipt 1.1 / ISO/IEC TS 27560: who controls the data, who
/// receives it, for what purpose, which data, how the consent was collected, under which policy, and how it ends.
/// </summary>
public sealed record ConsentReceipt(
    Guid Id,
    Guid ReceiptId,
    string Version,
    string Event,
    DateTimeOffset Timestamp,
    string Jurisdiction,
    ReceiptController Controller,
    ReceiptRecipient Recipient,
    string Purpose,
    IReadOnlyList<string> DataCategories,
    string CollectionMethod,
    string PolicyUrl,
    string Termination,
    Guid ConsentId,
    DateTimeOffset? ExpiresAt)
{
    /// <summary>
    /// Whether the site is offered on the Partage page today, for the page's "to share again" (a suspended site is not); not
    /// part of the receipt, which records the event as it was.
    /// </summary>
    [JsonIgnore]
    public bool CanShareAgain { get; init; }

    /// <summary>
    /// Whether the site was asked to erase what this episode sent it, for the page's "follow the request" (none is made when
    /// the site never received the CV); not part of the receipt either.
    /// </summary>
    [JsonIgnore]
    public bool ErasureRequested { get; init; }

    public static async Task<ConsentReceipt?> FindAsync(GatewayDbContext db, string seekerId, Guid receiptId, ConsentOptions options, CancellationToken cancellationToken)
    {
        var requests = Events.Obligations.ErasureRequests(db);
        var found = await (
            from e in db.Set<ConsentEvent>().AsNoTracking()
            join c in db.Set<Consent>().AsNoTracking() on e.ConsentId equals c.Id
            join r in db.Recipients.AsNoTracking() on e.RecipientId equals r.Id
            where e.Id == receiptId && e.SeekerId == seekerId
            select new { Event = e, Consent = c, Recipient = r, ErasureRequested = requests.Any(o => o.ConsentId == c.Id) })
            .SingleOrDefaultAsync(cancellationToken);
        if (found is null)
        {
            return null;
        }

        var fact = found.Event;
        return new ConsentReceipt(
            fact.Id, fact.Id, "KI-CR-v1.1.0", fact.Kind.ToString().ToLowerInvariant(), fact.At, options.Jurisdiction,
            new ReceiptController(options.ControllerName, options.ControllerContact, options.ControllerUrl),
            new ReceiptRecipient(found.Recipient.Id, fact.RecipientName, fact.RecipientWebsite is { } website ? new Uri(website) : found.Recipient.Website),
            "recruitment",
            ["cv"],
            fact.CollectionMethod.ToString().ToLowerInvariant(),
            fact.PolicyUrl,
            TerminationOf(fact, found.Consent),
            fact.ConsentId,
            fact.Kind == ConsentEventKind.Granted ? found.Consent.ExpiresAt : null)
        {
            CanShareAgain = found.Recipient.Status == Recipients.RecipientStatus.Active,
            ErasureRequested = found.ErasureRequested,
        };
    }

    /// <summary>
    /// How the consent ends, as this receipt's event stands: the terms for a grant, and for an end when and why it ended
    /// (an end receipt telling the seeker how to untick, and when a consent that is over "lapses", would contradict itself).
    /// </summary>
    private static string TerminationOf(ConsentEvent fact, Consent consent)
    {
        static string When(DateTimeOffset at) => at.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", System.Globalization.CultureInfo.InvariantCulture);
        const string Told = " The site was told to delete its copy, if it had received one.";
        return fact.Kind switch
        {
            // The instant, not a UTC date: a date alone may be the day before the one the seeker's pages show in local time.
            ConsentEventKind.Granted => "Untick the site (or DELETE /api/v1/me/consents/{recipientId}) at any time; the consent also lapses at " +
                When(consent.ExpiresAt) + ". The site is then told to delete its copy.",
            ConsentEventKind.Revoked => $"Withdrawn by the data subject at {When(fact.At)}." + Told,
            ConsentEventKind.Expired => $"Lapsed at {When(fact.At)}, the end of the period it was given for." + Told,
            _ => consent.EndCause switch
            {
                ErasureCauses.RecipientSuspended => $"Ended at {When(fact.At)}: the controller suspended the recipient." + Told,
                ErasureCauses.SubjectErased => $"Ended at {When(fact.At)}: the data subject's CV was erased." + Told,
                _ => $"Ended at {When(fact.At)}." + Told,
            },
        };
    }
}
