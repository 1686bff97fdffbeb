using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace ExchangeGateway.Data.Migrations
{
    /// <inheritdoc />
    public partial class NarrowFeed : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropForeignKey(
                name: "fk_erasure_obligations_consents_consent_id",
                table: "erasure_obligations");

            migrationBuilder.DropForeignKey(
                name: "fk_erasure_obligations_recipients_recipient_id",
                table: "erasure_obligations");

            migrationBuilder.DropIndex(
                name: "ix_cvs_refreshed_at",
                table: "cvs");

            migrationBuilder.CreateTable(
                name: "feed_entries",
                columns: table => new
                {
                    consent_id = table.Column<Guid>(type: "uuid", nullable: false),
                    recipient_id = table.Column<Guid>(type: "uuid", nullable: false),
                    position = table.Column<long>(type: "bigint", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_feed_entries", x => x.consent_id);
                    table.ForeignKey(
                        name: "fk_feed_entries_consents_consent_id",
                        column: x => x.consent_id,
                        principalTable: "consents",
                        principalColumn: "id",
                        onDelete: ReferentialAction.Cascade);
                });

            // Every episode keeps its place in its feed: cursors handed out before the upgrade stay valid.
            migrationBuilder.Sql("INSERT INTO feed_entries (consent_id, recipient_id, position) SELECT id, recipient_id, feed_position FROM consents");
            migrationBuilder.Sql(DatabaseRoles.GrantAppRole);

            migrationBuilder.DropIndex(
                name: "ix_consents_recipient_id_feed_position",
                table: "consents");

            migrationBuilder.DropColumn(
                name: "feed_position",
                table: "consents");

            migrationBuilder.CreateIndex(
                name: "ix_cvs_refreshed_at",
                table: "cvs",
                column: "refreshed_at",
                filter: "state = 'Published'");

            migrationBuilder.CreateIndex(
                name: "ix_consents_recipient_id",
                table: "consents",
                column: "recipient_id");

            migrationBuilder.CreateIndex(
                name: "ix_feed_entries_recipient_id_position",
                table: "feed_entries",
                columns: new[] { "recipient_id", "position" });
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "feed_entries");

            migrationBuilder.DropIndex(
                name: "ix_cvs_refreshed_at",
                table: "cvs");

            migrationBuilder.DropIndex(
                name: "ix_consents_recipient_id",
                table: "consents");

            migrationBuilder.AddColumn<long>(
                name: "feed_position",
                table: "consents",
                type: "bigint",
                nullable: false,
                defaultValueSql: "nextval('feed_positions')");

            migrationBuilder.CreateIndex(
                name: "ix_cvs_refreshed_at",
                table: "cvs",
                column: "refreshed_at");

            migrationBuilder.CreateIndex(
                name: "ix_consents_recipient_id_feed_position",
                table: "consents",
                columns: new[] { "recipient_id", "feed_position" });

            migrationBuilder.AddForeignKey(
                name: "fk_erasure_obligations_consents_consent_id",
                table: "erasure_obligations",
                column: "consent_id",
                principalTable: "consents",
                principalColumn: "id",
                onDelete: ReferentialAction.Restrict);

            migrationBuilder.AddForeignKey(
                name: "fk_erasure_obligations_recipients_recipient_id",
                table: "erasure_obligations",
                column: "recipient_id",
                principalTable: "recipients",
                principalColumn: "id",
                onDelete: ReferentialAction.Restrict);
        }
    }
}
