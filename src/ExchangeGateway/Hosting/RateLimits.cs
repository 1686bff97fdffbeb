using System.ComponentModel.DataAnnotations;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Encodings.Web;
using System.Threading.RateLimiting;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.RateLimiting;
using Microsoft.Extensions.Localization;

namespace ExchangeGateway.Hosting;

public sealed class RateLimitOptions
{
    public const string Section = "RateLimits";

    /// <summary>Requests per minute from one address, whatever they are (0 turns this limit off).</summary>
    [Range(0, 1_000_000)]
    public int PerAddressPerMinute { get; set; } = 6000;

    /// <summary>
    /// Requests per minute per client id (or per address when none is named) to the endpoints that check client secrets
    /// (token, introspection, revocation): brute force stays slow.
    /// </summary>
    [Range(1, 100_000)]
    public int TokenRequestsPerMinute { get; set; } = 60;

    /// <summary>API requests per minute per authenticated caller (the token's subject).</summary>
    [Range(1, 100_000_000)]
    public int ApiRequestsPerMinute { get; set; } = 1200;

    /// <summary>
    /// Forms sent to the account pages (sign-in, sign-up, reset...) per minute from one address (0 turns this limit off):
    /// password guessing across accounts, and mail sent to strangers' addresses, stay slow.
    /// </summary>
    [Range(0, 100_000)]
    public int AccountFormsPerMinute { get; set; } = 10;

    /// <summary>
    /// Forms a signed-in account sends to its pages per minute (0 turns this limit off): each save, tick or untick writes
    /// rows, receipts and audit events, and the per-address limit alone lets one account send thousands.
    /// </summary>
    [Range(0, 100_000)]
    public int SignedInFormsPerMinute { get; set; } = 60;
}

/// <summary>
/// Per-client limits: one before authentication (per address, and per claimed client on the token endpoint, where
/// secrets are checked), one after it on the API (per token subject). Refusals are 429 problems with Retry-After.
/// </summary>
public static class RateLimits
{
    public const string ApiPolicy = "per-caller";
    public const string AccountFormsPolicy = "account-forms";

    public static IServiceCollection AddGatewayRateLimits(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<RateLimitOptions>().BindConfiguration(RateLimitOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        var limits = configuration.GetSection(RateLimitOptions.Section).Get<RateLimitOptions>() ?? new RateLimitOptions();
        services.AddRateLimiter(options =>
        {
            options.GlobalLimiter = PartitionedRateLimiter.CreateChained(
                PartitionedRateLimiter.Create<HttpContext, string>(context => limits.PerAddressPerMinute == 0
                    ? RateLimitPartition.GetNoLimiter("")
                    : RateLimitPartition.GetFixedWindowLimiter(Network(context), _ => Window(limits.PerAddressPerMinute))),
                // Every endpoint that checks a client's secret shares one allowance, so guesses cannot be spread across them.
                PartitionedRateLimiter.Create<HttpContext, string>(context => ChecksClientSecrets(context.Request.Path)
                    ? RateLimitPartition.GetFixedWindowLimiter($"token:{ClaimedClient(context)}@{Network(context)}", _ => Window(limits.TokenRequestsPerMinute))
                    : RateLimitPartition.GetNoLimiter("")));
            // Forms only: reading the pages costs nothing worth limiting, and a browser GETs each form before sending it.
            options.AddPolicy(AccountFormsPolicy, context => limits.AccountFormsPerMinute > 0 && HttpMethods.IsPost(context.Request.Method)
                ? RateLimitPartition.GetFixedWindowLimiter("forms:" + Network(context), _ => Window(limits.AccountFormsPerMinute))
                : RateLimitPartition.GetNoLimiter(""));
            options.OnRejected = (context, cancellationToken) => new ValueTask(RejectAsync(
                context.HttpContext, context.Lease.TryGetMetadata(MetadataName.RetryAfter, out var wait) ? wait : TimeSpan.FromSeconds(1), cancellationToken));
        });
        services.AddSingleton<ApiRateLimit>();
        return services;
    }

    /// <summary>A 429: a page for a person at a browser, a problem for everything else, with when to try again.</summary>
    private static async Task RejectAsync(HttpContext context, TimeSpan retryAfter, CancellationToken cancellationToken)
    {
        var seconds = Math.Max(1, (int)Math.Ceiling(retryAfter.TotalSeconds));
        if (context.Request.Path.StartsWithSegments("/Account"))
        {
            // A person at a browser sent the form: a page in their language, not a JSON document.
            await WriteTooManyPageAsync(context, seconds, "TooMany.Body", cancellationToken);
            return;
        }

        var response = context.Response;
        response.StatusCode = StatusCodes.Status429TooManyRequests;
        response.Headers.RetryAfter = seconds.ToString(CultureInfo.InvariantCulture);
        // The per-address limit refuses before the API's own limit runs: a site still learns its allowance.
        if (context.Request.Path.StartsWithSegments("/api"))
        {
            response.Headers[PolicyHeader] = context.RequestServices.GetRequiredService<ApiRateLimit>().PolicyValue;
        }

        var problem = new ProblemDetails
        {
            Type = "https://www.rfc-editor.org/rfc/rfc6585#section-4",
            Status = StatusCodes.Status429TooManyRequests,
            Title = "Too many requests",
            Detail = "Slow down: retry after the number of seconds in Retry-After.",
        };
        if (context.Request.Path.StartsWithSegments("/connect"))
        {
            // OAuth client libraries read error and error_description, not a problem's members: RFC 8628's
            // slow_down is the one OAuth error that means this.
            problem.Extensions["error"] = "slow_down";
            problem.Extensions["error_description"] = problem.Detail;
        }

        await context.RequestServices.GetRequiredService<IProblemDetailsService>().WriteAsync(new ProblemDetailsContext
        {
            HttpContext = context,
            ProblemDetails = problem,
        });
    }

    /// <summary>The API's allowance, per caller and per node: a bucket of this many requests...</summary>
    private static int ApiBurst(RateLimitOptions limits) => Math.Max(10, limits.ApiRequestsPerMinute / 6);

    /// <summary>...refilled by this many every second.</summary>
    private static int ApiPerSecond(RateLimitOptions limits) => Math.Max(1, limits.ApiRequestsPerMinute / 60);

    /// <summary>
    /// The API's allowance as the IETF's RateLimit-Policy field (draft-ietf-httpapi-ratelimit-headers) states one: a quota
    /// of the bucket's size over the time the bucket takes to fill from empty. A site can pace itself from it instead of
    /// learning the limit from its 429s.
    /// </summary>
    public const string PolicyHeader = "RateLimit-Policy";

    /// <summary>
    /// The same draft's field for what is left now: requests remaining in the caller's bucket, and seconds until it is full
    /// again (the draft's reset). A refusal's Retry-After says when the next request may go, which is sooner.
    /// </summary>
    public const string StateHeader = "RateLimit";

    internal static string PolicyValue(RateLimitOptions limits) =>
        string.Create(CultureInfo.InvariantCulture, $"\"{ApiPolicy}\";q={ApiBurst(limits)};w={Math.Max(1, ApiBurst(limits) / ApiPerSecond(limits))}");

    internal static TokenBucketRateLimiterOptions ApiBucket(RateLimitOptions limits) => new()
    {
        TokenLimit = ApiBurst(limits),
        TokensPerPeriod = ApiPerSecond(limits),
        ReplenishmentPeriod = TimeSpan.FromSeconds(1),
        QueueLimit = 0,
    };

    /// <summary>The API's allowance on these endpoints (every route of the API, and the pages' download of the same data).</summary>
    public static TBuilder RequireApiRateLimit<TBuilder>(this TBuilder builder)
        where TBuilder : IEndpointConventionBuilder => builder.WithMetadata(ApiRateLimit.Endpoints);

    /// <summary>
    /// Right after the rate-limiting middleware, before authentication: the endpoints marked with
    /// <see cref="RequireApiRateLimit"/> draw on the caller's bucket, and every answer from them, a 429 or a 401 included,
    /// states the allowance and what is left of it.
    /// </summary>
    public static IApplicationBuilder UseApiRateLimit(this IApplicationBuilder app) => app.Use(async (context, next) =>
    {
        if (context.GetEndpoint()?.Metadata.GetMetadata<ApiRateLimit.Marker>() is null)
        {
            await next(context);
            return;
        }

        var limit = context.RequestServices.GetRequiredService<ApiRateLimit>();
        using var lease = limit.Acquire(BearerSubject(context) ?? "addr:" + Network(context), out var remaining, out var full);
        var state = string.Create(CultureInfo.InvariantCulture, $"\"{ApiPolicy}\";r={(lease.IsAcquired ? remaining : 0)};t={(int)Math.Ceiling(full.TotalSeconds)}");
        // Written as the answer starts, not now: the exception handler clears the headers of a request that failed (a
        // body that could not be read, a database that did not answer) before it writes its problem.
        context.Response.OnStarting(() =>
        {
            context.Response.Headers[PolicyHeader] = limit.PolicyValue;
            context.Response.Headers[StateHeader] = state;
            return Task.CompletedTask;
        });
        if (!lease.IsAcquired)
        {
            await RejectAsync(context, lease.TryGetMetadata(MetadataName.RetryAfter, out var wait) ? wait : TimeSpan.FromSeconds(1), context.RequestAborted);
            return;
        }

        await next(context);
    });

    /// <summary>The 429 a person at a browser gets: a small page in their language, with why, the wait and the way back.</summary>
    public static Task WriteTooManyPageAsync(HttpContext context, int seconds, string why, CancellationToken cancellationToken)
    {
        var response = context.Response;
        response.StatusCode = StatusCodes.Status429TooManyRequests;
        response.Headers.RetryAfter = seconds.ToString(CultureInfo.InvariantCulture);
        var text = context.RequestServices.GetRequiredService<IStringLocalizer<Pages.PageText>>();
        response.ContentType = "text/html; charset=utf-8";
        return response.WriteAsync(
            $"<!DOCTYPE html><html lang=\"{(CultureInfo.CurrentUICulture.TwoLetterISOLanguageName == "en" ? "en" : "fr")}\"><head><meta charset=\"utf-8\"><title>{Html.Encode(text["TooMany.Title"])}</title></head>"
            + $"<body><h1>{Html.Encode(text["TooMany.Title"])}</h1><p>{Html.Encode(text[why, seconds])}</p>"
            + $"<p><a href=\"{Html.Encode(context.Request.Path)}\">{Html.Encode(text["TooMany.Back"])}</a></p></body></html>",
            cancellationToken);
    }

    // Letters as they are (é, not &#xE9;); markup characters still encoded.
    private static readonly HtmlEncoder Html = HtmlEncoder.Create(System.Text.Unicode.UnicodeRanges.All);

    private static FixedWindowRateLimiterOptions Window(int permits) => new()
    {
        PermitLimit = permits,
        Window = TimeSpan.FromMinutes(1),
        QueueLimit = 0,
    };

    /// <summary>
    /// The limiter runs before authentication (so that the token endpoint's secret checks are limited too), so the caller
    /// is known only from a token this node has already validated (<see cref="Auth.ValidatedTokens"/>). Anything else (a
    /// token's first use, a forged or expired one) counts against the caller's address: a forged token naming a site
    /// cannot spend that site's allowance.
    /// </summary>
    private static string? BearerSubject(HttpContext context)
    {
        var header = context.Request.Headers.Authorization.ToString();
        if (!header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) || header.Length > 8192)
        {
            return null;
        }

        return context.RequestServices.GetRequiredService<Auth.ValidatedTokens>().VerifiedSubject(header[7..].Trim()) is { } subject
            ? "sub:" + subject
            : null;
    }

    /// <summary>
    /// The client a token request claims to be, or the caller's address. Unverified, so the bucket is per claimed client
    /// and address: requests naming a site from elsewhere cannot use up that site's token requests.
    /// </summary>
    private static string ClaimedClient(HttpContext context)
    {
        if (AuthenticationHeaderValue.TryParse(context.Request.Headers.Authorization, out var header)
            && header.Scheme.Equals("Basic", StringComparison.OrdinalIgnoreCase) && header.Parameter is { Length: < 1024 } encoded)
        {
            try
            {
                var decoded = Encoding.UTF8.GetString(Convert.FromBase64String(encoded));
                var colon = decoded.IndexOf(':', StringComparison.Ordinal);
                if (colon > 0)
                {
                    return Uri.UnescapeDataString(decoded[..colon]);
                }
            }
            catch (FormatException)
            {
            }
        }

        return "addr:" + Network(context);
    }

    /// <summary>The caller's address, or its IPv6 /64: a host given a /64 cannot take a fresh allowance per address.</summary>
    private static string Network(HttpContext context) => ClientNetwork.Of(context.Connection.RemoteIpAddress);

    private static bool ChecksClientSecrets(PathString path) =>
        path.StartsWithSegments("/connect/token") || path.StartsWithSegments("/connect/introspect") || path.StartsWithSegments("/connect/revoke");
}

/// <summary>
/// <see cref="RateLimitOptions.SignedInFormsPerMinute"/>, per account and node: the rate limiter runs before
/// authentication and knows only the address, so forms from a signed-in session are counted here, once the page knows
/// whose they are. Pages only: the answer to a site's consent page goes to /connect/authorize, which every answer leaves
/// through a redirect to the site.
/// </summary>
public sealed class SignedInFormLimit : Microsoft.AspNetCore.Mvc.Filters.IAsyncPageFilter, IDisposable
{
    private readonly PartitionedRateLimiter<string>? _limiter;

    public SignedInFormLimit(Microsoft.Extensions.Options.IOptions<RateLimitOptions> options)
    {
        var permits = options.Value.SignedInFormsPerMinute;
        _limiter = permits == 0 ? null : PartitionedRateLimiter.Create<string, string>(account =>
            RateLimitPartition.GetFixedWindowLimiter(account, _ => new FixedWindowRateLimiterOptions
            {
                PermitLimit = permits, Window = TimeSpan.FromMinutes(1), QueueLimit = 0,
            }));
    }

    public Task OnPageHandlerSelectionAsync(Microsoft.AspNetCore.Mvc.Filters.PageHandlerSelectedContext context) => Task.CompletedTask;

    public async Task OnPageHandlerExecutionAsync(
        Microsoft.AspNetCore.Mvc.Filters.PageHandlerExecutingContext context, Microsoft.AspNetCore.Mvc.Filters.PageHandlerExecutionDelegate next)
    {
        var account = context.HttpContext.User.Identity?.IsAuthenticated == true ? context.HttpContext.User.FindFirst("sub")?.Value : null;
        if (_limiter is null || account is null || !HttpMethods.IsPost(context.HttpContext.Request.Method)
            || Pages.PagesSetup.IsAlwaysOpen(context.ActionDescriptor.ViewEnginePath))
        {
            await next();
            return;
        }

        using var lease = _limiter.AttemptAcquire(account);
        if (!lease.IsAcquired)
        {
            var wait = lease.TryGetMetadata(MetadataName.RetryAfter, out var retryAfter) ? retryAfter : TimeSpan.FromSeconds(1);
            await RateLimits.WriteTooManyPageAsync(context.HttpContext, Math.Max(1, (int)Math.Ceiling(wait.TotalSeconds)), "TooMany.Account.Body", context.HttpContext.RequestAborted);
            context.Result = new Microsoft.AspNetCore.Mvc.EmptyResult();
            return;
        }

        await next();
    }

    public void Dispose() => _limiter?.Dispose();
}
