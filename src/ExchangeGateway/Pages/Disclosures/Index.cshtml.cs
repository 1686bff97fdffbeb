using ExchangeGateway.Auth;
using ExchangeGateway.Cvs;
using ExchangeGateway.Data;
using ExchangeGateway.Hosting;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace ExchangeGateway.Pages.Disclosures;

/// <summary>"Qui a consulté mon CV": the disclosure ledger, newest first, by the query and cursors of GET /api/v1/me/disclosures.</summary>
public sealed class IndexModel(GatewayDbContext db, Cursors cursors) : PageModel
{
    private const int PageSize = 50;

    [BindProperty(SupportsGet = true, Name = "cursor")] public string? Cursor { get; set; }

    public IReadOnlyList<DisclosureItem> Items { get; private set; } = [];

    public string? Next { get; private set; }

    public async Task<IActionResult> OnGetAsync()
    {
        if (!cursors.TryDecode<long?>(MyDataQueries.DisclosuresCollection, Cursor, out var before))
        {
            return RedirectToPage();
        }

        var page = await cursors.PageAsync(MyDataQueries.DisclosuresCollection,
            MyDataQueries.DisclosuresBefore(db, User.Subject(), before), PageSize, d => d.Id, HttpContext.RequestAborted);
        Items = page.Items;
        Next = page.NextCursor;
        return Page();
    }
}
