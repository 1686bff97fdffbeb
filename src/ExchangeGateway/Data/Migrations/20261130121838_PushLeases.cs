using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace ExchangeGateway.Data.Migrations
{
    /// <inheritdoc />
    public partial class PushLeases : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AlterTable(
                name: "erasure_obligations")
                .Annotation("Npgsql:StorageParameter:fillfactor", 70);

            migrationBuilder.AddColumn<DateTimeOffset>(
                name: "leased_until",
                table: "erasure_obligations",
                type: "timestamp with time zone",
                nullable: true);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropColumn(
                name: "leased_until",
                table: "erasure_obligations");

            migrationBuilder.AlterTable(
                name: "erasure_obligations")
                .OldAnnotation("Npgsql:StorageParameter:fillfactor", 70);
        }
    }
}
