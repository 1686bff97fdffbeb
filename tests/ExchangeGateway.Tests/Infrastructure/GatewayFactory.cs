using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;

namespace ExchangeGateway.Tests.Infrastructure;

/// <summary>
/// The real gateway on Kestrel (a real loopback port, real HTTP), against a real PostgreSQL database, with one
/// injectable clock. Several factories may share a database to play several nodes of one deployment.
/// </summary>
public sealed class GatewayFactory : WebApplicationFactory<Program>
{
    public const string PseudonymKey = "dGVzdC1vbmx5LXBzZXVkb255bS1rZXktMDAwMDAwMDAwMDAwMDA=";
    public const string KeyEncryptionKey = "dGVzdC1vbmx5LWtleS1yaW5nLWtlay0wMDAwMDAwMDAwMDAwMDAwMA==";

    private readonly string _appConnectionString;
    private readonly string _ownerConnectionString;
    private readonly Dictionary<string, string?> _settings;
    private readonly Action<IServiceCollection>? _services;

    public GatewayFactory(
        TestDatabase database, FakeTimeProvider time, Uri? issuer = null, string? appConnectionString = null, IDictionary<string, string?>? settings = null,
        bool captureLogs = false, Action<IServiceCollection>? services = null)
    {
        _services = services;
        Logs = captureLogs ? new ConcurrentQueue<string>() : null;
        Time = time;
        Port = FreePort();
        BaseAddress = new Uri($"http://127.0.0.1:{Port}/");
        Issuer = issuer ?? BaseAddress;
        _appConnectionString = appConnectionString ?? database.AppConnectionString;
        _ownerConnectionString = database.OwnerConnectionString;
        _settings = new Dictionary<string, string?>(settings ?? new Dictionary<string, string?>());
        UseKestrel(Port);
    }

    public FakeTimeProvider Time { get; }

    /// <summary>Which database this host serves (several hosts may share one).</summary>
    public string DatabaseName => new Npgsql.NpgsqlConnectionStringBuilder(_ownerConnectionString).Database ?? "";

    /// <summary>Where this host's notifier drops its e-mails (.eml files).</summary>
    public string MailDirectory { get; } = Path.Combine(Path.GetTempPath(), "eg-test-mail-" + Guid.NewGuid().ToString("N")[..8]);
    public int Port { get; }
    public Uri BaseAddress { get; }
    public Uri Issuer { get; }

    /// <summary>Every log line the host wrote, when it was created with <c>captureLogs</c>.</summary>
    public ConcurrentQueue<string>? Logs { get; }

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        builder.UseEnvironment("Testing");
        builder.UseSetting("ConnectionStrings:Gateway", _appConnectionString);
        builder.UseSetting("ConnectionStrings:GatewayOwner", _ownerConnectionString);
        builder.UseSetting("Auth:Issuer", Issuer.AbsoluteUri);
        builder.UseSetting("Auth:AllowInsecureHttp", "true");
        builder.UseSetting("Audit:PseudonymKey", PseudonymKey);
        builder.UseSetting("DataProtection:KeyEncryptionKey", KeyEncryptionKey);
        builder.UseSetting("DemoData:Enabled", "true");
        builder.UseSetting("Recipients:RequireHttps", "false");
        // Jobs are called directly by the tests (deterministic); a test that wants the Hangfire server turns it on.
        builder.UseSetting("Jobs:RunServer", "false");
        // Every test comes from 127.0.0.1 and mints many tokens; the limits themselves are tested on a host of their own.
        builder.UseSetting("RateLimits:PerAddressPerMinute", "0");
        builder.UseSetting("RateLimits:AccountFormsPerMinute", "0");
        builder.UseSetting("RateLimits:SignedInFormsPerMinute", "0");
        builder.UseSetting("RateLimits:TokenRequestsPerMinute", "100000");
        builder.UseSetting("RateLimits:ApiRequestsPerMinute", "1000000");
        // Refused token requests of unknown clients are how many tests write audit rows; their cap is tested on its own host.
        builder.UseSetting("Audit:UnknownClientRefusalsPerMinute", "1000000");
        builder.UseSetting("Notifier:PickupDirectory", MailDirectory);
        builder.UseSetting("Recipients:AllowedPrivateNetworks:0", "127.0.0.0/8");
        foreach (var (key, value) in _settings)
        {
            builder.UseSetting(key, value);
        }

        builder.ConfigureTestServices(services =>
        {
            services.AddSingleton<TimeProvider>(Time);
            if (Logs is not null)
            {
                services.AddSingleton<ILoggerProvider>(new LogCapture(Logs));
            }

            _services?.Invoke(services);
        });
    }

    /// <summary>A client for the real Kestrel listener, without automatic redirects so tests see every hop.</summary>
    public HttpClient CreateHttpClient(CookieContainer? cookies = null)
    {
        StartServer();
        var handler = new HttpClientHandler { AllowAutoRedirect = false, UseCookies = cookies is not null, CookieContainer = cookies ?? new CookieContainer() };
        return new HttpClient(handler) { BaseAddress = BaseAddress };
    }

    /// <summary>A loopback port nothing listens on right now.</summary>
    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
