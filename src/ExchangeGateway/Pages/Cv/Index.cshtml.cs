using System.Text;
using System.Text.Json.Nodes;
using ExchangeGateway.Auth;
using ExchangeGateway.Cvs;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Microsoft.Extensions.Localization;
using Microsoft.Extensions.Options;

namespace ExchangeGateway.Pages.Cv;

/// <summary>"Mon CV": the form, the JSON Resume import and the freshness banner, all through <see cref="CvWriter"/>.</summary>
public sealed class IndexModel(
    CvWriter writer, ResumeDocument resume, IOptions<FreshnessOptions> freshness, TimeProvider time, IStringLocalizer<PageText> text, PageFormat format) : PageModel
{
    [BindProperty] public CvForm Form { get; set; } = new();

    [BindProperty] public IFormFile? Upload { get; set; }

    /// <summary>What the last action did (saved, refreshed, ...), shown once after the redirect.</summary>
    [BindProperty(SupportsGet = true, Name = "done")] public string? Done { get; set; }

    public CvResponse? Current { get; private set; }

    public int? DaysLeft { get; private set; }

    /// <summary>How many entries of each list section the stored CV has: those rows offer "remove" rather than being new.</summary>
    public Dictionary<string, int> StoredRows { get; } = [];

    /// <summary>What the stored CV holds beyond the form's fields (from an imported file), each of which can be removed.</summary>
    public IReadOnlyList<CvPart> OtherParts { get; private set; } = [];

    public async Task OnGetAsync()
    {
        var stored = await LoadAsync();
        Form = CvForm.From(stored, Current?.Version).WithBlankRows();
    }

    public async Task<IActionResult> OnPostSaveAsync()
    {
        var stored = await LoadAsync();
        if (!ModelState.IsValid)
        {
            Form.WithBlankRows();
            return Page();
        }

        if (Form.Version != Current?.Version)
        {
            return Conflict(stored);
        }

        var pointers = new Dictionary<string, string>(StringComparer.Ordinal);
        var document = Form.ApplyTo(stored, pointers);
        return await SaveAsync(Encoding.UTF8.GetBytes(document.ToJsonString()), errors =>
        {
            var fields = pointers.ToDictionary(p => p.Value, p => p.Key, StringComparer.Ordinal);
            foreach (var (pointer, messages) in errors)
            {
                var field = fields.GetValueOrDefault(pointer);
                ModelState.AddModelError(field ?? "", field is null ? Explain(pointer, messages) : text["Error.Invalid"]);
            }

            Form.WithBlankRows();
        }, stored);
    }

    /// <summary>"Add a line" works without script: the form comes back with what was typed and one more empty row.</summary>
    public async Task<IActionResult> OnPostAddRowAsync(string? section)
    {
        await LoadAsync();
        ModelState.Clear();
        Form.WithBlankRows(section);
        return Page();
    }

    public async Task<IActionResult> OnPostImportAsync()
    {
        var stored = await LoadAsync();
        ModelState.Clear();
        var limit = freshness.Value.MaxDocumentBytes;
        if (Upload is null || Upload.Length == 0)
        {
            return ImportError(stored, text["Cv.Import.Missing"]);
        }

        if (Upload.Length > limit)
        {
            return ImportError(stored, text["Cv.Import.TooLarge", format.Number(limit / 1024)]);
        }

        using var buffer = new MemoryStream();
        await Upload.CopyToAsync(buffer, HttpContext.RequestAborted);
        return await SaveAsync(buffer.ToArray(), errors =>
        {
            foreach (var (pointer, messages) in errors.Take(20))
            {
                ModelState.AddModelError(nameof(Upload), Explain(pointer, messages));
            }

            Form = CvForm.From(stored, Current?.Version).WithBlankRows();
        }, stored, importing: true);
    }

    /// <summary>
    /// A problem the validator found, in the person's words: where it is, and what a JSON Resume expects there. The
    /// validator's own messages (the API's) are English and technical, so the page does not pass them on.
    /// </summary>
    private string Explain(string pointer, string[] messages) => pointer switch
    {
        // Too large as stored: said as such, since the form's save (which adds to what the CV holds) can be the cause.
        ResumeDocument.WholeDocument when messages.Any(ResumeDocument.SaysTooLarge) => text["Cv.TooLarge"],
        ResumeDocument.WholeDocument => text["Cv.Unreadable"],
        _ => text["Cv.FieldInvalid", pointer],
    };

    /// <summary>
    /// "Still looking". Pressed on a page that said the CV was offline (Partage, a site's question), it goes back there, where
    /// the seeker was deciding: on a site's question, landing here would drop the site's request.
    /// </summary>
    public async Task<IActionResult> OnPostRefreshAsync(string? returnUrl)
    {
        var result = await writer.RefreshAsync(User.Subject(), HttpContext.RequestAborted);
        if (result.Outcome == CvWriteOutcome.NotFound)
        {
            return RedirectToPage(new { done = "nothing" });
        }

        return Url.IsLocalUrl(returnUrl) ? LocalRedirect(returnUrl) : RedirectToPage(new { done = "refreshed" });
    }

    private async Task<IActionResult> SaveAsync(byte[] body, Action<Dictionary<string, string[]>> showErrors, JsonObject? stored, bool importing = false)
    {
        var (document, errors) = resume.Validate(body, time.GetUtcNow());
        if (document is null)
        {
            showErrors(errors!);
            return Page();
        }

        var result = await writer.SaveAsync(
            User.Subject(), document, importing || Current is null ? null : [Current.Version], ifMatchAny: false, HttpContext.RequestAborted);
        return result.Outcome == CvWriteOutcome.PreconditionFailed
            ? Conflict(stored)
            : RedirectToPage(new { done = importing ? "imported" : "saved" });
    }

    private PageResult Conflict(JsonObject? stored)
    {
        ModelState.Clear();
        ModelState.AddModelError("", text["Cv.Conflict"]);
        Form = CvForm.From(stored, Current?.Version).WithBlankRows();
        return Page();
    }

    private PageResult ImportError(JsonObject? stored, string message)
    {
        ModelState.AddModelError(nameof(Upload), message);
        Form = CvForm.From(stored, Current?.Version).WithBlankRows();
        return Page();
    }

    private async Task<JsonObject?> LoadAsync()
    {
        var now = time.GetUtcNow();
        var found = await writer.ReadAsync(User.Subject(), HttpContext.RequestAborted);
        Current = CvStanding.Of(found, freshness.Value, now);
        if (Current is null || found is not { } cv)
        {
            return null;
        }

        // Published only: a node whose clock ran a few seconds ahead may have taken it offline just before its date.
        if (Current.State == CvState.Published && Current.OfflineAt is { } offline && offline > now)
        {
            DaysLeft = (int)Math.Ceiling((offline - now).TotalDays);
        }

        var document = cv.Document is null ? null : JsonNode.Parse(cv.Document) as JsonObject;
        foreach (var section in (string[])["work", "education", "skills", "languages"])
        {
            StoredRows[section] = document?[section] is JsonArray array ? array.Count : 0;
        }

        OtherParts = CvForm.OtherParts(document);

        return document;
    }
}
