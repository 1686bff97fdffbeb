using Microsoft.AspNetCore.Mvc.RazorPages;

namespace ExchangeGateway.Pages;

public sealed class IndexModel : PageModel
{
    public void OnGet()
    {
    }
}
