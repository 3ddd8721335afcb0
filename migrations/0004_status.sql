-- Live state of running dispatchers, for `weft status`. Each dispatcher
-- upserts its row about once a second; a row whose heartbeat is older than a
-- few seconds belongs to a dispatcher that stopped or lost its database.
CREATE TABLE weft.dispatchers (
    owner        text PRIMARY KEY,           -- host:pid:start, as in weft.ledger.owner
    host         text NOT NULL,
    pid          integer NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    -- {"inflight_msgs":N,"waiting":N,"paused":bool,
    --  "triggers":{"NAME":{"inflight":N}},
    --  "pools":{"FUNCTION":{"mode":"static","workers":N,"max_workers":N,"starting":N,
    --           "idle":N,"busy":N,"stopping":N,"queued":N,"quarantined":bool,
    --           "invocations":N,"crashes":N,"timeouts":N}},
    --  "counters":{"consumed":N,"completed":N,"reemitted":N,"retries":N,
    --              "dead":N,"dropped":N,"unmatched":N}}
    status       jsonb NOT NULL DEFAULT '{}'
);
