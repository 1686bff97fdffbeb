using ExchangeGateway.Auth;
using ExchangeGateway.Consents;
using ExchangeGateway.Cvs;
using ExchangeGateway.Data;
using ExchangeGateway.Events;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace ExchangeGateway.Pages.Sharing;

/// <summary>
/// "Partage": one checkbox per named site. Saving ticks and unticks through <see cref="ConsentDesk"/> (collection method
/// web), exactly as the API does, and shows the receipt of each change. The sites shared with are listed first, each with
/// its own "stop" button, so that withdrawing stays one click however many sites there are (promise 7).
/// </summary>
public sealed class IndexModel(
    GatewayDbContext db, ConsentDesk desk, IOptions<ConsentOptions> options, IOptions<FreshnessOptions> freshness, TimeProvider time)
    : PageModel
{
    // One receipt per site changed at once; the bound keeps the work a crafted query string can ask for small.
    private const int MaxReceiptsShown = 50;

    /// <summary>The sites the form showed: a site not shown (registered meanwhile) is left as it is.</summary>
    [BindProperty] public List<Guid> Shown { get; set; } = [];

    /// <summary>The ticked ones.</summary>
    [BindProperty] public List<Guid> Shared { get; set; } = [];

    /// <summary>
    /// The ones the form showed ticked. Only a box the seeker changed is acted on: one that lapsed (or was ended
    /// elsewhere) while the page was open, and is sent back still ticked, is not a new consent the seeker gave.
    /// </summary>
    [BindProperty] public List<Guid> WasShared { get; set; } = [];

    [BindProperty(SupportsGet = true, Name = "receipt")] public List<Guid> ReceiptIds { get; set; } = [];

    [BindProperty(SupportsGet = true, Name = "unchanged")] public bool Unchanged { get; set; }

    /// <summary>Changes saved beyond the receipts the redirect carries; each site's latest receipt stays under its name.</summary>
    [BindProperty(SupportsGet = true, Name = "more")] public int More { get; set; }

    /// <summary>Back from "still looking", pressed on this page's notice that the CV was offline.</summary>
    [BindProperty(SupportsGet = true, Name = "refreshed")] public bool Refreshed { get; set; }

    public IReadOnlyList<ConsentStatus> Sites { get; private set; } = [];

    public IReadOnlyList<ConsentReceipt> Receipts { get; private set; } = [];

    /// <summary>Sharings ended by a site's suspension, listed apart: the site is no longer offered.</summary>
    public IReadOnlyList<ConsentStatus> Suspended { get; private set; } = [];

    /// <summary>Whether any of those sites had received the CV, and so was asked to erase it: only then is there a request to follow.</summary>
    public bool SuspendedErasureRequested { get; private set; }

    /// <summary>Whether the ticked sites receive anything: not without a CV, nor while it is offline.</summary>
    public CvStanding Cv { get; private set; } = new(null);

    /// <summary>When a consent given today would lapse, for the "what you agree to" text.</summary>
    public DateTimeOffset NewConsentEnds { get; private set; }

    /// <summary>Who suspends sites: the controller named on the receipts.</summary>
    public string ControllerName => options.Value.ControllerName;

    public async Task OnGetAsync()
    {
        var seekerId = User.Subject();
        (Sites, Suspended) = await ConsentQueries.SharingsAsync(db, seekerId, time.GetUtcNow(), HttpContext.RequestAborted);
        NewConsentEnds = time.GetUtcNow() + options.Value.MaxAge;
        Cv = await CvStanding.ReadAsync(db, seekerId, freshness.Value, time.GetUtcNow(), HttpContext.RequestAborted);
        ViewData[CvStanding.ViewDataKey] = Cv;
        var suspended = Suspended.Select(s => s.Id).ToList();
        SuspendedErasureRequested = suspended.Count > 0
            && await Obligations.ErasureRequests(db).AnyAsync(o => suspended.Contains(o.ConsentId), HttpContext.RequestAborted);
        var receipts = new List<ConsentReceipt>();
        foreach (var id in ReceiptIds.Distinct().Take(MaxReceiptsShown))
        {
            if (await ConsentReceipt.FindAsync(db, seekerId, id, options.Value, HttpContext.RequestAborted) is { } receipt)
            {
                receipts.Add(receipt);
            }
        }

        Receipts = receipts;
    }

    public async Task<IActionResult> OnPostAsync()
    {
        var seekerId = User.Subject();
        var cancellationToken = HttpContext.RequestAborted;
        var current = (await ConsentQueries.SharingsAsync(db, seekerId, time.GetUtcNow(), cancellationToken)).Sites.ToDictionary(s => s.RecipientId);
        var changed = new List<Guid>();
        foreach (var siteId in Shown.Distinct())
        {
            if (!current.TryGetValue(siteId, out var site))
            {
                continue;
            }

            var wanted = Shared.Contains(siteId);
            if (wanted == WasShared.Contains(siteId) || wanted == site.IsActive)
            {
                continue;
            }

            var decision = wanted
                ? await desk.TickAsync(seekerId, siteId, CollectionMethod.Web, cancellationToken)
                : await desk.UntickAsync(seekerId, siteId, CollectionMethod.Web, cancellationToken);
            if (decision.Change is ConsentChange.Granted or ConsentChange.Revoked)
            {
                changed.Add(decision.Receipt!.Id);
            }
        }

        // A redirect naming every receipt of a few hundred changes passed the request line's 8 KB: the changes were saved
        // and the browser was shown a bare 414.
        return changed.Count == 0
            ? RedirectToPage(new { unchanged = true })
            : changed.Count <= MaxReceiptsShown
                ? RedirectToPage(new { receipt = changed })
                : RedirectToPage(new { receipt = changed.Take(MaxReceiptsShown), more = changed.Count - MaxReceiptsShown });
    }

    /// <summary>
    /// "Arrêter le partage avec X": the form with that one box unticked, so the same untick, receipt and redirect; a site
    /// no longer shared with (ended meanwhile, or a second click) is left as it is, as the form leaves it.
    /// </summary>
    public Task<IActionResult> OnPostStopAsync(Guid stop)
    {
        (Shown, Shared, WasShared) = ([stop], [], [stop]);
        return OnPostAsync();
    }
}
