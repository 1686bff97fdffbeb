using System.Text.Json;
using ExchangeGateway.Audit;
using ExchangeGateway.Pages.Account;
using ExchangeGateway.Recipients;
using Microsoft.AspNetCore.Identity;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using OpenIddict.Abstractions;
using static OpenIddict.Abstractions.OpenIddictConstants;

namespace ExchangeGateway.Auth;

/// <summary>
/// The `staff` commands, how a deployment gets its operators and auditors (sign-up on the pages makes job seekers only,
/// and demo data is for Development): run by someone with the gateway's configuration and database access, each recorded
/// in the audit log.
/// <list type="bullet">
/// <item>`staff grant EMAIL operator|auditor` gives an account the role, creating the account when there is none; an account
/// with no password yet gets a link to set one (printed, for the operator to hand over), which also confirms the address.</item>
/// <item>`staff revoke EMAIL operator|auditor` takes the role away and ends the account's sessions and tokens.</item>
/// <item>`staff reset-two-factor EMAIL` turns off a staff member's second factor (a lost phone), or a job seeker's who
/// turned it on: a staff member's next sign-in adds an authenticator again; their sessions and tokens end.</item>
/// <item>`staff auditor-client CLIENT_ID` registers a client for an auditors' tool (client credentials, `audit:read`) and
/// prints its secret, once.</item>
/// <item>`staff app-client CLIENT_ID REDIRECT_URI...` registers one of the service's own apps (a seeker's app, a staff
/// tool): a public client, authorization code with PKCE and refresh tokens, for the scopes its signed-in person's role
/// allows.</item>
/// <item>`staff rotate-client-secret CLIENT_ID` gives an auditors' client a new secret (printed once; the old one is refused
/// at once); `staff remove-client CLIENT_ID` removes an auditors' or an app client with its tokens. Sites are managed by
/// the operator API, and these refuse them.</item>
/// </list>
/// </summary>
public static class StaffCommands
{
    private const string Usage =
        "usage: staff grant EMAIL operator|auditor | staff revoke EMAIL operator|auditor | staff reset-two-factor EMAIL | staff auditor-client CLIENT_ID"
        + " | staff app-client CLIENT_ID REDIRECT_URI... | staff rotate-client-secret CLIENT_ID | staff remove-client CLIENT_ID";
    private const string Actor = "staff-command";
    // Printed for a person to copy: the link's "&" as it is, not escaped as "\u0026" (this JSON never goes into HTML).
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    public static bool IsCommand(string[] args) => args is ["staff", ..];

    /// <param name="output">Where the result (JSON) goes: standard output unless given.</param>
    public static async Task<int> RunAsync(IServiceProvider services, string[] args, TextWriter? output = null)
    {
        output ??= Console.Out;
        Func<IServiceProvider, Task<(int Code, object? Result)>> change;
        switch (args)
        {
            case ["staff", "grant" or "revoke", var email, Roles.Operator or Roles.Auditor]:
                change = provider => ChangeRoleAsync(provider, grant: args[1] == "grant", email, args[3]);
                break;
            case ["staff", "reset-two-factor", var email]:
                change = provider => ResetTwoFactorAsync(provider, email);
                break;
            case ["staff", "auditor-client", var clientId]:
                change = provider => AddAuditorClientAsync(provider, clientId);
                break;
            case ["staff", "app-client", var clientId, .. var redirectUris] when redirectUris.Length > 0:
                change = provider => AddAppClientAsync(provider, clientId, redirectUris);
                break;
            case ["staff", "rotate-client-secret" or "remove-client", var clientId]:
                change = provider => ChangeClientAsync(provider, args[1], clientId);
                break;
            default:
                await Console.Error.WriteLineAsync(Usage);
                return 64;
        }

        // The change and its audit record commit together, or neither does (a client whose secret was never shown, a role
        // changed with no record of it); the result is printed only once committed.
        await using var scope = services.CreateAsyncScope();
        await using var transaction = await scope.ServiceProvider.GetRequiredService<Data.GatewayDbContext>().Database.BeginTransactionAsync();
        var (code, result) = await change(scope.ServiceProvider);
        if (code != 0)
        {
            return code;
        }

        await transaction.CommitAsync();
        await output.WriteLineAsync(JsonSerializer.Serialize(result, Json));
        return 0;
    }

    private static async Task<(int Code, object? Result)> ChangeRoleAsync(IServiceProvider provider, bool grant, string email, string role)
    {
        var users = provider.GetRequiredService<UserManager<GatewayUser>>();
        if (!await provider.GetRequiredService<RoleManager<IdentityRole>>().RoleExistsAsync(role))
        {
            await Console.Error.WriteLineAsync("staff: the roles do not exist yet; start the gateway once (it creates them and migrates the database)");
            return (1, null);
        }

        var user = await users.FindByEmailAsync(email.Trim());
        if (user is null && !grant)
        {
            await Console.Error.WriteLineAsync("staff revoke: no account has this address");
            return (1, null);
        }

        if (user is null)
        {
            user = new GatewayUser { UserName = email.Trim(), Email = email.Trim(), CreatedAt = provider.GetRequiredService<TimeProvider>().GetUtcNow() };
            if (!await SucceededAsync("staff grant", await users.CreateAsync(user)))
            {
                return (1, null);
            }
        }

        var has = await users.IsInRoleAsync(user, role);
        var wasStaff = SecondFactor.IsStaff(await users.GetRolesAsync(user));
        if (grant && !has && !await SucceededAsync("staff grant", await users.AddToRoleAsync(user, role)))
        {
            return (1, null);
        }

        if (!grant && has)
        {
            if (!await SucceededAsync("staff revoke", await users.RemoveFromRoleAsync(user, role)))
            {
                return (1, null);
            }

            // Pages sessions end at their next request (the stamp changed); refresh tokens and authorizations end now. An
            // access token already issued runs its few minutes out, as after a password reset.
            await users.UpdateSecurityStampAsync(user);
            await provider.GetRequiredService<IOpenIddictTokenManager>().RevokeBySubjectAsync(user.Id, CancellationToken.None);
        }

        Uri? setPassword = null;
        var twoFactor = provider.GetRequiredService<SecondFactor>();
        if (grant && !await users.HasPasswordAsync(user))
        {
            setPassword = await SetPasswordLinkAsync(provider, user);
        }
        else if (grant && !wasStaff && (twoFactor.Required || await users.GetTwoFactorEnabledAsync(user)))
        {
            // An account that becomes staff with a password of its own (a job seeker's): whoever else may know that password
            // must not be the one to add the authenticator at the first staff sign-in, and an authenticator the seeker's
            // pages put on it (or a session opened with it) must not carry over into the role. The factor and the password
            // go; the holder sets a new password by the link and enrols at the first staff sign-in.
            setPassword = await TakeFactorAndPasswordAsync(provider, user);
        }

        var audit = provider.GetRequiredService<AuditTrail>();
        var roles = await users.GetRolesAsync(user);
        // A job seeker's account is the row's subject too, as for a reset: their export and the auditors' subject filter
        // find it.
        await audit.AppendAsync(
            new AuditEntry(ActorKinds.Operator, Actor, grant ? AuditActions.StaffRoleGranted : AuditActions.StaffRoleRevoked, Outcomes.Success,
                SeekerId: roles.Contains(Roles.Seeker) ? user.Id : null,
                Details: new Dictionary<string, object?> { ["account"] = audit.AccountInLog(user, roles), ["role"] = role, ["changed"] = grant != has }),
            CancellationToken.None);
        return (0, new { account = user.Id, role, granted = grant, changed = grant != has, setPasswordLink = setPassword });
    }

    private static async Task<(int Code, object? Result)> ResetTwoFactorAsync(IServiceProvider provider, string email)
    {
        var users = provider.GetRequiredService<UserManager<GatewayUser>>();
        var user = await users.FindByEmailAsync(email.Trim());
        if (user is null)
        {
            await Console.Error.WriteLineAsync("staff reset-two-factor: no account has this address");
            return (1, null);
        }

        // One turn at a time on the account, as on the pages that change its factor, and the account as it is then: erased
        // meanwhile, there is nothing to reset (and nothing may be written for it).
        var db = provider.GetRequiredService<Data.GatewayDbContext>();
        try
        {
            await Data.Locks.AccountInTurnAsync(db, user, CancellationToken.None);
        }
        catch (AccountGoneException)
        {
            await Console.Error.WriteLineAsync("staff reset-two-factor: no account has this address");
            return (1, null);
        }

        // A job seeker's too, once they turned it on themselves and lost the phone and the recovery codes: the service
        // checks who is asking before it runs this, as for staff.
        var roles = await users.GetRolesAsync(user);
        var staff = SecondFactor.IsStaff(roles);
        if (!staff && !await users.GetTwoFactorEnabledAsync(user))
        {
            await Console.Error.WriteLineAsync("staff reset-two-factor: this account is not an operator's or an auditor's and has no second factor");
            return (1, null);
        }

        // Whoever holds the old authenticator (or its recovery codes) is out, and so is whoever knows the password: the
        // next sign-in enrols a new authenticator, and it must be the holder's. So the password goes too, and the holder
        // sets a new one by the printed link (sessions end at their next page; refresh tokens are revoked).
        var setPassword = await TakeFactorAndPasswordAsync(provider, user);
        var audit = provider.GetRequiredService<AuditTrail>();
        await audit.AppendAsync(
            new AuditEntry(ActorKinds.Operator, Actor, AuditActions.TwoFactorReset, Outcomes.Success,
                SeekerId: roles.Contains(Roles.Seeker) ? user.Id : null,
                Details: new Dictionary<string, object?> { ["account"] = audit.AccountInLog(user, roles) }),
            CancellationToken.None);
        return (0, new { account = user.Id, twoFactor = staff
            ? "reset: set a new password by the link, then sign in and add an authenticator"
            : "reset: set a new password by the link, then sign in with it (and turn two-step sign-in on again if wished)", setPasswordLink = setPassword });
    }

    /// <summary>
    /// Takes the account's second factor (key, last step, recovery codes, and the day's wrong codes, which were counted
    /// against it) and its password, ends its sessions and refresh tokens, and returns a link to set a new password.
    /// </summary>
    private static async Task<Uri> TakeFactorAndPasswordAsync(IServiceProvider provider, GatewayUser user)
    {
        await provider.GetRequiredService<SecondFactor>().ResetAsync(user);
        await SignInThrottle.ForgetCodesAsync(provider.GetRequiredService<Data.GatewayDbContext>(), user.Id, CancellationToken.None);
        return await NewPasswordByLinkAsync(provider, user);
    }

    /// <summary>Removes the account's password, ends its sessions and refresh tokens, and returns a link to set a new one.</summary>
    private static async Task<Uri> NewPasswordByLinkAsync(IServiceProvider provider, GatewayUser user)
    {
        var users = provider.GetRequiredService<UserManager<GatewayUser>>();
        if (await users.HasPasswordAsync(user) && !await SucceededAsync("staff", await users.RemovePasswordAsync(user)))
        {
            throw new InvalidOperationException("The password could not be removed.");
        }

        await users.UpdateSecurityStampAsync(user);
        await provider.GetRequiredService<IOpenIddictTokenManager>().RevokeBySubjectAsync(user.Id, CancellationToken.None);
        return await SetPasswordLinkAsync(provider, user);
    }

    /// <summary>The reset page's link for this account (printed for a person to hand over; it also confirms the address).</summary>
    private static async Task<Uri> SetPasswordLinkAsync(IServiceProvider provider, GatewayUser user)
    {
        var users = provider.GetRequiredService<UserManager<GatewayUser>>();
        var issuer = provider.GetRequiredService<IOptions<AuthOptions>>().Value.Issuer!;
        return AccountLinks.Build(issuer, "ResetPassword", user.Id, await users.GeneratePasswordResetTokenAsync(user));
    }

    private static async Task<(int Code, object? Result)> AddAuditorClientAsync(IServiceProvider provider, string clientId)
    {
        var secret = RecipientClients.NewSecret();
        var code = await RegisterClientAsync(provider, "auditor-client", ClientRegistrations.AuditorClient(clientId, secret, "Auditors' client " + clientId),
            AuditActions.AuditorClientRegistered, new Dictionary<string, object?> { ["client"] = clientId });
        return (code, code == 0 ? new { clientId, clientSecret = secret } : null);
    }

    private static async Task<(int Code, object? Result)> AddAppClientAsync(IServiceProvider provider, string clientId, string[] redirectUris)
    {
        var requireHttps = provider.GetRequiredService<IOptions<RecipientOptions>>().Value.RequireHttps;
        var uris = new List<Uri>();
        foreach (var text in redirectUris)
        {
            var fault = Uri.TryCreate(text, UriKind.Absolute, out var uri) ? RecipientClients.CheckRedirectUri(uri, requireHttps) : "Must be an absolute URL.";
            if (fault is not null)
            {
                await Console.Error.WriteLineAsync($"staff app-client: {text}: {fault}");
                return (64, null);
            }

            uris.Add(uri!);
        }

        var code = await RegisterClientAsync(provider, "app-client", ClientRegistrations.AppClient(clientId, uris, "App " + clientId),
            AuditActions.AppClientRegistered, new Dictionary<string, object?> { ["client"] = clientId, ["redirectUris"] = uris.Select(u => u.AbsoluteUri).ToList() });
        return (code, code == 0 ? new { clientId, redirectUris = uris } : null);
    }

    /// <summary>A client the staff commands register: its id checked and free, then created with its audit record. Returns the exit code.</summary>
    private static async Task<int> RegisterClientAsync(
        IServiceProvider provider, string command, OpenIddictApplicationDescriptor descriptor, string action, Dictionary<string, object?> details)
    {
        if (!RecipientClients.IsWellFormedClientId(descriptor.ClientId!))
        {
            await Console.Error.WriteLineAsync($"staff {command}: a client id is 3 to 64 lower-case letters, digits and hyphens");
            return 64;
        }

        var applications = provider.GetRequiredService<IOpenIddictApplicationManager>();
        if (await applications.FindByClientIdAsync(descriptor.ClientId!, CancellationToken.None) is not null)
        {
            await Console.Error.WriteLineAsync($"staff {command}: this client id is taken");
            return 1;
        }

        await applications.CreateAsync(descriptor, CancellationToken.None);
        await provider.GetRequiredService<AuditTrail>().AppendAsync(
            new AuditEntry(ActorKinds.Operator, Actor, action, Outcomes.Success, Details: details), CancellationToken.None);
        return 0;
    }

    /// <summary>
    /// A new secret for an auditors' client, or the removal of an auditors' or app client (OpenIddict deletes its tokens and
    /// authorizations with it, so its refresh tokens die; access tokens already issued run out within their lifetime). Only
    /// those the staff commands register: a site is changed through the operator API, where its seekers' consents follow.
    /// </summary>
    private static async Task<(int Code, object? Result)> ChangeClientAsync(IServiceProvider provider, string command, string clientId)
    {
        var applications = provider.GetRequiredService<IOpenIddictApplicationManager>();
        var application = await applications.FindByClientIdAsync(clientId, CancellationToken.None);
        var permissions = application is null ? [] : await applications.GetPermissionsAsync(application, CancellationToken.None);
        var isAuditorClient = permissions.Contains(Permissions.GrantTypes.ClientCredentials) && permissions.Contains(Permissions.Prefixes.Scope + ApiScopes.AuditRead);
        var isAppClient = application is not null && await applications.HasClientTypeAsync(application, ClientTypes.Public, CancellationToken.None)
            && clientId != ClientRegistrations.SwaggerClientId;
        var isSite = await provider.GetRequiredService<Data.GatewayDbContext>().Recipients.AnyAsync(r => r.ClientId == clientId);
        if (application is null || isSite || !(isAuditorClient || (isAppClient && command == "remove-client")))
        {
            await Console.Error.WriteLineAsync(command == "remove-client"
                ? $"staff {command}: no auditors' or app client has this id (sites are managed through the operator API)"
                : $"staff {command}: no auditors' client has this id (sites rotate through the operator API; app clients have no secret)");
            return (1, null);
        }

        var audit = provider.GetRequiredService<AuditTrail>();
        if (command == "remove-client")
        {
            await applications.DeleteAsync(application, CancellationToken.None);
            await audit.AppendAsync(new AuditEntry(ActorKinds.Operator, Actor, AuditActions.ClientRemoved, Outcomes.Success,
                Details: new Dictionary<string, object?> { ["client"] = clientId }), CancellationToken.None);
            return (0, new { clientId, removed = true });
        }

        var secret = RecipientClients.NewSecret();
        var descriptor = new OpenIddictApplicationDescriptor();
        await applications.PopulateAsync(descriptor, application, CancellationToken.None);
        descriptor.ClientSecret = secret;
        await applications.UpdateAsync(application, descriptor, CancellationToken.None);
        await audit.AppendAsync(new AuditEntry(ActorKinds.Operator, Actor, AuditActions.ClientSecretRotated, Outcomes.Success,
            Details: new Dictionary<string, object?> { ["client"] = clientId }), CancellationToken.None);
        return (0, new { clientId, clientSecret = secret });
    }

    private static async Task<bool> SucceededAsync(string command, IdentityResult result)
    {
        if (!result.Succeeded)
        {
            await Console.Error.WriteLineAsync($"{command}: " + string.Join("; ", result.Errors.Select(e => e.Description)));
        }

        return result.Succeeded;
    }
}
