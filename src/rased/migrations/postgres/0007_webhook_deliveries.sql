-- Webhook deliveries: one row per (endpoint, result, event type), created by the notification
-- worker from `client_notification` (ON CONFLICT DO NOTHING, so a redelivered Kafka message
-- adds nothing), and every attempt made to send it. Scheduled retries live here, not in a
-- worker's memory: a restarted worker (or another one) picks them up when they fall due.
CREATE TABLE webhook_deliveries (
    delivery_id uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    endpoint_id uuid NOT NULL REFERENCES webhook_endpoints (endpoint_id) ON DELETE CASCADE,
    event_type text NOT NULL,
    transaction_id text NOT NULL,
    segment integer NOT NULL CHECK (segment >= 0),
    session_id text NOT NULL DEFAULT '',
    body text NOT NULL,
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'succeeded', 'dead_lettered', 'cancelled')),
    attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    round_attempts integer NOT NULL DEFAULT 0 CHECK (round_attempts >= 0),
    next_attempt_at timestamptz,
    claim_token uuid,
    last_status_code integer NOT NULL DEFAULT 0,
    last_error text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (endpoint_id, transaction_id, segment, event_type),
    -- Only a pending delivery has a next attempt.
    CHECK ((status = 'pending') = (next_attempt_at IS NOT NULL))
);

-- The scheduler's claim: due pending deliveries, oldest due first.
CREATE INDEX webhook_deliveries_due
    ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
-- ListWebhookDeliveries: an organization's deliveries, newest first, optionally by status.
CREATE INDEX webhook_deliveries_organization_created
    ON webhook_deliveries (organization_id, created_at DESC, delivery_id DESC);
CREATE INDEX webhook_deliveries_organization_status_created
    ON webhook_deliveries (organization_id, status, created_at DESC, delivery_id DESC);
-- Subject erasure: an organization's deliveries about a session.
CREATE INDEX webhook_deliveries_organization_session
    ON webhook_deliveries (organization_id, session_id);

COMMENT ON TABLE webhook_deliveries IS
    'One result notification to one webhook endpoint, with its retry schedule and outcome.';
COMMENT ON COLUMN webhook_deliveries.delivery_id IS
    'Id of the delivery, sent as the webhook-id header on every attempt (receivers dedupe on it).';
COMMENT ON COLUMN webhook_deliveries.organization_id IS
    'Organization owning the endpoint and the result; every admin read filters on it.';
COMMENT ON COLUMN webhook_deliveries.endpoint_id IS
    'Endpoint the notification is sent to.';
COMMENT ON COLUMN webhook_deliveries.event_type IS
    'Event type of the notification, e.g. transaction.scored.';
COMMENT ON COLUMN webhook_deliveries.transaction_id IS
    'Transaction whose result is notified.';
COMMENT ON COLUMN webhook_deliveries.segment IS
    'Segment of the transaction whose result is notified.';
COMMENT ON COLUMN webhook_deliveries.session_id IS
    'Session of the transaction, so a subject erasure finds the deliveries about it.';
COMMENT ON COLUMN webhook_deliveries.body IS
    'Exact JSON body sent on every attempt (scores included only if the endpoint asked then).';
COMMENT ON COLUMN webhook_deliveries.status IS
    'pending: an attempt is due at next_attempt_at; succeeded: a 2xx came; dead_lettered: every '
    'attempt of the schedule failed; cancelled: the endpoint was disabled, deleted or gone (410).';
COMMENT ON COLUMN webhook_deliveries.attempts IS
    'Attempts made in all (numbering webhook_delivery_attempts).';
COMMENT ON COLUMN webhook_deliveries.round_attempts IS
    'Attempts made since the delivery was created or last redelivered; indexes the schedule.';
COMMENT ON COLUMN webhook_deliveries.next_attempt_at IS
    'When the next attempt is due (pending only); a claimed delivery has it moved past the '
    'claim''s lease, so a worker that dies mid-attempt leaves it to be claimed again.';
COMMENT ON COLUMN webhook_deliveries.claim_token IS
    'Token of the worker''s current claim; only that claim may record the attempt''s outcome.';
COMMENT ON COLUMN webhook_deliveries.last_status_code IS
    'HTTP status of the last attempt; 0 when no answer came.';
COMMENT ON COLUMN webhook_deliveries.last_error IS
    'Short description of the last failure; empty after a success.';
COMMENT ON COLUMN webhook_deliveries.created_at IS
    'When the delivery was created from the notification.';
COMMENT ON COLUMN webhook_deliveries.updated_at IS
    'When the delivery last changed.';

CREATE TABLE webhook_delivery_attempts (
    delivery_id uuid NOT NULL REFERENCES webhook_deliveries (delivery_id) ON DELETE CASCADE,
    attempt integer NOT NULL CHECK (attempt > 0),
    attempted_at timestamptz NOT NULL,
    status_code integer NOT NULL DEFAULT 0,
    error text NOT NULL DEFAULT '',
    duration_ms integer NOT NULL CHECK (duration_ms >= 0),
    PRIMARY KEY (delivery_id, attempt)
);

COMMENT ON TABLE webhook_delivery_attempts IS
    'Every attempt of every webhook delivery: when, the answer (or error) and how long it took.';
COMMENT ON COLUMN webhook_delivery_attempts.delivery_id IS
    'The delivery attempted.';
COMMENT ON COLUMN webhook_delivery_attempts.attempt IS
    'Attempt number within the delivery: 1, 2, 3...';
COMMENT ON COLUMN webhook_delivery_attempts.attempted_at IS
    'When the request was started.';
COMMENT ON COLUMN webhook_delivery_attempts.status_code IS
    'HTTP status of the answer; 0 when none came (timeout, refused connection, blocked target).';
COMMENT ON COLUMN webhook_delivery_attempts.error IS
    'Why the attempt failed (e.g. "HTTP 500", "timeout", "blocked target: loopback"); empty on success.';
COMMENT ON COLUMN webhook_delivery_attempts.duration_ms IS
    'Milliseconds from starting the request to its answer or failure.';
