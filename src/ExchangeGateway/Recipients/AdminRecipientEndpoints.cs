using System.ComponentModel.DataAnnotations;
using System.Data.Common;
using System.Text.Json;
using System.Text.RegularExpressions;
using ExchangeGateway.Audit;
using ExchangeGateway.Auth;
using ExchangeGateway.Consents;
using ExchangeGateway.Data;
using ExchangeGateway.Events;
using ExchangeGateway.Hosting;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.Tokens;
using Npgsql;
using OpenIddict.Abstractions;
using OpenIddict.EntityFrameworkCore.Models;

namespace ExchangeGateway.Recipients;

public sealed record RecipientResponse(
    Guid Id, string ClientId, string DisplayName, string LegalName, Uri Website, Uri PrivacyPolicyUrl, string ContactEmail,
    DeliveryMode DeliveryMode, Uri? PushEndpoint, ClientAuthentication ClientAuthentication, RecipientStatus Status,
    string? StatusReason, DateTimeOffset CreatedAt, DateTimeOffset UpdatedAt, IReadOnlyList<Uri> RedirectUris)
{
    public static RecipientResponse From(Recipient r, IReadOnlyList<Uri> redirectUris) => new(
        r.Id, r.ClientId, r.DisplayName, r.LegalName, r.Website, r.PrivacyPolicyUrl, r.ContactEmail, r.DeliveryMode,
        r.PushEndpoint, r.ClientAuthentication, r.Status, r.StatusReason, r.CreatedAt, r.UpdatedAt, redirectUris);

    /// <summary>The sites as operators see them, with the redirect URIs their OAuth clients hold (one query for all).</summary>
    public static async Task<List<RecipientResponse>> ForAsync(GatewayDbContext db, IReadOnlyCollection<Recipient> recipients, CancellationToken cancellationToken)
    {
        var clientIds = recipients.Select(r => r.ClientId).ToList();
        var stored = await db.Set<OpenIddictEntityFrameworkCoreApplication>().AsNoTracking()
            .Where(a => a.ClientId != null && clientIds.Contains(a.ClientId))
            .Select(a => new { a.ClientId, a.RedirectUris })
            .ToDictionaryAsync(a => a.ClientId!, a => a.RedirectUris, cancellationToken);
        return recipients.Select(r => From(r, stored.TryGetValue(r.ClientId, out var uris) && !string.IsNullOrEmpty(uris)
            ? JsonSerializer.Deserialize<string[]>(uris)!.Select(u => new Uri(u)).ToList()
            : [])).ToList();
    }

    public static async Task<RecipientResponse> ForAsync(GatewayDbContext db, Recipient recipient, CancellationToken cancellationToken) =>
        (await ForAsync(db, [recipient], cancellationToken))[0];
}

/// <summary>
/// The site's registration. <c>jwks</c> (a JSON Web Key Set of public keys) is required for private_key_jwt.
/// <c>redirectUris</c> (optional) lets the site send seekers to /connect/authorize with scope cv:share (code + PKCE).
/// </summary>
public sealed record RegisterRecipientRequest(
    [property: MaxLength(RequestErrors.MaxNameLength)] string DisplayName,
    [property: MaxLength(RequestErrors.MaxNameLength)] string LegalName,
    Uri Website,
    Uri PrivacyPolicyUrl,
    [property: MaxLength(RequestErrors.MaxEmailLength)] string ContactEmail,
    DeliveryMode DeliveryMode,
    Uri? PushEndpoint = null,
    ClientAuthentication ClientAuthentication = ClientAuthentication.ClientSecretBasic,
    JsonElement? Jwks = null,
    string? ClientId = null,
    IReadOnlyList<Uri>? RedirectUris = null);

/// <summary>The client secret appears here once; the gateway keeps only its hash.</summary>
public sealed record RegisteredRecipientResponse(Guid Id, string ClientId, string? ClientSecret, RecipientResponse Recipient);

/// <summary>Fields left out (or null) keep their value. <c>redirectUris</c> replaces the whole list; an empty list removes them all.</summary>
public sealed record UpdateRecipientRequest(
    [property: MaxLength(RequestErrors.MaxNameLength)] string? DisplayName = null,
    [property: MaxLength(RequestErrors.MaxNameLength)] string? LegalName = null,
    Uri? Website = null,
    Uri? PrivacyPolicyUrl = null,
    [property: MaxLength(RequestErrors.MaxEmailLength)] string? ContactEmail = null,
    DeliveryMode? DeliveryMode = null,
    Uri? PushEndpoint = null,
    IReadOnlyList<Uri>? RedirectUris = null);

public sealed record StatusChangeRequest([property: MaxLength(RequestErrors.MaxReasonLength)] string Reason);

/// <summary>How long the old secret keeps working (0 by default: it stops at once), at most 30 days.</summary>
public sealed record RotateSecretRequest(int GracePeriodSeconds = 0);

/// <summary>
/// The private_key_jwt site's new public keys. The set replaces the registered one: to change keys without a gap, send the
/// old and the new key together, then, once the site signs with the new one, the new key alone.
/// </summary>
public sealed record RotateKeysRequest(JsonElement? Jwks);

public sealed record RotatedSecretResponse(Guid Id, string ClientId, string ClientSecret, DateTimeOffset? PreviousSecretValidUntil);

public static partial class AdminRecipientEndpoints
{
    private const string Collection = "admin-recipients";

    public static RouteGroupBuilder MapAdminRecipientEndpoints(this RouteGroupBuilder api)
    {
        var admin = api.MapGroup("/admin/recipients").RequireAuthorization(ApiScopes.RecipientsAdmin).WithTags("Operator");
        admin.MapGet("/", List).WithName("ListRecipients").WithSummary("Registered recipient sites, oldest first (registered in the same millisecond: in id order).");
        admin.MapPost("/", Register).WithName("RegisterRecipient").WithSummary("Registers a site and its OAuth client; returns the client secret once.")
            .ProducesProblem(StatusCodes.Status409Conflict);
        admin.MapGet("/{id:guid}", Get).WithName("GetRecipient").WithSummary("One registered site.");
        admin.MapPatch("/{id:guid}", Update).WithName("UpdateRecipient").WithSummary("Changes a site's editable fields.")
            .ProducesProblem(StatusCodes.Status409Conflict);
        admin.MapPost("/{id:guid}/suspend", Suspend).WithName("SuspendRecipient").WithSummary("Suspends a site: from its next request it reads no CV (live tokens included) and only fetches and confirms its erasure events.");
        admin.MapPost("/{id:guid}/reinstate", Reinstate).WithName("ReinstateRecipient")
            .WithSummary("Lifts a suspension (409 while the suspension is still ending a large site's consents).")
            .ProducesProblem(StatusCodes.Status409Conflict);
        admin.MapPost("/{id:guid}/rotate-secret", RotateSecret).WithName("RotateRecipientSecret").WithSummary("Issues a new client secret (returned once). Without a grace period the old secret and every access token issued before are refused at once; with one, both run out.")
            .ProducesProblem(StatusCodes.Status409Conflict);
        admin.MapPost("/{id:guid}/rotate-keys", RotateKeys).WithName("RotateRecipientKeys")
            .WithSummary("Replaces a private_key_jwt site's public keys (send the old and the new key together for a changeover without a gap). A set that drops a key also refuses every access token issued before.")
            .ProducesProblem(StatusCodes.Status409Conflict);
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
        var page = await cursors.PageAsync(Collection,
            db.Recipients.AsNoTracking().Where(r => after == Guid.Empty || r.Id > after).OrderBy(r => r.Id), take, r => r.Id, cancellationToken);
        return TypedResults.Ok(new Page<RecipientResponse>(await RecipientResponse.ForAsync(db, page.Items.ToList(), cancellationToken), page.NextCursor));
    }

    private static async Task<Results<Ok<RecipientResponse>, ProblemHttpResult>> Get(Guid id, GatewayDbContext db, CancellationToken cancellationToken)
    {
        var recipient = await db.Recipients.AsNoTracking().SingleOrDefaultAsync(r => r.Id == id, cancellationToken);
        return recipient is null ? Problems.NotFound("No recipient with this id.") : TypedResults.Ok(await RecipientResponse.ForAsync(db, recipient, cancellationToken));
    }

    private static async Task<Results<Created<RegisteredRecipientResponse>, ProblemHttpResult>> Register(
        RegisterRecipientRequest request, HttpContext context, GatewayDbContext db, IOpenIddictApplicationManager applications,
        PushEndpointPolicy endpoints, IOptions<RecipientOptions> options, AuditTrail audit, TimeProvider time)
    {
        var cancellationToken = context.RequestAborted;
        var errors = new RequestErrors();
        ValidateDescription(errors, request.DisplayName, request.LegalName, request.Website, request.PrivacyPolicyUrl, request.ContactEmail, options.Value);
        await ValidateDeliveryAsync(errors, request.DeliveryMode, request.PushEndpoint, endpoints, cancellationToken);
        ValidateRedirectUris(errors, request.RedirectUris, options.Value);

        var clientId = request.ClientId ?? "site-" + Guid.NewGuid().ToString("N")[..16];
        if (!RecipientClients.IsWellFormedClientId(clientId))
        {
            errors.Add("clientId", "3 to 64 characters: lower-case letters, digits and hyphens, starting with a letter or digit.");
        }

        JsonWebKeySet? keys = null;
        if (request.ClientAuthentication == ClientAuthentication.PrivateKeyJwt)
        {
            keys = ReadPublicKeys(errors, request.Jwks);
        }
        else if (request.Jwks is not null)
        {
            errors.Add("jwks", "Only for clientAuthentication private_key_jwt.");
        }

        if (errors.Any)
        {
            return errors.ToProblem();
        }

        if (await applications.FindByClientIdAsync(clientId, cancellationToken) is not null)
        {
            return ClientIdTaken(clientId);
        }

        if (await NameTakenAsync(db, request.DisplayName, null, cancellationToken) is { } named)
        {
            return named;
        }

        var secret = request.ClientAuthentication == ClientAuthentication.ClientSecretBasic ? RecipientClients.NewSecret() : null;
        var recipient = Recipient.Register(
            clientId, request.DisplayName.Trim(), request.LegalName.Trim(), request.Website, request.PrivacyPolicyUrl, request.ContactEmail,
            request.DeliveryMode, request.PushEndpoint, request.ClientAuthentication, time.GetUtcNow());

        // OpenIddict's store uses this same DbContext, so the client, the registry row and the audit event commit together.
        await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
        try
        {
            await applications.CreateAsync(RecipientClients.Describe(clientId, recipient.DisplayName, secret, keys, request.RedirectUris), cancellationToken);
            db.Recipients.Add(recipient);
            await db.SaveChangesAsync(cancellationToken);
        }
        // A concurrent registration took the same client id after the check above: OpenIddict's own validation sees it
        // once the other one has committed, the unique index while it has not. The table is asked directly, since
        // OpenIddict's entity cache may still remember the id as free.
        catch (OpenIddictExceptions.ValidationException e)
        {
            if (!await db.Set<OpenIddictEntityFrameworkCoreApplication>().AsNoTracking().AnyAsync(a => a.ClientId == clientId, cancellationToken))
            {
                return Refused(e);
            }

            return ClientIdTaken(clientId);
        }
        catch (DbUpdateException e) when (e.InnerException is PostgresException { SqlState: PostgresErrorCodes.UniqueViolation })
        {
            return ClientIdTaken(clientId);
        }

        var registered = Description(recipient, request.RedirectUris);
        registered["clientAuthentication"] = recipient.ClientAuthentication == ClientAuthentication.PrivateKeyJwt ? "private_key_jwt" : "client_secret_basic";
        if (keys is not null)
        {
            registered["keys"] = Thumbprints(keys);
        }

        await audit.AppendAsync(OperatorEntry(context, audit, AuditActions.RecipientRegistered, recipient) with { Details = registered }, cancellationToken);
        await transaction.CommitAsync(cancellationToken);

        return TypedResults.Created($"/api/v1/admin/recipients/{recipient.Id}",
            new RegisteredRecipientResponse(recipient.Id, clientId, secret, await RecipientResponse.ForAsync(db, recipient, cancellationToken)));
    }

    private static async Task<Results<Ok<RecipientResponse>, ProblemHttpResult>> Update(
        Guid id, UpdateRecipientRequest request, HttpContext context, GatewayDbContext db, IOpenIddictApplicationManager applications,
        PushEndpointPolicy endpoints, IOptions<RecipientOptions> options, AuditTrail audit, TimeProvider time, DispatchSignal dispatch)
    {
        var cancellationToken = context.RequestAborted;
        // Validated before the row lock: checking a push endpoint resolves its host, which can take seconds, and every tick
        // for this site waits for the lock. The edit itself then applies to the row as locked.
        var recipient = await db.Recipients.AsNoTracking().SingleOrDefaultAsync(r => r.Id == id, cancellationToken);
        if (recipient is null)
        {
            return Problems.NotFound("No recipient with this id.");
        }

        var errors = new RequestErrors();
        ValidateDescription(errors, request.DisplayName ?? recipient.DisplayName, request.LegalName ?? recipient.LegalName,
            request.Website ?? recipient.Website, request.PrivacyPolicyUrl ?? recipient.PrivacyPolicyUrl,
            request.ContactEmail ?? recipient.ContactEmail, options.Value);
        var mode = request.DeliveryMode ?? recipient.DeliveryMode;
        if (request.PushEndpoint is not null || mode != recipient.DeliveryMode)
        {
            // Only what changes is checked: renaming a push site must not resolve its endpoint again (and fail while its
            // DNS is down); delivery checks the stored endpoint on every connect anyway.
            await ValidateDeliveryAsync(errors, mode, mode == DeliveryMode.Push ? request.PushEndpoint ?? recipient.PushEndpoint : request.PushEndpoint, endpoints, cancellationToken);
        }

        ValidateRedirectUris(errors, request.RedirectUris, options.Value);
        if (errors.Any)
        {
            return errors.ToProblem();
        }

        if (request.DisplayName is not null && await NameTakenAsync(db, request.DisplayName, id, cancellationToken) is { } named)
        {
            return named;
        }

        await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
        // Locked, and the OAuth client read after the lock: two edits (or an edit and a secret rotation) of one site run one
        // after the other, instead of the second failing on the client's concurrency token with a 500.
        recipient = await LockedAsync(db, id, cancellationToken);
        if (recipient is null)
        {
            return Problems.NotFound("No recipient with this id.");
        }

        if ((request.DeliveryMode ?? recipient.DeliveryMode) == DeliveryMode.Push && (request.PushEndpoint ?? recipient.PushEndpoint) is null)
        {
            // Judged before the lock against a site another edit has since switched to poll (its endpoint gone).
            return Problems.Conflict("The site was changed meanwhile: it has no push endpoint now. Send pushEndpoint with deliveryMode push.");
        }

        var delivery = (recipient.DeliveryMode, recipient.PushEndpoint);
        var now = time.GetUtcNow();
        var fields = recipient.Edit(request.DisplayName?.Trim(), request.LegalName?.Trim(), request.Website, request.PrivacyPolicyUrl,
            request.ContactEmail, request.DeliveryMode, request.PushEndpoint, now).ToList();
        var redirected = delivery != (recipient.DeliveryMode, recipient.PushEndpoint);
        var due = redirected ? await PushDeliveries.RedirectedAsync(db, id, delivery.DeliveryMode == DeliveryMode.Poll, now, cancellationToken) : 0;
        if ((fields.Contains("displayName") || request.RedirectUris is not null)
            && await applications.FindByClientIdAsync(recipient.ClientId, cancellationToken) is { } application)
        {
            var descriptor = new OpenIddictApplicationDescriptor();
            await applications.PopulateAsync(descriptor, application, cancellationToken);
            var before = (descriptor.DisplayName, Redirects: descriptor.RedirectUris.Select(u => u.AbsoluteUri).Order().ToList());
            descriptor.DisplayName = recipient.DisplayName;
            if (request.RedirectUris is not null)
            {
                RecipientClients.SetRedirectUris(descriptor, request.RedirectUris);
                if (!before.Redirects.SequenceEqual(descriptor.RedirectUris.Select(u => u.AbsoluteUri).Order()))
                {
                    fields.Add("redirectUris");
                    recipient.Touch(now);
                }
            }

            if (fields.Contains("redirectUris") || before.DisplayName != descriptor.DisplayName)
            {
                try
                {
                    await applications.UpdateAsync(application, descriptor, cancellationToken);
                }
                catch (OpenIddictExceptions.ValidationException e)
                {
                    return Refused(e);
                }
            }
        }

        if (fields.Count == 0)
        {
            // Nothing the site had changes: no write, and no trail entry claiming a change.
            return TypedResults.Ok(await RecipientResponse.ForAsync(db, recipient, cancellationToken));
        }

        await db.SaveChangesAsync(cancellationToken);
        // Which fields changed, and the site's description as it stands now (the name and policy seekers consent to, where
        // its events and its users' authorization codes go), so the trail alone tells what was in force when.
        var changed = Description(recipient, request.RedirectUris);
        changed["fields"] = fields.ToArray();
        await audit.AppendAsync(OperatorEntry(context, audit, AuditActions.RecipientUpdated, recipient) with { Details = changed }, cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        context.RequestServices.GetRequiredService<RecipientLookup>().Forget(recipient.ClientId);
        if (redirected && recipient.DeliveryMode == DeliveryMode.Push)
        {
            dispatch.After(due);
        }

        return TypedResults.Ok(await RecipientResponse.ForAsync(db, recipient, cancellationToken));
    }

    private static Task<Results<Ok<RecipientResponse>, ProblemHttpResult>> Suspend(
        Guid id, StatusChangeRequest request, HttpContext context, GatewayDbContext db, AuditTrail audit,
        SuspensionConsequences consequences, TimeProvider time) =>
        ChangeStatus(id, request, context, db, audit, consequences, AuditActions.RecipientSuspended, (r, reason, at) => r.Suspend(reason, at), time);

    private static Task<Results<Ok<RecipientResponse>, ProblemHttpResult>> Reinstate(
        Guid id, StatusChangeRequest request, HttpContext context, GatewayDbContext db, AuditTrail audit,
        SuspensionConsequences consequences, TimeProvider time) =>
        ChangeStatus(id, request, context, db, audit, consequences, AuditActions.RecipientReinstated, (r, reason, at) => r.Reinstate(reason, at), time);

    private static async Task<Results<Ok<RecipientResponse>, ProblemHttpResult>> ChangeStatus(
        Guid id, StatusChangeRequest request, HttpContext context, GatewayDbContext db, AuditTrail audit,
        SuspensionConsequences consequences, string action, Func<Recipient, string, DateTimeOffset, bool> change, TimeProvider time)
    {
        var cancellationToken = context.RequestAborted;
        var errors = new RequestErrors();
        errors.Text("reason", request.Reason, RequestErrors.MaxReasonLength);
        if (errors.Any)
        {
            return errors.ToProblem();
        }

        await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
        // Row lock: a suspension racing a reinstatement must not interleave with the consequences either one writes.
        var recipient = await LockedAsync(db, id, cancellationToken);
        if (recipient is null)
        {
            return Problems.NotFound("No recipient with this id.");
        }

        if (action == AuditActions.RecipientReinstated && !recipient.IsActive
            && await db.Set<Consent>().AnyAsync(c => c.RecipientId == id && c.State == ConsentState.Active, cancellationToken))
        {
            // Reinstated now, the episodes the suspension has not ended yet would stand again: the suspension ends them first.
            return Problems.Conflict("The suspension is still ending this site's consents: retry in a minute.");
        }

        var (ended, obligations) = (0, 0);
        if (change(recipient, request.Reason.Trim(), time.GetUtcNow()))
        {
            await db.SaveChangesAsync(cancellationToken);
            (ended, obligations) = await consequences.EndBatchAsync(recipient, cancellationToken);
            await audit.AppendAsync(OperatorEntry(context, audit, action, recipient, request.Reason.Trim()), cancellationToken);
        }

        await transaction.CommitAsync(cancellationToken);
        context.RequestServices.GetRequiredService<RecipientLookup>().Forget(recipient.ClientId);
        context.RequestServices.GetRequiredService<DispatchSignal>().After(obligations);
        if (ended == SuspensionConsequences.BatchSize)
        {
            // A large site: the rest in batches of their own, to the end even if the operator's client gives up waiting.
            // The suspension is committed: a failure here is the consent expiry job's to finish, not a 500 for the operator.
            try
            {
                await consequences.EndTheRestAsync(recipient.Id, CancellationToken.None);
            }
            catch (Exception e) when (e is DbException or DbUpdateException or TimeoutException)
            {
                context.RequestServices.GetRequiredService<ILogger<Recipient>>().LogWarning(
                    "The suspension of {ClientId} is committed; ending its remaining episodes failed ({Error}) and is left to the consent expiry job",
                    recipient.ClientId, e.GetType().Name);
            }
        }

        return TypedResults.Ok(await RecipientResponse.ForAsync(db, recipient, context.RequestAborted));
    }

    private static async Task<Results<Ok<RotatedSecretResponse>, ProblemHttpResult>> RotateSecret(
        Guid id, RotateSecretRequest? request, HttpContext context, GatewayDbContext db, IOpenIddictApplicationManager applications,
        AuditTrail audit, TimeProvider time)
    {
        var cancellationToken = context.RequestAborted;
        var grace = TimeSpan.FromSeconds(request?.GracePeriodSeconds ?? 0);
        if (grace < TimeSpan.Zero || grace > TimeSpan.FromDays(30))
        {
            return Problems.Validation("gracePeriodSeconds must be between 0 and 2592000 (30 days).",
                new Dictionary<string, string[]> { ["gracePeriodSeconds"] = ["Between 0 and 2592000."] });
        }

        await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
        var (credentials, problem) = await CredentialsAsync(
            db, applications, id, ClientAuthentication.ClientSecretBasic, "This recipient authenticates with private_key_jwt: it has no secret to rotate.", cancellationToken);
        if (credentials is not var (recipient, application, descriptor))
        {
            return problem!;
        }

        var secret = RecipientClients.NewSecret();
        var now = time.GetUtcNow();
        recipient.SecretRotated(((OpenIddictEntityFrameworkCoreApplication)application).ClientSecret, grace, now);
        descriptor.ClientSecret = secret;
        await applications.UpdateAsync(application, descriptor, cancellationToken);
        await db.SaveChangesAsync(cancellationToken);
        await audit.AppendAsync(OperatorEntry(context, audit, AuditActions.RecipientSecretRotated, recipient) with
        {
            Details = new Dictionary<string, object?> { ["gracePeriodSeconds"] = (long)grace.TotalSeconds, ["issuedTokensRefused"] = grace == TimeSpan.Zero },
        }, cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        context.RequestServices.GetRequiredService<RecipientLookup>().Forget(recipient.ClientId);
        TellSiteCredentialsChanged(context, recipient, now, "Site.CredentialsChanged.Secret");
        return TypedResults.Ok(new RotatedSecretResponse(recipient.Id, recipient.ClientId, secret, recipient.PreviousSecretValidUntil));
    }

    /// <summary>
    /// The site's contact hears of every change to its credentials, whoever asked: the operator who rotates a secret
    /// receives it, and one who adds a key to a set can sign as the site, so a change the site did not ask for must not go
    /// unnoticed (its reads would be recorded as the site's own). Names the change, never the secret.
    /// </summary>
    /// <param name="change">The text resource that says what changed.</param>
    private static void TellSiteCredentialsChanged(HttpContext context, Recipient recipient, DateTimeOffset at, string change)
    {
        var (address, name, clientId) = (recipient.ContactEmail, recipient.DisplayName, recipient.ClientId);
        context.RequestServices.GetRequiredService<AccountMail>().Enqueue(address, capped: false, prepare: (services, _) =>
        {
            var texts = services.GetRequiredService<Microsoft.Extensions.Localization.IStringLocalizer<Pages.PageText>>();
            return Task.FromResult<Notice?>(new Notice(address, texts["Site.CredentialsChanged.Subject", name],
                texts["Site.CredentialsChanged.Body", name, clientId, at.ToString("u", System.Globalization.CultureInfo.InvariantCulture), texts[change]]));
        });
    }

    private static async Task<Results<Ok<RecipientResponse>, ProblemHttpResult>> RotateKeys(
        Guid id, RotateKeysRequest request, HttpContext context, GatewayDbContext db, IOpenIddictApplicationManager applications,
        AuditTrail audit, TimeProvider time)
    {
        var cancellationToken = context.RequestAborted;
        var errors = new RequestErrors();
        var keys = ReadPublicKeys(errors, request.Jwks);
        if (errors.Any || keys is null)
        {
            return errors.ToProblem();
        }

        await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
        var (credentials, problem) = await CredentialsAsync(
            db, applications, id, ClientAuthentication.PrivateKeyJwt, "This recipient authenticates with a client secret: rotate it with rotate-secret.", cancellationToken);
        if (credentials is not var (recipient, application, descriptor))
        {
            return problem!;
        }

        var now = time.GetUtcNow();
        var droppedAKey = descriptor.JsonWebKeySet is { } previous && Thumbprints(previous).Except(Thumbprints(keys)).Any();
        recipient.KeysRotated(droppedAKey, now);
        descriptor.JsonWebKeySet = keys;
        try
        {
            await applications.UpdateAsync(application, descriptor, cancellationToken);
        }
        catch (OpenIddictExceptions.ValidationException e)
        {
            return Refused(e);
        }

        var entry = OperatorEntry(context, audit, AuditActions.RecipientKeysRotated, recipient) with
        {
            Details = new Dictionary<string, object?>
            {
                ["keys"] = Thumbprints(keys),
                ["issuedTokensRefused"] = droppedAKey,
            },
        };
        await db.SaveChangesAsync(cancellationToken);
        await audit.AppendAsync(entry, cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        context.RequestServices.GetRequiredService<RecipientLookup>().Forget(recipient.ClientId);
        TellSiteCredentialsChanged(context, recipient, now, "Site.CredentialsChanged.Keys");
        return TypedResults.Ok(await RecipientResponse.ForAsync(db, recipient, cancellationToken));
    }

    /// <summary>The site locked for a credential change, its OAuth client, and a descriptor of that client to change.</summary>
    private sealed record Credentials(Recipient Recipient, object Application, OpenIddictApplicationDescriptor Descriptor);

    /// <summary>The keys' RFC 7638 thumbprints: which keys a site may sign with, and nothing secret.</summary>
    private static string[] Thumbprints(JsonWebKeySet keys) => keys.Keys.Select(k => Base64UrlEncoder.Encode(k.ComputeJwkThumbprint())).ToArray();

    /// <summary>
    /// The opening of a credential change (secret or keys): the site's row locked, a 404 for no site, a 409 when it
    /// authenticates another way, and its OAuth client with a descriptor to change.
    /// </summary>
    private static async Task<(Credentials? Credentials, ProblemHttpResult? Problem)> CredentialsAsync(
        GatewayDbContext db, IOpenIddictApplicationManager applications, Guid id, ClientAuthentication expected, string otherwise,
        CancellationToken cancellationToken)
    {
        var recipient = await LockedAsync(db, id, cancellationToken);
        if (recipient is null)
        {
            return (null, Problems.NotFound("No recipient with this id."));
        }

        if (recipient.ClientAuthentication != expected)
        {
            return (null, Problems.Conflict(otherwise));
        }

        var application = await applications.FindByClientIdAsync(recipient.ClientId, cancellationToken)
            ?? throw new InvalidOperationException("A registered recipient without its OAuth client.");
        var descriptor = new OpenIddictApplicationDescriptor();
        await applications.PopulateAsync(descriptor, application, cancellationToken);
        return (new Credentials(recipient, application, descriptor), null);
    }

    /// <summary>A registration OpenIddict's own rules refuse (a redirect URI it does not allow, keys it cannot use): the client's error.</summary>
    private static ProblemHttpResult Refused(OpenIddictExceptions.ValidationException e) => Problems.Validation(
        "The client registration was refused.",
        new Dictionary<string, string[]> { ["client"] = e.Results.Select(r => r.ErrorMessage ?? "Invalid.").Distinct().ToArray() });

    /// <summary>
    /// Seekers choose sites by their display name (the Partage page's boxes, receipts, the erasure list): two sites with
    /// one name could not be told apart there. Checked, not indexed: registrations are rare operator acts (two at the very
    /// same moment could both pass), and a unique index would fail the upgrade of a deployment that already has two.
    /// </summary>
    private static async Task<ProblemHttpResult?> NameTakenAsync(GatewayDbContext db, string displayName, Guid? except, CancellationToken cancellationToken)
    {
        // Compared here, not in SQL (a few hundred names), as a reader sees them: case, Unicode forms and runs of spaces aside.
        static string Seen(string name) =>
            string.Join(' ', name.Normalize(System.Text.NormalizationForm.FormKC).Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)).ToUpperInvariant();
        var name = displayName.Trim();
        var others = await db.Recipients.AsNoTracking().Where(r => r.Id != except).Select(r => r.DisplayName).ToListAsync(cancellationToken);
        return others.Any(other => Seen(other) == Seen(name))
            ? Problems.Conflict($"Another site is already named '{name}': seekers choose sites by name, so each name must name one site.")
            : null;
    }

    private static ProblemHttpResult ClientIdTaken(string clientId) =>
        Problems.Conflict($"The client id '{clientId}' is taken.");

    private static void ValidateDescription(
        RequestErrors errors, string? displayName, string? legalName, Uri? website, Uri? privacyPolicyUrl, string? contactEmail, RecipientOptions options)
    {
        errors.Name("displayName", displayName);
        errors.Name("legalName", legalName);
        errors.WebUrl("website", website, options.RequireHttps);
        errors.WebUrl("privacyPolicyUrl", privacyPolicyUrl, options.RequireHttps);
        errors.Email("contactEmail", contactEmail);
    }

    private static void ValidateRedirectUris(RequestErrors errors, IReadOnlyList<Uri>? redirectUris, RecipientOptions options)
    {
        if (redirectUris is null)
        {
            return;
        }

        if (redirectUris.Count > 10)
        {
            errors.Add("redirectUris", "At most 10.");
        }

        for (var i = 0; i < redirectUris.Count; i++)
        {
            var fault = redirectUris[i] is null ? "Required." : RecipientClients.CheckRedirectUri(redirectUris[i], options.RequireHttps);
            if (fault is null && redirectUris[i].OriginalString.Length > 2000)
            {
                fault = "At most 2000 characters.";
            }

            if (fault is not null)
            {
                errors.Add($"redirectUris[{i}]", fault);
            }
        }
    }

    private static async Task ValidateDeliveryAsync(
        RequestErrors errors, DeliveryMode mode, Uri? pushEndpoint, PushEndpointPolicy endpoints, CancellationToken cancellationToken)
    {
        if (mode == DeliveryMode.Poll)
        {
            if (pushEndpoint is not null)
            {
                errors.Add("pushEndpoint", "Only for deliveryMode push.");
            }

            return;
        }

        if (pushEndpoint is null)
        {
            errors.Add("pushEndpoint", "Required for deliveryMode push.");
        }
        else if (await endpoints.CheckAsync(pushEndpoint, cancellationToken) is { } fault)
        {
            errors.Add("pushEndpoint", $"The endpoint {fault}.");
        }
    }

    private static JsonWebKeySet? ReadPublicKeys(RequestErrors errors, JsonElement? jwks)
    {
        if (jwks is not { ValueKind: JsonValueKind.Object } json)
        {
            errors.Add("jwks", "Required for private_key_jwt: a JSON Web Key Set with the site's public keys.");
            return null;
        }

        try
        {
            var set = new JsonWebKeySet(json.GetRawText());
            if (set.Keys.Count is 0 or > 10)
            {
                errors.Add("jwks", "Must hold between 1 and 10 keys.");
            }
            else if (set.Keys.Any(k => k.D is not null || k.K is not null || (k.Kty != "RSA" && k.Kty != "EC")))
            {
                errors.Add("jwks", "Only public RSA or EC keys: never send a private or symmetric key.");
            }
            else if (set.Keys.Select((key, index) => (key, index)).FirstOrDefault(k => UsableKeyFault(k.key) is not null) is { key: not null } bad)
            {
                errors.Add($"jwks.keys[{bad.index}]", UsableKeyFault(bad.key)!);
            }

            return set;
        }
        catch (ArgumentException)
        {
            errors.Add("jwks", "Not a JSON Web Key Set.");
            return null;
        }
    }

    /// <summary>
    /// Why a public key cannot verify a site's assertions, or null: its members must make a key (a key without them made
    /// the thumbprint step throw, a 500), an RSA modulus of at least 2048 bits, an EC key on P-256, P-384 or P-521.
    /// </summary>
    private static string? UsableKeyFault(JsonWebKey key)
    {
        try
        {
            if (!key.CanComputeJwkThumbprint())
            {
                return key.Kty == "RSA" ? "An RSA key needs n and e." : "An EC key needs crv, x and y.";
            }

            if (key.Kty == "RSA")
            {
                using var rsa = System.Security.Cryptography.RSA.Create(new System.Security.Cryptography.RSAParameters
                {
                    Modulus = Base64UrlEncoder.DecodeBytes(key.N), Exponent = Base64UrlEncoder.DecodeBytes(key.E),
                });
                return rsa.KeySize < 2048 ? "An RSA key must have at least 2048 bits." : null;
            }

            var curve = key.Crv switch
            {
                "P-256" => System.Security.Cryptography.ECCurve.NamedCurves.nistP256,
                "P-384" => System.Security.Cryptography.ECCurve.NamedCurves.nistP384,
                "P-521" => System.Security.Cryptography.ECCurve.NamedCurves.nistP521,
                _ => (System.Security.Cryptography.ECCurve?)null,
            };
            if (curve is null)
            {
                return "An EC key must be on P-256, P-384 or P-521.";
            }

            using var ec = System.Security.Cryptography.ECDsa.Create(new System.Security.Cryptography.ECParameters
            {
                Curve = curve.Value, Q = new() { X = Base64UrlEncoder.DecodeBytes(key.X), Y = Base64UrlEncoder.DecodeBytes(key.Y) },
            });
            return null;
        }
        catch (Exception e) when (e is System.Security.Cryptography.CryptographicException or FormatException or ArgumentException)
        {
            return "Not a valid public key.";
        }
    }

    /// <summary>
    /// NO KEY UPDATE, not UPDATE: a transaction holding the chain lock may be writing an obligation for this site, and its
    /// foreign-key check needs KEY SHARE on this row while this one waits for the chain lock (deadlock).
    /// </summary>
    private static Task<Recipient?> LockedAsync(GatewayDbContext db, Guid id, CancellationToken cancellationToken) =>
        db.Recipients.FromSql($"SELECT * FROM recipients WHERE id = {id} FOR NO KEY UPDATE").SingleOrDefaultAsync(cancellationToken);

    /// <summary>
    /// A site's public description for the audit trail; redirect URIs only when given (an update that leaves them keeps
    /// the registered ones). Not the contact e-mail, which can be a person's address: the log is append-only.
    /// </summary>
    private static Dictionary<string, object?> Description(Recipient recipient, IReadOnlyList<Uri>? redirectUris)
    {
        var described = new Dictionary<string, object?>
        {
            ["displayName"] = recipient.DisplayName,
            ["legalName"] = recipient.LegalName,
            ["website"] = recipient.Website.AbsoluteUri,
            ["privacyPolicyUrl"] = recipient.PrivacyPolicyUrl.AbsoluteUri,
            ["deliveryMode"] = recipient.DeliveryMode.ToString().ToLowerInvariant(),
            ["pushEndpoint"] = recipient.PushEndpoint?.AbsoluteUri,
        };
        if (redirectUris is not null)
        {
            described["redirectUris"] = redirectUris.Select(u => u.AbsoluteUri).ToArray();
        }

        return described;
    }

    /// <summary>
    /// A status change's reason is free text an operator typed, and could name a person; the audit log is append-only and
    /// keeps only pseudonyms (promise 4), so it keeps a keyed hash of the reason (a plain hash of a short text could be
    /// confirmed by guessing it), which the gateway can check a text against, and the site's row keeps the text itself
    /// (<c>statusReason</c>), where it can be corrected.
    /// </summary>
    private static AuditEntry OperatorEntry(HttpContext context, AuditTrail audit, string action, Recipient recipient, string? reason = null)
    {
        var actor = AuditActor.From(context.User, audit.Pseudonyms);
        return new AuditEntry(actor.Kind, actor.Id, action, Outcomes.Success, Recipient: recipient.ClientId,
            Details: reason is null ? null : new Dictionary<string, object?>
            {
                ["reasonDigest"] = ReasonDigest(audit.Pseudonyms, reason),
            });
    }

    /// <summary>The audit log's keyed digest of a status change's reason.</summary>
    public static string ReasonDigest(Pseudonyms pseudonyms, string reason) => pseudonyms.Of("status-reason:" + reason);


}
