namespace ExchangeGateway.Tests.Infrastructure;

/// <summary>The built gateway run as an operator runs it from a shell (`dotnet ExchangeGateway.dll ARGS`), and what a refused start threw.</summary>
public static class GatewayCommand
{
    /// <summary>
    /// Runs the gateway's command line against a database with the node's settings (app login, this key-encryption key),
    /// plus <paramref name="settings"/> as environment variables; returns the exit code and stdout followed by stderr.
    /// </summary>
    public static async Task<(int ExitCode, string Output)> RunAsync(
        TestDatabase database, string kek, IReadOnlyDictionary<string, string>? settings, params string[] args)
    {
        var configuration = Path.GetFileName(Path.GetDirectoryName(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar)))!;
        var gateway = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "..", "..",
            "src", "ExchangeGateway", "bin", configuration, "net10.0", "ExchangeGateway.dll"));
        Assert.True(File.Exists(gateway), $"the gateway is not built at {gateway}");
        var start = new System.Diagnostics.ProcessStartInfo("dotnet")
        {
            WorkingDirectory = Path.GetDirectoryName(gateway)!,
            Environment =
            {
                ["ASPNETCORE_ENVIRONMENT"] = "Testing",
                ["ConnectionStrings__Gateway"] = database.AppConnectionString,
                ["Auth__Issuer"] = "http://127.0.0.1:1/",
                ["Auth__AllowInsecureHttp"] = "true",
                ["Audit__PseudonymKey"] = GatewayFactory.PseudonymKey,
                ["DataProtection__KeyEncryptionKey"] = kek,
            },
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var (key, value) in settings ?? new Dictionary<string, string>())
        {
            start.Environment[key] = value;
        }

        start.ArgumentList.Add(gateway);
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        using var process = System.Diagnostics.Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(1));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            // A command that did not end (a server started by mistake) must not outlive the test.
            process.Kill(entireProcessTree: true);
            throw;
        }

        return (process.ExitCode, await stdout + await stderr);
    }

    public static Task<(int ExitCode, string Output)> RunAsync(TestDatabase database, string kek, params string[] args) =>
        RunAsync(database, kek, null, args);

    /// <summary>An exception and every exception inside it (a host's start wraps what stopped it).</summary>
    public static IEnumerable<Exception> Chain(Exception e)
    {
        for (Exception? current = e; current is not null; current = current.InnerException)
        {
            yield return current;
            if (current is AggregateException aggregate)
            {
                foreach (var inner in aggregate.InnerExceptions.SelectMany(Chain))
                {
                    yield return inner;
                }
            }
        }
    }
}
