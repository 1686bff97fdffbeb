using ExchangeGateway.Audit;
using ExchangeGateway.Consents;
using ExchangeGateway.Data;
using ExchangeGateway.Events;
using ExchangeGateway.Exchange;
using Microsoft.EntityFrameworkCore;

namespace ExchangeGateway.Cvs;

/// <summary>What a seeker may see about their own data; the API and the web pages read it through these same queries.</summary>
public static class MyDataQueries
{
    /// <summary>The collection name of disclosure cursors, so a cursor from the API also works on the page and back.</summary>
    public const string DisclosuresCollection = "my-disclosures";
    public const string ErasuresCollection = "my-erasures";

    public static IQueryable<DisclosureItem> DisclosuresOf(GatewayDbContext db, string seekerId) =>
        from d in db.Set<Disclosure>().AsNoTracking()
        join r in db.Recipients.AsNoTracking() on d.RecipientId equals r.Id
        join c in db.Set<Consent>().AsNoTracking() on d.ConsentId equals c.Id
        where d.SeekerId == seekerId
        select new DisclosureItem
        {
            Id = d.Id, RecipientId = d.RecipientId, RecipientName = r.DisplayName, IdAtSite = c.PairwiseId, Version = d.CvVersion, DisclosedAt = d.DisclosedAt,
        };

    /// <summary>Disclosures newest first, strictly older than <paramref name="before"/> (null: from the newest), for <see cref="Cursors.PageAsync"/>.</summary>
    public static IQueryable<DisclosureItem> DisclosuresBefore(GatewayDbContext db, string seekerId, long? before) =>
        DisclosuresOf(db, seekerId).Where(d => before == null || d.Id < before).OrderByDescending(d => d.Id);

    /// <summary>
    /// A seeker's consent events (with one site, or all), in time order, strictly after <paramref name="after"/> (null: from
    /// the first) and up to <paramref name="until"/>. A row comparison, which the (seeker, site, at) index serves; LINQ has
    /// no way to say it for a Guid.
    /// </summary>
    public static IQueryable<ConsentHistoryItem> ConsentHistoryAfter(
        GatewayDbContext db, string seekerId, Guid? recipientId, ConsentHistoryPosition? after, DateTimeOffset? until = null) =>
        (after is null
            ? db.Set<ConsentEvent>()
            : db.Set<ConsentEvent>().FromSql($"SELECT * FROM consent_events WHERE (at, id) > ({after.At}, {after.Id})"))
        .AsNoTracking()
        .Where(e => e.SeekerId == seekerId && (recipientId == null || e.RecipientId == recipientId) && (until == null || e.At <= until))
        .Join(db.Set<Consent>().AsNoTracking(), e => e.ConsentId, c => c.Id, (e, c) => new { e, c.PairwiseId })
        .OrderBy(x => x.e.At).ThenBy(x => x.e.Id)
        .Select(x => new ConsentHistoryItem(x.e.Id, x.e.ConsentId, x.e.Kind, x.e.At, x.e.CollectionMethod, x.e.RecipientName, x.e.PolicyUrl, x.PairwiseId));

    /// <summary>
    /// The audit log's rows about a seeker (by pseudonym) or by them, in chain order, after one row and through another: the
    /// (subject, sequence) and (actor_id, sequence) indexes. A seeker who is also staff acts under the same pseudonym, and
    /// what they did as staff is theirs too.
    /// </summary>
    public static IQueryable<AuditEvent> AuditRowsAbout(GatewayDbContext db, string pseudonym, long after, long through) =>
        RowsAbout(db, pseudonym).Where(e => e.Sequence > after && e.Sequence <= through).OrderBy(e => e.Sequence);

    /// <summary>The newest of those rows, where an export stops (its own row comes after).</summary>
    public static Task<long?> LastAuditRowAboutAsync(GatewayDbContext db, string pseudonym, CancellationToken cancellationToken) =>
        RowsAbout(db, pseudonym).MaxAsync(e => (long?)e.Sequence, cancellationToken);

    private static IQueryable<AuditEvent> RowsAbout(GatewayDbContext db, string pseudonym) =>
        db.Set<AuditEvent>().AsNoTracking().Where(e => e.Subject == pseudonym || e.ActorId == pseudonym);

    /// <summary>Newest first; <paramref name="before"/> continues a page (keyset on the obligation's id).</summary>
    public static IQueryable<ErasureStatusItem> ErasuresOf(GatewayDbContext db, string seekerId, DateTimeOffset now, long? before = null) =>
        from o in db.Set<ErasureObligation>().AsNoTracking()
        join c in db.Set<Consent>().AsNoTracking() on o.ConsentId equals c.Id
        join r in db.Recipients.AsNoTracking() on o.RecipientId equals r.Id
        where c.SeekerId == seekerId && (before == null || o.Id < before)
        orderby o.Id descending
        select new ErasureStatusItem(o.Id, o.RecipientId, r.DisplayName, o.Kind, o.Cause, o.Status,
            ErasureObligation.IsLate(o.Status, o.Overdue, o.ConfirmBefore, o.ConfirmedAt, now), o.CreatedAt, o.DeliveredAt, o.ConfirmedAt, o.ConfirmBefore, o.PairwiseId, o.Jti);
}
