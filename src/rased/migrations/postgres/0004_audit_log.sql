-- The admin API's audit log: every authorization decision (allowed or denied), who made the
-- call and what it was about. It holds ids and method names only: never a key, a token, a
-- webhook secret or behavioral data. No foreign keys: the trail outlives what it names.
CREATE TABLE audit_log (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id uuid NOT NULL UNIQUE,
    organization_id uuid,
    actor text NOT NULL,
    action text NOT NULL,
    target text NOT NULL DEFAULT '',
    outcome text NOT NULL CHECK (outcome IN ('allowed', 'denied')),
    reason text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now()
);

-- An organization's log, newest first (ListAuditEvents pages by seq).
CREATE INDEX audit_log_organization_seq ON audit_log (organization_id, seq DESC);

COMMENT ON TABLE audit_log IS
    'Admin API decisions (allowed or denied): ids and method names only, never secrets.';
COMMENT ON COLUMN audit_log.seq IS
    'Insertion order; pages of ListAuditEvents continue from the last seq seen.';
COMMENT ON COLUMN audit_log.event_id IS
    'Id of the audit event, shown by ListAuditEvents.';
COMMENT ON COLUMN audit_log.organization_id IS
    'Organization whose log shows the event: the calling key''s own organization, or the one '
    'an operator acted on; NULL for operator-wide actions and unauthenticated calls.';
COMMENT ON COLUMN audit_log.actor IS
    '"operator", the calling API key''s id, or "anonymous" when no credential was accepted.';
COMMENT ON COLUMN audit_log.action IS
    'Full gRPC method name, e.g. "rased.v1.AdminService/CreateApiKey".';
COMMENT ON COLUMN audit_log.target IS
    'Object acted on, as a path of ids, e.g. "organizations/<id>/api-keys/<id>".';
COMMENT ON COLUMN audit_log.outcome IS
    'allowed or denied.';
COMMENT ON COLUMN audit_log.reason IS
    'Why a call was denied (unauthenticated, operator_only, publishable_key, other_organization).';
COMMENT ON COLUMN audit_log.created_at IS
    'When the decision was made.';
