namespace ExchangeGateway.Data;

public static class Timestamps
{
    /// <summary>
    /// The instant as PostgreSQL's timestamptz keeps it: whole microseconds, in UTC. .NET counts 100 ns ticks, so an
    /// aggregate that kept the finer value would answer a write with a time that a later read no longer returns.
    /// </summary>
    public static DateTimeOffset TruncateToMicroseconds(this DateTimeOffset at) =>
        new(at.UtcTicks - at.UtcTicks % TimeSpan.TicksPerMicrosecond, TimeSpan.Zero);
}
