using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace ExchangeGateway.Data.Migrations
{
    /// <inheritdoc />
    public partial class ErasedEpisodesByEnd : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            // CONCURRENTLY, outside the migration's transaction, as OpenObligationsBySite: every tick and untick writes this
            // table. A build that failed half-way leaves an invalid index under the same name; the first statement clears it.
            migrationBuilder.Sql("DROP INDEX CONCURRENTLY IF EXISTS ix_consents_erased_by_end;", suppressTransaction: true);
            migrationBuilder.Sql(
                "CREATE INDEX CONCURRENTLY ix_consents_erased_by_end ON consents (ended_at) WHERE seeker_id IS NULL;",
                suppressTransaction: true);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "ix_consents_erased_by_end",
                table: "consents");
        }
    }
}
