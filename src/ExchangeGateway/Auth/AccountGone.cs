using ExchangeGateway.Hosting;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Identity;

namespace ExchangeGateway.Auth;

/// <summary>
/// A write for a seeker whose account was erased: a token or a session cookie can outlive the account by minutes, and a
/// request can wait on the seeker lock while the erasure commits. Writers check under that lock and throw this, so
/// nothing is created for a person who is gone (promise 4).
/// </summary>
public sealed class AccountGoneException() : Exception("The account no longer exists.");

/// <summary>The API answers 401 (the token's subject is gone); the pages end the session and go to sign-in.</summary>
public sealed class AccountGoneHandler(IProblemDetailsService problems) : IExceptionHandler
{
    public async ValueTask<bool> TryHandleAsync(HttpContext httpContext, Exception exception, CancellationToken cancellationToken)
    {
        if (exception is not AccountGoneException)
        {
            return false;
        }

        if (!httpContext.Request.Path.StartsWithSegments("/api", StringComparison.OrdinalIgnoreCase))
        {
            await httpContext.SignOutAsync(IdentityConstants.ApplicationScheme);
            httpContext.Response.Redirect("/Account/Login");
            return true;
        }

        httpContext.Response.Headers.WWWAuthenticate = "Bearer error=\"invalid_token\", error_description=\"The account no longer exists.\"";
        return await problems.WriteAsync(httpContext, exception, StatusCodes.Status401Unauthorized, "Unauthorized",
            "The account this token was issued for no longer exists.");
    }
}
