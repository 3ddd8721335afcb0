-- Triggers of the fault suite (tests/faults.c) on JetStream: one per fault,
-- each with its own topics, so each case checks only its own inputs and
-- outcomes. faulty.so with {"fail":"sleep-N"} sleeps N ms and returns its
-- input; other modes are the poison (faulty.c). A hung function times out
-- after 1 s (its claim's lease: 6 s); retries wait 50..200 ms; the memory
-- limit makes blowup end as "memory". max_attempts is FAULT_MAX_ATTEMPTS.
-- The crash-storm brake is off, so each poison's own failure is what ends
-- it; the storm case has a function of its own with the brake on (5
-- abnormal ends in 10 s quarantine the pool, here for 3 s).
INSERT INTO weft.functions (name, runtime, entry, timeout_ms, pool_size, memory_mb,
                            crash_storm_count)
VALUES ('fault-j', 'shared_object', 'faulty.so', 1000, 2, 48, 0);
INSERT INTO weft.functions (name, runtime, entry, timeout_ms, pool_size, memory_mb,
                            crash_storm_count, quarantine_ms)
VALUES ('fault-j-storm', 'shared_object', 'faulty.so', 1000, 2, 48, 5, 3000);

-- Each input subject has a stream of its own (FJ-<name>), so stream
-- sequence i + 1 is input i and the ack floor says which inputs are done.
INSERT INTO weft.triggers (name, source, topic, stream, durable, ack_wait_ms, function,
                           result_topic, dead_letter_topic, max_attempts,
                           backoff_initial_ms, backoff_max_ms)
VALUES ('j-claim', 'jetstream', 'j.claim.in', 'FJ-claim', 'j-claim', 3000, 'fault-j', 'j.claim.out', 'j.claim.dlq', 3, 50, 200),
       ('j-invoke', 'jetstream', 'j.invoke.in', 'FJ-invoke', 'j-invoke', 3000, 'fault-j', 'j.invoke.out', 'j.invoke.dlq', 3, 50, 200),
       ('j-record', 'jetstream', 'j.record.in', 'FJ-record', 'j-record', 3000, 'fault-j', 'j.record.out', 'j.record.dlq', 3, 50, 200),
       ('j-produce', 'jetstream', 'j.produce.in', 'FJ-produce', 'j-produce', 3000, 'fault-j', 'j.produce.out', 'j.produce.dlq', 3, 50, 200),
       ('j-segv', 'jetstream', 'j.segv.in', 'FJ-segv', 'j-segv', 3000, 'fault-j', 'j.segv.out', 'j.segv.dlq', 3, 50, 200),
       ('j-hang', 'jetstream', 'j.hang.in', 'FJ-hang', 'j-hang', 3000, 'fault-j', 'j.hang.out', 'j.hang.dlq', 3, 50, 200),
       ('j-memory', 'jetstream', 'j.memory.in', 'FJ-memory', 'j-memory', 3000, 'fault-j', 'j.memory.out', 'j.memory.dlq', 3, 50, 200),
       ('j-garbage', 'jetstream', 'j.garbage.in', 'FJ-garbage', 'j-garbage', 3000, 'fault-j', 'j.garbage.out', 'j.garbage.dlq', 3, 50, 200),
       ('j-fatal', 'jetstream', 'j.fatal.in', 'FJ-fatal', 'j-fatal', 3000, 'fault-j', 'j.fatal.out', 'j.fatal.dlq', 3, 50, 200),
       ('j-malformed', 'jetstream', 'j.malformed.in', 'FJ-malformed', 'j-malformed', 3000, 'fault-j', 'j.malformed.out', 'j.malformed.dlq', 3, 50, 200),
       ('j-pg', 'jetstream', 'j.pg.in', 'FJ-pg', 'j-pg', 3000, 'fault-j', 'j.pg.out', 'j.pg.dlq', 3, 50, 200),
       ('j-broker', 'jetstream', 'j.broker.in', 'FJ-broker', 'j-broker', 3000, 'fault-j', 'j.broker.out', 'j.broker.dlq', 3, 50, 200),
       ('j-storm', 'jetstream', 'j.storm.in', 'FJ-storm', 'j-storm', 3000, 'fault-j-storm', 'j.storm.out', 'j.storm.dlq', 3, 50, 200);
