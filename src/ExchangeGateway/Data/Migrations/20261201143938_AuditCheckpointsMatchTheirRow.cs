using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace ExchangeGateway.Data.Migrations
{
    /// <inheritdoc />
    public partial class AuditCheckpointsMatchTheirRow : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            // Checkpoints already stored are left to the verifier, which names those it cannot verify: append-only forbids
            // removing them, and a CHECK could not see the other table anyway.
            migrationBuilder.Sql(DatabaseRoles.CheckpointsMatchTheirRow);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql("DROP TRIGGER IF EXISTS audit_checkpoints_match_row ON audit_checkpoints; DROP FUNCTION IF EXISTS audit_checkpoint_matches_row();");
        }
    }
}
