using System.Net;
using System.Security.Cryptography;
using System.Text.RegularExpressions;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.IdentityModel.Tokens;

namespace ExchangeGateway.Tests.Pages;

/// <summary>A browser without a browser: cookies, the pages' forms with their antiforgery token, no automatic redirects.</summary>
public sealed partial class PageSession(GatewayFactory factory) : IDisposable
{
    public CookieContainer Cookies { get; } = new();

    public HttpClient Http => _http ??= factory.CreateHttpClient(Cookies);

    private HttpClient? _http;

    /// <summary>A new seeker account made through the sign-up page and the link it mails (where the password is chosen), signed in.</summary>
    public static async Task<(PageSession Session, string Email, string Password)> SignUpAsync(
        GatewayFactory factory, string? returnUrl = null, string? email = null)
    {
        var session = new PageSession(factory);
        email ??= $"page-{Guid.NewGuid():N}@example.test";
        var password = "Page-Password-3" + Guid.NewGuid().ToString("N")[..6] + "!";
        var page = "/Account/Register" + (returnUrl is null ? "" : $"?ReturnUrl={Uri.EscapeDataString(returnUrl)}");
        using (var response = await session.SubmitAsync(page, new() { ["Email"] = email }))
        {
            var html = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.OK && html.Contains(SentNotice, StringComparison.Ordinal),
                $"sign-up did not send a link: {(int)response.StatusCode} {html}");
        }

        var link = Mailbox.LinkTo((await Mailbox.ForAsync(factory, email)).Last(), "ConfirmEmail");
        Assert.NotNull(link);
        using (var confirmed = await session.ConfirmAsync(link, password))
        {
            Assert.True(confirmed.StatusCode == HttpStatusCode.Redirect, $"confirmation did not redirect: {(int)confirmed.StatusCode}");
            Assert.Equal(returnUrl ?? "/Cv?done=welcome", confirmed.Headers.Location!.OriginalString);
        }

        return (session, email, password);
    }

    /// <summary>What the sign-up page says, for every address alike.</summary>
    public const string SentNotice = "Nous avons envoyé un message à";

    /// <summary>Opens a sign-up link, chooses the password and presses the button.</summary>
    public Task<HttpResponseMessage> ConfirmAsync(Uri link, string password)
    {
        var query = System.Web.HttpUtility.ParseQueryString(link.Query);
        var fields = new Dictionary<string, string>
        {
            ["user"] = query["user"] ?? "", ["Code"] = query["code"] ?? "", ["Password"] = password, ["ConfirmPassword"] = password,
        };
        if (query["returnUrl"] is { } returnUrl)
        {
            fields["ReturnUrl"] = returnUrl;
        }

        return SubmitAsync(link.PathAndQuery, fields);
    }

    public async Task<string> GetPageAsync(string url)
    {
        using var response = await Http.GetAsync(url);
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"GET {url}: {(int)response.StatusCode} {response.Headers.Location}");
        return body;
    }

    /// <summary>GETs the page, then posts the given fields with the page's antiforgery token to <paramref name="action"/> (default: the page).</summary>
    public async Task<HttpResponseMessage> SubmitAsync(string page, Dictionary<string, string> fields, string? action = null)
    {
        var html = await GetPageAsync(page);
        var form = new List<KeyValuePair<string, string>>(fields) { new("__RequestVerificationToken", AntiforgeryToken(html)) };
        return await Http.PostAsync(action ?? page, new FormUrlEncodedContent(form));
    }

    public static string AntiforgeryToken(string html)
    {
        var token = AntiforgeryField().Match(html).Groups[1].Value;
        Assert.False(string.IsNullOrEmpty(token), "the page has no antiforgery token");
        return WebUtility.HtmlDecode(token);
    }

    /// <summary>
    /// Where "Je suis toujours en recherche", on a sharing page's notice that the CV is offline, comes back to; empty when
    /// the page has no such notice. From the decoded page (the layout's language switch has a return address too).
    /// </summary>
    public static string StillLookingReturnUrl(string decodedHtml) => StillLookingReturn().Match(decodedHtml).Groups[1].Value;

    public static (string Verifier, string Challenge) Pkce()
    {
        var verifier = Base64UrlEncoder.Encode(RandomNumberGenerator.GetBytes(32));
        return (verifier, Base64UrlEncoder.Encode(SHA256.HashData(System.Text.Encoding.ASCII.GetBytes(verifier))));
    }

    public void Dispose() => _http?.Dispose();

    [GeneratedRegex("name=\"__RequestVerificationToken\"[^>]*value=\"([^\"]+)\"")]
    private static partial Regex AntiforgeryField();

    [GeneratedRegex("action=\"/Cv\\?handler=Refresh\">\\s*<input type=\"hidden\" name=\"returnUrl\" value=\"([^\"]*)\"")]
    private static partial Regex StillLookingReturn();
}
