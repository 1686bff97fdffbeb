using Microsoft.EntityFrameworkCore;

namespace ExchangeGateway.Data;

/// <summary>
/// The transaction-scoped advisory locks that keep the gateway consistent without serialising it.
/// Order is always seeker lock first, chain lock last: the chain lock is taken just before commit.
/// </summary>
public static class Locks
{
    /// <summary>
    /// The chain lock: held from the moment a transaction assigns audit sequence numbers or feed positions until it commits,
    /// so both are committed in the order they were handed out (no reader can see N+1 before N), and so that anything
    /// decided from the disclosure ledger (erasure obligations) sees every disclosure committed before it.
    /// </summary>
    public const long Chain = 0x4547_4155_4449_54; // "EGAUDIT"

    /// <summary>
    /// Held, at session level, by a node preparing the database at start (migrations, roles, registered clients), so that
    /// nodes starting together take turns. The only advisory lock not scoped to a transaction.
    /// </summary>
    public const long Start = 0x4547_5354_4152_54; // "EGSTART"

    /// <summary>Taken to create a deployment's first data-key wrapping key, so that nodes starting together agree on one.</summary>
    public const long DataKeys = 0x4547_4445_4B; // "EGDEK"

    /// <summary>Sign-in attempts for one (normalised) address take turns, whether or not it has an account.</summary>
    public static Task SignInAsync(GatewayDbContext db, string normalizedEmail, CancellationToken cancellationToken) =>
        db.Database.ExecuteSqlAsync($"SELECT pg_advisory_xact_lock(8, hashtext({normalizedEmail}))", cancellationToken);

    /// <summary>
    /// A person's own change to their sign-in (a second factor on or off): the sign-in lock for their address, then their
    /// account row held (KEY SHARE) until commit, and the entity read again under both. "Forget me" locks that row for update
    /// before deleting it, so the change either commits first or finds the account gone and throws, instead of inserting
    /// rows for a deleted account (a foreign-key failure, a 500, and the erased id in PostgreSQL's own log).
    /// </summary>
    public static async Task AccountInTurnAsync(GatewayDbContext db, Auth.GatewayUser user, CancellationToken cancellationToken)
    {
        await SignInAsync(db, user.NormalizedEmail ?? user.Id, cancellationToken);
        var held = await db.Database.SqlQuery<int>($"SELECT 1 AS \"Value\" FROM \"AspNetUsers\" WHERE id = {user.Id} FOR KEY SHARE")
            .ToListAsync(cancellationToken);
        if (held.Count == 0)
        {
            throw new Auth.AccountGoneException();
        }

        await db.Entry(user).ReloadAsync(cancellationToken);
    }

    /// <summary>Serialises one seeker's own changes (CV, consents, erasure); other seekers proceed in parallel.</summary>
    public static Task SeekerAsync(GatewayDbContext db, string seekerId, CancellationToken cancellationToken) =>
        db.Database.ExecuteSqlAsync($"SELECT pg_advisory_xact_lock(7, hashtext({seekerId}))", cancellationToken);

    /// <summary>
    /// The seeker lock, for a write that creates something of the seeker's (a CV, a consent): the erasure takes this lock
    /// first, so once it is held the account either exists until commit or is already gone, and then nothing is written.
    /// </summary>
    public static async Task SeekerWithAccountAsync(GatewayDbContext db, string seekerId, CancellationToken cancellationToken)
    {
        await SeekerAsync(db, seekerId, cancellationToken);
        if (!await db.Users.AnyAsync(u => u.Id == seekerId, cancellationToken))
        {
            throw new Auth.AccountGoneException();
        }
    }

    public static Task ChainAsync(GatewayDbContext db, CancellationToken cancellationToken) =>
        db.Database.ExecuteSqlAsync($"SELECT pg_advisory_xact_lock({Chain})", cancellationToken);

    /// <summary>
    /// The chain lock, and the moment a share ends, read under it: a disclosure that committed before read the clock
    /// before, so no ledger row is dated after the end of the episode that let it through. Take the episodes' row locks
    /// first, as everywhere, and write only rows already held once this returns.
    /// </summary>
    public static async Task<DateTimeOffset> ChainForEndAsync(GatewayDbContext db, TimeProvider time, CancellationToken cancellationToken)
    {
        await ChainAsync(db, cancellationToken);
        return time.GetUtcNow().TruncateToMicroseconds();
    }
}
