using System.Net;
using System.Text.Json;
using ExchangeGateway.Auth;
using ExchangeGateway.Consents;
using ExchangeGateway.Cvs;
using ExchangeGateway.Events;
using Microsoft.Extensions.DependencyInjection;

namespace ExchangeGateway.Tests.Infrastructure;

/// <summary>
/// Steps the propagation tests share: a seeker with a CV, the sites reading it, their erasures, signing in again after the
/// clock moved (tokens follow the fake clock too), and running the background jobs directly.
/// </summary>
public static class Propagation
{
    public const string SeekerScope = "openid offline_access " + ApiScopes.CvManage;

    public static Task<string> TokenAsync(this Actors actors, TestSite site) => actors.ClientTokenAsync(site.ClientId, site.Secret, ApiScopes.CvRead);

    /// <summary>A seeker with a CV carrying <paramref name="marker"/>; returns the seeker.</summary>
    public static async Task<Person> SeekerWithCvAsync(GatewayFactory factory, Actors actors, string marker)
    {
        var seeker = await actors.NewSeekerAsync();
        using var put = await Sharing.PutCvAsync(factory, seeker.Tokens.AccessToken, Sharing.Resume(marker));
        Assert.Equal(HttpStatusCode.Created, put.StatusCode);
        return seeker;
    }

    /// <summary>The site reads its feed (which records the disclosure) and returns its id for the CV with the marker.</summary>
    public static async Task<string> ReadAsync(GatewayFactory factory, string siteToken, string marker)
    {
        var (items, _) = await Sharing.ReadFeedAsync(factory, siteToken);
        var id = Sharing.PairwiseIdOf(items, marker);
        Assert.True(id is not null, $"the site's feed has no CV with {marker}");
        return id!;
    }

    /// <summary>
    /// GET /api/v1/me/erasures: every obligation about the seeker, newest first, walked two to a page so that every
    /// caller also checks the paging (no obligation twice, none skipped).
    /// </summary>
    public static async Task<List<JsonElement>> MyErasuresAsync(GatewayFactory factory, string seekerToken)
    {
        using var client = factory.CreateHttpClient().WithToken(seekerToken);
        var items = new List<JsonElement>();
        string? cursor = null;
        do
        {
            using var response = await client.GetAsync("/api/v1/me/erasures?limit=2" + (cursor is null ? "" : "&cursor=" + Uri.EscapeDataString(cursor)));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var page = await response.ReadJsonAsync();
            var batch = page.GetProperty("items").EnumerateArray().Select(i => i.Clone()).ToList();
            Assert.InRange(batch.Count, 0, 2);
            items.AddRange(batch);
            cursor = page.GetProperty("nextCursor").GetString();
        }
        while (cursor is not null);

        var ids = items.Select(i => i.GetProperty("id").GetInt64()).ToList();
        Assert.Equal(ids.OrderDescending(), ids);
        Assert.Equal(ids.Count, ids.Distinct().Count());
        return items;
    }

    /// <summary>A column of the obligation with this jti, read straight from the table.</summary>
    public static Task<T> ObligationAsync<T>(TestDatabase database, string jti, string column) =>
        database.ScalarAsync<T>($"SELECT {column} FROM erasure_obligations WHERE jti = '{Guid.Parse(jti)}'");

    /// <summary>
    /// The audit events that record the delivery of the event <paramref name="jti"/> (one per site and round, naming its
    /// jtis), as "actor kind|actor id|recipient|via|count".
    /// </summary>
    public static async Task<string[]> DeliveryAuditAsync(TestDatabase database, string jti)
    {
        var found = await database.ScalarAsync<string[]>($"""
            SELECT coalesce(array_agg(actor_kind || '|' || actor_id || '|' || recipient || '|' || (details::jsonb ->> 'via') || '|' || (details::jsonb ->> 'count')), ARRAY[]::text[])
            FROM audit_events WHERE action = 'erasure.delivered' AND details::jsonb -> 'jtis' ? '{Guid.Parse(jti)}'
            """);
        return found;
    }

    public static Task<int> RunDispatchAsync(this GatewayFactory factory) => RunAsync<EventDispatchJob>(factory, (job, ct) => job.RunAsync(ct));
    public static Task<int> RunFreshnessSweepAsync(this GatewayFactory factory) => RunAsync<FreshnessSweepJob>(factory, (job, ct) => job.RunAsync(ct));
    public static Task<int> RunConsentExpiryAsync(this GatewayFactory factory) => RunAsync<ConsentExpiryJob>(factory, (job, ct) => job.RunAsync(ct));
    public static Task<int> RunOverdueEscalationAsync(this GatewayFactory factory) => RunAsync<OverdueEscalationJob>(factory, (job, ct) => job.RunAsync(ct));
    public static Task<int> RunRemindersAsync(this GatewayFactory factory) => RunAsync<ReminderJob>(factory, (job, ct) => job.RunAsync(ct));
    public static Task<int> RunErasedRecordsPurgeAsync(this GatewayFactory factory) => RunAsync<ErasedRecordsPurgeJob>(factory, (job, ct) => job.RunAsync(ct));

    /// <summary>Runs a job the way Hangfire would: resolved in its own scope.</summary>
    private static async Task<int> RunAsync<TJob>(GatewayFactory factory, Func<TJob, CancellationToken, Task<int>> run)
        where TJob : notnull
    {
        await using var scope = factory.Services.CreateAsyncScope();
        return await run(scope.ServiceProvider.GetRequiredService<TJob>(), CancellationToken.None);
    }
}
