-- Triggers of test_kafka_faults' crash tests. kr: the pool
-- of 2 workers of 'slow' (7001), fed a backlog while its dispatcher is
-- killed and restarted.
INSERT INTO weft.triggers (name, topic, function, result_topic, dead_letter_topic, max_attempts)
VALUES ('kr', 'kr.in', 'slow', 'kr.out', 'kr.dlq', 3);

-- The poison event of test_poison_that_kills_its_dispatcher_is_bounded:
-- its dispatcher is killed each time it holds the key, so no attempt is
-- ever recorded; max_attempts is high so that only the takeover bound
-- can end it.
INSERT INTO weft.triggers (name, topic, function, result_topic, dead_letter_topic, max_attempts)
VALUES ('kp', 'kp.in', 'slow', 'kp.out', 'kp.dlq', 10);
