using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace ExchangeGateway.Data.Migrations
{
    /// <inheritdoc />
    public partial class AuditSequencePositive : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            // The chain starts at 1; a row numbered before it is a forgery. NOT VALID: checked for every new row without a
            // scan of the whole log at upgrade (the verifier names any such row already there).
            migrationBuilder.Sql("ALTER TABLE audit_events ADD CONSTRAINT ck_audit_events_sequence_positive CHECK (sequence > 0) NOT VALID;");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql("ALTER TABLE audit_events DROP CONSTRAINT ck_audit_events_sequence_positive;");
        }
    }
}
