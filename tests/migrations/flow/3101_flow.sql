-- Triggers used by the flow tests (test_flow.c): per-trigger backpressure,
-- the byte bound, retries and ordered keys that hold back nothing else.
INSERT INTO weft.functions (name, runtime, entry, timeout_ms, pool_size)
VALUES ('f-slow', 'shared_object', 'faulty.so', 60000, 1),
       ('f-fast', 'shared_object', 'uppercase.so', 2000, 2),
       ('f-big', 'shared_object', 'faulty.so', 10000, 2),
       ('f-faulty', 'shared_object', 'faulty.so', 2000, 2),
       ('f-held', 'shared_object', 'faulty.so', 60000, 2);

-- A slow trigger with a small in-flight bound, and a fast one on another
-- topic.
INSERT INTO weft.triggers (name, topic, function, result_topic, dead_letter_topic, max_inflight)
VALUES ('f-slow', 'f.slow', 'f-slow', 'f.slow.out', 'f.dlq', 4),
       ('f-fast', 'f.fast', 'f-fast', 'f.fast.out', 'f.dlq', 10000);

-- Held at its bound across rebalances.
INSERT INTO weft.triggers (name, topic, function, result_topic, dead_letter_topic, max_inflight)
VALUES ('f-held', 'f.held', 'f-held', 'f.held.out', 'f.dlq', 2);

-- Large events through a slow function, default bounds.
INSERT INTO weft.triggers (name, topic, function, result_topic, dead_letter_topic)
VALUES ('f-big', 'f.big', 'f-big', 'f.big.out', 'f.dlq');

-- A long fixed backoff: unordered, then ordered per key.
INSERT INTO weft.triggers (name, topic, function, result_topic, dead_letter_topic,
                           max_attempts, backoff_initial_ms, backoff_max_ms, backoff_jitter)
VALUES ('f-retry', 'f.retry', 'f-faulty', 'f.retry.out', 'f.dlq', 3, 8000, 8000, 0);
INSERT INTO weft.triggers (name, topic, function, result_topic, dead_letter_topic,
                           max_attempts, backoff_initial_ms, backoff_max_ms, backoff_jitter,
                           ordering)
VALUES ('f-ordered', 'f.ordered', 'f-faulty', 'f.ordered.out', 'f.dlq', 3, 8000, 8000, 0,
        'ordered');
