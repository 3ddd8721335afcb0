-- Triggers of `weft status`'s test (test_status.c): one per column under
-- test. faulty.so takes its mode from the data ({"fail":"<mode>"}).
-- Two functions, so two pools: the slow one's long timeout keeps its
-- events in flight, and its busy workers hold up nothing else.
INSERT INTO weft.functions (name, runtime, entry, timeout_ms, pool_size)
VALUES ('st-sleepy', 'shared_object', 'faulty.so', 120000, 2),
       ('st-faulty', 'shared_object', 'faulty.so', 10000, 2);

-- In flight: events that sleep long (two run, the others wait in the pool).
INSERT INTO weft.triggers (name, topic, function, result_topic, dead_letter_topic)
VALUES ('st-slow', 'st.slow', 'st-sleepy', 'st.slow.out', 'st.dlq');
-- Retrying: each event fails once, then waits a minute for its next try.
INSERT INTO weft.triggers (name, topic, function, result_topic, dead_letter_topic, max_attempts,
                           backoff_initial_ms, backoff_max_ms, backoff_jitter)
VALUES ('st-retry', 'st.retry', 'st-faulty', 'st.retry.out', 'st.dlq', 10, 60000, 60000, 0);
-- Dead: each event fails three times (quickly), then is dead-lettered:
-- three failed attempts, one failed event.
INSERT INTO weft.triggers (name, topic, function, result_topic, dead_letter_topic, max_attempts,
                           backoff_initial_ms, backoff_max_ms, backoff_jitter)
VALUES ('st-poison', 'st.poison', 'st-faulty', 'st.poison.out', 'st.dlq', 3, 50, 50, 0);
-- Lag: completes what it gets; later published to while no dispatcher runs.
INSERT INTO weft.triggers (name, topic, function, result_topic, dead_letter_topic)
VALUES ('st-lag', 'st.lag', 'st-faulty', 'st.lag.out', 'st.dlq');
