using ExchangeGateway.Auth;
using ExchangeGateway.Data;
using Microsoft.EntityFrameworkCore;

namespace ExchangeGateway.Recipients;

/// <summary>
/// The live check behind every recipient call: a token says who the site is, the database says whether it may still act.
/// Suspension therefore takes effect on the very next request, however long the token has to run.
/// </summary>
public class RecipientGate : IEndpointFilter
{
    public const string ItemKey = "eg.recipient";

    /// <summary>Whether a suspended site may still call: yes only where it must, to receive and confirm erasure events.</summary>
    protected virtual bool AdmitsSuspended => false;

    public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var http = context.HttpContext;
        var db = http.RequestServices.GetRequiredService<GatewayDbContext>();
        var clientId = http.User.Subject();
        var recipient = await db.Recipients.AsNoTracking().SingleOrDefaultAsync(r => r.ClientId == clientId, http.RequestAborted);
        if (recipient is null)
        {
            return TypedResults.Problem("This client is not a registered recipient.", statusCode: StatusCodes.Status403Forbidden, title: "Forbidden");
        }

        if (!recipient.IsActive && !AdmitsSuspended)
        {
            return TypedResults.Problem("This recipient is suspended: it may not read CVs or receive events.", statusCode: StatusCodes.Status403Forbidden, title: "Recipient suspended");
        }

        http.Items[ItemKey] = recipient;
        return await next(context);
    }
}

/// <summary>
/// The gate of the event endpoints. A suspended site reads no CV, but it still holds copies: it must still be able to
/// fetch its erasure events and confirm deletion, or suspension would stop the very chase it triggers.
/// </summary>
public sealed class RecipientGateAllowingSuspended : RecipientGate
{
    protected override bool AdmitsSuspended => true;
}

public static class RecipientContext
{
    public static Recipient Recipient(this HttpContext context) =>
        context.Items[RecipientGate.ItemKey] as Recipient ?? throw new InvalidOperationException("RecipientGate did not run.");
}
