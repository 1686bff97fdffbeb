using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Json.Schema;

namespace ExchangeGateway.Cvs;

/// <summary>
/// The JSON Resume schema (jsonresume.org, MIT licence, shipped in this folder) and the rules the gateway adds:
/// an object at the top, bounded depth, at most <see cref="FreshnessOptions.MaxDocumentBytes"/> as stored, and
/// <c>meta.lastModified</c> owned by the server.
/// </summary>
public sealed class ResumeDocument
{
    /// <summary>Places (JSON pointers) listed in a validation answer; the rest are counted.</summary>
    private const int MaxErrorPlaces = 50;

    public const int MaxDepth = 32;

    // Stored as written, but for the escapes JSON requires: the default encoder would turn each '<' or non-ASCII letter into
    // a six-byte escape, and a document within the limit as sent could be six times over it as stored. What is stored is
    // served as JSON and shown through HTML encoding, never placed raw in a page.
    private static readonly JsonSerializerOptions Stored = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>The JSON pointer of the whole document (RFC 6901), where faults of the document as a whole are reported.</summary>
    public const string WholeDocument = "";

    private const string TooLargeText = "The CV is larger than the limit";

    private static Dictionary<string, string[]> UnpairedSurrogate() =>
        new() { [WholeDocument] = ["A string holds an escape that is not a character (an unpaired surrogate)."] };

    /// <summary>Whether a message of the whole document's is the size refusal (as stored: a form's save can grow it past the limit).</summary>
    public static bool SaysTooLarge(string message) => message.StartsWith(TooLargeText, StringComparison.Ordinal);

    private readonly JsonSchema _schema;
    private readonly int _maxBytes;

    public ResumeDocument(Microsoft.Extensions.Options.IOptions<FreshnessOptions> options)
    {
        _maxBytes = options.Value.MaxDocumentBytes;
        using var stream = typeof(ResumeDocument).Assembly.GetManifestResourceStream("ExchangeGateway.Cvs.resume.schema.json")
            ?? throw new InvalidOperationException("The JSON Resume schema is not embedded.");
        using var reader = new StreamReader(stream, Encoding.UTF8);
        // A registry of its own: the global one refuses a second schema with the same $id, so a second instance in the
        // process (another host, as in tests) would otherwise fail to build it.
        _schema = JsonSchema.FromText(reader.ReadToEnd(), new BuildOptions { SchemaRegistry = new SchemaRegistry() });
    }

    private static string? FirstControlCharacter(JsonNode? node) => node switch
    {
        JsonObject o => o.Select(p => p.Key.Any(IsForbidden) ? Pointer(o) : FirstControlCharacter(p.Value)).FirstOrDefault(p => p is not null),
        JsonArray a => a.Select(FirstControlCharacter).FirstOrDefault(p => p is not null),
        JsonValue v when v.TryGetValue<string>(out var text) && text.Any(IsForbidden) => Pointer(v),
        _ => null,
    };

    private static bool IsForbidden(char c) => char.IsControl(c) && c is not ('\t' or '\n' or '\r');

    /// <summary>
    /// The node's JSON pointer, built from its parents (RFC 6901: "~" and "/" in a name escaped): read back from the node's
    /// path text, a name holding ".", "/" or "~" pointed somewhere else.
    /// </summary>
    private static string Pointer(JsonNode node)
    {
        var steps = new Stack<string>();
        for (var current = node; current.Parent is { } parent; current = parent)
        {
            steps.Push(parent is JsonArray
                ? current.GetElementIndex().ToString(System.Globalization.CultureInfo.InvariantCulture)
                : current.GetPropertyName().Replace("~", "~0", StringComparison.Ordinal).Replace("/", "~1", StringComparison.Ordinal));
        }

        return string.Concat(steps.Select(step => "/" + step));
    }

    /// <summary>Parses and validates; returns the normalised document bytes or the problems found, by JSON pointer.</summary>
    public (byte[]? Document, Dictionary<string, string[]>? Errors) Validate(ReadOnlySpan<byte> utf8, DateTimeOffset now)
    {
        // A file saved by Notepad, PowerShell 5 or Visual Studio starts with a UTF-8 byte order mark, which the parser
        // refuses; RFC 8259 §8.1 lets a reader ignore it, and a seeker importing such a file should not be told it is not JSON.
        if (utf8.StartsWith("\uFEFF"u8))
        {
            utf8 = utf8[3..];
        }

        if (!System.Text.Unicode.Utf8.IsValid(utf8))
        {
            return (null, new Dictionary<string, string[]> { [WholeDocument] = ["The body is not valid UTF-8."] });
        }

        JsonNode? node;
        try
        {
            // Duplicate names are refused here: later steps (the schema, the object's own enumeration) disagree on which wins.
            node = JsonNode.Parse(utf8, documentOptions: new JsonDocumentOptions { MaxDepth = MaxDepth, AllowDuplicateProperties = false });
        }
        catch (JsonException e)
        {
            return (null, new Dictionary<string, string[]> { [WholeDocument] = [$"Not valid JSON: {e.Message}"] });
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException)
        {
            // In a property name, the parser finds it.
            return (null, UnpairedSurrogate());
        }

        if (node is not JsonObject document)
        {
            return (null, new Dictionary<string, string[]> { [WholeDocument] = ["A JSON Resume document is a JSON object."] });
        }

        string text;
        try
        {
            text = document.ToJsonString(Stored);
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException)
        {
            // In a value, the parser leaves an escape such as a lone "\ud800" as it is; only writing the text finds it.
            return (null, UnpairedSurrogate());
        }

        using (var parsed = JsonDocument.Parse(text))
        {
            var results = _schema.Evaluate(parsed.RootElement, new EvaluationOptions { OutputFormat = OutputFormat.List, RequireFormatValidation = true });
            if (!results.IsValid)
            {
                // The first places only: a 256 KiB array of wrong items has a hundred thousand, and a 9 MB answer (built in
                // memory first) is a cheap way to spend the gateway's CPU and bandwidth.
                var failing = (results.Details ?? [])
                    .Where(d => d.Errors is { Count: > 0 })
                    .GroupBy(d => d.InstanceLocation.ToString())
                    .ToList();
                var errors = failing.Take(MaxErrorPlaces).ToDictionary(g => g.Key, g => g.SelectMany(d => d.Errors!.Values).Distinct().Take(5).ToArray());
                if (failing.Count > MaxErrorPlaces)
                {
                    errors[WholeDocument] = [.. errors.GetValueOrDefault(WholeDocument) ?? [], $"… and {failing.Count - MaxErrorPlaces} more places that do not follow the schema."];
                }

                return (null, errors.Count > 0 ? errors : new Dictionary<string, string[]> { [WholeDocument] = ["The document does not follow the JSON Resume schema."] });
            }
        }

        if (FirstControlCharacter(document) is { } where)
        {
            return (null, new Dictionary<string, string[]> { [where] = ["Control characters (other than tab and line breaks) are not allowed."] });
        }

        if (document["meta"] is not JsonObject meta)
        {
            document["meta"] = meta = [];
        }

        meta["lastModified"] = now.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", System.Globalization.CultureInfo.InvariantCulture);
        var stored = Encoding.UTF8.GetBytes(document.ToJsonString(Stored));
        // Checked on what is stored, for every way in: the web form adds to what it keeps, and the feed's memory bound
        // (a page of documents held until recorded) rests on this limit.
        return stored.Length > _maxBytes
            ? (null, new Dictionary<string, string[]> { [WholeDocument] = [$"{TooLargeText} of {_maxBytes / 1024} KiB as stored."] })
            : (stored, null);
    }
}
