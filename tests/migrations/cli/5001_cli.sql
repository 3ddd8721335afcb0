-- Triggers used by the operator's CLI tests (test_cli.c).
INSERT INTO weft.functions (name, runtime, entry, timeout_ms, pool_size)
VALUES ('c-upper', 'shared_object', 'uppercase.so', 2000, 2);

-- Publish round trip; a second, filtered trigger on the same topic.
INSERT INTO weft.triggers (name, topic, function, result_topic, dead_letter_topic)
VALUES ('c-round', 'c.in', 'c-upper', 'c.out', 'c.dlq');
INSERT INTO weft.triggers (name, topic, event_type, function, result_topic, dead_letter_topic)
VALUES ('c-filtered', 'c.in', 'x.only', 'c-upper', 'c.out2', 'c.dlq');
INSERT INTO weft.trigger_filters (trigger, attribute, op, value)
VALUES ('c-filtered', 'subject', 'prefix', 'orders/');

-- Bulk publishing; replay honouring the ledger; --reexecute; the loss of a
-- result topic; dry-run counts (only type "keep"); an interrupted replay.
INSERT INTO weft.triggers (name, topic, function, result_topic, dead_letter_topic)
VALUES ('c-bulk', 'c.bulk', 'c-upper', 'c.bulk.out', 'c.dlq'),
       ('c-rp', 'c.rp', 'c-upper', 'c.rp.out', 'c.dlq'),
       ('c-rx', 'c.rx', 'c-upper', 'c.rx.out', 'c.dlq'),
       ('c-loss', 'c.loss', 'c-upper', 'c.loss.out', 'c.dlq'),
       ('c-int', 'c.int', 'c-upper', 'c.int.out', 'c.dlq');
INSERT INTO weft.triggers (name, topic, event_type, function, result_topic, dead_letter_topic)
VALUES ('c-dry', 'c.dry', 'keep', 'c-upper', 'c.dry.out', 'c.dlq');
-- Replay by time (--from-time/--to-time; dry runs on real Kafka).
INSERT INTO weft.triggers (name, topic, function, result_topic, dead_letter_topic)
VALUES ('c-time', 'c.time', 'c-upper', 'c.time.out', 'c.dlq');

-- Publishing to JetStream and core NATS (the stream CJS is created by the
-- test before the dispatcher starts).
INSERT INTO weft.triggers (name, source, topic, stream, function, result_topic,
                           dead_letter_topic)
VALUES ('c-js', 'jetstream', 'cjs.in', 'CJS', 'c-upper', 'cjs.out', 'cjs.dlq');
INSERT INTO weft.triggers (name, source, topic, function, result_topic, result_broker,
                           dead_letter_topic)
VALUES ('c-nats', 'nats', 'cnats.in', 'c-upper', 'cjs.nats.out', 'jetstream', 'cjs.dlq');
