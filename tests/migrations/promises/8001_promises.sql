-- Triggers of the promises no other test checked (test_promises.c).
INSERT INTO weft.functions (name, runtime, entry, timeout_ms, pool_size)
VALUES ('p-faulty', 'shared_object', 'faulty.so', 5000, 2),
       ('p-exec', 'exec', 'faulty.py', 5000, 1),
       ('p-drainfn', 'shared_object', 'faulty.so', 5000, 2),
       ('p-pairfn', 'shared_object', 'faulty.so', 5000, 2);

-- Events older than a minute (broker timestamp) are dead-lettered, expired.
INSERT INTO weft.triggers (name, topic, function, result_topic, dead_letter_topic,
                           max_event_age_ms)
VALUES ('p-age', 'p.age', 'p-faulty', 'p.age.out', 'p.age.dlq', 60000);

-- WEFT_DROP: acknowledged, recorded as dropped, no result.
INSERT INTO weft.triggers (name, topic, function, result_topic, dead_letter_topic)
VALUES ('p-drop', 'p.drop', 'p-faulty', 'p.drop.out', 'p.drop.dlq');

-- The function asks for its retry 1500 ms later (faulty.py "retry"); the
-- trigger's own backoff is 10 ms.
INSERT INTO weft.triggers (name, topic, function, result_topic, dead_letter_topic,
                           max_attempts, backoff_initial_ms, backoff_max_ms, backoff_jitter)
VALUES ('p-after', 'p.after', 'p-exec', 'p.after.out', 'p.after.dlq', 2, 10, 10, 0);

-- A clean stop in the middle of a backlog: a small in-flight bound keeps
-- part of it unconsumed when SIGTERM comes.
INSERT INTO weft.triggers (name, topic, function, result_topic, dead_letter_topic, max_inflight)
VALUES ('p-drain', 'p.drain', 'p-drainfn', 'p.drain.out', 'p.drain.dlq', 8);

-- Two dispatchers in one group.
INSERT INTO weft.triggers (name, topic, function, result_topic, dead_letter_topic)
VALUES ('p-pair', 'p.pair', 'p-pairfn', 'p.pair.out', 'p.pair.dlq');
