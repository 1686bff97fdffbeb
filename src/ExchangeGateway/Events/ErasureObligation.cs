using System.ComponentModel.DataAnnotations;
using System.Security.Cryptography;
using ExchangeGateway.Audit;
using ExchangeGateway.Consents;
using ExchangeGateway.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace ExchangeGateway.Events;

public enum ObligationStatus { Pending, Delivered, Confirmed }

public static class EventKinds
{
    public const string ErasureRequired = "erasure-required";
    public const string CvUpdated = "cv-updated";
    public const string UriPrefix = "https://exchange-gateway.example/events/";
}

public sealed class ErasureOptions
{
    public const string Section = "Erasure";

    /// <summary>How long a recipient has to confirm deletion before the obligation is flagged overdue.</summary>
    [Range(typeof(TimeSpan), "00:01:00", "90.00:00:00")]
    public TimeSpan ConfirmWithin { get; set; } = TimeSpan.FromHours(72);

    /// <summary>
    /// How long what is kept of an erased seeker's sharings (the episode with its pairwise id, its ledger rows, the erasure
    /// requests and their confirmations) stays once the episode ended and every site confirmed: the proof that the
    /// erasure reached everyone, for as long as someone may ask for it (three years, a common limitation period, by
    /// default; set it from the service's own legal basis). A request still open is kept until it is confirmed.
    /// </summary>
    [Range(typeof(TimeSpan), "1.00:00:00", "3650.00:00:00")]
    public TimeSpan KeepErasedRecordsFor { get; set; } = TimeSpan.FromDays(3 * 365);

    /// <summary>Erased seekers' episodes removed per transaction by the retention job.</summary>
    [Range(1, 50_000)]
    public int PurgeBatchSize { get; set; } = 2000;
}

/// <summary>
/// The outbox row and the obligation in one: "this site must delete (or update) its copy of this CV". Written in the
/// transaction of the change that caused it, delivered as a signed event, and tracked until the site confirms.
/// </summary>
public sealed class ErasureObligation
{
    public long Id { get; init; }
    /// <summary>The event's jti: stable across retries, so redelivery is idempotent for the site.</summary>
    public Guid Jti { get; init; }
    public Guid RecipientId { get; init; }
    public Guid ConsentId { get; init; }
    public required string PairwiseId { get; init; }
    public required string Kind { get; init; }
    public required string Cause { get; init; }
    public DateTimeOffset CreatedAt { get; init; }
    public DateTimeOffset ConfirmBefore { get; init; }
    public ObligationStatus Status { get; private set; }
    public DateTimeOffset? DeliveredAt { get; private set; }
    public DateTimeOffset? ConfirmedAt { get; private set; }
    public bool Overdue { get; private set; }
    public DateTimeOffset? OverdueAt { get; private set; }
    public int Attempts { get; private set; }
    public DateTimeOffset NextAttemptAt { get; private set; }
    /// <summary>
    /// While a dispatcher has the event on the wire: until then no other run claims it, and no poll offers it. A column of
    /// its own, in no index, so that the claim's write is a heap-only (HOT) update: leasing by moving the due time rewrote
    /// every index of the row, which was half of each batch's database time.
    /// </summary>
    public DateTimeOffset? LeasedUntil { get; private set; }
    public string? LastError { get; private set; }

    /// <summary>
    /// Late: open at or past its deadline, confirmed after it, or flagged by the escalation job. Judged from the deadline
    /// rather than the flag alone, which the job sets only every quarter of an hour (and never, if the job is stopped);
    /// a late confirmation stays late. Every view of "overdue" (seeker, site, auditor) asks this.
    /// </summary>
    public static bool IsLate(ObligationStatus status, bool flagged, DateTimeOffset confirmBefore, DateTimeOffset? confirmedAt, DateTimeOffset now) =>
        flagged || (status != ObligationStatus.Confirmed && confirmBefore <= now) || confirmedAt > confirmBefore;

    /// <summary>The site says it deleted (or updated) its copy. Confirming twice changes nothing; a confirmation implies delivery.</summary>
    public bool Confirm(DateTimeOffset at)
    {
        if (Status == ObligationStatus.Confirmed)
        {
            return false;
        }

        DeliveredAt ??= at;
        ConfirmedAt = at;
        Status = ObligationStatus.Confirmed;
        return true;
    }
}

public sealed class ErasureObligationConfiguration : IEntityTypeConfiguration<ErasureObligation>
{
    public void Configure(EntityTypeBuilder<ErasureObligation> builder)
    {
        builder.ToTable("erasure_obligations");
        // Room on each page for the lease's new row version beside the old one, which is what lets that update skip the
        // indexes (heap-only tuples need free space on the same page).
        builder.HasStorageParameter("fillfactor", 70);
        builder.Property(o => o.Id).UseIdentityAlwaysColumn();
        builder.Property(o => o.PairwiseId).HasMaxLength(40);
        builder.Property(o => o.Kind).HasMaxLength(32);
        builder.Property(o => o.Cause).HasMaxLength(32);
        builder.Property(o => o.Status).HasConversion<string>().HasMaxLength(16);
        builder.Property(o => o.LastError).HasMaxLength(500);
        // The dispatcher's queue: each site's pending work by due time. Per site, so that the pending events of sites
        // that poll (which the dispatcher never sends) are not scanned on every claim, and one site's backlog cannot
        // starve the others.
        builder.HasIndex(o => new { o.RecipientId, o.NextAttemptAt }).HasFilter("status = 'Pending'");
        // A jti is only ever looked up with the site it was sent to (confirmations, poll acks), and the site's whole record
        // (compliance) reads by the same prefix: one index for both, where there were two on the hottest table to write.
        builder.HasIndex(o => new { o.RecipientId, o.Jti }).IsUnique();
        builder.HasIndex(o => o.ConsentId);
        // A site's events still open (GET /erasures): small, since a confirmed row leaves it, and what lets a site that lost
        // a jti it had acknowledged find it again without reading its whole history.
        builder.HasIndex(o => new { o.RecipientId, o.Id }).HasFilter("status <> 'Confirmed'").HasDatabaseName("ix_erasure_obligations_open_by_site");
        builder.HasIndex(o => o.ConfirmBefore).HasFilter("status <> 'Confirmed' AND NOT overdue");
        // No foreign keys, on purpose: every row is written from consents just read (INSERT … SELECT, or the sweep's COPY
        // of the holders it selected) in the transaction that ends the share, and consents and recipients are never
        // deleted, so the checks could only ever pass; they were a fifth of the cost of the freshness sweep, which writes
        // these rows by the hundred thousand.
    }
}

/// <summary>What an obligation-writing statement wrote: the episode, its site's client id, and the event's jti.</summary>
public sealed record WrittenObligation(Guid ConsentId, string ClientId, Guid Jti);

/// <summary>
/// Writes obligations set-based from the disclosure ledger: only sites that actually received something are chased.
/// The writers must run under the chain lock (after <see cref="Locks.ChainAsync"/>), so no disclosure can commit unseen in
/// between. (The freshness sweep writes most of its obligations before taking the lock, from one snapshot that also gives
/// the ledger's tail, and catches up under the lock with what the ledger gained since.)
/// Each returns what it wrote, for the audit row of the change that caused it: the tamper-evident log then shows which
/// site was sent which event, not only the table a database owner could edit.
/// </summary>
public static class Obligations
{
    /// <summary>
    /// A deadline as every site is given it: rounded up to the whole hour. Stamped to the microsecond, the same for every
    /// site told of one change, it was a value two sites could join their pairwise ids on (promise 6); an hour holds the
    /// deadlines of many seekers' changes. Stored rounded, so the overdue rules judge the deadline the site was given.
    /// </summary>
    public static DateTimeOffset Deadline(DateTimeOffset now, TimeSpan confirmWithin)
    {
        var due = (now + confirmWithin).ToUniversalTime();
        var hour = new DateTimeOffset(due.Year, due.Month, due.Day, due.Hour, 0, 0, TimeSpan.Zero);
        return hour == due ? hour : hour.AddHours(1);
    }

    /// <summary>
    /// A time about a seeker as sites see it (when the CV was refreshed, when a change that concerns them happened): the
    /// UTC day. Finer, it was the same instant at every site the seeker shares with, and so a key to pair their ids on.
    /// A day is enough for the one rule sites apply with it: only the freshness sweep takes a CV offline, so a copy whose
    /// day of refresh is on or after the cv-offline event's day was read after the sweep, and one from before it is 90
    /// days older.
    /// </summary>
    public static DateTimeOffset SiteDay(DateTimeOffset time) => new(time.UtcDateTime.Date, TimeSpan.Zero);

    /// <summary>
    /// Event ids made here rather than by gen_random_uuid(), for rows written by COPY, which returns nothing: random
    /// version-4 UUIDs from the system's cryptographic generator, as PostgreSQL's are. A jti is the key of the page anyone
    /// may read about one erasure request (with its site's id), so it must not be guessable.
    /// </summary>
    public static Guid[] NewJtis(int count)
    {
        var bytes = new byte[count * 16];
        RandomNumberGenerator.Fill(bytes);
        var jtis = new Guid[count];
        for (var i = 0; i < count; i++)
        {
            var one = bytes.AsSpan(i * 16, 16);
            one[7] = (byte)((one[7] & 0x0F) | 0x40); // version 4: the high nibble of the third field, stored little-endian
            one[8] = (byte)((one[8] & 0x3F) | 0x80); // RFC 9562 variant
            jtis[i] = new Guid(one);
        }

        return jtis;
    }

    /// <summary>
    /// The erasure requests sent to sites. An episode has one only if its site received the CV, so the seeker's pages offer
    /// to follow a request only where this finds one (a link to an empty list left them wondering whether one was sent).
    /// </summary>
    public static IQueryable<ErasureObligation> ErasureRequests(GatewayDbContext db) =>
        db.Set<ErasureObligation>().AsNoTracking().Where(o => o.Kind == EventKinds.ErasureRequired);

    /// <summary>Erasure obligations for the given episodes that disclosed anything.</summary>
    public static async Task<List<WrittenObligation>> RequireErasureAsync(
        GatewayDbContext db, IReadOnlyCollection<Guid> consentIds, string cause, DateTimeOffset now, TimeSpan confirmWithin, CancellationToken cancellationToken)
    {
        if (consentIds.Count == 0)
        {
            return [];
        }

        var ids = consentIds.ToArray();
        var confirmBefore = Deadline(now, confirmWithin);
        return await db.Database.SqlQuery<WrittenObligation>(
            $"""
            WITH written AS (
                INSERT INTO erasure_obligations (jti, recipient_id, consent_id, pairwise_id, kind, cause, created_at, confirm_before, status, overdue, attempts, next_attempt_at)
                SELECT gen_random_uuid(), c.recipient_id, c.id, c.pairwise_id, {EventKinds.ErasureRequired}, {cause}, {now}, {confirmBefore}, 'Pending', false, 0, {now}
                FROM consents c
                WHERE c.id = ANY({ids}) AND EXISTS (SELECT 1 FROM disclosures d WHERE d.consent_id = c.id)
                RETURNING consent_id, recipient_id, jti)
            SELECT w.consent_id, r.client_id, w.jti FROM written w JOIN recipients r ON r.id = w.recipient_id
            """).ToListAsync(cancellationToken);
    }

    /// <summary>
    /// Erasure obligations for episodes just ended, each under its own cause (a batch may hold some ended by the gateway
    /// and some that had lapsed): one statement per cause.
    /// </summary>
    public static async Task<List<WrittenObligation>> RequireErasureAsync(
        GatewayDbContext db, IEnumerable<Consent> ended, DateTimeOffset now, TimeSpan confirmWithin, CancellationToken cancellationToken)
    {
        var written = new List<WrittenObligation>();
        foreach (var cause in ended.GroupBy(c => c.EndCause ?? throw new InvalidOperationException("An episode still active has no end cause.")))
        {
            written.AddRange(await RequireErasureAsync(db, cause.Select(c => c.Id).ToList(), cause.Key, now, confirmWithin, cancellationToken));
        }

        return written;
    }

    /// <summary>The events written, by episode (one erasure event per episode and cause), for <see cref="WithEvent"/>.</summary>
    public static Dictionary<Guid, Guid> ByEpisode(IEnumerable<WrittenObligation> written) => written.ToDictionary(w => w.ConsentId, w => w.Jti);

    /// <summary>An episode's end as the audit log records it, with the erasure event it sent the site, if any.</summary>
    public static AuditEntry WithEvent(this AuditEntry entry, IReadOnlyDictionary<Guid, Guid> byEpisode, Guid consentId) =>
        byEpisode.TryGetValue(consentId, out var jti)
            ? entry with { Details = new Dictionary<string, object?>(entry.Details ?? new Dictionary<string, object?>()) { ["erasureEvent"] = jti } }
            : entry;

    /// <summary>The events a change of a CV sent, by site, for its audit row: <c>[{ "recipient": clientId, "jti": … }]</c>.</summary>
    public static object[] Listed(IEnumerable<WrittenObligation> written) =>
        [.. written.OrderBy(w => w.ClientId, StringComparer.Ordinal).Select(w => new Dictionary<string, object?> { ["recipient"] = w.ClientId, ["jti"] = w.Jti })];

    /// <summary>
    /// Rectification (GDPR art. 16/19): sites holding an older version of a seeker's CV are told it changed. An event
    /// still waiting to reach the site already says so (it names no version), so a run of edits does not become a run of
    /// events, unless the site fetched the CV since that event was written (a polled event waits for its ack while the
    /// site may already hold the version it announced): then the new version is news again.
    /// </summary>
    public static Task<List<WrittenObligation>> NotifyUpdateAsync(
        GatewayDbContext db, string seekerId, int newVersion, DateTimeOffset now, TimeSpan confirmWithin, CancellationToken cancellationToken)
    {
        var confirmBefore = Deadline(now, confirmWithin);
        return db.Database.SqlQuery<WrittenObligation>(
            $"""
            WITH written AS (
                INSERT INTO erasure_obligations (jti, recipient_id, consent_id, pairwise_id, kind, cause, created_at, confirm_before, status, overdue, attempts, next_attempt_at)
                SELECT gen_random_uuid(), c.recipient_id, c.id, c.pairwise_id, {EventKinds.CvUpdated}, 'cv-updated', {now}, {confirmBefore}, 'Pending', false, 0, {now}
                FROM consents c
                WHERE c.seeker_id = {seekerId} AND c.state = 'Active'
                  AND EXISTS (SELECT 1 FROM disclosures d WHERE d.consent_id = c.id AND d.cv_version < {newVersion})
                  AND NOT EXISTS (SELECT 1 FROM erasure_obligations o
                                  WHERE o.consent_id = c.id AND o.kind = {EventKinds.CvUpdated} AND o.status = 'Pending'
                                    AND NOT EXISTS (SELECT 1 FROM disclosures f WHERE f.consent_id = c.id AND f.disclosed_at > o.created_at))
                RETURNING consent_id, recipient_id, jti)
            SELECT w.consent_id, r.client_id, w.jti FROM written w JOIN recipients r ON r.id = w.recipient_id
            """).ToListAsync(cancellationToken);
    }

    /// <summary>
    /// A site that confirms it deleted its copy has nothing left to rectify: the same episode's cv-updated events written
    /// before that erasure event are closed with it. Otherwise a seeker who saved a new version and then unticked left the
    /// site an "update" it could only confirm by pretending to keep a copy, and the auditors an overdue it did not earn.
    /// A row another transaction holds (a dispatcher recording it) is skipped, not waited for, and stays open.
    /// Returns the jtis closed.
    /// </summary>
    public static Task<List<Guid>> CloseRectificationsAsync(GatewayDbContext db, ErasureObligation erasure, DateTimeOffset now, CancellationToken cancellationToken) =>
        db.Database.SqlQuery<Guid>(
            $"""
            UPDATE erasure_obligations SET status = 'Confirmed', confirmed_at = {now}, delivered_at = coalesce(delivered_at, {now})
            WHERE id IN (
                SELECT id FROM erasure_obligations
                WHERE consent_id = {erasure.ConsentId} AND recipient_id = {erasure.RecipientId} AND kind = {EventKinds.CvUpdated}
                  AND status <> 'Confirmed' AND created_at <= {erasure.CreatedAt}
                FOR UPDATE SKIP LOCKED)
            RETURNING jti AS "Value"
            """).ToListAsync(cancellationToken);
}

/// <summary>
/// A CV back online (refreshed or published again) while its episodes still run: the cv-offline events that never left for
/// their site are withdrawn rather than sent late, since they would tell the site to delete a CV it may read again now.
/// Only a push site's event never attempted (no claim, no lease) is known not to have left: a poll site may have been
/// offered it already (a poll leaves no trace until its ack), and an attempt may have reached the site whatever its outcome.
/// Those stay; their toe tells the site they are older than the CV it reads.
/// </summary>
public static class OfflineEvents
{
    /// <summary>
    /// Returns those withdrawn, for the audit row of the write (a withdrawn jti must be told from a deleted one). Under the CV's row lock: no sweep of this CV can be writing them meanwhile. Take it
    /// before the chain lock. A row another transaction holds (a dispatcher claiming it, a site confirming it, the
    /// escalation) is skipped, not waited for: waiting there could close a cycle through the chain lock. Such a row stays,
    /// like a poll site's, and its toe tells the site it is older than the CV it reads.
    /// </summary>
    public static Task<List<WrittenObligation>> WithdrawAsync(GatewayDbContext db, string seekerId, DateTimeOffset now, CancellationToken cancellationToken) =>
        db.Database.SqlQuery<WrittenObligation>(
            $"""
            WITH withdrawn AS (
                DELETE FROM erasure_obligations WHERE id IN (
                    SELECT o.id FROM erasure_obligations o
                    JOIN consents c ON c.id = o.consent_id
                    JOIN recipients r ON r.id = o.recipient_id
                    WHERE c.seeker_id = {seekerId} AND c.state = 'Active' AND r.delivery_mode = 'Push'
                      AND o.cause = {ErasureCauses.CvOffline} AND o.status = 'Pending' AND o.attempts = 0
                      AND (o.leased_until IS NULL OR o.leased_until <= {now})
                    FOR UPDATE OF o SKIP LOCKED)
                RETURNING consent_id, recipient_id, jti)
            SELECT w.consent_id, r.client_id, w.jti FROM withdrawn w JOIN recipients r ON r.id = w.recipient_id
            """).ToListAsync(cancellationToken);
}

/// <summary>The push state that belongs to a site's endpoint rather than to its events (back-off, hold, leases).</summary>
public static class PushDeliveries
{
    /// <summary>
    /// A site now takes its events elsewhere (by poll, or at a new endpoint): its waiting events are due at once, and the
    /// back-off, the hold and the leases its old endpoint caused end. Left in place, a site switched to poll would be
    /// offered nothing for up to a day, and a new endpoint would wait as long, while the deadlines ran against it. An
    /// attempt still on its way to the old endpoint then records neither its back-off nor a hold (both need the lease),
    /// and its event may go out again, to where the site now takes it (same jti). A site that polled until now may have
    /// been offered any of its waiting events (a poll leaves no trace until its ack): they count as tried, so that a CV back
    /// online does not withdraw one the site already holds (<see cref="OfflineEvents"/>). Returns how many events became due.
    /// </summary>
    public static async Task<int> RedirectedAsync(
        GatewayDbContext db, Guid recipientId, bool polledBefore, DateTimeOffset now, CancellationToken cancellationToken)
    {
        var due = await db.Database.ExecuteSqlAsync(
            $"""
            UPDATE erasure_obligations SET next_attempt_at = least(next_attempt_at, {now}), leased_until = NULL,
                attempts = CASE WHEN {polledBefore} THEN greatest(attempts, 1) ELSE attempts END
            WHERE recipient_id = {recipientId} AND status = 'Pending'
              AND (next_attempt_at > {now} OR leased_until IS NOT NULL OR ({polledBefore} AND attempts = 0))
            """,
            cancellationToken);
        await db.Database.ExecuteSqlAsync($"DELETE FROM push_holds WHERE recipient_id = {recipientId}", cancellationToken);
        return due;
    }
}

/// <summary>The audit record of events reaching a site: one per site and round, listing the events' jtis.</summary>
public static class ErasureDeliveries
{
    public static AuditEntry AuditEntry(string actorKind, string actorId, string clientId, string via, IEnumerable<Guid> jtis)
    {
        var list = jtis.ToList();
        return new AuditEntry(actorKind, actorId, AuditActions.ErasureDelivered, Outcomes.Success, Recipient: clientId,
            Details: new Dictionary<string, object?> { ["via"] = via, ["count"] = list.Count, ["jtis"] = list });
    }
}

/// <summary>
/// A push site held by the dispatcher until a time: it asked for a wait (Retry-After), or did not answer in time, or could
/// not be reached. One row per site, read by every claim, so no node pushes to it before then.
/// </summary>
public sealed class PushHold
{
    public Guid RecipientId { get; init; }
    public DateTimeOffset HeldUntil { get; init; }
}

public sealed class PushHoldConfiguration : IEntityTypeConfiguration<PushHold>
{
    public void Configure(EntityTypeBuilder<PushHold> builder)
    {
        builder.ToTable("push_holds");
        builder.HasKey(h => h.RecipientId);
    }
}
