-- Triggers of the fault suite (tests/faults.c) on Kafka: one per fault,
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
VALUES ('fault-k', 'shared_object', 'faulty.so', 1000, 2, 48, 0);
INSERT INTO weft.functions (name, runtime, entry, timeout_ms, pool_size, memory_mb,
                            crash_storm_count, quarantine_ms)
VALUES ('fault-k-storm', 'shared_object', 'faulty.so', 1000, 2, 48, 5, 3000);

INSERT INTO weft.triggers (name, topic, function, result_topic, dead_letter_topic, max_attempts,
                           backoff_initial_ms, backoff_max_ms)
VALUES ('k-claim', 'k.claim.in', 'fault-k', 'k.claim.out', 'k.claim.dlq', 3, 50, 200),
       ('k-invoke', 'k.invoke.in', 'fault-k', 'k.invoke.out', 'k.invoke.dlq', 3, 50, 200),
       ('k-record', 'k.record.in', 'fault-k', 'k.record.out', 'k.record.dlq', 3, 50, 200),
       ('k-produce', 'k.produce.in', 'fault-k', 'k.produce.out', 'k.produce.dlq', 3, 50, 200),
       ('k-segv', 'k.segv.in', 'fault-k', 'k.segv.out', 'k.segv.dlq', 3, 50, 200),
       ('k-hang', 'k.hang.in', 'fault-k', 'k.hang.out', 'k.hang.dlq', 3, 50, 200),
       ('k-memory', 'k.memory.in', 'fault-k', 'k.memory.out', 'k.memory.dlq', 3, 50, 200),
       ('k-garbage', 'k.garbage.in', 'fault-k', 'k.garbage.out', 'k.garbage.dlq', 3, 50, 200),
       ('k-fatal', 'k.fatal.in', 'fault-k', 'k.fatal.out', 'k.fatal.dlq', 3, 50, 200),
       ('k-malformed', 'k.malformed.in', 'fault-k', 'k.malformed.out', 'k.malformed.dlq', 3, 50, 200),
       ('k-pg', 'k.pg.in', 'fault-k', 'k.pg.out', 'k.pg.dlq', 3, 50, 200),
       ('k-broker', 'k.broker.in', 'fault-k', 'k.broker.out', 'k.broker.dlq', 3, 50, 200),
       ('k-storm', 'k.storm.in', 'fault-k-storm', 'k.storm.out', 'k.storm.dlq', 3, 50, 200);
