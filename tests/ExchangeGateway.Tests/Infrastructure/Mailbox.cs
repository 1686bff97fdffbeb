using System.Text.RegularExpressions;
using ExchangeGateway.Hosting;
using Microsoft.Extensions.DependencyInjection;
using MimeKit;

namespace ExchangeGateway.Tests.Infrastructure;

/// <summary>What the gateway's notifier wrote to its pickup folder, read the way a mail client would.</summary>
public static partial class Mailbox
{
    /// <summary>
    /// Waits until the host's account mail has gone out: pages answer before their message is sent, so a test that reads
    /// the folder (or checks that nothing came) must let the queue empty first.
    /// </summary>
    public static async Task SettledAsync(GatewayFactory factory)
    {
        var mail = factory.Services.GetRequiredService<AccountMail>();
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (mail.Pending > 0)
        {
            Assert.True(DateTime.UtcNow < deadline, $"{mail.Pending} account messages still unsent after 30 s");
            await Task.Delay(10);
        }
    }

    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    private static void AssertOwnerOnly(string directory)
    {
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(directory));
        Assert.All(Directory.EnumerateFiles(directory, "*.eml"), f => Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(f)));
    }

    /// <summary>Every message file the host wrote, once its queue is empty.</summary>
    public static async Task<IReadOnlyList<string>> FilesAsync(GatewayFactory factory)
    {
        await SettledAsync(factory);
        return Directory.Exists(factory.MailDirectory) ? Directory.GetFiles(factory.MailDirectory, "*.eml") : [];
    }

    /// <summary>The messages sent to <paramref name="address"/>, oldest first, once the host's queue is empty.</summary>
    public static async Task<List<MimeMessage>> ForAsync(GatewayFactory factory, string address)
    {
        await SettledAsync(factory);
        if (!Directory.Exists(factory.MailDirectory))
        {
            return [];
        }

        // The messages hold addresses and reset links: the folder and every file are the gateway's user's alone.
        if (!OperatingSystem.IsWindows())
        {
            AssertOwnerOnly(factory.MailDirectory);
        }

        // By name, which the pickup folder makes the order of writing: file times tick too coarsely to order two messages.
        var found = new List<MimeMessage>();
        foreach (var file in Directory.EnumerateFiles(factory.MailDirectory, "*.eml").Order(StringComparer.Ordinal))
        {
            var message = await MimeMessage.LoadAsync(file);
            if (message.To.Mailboxes.Any(m => string.Equals(m.Address, address, StringComparison.OrdinalIgnoreCase)))
            {
                found.Add(message);
            }
        }

        return found;
    }

    /// <summary>The link in a message to one of the account pages (ConfirmEmail, ResetPassword...), or null.</summary>
    public static Uri? LinkTo(MimeMessage message, string page) =>
        AccountLink().Matches(message.TextBody ?? "").Select(m => new Uri(m.Value)).FirstOrDefault(u => u.AbsolutePath == $"/Account/{page}");

    [GeneratedRegex(@"http://[^\s]+/Account/[A-Za-z]+(\?[^\s]+)?")]
    private static partial Regex AccountLink();
}
