using ExchangeGateway.Data;
using ExchangeGateway.Events;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace ExchangeGateway.Pages;

/// <summary>
/// One erasure request, for whoever holds its site and event ids (the lines of an erasure receipt link here): the page a
/// seeker without an account left follows the sites on. Open to all, as GET /api/v1/erasure-requests/{site}/{event}.
/// </summary>
public sealed class ErasureRequestModel(GatewayDbContext db, TimeProvider time) : PageModel
{
    public ErasureRequestStatus Status { get; private set; } = null!;

    public async Task<IActionResult> OnGetAsync(Guid recipientId, Guid eventId)
    {
        if (await ErasureRequestEndpoints.FindAsync(db, recipientId, eventId, time.GetUtcNow(), HttpContext.RequestAborted) is not { } found)
        {
            return NotFound();
        }

        Status = found;
        return Page();
    }
}
