using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace ExchangeGateway.Data.Migrations
{
    /// <inheritdoc />
    public partial class SigningKeysInsertOnly : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            // The nodes' login may add a signing key, never change or drop one: the stored ES256 key is the only copy of the
            // public half that verifies every audit checkpoint made with it.
            migrationBuilder.Sql(DatabaseRoles.GrantAppRole);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql($"GRANT UPDATE, DELETE ON signing_keys TO {DatabaseRoles.AppRole};");
        }
    }
}
