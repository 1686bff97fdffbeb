using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace ExchangeGateway.Data.Migrations
{
    /// <inheritdoc />
    public partial class TokenSubjectIndexes : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            // CONCURRENTLY, outside the migration's transaction: every token request writes to these tables, and a plain
            // CREATE INDEX would hold those writes for the whole build. IF NOT EXISTS, with no DROP before it: outside the
            // transaction the migration lock is gone, and a second node starting at the same moment must not drop the
            // index the first one just built. (A build that failed half-way leaves an invalid index, which
            // GatewayDatabase.MigrateAsync drops before this migration runs again.)
            migrationBuilder.Sql("CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_open_iddict_tokens_subject ON \"OpenIddictTokens\" (subject);", suppressTransaction: true);
            migrationBuilder.Sql(
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_open_iddict_authorizations_subject ON \"OpenIddictAuthorizations\" (subject);",
                suppressTransaction: true);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "ix_open_iddict_tokens_subject",
                table: "OpenIddictTokens");

            migrationBuilder.DropIndex(
                name: "ix_open_iddict_authorizations_subject",
                table: "OpenIddictAuthorizations");
        }
    }
}
