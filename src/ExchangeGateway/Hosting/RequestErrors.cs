using System.Net.Mail;
using Microsoft.AspNetCore.Http.HttpResults;

namespace ExchangeGateway.Hosting;

/// <summary>Collects field errors of one request, so the client learns every fault at once in one 400 problem.</summary>
public sealed class RequestErrors
{
    private readonly Dictionary<string, List<string>> _errors = new(StringComparer.Ordinal);

    public bool Any => _errors.Count > 0;

    public void Add(string field, string message)
    {
        if (!_errors.TryGetValue(field, out var list))
        {
            _errors[field] = list = [];
        }

        list.Add(message);
    }

    public void Text(string field, string? value, int maxLength, bool required = true)
    {
        if (value is null || string.IsNullOrWhiteSpace(value))
        {
            if (required || value is not null)
            {
                Add(field, "Required.");
            }

            return;
        }

        if (value.Length > maxLength)
        {
            Add(field, $"At most {maxLength} characters.");
        }

        if (value.Any(char.IsControl))
        {
            Add(field, "Must not contain control characters.");
        }
    }

    /// <summary>
    /// A name seekers read (a site's boxes, receipts, consent pages): text, and no invisible formatting characters. A
    /// zero-width space made a second "Démo Emploi" the duplicate check could not see, and a bidirectional override turned
    /// the sentences around the name backwards.
    /// </summary>
    public void Name(string field, string? value)
    {
        Text(field, value, MaxNameLength);
        if (value is not null && value.Any(c => char.GetUnicodeCategory(c) == System.Globalization.UnicodeCategory.Format))
        {
            Add(field, "Must not contain invisible formatting characters (zero-width, bidirectional controls, soft hyphen).");
        }
    }

    public void WebUrl(string field, Uri? value, bool requireHttps, bool required = true)
    {
        if (value is null)
        {
            if (required)
            {
                Add(field, "Required.");
            }

            return;
        }

        if (!value.IsAbsoluteUri || (value.Scheme != Uri.UriSchemeHttps && value.Scheme != Uri.UriSchemeHttp))
        {
            Add(field, "Must be an absolute http(s) URL.");
        }
        else if (requireHttps && value.Scheme != Uri.UriSchemeHttps)
        {
            Add(field, "Must use https.");
        }
        else if (!string.IsNullOrEmpty(value.UserInfo))
        {
            // It would be shown to every seeker on the pages and receipts, and kept in the append-only trail.
            Add(field, "Must not carry a user name or password.");
        }
        else if (IsTooLong(value))
        {
            Add(field, $"At most {MaxUrlLength} characters.");
        }
    }

    /// <summary>What a URL column holds at most.</summary>
    public const int MaxUrlLength = 2000;

    /// <summary>A name (display, legal): what its column holds.</summary>
    public const int MaxNameLength = 200;

    /// <summary>A reason or description written by a person.</summary>
    public const int MaxReasonLength = 500;

    /// <summary>RFC 5321's limit on a forward path.</summary>
    public const int MaxEmailLength = 254;

    /// <summary>
    /// Whether an absolute URL is too long in any form it can be stored or shown in: escaping (AbsoluteUri) can triple a
    /// URL's length.
    /// </summary>
    public static bool IsTooLong(Uri absolute) =>
        Math.Max(absolute.OriginalString.Length, Math.Max(absolute.AbsoluteUri.Length, absolute.ToString().Length)) > MaxUrlLength;

    public void Email(string field, string? value)
    {
        Text(field, value, MaxEmailLength);
        if (!string.IsNullOrWhiteSpace(value) && (!MailAddress.TryCreate(value, out var address) || address.Address != value))
        {
            Add(field, "Must be an e-mail address.");
        }
    }

    public ProblemHttpResult ToProblem(string detail = "Some fields are invalid.") =>
        Problems.Validation(detail, _errors.ToDictionary(e => e.Key, e => e.Value.ToArray(), StringComparer.Ordinal));
}
