-- Triggers used by the oversized-outcome tests (tests/test_oversize.c).
-- Kafka topics are created by the test (some with their own
-- max.message.bytes); JetStream streams too: OSIN (o.js.in), OSOUT
-- (o.js.out), OSDLQ (o.js.dlq).
INSERT INTO weft.functions (name, runtime, entry, timeout_ms, pool_size, max_result_bytes)
VALUES ('o-size', 'shared_object', 'faulty.so', 5000, 2, 4000000),
       ('o-upper', 'shared_object', 'uppercase.so', 5000, 2, 4000000);

-- Its result topic takes 100,000 bytes (the topic's max.message.bytes).
INSERT INTO weft.triggers (name, topic, function, result_topic, dead_letter_topic,
                           max_attempts, backoff_initial_ms, backoff_max_ms)
VALUES ('o-topic', 'o.rt', 'o-size', 'o.rt.out', 'o.rt.dlq', 2, 100, 200);

-- Everything at the defaults: the producer's message.max.bytes
-- (1,000,000) is the smallest limit; ~1 MB events, as a new user sends.
INSERT INTO weft.triggers (name, topic, function, result_topic, dead_letter_topic,
                           max_attempts, backoff_initial_ms, backoff_max_ms)
VALUES ('o-default', 'o.rd', 'o-upper', 'o.rd.out', 'o.rd.dlq', 2, 100, 200);

-- Its input topic takes 3 MB; its dead-letter topic the defaults.
INSERT INTO weft.triggers (name, topic, function, result_topic, dead_letter_topic)
VALUES ('o-big', 'o.big', 'o-upper', 'o.big.out', 'o.big.dlq');

-- JetStream: results over the server's max_payload (1 MiB).
INSERT INTO weft.triggers (name, source, topic, stream, durable, ack_wait_ms, function,
                           result_topic, dead_letter_topic, max_attempts,
                           backoff_initial_ms, backoff_max_ms, backoff_jitter)
VALUES ('o-js', 'jetstream', 'o.js.in', 'OSIN', 'o-js-durable', 5000, 'o-size',
        'o.js.out', 'o.js.dlq', 2, 100, 200, 0);

-- Core NATS: results over max_payload. One attempt: the result's failure
-- is dead-lettered at once.
INSERT INTO weft.triggers (name, source, topic, function, result_topic, dead_letter_topic,
                           max_attempts)
VALUES ('o-core', 'nats', 'o.core.in', 'o-size', 'o.core.out', 'o.core.dlq', 1);

-- JetStream: results over their stream's own max_msg_size (OSMAX, 50,000
-- bytes), which weft does not learn: refused at the PubAck.
INSERT INTO weft.triggers (name, source, topic, stream, durable, ack_wait_ms, function,
                           result_topic, dead_letter_topic, max_attempts)
VALUES ('o-jsmax', 'jetstream', 'o.jsm.in', 'OSIN', 'o-jsmax-durable', 5000, 'o-size',
        'o.jsm.out', 'o.js.dlq', 2);
