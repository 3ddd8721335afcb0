-- The trigger of test_kafka_faults' crash-during-backlog test: the pool
-- of 2 workers of 'slow' (7001), fed a backlog while its dispatcher is
-- killed and restarted.
INSERT INTO weft.triggers (name, topic, function, result_topic, dead_letter_topic, max_attempts)
VALUES ('kr', 'kr.in', 'slow', 'kr.out', 'kr.dlq', 3);
