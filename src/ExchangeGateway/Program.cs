using ExchangeGateway.Audit;
using ExchangeGateway.Auth;
using ExchangeGateway.Data;
using ExchangeGateway.Exchange;
using ExchangeGateway.Hosting;
using ExchangeGateway.Pages;
using ExchangeGateway.Recipients;
using ExchangeGateway.Consents;
using ExchangeGateway.Cvs;
using ExchangeGateway.Events;
using Hangfire;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.Extensions.Options;

var command = AuditCommands.IsCommand(args) || JobCommands.IsCommand(args) || KeyCommands.IsCommand(args) || StaffCommands.IsCommand(args)
    || ErasureCommands.IsCommand(args) || args is ["migrate", ..] ? args : null;
// A first word that is neither a command nor a setting (--key value, key=value) is a mistyped command: starting the
// server instead would migrate the database the command was meant for.
if (command is null && args is [var first, ..] && !first.StartsWith('-') && !first.StartsWith('/') && !first.Contains('='))
{
    await Console.Error.WriteLineAsync(
        $"unknown command '{first}': migrate | audit verify [--anchor TOKEN] | audit checkpoint | jobs run freshness-sweep|event-dispatch | keys rotate-data-key|seal-ring|export-public DIR | staff … | erasures reapply AUDIT_EXPORT");
    return 64;
}

var builder = WebApplication.CreateBuilder(command is null ? args : []);

builder.AddGatewayTelemetry();
builder.WebHost.ConfigureKestrel(kestrel =>
{
    kestrel.AddServerHeader = false;
    kestrel.Limits.MaxRequestBodySize = 1024 * 1024;
});

// The sharing page posts up to three values a site (shown, was shared, shared): the default 1 024 values refused the
// form of a seeker offered some 340 sites. The body limit above still bounds the form's size.
builder.Services.Configure<Microsoft.AspNetCore.Http.Features.FormOptions>(form => form.ValueCountLimit = 10_000);
builder.Services.AddSingleton(TimeProvider.System);
builder.Services.AddGatewayProxies();
builder.Services.AddGatewayDatabase(builder.Configuration);
builder.Services.AddGatewayDataProtection();
builder.Services.AddGatewayAuth(builder.Environment);
builder.Services.AddOptions<AuditOptions>().BindConfiguration(AuditOptions.Section).ValidateDataAnnotations().ValidateOnStart();
builder.Services.AddSingleton(sp => new Pseudonyms(sp.GetRequiredService<IOptions<AuditOptions>>()));
builder.Services.AddScoped<AuditTrail>();
builder.Services.AddSingleton<AuditReads>();
builder.Services.AddScoped<AuditVerifier>();
builder.Services.AddScoped<AuditCheckpoints>();
builder.Services.AddSingleton<Cursors>();
builder.Services.AddOptions<FreshnessOptions>().BindConfiguration(FreshnessOptions.Section).ValidateDataAnnotations().ValidateOnStart();
builder.Services.AddOptions<ConsentOptions>().BindConfiguration(ConsentOptions.Section).ValidateDataAnnotations().ValidateOnStart();
builder.Services.AddOptions<ErasureOptions>().BindConfiguration(ErasureOptions.Section).ValidateDataAnnotations().ValidateOnStart();
builder.Services.AddOptions<DeliveryOptions>().BindConfiguration(DeliveryOptions.Section).ValidateDataAnnotations().ValidateOnStart();
builder.Services.AddOptions<NotifierOptions>().BindConfiguration(NotifierOptions.Section).ValidateDataAnnotations().ValidateOnStart();
builder.Services.AddSingleton<ResumeDocument>();
builder.Services.AddOptions<DataKeyOptions>().BindConfiguration(DataKeyOptions.Section).ValidateDataAnnotations().ValidateOnStart();
builder.Services.AddSingleton<DataKeyRing>();
builder.Services.AddSingleton<CvSealer>();
builder.Services.AddSingleton<RecipientLookup>();
builder.Services.AddSingleton<EventTokens>();
builder.Services.AddSingleton<LongPollSlots>();
builder.Services.AddSingleton<FeedPageSlots>();
builder.Services.AddSingleton<DeliveryCaps>();
builder.Services.AddScoped<CvWriter>();
builder.Services.AddScoped<ConsentDesk>();
builder.Services.AddScoped<SuspensionConsequences>();
builder.Services.AddScoped<SeekerErasure>();
builder.Services.AddScoped<SharedCvFeed>();
builder.Services.AddSingleton<DisclosureRecorder>();
builder.Services.AddSingleton<INotifier>(sp => sp.GetRequiredService<Microsoft.Extensions.Options.IOptions<NotifierOptions>>().Value.Mode == "smtp"
    ? ActivatorUtilities.CreateInstance<SmtpNotifier>(sp)
    : ActivatorUtilities.CreateInstance<PickupFolderNotifier>(sp));
builder.Services.AddSingleton<AccountMail>();
builder.Services.AddHostedService(sp => sp.GetRequiredService<AccountMail>());
builder.Services.AddGatewayJobs(builder.Configuration);
builder.Services.AddHttpClient(EventDispatchJob.HttpClientName, client => client.DefaultRequestHeaders.Accept.ParseAdd("application/json"))
    .ConfigurePrimaryHttpMessageHandler(sp => new SocketsHttpHandler
    {
        // Redirects could lead a delivery into the internal network; the socket-level check vets every connection.
        AllowAutoRedirect = false,
        ConnectCallback = sp.GetRequiredService<PushEndpointPolicy>().ConnectAsync,
        // Through a proxy (HTTPS_PROXY), the connect check would vet the proxy's address and the proxy would reach any target.
        UseProxy = false,
        PooledConnectionLifetime = TimeSpan.FromMinutes(5),
        UseCookies = false,
    })
    // IHttpClientFactory logs two Information lines per request; at thousands of events a second that is most of the
    // dispatcher's work. Each round's outcome is logged by the job itself.
    .RemoveAllLoggers();
builder.Services.AddOptions<RecipientOptions>().BindConfiguration(RecipientOptions.Section).ValidateDataAnnotations().ValidateOnStart();
builder.Services.AddSingleton<PushEndpointPolicy>();
builder.Services.AddGatewayProblems();
builder.Services.AddGatewayOpenApi();
builder.Services.AddGatewayHealth(builder.Configuration);
builder.Services.AddGatewayPages(builder.Environment);
builder.Services.AddGatewayRateLimits(builder.Configuration);
builder.Services.AddGatewayCors(builder.Configuration);

var app = builder.Build();

if (command is not null)
{
    try
    {
        if (command is ["migrate", ..])
        {
            if (command is not ["migrate"])
            {
                await Console.Error.WriteLineAsync("usage: migrate");
                return 64;
            }

            return await Startup.MigrateCommandAsync(app.Services);
        }

        // A command with the wrong key-encryption key would otherwise find no key it can open and write one of its own.
        await KeyRingProtection.CheckStoredKeysAsync(app.Services, CancellationToken.None);
        return JobCommands.IsCommand(command) ? await JobCommands.RunAsync(app.Services, command)
            : KeyCommands.IsCommand(command) ? await KeyCommands.RunAsync(app.Services, command)
            : StaffCommands.IsCommand(command) ? await StaffCommands.RunAsync(app.Services, command)
            : ErasureCommands.IsCommand(command) ? await ErasureCommands.RunAsync(app.Services, command)
            : await AuditCommands.RunAsync(app.Services, command);
    }
    catch (Exception e) when (e is InvalidOperationException or OptionsValidationException or Npgsql.NpgsqlException or IOException
        or System.Security.Cryptography.CryptographicException)
    {
        // What the operator must change (a setting, a key, the database), not a stack trace.
        await Console.Error.WriteLineAsync($"{command[0]}: {e.Message}");
        return 1;
    }
}

var consentOptions = app.Services.GetRequiredService<IOptions<ConsentOptions>>().Value;
var notifierOptions = app.Services.GetRequiredService<IOptions<NotifierOptions>>().Value;
if (LocalOnly.Refusal(app.Environment, app.Configuration.GetValue("DemoData:Enabled", false), notifierOptions.Mode,
        ("Consent:ControllerContact", consentOptions.ControllerContact), ("Consent:ControllerUrl", consentOptions.ControllerUrl.OriginalString),
        ("Notifier:From", notifierOptions.From)) is { } refusal)
{
    throw new InvalidOperationException(refusal);
}

// Every setting first: a node with a bad one must stop before it touches the database (the start's migrations change the
// schema the other nodes run on, and making Hangfire's storage installs its schema).
app.Services.GetService<IStartupValidator>()?.Validate();

app.UseGatewayProxies();
app.UseExceptionHandler();
app.UseStatusCodePages();
app.UseGatewayPageErrors();
app.UseJsonCharsetCheck();
app.UseNulCharacterRefusal();
app.UseSecurityHeaders();
app.UseStaticFiles();
app.UseGatewayPages();
app.UseRouting();
app.UseGatewayCors();

app.UseRateLimiter();
app.UseApiRateLimit();
app.UseAuthentication();
app.UseAuthorization();
app.UseAntiforgery();

app.UseGatewayOpenApi();
app.MapGatewayHealth();
app.MapAuthorizationEndpoints();
app.MapRazorPages();
app.MapMyDataDownload();

var api = app.MapGroup("/api/v1").RequireApiRateLimit();
api.MapAccountEndpoints();
api.MapSharedCvEndpoints();
api.MapAuditEndpoints();
api.MapAdminRecipientEndpoints();
api.MapDeliveryStatusEndpoints();
api.MapRecipientDirectoryEndpoints();
api.MapCvEndpoints();
api.MapConsentEndpoints();
api.MapMyDataEndpoints();
api.MapEventEndpoints();
api.MapErasureAuditEndpoints();
api.MapErasureRequestEndpoints();
api.MapBenchmarkEndpoints(app.Configuration);

await app.PrepareAsync();
// After the start turn made Hangfire's storage (mapping the dashboard resolves it).
app.MapGatewayDashboard();
// Now, not at the first job or feed read that needs them: the backlog gauges must be there from the node's start.
app.Services.GetRequiredService<GatewayMetrics>();
Jobs.RegisterRecurringJobs(app.Services.GetRequiredService<IRecurringJobManager>(), app.Services.GetRequiredService<IOptions<JobOptions>>().Value);
await app.RunAsync();
return 0;
