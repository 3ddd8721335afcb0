-- Retention (dispatcher/store/retention.c; README "PostgreSQL", LEDGER.md
-- "Retention"): the indexes that let one dispatcher delete old terminal
-- rows a small batch at a time, oldest first, without scanning a table.
--
-- The ledger is swept by created_at, not updated_at. A record rewrites
-- updated_at on every key, and an index on it would turn each of those
-- HOT updates (0010, 0011) into a non-HOT one with a new index entry per
-- event; created_at is written once, by the claim's INSERT, so this index
-- costs one entry per claimed key and never touches a record. The sweep
-- still demands updated_at < cutoff (updated_at >= created_at, so the
-- index range holds every row old enough) and a terminal status; a row
-- still 'running' (claimed or waiting for a retry) is never deleted.
-- On a large ledger build it by hand first, without locking out the
-- dispatchers: CREATE INDEX CONCURRENTLY ledger_created ON weft.ledger
-- (created_at); this file then finds it and does nothing.
CREATE INDEX IF NOT EXISTS ledger_created ON weft.ledger (created_at);

-- Dead letters are written once (redrive sets redriven_at only); the
-- existing (trigger, created_at) index orders them per trigger, not
-- overall.
CREATE INDEX IF NOT EXISTS dead_letters_created ON weft.dead_letters (created_at);

-- Saga instances that ended for good. 'stuck' ones (a compensation that
-- failed) are kept: they wait for an operator. Deleting an instance
-- deletes its step runs and events (ON DELETE CASCADE, by their primary
-- keys, which lead with the instance).
CREATE INDEX IF NOT EXISTS saga_instances_finished ON weft.saga_instances (finished_at)
    WHERE status IN ('completed', 'aborted');

-- Replays that are done ('interrupted' and 'failed' ones can still be
-- resumed).
CREATE INDEX IF NOT EXISTS replays_ended ON weft.replays (updated_at)
    WHERE status = 'done';
