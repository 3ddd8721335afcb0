-- Triggers of the Kafka failure tests (test_kafka_faults): each test has
-- its own topics, so each checks only its own inputs and outcomes.
-- faulty.so with {"fail":"sleep-N"} sleeps N ms and returns its input.
INSERT INTO weft.functions (name, runtime, entry, timeout_ms, pool_size)
VALUES ('slow', 'shared_object', 'faulty.so', 2000, 2);

INSERT INTO weft.triggers (name, topic, function, result_topic, dead_letter_topic, max_attempts)
VALUES ('rb', 'rb.in', 'slow', 'rb.out', 'rb.dlq', 3),
       ('br', 'br.in', 'slow', 'br.out', 'br.dlq', 3),
       -- mt.out is never created by the test before it checks that
       -- nothing passes the missing topic.
       ('mt', 'mt.in', 'slow', 'mt.out', 'mt.dlq', 3);
