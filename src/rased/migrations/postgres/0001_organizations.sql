-- Organizations: the tenants of Rased (banks and fintechs). Every other table names its
-- organization, so one tenant's rows can always be told apart from another's.
CREATE TABLE organizations (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    retention_days integer NOT NULL DEFAULT 90 CHECK (retention_days > 0),
    created_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE organizations IS
    'Tenants of Rased (banks, fintechs); every stored event, score and key belongs to one.';
COMMENT ON COLUMN organizations.id IS
    'Organization id, chosen by the admin API; carried in tokens, keys and Kafka messages.';
COMMENT ON COLUMN organizations.name IS
    'Display name of the organization, for operators; not unique and not used for lookups.';
COMMENT ON COLUMN organizations.retention_days IS
    'How many days behavioral events of this organization are kept (Cassandra TTL) before expiry.';
COMMENT ON COLUMN organizations.created_at IS
    'When the organization was created.';
