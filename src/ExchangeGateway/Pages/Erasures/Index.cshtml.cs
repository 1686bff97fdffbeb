using ExchangeGateway.Auth;
using ExchangeGateway.Cvs;
using ExchangeGateway.Data;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Microsoft.EntityFrameworkCore;

namespace ExchangeGateway.Pages.Erasures;

/// <summary>"Mes demandes d'effacement": per site, the live status of every obligation (the query of GET /api/v1/me/erasures).</summary>
public sealed class IndexModel(GatewayDbContext db) : PageModel
{
    public IReadOnlyList<IGrouping<string, ErasureStatusItem>> BySite { get; private set; } = [];

    public async Task OnGetAsync()
    {
        var items = await MyDataQueries.ErasuresOf(db, User.Subject()).ToListAsync(HttpContext.RequestAborted);
        BySite = items.GroupBy(i => i.RecipientName).OrderBy(g => g.Key, StringComparer.CurrentCulture).ToList();
    }
}
