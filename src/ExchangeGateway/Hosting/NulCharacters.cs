using System.Text;
using Microsoft.Extensions.Primitives;

namespace ExchangeGateway.Hosting;

/// <summary>
/// PostgreSQL stores no U+0000 in text, and a query string, form field or Basic credential carrying one reached a lookup
/// (an account, a client, the sign-in lock, an audit filter) and came back as a 500. It is refused at the door as the 400
/// it is: the API and the OAuth endpoints answer a problem, the pages their 400 page.
/// </summary>
public static class NulCharacters
{
    public static IApplicationBuilder UseNulCharacterRefusal(this IApplicationBuilder app) => app.Use(async (context, next) =>
    {
        var request = context.Request;
        if (!IsReExecution(context) && (Carries(request.Query) || BasicCarries(request.Headers.Authorization)
            || (request.HasFormContentType && Carries(await ReadFormAsync(request, context.RequestAborted)))))
        {
            throw new BadHttpRequestException("The request contains a NUL character (U+0000), which no field accepts.", StatusCodes.Status400BadRequest);
        }

        await next(context);
    });

    /// <summary>The error page runs again for the same request (query string, headers and all): it must not be refused in turn.</summary>
    public static bool IsReExecution(HttpContext context) =>
        context.Features.Get<Microsoft.AspNetCore.Diagnostics.IExceptionHandlerFeature>() is not null
        || context.Features.Get<Microsoft.AspNetCore.Diagnostics.IStatusCodeReExecuteFeature>() is not null;

    /// <summary>
    /// The form reader throws its own exceptions for a body it cannot parse (a multipart type without a boundary, a cut
    /// multipart body, more values or a longer key than its limits): this runs before routing, so they were 500s, for
    /// anyone, on any path, before the rate limiter. They are the client's 400 (413 stays 413).
    /// </summary>
    private static async Task<IFormCollection> ReadFormAsync(HttpRequest request, CancellationToken cancellationToken)
    {
        try
        {
            return await request.ReadFormAsync(cancellationToken);
        }
        catch (Exception e) when (e is InvalidDataException or InvalidOperationException or IOException && e is not BadHttpRequestException
                                  && !cancellationToken.IsCancellationRequested)
        {
            throw new BadHttpRequestException("The form body could not be read: " + FormFault(e), StatusCodes.Status400BadRequest, e);
        }
    }

    // The reader's messages about its limits and the boundary name no value and are passed on; others (a multipart header
    // line it could not read) may quote the body, and are said in general terms.
    private static readonly string[] SafeFaults = ["Form value count limit", "Form key length limit", "Form value length limit", "Multipart body length limit", "Missing content-type boundary", "Multipart boundary length limit"];

    private static string FormFault(Exception e) =>
        e is InvalidDataException && SafeFaults.Any(prefix => e.Message.StartsWith(prefix, StringComparison.Ordinal)) ? e.Message : "it is not a well-formed form or multipart body.";

    private static bool Carries(IEnumerable<KeyValuePair<string, StringValues>> fields) =>
        fields.Any(field => field.Key.Contains('\0', StringComparison.Ordinal) || field.Value.Any(value => value?.Contains('\0', StringComparison.Ordinal) == true));

    private static bool BasicCarries(StringValues authorization)
    {
        var value = authorization.ToString();
        if (!value.StartsWith("Basic ", StringComparison.OrdinalIgnoreCase))
        {
            return false;
        }

        var bytes = new byte[value.Length];
        if (!Convert.TryFromBase64String(value[6..].Trim(), bytes, out var length))
        {
            return false;
        }

        // The client id and secret are form-encoded inside the credential (RFC 6749 2.3.1): "%00" is a NUL too.
        var credential = Encoding.UTF8.GetString(bytes, 0, length);
        return credential.Contains('\0', StringComparison.Ordinal) || Uri.UnescapeDataString(credential).Contains('\0', StringComparison.Ordinal);
    }
}
