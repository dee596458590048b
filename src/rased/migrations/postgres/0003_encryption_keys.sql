-- Key pairs of organizations for encrypted event batches: the Web SDK encrypts a batch as a
-- compact JWE to the public key; ingestion decrypts it with the private key, which is kept
-- sealed (AES-256-GCM) under the service's master key and never leaves the database in clear.
CREATE TABLE encryption_keys (
    key_id uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    algorithm text NOT NULL CHECK (algorithm IN ('ECDH-ES+A256KW')),
    encryption text NOT NULL CHECK (encryption IN ('A256GCM')),
    public_jwk text NOT NULL,
    private_jwk_sealed bytea NOT NULL,
    master_key_id text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz
);

-- The current key of an organization (newest first) and deletion with it.
CREATE INDEX encryption_keys_organization_id ON encryption_keys (organization_id, created_at);

COMMENT ON TABLE encryption_keys IS
    'Organizations'' key pairs for JWE-encrypted event batches; private halves sealed at rest.';
COMMENT ON COLUMN encryption_keys.key_id IS
    'Key id, sent by the SDK as the JWE "kid" header and used to find the private key.';
COMMENT ON COLUMN encryption_keys.organization_id IS
    'Organization the key pair belongs to; a kid of another organization is never used.';
COMMENT ON COLUMN encryption_keys.algorithm IS
    'JWE key-management algorithm the key pair is for ("alg" header).';
COMMENT ON COLUMN encryption_keys.encryption IS
    'JWE content-encryption algorithm batches must use ("enc" header).';
COMMENT ON COLUMN encryption_keys.public_jwk IS
    'Public key as a JSON Web Key (RFC 7517) with kid, alg and use, as handed to the SDK.';
COMMENT ON COLUMN encryption_keys.private_jwk_sealed IS
    'Private JWK sealed with AES-256-GCM under a master key (rased.common.crypto format), '
    'bound to organization and key id.';
COMMENT ON COLUMN encryption_keys.master_key_id IS
    'Id of the master key that sealed the private key, to find rows to re-seal after rotation.';
COMMENT ON COLUMN encryption_keys.created_at IS
    'When the key pair was generated; the newest unexpired one is the current key.';
COMMENT ON COLUMN encryption_keys.expires_at IS
    'When the private key stops decrypting (end of a rotation''s overlap window); NULL: never.';
