-- Throughput (ops/bench; README "Performance").
--
-- A trigger's in-flight bound was 1000, the size of one ledger batch: a
-- single claim filled it, and the next claim waited until that batch had
-- run, been recorded and been emitted, so the stages never overlapped.
-- 10000 matches dispatcher.max_inflight. Existing triggers keep the value
-- they have.
ALTER TABLE weft.triggers ALTER COLUMN max_inflight SET DEFAULT 10000;

-- Pipelining (workers/pool.h): under a backlog, a worker of a fast
-- function may hold up to this many invocations, run one after the other,
-- so the dispatcher and the worker wake once per few events instead of
-- once per event. 0 is the pool's default (16); 1 turns it off. An idle
-- worker always gets work first, and a slow function is never pipelined.
ALTER TABLE weft.functions
    ADD COLUMN pipeline_depth integer NOT NULL DEFAULT 0
        CHECK (pipeline_depth BETWEEN 0 AND 64);

-- A record updates its ledger row in place. Free room on each page lets
-- PostgreSQL keep the new version on the same page (a HOT update: no new
-- index entry, less WAL); at the default fill factor of 100 the pages
-- the claims filled have no room, and every record also writes the index.
ALTER TABLE weft.ledger SET (fillfactor = 70);
