-- A plain trigger beside the sagas: work that a held saga must not hold up
-- (test_saga_e2e.c, test_a_held_saga_holds_up_only_itself).
INSERT INTO weft.functions (name, runtime, entry, timeout_ms, pool_size)
VALUES ('s-upper', 'shared_object', 'uppercase.so', 2000, 1);

INSERT INTO weft.triggers (name, topic, function, result_topic, dead_letter_topic)
VALUES ('s-plain', 'plain.in', 's-upper', 'plain.out', 'orders.dlq');
