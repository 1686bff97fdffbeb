using ExchangeGateway.Auth;
using ExchangeGateway.Cvs;
using ExchangeGateway.Data;
using ExchangeGateway.Recipients;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using OpenIddict.Abstractions;

namespace ExchangeGateway.Pages.Consent;

/// <summary>
/// The question a job site asks through /connect/authorize: "share my CV with this site?". The page only asks; the answer
/// is posted back to /connect/authorize with the request's own parameters, where OpenIddict checks the request again and
/// the decision is carried out.
/// </summary>
public sealed class ShareModel(
    GatewayDbContext db, IOpenIddictApplicationManager applications, IOptions<Consents.ConsentOptions> options,
    IOptions<FreshnessOptions> freshness, TimeProvider time, Microsoft.Extensions.Localization.IStringLocalizer<PageText> text) : PageModel
{
    public Recipient? Site { get; private set; }

    public IReadOnlyList<KeyValuePair<string, string>> Parameters { get; private set; } = [];

    public bool Missing { get; private set; }

    /// <summary>The answer came back on a form too old to trust (its antiforgery token had expired): asked again, and told so.</summary>
    public bool Expired { get; private set; }

    public DateTimeOffset ConsentEnds { get; private set; }

    /// <summary>Signed in with an account that is not a job seeker's (staff): told so, and offered only the way back.</summary>
    public bool NotSeeker { get; private set; }

    /// <summary>Whether the site would receive anything after a yes: not without a CV, nor while it is offline.</summary>
    public CvStanding Cv { get; private set; } = new(null);

    /// <summary>Back from "still looking", pressed on the page's notice that the CV was offline.</summary>
    public bool Refreshed { get; private set; }

    /// <summary>This very question, for "still looking" to come back to (a detour through Mon CV would drop the site's request).</summary>
    public string Here { get; private set; } = "";

    public async Task<IActionResult> OnGetAsync()
    {
        var clientId = Request.Query[OpenIddictConstants.Parameters.ClientId].ToString();
        var redirectUri = Request.Query[OpenIddictConstants.Parameters.RedirectUri].ToString();
        var application = string.IsNullOrEmpty(clientId) ? null : await applications.FindByClientIdAsync(clientId, HttpContext.RequestAborted);
        Site = application is null ? null
            : await db.Recipients.AsNoTracking().SingleOrDefaultAsync(r => r.ClientId == clientId && r.Status == RecipientStatus.Active, HttpContext.RequestAborted);
        if (Site is null || !Uri.TryCreate(redirectUri, UriKind.Absolute, out var target)
            || !await applications.ValidateRedirectUriAsync(application!, redirectUri, HttpContext.RequestAborted))
        {
            // Not a request this gateway would honour: nothing to ask, and no redirect to an address it does not know.
            Site = null;
            Response.StatusCode = StatusCodes.Status400BadRequest;
            return Page();
        }

        // Whatever the seeker answers, /connect/authorize then sends the browser on to the site's registered address.
        PageSecurityHeaders.Apply(HttpContext, target);
        NotSeeker = !User.IsInRole(Roles.Seeker);
        Missing = Request.Query[ConsentForm.Missing] == "1";
        Expired = !Missing && Request.Query[ConsentForm.Expired] == "1";
        if ((Missing || Expired) && !NotSeeker)
        {
            // What the layout reads to mark the title "Erreur :", as on every form page whose answer was not taken.
            ModelState.AddModelError(Missing ? "share" : "", Missing ? text["Share.Missing", Site.DisplayName] : text["Share.Expired"]);
        }
        // Already shared (and not lapsed): a yes keeps that sharing and its end, which is what the page must say.
        var now = time.GetUtcNow();
        var seekerId = User.Subject();
        var siteId = Site.Id;
        ConsentEnds = await db.Set<Consents.Consent>().AsNoTracking()
            .Where(c => c.SeekerId == seekerId && c.RecipientId == siteId && c.State == Consents.ConsentState.Active && c.ExpiresAt > now)
            .Select(c => (DateTimeOffset?)c.ExpiresAt)
            .SingleOrDefaultAsync(HttpContext.RequestAborted)
            ?? now + options.Value.MaxAge;
        Parameters = Request.Query
            .Where(p => !ConsentForm.IsOwnField(p.Key))
            .SelectMany(p => p.Value.Select(v => new KeyValuePair<string, string>(p.Key, v ?? "")))
            .ToList();
        if (!NotSeeker)
        {
            Cv = await CvStanding.ReadAsync(db, seekerId, freshness.Value, now, HttpContext.RequestAborted);
            Refreshed = Request.Query[ConsentForm.Refreshed] == "1" && Cv.Online;
            Here = Request.Path + QueryString.Create(
                Parameters.Select(p => new KeyValuePair<string, string?>(p.Key, p.Value)).Append(new(ConsentForm.Refreshed, "1")));
        }

        return Page();
    }
}
