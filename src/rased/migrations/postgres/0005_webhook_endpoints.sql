-- Webhook endpoints of organizations: where the notification worker POSTs result
-- notifications, signed per the Standard Webhooks spec with the endpoint's secret. Secrets
-- are kept sealed (AES-256-GCM) under the service's master key, like the JWE private keys:
-- the worker needs them in clear to sign, so they cannot be hashed.
CREATE TABLE webhook_endpoints (
    endpoint_id uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    url text NOT NULL,
    event_types text[] NOT NULL DEFAULT '{}',
    enabled boolean NOT NULL DEFAULT true,
    include_scores boolean NOT NULL DEFAULT false,
    disabled_reason text NOT NULL DEFAULT '',
    secret_sealed bytea NOT NULL,
    previous_secret_sealed bytea,
    previous_secret_expires_at timestamptz,
    master_key_id text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    -- A previous secret is only kept for a rotation's overlap window.
    CHECK ((previous_secret_sealed IS NULL) = (previous_secret_expires_at IS NULL))
);

-- An organization's endpoints (admin listing; the worker's fan-out of one notification).
CREATE INDEX webhook_endpoints_organization_id
    ON webhook_endpoints (organization_id, created_at) WHERE deleted_at IS NULL;

COMMENT ON TABLE webhook_endpoints IS
    'Organizations'' webhook endpoints; signing secrets sealed at rest, deleted rows kept.';
COMMENT ON COLUMN webhook_endpoints.endpoint_id IS
    'Server-assigned id of the endpoint.';
COMMENT ON COLUMN webhook_endpoints.organization_id IS
    'Organization the endpoint belongs to; only its notifications are delivered there.';
COMMENT ON COLUMN webhook_endpoints.url IS
    'URL receiving POSTed notifications; https unless the organization allows private targets. '
    'The worker checks the resolved address again at delivery time (SSRF guard).';
COMMENT ON COLUMN webhook_endpoints.event_types IS
    'Event types delivered, e.g. transaction.scored; empty delivers all.';
COMMENT ON COLUMN webhook_endpoints.enabled IS
    'Whether deliveries are made; set false by the organization or by a 410 Gone answer.';
COMMENT ON COLUMN webhook_endpoints.include_scores IS
    'Whether payloads carry the six scores (otherwise only the transaction and its status).';
COMMENT ON COLUMN webhook_endpoints.disabled_reason IS
    'Why the system disabled the endpoint (e.g. "410 Gone"); cleared when it is re-enabled.';
COMMENT ON COLUMN webhook_endpoints.secret_sealed IS
    'Current signing secret ("whsec_" + base64) sealed under a master key (rased.common.crypto '
    'format), bound to organization and endpoint id.';
COMMENT ON COLUMN webhook_endpoints.previous_secret_sealed IS
    'Signing secret before the last rotation, sealed the same way; deliveries carry both '
    'signatures until previous_secret_expires_at.';
COMMENT ON COLUMN webhook_endpoints.previous_secret_expires_at IS
    'End of the rotation''s overlap window; NULL when there is no previous secret.';
COMMENT ON COLUMN webhook_endpoints.master_key_id IS
    'Id of the master key that sealed the current secret, to find rows to re-seal.';
COMMENT ON COLUMN webhook_endpoints.created_at IS
    'When the endpoint was registered.';
COMMENT ON COLUMN webhook_endpoints.updated_at IS
    'When the endpoint or its secret last changed.';
COMMENT ON COLUMN webhook_endpoints.deleted_at IS
    'When the endpoint was deleted; deleted endpoints get no deliveries and are not listed, '
    'but stay for the deliveries and audit records that name them.';

ALTER TABLE organizations
    ADD COLUMN allow_private_webhook_targets boolean NOT NULL DEFAULT false;

COMMENT ON COLUMN organizations.allow_private_webhook_targets IS
    'Whether webhook URLs may be http and target loopback, private or link-local addresses '
    '(local development and tests only); set by the operator at creation.';
