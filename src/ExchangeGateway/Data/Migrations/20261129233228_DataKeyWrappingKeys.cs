using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace ExchangeGateway.Data.Migrations
{
    /// <inheritdoc />
    public partial class DataKeyWrappingKeys : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateTable(
                name: "data_key_wrapping_keys",
                columns: table => new
                {
                    id = table.Column<Guid>(type: "uuid", nullable: false),
                    protected_key = table.Column<string>(type: "text", nullable: false),
                    created_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    activates_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_data_key_wrapping_keys", x => x.id);
                });

            // The deployment's wrapping key is copied as it is (same Data Protection purpose, same id), active since it was
            // made, so every stored data key stays readable. The old row stays for one release: a node of the previous
            // version started during a rolling upgrade finds it and wraps with the same key instead of making a new one.
            // The rotation pass deletes it together with the key it copies.
            migrationBuilder.Sql("""
                INSERT INTO data_key_wrapping_keys (id, protected_key, created_at, activates_at)
                SELECT id, protected_private_key, created_at, created_at FROM signing_keys WHERE algorithm = 'A256GCM-DEK';
                """);
            migrationBuilder.Sql(DatabaseRoles.GrantAppRole);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            // Back to one key: the one in use. Data keys wrapped under any other would need a rotation pass first.
            migrationBuilder.Sql("""
                DELETE FROM signing_keys WHERE algorithm = 'A256GCM-DEK';
                INSERT INTO signing_keys (id, algorithm, key_id, protected_private_key, created_at)
                SELECT id, 'A256GCM-DEK', 'moved', protected_key, created_at FROM data_key_wrapping_keys
                WHERE activates_at <= now() ORDER BY activates_at DESC LIMIT 1;
                """);
            migrationBuilder.DropTable(
                name: "data_key_wrapping_keys");
        }
    }
}
