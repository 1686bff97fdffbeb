namespace ExchangeGateway.Hosting;

/// <summary>
/// What is allowed on a developer's machine and in the tests only (plain HTTP, cookies without Secure, no HSTS, demo
/// accounts, mail written to files), and the start-up check that refuses those settings anywhere else.
/// </summary>
public static class LocalOnly
{
    public static bool IsLocal(this IHostEnvironment environment) =>
        environment.IsDevelopment() || environment.IsEnvironment("Testing");

    /// <summary>
    /// Why this node must not start with these settings, or null. Demo data has published passwords; pickup mail reaches
    /// no seeker and piles files with their addresses and reset links on the node, out of the erasure's reach.
    /// </summary>
    /// <remarks>
    /// <paramref name="shownToSeekers"/>: settings whose values receipts and mails show (the controller's contact and
    /// policy, the sender); left at their example defaults (the reserved .example domain), a seeker's legal receipt
    /// would name nobody they can reach.
    /// </remarks>
    public static string? Refusal(IHostEnvironment environment, bool demoData, string notifierMode, params (string Setting, string Value)[] shownToSeekers) =>
        environment.IsLocal() ? null
        : demoData ? $"DemoData:Enabled is for Development only (this is {environment.EnvironmentName}): the demo accounts have published passwords."
        : notifierMode == "pickup" ? "Notifier:Mode is pickup (the default, for development): outside Development set Notifier:Mode=smtp and Notifier:SmtpHost."
        : shownToSeekers.FirstOrDefault(s => IsExampleDomain(s.Value)) is { Setting: not null } example
            ? $"{example.Setting} is still the example '{example.Value}': outside Development give the service's own (receipts and mails show it to seekers)."
        : null;

    private static bool IsExampleDomain(string value)
    {
        var host = value.Contains('@', StringComparison.Ordinal) ? value[(value.LastIndexOf('@') + 1)..].TrimEnd('>', ' ')
            : Uri.TryCreate(value, UriKind.Absolute, out var uri) ? uri.Host
            : value;
        return host.Equals("example", StringComparison.OrdinalIgnoreCase) || host.EndsWith(".example", StringComparison.OrdinalIgnoreCase);
    }
}
