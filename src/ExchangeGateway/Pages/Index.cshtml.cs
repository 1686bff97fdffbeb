using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace ExchangeGateway.Pages;

public sealed class IndexModel : PageModel
{
    [BindProperty(SupportsGet = true, Name = "erased")] public bool Erased { get; set; }

    public void OnGet()
    {
    }
}
