using System.Text.Json;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.EntityFrameworkCore;

namespace ExchangeGateway.Hosting;

/// <summary>A collection whose page is smaller than <see cref="Cursors.MaxLimit"/>: said in the OpenAPI document.</summary>
public sealed record PageLimit(int Max);

/// <summary>The shape of every collection: items and an opaque cursor to the next page (null on the last page).</summary>
public sealed record Page<T>(IReadOnlyList<T> Items, string? NextCursor);

/// <summary>
/// Opaque, tamper-proof keyset cursors: the position is authenticated and encrypted by Data Protection under a purpose
/// per collection, so a cursor can be neither forged nor replayed against another collection.
/// </summary>
public sealed class Cursors(IDataProtectionProvider dataProtection)
{
    public const int DefaultLimit = 100;
    public const int MaxLimit = 500;

    public string Encode<T>(string collection, T position) =>
        dataProtection.CreateProtector("cursor", collection).Protect(JsonSerializer.Serialize(position));

    /// <summary>
    /// No cursor is the first page, with the default position: for a list read newest first, decode as <c>long?</c>, whose
    /// default (null) means "from the newest", where a <c>long</c>'s 0 would mean "before the first".
    /// </summary>
    public bool TryDecode<T>(string collection, string? cursor, out T? position)
    {
        position = default;
        if (string.IsNullOrEmpty(cursor))
        {
            return true;
        }

        if (cursor.Length > 2048)
        {
            return false;
        }

        try
        {
            position = JsonSerializer.Deserialize<T>(dataProtection.CreateProtector("cursor", collection).Unprotect(cursor));
            return position is not null;
        }
        catch (Exception e) when (e is System.Security.Cryptography.CryptographicException or JsonException or FormatException)
        {
            return false;
        }
    }

    /// <summary>
    /// One page of a query already filtered past the cursor and ordered by its key: one row more than the page tells whether
    /// another page follows, whose cursor is the last item's key.
    /// </summary>
    public async Task<Page<T>> PageAsync<T, TKey>(
        string collection, IQueryable<T> ordered, int take, Func<T, TKey> keyOf, CancellationToken cancellationToken)
    {
        var rows = await ordered.Take(take + 1).ToListAsync(cancellationToken);
        var more = rows.Count > take;
        var items = more ? rows[..take] : rows;
        return new Page<T>(items, more ? Encode(collection, keyOf(items[^1])) : null);
    }

    /// <summary>Validates limit and cursor together; returns a problem result to send back, or null when both are fine.</summary>
    public Microsoft.AspNetCore.Http.HttpResults.ProblemHttpResult? Read<T>(
        string collection, string? cursor, int? limit, out T? position, out int take, int maxLimit = MaxLimit)
    {
        take = limit ?? Math.Min(DefaultLimit, maxLimit);
        if (take < 1 || take > maxLimit)
        {
            position = default;
            return Problems.Validation($"limit must be between 1 and {maxLimit}.", new Dictionary<string, string[]> { ["limit"] = [$"Must be between 1 and {maxLimit}."] });
        }

        if (!TryDecode(collection, cursor, out position))
        {
            return Problems.Validation("The cursor is not valid for this collection.", new Dictionary<string, string[]> { ["cursor"] = ["Not a cursor issued for this collection."] });
        }

        return null;
    }
}
