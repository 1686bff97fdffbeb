using System;
using Microsoft.EntityFrameworkCore.Migrations;
using Npgsql.EntityFrameworkCore.PostgreSQL.Metadata;

#nullable disable

namespace ExchangeGateway.Data.Migrations
{
    /// <inheritdoc />
    public partial class Sharing : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateSequence(
                name: "feed_positions");

            migrationBuilder.CreateTable(
                name: "consents",
                columns: table => new
                {
                    id = table.Column<Guid>(type: "uuid", nullable: false),
                    seeker_id = table.Column<string>(type: "character varying(64)", maxLength: 64, nullable: true),
                    recipient_id = table.Column<Guid>(type: "uuid", nullable: false),
                    pairwise_id = table.Column<string>(type: "character varying(40)", maxLength: 40, nullable: false),
                    state = table.Column<string>(type: "character varying(16)", maxLength: 16, nullable: false),
                    collection_method = table.Column<string>(type: "character varying(8)", maxLength: 8, nullable: false),
                    granted_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    expires_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    ended_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: true),
                    feed_position = table.Column<long>(type: "bigint", nullable: false, defaultValueSql: "nextval('feed_positions')"),
                    expiry_reminder_sent = table.Column<bool>(type: "boolean", nullable: false),
                    end_cause = table.Column<string>(type: "character varying(32)", maxLength: 32, nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_consents", x => x.id);
                    table.ForeignKey(
                        name: "fk_consents_recipients_recipient_id",
                        column: x => x.recipient_id,
                        principalTable: "recipients",
                        principalColumn: "id",
                        onDelete: ReferentialAction.Restrict);
                });

            migrationBuilder.CreateTable(
                name: "cvs",
                columns: table => new
                {
                    id = table.Column<Guid>(type: "uuid", nullable: false),
                    seeker_id = table.Column<string>(type: "character varying(64)", maxLength: 64, nullable: false),
                    version = table.Column<int>(type: "integer", nullable: false),
                    state = table.Column<string>(type: "character varying(16)", maxLength: 16, nullable: false),
                    created_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    updated_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    refreshed_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    erased_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: true),
                    @sealed = table.Column<byte[]>(name: "sealed", type: "bytea", nullable: true),
                    content_hash = table.Column<byte[]>(type: "bytea", nullable: true),
                    last_reminder_lead = table.Column<TimeSpan>(type: "interval", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_cvs", x => x.id);
                });

            migrationBuilder.CreateTable(
                name: "seeker_keys",
                columns: table => new
                {
                    seeker_id = table.Column<string>(type: "character varying(64)", maxLength: 64, nullable: false),
                    wrapped_key = table.Column<byte[]>(type: "bytea", nullable: false),
                    created_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_seeker_keys", x => x.seeker_id);
                });

            migrationBuilder.CreateTable(
                name: "consent_events",
                columns: table => new
                {
                    id = table.Column<Guid>(type: "uuid", nullable: false),
                    consent_id = table.Column<Guid>(type: "uuid", nullable: false),
                    seeker_id = table.Column<string>(type: "character varying(64)", maxLength: 64, nullable: true),
                    recipient_id = table.Column<Guid>(type: "uuid", nullable: false),
                    kind = table.Column<string>(type: "character varying(16)", maxLength: 16, nullable: false),
                    at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    collection_method = table.Column<string>(type: "character varying(8)", maxLength: 8, nullable: false),
                    recipient_name = table.Column<string>(type: "character varying(200)", maxLength: 200, nullable: false),
                    policy_url = table.Column<string>(type: "character varying(2000)", maxLength: 2000, nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_consent_events", x => x.id);
                    table.ForeignKey(
                        name: "fk_consent_events_consents_consent_id",
                        column: x => x.consent_id,
                        principalTable: "consents",
                        principalColumn: "id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateTable(
                name: "disclosures",
                columns: table => new
                {
                    id = table.Column<long>(type: "bigint", nullable: false)
                        .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityAlwaysColumn),
                    consent_id = table.Column<Guid>(type: "uuid", nullable: false),
                    recipient_id = table.Column<Guid>(type: "uuid", nullable: false),
                    seeker_id = table.Column<string>(type: "character varying(64)", maxLength: 64, nullable: true),
                    cv_version = table.Column<int>(type: "integer", nullable: false),
                    content_hash = table.Column<byte[]>(type: "bytea", nullable: false),
                    disclosed_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_disclosures", x => x.id);
                    table.ForeignKey(
                        name: "fk_disclosures_consents_consent_id",
                        column: x => x.consent_id,
                        principalTable: "consents",
                        principalColumn: "id",
                        onDelete: ReferentialAction.Restrict);
                });

            migrationBuilder.CreateTable(
                name: "erasure_obligations",
                columns: table => new
                {
                    id = table.Column<long>(type: "bigint", nullable: false)
                        .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityAlwaysColumn),
                    jti = table.Column<Guid>(type: "uuid", nullable: false),
                    recipient_id = table.Column<Guid>(type: "uuid", nullable: false),
                    consent_id = table.Column<Guid>(type: "uuid", nullable: false),
                    pairwise_id = table.Column<string>(type: "character varying(40)", maxLength: 40, nullable: false),
                    kind = table.Column<string>(type: "character varying(32)", maxLength: 32, nullable: false),
                    cause = table.Column<string>(type: "character varying(32)", maxLength: 32, nullable: false),
                    created_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    confirm_before = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    status = table.Column<string>(type: "character varying(16)", maxLength: 16, nullable: false),
                    delivered_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: true),
                    confirmed_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: true),
                    overdue = table.Column<bool>(type: "boolean", nullable: false),
                    overdue_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: true),
                    attempts = table.Column<int>(type: "integer", nullable: false),
                    next_attempt_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    last_error = table.Column<string>(type: "character varying(500)", maxLength: 500, nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_erasure_obligations", x => x.id);
                    table.ForeignKey(
                        name: "fk_erasure_obligations_consents_consent_id",
                        column: x => x.consent_id,
                        principalTable: "consents",
                        principalColumn: "id",
                        onDelete: ReferentialAction.Restrict);
                    table.ForeignKey(
                        name: "fk_erasure_obligations_recipients_recipient_id",
                        column: x => x.recipient_id,
                        principalTable: "recipients",
                        principalColumn: "id",
                        onDelete: ReferentialAction.Restrict);
                });

            migrationBuilder.CreateIndex(
                name: "ix_consent_events_consent_id",
                table: "consent_events",
                column: "consent_id");

            migrationBuilder.CreateIndex(
                name: "ix_consent_events_seeker_id_recipient_id_at",
                table: "consent_events",
                columns: new[] { "seeker_id", "recipient_id", "at" });

            migrationBuilder.CreateIndex(
                name: "ix_consents_expires_at",
                table: "consents",
                column: "expires_at",
                filter: "state = 'Active'");

            migrationBuilder.CreateIndex(
                name: "ix_consents_pairwise_id",
                table: "consents",
                column: "pairwise_id",
                unique: true);

            migrationBuilder.CreateIndex(
                name: "ix_consents_recipient_id_feed_position",
                table: "consents",
                columns: new[] { "recipient_id", "feed_position" });

            migrationBuilder.CreateIndex(
                name: "ix_consents_seeker_id_recipient_id",
                table: "consents",
                columns: new[] { "seeker_id", "recipient_id" },
                unique: true,
                filter: "state = 'Active'");

            migrationBuilder.CreateIndex(
                name: "ix_consents_seeker_id_recipient_id_granted_at",
                table: "consents",
                columns: new[] { "seeker_id", "recipient_id", "granted_at" });

            migrationBuilder.CreateIndex(
                name: "ix_cvs_refreshed_at",
                table: "cvs",
                column: "refreshed_at");

            migrationBuilder.CreateIndex(
                name: "ix_cvs_seeker_id",
                table: "cvs",
                column: "seeker_id",
                unique: true);

            migrationBuilder.CreateIndex(
                name: "ix_disclosures_consent_id_cv_version",
                table: "disclosures",
                columns: new[] { "consent_id", "cv_version" });

            migrationBuilder.CreateIndex(
                name: "ix_disclosures_seeker_id_id",
                table: "disclosures",
                columns: new[] { "seeker_id", "id" });

            migrationBuilder.CreateIndex(
                name: "ix_erasure_obligations_confirm_before",
                table: "erasure_obligations",
                column: "confirm_before",
                filter: "status <> 'Confirmed' AND NOT overdue");

            migrationBuilder.CreateIndex(
                name: "ix_erasure_obligations_consent_id",
                table: "erasure_obligations",
                column: "consent_id");

            migrationBuilder.CreateIndex(
                name: "ix_erasure_obligations_jti",
                table: "erasure_obligations",
                column: "jti",
                unique: true);

            migrationBuilder.CreateIndex(
                name: "ix_erasure_obligations_next_attempt_at",
                table: "erasure_obligations",
                column: "next_attempt_at",
                filter: "status = 'Pending'");

            migrationBuilder.CreateIndex(
                name: "ix_erasure_obligations_recipient_id_status",
                table: "erasure_obligations",
                columns: new[] { "recipient_id", "status" });

            // New tables: the application role gets the same rights as on the others (and still only appends to the audit log).
            migrationBuilder.Sql(DatabaseRoles.GrantAppRole);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "consent_events");

            migrationBuilder.DropTable(
                name: "cvs");

            migrationBuilder.DropTable(
                name: "disclosures");

            migrationBuilder.DropTable(
                name: "erasure_obligations");

            migrationBuilder.DropTable(
                name: "seeker_keys");

            migrationBuilder.DropTable(
                name: "consents");

            migrationBuilder.DropSequence(
                name: "feed_positions");
        }
    }
}
