-- Triggers used by the Kafka end-to-end tests.
INSERT INTO weft.functions (name, runtime, entry, timeout_ms, pool_size)
VALUES ('upper', 'shared_object', 'uppercase.so', 2000, 2),
       ('faulty', 'shared_object', 'faulty.so', 1000, 2);

INSERT INTO weft.triggers (name, topic, event_type, function, result_topic,
                           dead_letter_topic, max_attempts)
VALUES ('e2e-upper', 'e2e.in', 'e2e.item', 'upper', 'e2e.out', 'e2e.dlq', 3);

INSERT INTO weft.triggers (name, topic, function, result_topic, dead_letter_topic,
                           max_attempts, backoff_initial_ms, backoff_max_ms)
VALUES ('e2e-faulty', 'f.in', 'faulty', 'f.out', 'f.dlq', 3, 50, 200);
