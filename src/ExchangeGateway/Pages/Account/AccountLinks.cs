using System.Text;
using Microsoft.AspNetCore.WebUtilities;

namespace ExchangeGateway.Pages.Account;

/// <summary>
/// Identity's one-time tokens as they travel in the links the notifier sends (reset, confirmation). Links are built on the
/// configured issuer, never on the request's Host header, which a caller controls.
/// </summary>
public static class AccountLinks
{
    public static Uri Build(Uri issuer, string page, string userId, string token, string? returnUrl = null) =>
        new(issuer, $"Account/{page}?user={Uri.EscapeDataString(userId)}&code={WebEncoders.Base64UrlEncode(Encoding.UTF8.GetBytes(token))}"
            + (returnUrl is null ? "" : $"&returnUrl={Uri.EscapeDataString(returnUrl)}"));

    /// <summary>The token from a link's code, or null when it is not one.</summary>
    public static string? Decode(string? code)
    {
        try
        {
            return string.IsNullOrEmpty(code) ? null : Encoding.UTF8.GetString(WebEncoders.Base64UrlDecode(code));
        }
        catch (FormatException)
        {
            return null;
        }
    }
}
