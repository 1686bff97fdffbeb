using ExchangeGateway.Auth;
using ExchangeGateway.Data;
using ExchangeGateway.Hosting;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;

namespace ExchangeGateway.Recipients;

public sealed record RecipientResponse(
    Guid Id, string ClientId, string DisplayName, string LegalName, Uri Website, Uri PrivacyPolicyUrl, string ContactEmail,
    DeliveryMode DeliveryMode, Uri? PushEndpoint, ClientAuthentication ClientAuthentication, RecipientStatus Status,
    string? StatusReason, DateTimeOffset CreatedAt, DateTimeOffset UpdatedAt)
{
    public static RecipientResponse From(Recipient r) => new(
        r.Id, r.ClientId, r.DisplayName, r.LegalName, r.Website, r.PrivacyPolicyUrl, r.ContactEmail, r.DeliveryMode,
        r.PushEndpoint, r.ClientAuthentication, r.Status, r.StatusReason, r.CreatedAt, r.UpdatedAt);
}

public static class AdminRecipientEndpoints
{
    private const string Collection = "admin-recipients";

    public static RouteGroupBuilder MapAdminRecipientEndpoints(this RouteGroupBuilder api)
    {
        var admin = api.MapGroup("/admin/recipients").RequireAuthorization(ApiScopes.RecipientsAdmin).WithTags("Operator");
        admin.MapGet("/", List).WithName("ListRecipients").WithSummary("Registered recipient sites, in registration order.");
        return api;
    }

    private static async Task<Results<Ok<Page<RecipientResponse>>, ProblemHttpResult>> List(
        string? cursor, int? limit, GatewayDbContext db, Cursors cursors, CancellationToken cancellationToken)
    {
        if (cursors.Read<Guid>(Collection, cursor, limit, out var after, out var take) is { } problem)
        {
            return problem;
        }

        // Ids are UUIDv7, so their order is registration order and a stable keyset.
        var rows = await db.Recipients.AsNoTracking()
            .Where(r => after == Guid.Empty || r.Id > after)
            .OrderBy(r => r.Id)
            .Take(take + 1)
            .ToListAsync(cancellationToken);
        var items = rows.Take(take).Select(RecipientResponse.From).ToList();
        return TypedResults.Ok(new Page<RecipientResponse>(items, rows.Count > take ? cursors.Encode(Collection, items[^1].Id) : null));
    }
}
