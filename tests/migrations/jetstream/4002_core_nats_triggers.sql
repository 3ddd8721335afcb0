-- Core NATS triggers of tests/test_jetstream.c: retries that wait in the
-- dispatcher (issue 25, bug 2), a saga whose steps travel on core NATS,
-- and structured protobuf CloudEvents. Core subjects need no stream.

-- Retries: fixed delays (no jitter) of 200 ms then 400 ms.
INSERT INTO weft.triggers (name, source, topic, function, result_topic, dead_letter_topic,
                           max_attempts, backoff_initial_ms, backoff_max_ms, backoff_jitter)
VALUES ('core-faulty', 'nats', 'core.f.in', 'faulty', 'core.f.out', 'core.f.dlq', 3,
        200, 1000, 0);

-- A saga on core NATS: its one step retries (faulty.so, "retry-until-N").
INSERT INTO weft.sagas (name, broker, step_topic, event_topic, dead_letter_topic)
VALUES ('core-order', 'nats', 'core.saga.steps', 'core.saga.events', 'core.saga.dlq');
INSERT INTO weft.saga_steps (saga, position, name, function, max_attempts, backoff_initial_ms,
                             backoff_max_ms)
VALUES ('core-order', 1, 'flaky', 'faulty', 3, 100, 1000);
INSERT INTO weft.triggers (name, source, topic, saga, dead_letter_topic)
VALUES ('core-place-order', 'nats', 'core.saga.orders', 'core-order', 'core.saga.dlq');

-- What a function sees of an event (describe.so answers with its
-- attributes as text): structured protobuf CloudEvents, on core NATS and
-- on JetStream.
INSERT INTO weft.functions (name, runtime, entry, timeout_ms, pool_size)
VALUES ('describe', 'shared_object', 'describe.so', 2000, 1);
INSERT INTO weft.triggers (name, source, topic, function, result_topic, dead_letter_topic)
VALUES ('core-describe', 'nats', 'core.d.in', 'describe', 'core.d.out', 'core.d.dlq');
INSERT INTO weft.triggers (name, source, topic, stream, ack_wait_ms, function, result_topic,
                           dead_letter_topic)
VALUES ('js-describe', 'jetstream', 'js.d.in', 'JSIN', 3000, 'describe', 'js.d.out', 'js.dlq');

-- Results over the NATS server's max_payload (1 MiB): a Kafka event whose
-- subject holds 400,000 spaces is 400 kB on Kafka and 1.2 MB once
-- percent-encoded in the result's ce-subject header. Its dead letters go
-- to Kafka, which takes the original.
INSERT INTO weft.triggers (name, source, topic, function, result_topic, result_broker,
                           dead_letter_topic, dead_letter_broker, max_attempts)
VALUES ('k2n-big', 'kafka', 'js.kbig', 'upper', 'core.big.out', 'nats', 'js.kdlq', 'kafka', 3),
       ('k2js-big', 'kafka', 'js.kbig', 'upper', 'js.big.out', 'jetstream', 'js.kdlq', 'kafka',
        3);
