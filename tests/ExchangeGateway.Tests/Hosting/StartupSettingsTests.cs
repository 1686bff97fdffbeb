using System.Net;
using ExchangeGateway.Tests.Infrastructure;

namespace ExchangeGateway.Tests.Hosting;

/// <summary>
/// Settings read before the container exists (whether a node runs jobs, when they run, which browser origins may call)
/// are validated at start like every other option: a wrong value stops the gateway with the setting's name, instead of
/// a job left on another schedule or a site's browser calls failing without a word.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class StartupSettingsTests(GatewayFixture fixture)
{
    [Theory]
    [InlineData("Cors:AllowedOrigins:0", "https://jobs.example/", "Cors:AllowedOrigins: 'https://jobs.example/' is not an origin")]
    [InlineData("Cors:AllowedOrigins:0", "*", "Cors:AllowedOrigins: '*' is not an origin")]
    [InlineData("Cors:AllowedOrigins:0", "ftp://jobs.example", "Cors:AllowedOrigins: 'ftp://jobs.example' is not an origin")]
    [InlineData("Jobs:Workers", "0", "Jobs:Workers")]
    [InlineData("Jobs:Schedules:FreshnesSweep", "*/5 * * * *", "no recurring job is called 'FreshnesSweep'")]
    [InlineData("Jobs:Schedules:FreshnessSweep", "every ten minutes", "Jobs:Schedules:FreshnessSweep: 'every ten minutes' is not a cron expression")]
    [InlineData("Jobs:Schedules:AuditCheckpoint", "0 * * *", "Jobs:Schedules:AuditCheckpoint: '0 * * *' is not a cron expression")]
    [InlineData("Jobs:Schedules:AuditCheckpoint", "@hourly", "Jobs:Schedules:AuditCheckpoint: '@hourly' is not a cron expression")]
    public async Task AWrongSettingStopsTheStartNamingIt(string key, string value, string message)
    {
        await using var node = new GatewayFactory(fixture.Database, fixture.Time, issuer: fixture.Factory.Issuer,
            settings: new Dictionary<string, string?> { [key] = value });

        var refused = Record.Exception(() => node.Services);

        Assert.NotNull(refused);
        var messages = GatewayCommand.Chain(refused).Select(e => e.Message).ToList();
        Assert.Contains(messages, m => m.Contains(message, StringComparison.Ordinal));
    }

    /// <summary>
    /// A schedule is read while the services are set up, as the README says: a node given a wrong one on a rolling upgrade
    /// stops before it installs Hangfire's schema or migrates the database the other nodes still serve from.
    /// </summary>
    [Fact]
    public async Task AWrongScheduleStopsTheStartBeforeTheDatabaseIsTouched()
    {
        await using var database = await TestDatabase.CreateAsync();
        await using (var node = new GatewayFactory(database, fixture.Time, issuer: fixture.Factory.Issuer,
            settings: new Dictionary<string, string?> { ["Jobs:Schedules:AuditCheckpoint"] = "0 * * *" }))
        {
            var refused = Record.Exception(() => node.Services);
            Assert.Contains(GatewayCommand.Chain(refused!).Select(e => e.Message), m => m.Contains("Jobs:Schedules:AuditCheckpoint", StringComparison.Ordinal));
        }

        Assert.Equal(0L, await database.ScalarAsync<long>(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"));
    }

    /// <summary>
    /// Hangfire's storage is made in the start turn, without Hangfire's own retries: a wrong connection string for it stops
    /// the node at once, naming the setting (it failed after a minute of retries, with Hangfire's message).
    /// </summary>
    [Fact]
    public async Task AWrongHangfireConnectionStringStopsTheStartNamingIt()
    {
        await using var node = new GatewayFactory(fixture.Database, fixture.Time, issuer: fixture.Factory.Issuer,
            settings: new Dictionary<string, string?> { ["ConnectionStrings:Hangfire"] = "Host=127.0.0.1;Port=1;Username=nobody;Timeout=2" });

        var refused = Record.Exception(() => node.Services);

        Assert.NotNull(refused);
        Assert.Contains(GatewayCommand.Chain(refused).Select(e => e.Message), m => m.Contains("ConnectionStrings:Hangfire", StringComparison.Ordinal));
    }

    [Fact]
    public async Task AConfiguredOriginMayCallTheApiAndNoOtherMay()
    {
        await using var node = new GatewayFactory(fixture.Database, fixture.Time, issuer: fixture.Factory.Issuer,
            settings: new Dictionary<string, string?> { ["Cors:AllowedOrigins:0"] = "https://jobs.example" });
        using var client = node.CreateHttpClient();

        Assert.Equal("https://jobs.example", await PreflightAsync(client, "https://jobs.example"));
        Assert.Null(await PreflightAsync(client, "https://evil.example"));
    }

    private static async Task<string?> PreflightAsync(HttpClient client, string origin)
    {
        using var preflight = new HttpRequestMessage(HttpMethod.Options, "/api/v1/shared-cvs");
        preflight.Headers.Add("Origin", origin);
        preflight.Headers.Add("Access-Control-Request-Method", "GET");
        preflight.Headers.Add("Access-Control-Request-Headers", "authorization");
        using var response = await client.SendAsync(preflight);
        Assert.True(response.StatusCode is HttpStatusCode.NoContent or HttpStatusCode.OK, $"preflight answered {response.StatusCode}");
        return response.Headers.TryGetValues("Access-Control-Allow-Origin", out var allowed) ? allowed.Single() : null;
    }
}
