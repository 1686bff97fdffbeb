using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace ExchangeGateway.Data.Migrations
{
    /// <inheritdoc />
    public partial class DropLegacyDataKeyCopy : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            // The copy of the data-key wrapping key that the previous release kept among the signing keys, for its rolling
            // upgrade only: every node now reads data_key_wrapping_keys, so the copy is one more place the key lives on.
            migrationBuilder.Sql("DELETE FROM signing_keys WHERE algorithm = 'A256GCM-DEK';");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            // Nothing to restore: the release before this one reads the wrapping keys from data_key_wrapping_keys.
        }
    }
}
