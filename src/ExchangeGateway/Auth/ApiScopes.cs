namespace ExchangeGateway.Auth;

/// <summary>The API's scopes and the audience its access tokens carry (fixed by DESIGN.md).</summary>
public static class ApiScopes
{
    public const string CvManage = "cv:manage";
    public const string CvRead = "cv:read";
    public const string AuditRead = "audit:read";
    public const string RecipientsAdmin = "recipients:admin";

    /// <summary>
    /// Asked by a job site that sends a seeker to /connect/authorize: "may I receive this person's CV?". It is a consent
    /// prompt, not an API permission, so it is deliberately not in <see cref="Api"/> and no API policy accepts it.
    /// </summary>
    public const string CvShare = "cv:share";

    public const string Audience = "exchange-gateway";

    public static readonly IReadOnlyList<string> Api = [CvManage, CvRead, AuditRead, RecipientsAdmin];

    /// <summary>Which API scopes a person may be granted, whatever a client asks for.</summary>
    public static IEnumerable<string> GrantableTo(IEnumerable<string> roles)
    {
        foreach (var role in roles)
        {
            switch (role)
            {
                case Roles.Seeker: yield return CvManage; break;
                case Roles.Auditor: yield return AuditRead; break;
                case Roles.Operator: yield return RecipientsAdmin; break;
            }
        }
    }

    /// <summary>OpenIddict writes granted scopes as one space-separated "scope" claim.</summary>
    public static bool Has(System.Security.Claims.ClaimsPrincipal user, string scope) =>
        user.FindAll("scope").Any(c => c.Value.Split(' ', StringSplitOptions.RemoveEmptyEntries).Contains(scope, StringComparer.Ordinal));
}
