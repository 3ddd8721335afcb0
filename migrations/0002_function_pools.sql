-- Worker pools per function: php-fpm's process-manager knobs, the
-- crash-storm brake, and the worker's hygiene (environment allow-list,
-- run-as user/group). Every column has a default that keeps the behaviour
-- of 0001 (a static pool of pool_size workers), so existing rows need no
-- change. Forward-only: later changes are new files.

-- An environment allow-list: NAME copies the dispatcher's value (never for
-- WEFT_* or PG* names: weft's and libpq's own settings and credentials),
-- NAME=VALUE sets one. Anything else is refused by the CHECK below.
CREATE FUNCTION weft.env_entries_valid(entries text[]) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT cardinality(entries) <= 256
       AND NOT EXISTS (SELECT 1 FROM unnest(entries) AS e
                       WHERE e IS NULL
                          OR length(e) > 4096
                          OR e !~ '^[A-Za-z_][A-Za-z0-9_]{0,127}(=.*)?$')
$$;

ALTER TABLE weft.functions
    -- 'static': pool_size workers, always. 'dynamic': pool_size at start,
    -- then between min_spare and max_spare idle workers, spawned in rounds
    -- of 1, 2, 4 ... per second (up to max_spawn_rate) while short.
    -- 'ondemand': no worker until an event arrives; a worker idle for
    -- idle_timeout_ms exits (scale to zero).
    ADD COLUMN pool_mode text NOT NULL DEFAULT 'static'
        CHECK (pool_mode IN ('static', 'dynamic', 'ondemand')),
    -- The most workers, hence the most invocations running at once, in
    -- every mode; further events wait. NULL: pool_size.
    ADD COLUMN max_concurrency integer
        CHECK (max_concurrency IS NULL OR max_concurrency BETWEEN 1 AND 1024),
    ADD COLUMN min_spare integer NOT NULL DEFAULT 1
        CHECK (min_spare BETWEEN 0 AND 1024),
    ADD COLUMN max_spare integer NOT NULL DEFAULT 3
        CHECK (max_spare BETWEEN 1 AND 1024),
    ADD COLUMN max_spawn_rate integer NOT NULL DEFAULT 32
        CHECK (max_spawn_rate BETWEEN 1 AND 1024),
    ADD COLUMN idle_timeout_ms integer NOT NULL DEFAULT 10000
        CHECK (idle_timeout_ms BETWEEN 100 AND 86400000),
    -- A worker is replaced after this many invocations (leaky functions).
    -- 0: never.
    ADD COLUMN max_requests integer NOT NULL DEFAULT 0
        CHECK (max_requests BETWEEN 0 AND 1000000000),
    -- crash_storm_count abnormal ends (crash, timeout, bad frame, death
    -- before ready, exec program dying) within crash_storm_window_ms
    -- quarantine the pool for quarantine_ms. 0: no brake.
    ADD COLUMN crash_storm_count integer NOT NULL DEFAULT 10
        CHECK (crash_storm_count BETWEEN 0 AND 100000),
    ADD COLUMN crash_storm_window_ms integer NOT NULL DEFAULT 10000
        CHECK (crash_storm_window_ms BETWEEN 100 AND 3600000),
    ADD COLUMN quarantine_ms integer NOT NULL DEFAULT 30000
        CHECK (quarantine_ms BETWEEN 100 AND 86400000),
    -- Added to a worker's PATH=/usr/bin:/bin and LANG=C.UTF-8; nothing else
    -- of the dispatcher's environment reaches a function.
    ADD COLUMN env text[] NOT NULL DEFAULT '{}'
        CHECK (weft.env_entries_valid(env)),
    -- Run the workers as this user (name or uid) and group (name or gid;
    -- NULL: the user's primary group). NULL: the dispatcher's user. Needs
    -- a dispatcher allowed to change ids (root or CAP_SETUID/CAP_SETGID).
    ADD COLUMN run_as_user text
        CHECK (run_as_user IS NULL OR run_as_user ~ '^([a-z_][a-z0-9_.-]{0,31}|[0-9]{1,10})$'),
    ADD COLUMN run_as_group text
        CHECK (run_as_group IS NULL OR run_as_group ~ '^([a-z_][a-z0-9_.-]{0,31}|[0-9]{1,10})$'),
    ADD CONSTRAINT functions_spare_bounds CHECK (max_spare >= min_spare);
