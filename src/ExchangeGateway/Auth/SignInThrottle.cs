using System.Net;
using System.Net.Sockets;
using ExchangeGateway.Audit;
using ExchangeGateway.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using Microsoft.Extensions.Options;

namespace ExchangeGateway.Auth;

/// <summary>
/// Wrong passwords for one account from one source, in the window that began with the first of them. The source is a keyed
/// pseudonym of the client's network, never its address: the row says only "this many failures from somewhere".
/// </summary>
public sealed class SignInFailures
{
    public required string UserId { get; init; }
    public required string Source { get; init; }
    public int Failures { get; init; }
    public DateTimeOffset WindowEnds { get; init; }
}

public sealed class SignInFailuresConfiguration : IEntityTypeConfiguration<SignInFailures>
{
    public void Configure(EntityTypeBuilder<SignInFailures> builder)
    {
        builder.ToTable("sign_in_failures");
        builder.HasKey(f => new { f.UserId, f.Source });
        builder.Property(f => f.Source).HasMaxLength(40);
        // Gone with the account: an erasure leaves none of these behind.
        builder.HasOne<GatewayUser>().WithMany().HasForeignKey(f => f.UserId).OnDelete(DeleteBehavior.Cascade);
        builder.HasIndex(f => f.WindowEnds);
    }
}

/// <summary>
/// Password guessing is stopped per account and source, so that whoever knows a seeker's address can no longer lock the
/// seeker out by guessing: the guesser's own network is refused for that account once it has spent
/// <see cref="AuthOptions.SignInFailuresPerSource"/> in a window, while the seeker, signing in from elsewhere, is not. The
/// account-wide lockout stays as the ceiling for guesses spread over many networks
/// (<see cref="AuthOptions.AccountLockoutFailures"/>); the reset link gets its holder in even then.
/// Must run inside the sign-in's transaction, after <see cref="Locks.SignInAsync"/>: attempts on one address take turns.
/// </summary>
public sealed class SignInThrottle(GatewayDbContext db, Pseudonyms pseudonyms, TimeProvider time, IOptions<AuthOptions> options)
{
    /// <summary>The client's network: its IPv4 address, or the /64 of an IPv6 one (a single host is given a whole /64).</summary>
    public string SourceOf(IPAddress? address)
    {
        if (address is null)
        {
            return pseudonyms.Of("sign-in-source:unknown");
        }

        if (address.IsIPv4MappedToIPv6)
        {
            address = address.MapToIPv4();
        }

        var network = address.AddressFamily == AddressFamily.InterNetworkV6
            ? new System.Net.IPNetwork(new IPAddress(address.GetAddressBytes()[..8].Concat(new byte[8]).ToArray()), 64).ToString()
            : address.ToString();
        return pseudonyms.Of("sign-in-source:" + network);
    }

    /// <summary>True when this source has spent its wrong passwords for this account in the current window.</summary>
    public async Task<bool> IsRefusedAsync(string userId, string source, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        var limit = options.Value.SignInFailuresPerSource;
        return await db.Set<SignInFailures>()
            .AnyAsync(f => f.UserId == userId && f.Source == source && f.WindowEnds > now && f.Failures >= limit, cancellationToken);
    }

    /// <summary>Counts a wrong password; the first failure after a window has ended opens a new one.</summary>
    public Task FailedAsync(string userId, string source, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        var windowEnds = now + options.Value.SignInFailureWindow;
        return db.Database.ExecuteSqlAsync(
            $"""
            INSERT INTO sign_in_failures AS f (user_id, source, failures, window_ends) VALUES ({userId}, {source}, 1, {windowEnds})
            ON CONFLICT (user_id, source) DO UPDATE
            SET failures = CASE WHEN f.window_ends <= {now} THEN 1 ELSE f.failures + 1 END,
                window_ends = CASE WHEN f.window_ends <= {now} THEN {windowEnds} ELSE f.window_ends END
            """,
            cancellationToken);
    }

    /// <summary>A right password from this source: its count starts again.</summary>
    public Task SucceededAsync(string userId, string source, CancellationToken cancellationToken) =>
        db.Set<SignInFailures>().Where(f => f.UserId == userId && f.Source == source).ExecuteDeleteAsync(cancellationToken);

    /// <summary>A new password (the reset link proves the mailbox): every source's count starts again.</summary>
    public static Task ForgetAsync(GatewayDbContext db, string userId, CancellationToken cancellationToken) =>
        db.Set<SignInFailures>().Where(f => f.UserId == userId).ExecuteDeleteAsync(cancellationToken);

    /// <summary>Windows that have ended say nothing any more (the pruning job).</summary>
    public static Task<int> PruneAsync(GatewayDbContext db, DateTimeOffset now, CancellationToken cancellationToken) =>
        db.Set<SignInFailures>().Where(f => f.WindowEnds <= now).ExecuteDeleteAsync(cancellationToken);
}
