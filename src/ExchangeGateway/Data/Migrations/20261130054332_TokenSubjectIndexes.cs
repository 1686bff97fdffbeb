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
            // CREATE INDEX would hold those writes for the whole build. A build that failed half-way leaves an invalid
            // index under the same name; the DROP clears it.
            migrationBuilder.Sql("DROP INDEX CONCURRENTLY IF EXISTS ix_open_iddict_tokens_subject;", suppressTransaction: true);
            migrationBuilder.Sql("CREATE INDEX CONCURRENTLY ix_open_iddict_tokens_subject ON \"OpenIddictTokens\" (subject);", suppressTransaction: true);
            migrationBuilder.Sql("DROP INDEX CONCURRENTLY IF EXISTS ix_open_iddict_authorizations_subject;", suppressTransaction: true);
            migrationBuilder.Sql(
                "CREATE INDEX CONCURRENTLY ix_open_iddict_authorizations_subject ON \"OpenIddictAuthorizations\" (subject);", suppressTransaction: true);
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
