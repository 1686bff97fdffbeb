using System.Text;
using Microsoft.Net.Http.Headers;

namespace ExchangeGateway.Hosting;

/// <summary>
/// The framework's JSON reader takes a JSON request's <c>charset</c> parameter as it is written: the quoted form
/// (<c>application/json; charset="utf-8"</c>, valid HTTP) and a charset .NET does not know both ended in an exception that
/// no binder catches, a 500. A quoted charset is read unquoted; an unknown one is the client's 415.
/// </summary>
public static class JsonCharset
{
    public static IApplicationBuilder UseJsonCharsetCheck(this IApplicationBuilder app) => app.Use(async (context, next) =>
    {
        var headers = context.Request.Headers;
        // JSON bodies only: a form's charset the framework does not know is read as UTF-8 (its form reader falls back), and
        // a site posting one to the token endpoint must still get its token.
        if (!NulCharacters.IsReExecution(context) && MediaTypeHeaderValue.TryParse(headers.ContentType.ToString(), out var type) && type.Charset.HasValue
            && (type.MediaType.Equals("application/json", StringComparison.OrdinalIgnoreCase) || type.Suffix.Equals("json", StringComparison.OrdinalIgnoreCase)))
        {
            var charset = HeaderUtilities.RemoveQuotes(type.Charset).Value ?? "";
            if (!Known(charset))
            {
                throw new BadHttpRequestException(
                    "The body's charset is not one the gateway reads; send JSON as UTF-8 (RFC 8259).", StatusCodes.Status415UnsupportedMediaType);
            }

            if (charset != type.Charset.Value)
            {
                type.Charset = charset;
                headers.ContentType = type.ToString();
            }
        }

        await next(context);
    });

    private static bool Known(string charset)
    {
        try
        {
            _ = Encoding.GetEncoding(charset);
            return true;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }
}
