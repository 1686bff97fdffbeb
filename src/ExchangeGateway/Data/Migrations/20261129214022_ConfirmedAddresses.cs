using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace ExchangeGateway.Data.Migrations
{
    /// <inheritdoc />
    public partial class ConfirmedAddresses : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            // Sign-up now waits for the address to be confirmed before an account can sign in. Accounts made before that
            // were usable at once; they stay usable.
            migrationBuilder.Sql("UPDATE \"AspNetUsers\" SET email_confirmed = true WHERE NOT email_confirmed;");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {

        }
    }
}
