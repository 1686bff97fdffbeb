using ExchangeGateway.Data;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace ExchangeGateway.Data.Migrations
{
    /// <summary>
    /// Where the audit log's times start to be in order: the first row a gateway that stamps every row at least with the
    /// head's time will write. Rows before it (written by earlier versions, by nodes whose clocks differed) may go back in
    /// time, and the verifier does not judge their order. A function the owner creates, not a row: the application's role
    /// can call it but not change it, and no grant on tables ever reaches it.
    /// </summary>
    [DbContext(typeof(GatewayDbContext))]
    [Migration("20261202140000_AuditTimeOrderFrom")]
    public partial class AuditTimeOrderFrom : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql("""
                DO $$
                BEGIN
                    EXECUTE format('CREATE FUNCTION audit_time_order_from() RETURNS bigint LANGUAGE sql IMMUTABLE AS %L',
                        'SELECT ' || (SELECT coalesce(max(sequence), 0) + 1 FROM audit_events)::text || '::bigint');
                END
                $$;
                """);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql("DROP FUNCTION IF EXISTS audit_time_order_from();");
        }
    }
}
