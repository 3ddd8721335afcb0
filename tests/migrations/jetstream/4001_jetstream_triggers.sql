-- Triggers used by the JetStream / NATS integration tests (tests/test_jetstream.c).
-- Streams (created by the test): JSIN captures js.in js.f.in js.slow.in
-- js.j2k.in; JSOUT js.out js.f.out js.slow.out js.k.out; JSDLQ js.dlq
-- js.f.dlq js.k.dlq.
INSERT INTO weft.functions (name, runtime, entry, timeout_ms, pool_size)
VALUES ('upper', 'shared_object', 'uppercase.so', 2000, 2),
       ('faulty', 'shared_object', 'faulty.so', 1000, 2),
       ('slow', 'shared_object', 'faulty.so', 10000, 1);

-- JetStream -> JetStream. A short AckWait, so that redeliveries after a
-- kill -9 come quickly.
INSERT INTO weft.triggers (name, source, topic, stream, ack_wait_ms, event_type, function,
                           result_topic, dead_letter_topic, max_attempts)
VALUES ('js-upper', 'jetstream', 'js.in', 'JSIN', 3000, 'js.item', 'upper',
        'js.out', 'js.dlq', 3);

-- Retries: fixed delays (no jitter) of 300 ms then 600 ms.
INSERT INTO weft.triggers (name, source, topic, stream, durable, ack_wait_ms, function,
                           result_topic, dead_letter_topic, max_attempts,
                           backoff_initial_ms, backoff_max_ms, backoff_jitter)
VALUES ('js-faulty', 'jetstream', 'js.f.in', 'JSIN', 'faulty-durable', 3000, 'faulty',
        'js.f.out', 'js.f.dlq', 3, 300, 1000, 0);

-- A function that runs longer than AckWait (1 s).
INSERT INTO weft.triggers (name, source, topic, stream, ack_wait_ms, function,
                           result_topic, dead_letter_topic, max_attempts)
VALUES ('js-slow', 'jetstream', 'js.slow.in', 'JSIN', 1000, 'slow',
        'js.slow.out', 'js.dlq', 3);

-- Kafka -> JetStream (results and dead letters on JetStream).
INSERT INTO weft.triggers (name, source, topic, function, result_topic, result_broker,
                           dead_letter_topic, dead_letter_broker, max_attempts)
VALUES ('k2j', 'kafka', 'js.kin', 'upper', 'js.k.out', 'jetstream',
        'js.k.dlq', 'jetstream', 3);

-- JetStream -> Kafka.
INSERT INTO weft.triggers (name, source, topic, stream, ack_wait_ms, function,
                           result_topic, result_broker, dead_letter_topic, dead_letter_broker)
VALUES ('j2k', 'jetstream', 'js.j2k.in', 'JSIN', 3000, 'upper',
        'js.kout', 'kafka', 'js.kdlq', 'kafka');

-- Core NATS -> core NATS.
INSERT INTO weft.triggers (name, source, topic, function, result_topic, dead_letter_topic)
VALUES ('core-upper', 'nats', 'core.in', 'upper', 'core.out', 'core.dlq');

-- Replay from JetStream (weft replay --trigger js-replay --from-time ...).
INSERT INTO weft.triggers (name, source, topic, stream, ack_wait_ms, function,
                           result_topic, dead_letter_topic)
VALUES ('js-replay', 'jetstream', 'js.rp.in', 'JSIN', 3000, 'upper', 'js.rp.out', 'js.dlq');

-- A saga on JetStream: steps and transitions on subjects of the stream
-- JSSAGA (created by the test), started from a JetStream subject.
INSERT INTO weft.functions (name, entry, symbol, timeout_ms, pool_size)
VALUES ('js-reserve', 'orders.so', 'reserve_stock', 4000, 1),
       ('js-release', 'orders.so', 'release_stock', 4000, 1),
       ('js-charge', 'orders.so', 'charge_payment', 4000, 1);
INSERT INTO weft.sagas (name, broker, stream, step_topic, event_topic, dead_letter_topic)
VALUES ('js-order', 'jetstream', 'JSSAGA', 'js.saga.steps', 'js.saga.events', 'js.saga.dlq');
INSERT INTO weft.saga_steps (saga, position, name, function, compensation, max_attempts)
VALUES ('js-order', 1, 'reserve', 'js-reserve', 'js-release', 2),
       ('js-order', 2, 'charge', 'js-charge', NULL, 2);
INSERT INTO weft.triggers (name, source, topic, stream, saga, dead_letter_topic)
VALUES ('js-place-order', 'jetstream', 'js.saga.orders', 'JSSAGA', 'js-order', 'js.saga.dlq');
