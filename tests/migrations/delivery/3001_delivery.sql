-- Triggers used by the delivery-contract tests (test_delivery.c).
INSERT INTO weft.functions (name, runtime, entry, timeout_ms, pool_size)
VALUES ('d-faulty', 'shared_object', 'faulty.so', 2000, 4),
       ('d-fixable', 'shared_object', 'faulty.so', 2000, 1),
       ('d-upper', 'shared_object', 'uppercase.so', 2000, 2),
       ('d-swap', 'shared_object', 'faulty.so', 2000, 1);

-- A poison message among good ones on a single partition. Its retries
-- wait 1 s each (no jitter): the others must finish meanwhile.
INSERT INTO weft.triggers (name, topic, function, result_topic, dead_letter_topic,
                           max_attempts, backoff_initial_ms, backoff_max_ms, backoff_jitter)
VALUES ('d-poison', 'd.poison', 'd-faulty', 'd.poison.out', 'd.poison.dlq', 3, 1000, 1000, 0);

-- Long backoff: the dispatcher is restarted while a retry waits.
INSERT INTO weft.triggers (name, topic, function, result_topic, dead_letter_topic,
                           max_attempts, backoff_initial_ms, backoff_max_ms, backoff_jitter)
VALUES ('d-backoff', 'd.backoff', 'd-faulty', 'd.backoff.out', 'd.backoff.dlq', 3, 4000, 4000, 0);

-- Fails until its function is fixed, then is re-driven.
INSERT INTO weft.triggers (name, topic, function, result_topic, dead_letter_topic, max_attempts)
VALUES ('d-fix', 'd.fix', 'd-fixable', 'd.fix.out', 'd.fix.dlq', 1);

-- Two triggers on one topic: fan-out, each with its own results.
INSERT INTO weft.triggers (name, topic, function, result_topic, dead_letter_topic)
VALUES ('d-fan-a', 'd.fan', 'd-upper', 'd.fan.a', 'd.fan.dlq'),
       ('d-fan-b', 'd.fan', 'd-faulty', 'd.fan.b', 'd.fan.dlq');
-- ... and a third that a filter keeps away from most events.
INSERT INTO weft.triggers (name, topic, function, result_topic, dead_letter_topic)
VALUES ('d-fan-filtered', 'd.fan', 'd-faulty', 'd.fan.c', 'd.fan.dlq');
INSERT INTO weft.trigger_filters (trigger, attribute, op, value)
VALUES ('d-fan-filtered', 'subject', 'prefix', 'orders/'),
       ('d-fan-filtered', 'region', 'exact', 'eu');

-- Ordered per key, with a pool large enough to reorder if it could.
INSERT INTO weft.triggers (name, topic, function, result_topic, dead_letter_topic, ordering)
VALUES ('d-ordered', 'd.ordered', 'd-faulty', 'd.ordered.out', 'd.ordered.dlq', 'ordered');

-- Its function is replaced while a retry waits out its backoff.
INSERT INTO weft.triggers (name, topic, function, result_topic, dead_letter_topic,
                           max_attempts, backoff_initial_ms, backoff_max_ms, backoff_jitter)
VALUES ('d-swap', 'd.swap', 'd-swap', 'd.swap.out', 'd.swap.dlq', 3, 2500, 2500, 0);
