-- Replays (`weft replay`): what was asked, how far it got, per partition,
-- so an interrupted replay resumes where it stopped; the ledger generations
-- that `--reexecute` replays run under; and the index `weft status` counts
-- recent outcomes with.

-- Ledger generations for replays with --reexecute. Generation 0 is the
-- live one; every re-execution gets a new one, so its events claim fresh
-- ledger rows (the function runs again) and their results get new ids.
CREATE SEQUENCE weft.replay_generation AS integer MINVALUE 1 START 1;

CREATE TABLE weft.replays (
    id          bigserial PRIMARY KEY,
    broker      weft.broker NOT NULL DEFAULT 'kafka',
    topic       text NOT NULL,
    -- NULL: every trigger of the topic (--topic); else only this one.
    trigger     text,
    reexecute   boolean NOT NULL DEFAULT false,
    -- 0 unless reexecute.
    generation  integer NOT NULL DEFAULT 0 CHECK (generation >= 0),
    -- The range as the operator gave it (for --list), e.g.
    -- {"from_offset":"0:10","to_time":"2024-05-01T10:00:00Z"}.
    request     jsonb NOT NULL DEFAULT '{}',
    status      text NOT NULL DEFAULT 'running'
                CHECK (status IN ('running', 'interrupted', 'failed', 'done')),
    error       text,
    -- Events read, republished, and by expected outcome (per matching
    -- trigger): re-emit a stored result, run, dead-letter again, nothing
    -- (dropped before), no matching trigger.
    read        bigint NOT NULL DEFAULT 0,
    published   bigint NOT NULL DEFAULT 0,
    reemit      bigint NOT NULL DEFAULT 0,
    run         bigint NOT NULL DEFAULT 0,
    dead        bigint NOT NULL DEFAULT 0,
    dropped     bigint NOT NULL DEFAULT 0,
    skipped     bigint NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    CHECK (reexecute = (generation > 0))
);

-- One row per partition of a replay: it reads [start_offset, end_offset);
-- next_offset is the first offset not yet republished and acknowledged.
CREATE TABLE weft.replay_partitions (
    replay       bigint NOT NULL REFERENCES weft.replays (id) ON DELETE CASCADE,
    partition    integer NOT NULL CHECK (partition >= 0),
    start_offset bigint NOT NULL CHECK (start_offset >= 0),
    end_offset   bigint NOT NULL CHECK (end_offset >= start_offset),
    next_offset  bigint NOT NULL,
    PRIMARY KEY (replay, partition),
    CHECK (next_offset BETWEEN start_offset AND end_offset)
);

-- No index for `weft status`'s counts: one on status or updated_at would
-- make every ledger update of the event path a non-HOT update (new index
-- entries per event). status scans each trigger's rows by the primary
-- key's prefix instead; it is an operator's command, not the hot path.
