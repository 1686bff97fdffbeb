using System.Collections.Concurrent;
using System.Globalization;
using ExchangeGateway.Auth;
using ExchangeGateway.Data;
using Microsoft.EntityFrameworkCore;

namespace ExchangeGateway.Recipients;

/// <summary>
/// The live check behind every recipient call: a token says who the site is, the database says whether it may still act.
/// Suspension therefore takes effect on the next request, however long the token has to run (see <see cref="RecipientLookup"/>).
/// </summary>
public class RecipientGate : IEndpointFilter
{
    public const string ItemKey = "eg.recipient";

    /// <summary>Whether a suspended site may still call: yes only where it must, to receive and confirm erasure events.</summary>
    protected virtual bool AdmitsSuspended => false;

    public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var http = context.HttpContext;
        var recipient = await http.RequestServices.GetRequiredService<RecipientLookup>().FindAsync(http.RequestServices, http.User.Subject(), http.RequestAborted);
        if (recipient is null)
        {
            return TypedResults.Problem("This client is not a registered recipient.", statusCode: StatusCodes.Status403Forbidden, title: "Forbidden");
        }

        if (!recipient.IsActive && !AdmitsSuspended)
        {
            return TypedResults.Problem("This recipient is suspended: it may not read CVs. It may still poll and confirm its erasure events.", statusCode: StatusCodes.Status403Forbidden, title: "Recipient suspended");
        }

        var generation = http.User.FindFirst(Recipient.CredentialClaim)?.Value;
        if (!recipient.Honours(generation is null ? null : int.Parse(generation, CultureInfo.InvariantCulture)))
        {
            // A Bearer challenge, as RFC 6750 has for a revoked token: the site's client gets a new token (or finds its
            // credentials changed) instead of reading this as a refusal of what it asked for.
            http.Response.Headers.WWWAuthenticate = "Bearer error=\"invalid_token\", error_description=\"The site's credentials were rotated after this token was issued.\"";
            return TypedResults.Problem("This token was issued before the site's credentials were rotated. Get a new one.",
                statusCode: StatusCodes.Status401Unauthorized, title: "Token revoked");
        }

        http.Items[ItemKey] = recipient;
        return await next(context);
    }
}

/// <summary>
/// The gate of the event endpoints. A suspended site reads no CV, but it still holds copies: it must still be able to
/// fetch its erasure events and confirm deletion, or suspension would stop the very chase it triggers.
/// </summary>
public sealed class RecipientGateAllowingSuspended : RecipientGate
{
    protected override bool AdmitsSuspended => true;
}

public static class RecipientContext
{
    public static Recipient Recipient(this HttpContext context) =>
        context.Items[RecipientGate.ItemKey] as Recipient ?? throw new InvalidOperationException("RecipientGate did not run.");
}

/// <summary>
/// Recipients by client id, each kept for one second. Every recipient request needs the site's row, and reading it was a
/// round trip per request. What a stale entry can do is bounded: the node that suspends or edits a site forgets it at
/// once, another node answers from its copy for at most a second, and even then no CV leaves, because the ledger insert
/// that must precede every disclosure checks the site's status again in the database, under the chain lock. A token of
/// credentials rotated away, which the ledger insert does not check, may still act for that second on another node.
/// The second is the host's <see cref="TimeProvider"/>'s, so that tests can hold an entry, or let it expire, at will
/// instead of racing the wall clock.
/// </summary>
public sealed class RecipientLookup(TimeProvider time)
{
    private const int MaxEntries = 10_000;

    // Compiled once: translating this query on every request cost more than running it.
    private static readonly Func<GatewayDbContext, string, CancellationToken, Task<Recipient?>> ByClientId =
        EF.CompileAsyncQuery((GatewayDbContext db, string clientId, CancellationToken _) =>
            db.Recipients.AsNoTracking().SingleOrDefault(r => r.ClientId == clientId));

    private readonly ConcurrentDictionary<string, (Recipient Recipient, long Until)> _entries = new(StringComparer.Ordinal);

    /// <summary>The site behind a client id, or null when the client is not a registered recipient.</summary>
    public async Task<Recipient?> FindAsync(IServiceProvider services, string? clientId, CancellationToken cancellationToken)
    {
        if (clientId is null)
        {
            return null;
        }

        var now = time.GetTimestamp();
        if (_entries.TryGetValue(clientId, out var entry) && entry.Until > now)
        {
            return entry.Recipient;
        }

        var recipient = await ByClientId(services.GetRequiredService<GatewayDbContext>(), clientId, cancellationToken);
        if (recipient is not null)
        {
            if (_entries.Count >= MaxEntries)
            {
                _entries.Clear();
            }

            _entries[clientId] = (recipient, now + time.TimestampFrequency);
        }

        return recipient;
    }

    /// <summary>The site changed on this node: the next request reads it again.</summary>
    public void Forget(string clientId) => _entries.TryRemove(clientId, out _);
}
