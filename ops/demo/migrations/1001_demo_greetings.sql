-- The quick-start demo: greetings published to demo.greetings run the
-- uppercase function; results land on demo.greetings.results.
INSERT INTO weft.functions (name, runtime, entry, timeout_ms, pool_size)
VALUES ('uppercase', 'shared_object', 'uppercase.so', 5000, 2);

INSERT INTO weft.triggers (name, topic, event_type, function, result_topic,
                           result_type, dead_letter_topic, max_attempts)
VALUES ('greet', 'demo.greetings', 'demo.greeting', 'uppercase',
        'demo.greetings.results', 'demo.greeting.uppercased',
        'demo.greetings.dlq', 3);
