using ExchangeGateway.Auth;
using ExchangeGateway.Cvs;
using ExchangeGateway.Data;
using ExchangeGateway.Hosting;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace ExchangeGateway.Pages.Erasures;

/// <summary>
/// "Mes demandes d'effacement": per site, the live status of every obligation, newest first, by the query and cursors of
/// GET /api/v1/me/erasures, a page at a time.
/// </summary>
public sealed class IndexModel(GatewayDbContext db, Cursors cursors, TimeProvider time) : PageModel
{
    private const int PageSize = 100;

    [BindProperty(SupportsGet = true, Name = "cursor")] public string? Cursor { get; set; }

    /// <summary>Grouped by site, not by name: two sites may carry the same name.</summary>
    public IReadOnlyList<IGrouping<Guid, ErasureStatusItem>> BySite { get; private set; } = [];

    public string? Next { get; private set; }

    public async Task<IActionResult> OnGetAsync()
    {
        if (!cursors.TryDecode<long?>(MyDataQueries.ErasuresCollection, Cursor, out var before))
        {
            return RedirectToPage();
        }

        var page = await cursors.PageAsync(MyDataQueries.ErasuresCollection,
            MyDataQueries.ErasuresOf(db, User.Subject(), time.GetUtcNow(), before), PageSize, e => e.Id, HttpContext.RequestAborted);
        BySite = page.Items.GroupBy(i => i.RecipientId).OrderBy(g => g.First().RecipientName, StringComparer.CurrentCulture).ToList();
        Next = page.NextCursor;
        return Page();
    }
}
