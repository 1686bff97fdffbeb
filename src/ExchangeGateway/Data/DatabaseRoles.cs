namespace ExchangeGateway.Data;

/// <summary>
/// SQL that migrations run to protect the audit log. Kept here, not inline in a generated migration, so later
/// migrations that add tables can grant and revoke the same way.
/// </summary>
public static class DatabaseRoles
{
    /// <summary>The role the running gateway should log in as (through a login role that is a member of it).</summary>
    public const string AppRole = "exchange_gateway_app";

    public const string CreateAppRole = $"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{AppRole}') THEN
                CREATE ROLE {AppRole} NOLOGIN;
            END IF;
        EXCEPTION WHEN duplicate_object THEN NULL; -- another database of this cluster created it at the same moment
        END
        $$;
        """;

    /// <summary>
    /// The application role may read and write the gateway's tables, but only append to the audit log and to the signing
    /// keys: a node that deleted the stored ES256 key would make a new one at its next start, and every checkpoint signed
    /// with the old one could never be verified again.
    /// </summary>
    public const string GrantAppRole = $"""
        GRANT USAGE ON SCHEMA public TO {AppRole};
        GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {AppRole};
        GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {AppRole};
        REVOKE UPDATE, DELETE, TRUNCATE ON audit_events, audit_checkpoints, signing_keys FROM {AppRole}, PUBLIC;
        """;

    /// <summary>Even the owner cannot rewrite history through ordinary statements: a trigger refuses it.</summary>
    public const string AppendOnlyAudit = """
        CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'the audit log is append-only: % on % is refused', TG_OP, TG_TABLE_NAME
                USING ERRCODE = 'insufficient_privilege';
        END
        $$;
        CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
            FOR EACH ROW EXECUTE FUNCTION audit_append_only();
        CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
            FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
        CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
            FOR EACH ROW EXECUTE FUNCTION audit_append_only();
        CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
            FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
        """;

    /// <summary>
    /// The application role must insert checkpoints (the job signs them), so it could insert junk too: one naming a row that
    /// does not exist, or a hash that is not that row's, would fail every verification for good, and append-only means
    /// nobody can remove it. The owner's trigger refuses such a row. The search path is pinned so that a temporary table
    /// named audit_events, which any role may create, cannot stand in for the log.
    /// </summary>
    public const string CheckpointsMatchTheirRow = """
        CREATE OR REPLACE FUNCTION audit_checkpoint_matches_row() RETURNS trigger LANGUAGE plpgsql
            SET search_path = pg_catalog, public, pg_temp AS $$
        DECLARE
            row_hash bytea;
        BEGIN
            SELECT hash INTO row_hash FROM audit_events WHERE sequence = NEW.sequence;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'audit checkpoint refused: the log has no row %', NEW.sequence
                    USING ERRCODE = 'check_violation';
            END IF;
            IF row_hash IS DISTINCT FROM NEW.hash THEN
                RAISE EXCEPTION 'audit checkpoint refused: its hash is not that of row %', NEW.sequence
                    USING ERRCODE = 'check_violation';
            END IF;
            RETURN NEW;
        END
        $$;
        CREATE OR REPLACE TRIGGER audit_checkpoints_match_row BEFORE INSERT ON audit_checkpoints
            FOR EACH ROW EXECUTE FUNCTION audit_checkpoint_matches_row();
        """;
}
