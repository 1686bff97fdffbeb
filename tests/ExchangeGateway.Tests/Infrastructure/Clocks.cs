using Microsoft.Extensions.Time.Testing;

namespace ExchangeGateway.Tests.Infrastructure;

public static class Clocks
{
    /// <summary>
    /// Moves the fake clock forward by at most a microsecond, to an instant with 100 ns ticks that PostgreSQL's timestamptz
    /// (whole microseconds) cannot keep. Returns that instant.
    /// </summary>
    public static DateTimeOffset AdvanceToSubMicrosecondTick(this FakeTimeProvider time)
    {
        var ticks = 7 - time.GetUtcNow().UtcTicks % TimeSpan.TicksPerMicrosecond;
        time.Advance(TimeSpan.FromTicks(ticks > 0 ? ticks : ticks + TimeSpan.TicksPerMicrosecond));
        var now = time.GetUtcNow();
        Assert.Equal(7, now.UtcTicks % TimeSpan.TicksPerMicrosecond);
        return now;
    }
}
