using ExchangeGateway.Auth;
using ExchangeGateway.Data;
using ExchangeGateway.Hosting;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;

namespace ExchangeGateway.Recipients;

/// <summary>What a seeker needs to decide: who the site is and where its privacy policy is. No secrets, no contacts.</summary>
public sealed record DirectoryEntry(Guid Id, string DisplayName, string LegalName, Uri Website, Uri PrivacyPolicyUrl);

public static class RecipientDirectoryEndpoints
{
    private const string Collection = "recipient-directory";

    public static RouteGroupBuilder MapRecipientDirectoryEndpoints(this RouteGroupBuilder api)
    {
        api.MapGet("/recipients", List).RequireAuthorization(ApiScopes.CvManage).WithTags("Job seeker")
            .WithName("ListDirectory").WithSummary("The named sites a job seeker can share a CV with.");
        return api;
    }

    private static async Task<Results<Ok<Page<DirectoryEntry>>, ProblemHttpResult>> List(
        string? cursor, int? limit, GatewayDbContext db, Cursors cursors, CancellationToken cancellationToken)
    {
        if (cursors.Read<Guid>(Collection, cursor, limit, out var after, out var take) is { } problem)
        {
            return problem;
        }

        return TypedResults.Ok(await cursors.PageAsync(Collection,
            db.Recipients.AsNoTracking()
                .Where(r => r.Status == RecipientStatus.Active && (after == Guid.Empty || r.Id > after))
                .OrderBy(r => r.Id)
                .Select(r => new DirectoryEntry(r.Id, r.DisplayName, r.LegalName, r.Website, r.PrivacyPolicyUrl)),
            take, r => r.Id, cancellationToken));
    }
}
