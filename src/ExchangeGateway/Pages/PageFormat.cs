using System.Globalization;
using Microsoft.Extensions.Localization;
using Microsoft.Extensions.Options;

namespace ExchangeGateway.Pages;

public sealed class PagesOptions
{
    public const string Section = "Pages";

    /// <summary>The time zone dates are shown in (an IANA id); the gateway stores UTC.</summary>
    public string TimeZone { get; set; } = "Europe/Paris";
}

/// <summary>Dates, numbers and plurals in the request's culture (set by the language switch).</summary>
public sealed class PageFormat(IStringLocalizer<PageText> text, IOptions<PagesOptions> options)
{
    private readonly TimeZoneInfo _zone = FindZone(options.Value.TimeZone);

    private static CultureInfo Culture => CultureInfo.CurrentCulture;

    public string Date(DateTimeOffset at) => Local(at).ToString("D", Culture);

    /// <summary>
    /// Date and time with the offset it is given in ("(UTC+1)"): a seeker abroad, or reading a receipt kept from before a
    /// change of summer time, can tell which 14:05 it was.
    /// </summary>
    public string DateTime(DateTimeOffset at)
    {
        var local = Local(at);
        return $"{local.ToString("f", Culture)} ({Offset(local.Offset)})";
    }

    internal static string Offset(TimeSpan offset)
    {
        if (offset == TimeSpan.Zero)
        {
            return "UTC";
        }

        var sign = offset < TimeSpan.Zero ? "−" : "+";
        var abs = offset.Duration();
        return abs.Minutes == 0 ? $"UTC{sign}{abs.Hours}" : $"UTC{sign}{abs.Hours}:{abs.Minutes:00}";
    }

    public string Number(long value) => value.ToString("N0", Culture);

    /// <summary>"{key}.One" or "{key}.Other", by the culture's plural rule, with the number formatted in that culture.</summary>
    public string Plural(string key, long count) =>
        text[IsOne(Culture, count) ? key + ".One" : key + ".Other", Number(count)];

    /// <summary>
    /// CLDR cardinal rules for the two languages served: French puts 0 and 1 in "one" ("0 jour", "1 jour"),
    /// English only 1 ("0 days", "1 day").
    /// </summary>
    public static bool IsOne(CultureInfo culture, long count) =>
        culture.TwoLetterISOLanguageName == "fr" ? count is 0 or 1 : count == 1;

    private DateTimeOffset Local(DateTimeOffset at) => TimeZoneInfo.ConvertTime(at, _zone);

    /// <summary>An instant in the pages' time zone, for texts outside a page (a reminder mail) that must show the same date.</summary>
    public static DateTimeOffset InZone(DateTimeOffset at, string zone) => TimeZoneInfo.ConvertTime(at, FindZone(zone));

    /// <summary>The zone by its id; <see cref="PagesOptions.TimeZone"/> is checked at start, so UTC only for a mail's stray id.</summary>
    private static TimeZoneInfo FindZone(string id) =>
        TimeZoneInfo.TryFindSystemTimeZoneById(id, out var zone) ? zone : TimeZoneInfo.Utc;

    internal static bool IsKnownZone(string? id) => id is not null && TimeZoneInfo.TryFindSystemTimeZoneById(id, out _);
}
