-- A claim of a dead key (a redelivered or replayed event that already
-- went to the dead-letter topic) reads the id of its dead letter. The only
-- index was (trigger, created_at), so each such claim scanned every dead
-- letter of its trigger: a replay over many dead events cost n * n. Dead
-- letters are rare on the event path, so the index costs little there.
CREATE INDEX dead_letters_key ON weft.dead_letters (trigger, generation, key);
