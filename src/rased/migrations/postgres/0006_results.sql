-- Scored results of transactions, one row per (organization, transaction, segment), and the
-- state of transactions not scored yet. The scoring worker inserts results with ON CONFLICT
-- DO NOTHING, so a redelivered Kafka message adds nothing; the results service reads them.

-- Each organization's result feed position. A writer increments its organization's row in
-- the transaction that inserts the result: the row lock makes one organization's writers
-- commit in cursor order (a reader that has seen cursor N never sees a lower one appear
-- later), and per-organization cursors reveal nothing about other tenants' volumes, which a
-- global sequence's gaps would.
CREATE TABLE result_cursors (
    organization_id uuid PRIMARY KEY REFERENCES organizations (id) ON DELETE CASCADE,
    last_cursor bigint NOT NULL CHECK (last_cursor > 0)
);

COMMENT ON TABLE result_cursors IS
    'Last cursor handed out per organization; its row lock orders the organization''s results.';
COMMENT ON COLUMN result_cursors.organization_id IS
    'Organization whose result feed this is.';
COMMENT ON COLUMN result_cursors.last_cursor IS
    'Cursor of the organization''s latest stored result (cursors start at 1, without gaps).';

CREATE TABLE results (
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    transaction_id text NOT NULL,
    segment integer NOT NULL CHECK (segment >= 0),
    cursor bigint NOT NULL CHECK (cursor > 0),
    session_id text NOT NULL,
    user_id text NOT NULL DEFAULT '',
    bot_detection double precision NOT NULL CHECK (bot_detection BETWEEN 0 AND 1),
    keystroke_dynamics double precision NOT NULL CHECK (keystroke_dynamics BETWEEN 0 AND 1),
    location_anomaly double precision NOT NULL CHECK (location_anomaly BETWEEN 0 AND 1),
    device_fingerprint double precision NOT NULL CHECK (device_fingerprint BETWEEN 0 AND 1),
    behavioral_anomaly double precision NOT NULL CHECK (behavioral_anomaly BETWEEN 0 AND 1),
    overall_confidence double precision NOT NULL CHECK (overall_confidence BETWEEN 0 AND 1),
    risk_level text NOT NULL CHECK (risk_level IN ('LOW', 'MEDIUM', 'HIGH', 'CRITICAL')),
    recommendations text[] NOT NULL DEFAULT '{}',
    reason_codes jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(reason_codes) = 'array'),
    model_version text NOT NULL,
    processing_time_ms integer NOT NULL CHECK (processing_time_ms >= 0),
    degraded boolean NOT NULL DEFAULT false,
    scored_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, transaction_id, segment),
    UNIQUE (organization_id, cursor)
);

-- The UNIQUE (organization_id, cursor) index serves WatchResults: results after a cursor.
-- ListResults: newest first within a time range (keyset pages on scored_at, cursor).
CREATE INDEX results_organization_scored_at
    ON results (organization_id, scored_at DESC, cursor DESC);
-- ListResults filtered by risk level (e.g. only HIGH and CRITICAL), newest first.
CREATE INDEX results_organization_risk_scored_at
    ON results (organization_id, risk_level, scored_at DESC, cursor DESC);

COMMENT ON TABLE results IS
    'Scored results, one row per organization, transaction and segment; never updated.';
COMMENT ON COLUMN results.organization_id IS
    'Organization that owns the transaction; every read filters on it.';
COMMENT ON COLUMN results.transaction_id IS
    'Transaction id chosen by the client (as sent in event batches).';
COMMENT ON COLUMN results.segment IS
    'Segment of the transaction: a transaction flushed several times has segments 0, 1, 2...';
COMMENT ON COLUMN results.cursor IS
    'Position in the organization''s result feed (1, 2, 3... without gaps, from '
    'result_cursors), in commit order, so WatchResults resumes after it without missing a row.';
COMMENT ON COLUMN results.session_id IS
    'Session the transaction belongs to.';
COMMENT ON COLUMN results.user_id IS
    'Pseudonymous user id supplied by the client''s backend for the session; empty if none.';
COMMENT ON COLUMN results.bot_detection IS
    'Probability in [0, 1] that the behavior comes from automation.';
COMMENT ON COLUMN results.keystroke_dynamics IS
    'Probability in [0, 1] that the typing rhythm is not the usual user''s.';
COMMENT ON COLUMN results.location_anomaly IS
    'Probability in [0, 1] that the location is anomalous for this user.';
COMMENT ON COLUMN results.device_fingerprint IS
    'Probability in [0, 1] that the device is unknown, inconsistent or spoofed.';
COMMENT ON COLUMN results.behavioral_anomaly IS
    'Probability in [0, 1] that the overall behavior is not the usual user''s (takeover).';
COMMENT ON COLUMN results.overall_confidence IS
    'Confidence in [0, 1] of the scores as a whole, from the amount and quality of evidence.';
COMMENT ON COLUMN results.risk_level IS
    'LOW, MEDIUM, HIGH or CRITICAL (rased.v1.RiskLevel without its prefix).';
COMMENT ON COLUMN results.recommendations IS
    'Actions to consider, most important first (rased.v1.Recommendation names without prefix).';
COMMENT ON COLUMN results.reason_codes IS
    'Reasons behind the scores, strongest first: a JSON array of objects with code, '
    'description, score and weight (rased.v1.ReasonCode).';
COMMENT ON COLUMN results.model_version IS
    'Version of the model that scored the transaction, e.g. "fraud-ensemble:3".';
COMMENT ON COLUMN results.processing_time_ms IS
    'Milliseconds from taking the compiled transaction to storing its result.';
COMMENT ON COLUMN results.degraded IS
    'True when scored by the in-process fallback while Triton was unavailable.';
COMMENT ON COLUMN results.scored_at IS
    'When the result was stored; ListResults filters and orders on it.';

-- Transactions that are buffered or being scored, so GetResult can say "pending" instead of
-- NOT_FOUND: ingestion marks a transaction buffered, the scoring worker marks it scoring. A
-- stored result takes precedence over this row; old rows are ignored after a maximum age.
CREATE TABLE transaction_status (
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    transaction_id text NOT NULL,
    status text NOT NULL CHECK (status IN ('buffered', 'scoring')),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, transaction_id)
);

-- Purging rows that outlived the maximum age.
CREATE INDEX transaction_status_updated_at ON transaction_status (updated_at);

COMMENT ON TABLE transaction_status IS
    'Transactions not scored yet (buffered in Redis or being scored), for GetResult''s pending '
    'answer; written by ingestion and the scoring worker.';
COMMENT ON COLUMN transaction_status.organization_id IS
    'Organization that owns the transaction.';
COMMENT ON COLUMN transaction_status.transaction_id IS
    'Transaction id chosen by the client.';
COMMENT ON COLUMN transaction_status.status IS
    'buffered: batches wait in Redis for a trigger; scoring: compiled and being scored.';
COMMENT ON COLUMN transaction_status.updated_at IS
    'When the status was last written; rows older than the reader''s maximum age are ignored.';
