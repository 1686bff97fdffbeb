using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace ExchangeGateway.Data.Migrations
{
    /// <inheritdoc />
    public partial class ObligationIndexBySite : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            // Built and dropped CONCURRENTLY, outside the migration's transaction: this table takes every change of sharing,
            // and a plain CREATE INDEX would hold its writes (and the chain lock queue behind them) for the whole build. A
            // build that failed half-way leaves an invalid index under the same name; the first statement clears it.
            migrationBuilder.Sql("DROP INDEX CONCURRENTLY IF EXISTS ix_erasure_obligations_recipient_id_jti;", suppressTransaction: true);
            migrationBuilder.Sql(
                "CREATE UNIQUE INDEX CONCURRENTLY ix_erasure_obligations_recipient_id_jti ON erasure_obligations (recipient_id, jti);",
                suppressTransaction: true);
            migrationBuilder.Sql("DROP INDEX CONCURRENTLY IF EXISTS ix_erasure_obligations_jti;", suppressTransaction: true);
            migrationBuilder.Sql("DROP INDEX CONCURRENTLY IF EXISTS ix_erasure_obligations_recipient_id_status;", suppressTransaction: true);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "ix_erasure_obligations_recipient_id_jti",
                table: "erasure_obligations");

            migrationBuilder.CreateIndex(
                name: "ix_erasure_obligations_jti",
                table: "erasure_obligations",
                column: "jti",
                unique: true);

            migrationBuilder.CreateIndex(
                name: "ix_erasure_obligations_recipient_id_status",
                table: "erasure_obligations",
                columns: new[] { "recipient_id", "status" });
        }
    }
}
