-- The ledger's primary key leads with the key. Every claim and record
-- finds its row by the whole (trigger, generation, key), and in an index
-- ordered (trigger, generation, key) every comparison of a descent first
-- compares a trigger name that is almost always equal, then a generation
-- that is almost always equal, and reaches the column that decides only
-- after reading past a variable-length one. Ordered (key, trigger,
-- generation), the first column decides nearly every comparison.
-- Measured with ops/bench (weft-so, three interleaved runs each):
-- PostgreSQL CPU per event 24.3 / 24.6 / 25.1 us before, 21.2 / 23.2 /
-- 22.1 after.
--
-- Nothing reads the ledger by trigger alone on a hot path: `weft status`
-- counts outcomes in one pass over the table (it did before too, in
-- effect, for any trigger with many rows). Rebuilding the index locks
-- the ledger for as long as that takes; run it while the dispatchers are
-- stopped on a large ledger.
ALTER TABLE weft.ledger
    DROP CONSTRAINT ledger_pkey,
    ADD CONSTRAINT ledger_pkey PRIMARY KEY (key, trigger, generation);
