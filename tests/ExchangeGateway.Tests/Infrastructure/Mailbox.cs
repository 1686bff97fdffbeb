using System.Text.RegularExpressions;
using MimeKit;

namespace ExchangeGateway.Tests.Infrastructure;

/// <summary>What the gateway's notifier wrote to its pickup folder, read the way a mail client would.</summary>
public static partial class Mailbox
{
    /// <summary>The messages sent to <paramref name="address"/>, oldest first.</summary>
    public static async Task<List<MimeMessage>> ForAsync(GatewayFactory factory, string address)
    {
        var found = new List<(DateTime Written, MimeMessage Message)>();
        if (!Directory.Exists(factory.MailDirectory))
        {
            return [];
        }

        foreach (var file in Directory.EnumerateFiles(factory.MailDirectory, "*.eml"))
        {
            var message = await MimeMessage.LoadAsync(file);
            if (message.To.Mailboxes.Any(m => string.Equals(m.Address, address, StringComparison.OrdinalIgnoreCase)))
            {
                found.Add((File.GetLastWriteTimeUtc(file), message));
            }
        }

        return found.OrderBy(f => f.Written).Select(f => f.Message).ToList();
    }

    /// <summary>The link in a message to one of the account pages (ConfirmEmail, ResetPassword...), or null.</summary>
    public static Uri? LinkTo(MimeMessage message, string page) =>
        AccountLink().Matches(message.TextBody ?? "").Select(m => new Uri(m.Value)).FirstOrDefault(u => u.AbsolutePath == $"/Account/{page}");

    [GeneratedRegex(@"http://[^\s]+/Account/[A-Za-z]+(\?[^\s]+)?")]
    private static partial Regex AccountLink();
}
