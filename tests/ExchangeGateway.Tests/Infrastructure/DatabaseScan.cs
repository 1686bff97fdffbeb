using Npgsql;

namespace ExchangeGateway.Tests.Infrastructure;

/// <summary>Searches a whole test database (every schema, Hangfire's included) for strings that must not be stored in clear.</summary>
public static class DatabaseScan
{
    /// <summary>
    /// Every text-like (text, varchar, char, json, jsonb, xml, arrays) and bytea column of every base table in every
    /// schema, then every whole row as text, searched case-insensitively for each marker; returns "schema.table.column:
    /// marker" (or "schema.table.(row): marker") for each hit.
    /// </summary>
    public static async Task<List<string>> FindAsync(TestDatabase database, params string[] markers)
    {
        await using var connection = await database.OpenOwnerConnectionAsync();
        var columns = new List<(string Schema, string Table, string Column, bool Bytes)>();
        await using (var list = new NpgsqlCommand(
            """
            SELECT c.table_schema, c.table_name, c.column_name, c.data_type = 'bytea'
            FROM information_schema.columns c
            JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name AND t.table_type = 'BASE TABLE'
            WHERE c.table_schema NOT IN ('pg_catalog', 'information_schema')
              AND c.data_type IN ('text', 'character varying', 'character', 'json', 'jsonb', 'xml', 'ARRAY', 'bytea')
            ORDER BY 1, 2, 3
            """, connection))
        await using (var reader = await list.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync())
            {
                columns.Add((reader.GetString(0), reader.GetString(1), reader.GetString(2), reader.GetBoolean(3)));
            }
        }

        Assert.Contains(columns, c => c.Schema == "hangfire");
        Assert.Contains(columns, c => c.Table == "audit_events");
        var hits = new List<string>();
        foreach (var (schema, table, column, bytes) in columns)
        {
            var target = $"\"{schema}\".\"{table}\"";
            var value = $"\"{column}\"";
            // bytea is searched for the UTF-8 bytes as given and in upper case (normalised e-mails, for instance).
            var condition = bytes
                ? $"position(convert_to($1, 'UTF8') IN {value}) > 0 OR position(convert_to(upper($1), 'UTF8') IN {value}) > 0"
                : $"strpos(lower({value}::text), lower($1)) > 0";
            foreach (var marker in markers)
            {
                await using var search = new NpgsqlCommand($"SELECT count(*) FROM {target} WHERE {condition}", connection) { Parameters = { new() { Value = marker } } };
                if ((long)(await search.ExecuteScalarAsync())! > 0)
                {
                    hits.Add($"{schema}.{table}.{column}: {marker}");
                }
            }
        }

        // Whole rows as text as well, of every table (one with no text-like column at all included): a column of a type
        // not listed above (uuid, citext, an enum, a composite) is in there.
        var tables = new List<(string Schema, string Table)>();
        await using (var list = new NpgsqlCommand(
            """
            SELECT table_schema, table_name FROM information_schema.tables
            WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2
            """, connection))
        await using (var reader = await list.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync())
            {
                tables.Add((reader.GetString(0), reader.GetString(1)));
            }
        }

        Assert.Contains(tables, t => t.Table == "feed_entries");
        foreach (var (schema, table) in tables)
        {
            foreach (var marker in markers)
            {
                await using var search = new NpgsqlCommand(
                    $"SELECT count(*) FROM \"{schema}\".\"{table}\" AS t WHERE strpos(lower(t::text), lower($1)) > 0", connection)
                {
                    Parameters = { new() { Value = marker } },
                };
                if ((long)(await search.ExecuteScalarAsync())! > 0)
                {
                    hits.Add($"{schema}.{table}.(row): {marker}");
                }
            }
        }

        return hits;
    }
}
