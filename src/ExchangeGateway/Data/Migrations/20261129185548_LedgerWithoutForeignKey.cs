using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace ExchangeGateway.Data.Migrations
{
    /// <inheritdoc />
    public partial class LedgerWithoutForeignKey : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropForeignKey(
                name: "fk_disclosures_consents_consent_id",
                table: "disclosures");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddForeignKey(
                name: "fk_disclosures_consents_consent_id",
                table: "disclosures",
                column: "consent_id",
                principalTable: "consents",
                principalColumn: "id",
                onDelete: ReferentialAction.Restrict);
        }
    }
}
