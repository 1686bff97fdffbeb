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
            // Only copies: a key that lives only there (made by a release older than the wrapping-key table, an upgrade that
            // skipped a release) still wraps seeker keys and is moved first.
            migrationBuilder.Sql("""
                INSERT INTO data_key_wrapping_keys (id, protected_key, created_at, activates_at)
                SELECT id, protected_private_key, created_at, created_at FROM signing_keys WHERE algorithm = 'A256GCM-DEK'
                ON CONFLICT (id) DO NOTHING;
                DELETE FROM signing_keys WHERE algorithm = 'A256GCM-DEK';
                """);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            // Nothing to restore: the release before this one reads the wrapping keys from data_key_wrapping_keys.
        }
    }
}
