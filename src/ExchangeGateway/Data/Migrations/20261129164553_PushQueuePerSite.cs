using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace ExchangeGateway.Data.Migrations
{
    /// <inheritdoc />
    public partial class PushQueuePerSite : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "ix_erasure_obligations_next_attempt_at",
                table: "erasure_obligations");

            migrationBuilder.CreateIndex(
                name: "ix_erasure_obligations_recipient_id_next_attempt_at",
                table: "erasure_obligations",
                columns: new[] { "recipient_id", "next_attempt_at" },
                filter: "status = 'Pending'");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "ix_erasure_obligations_recipient_id_next_attempt_at",
                table: "erasure_obligations");

            migrationBuilder.CreateIndex(
                name: "ix_erasure_obligations_next_attempt_at",
                table: "erasure_obligations",
                column: "next_attempt_at",
                filter: "status = 'Pending'");
        }
    }
}
