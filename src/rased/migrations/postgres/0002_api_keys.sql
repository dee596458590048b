-- API keys of organizations. Publishable keys (rsd_pk_...) may only ingest events, from the
-- allowed origins when any are set; secret keys (rsd_sk_...) stay on a client's servers and
-- mint session tokens, read results and administer their own organization. Only a hash of
-- each key is stored: the key itself is shown once, when it is created.
CREATE TABLE api_keys (
    key_id uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    kind text NOT NULL CHECK (kind IN ('publishable', 'secret')),
    key_hash bytea NOT NULL UNIQUE CHECK (octet_length(key_hash) = 32),
    prefix text NOT NULL,
    allowed_origins text[] NOT NULL DEFAULT '{}',
    label text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    revoked_at timestamptz,
    -- Origins restrict browsers; a secret key must never be used from one.
    CHECK (kind = 'publishable' OR cardinality(allowed_origins) = 0)
);

-- Listing an organization's keys (admin API) and deleting them with it.
CREATE INDEX api_keys_organization_id ON api_keys (organization_id);

COMMENT ON TABLE api_keys IS
    'API keys of organizations, stored as SHA-256 hashes; the key itself is shown only once.';
COMMENT ON COLUMN api_keys.key_id IS
    'Server-assigned id of the key, shown in listings and audit logs (not a secret).';
COMMENT ON COLUMN api_keys.organization_id IS
    'Organization the key acts for; its keys are deleted with it.';
COMMENT ON COLUMN api_keys.kind IS
    'publishable: browser-safe, ingest only; secret: server-side, sessions, results and admin.';
COMMENT ON COLUMN api_keys.key_hash IS
    'SHA-256 of the full key text; keys are 256-bit random, so a fast hash cannot be reversed.';
COMMENT ON COLUMN api_keys.prefix IS
    'First characters of the key (kind marker and a few random characters), to recognise it.';
COMMENT ON COLUMN api_keys.allowed_origins IS
    'Publishable keys only: the browser origins (scheme://host[:port]) allowed; empty allows any.';
COMMENT ON COLUMN api_keys.label IS
    'Free-text label given by the organization (e.g. "checkout web").';
COMMENT ON COLUMN api_keys.created_at IS
    'When the key was created.';
COMMENT ON COLUMN api_keys.expires_at IS
    'When the key stops being accepted (set by rotation for the overlap window); NULL: never.';
COMMENT ON COLUMN api_keys.revoked_at IS
    'When the key was revoked; NULL while active. Revoked keys are kept for the audit trail.';
