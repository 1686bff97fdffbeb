using Hangfire;
using Hangfire.Logging;
using Microsoft.Extensions.Logging;
using HangfireLevel = Hangfire.Logging.LogLevel;
using LogLevel = Microsoft.Extensions.Logging.LogLevel;

namespace ExchangeGateway.Tests.Infrastructure;

/// <summary>
/// Hangfire keeps its log provider in a process-wide static, which each host points at its own LoggerFactory as it
/// starts. Once that host is disposed, every other host's Hangfire calls (creating its job client, for one) throw
/// ObjectDisposedException. This provider outlives the hosts: it writes to the newest host still alive.
/// </summary>
public sealed class HangfireLogs : ILogProvider
{
    private readonly List<ILoggerFactory> _live = [];

    public static HangfireLogs Instance { get; } = new();

    public void Attach(ILoggerFactory host)
    {
        lock (_live)
        {
            _live.Add(host);
        }

        GlobalConfiguration.Configuration.UseLogProvider(this);
    }

    public void Detach(ILoggerFactory host)
    {
        lock (_live)
        {
            _live.Remove(host);
        }
    }

    public ILog GetLogger(string name) => new Forwarder(this, name);

    private ILogger? Current(string name)
    {
        lock (_live)
        {
            return _live.Count == 0 ? null : _live[^1].CreateLogger(name);
        }
    }

    private sealed class Forwarder(HangfireLogs owner, string name) : ILog
    {
        public bool Log(HangfireLevel logLevel, Func<string>? messageFunc, Exception? exception = null)
        {
            var level = logLevel switch
            {
                HangfireLevel.Trace => LogLevel.Trace,
                HangfireLevel.Debug => LogLevel.Debug,
                HangfireLevel.Info => LogLevel.Information,
                HangfireLevel.Warn => LogLevel.Warning,
                HangfireLevel.Error => LogLevel.Error,
                _ => LogLevel.Critical,
            };
            var logger = owner.Current(name);
            if (logger is null || !logger.IsEnabled(level))
            {
                return false;
            }

            if (messageFunc is not null)
            {
                logger.Log(level, default, messageFunc(), exception, static (message, _) => message);
            }

            return true;
        }
    }
}
