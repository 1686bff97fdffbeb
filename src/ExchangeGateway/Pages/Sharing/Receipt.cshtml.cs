using ExchangeGateway.Auth;
using ExchangeGateway.Consents;
using ExchangeGateway.Cvs;
using ExchangeGateway.Data;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Microsoft.Extensions.Options;

namespace ExchangeGateway.Pages.Sharing;

/// <summary>One consent receipt, readable, or as the JSON the API gives (the same <see cref="ConsentReceipt"/>).</summary>
public sealed class ReceiptModel(
    GatewayDbContext db, IOptions<ConsentOptions> options, IOptions<FreshnessOptions> freshness, TimeProvider time) : PageModel
{
    public ConsentReceipt Receipt { get; private set; } = null!;

    public async Task<IActionResult> OnGetAsync(Guid id)
    {
        var receipt = await ConsentReceipt.FindAsync(db, User.Subject(), id, options.Value, HttpContext.RequestAborted);
        if (receipt is null)
        {
            return NotFound();
        }

        Receipt = receipt;
        if (receipt.Event == "granted")
        {
            // As the Partage page shows it after a tick: whether the site can receive anything yet.
            ViewData[CvStanding.ViewDataKey] = await CvStanding.ReadAsync(db, User.Subject(), freshness.Value, time.GetUtcNow(), HttpContext.RequestAborted);
        }

        return Page();
    }

    public async Task<IActionResult> OnGetJsonAsync(Guid id)
    {
        var receipt = await ConsentReceipt.FindAsync(db, User.Subject(), id, options.Value, HttpContext.RequestAborted);
        return receipt is null ? NotFound() : new JsonResult(receipt);
    }
}
