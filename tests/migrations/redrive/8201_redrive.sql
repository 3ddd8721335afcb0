-- Re-drive (test_redrive.c): two triggers on one topic; one fails every
-- event until its function is fixed, the other runs them.
INSERT INTO weft.functions (name, runtime, entry, timeout_ms, pool_size)
VALUES ('r-fixable', 'shared_object', 'faulty.so', 5000, 1),
       ('r-upper', 'shared_object', 'uppercase.so', 5000, 1);

INSERT INTO weft.triggers (name, topic, function, result_topic, dead_letter_topic, max_attempts)
VALUES ('r-a', 'r.shared', 'r-fixable', 'r.a.out', 'r.dlq', 1),
       ('r-b', 'r.shared', 'r-upper', 'r.b.out', 'r.dlq', 1);
