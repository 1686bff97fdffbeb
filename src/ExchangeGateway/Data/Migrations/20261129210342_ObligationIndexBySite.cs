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
            migrationBuilder.DropIndex(
                name: "ix_erasure_obligations_jti",
                table: "erasure_obligations");

            migrationBuilder.DropIndex(
                name: "ix_erasure_obligations_recipient_id_status",
                table: "erasure_obligations");

            migrationBuilder.CreateIndex(
                name: "ix_erasure_obligations_recipient_id_jti",
                table: "erasure_obligations",
                columns: new[] { "recipient_id", "jti" },
                unique: true);
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
