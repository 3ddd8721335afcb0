-- Triggers of the three-node failover tests (test_kafka_failover).
INSERT INTO weft.functions (name, runtime, entry, timeout_ms, pool_size)
VALUES ('slow', 'shared_object', 'faulty.so', 2000, 2);

INSERT INTO weft.triggers (name, topic, function, result_topic, dead_letter_topic, max_attempts)
VALUES ('fo-in', 'fo1.in', 'slow', 'fo1.out', 'fo1.dlq', 3),
       ('fo-out', 'fo2.in', 'slow', 'fo2.out', 'fo2.dlq', 3);
