using System.Buffers;
using System.Text.Json;
using ExchangeGateway.Auth;
using ExchangeGateway.Hosting;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.Extensions.Options;
using Microsoft.Net.Http.Headers;

namespace ExchangeGateway.Cvs;

/// <summary>The seeker's view of the CV: the document, its version (also the ETag), its state and when it goes offline.</summary>
public sealed record CvResponse(
    Guid Id, int Version, CvState State, DateTimeOffset RefreshedAt, DateTimeOffset? OfflineAt, DateTimeOffset UpdatedAt, JsonElement? Document);

public static class CvEndpoints
{
    public static RouteGroupBuilder MapCvEndpoints(this RouteGroupBuilder api)
    {
        var cv = api.MapGroup("/me/cv").RequireAuthorization(ApiScopes.CvManage).WithTags("Job seeker");
        cv.MapGet("/", Get).WithName("GetMyCv").WithSummary("My CV, with its state, the date it goes offline and an ETag.")
            .WithMetadata(new OpenApi.Versioned()).ProducesProblem(StatusCodes.Status404NotFound);
        cv.MapPut("/", Put).WithName("PutMyCv").Accepts<JsonElement>("application/json").WithMetadata(new OpenApi.Versioned(TakesIfMatch: true))
            .WithSummary("Creates or replaces my CV (a JSON Resume document, at most 256 KiB); a new version is also a refresh. Honours If-Match.")
            .ProducesProblem(StatusCodes.Status400BadRequest).ProducesProblem(StatusCodes.Status412PreconditionFailed)
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge).ProducesProblem(StatusCodes.Status415UnsupportedMediaType)
            .ProducesValidationProblem(StatusCodes.Status422UnprocessableEntity);
        cv.MapPost("/refresh", Refresh).WithName("RefreshMyCv").WithSummary("Confirms I am still looking: the CV stays online for another full period.")
            .WithMetadata(new OpenApi.Versioned()).ProducesProblem(StatusCodes.Status404NotFound);
        cv.MapDelete("/", Delete).WithName("EraseMyCv").WithSummary("Erases my CV; every site holding a copy is told to delete it, and every sharing ends (tick again to share a CV published later).")
            .ProducesProblem(StatusCodes.Status404NotFound);
        return api;
    }

    private static async Task<Results<Ok<CvResponse>, ProblemHttpResult>> Get(HttpContext context, CvWriter writer, IOptions<FreshnessOptions> freshness, TimeProvider time)
    {
        var found = await writer.ReadAsync(context.User.Subject(), context.RequestAborted);
        if (found is not { } cv)
        {
            return Problems.NotFound("You have no CV yet: PUT one.");
        }

        context.Response.Headers.ETag = ETagOf(cv.Cv);
        return TypedResults.Ok(ToResponse(cv.Cv, cv.Document, freshness.Value, time.GetUtcNow()));
    }

    private static async Task<Results<Ok<CvResponse>, Created<CvResponse>, ProblemHttpResult>> Put(
        HttpContext context, CvWriter writer, ResumeDocument resume, IOptions<FreshnessOptions> freshness, TimeProvider time)
    {
        var request = context.Request;
        if (!IsJson(request.ContentType))
        {
            return TypedResults.Problem("Send the CV as application/json (a JSON Resume document).", statusCode: StatusCodes.Status415UnsupportedMediaType, title: "Unsupported media type");
        }

        var limit = freshness.Value.MaxDocumentBytes;
        var body = await ReadLimitedAsync(request, limit, context.RequestAborted);
        if (body is null)
        {
            return TypedResults.Problem($"A CV is at most {limit / 1024} KiB.", statusCode: StatusCodes.Status413PayloadTooLarge, title: "The request body is too large.");
        }

        var (document, errors) = resume.Validate(body, time.GetUtcNow());
        if (document is null)
        {
            return TypedResults.Problem(new HttpValidationProblemDetails(errors!)
            {
                Status = StatusCodes.Status422UnprocessableEntity,
                Title = "The CV is not a valid JSON Resume document.",
                Detail = "See errors: each key is a JSON pointer into the document (the empty pointer for the document as a whole).",
            });
        }

        if (!TryReadIfMatch(request, out var expected, out var any))
        {
            return Problems.Validation("If-Match must be an ETag given by GET /api/v1/me/cv, or *.");
        }

        var result = await writer.SaveAsync(context.User.Subject(), document, expected, any, context.RequestAborted);
        if (result.Outcome == CvWriteOutcome.PreconditionFailed)
        {
            return TypedResults.Problem("The CV changed since you read it (If-Match does not match): read it again.",
                statusCode: StatusCodes.Status412PreconditionFailed, title: "Precondition failed");
        }

        context.Response.Headers.ETag = ETagOf(result.Cv!);
        var response = ToResponse(result.Cv!, document, freshness.Value, time.GetUtcNow());
        return result.Outcome == CvWriteOutcome.Created ? TypedResults.Created("/api/v1/me/cv", response) : TypedResults.Ok(response);
    }

    private static async Task<Results<Ok<CvResponse>, ProblemHttpResult>> Refresh(HttpContext context, CvWriter writer, IOptions<FreshnessOptions> freshness, TimeProvider time)
    {
        var result = await writer.RefreshAsync(context.User.Subject(), context.RequestAborted);
        if (result.Outcome == CvWriteOutcome.NotFound)
        {
            return Problems.NotFound("You have no CV to refresh.");
        }

        context.Response.Headers.ETag = ETagOf(result.Cv!);
        return TypedResults.Ok(ToResponse(result.Cv!, null, freshness.Value, time.GetUtcNow()));
    }

    private static async Task<Results<NoContent, ProblemHttpResult>> Delete(HttpContext context, CvWriter writer)
    {
        var result = await writer.EraseAsync(context.User.Subject(), context.RequestAborted);
        return result.Outcome == CvWriteOutcome.NotFound ? Problems.NotFound("You have no CV to erase.") : TypedResults.NoContent();
    }

    public static CvResponse ToResponse(Cv cv, byte[]? document, FreshnessOptions freshness, DateTimeOffset now)
    {
        var state = cv.StateAt(now, freshness.MaxAge);
        JsonElement? json = null;
        if (document is not null)
        {
            using var parsed = JsonDocument.Parse(document);
            json = parsed.RootElement.Clone();
        }

        return new CvResponse(cv.Id, cv.Version, state, cv.RefreshedAt, state == CvState.Erased ? null : cv.OfflineAt(freshness.MaxAge), cv.UpdatedAt, json);
    }

    private static string ETagOf(Cv cv) => $"\"v{cv.Version}\"";

    /// <summary>
    /// If-Match as RFC 9110 §13.1.1 reads it: "*", or a list of tags of which one must match the current version, by strong
    /// comparison (a weak tag never matches, nor one the gateway never gave). False only when the header is not a list of
    /// entity tags at all.
    /// </summary>
    private static bool TryReadIfMatch(HttpRequest request, out IReadOnlyCollection<int>? versions, out bool any)
    {
        versions = null;
        any = false;
        var header = request.Headers.IfMatch;
        if (Microsoft.Extensions.Primitives.StringValues.IsNullOrEmpty(header))
        {
            return true;
        }

        if (!EntityTagHeaderValue.TryParseStrictList(header, out var tags) || tags.Count == 0)
        {
            return false;
        }

        if (tags.Any(t => t.Equals(EntityTagHeaderValue.Any)))
        {
            any = true;
            return true;
        }

        versions = tags.Where(t => !t.IsWeak).Select(t => t.Tag.Value)
            .Select(value => value is { Length: > 3 } && value.StartsWith("\"v", StringComparison.Ordinal)
                && int.TryParse(value[2..^1], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var version)
                    ? version : (int?)null)
            .OfType<int>().ToList();
        return true;
    }

    private static bool IsJson(string? contentType) =>
        MediaTypeHeaderValue.TryParse(contentType, out var media)
        && (media.MediaType.Equals("application/json", StringComparison.OrdinalIgnoreCase)
            || media.MediaType.Value?.EndsWith("+json", StringComparison.OrdinalIgnoreCase) == true);

    /// <summary>Reads at most <paramref name="limit"/> bytes; null when the body is longer (whatever Content-Length claimed).</summary>
    private static async Task<byte[]?> ReadLimitedAsync(HttpRequest request, int limit, CancellationToken cancellationToken)
    {
        if (request.ContentLength > limit)
        {
            return null;
        }

        var buffer = ArrayPool<byte>.Shared.Rent(limit + 1);
        try
        {
            var total = 0;
            int read;
            while ((read = await request.Body.ReadAsync(buffer.AsMemory(total, limit + 1 - total), cancellationToken)) > 0)
            {
                total += read;
                if (total > limit)
                {
                    return null;
                }
            }

            return buffer.AsSpan(0, total).ToArray();
        }
        finally
        {
            // Cleared: the buffer held the CV in clear, and the pool hands it to whatever asks next.
            ArrayPool<byte>.Shared.Return(buffer, clearArray: true);
        }
    }
}
