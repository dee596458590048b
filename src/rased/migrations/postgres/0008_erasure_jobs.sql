-- Subject erasure (GDPR): one job per request to erase a session, or every session of a user
-- id, from every store (Cassandra events, PostgreSQL results and deliveries, Redis buffers and
-- profiles). The admin service creates a job (pending) and answers at once; a runner in any
-- admin process claims due jobs (FOR UPDATE SKIP LOCKED) under a lease, so a job whose
-- process died is claimed again when its lease runs out, and a failed job is retried.
CREATE TABLE erasure_jobs (
    job_id uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    subject_kind text NOT NULL CHECK (subject_kind IN ('session', 'user')),
    subject_id text NOT NULL CHECK (length(subject_id) BETWEEN 1 AND 128),
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'succeeded', 'failed')),
    sessions text[] NOT NULL DEFAULT '{}',
    erased_counts jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(erased_counts) = 'object'),
    error text NOT NULL DEFAULT '',
    attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz DEFAULT now(),
    claim_token uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    -- A finished job is never claimed again; every other one has a time it is due.
    CHECK ((status = 'succeeded') = (next_attempt_at IS NULL)),
    CHECK ((status = 'succeeded') = (finished_at IS NOT NULL))
);

CREATE INDEX erasure_jobs_due
    ON erasure_jobs (next_attempt_at) WHERE status <> 'succeeded';

COMMENT ON TABLE erasure_jobs IS
    'Requests to erase a subject (a session, or every session of a user id) from every store.';
COMMENT ON INDEX erasure_jobs_due IS
    'The runner''s claim: unfinished jobs, earliest due first.';
COMMENT ON COLUMN erasure_jobs.job_id IS
    'Id of the job, returned by EraseSubject and read by GetErasureJob.';
COMMENT ON COLUMN erasure_jobs.organization_id IS
    'Organization whose data is erased; every read filters on it (another org sees NOT_FOUND).';
COMMENT ON COLUMN erasure_jobs.subject_kind IS
    'session: one session id; user: every session whose result carries this user id, or whose '
    'Redis buffer names it, and the user''s profile.';
COMMENT ON COLUMN erasure_jobs.subject_id IS
    'The session id or user id to erase (pseudonymous ids chosen by the client).';
COMMENT ON COLUMN erasure_jobs.status IS
    'pending: not started; running: claimed by a runner until next_attempt_at (its lease); '
    'succeeded: everything erased; failed: the last attempt failed and is retried at '
    'next_attempt_at.';
COMMENT ON COLUMN erasure_jobs.sessions IS
    'Sessions found for the subject, kept before anything is deleted: a retry still erases them '
    'after the rows that linked them to the user (results) are gone.';
COMMENT ON COLUMN erasure_jobs.erased_counts IS
    'Items erased per store over every attempt, e.g. {"cassandra_events": 1200, '
    '"postgres_results": 3}: a JSON object of non-negative integers.';
COMMENT ON COLUMN erasure_jobs.error IS
    'Why the last attempt failed (no personal data); empty when it did not.';
COMMENT ON COLUMN erasure_jobs.attempts IS
    'Attempts started (claims); the retry delay grows with it.';
COMMENT ON COLUMN erasure_jobs.next_attempt_at IS
    'When the job is next due: now for a new job, the end of the lease while running, the '
    'retry time after a failure; NULL once succeeded.';
COMMENT ON COLUMN erasure_jobs.claim_token IS
    'Token of the current claim; only that claim may record the outcome.';
COMMENT ON COLUMN erasure_jobs.created_at IS
    'When the erasure was requested.';
COMMENT ON COLUMN erasure_jobs.updated_at IS
    'When the job last changed.';
COMMENT ON COLUMN erasure_jobs.finished_at IS
    'When the job succeeded; NULL until then.';

-- Erasure finds a subject's results by session and a user's sessions by user id; without
-- these, both would scan every result of the organization.
CREATE INDEX results_organization_session ON results (organization_id, session_id);
CREATE INDEX results_organization_user ON results (organization_id, user_id) WHERE user_id <> '';

COMMENT ON INDEX results_organization_session IS
    'Subject erasure: an organization''s results of one session.';
COMMENT ON INDEX results_organization_user IS
    'Subject erasure: the sessions of one user id (results that carry one).';
