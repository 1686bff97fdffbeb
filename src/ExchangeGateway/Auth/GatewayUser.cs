using Microsoft.AspNetCore.Identity;

namespace ExchangeGateway.Auth;

/// <summary>A person with an account: job seeker, auditor or operator (told apart by role).</summary>
public sealed class GatewayUser : IdentityUser
{
    public GatewayUser()
    {
        Id = Guid.CreateVersion7().ToString();
        SecurityStamp = Guid.NewGuid().ToString();
    }

    public DateTimeOffset CreatedAt { get; set; }
}

public static class Roles
{
    public const string Seeker = "seeker";
    public const string Auditor = "auditor";
    public const string Operator = "operator";

    public static readonly IReadOnlyList<string> All = [Seeker, Auditor, Operator];
}
