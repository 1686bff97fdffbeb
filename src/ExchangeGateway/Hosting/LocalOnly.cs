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
    public static string? Refusal(IHostEnvironment environment, bool demoData, string notifierMode) =>
        environment.IsLocal() ? null
        : demoData ? $"DemoData:Enabled is for Development only (this is {environment.EnvironmentName}): the demo accounts have published passwords."
        : notifierMode == "pickup" ? "Notifier:Mode is pickup (the default, for development): outside Development set Notifier:Mode=smtp and Notifier:SmtpHost."
        : null;
}
