using System.Diagnostics;
using System.Text.Json;
using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;

namespace ExchangeGateway.Hosting;

/// <summary>RFC 9457 problem details for every error, with a trace id and never a stack trace.</summary>
public static partial class Problems
{
    public static IServiceCollection AddGatewayProblems(this IServiceCollection services)
    {
        services.AddProblemDetails(options => options.CustomizeProblemDetails = context =>
        {
            context.ProblemDetails.Extensions["traceId"] = Activity.Current?.Id ?? context.HttpContext.TraceIdentifier;
            context.ProblemDetails.Detail ??= context.ProblemDetails.Status switch
            {
                StatusCodes.Status401Unauthorized => "A valid bearer access token is required (see /.well-known/openid-configuration).",
                StatusCodes.Status403Forbidden => "The access token does not grant the scope this operation needs.",
                StatusCodes.Status404NotFound => "No such resource.",
                StatusCodes.Status405MethodNotAllowed => "This method is not allowed on this resource.",
                StatusCodes.Status415UnsupportedMediaType => "Send the body as application/json.",
                _ => null,
            };
        });
        services.AddExceptionHandler<BadRequestExceptionHandler>();
        services.AddExceptionHandler<Auth.AccountGoneHandler>();
        services.AddExceptionHandler<TransientDatabaseHandler>();
        // Binding failures throw, so the handler can say what was wrong instead of answering an empty 400.
        services.Configure<RouteHandlerOptions>(options => options.ThrowOnBadRequest = true);
        services.Configure<Microsoft.AspNetCore.Http.Json.JsonOptions>(options =>
        {
            options.SerializerOptions.UnmappedMemberHandling = System.Text.Json.Serialization.JsonUnmappedMemberHandling.Disallow;
            options.SerializerOptions.MaxDepth = 64;
            // Missing required fields and nulls where none is allowed are client errors, not silent defaults.
            options.SerializerOptions.RespectNullableAnnotations = true;
            options.SerializerOptions.RespectRequiredConstructorParameters = true;
            options.SerializerOptions.Converters.Add(new System.Text.Json.Serialization.JsonStringEnumConverter(JsonNamingPolicy.KebabCaseLower, allowIntegerValues: false));
        });
        return services;
    }

    public static ProblemHttpResult Validation(string detail, IDictionary<string, string[]>? errors = null) =>
        TypedResults.Problem(new HttpValidationProblemDetails(errors ?? new Dictionary<string, string[]>())
        {
            Status = StatusCodes.Status400BadRequest,
            Title = "The request is invalid.",
            Detail = detail,
        });

    /// <summary>An exception handler's answer: the status and its problem, written for the caller's Accept.</summary>
    public static ValueTask<bool> WriteAsync(
        this IProblemDetailsService problems, HttpContext httpContext, Exception exception, int status, string title, string detail) =>
        problems.WriteAsync(httpContext, exception, new ProblemDetails { Status = status, Title = title, Detail = detail });

    public static ValueTask<bool> WriteAsync(this IProblemDetailsService problems, HttpContext httpContext, Exception exception, ProblemDetails problem)
    {
        httpContext.Response.StatusCode = problem.Status ?? StatusCodes.Status500InternalServerError;
        return problems.TryWriteAsync(new ProblemDetailsContext { HttpContext = httpContext, ProblemDetails = problem, Exception = exception });
    }

    /// <summary>The seconds a client is told to wait when the gateway cannot answer right now (busy, a replica behind, the database).</summary>
    public const string RetryAfterSeconds = "5";

    /// <summary>A problem that asks the client to come back: <paramref name="status"/> with Retry-After.</summary>
    public static ProblemHttpResult RetryLater(HttpContext context, int status, string title, string detail)
    {
        context.Response.Headers.RetryAfter = RetryAfterSeconds;
        return TypedResults.Problem(detail + " Retry after the seconds in Retry-After.", statusCode: status, title: title);
    }

    public static ProblemHttpResult NotFound(string detail = "No such resource.") =>
        TypedResults.Problem(detail, statusCode: StatusCodes.Status404NotFound, title: "Not found");

    public static ProblemHttpResult Conflict(string detail) =>
        TypedResults.Problem(detail, statusCode: StatusCodes.Status409Conflict, title: "Conflict");

    [System.Text.RegularExpressions.GeneratedRegex(@"(type|on type|for type) '[A-Za-z0-9_.`\[\], ]+'")]
    private static partial System.Text.RegularExpressions.Regex Internals();

    // The JSON reader's "could not be converted to ExchangeGateway.Recipients.DeliveryMode." (a type name has no spaces;
    // generic ones have commas and brackets): the field and its path, kept alongside, say what was wrong.
    [System.Text.RegularExpressions.GeneratedRegex(@"(?<=converted to )\S+?(?=\.?(\s|$))")]
    private static partial System.Text.RegularExpressions.Regex ConvertedTo();

    // "int? limit", "RegisterRecipientRequest request": a declaration as the framework quotes it; the name is what the client sent.
    [System.Text.RegularExpressions.GeneratedRegex(@"""[A-Za-z0-9_.?<>\[\], ]+ ([A-Za-z0-9_]+)""")]
    private static partial System.Text.RegularExpressions.Regex DeclaredParameter();

    /// <summary>A database failure that passes (a deadlock, a replay conflict, a connection refused or cut), anywhere in the chain.</summary>
    public static bool IsTransient(Exception exception) => TransientCause(exception) is not null;

    private static Npgsql.NpgsqlException? TransientCause(Exception exception)
    {
        for (var cause = exception; cause is not null; cause = cause.InnerException)
        {
            if (cause is Npgsql.NpgsqlException { IsTransient: true } transient)
            {
                return transient;
            }
        }

        return null;
    }

    /// <summary>
    /// The database could not answer for a reason that passes: a deadlock, a replica cancelling a query that conflicts with
    /// replay, a connection refused or cut. A 503 with Retry-After tells the client to try again; a 500 would say the
    /// gateway is broken.
    /// </summary>
    private sealed class TransientDatabaseHandler(IProblemDetailsService problems, ILogger<TransientDatabaseHandler> logger) : IExceptionHandler
    {
        public async ValueTask<bool> TryHandleAsync(HttpContext httpContext, Exception exception, CancellationToken cancellationToken)
        {
            if (TransientCause(exception) is not { } cause || Pages.PagesSetup.IsPageRequest(httpContext))
            {
                // A page's error is a page of its own (Pages/Error, with the same 503 and Retry-After).
                return false;
            }

            // Since .NET 10 the exception handler middleware records nothing about an exception a handler took (no log, no
            // error.type on the request metric), and the hot paths' raw Npgsql commands log nothing themselves: without this
            // line a full disk or an exhausted pool shows only as clients' 503s. The route's template, the exceptions' types
            // (a pool timeout and a refused connection differ only there) and the SQLSTATE, never a message: PostgreSQL's
            // message and detail can quote row values.
            var types = new List<string>();
            for (var inner = exception; inner is not null; inner = inner.InnerException)
            {
                types.Add(inner.GetType().Name);
            }

            // The middleware has cleared the request's endpoint by now; its feature keeps the one that failed.
            var route = (httpContext.Features.Get<IExceptionHandlerFeature>()?.Endpoint as RouteEndpoint)?.RoutePattern.RawText ?? "(no route)";
            logger.LogWarning("Answered 503 to {Method} {Route}: the database failed in a way that passes ({Exception}, SQLSTATE {SqlState})",
                httpContext.Request.Method, route, string.Join(" > ", types), cause.SqlState ?? "none");
            httpContext.Response.Headers.RetryAfter = RetryAfterSeconds;
            return await problems.WriteAsync(httpContext, exception, StatusCodes.Status503ServiceUnavailable, "Service unavailable",
                "The database could not answer just now; try again in a few seconds.");
        }
    }

    private sealed class BadRequestExceptionHandler(IProblemDetailsService problems) : IExceptionHandler
    {
        public async ValueTask<bool> TryHandleAsync(HttpContext httpContext, Exception exception, CancellationToken cancellationToken)
        {
            if (exception is not BadHttpRequestException bad || Pages.PagesSetup.IsPageRequest(httpContext))
            {
                return false;
            }

            // The JSON reader's message names the path and position of the fault, which helps; the server's type and
            // parameter declarations that the framework's messages quote do not, and are taken out.
            var detail = Internals().Replace(bad.InnerException is JsonException json ? $"{bad.Message} {json.Message}" : bad.Message, "the request");
            detail = ConvertedTo().Replace(detail, "the expected type");
            var parameter = DeclaredParameter().Match(detail);
            detail = DeclaredParameter().Replace(detail, "\"$1\"");
            if (bad.StatusCode != StatusCodes.Status400BadRequest)
            {
                return await problems.WriteAsync(httpContext, exception, bad.StatusCode,
                    bad.StatusCode == StatusCodes.Status413PayloadTooLarge ? "The request body is too large." : "The request is invalid.", detail);
            }

            // Every 400 names the faulty field in errors, as the gateway's own validation does (and the OpenAPI document says):
            // the JSON member by its path ("" for the body as a whole), else the parameter the framework could not bind, else "".
            var field = bad.InnerException is JsonException body ? (body.Path ?? "").TrimStart('$').TrimStart('.')
                : parameter.Success ? parameter.Groups[1].Value
                : "";
            return await problems.WriteAsync(httpContext, exception, new HttpValidationProblemDetails(new Dictionary<string, string[]> { [field] = [detail] })
            {
                Status = StatusCodes.Status400BadRequest,
                Title = "The request is invalid.",
                Detail = detail,
            });
        }
    }
}
