-- weft's own schema: the function and trigger catalog, the idempotency
-- ledger and the dead letters. Forward-only: later changes are new files.

CREATE SCHEMA IF NOT EXISTS weft;

CREATE TYPE weft.runtime AS ENUM ('shared_object', 'exec');
CREATE TYPE weft.broker AS ENUM ('kafka', 'jetstream', 'nats');
CREATE TYPE weft.ledger_status AS ENUM ('running', 'completed', 'dropped', 'dead');

-- A function: what runs in a worker pool.
CREATE TABLE weft.functions (
    name             text PRIMARY KEY
                     CHECK (name ~ '^[a-z][a-z0-9_.-]{0,62}$'),
    runtime          weft.runtime NOT NULL DEFAULT 'shared_object',
    -- shared_object: path of the .so; a bare file name is looked up in the
    -- dispatcher's functions.dir.
    entry            text NOT NULL CHECK (length(entry) BETWEEN 1 AND 4096),
    symbol           text NOT NULL DEFAULT 'weft_handle'
                     CHECK (symbol ~ '^[A-Za-z_][A-Za-z0-9_]{0,127}$'),
    timeout_ms       integer NOT NULL DEFAULT 30000
                     CHECK (timeout_ms BETWEEN 10 AND 3600000),
    memory_mb        integer NOT NULL DEFAULT 512
                     CHECK (memory_mb BETWEEN 0 AND 65536),
    pool_size        integer NOT NULL DEFAULT 2
                     CHECK (pool_size BETWEEN 1 AND 256),
    max_result_bytes integer NOT NULL DEFAULT 1048576
                     CHECK (max_result_bytes BETWEEN 0 AND 67108864),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- A trigger: events on a topic (optionally of one CloudEvents type) run a
-- function; its result goes to result_topic, failures to dead_letter_topic.
CREATE TABLE weft.triggers (
    name               text PRIMARY KEY
                       CHECK (name ~ '^[a-z][a-z0-9_.-]{0,62}$'),
    source             weft.broker NOT NULL DEFAULT 'kafka',
    topic              text NOT NULL
                       CHECK (topic ~ '^[A-Za-z0-9._-]{1,249}$'),
    event_type         text CHECK (event_type IS NULL OR length(event_type) BETWEEN 1 AND 1024),
    function           text NOT NULL REFERENCES weft.functions (name) ON UPDATE CASCADE,
    -- NULL: the function's result is recorded but not emitted.
    result_topic       text CHECK (result_topic ~ '^[A-Za-z0-9._-]{1,249}$'),
    -- CloudEvents type of results; NULL: the input's type + '.result'.
    result_type        text CHECK (result_type IS NULL OR length(result_type) BETWEEN 1 AND 1024),
    -- NULL: '<topic>.dlq'. Dead letters are never skipped.
    dead_letter_topic  text CHECK (dead_letter_topic ~ '^[A-Za-z0-9._-]{1,249}$'),
    max_attempts       integer NOT NULL DEFAULT 3 CHECK (max_attempts BETWEEN 1 AND 1000),
    backoff_initial_ms integer NOT NULL DEFAULT 200 CHECK (backoff_initial_ms BETWEEN 0 AND 86400000),
    backoff_max_ms     integer NOT NULL DEFAULT 30000 CHECK (backoff_max_ms BETWEEN 0 AND 86400000),
    enabled            boolean NOT NULL DEFAULT true,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CHECK (backoff_max_ms >= backoff_initial_ms),
    CHECK (result_topic IS DISTINCT FROM topic)
);
CREATE INDEX triggers_topic ON weft.triggers (source, topic);

-- The idempotency ledger: one row per (trigger, generation, key). The key
-- is the CloudEvent's source + id, or the broker coordinates of a plain
-- message. A row is claimed ('running' with a lease) before the function
-- runs and holds the outcome afterwards, so a redelivered or replayed
-- event re-emits the stored result instead of running again.
CREATE TABLE weft.ledger (
    trigger          text NOT NULL,
    generation       integer NOT NULL DEFAULT 0,
    key              text NOT NULL,
    status           weft.ledger_status NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    owner            text,
    lease_until      timestamptz,
    result           bytea,
    result_type      text,
    result_id        text,
    last_error       text,
    reason           text,
    first_failure_at timestamptz,
    last_failure_at  timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (trigger, generation, key)
);

-- Every dead letter, with the original message, so an operator can query
-- and re-drive it.
CREATE TABLE weft.dead_letters (
    id                bigserial PRIMARY KEY,
    trigger           text NOT NULL,
    generation        integer NOT NULL DEFAULT 0,
    key               text NOT NULL,
    reason            text NOT NULL,
    error             text NOT NULL DEFAULT '',
    attempts          integer NOT NULL DEFAULT 0,
    source_broker     weft.broker NOT NULL DEFAULT 'kafka',
    source_topic      text NOT NULL,
    source_partition  integer,
    source_offset     bigint,
    message_key       bytea,
    value             bytea,
    headers           jsonb NOT NULL DEFAULT '[]',
    dead_letter_topic text NOT NULL,
    first_failure_at  timestamptz,
    last_failure_at   timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    redriven_at       timestamptz
);
CREATE INDEX dead_letters_trigger ON weft.dead_letters (trigger, created_at);

-- The dispatcher LISTENs on weft_catalog and reloads the catalog when a
-- migration changes functions or triggers.
CREATE FUNCTION weft.notify_catalog() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('weft_catalog', TG_TABLE_NAME);
    RETURN NULL;
END
$$;

CREATE TRIGGER functions_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON weft.functions FOR EACH STATEMENT EXECUTE FUNCTION weft.notify_catalog();
CREATE TRIGGER triggers_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON weft.triggers FOR EACH STATEMENT EXECUTE FUNCTION weft.notify_catalog();
