using System.Security.Claims;

namespace ExchangeGateway.Auth;

public static class CurrentCaller
{
    /// <summary>The token's subject: the seeker's account id, or a client's client id.</summary>
    public static string Subject(this ClaimsPrincipal user) =>
        user.FindFirst("sub")?.Value ?? throw new InvalidOperationException("An authenticated caller without a subject.");
}
