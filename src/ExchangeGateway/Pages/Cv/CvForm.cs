using System.ComponentModel.DataAnnotations;
using System.Text.Json.Nodes;

namespace ExchangeGateway.Pages.Cv;

/// <summary>
/// The main JSON Resume sections as form fields. The form edits the stored document in place: sections and fields it does
/// not show (projects, highlights, ...) are kept as they are, so importing a full JSON Resume and then editing loses nothing.
/// </summary>
public sealed class CvForm
{
    // The JSON Resume schema's own date pattern (iso8601: YYYY, YYYY-MM or YYYY-MM-DD).
    public const string DatePattern = "^([1-2][0-9]{3}-[0-1][0-9]-[0-3][0-9]|[1-2][0-9]{3}-[0-1][0-9]|[1-2][0-9]{3})$";

    /// <summary>The version the form was filled from; saving another one would overwrite a change made elsewhere.</summary>
    public int? Version { get; set; }

    [Required(ErrorMessage = "Error.NameRequired"), StringLength(200, ErrorMessage = "Error.TooLong")]
    public string? Name { get; set; }

    [StringLength(200, ErrorMessage = "Error.TooLong")] public string? Label { get; set; }
    [EmailAddress(ErrorMessage = "Error.Email"), StringLength(254, ErrorMessage = "Error.TooLong")] public string? Email { get; set; }
    [StringLength(50, ErrorMessage = "Error.TooLong")] public string? Phone { get; set; }
    [Url(ErrorMessage = "Error.Url"), StringLength(2000, ErrorMessage = "Error.TooLong")] public string? Url { get; set; }
    [StringLength(200, ErrorMessage = "Error.TooLong")] public string? City { get; set; }
    [RegularExpression("^[A-Za-z]{2}$", ErrorMessage = "Error.CountryCode")] public string? CountryCode { get; set; }
    [StringLength(5000, ErrorMessage = "Error.TooLong")] public string? Summary { get; set; }

    public List<WorkRow> Work { get; set; } = [];
    public List<EducationRow> Education { get; set; } = [];
    public List<SkillRow> Skills { get; set; } = [];
    public List<LanguageRow> Languages { get; set; } = [];

    /// <summary>The parts of the stored CV the form does not show (<see cref="OtherParts"/>) that the seeker ticked to remove.</summary>
    public List<string> RemoveParts { get; set; } = [];

    // meta (when the CV was last modified, and the like) is the file's, not the seeker's: the gateway itself writes it.
    private static readonly HashSet<string> ShownSections = ["basics", "work", "education", "skills", "languages", "$schema", "meta"];
    // The form's fields in basics and basics.location, by form property and JSON member: what the page edits, hence not
    // among the "other parts", and where a schema finding about them is shown.
    private static readonly (string Field, string Json)[] BasicsFields =
        [("Name", "name"), ("Label", "label"), ("Email", "email"), ("Phone", "phone"), ("Url", "url"), ("Summary", "summary")];

    private static readonly (string Field, string Json)[] LocationFields = [("City", "city"), ("CountryCode", "countryCode")];
    private static readonly HashSet<string> ShownBasics = [.. BasicsFields.Select(f => f.Json), "location"];
    private static readonly HashSet<string> ShownLocation = [.. LocationFields.Select(f => f.Json)];

    /// <summary>
    /// What the stored CV holds beyond the form's fields, as an imported JSON Resume brings it (projects, references, a
    /// photo, profiles, a street address...): shared with the sites like the rest, so listed on the page, where each can be
    /// taken out. By JSON pointer, in the document's order.
    /// </summary>
    public static IReadOnlyList<CvPart> OtherParts(JsonObject? document)
    {
        var parts = new List<CvPart>();
        foreach (var (key, value) in document ?? [])
        {
            if (!ShownSections.Contains(key))
            {
                parts.Add(new CvPart("/" + Escape(key), key, value));
            }
        }

        if (document?["basics"] is JsonObject basics)
        {
            foreach (var (key, value) in basics)
            {
                if (!ShownBasics.Contains(key))
                {
                    parts.Add(new CvPart("/basics/" + Escape(key), key, value));
                }
            }

            if (basics["location"] is JsonObject location)
            {
                foreach (var (key, value) in location)
                {
                    if (!ShownLocation.Contains(key))
                    {
                        parts.Add(new CvPart("/basics/location/" + Escape(key), key, value));
                    }
                }
            }
        }

        return parts;

        // RFC 6901: "~" and "/" in a member name.
        static string Escape(string key) => key.Replace("~", "~0", StringComparison.Ordinal).Replace("/", "~1", StringComparison.Ordinal);
    }

    public static CvForm From(JsonObject? document, int? version)
    {
        var basics = document?["basics"] as JsonObject;
        var location = basics?["location"] as JsonObject;
        return new CvForm
        {
            Version = version,
            Name = Text(basics, "name"),
            Label = Text(basics, "label"),
            Email = Text(basics, "email"),
            Phone = Text(basics, "phone"),
            Url = Text(basics, "url"),
            City = Text(location, "city"),
            CountryCode = Text(location, "countryCode"),
            Summary = Text(basics, "summary"),
            Work = Rows(document, "work", o => new WorkRow
            {
                Name = Text(o, "name"), Position = Text(o, "position"), StartDate = Text(o, "startDate"), EndDate = Text(o, "endDate"), Summary = Text(o, "summary"),
            }),
            Education = Rows(document, "education", o => new EducationRow
            {
                Institution = Text(o, "institution"), Area = Text(o, "area"), StudyType = Text(o, "studyType"), StartDate = Text(o, "startDate"), EndDate = Text(o, "endDate"),
            }),
            Skills = Rows(document, "skills", o => new SkillRow
            {
                Name = Text(o, "name"), Level = Text(o, "level"),
                Keywords = KeywordLines(o),
            }),
            Languages = Rows(document, "languages", o => new LanguageRow { Language = Text(o, "language"), Fluency = Text(o, "fluency") }),
        };
    }

    /// <summary>One empty row at the end of each list, where a new entry is typed.</summary>
    public CvForm WithBlankRows(string? growSection = null)
    {
        Pad(Work, growSection == "work");
        Pad(Education, growSection == "education");
        Pad(Skills, growSection == "skills");
        Pad(Languages, growSection == "languages");
        return this;
    }

    /// <summary>
    /// Writes the form into (a copy of) the stored document. Rows that were in the document stay unless marked for removal;
    /// blank new rows are ignored. <paramref name="rowPointers"/> maps each form field to its JSON pointer, so that the
    /// schema's findings can be shown next to the field they concern.
    /// </summary>
    public JsonObject ApplyTo(JsonObject? stored, Dictionary<string, string> rowPointers)
    {
        var document = stored?.DeepClone().AsObject() ?? [];
        var basics = document["basics"] as JsonObject ?? [];
        Set(basics, "name", Name);
        Set(basics, "label", Label);
        Set(basics, "email", Email);
        Set(basics, "phone", Phone);
        Set(basics, "url", Url);
        Set(basics, "summary", Summary);
        var location = basics["location"] as JsonObject ?? [];
        Set(location, "city", City);
        Set(location, "countryCode", CountryCode?.ToUpperInvariant());
        Attach(basics, "location", location);
        Attach(document, "basics", basics);
        foreach (var (field, json) in BasicsFields)
        {
            rowPointers[$"Form.{field}"] = "/basics/" + json;
        }

        foreach (var (field, json) in LocationFields)
        {
            rowPointers[$"Form.{field}"] = "/basics/location/" + json;
        }

        Merge(document, "work", nameof(Work), Work, rowPointers, (o, r) =>
        {
            Set(o, "name", r.Name); Set(o, "position", r.Position); Set(o, "startDate", r.StartDate); Set(o, "endDate", r.EndDate); Set(o, "summary", r.Summary);
        }, ("Name", "name"), ("Position", "position"), ("StartDate", "startDate"), ("EndDate", "endDate"), ("Summary", "summary"));
        Merge(document, "education", nameof(Education), Education, rowPointers, (o, r) =>
        {
            Set(o, "institution", r.Institution); Set(o, "area", r.Area); Set(o, "studyType", r.StudyType); Set(o, "startDate", r.StartDate); Set(o, "endDate", r.EndDate);
        }, ("Institution", "institution"), ("Area", "area"), ("StudyType", "studyType"), ("StartDate", "startDate"), ("EndDate", "endDate"));
        Merge(document, "skills", nameof(Skills), Skills, rowPointers, (o, r) =>
        {
            Set(o, "name", r.Name); Set(o, "level", r.Level);
            // Untouched lines keep the stored array as it was (a keyword imported with a line break in it stays one keyword).
            if (KeywordLines(o) == Normalised(r.Keywords))
            {
                return;
            }

            var keywords = Normalised(r.Keywords)?.Split('\n') ?? [];
            if (keywords.Length == 0)
            {
                o.Remove("keywords");
            }
            else
            {
                o["keywords"] = new JsonArray([.. keywords.Select(k => (JsonNode)JsonValue.Create(k))]);
            }
        }, ("Name", "name"), ("Level", "level"), ("Keywords", "keywords"));
        Merge(document, "languages", nameof(Languages), Languages, rowPointers, (o, r) =>
        {
            Set(o, "language", r.Language); Set(o, "fluency", r.Fluency);
        }, ("Language", "language"), ("Fluency", "fluency"));

        // Only a part the page listed (so nothing the form shows, whatever a crafted post names).
        var removable = OtherParts(stored).ToDictionary(p => p.Path, StringComparer.Ordinal);
        foreach (var pointer in RemoveParts.Distinct(StringComparer.Ordinal).Where(removable.ContainsKey))
        {
            var segments = pointer.Split('/')[1..].Select(k => k.Replace("~1", "/", StringComparison.Ordinal).Replace("~0", "~", StringComparison.Ordinal)).ToArray();
            var parent = segments[..^1].Aggregate((JsonNode?)document, (node, key) => node?[key]) as JsonObject;
            parent?.Remove(segments[^1]);
        }

        if (document["basics"] is JsonObject keptBasics)
        {
            if (keptBasics["location"] is JsonObject keptLocation)
            {
                Attach(keptBasics, "location", keptLocation);
            }

            Attach(document, "basics", keptBasics);
        }

        return document;
    }

    private static void Merge<TRow>(
        JsonObject document, string section, string property, List<TRow> rows, Dictionary<string, string> rowPointers,
        Action<JsonObject, TRow> write, params (string Field, string Json)[] fields) where TRow : CvRow
    {
        var stored = document[section] as JsonArray;
        var merged = new JsonArray();
        for (var i = 0; i < rows.Count; i++)
        {
            var row = rows[i];
            var existing = stored is not null && i < stored.Count ? stored[i] as JsonObject : null;
            if (existing is null ? row.IsBlank : row.Remove)
            {
                continue;
            }

            var entry = existing?.DeepClone().AsObject() ?? [];
            write(entry, row);
            if (entry.Count == 0)
            {
                continue;
            }

            foreach (var (field, json) in fields)
            {
                rowPointers[$"Form.{property}[{i}].{field}"] = $"/{section}/{merged.Count}/{json}";
            }

            merged.Add(entry);
        }

        // Entries beyond the rows the form showed (none, when the version matched) are not the form's to drop.
        for (var i = rows.Count; stored is not null && i < stored.Count; i++)
        {
            merged.Add(stored[i]?.DeepClone());
        }

        Attach(document, section, merged);
    }

    private static void Pad<TRow>(List<TRow> rows, bool grow) where TRow : CvRow, new()
    {
        if (rows.Count == 0 || !rows[^1].IsBlank || grow)
        {
            rows.Add(new TRow());
        }
    }

    private static List<TRow> Rows<TRow>(JsonObject? document, string section, Func<JsonObject, TRow> read) where TRow : CvRow =>
        document?[section] is JsonArray array ? [.. array.Select(n => n is JsonObject o ? read(o) : null).OfType<TRow>()] : [];

    // One keyword per line: keywords are phrases that may contain commas ("Office (Word, Excel)"), never line breaks.
    private static string? KeywordLines(JsonObject o) =>
        o["keywords"] is JsonArray keywords ? Normalised(string.Join('\n', keywords.Select(k => Text(k)).OfType<string>())) : null;

    private static string? Normalised(string? lines)
    {
        var kept = (lines ?? "").Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        return kept.Length == 0 ? null : string.Join('\n', kept);
    }

    private static string? Text(JsonObject? o, string key) => Text(o?[key]);

    private static string? Text(JsonNode? node) => node is JsonValue value && value.TryGetValue<string>(out var text) ? text : null;

    private static void Set(JsonObject o, string key, string? value)
    {
        if (string.IsNullOrWhiteSpace(value))
        {
            o.Remove(key);
        }
        else
        {
            o[key] = value.Trim();
        }
    }

    private static void Attach(JsonObject parent, string key, JsonNode child)
    {
        if (child is JsonObject { Count: 0 } or JsonArray { Count: 0 })
        {
            parent.Remove(key);
        }
        else if (!ReferenceEquals(parent[key], child))
        {
            parent[key] = child;
        }
    }
}

/// <summary>A part of the CV the form does not show: where it is, its JSON Resume name, and its content.</summary>
public sealed record CvPart(string Path, string Key, JsonNode? Value)
{
    /// <summary>A line of the content for the page: a text as it is (cut), a list by its count, an object by its texts.</summary>
    public string Preview(Func<int, string> entries)
    {
        var text = Value switch
        {
            JsonArray array => entries(array.Count),
            JsonObject o => string.Join(", ", o.Select(p => p.Value).OfType<JsonValue>().Select(v => v.ToString()).Where(v => v.Length > 0)),
            JsonValue v => v.ToString(),
            _ => "",
        };
        if (text.Length <= 80)
        {
            return text;
        }

        // Not between the two halves of a surrogate pair (an emoji).
        var cut = char.IsHighSurrogate(text[78]) ? 78 : 79;
        return text[..cut] + "…";
    }
}

public abstract class CvRow
{
    /// <summary>Ticked on a stored entry: take it out of the CV.</summary>
    public bool Remove { get; set; }

    public abstract bool IsBlank { get; }

    protected static bool Blank(params string?[] values) => values.All(string.IsNullOrWhiteSpace);
}

public sealed class WorkRow : CvRow
{
    [StringLength(200, ErrorMessage = "Error.TooLong")] public string? Name { get; set; }
    [StringLength(200, ErrorMessage = "Error.TooLong")] public string? Position { get; set; }
    [RegularExpression(CvForm.DatePattern, ErrorMessage = "Error.Date")] public string? StartDate { get; set; }
    [RegularExpression(CvForm.DatePattern, ErrorMessage = "Error.Date")] public string? EndDate { get; set; }
    [StringLength(5000, ErrorMessage = "Error.TooLong")] public string? Summary { get; set; }
    public override bool IsBlank => Blank(Name, Position, StartDate, EndDate, Summary);
}

public sealed class EducationRow : CvRow
{
    [StringLength(200, ErrorMessage = "Error.TooLong")] public string? Institution { get; set; }
    [StringLength(200, ErrorMessage = "Error.TooLong")] public string? Area { get; set; }
    [StringLength(200, ErrorMessage = "Error.TooLong")] public string? StudyType { get; set; }
    [RegularExpression(CvForm.DatePattern, ErrorMessage = "Error.Date")] public string? StartDate { get; set; }
    [RegularExpression(CvForm.DatePattern, ErrorMessage = "Error.Date")] public string? EndDate { get; set; }
    public override bool IsBlank => Blank(Institution, Area, StudyType, StartDate, EndDate);
}

public sealed class SkillRow : CvRow
{
    [StringLength(200, ErrorMessage = "Error.TooLong")] public string? Name { get; set; }
    [StringLength(200, ErrorMessage = "Error.TooLong")] public string? Level { get; set; }
    [StringLength(1000, ErrorMessage = "Error.TooLong")] public string? Keywords { get; set; }
    public override bool IsBlank => Blank(Name, Level, Keywords);
}

public sealed class LanguageRow : CvRow
{
    [StringLength(100, ErrorMessage = "Error.TooLong")] public string? Language { get; set; }
    [StringLength(100, ErrorMessage = "Error.TooLong")] public string? Fluency { get; set; }
    public override bool IsBlank => Blank(Language, Fluency);
}
