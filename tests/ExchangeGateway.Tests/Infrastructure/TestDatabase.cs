using Npgsql;

namespace ExchangeGateway.Tests.Infrastructure;

/// <summary>A fresh database on the PostgreSQL that scripts/test started, and the roles the gateway logs in with.</summary>
public sealed class TestDatabase : IAsyncDisposable
{
    /// <summary>The login the gateway uses in tests: a member of the application role, not the owner of the tables.</summary>
    public const string AppLogin = "eg_test_app";

    private TestDatabase(string name)
    {
        Name = name;
        OwnerConnectionString = new NpgsqlConnectionStringBuilder(ServerConnectionString) { Database = name }.ConnectionString;
        AppConnectionString = new NpgsqlConnectionStringBuilder(ServerConnectionString) { Database = name, Username = AppLogin, Password = AppLogin }.ConnectionString;
    }

    public string Name { get; }
    public string OwnerConnectionString { get; }
    public string AppConnectionString { get; }

    public static string ServerConnectionString =>
        Environment.GetEnvironmentVariable("EXCHANGEGATEWAY_TEST_PG")
        ?? throw new InvalidOperationException("EXCHANGEGATEWAY_TEST_PG is not set: run the tests with scripts/test, which starts PostgreSQL.");

    /// <summary>A new empty database, or a copy of <paramref name="template"/> (which must have no open sessions).</summary>
    public static async Task<TestDatabase> CreateAsync(TestDatabase? template = null)
    {
        var database = new TestDatabase("eg_test_" + Guid.NewGuid().ToString("N")[..12]);
        await using var connection = new NpgsqlConnection(ServerConnectionString);
        await connection.OpenAsync();
        await Execute(connection, template is null ? $"CREATE DATABASE {database.Name}" : $"CREATE DATABASE {database.Name} TEMPLATE {template.Name}");
        // Roles are shared by every database of the cluster; several fixtures may race to create them.
        await Execute(connection, $"""
            DO $$ BEGIN
                IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'exchange_gateway_app') THEN CREATE ROLE exchange_gateway_app NOLOGIN; END IF;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
            DO $$ BEGIN
                IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{AppLogin}') THEN
                    CREATE ROLE {AppLogin} LOGIN PASSWORD '{AppLogin}' IN ROLE exchange_gateway_app;
                END IF;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
            """);
        return database;
    }

    public async Task<NpgsqlConnection> OpenOwnerConnectionAsync()
    {
        var connection = new NpgsqlConnection(OwnerConnectionString);
        await connection.OpenAsync();
        return connection;
    }

    public async Task<T> ScalarAsync<T>(string sql)
    {
        await using var connection = await OpenOwnerConnectionAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        return (T)(await command.ExecuteScalarAsync())!;
    }

    public async Task ExecuteAsync(string sql)
    {
        await using var connection = await OpenOwnerConnectionAsync();
        await Execute(connection, sql);
    }

    public async ValueTask DisposeAsync()
    {
        // This database's own pools only: clearing every pool in the process closed the idle connections of tests still
        // running in other collections (the replica test looks for its replica's pooled sessions). FORCE ends the sessions
        // of the hosts that used this database; their pools are never used again.
        NpgsqlConnection.ClearPool(new NpgsqlConnection(OwnerConnectionString));
        NpgsqlConnection.ClearPool(new NpgsqlConnection(AppConnectionString));
        await using var connection = new NpgsqlConnection(ServerConnectionString);
        await connection.OpenAsync();
        await Execute(connection, $"DROP DATABASE IF EXISTS {Name} WITH (FORCE)");
    }

    private static async Task Execute(NpgsqlConnection connection, string sql)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }
}
