using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace ExchangeGateway.Data.Migrations
{
    /// <inheritdoc />
    public partial class AuditActorIndex : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            // CONCURRENTLY, outside the migration's transaction: every audited request appends to this table, and a plain
            // CREATE INDEX on a log of millions of rows would hold those appends (and so the requests) for the whole build.
            // IF NOT EXISTS for a second node starting at the same moment; a build that failed half-way leaves an invalid
            // index, which GatewayDatabase.MigrateAsync drops before this migration runs again.
            migrationBuilder.Sql(
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_audit_events_actor_id_sequence ON audit_events (actor_id, sequence);",
                suppressTransaction: true);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "ix_audit_events_actor_id_sequence",
                table: "audit_events");
        }
    }
}
