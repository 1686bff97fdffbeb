using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace ExchangeGateway.Data.Migrations
{
    /// <inheritdoc />
    public partial class OpenObligationsBySite : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            // CONCURRENTLY, outside the migration's transaction, as ObligationIndexBySite: this table takes every change of
            // sharing. A build that failed half-way leaves an invalid index under the same name; the first statement clears it.
            migrationBuilder.Sql("DROP INDEX CONCURRENTLY IF EXISTS ix_erasure_obligations_open_by_site;", suppressTransaction: true);
            migrationBuilder.Sql(
                "CREATE INDEX CONCURRENTLY ix_erasure_obligations_open_by_site ON erasure_obligations (recipient_id, id) WHERE status <> 'Confirmed';",
                suppressTransaction: true);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "ix_erasure_obligations_open_by_site",
                table: "erasure_obligations");
        }
    }
}
