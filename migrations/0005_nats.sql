-- NATS and JetStream as sources and sinks: where a trigger's results and
-- dead letters go, and the JetStream consumer of a jetstream trigger.
-- Forward-only: later changes are new files.

ALTER TABLE weft.triggers
    -- The broker of result_topic and of dead_letter_topic. NULL: the
    -- trigger's source broker. 'jetstream' publishes with Nats-Msg-Id and
    -- waits for the PubAck; 'nats' is a core NATS publish (no ack exists).
    ADD COLUMN result_broker weft.broker,
    ADD COLUMN dead_letter_broker weft.broker,
    -- source = 'jetstream': the stream that captures topic (weft never
    -- creates streams) ...
    ADD COLUMN stream text
        CHECK (stream IS NULL OR stream ~ '^[A-Za-z0-9_-]{1,255}$'),
    -- ... and the durable pull consumer weft binds to, created when it does
    -- not exist (filter subject = topic, explicit ack, AckWait =
    -- ack_wait_ms, MaxDeliver unlimited: the ledger counts attempts).
    -- NULL: 'weft_' || name with '.' replaced by '_'. Dispatchers sharing
    -- a durable share its messages.
    ADD COLUMN durable text
        CHECK (durable IS NULL OR durable ~ '^[A-Za-z0-9_-]{1,255}$'),
    ADD COLUMN ack_wait_ms integer NOT NULL DEFAULT 30000
        CHECK (ack_wait_ms BETWEEN 100 AND 86400000),
    ADD CONSTRAINT triggers_jetstream_stream
        CHECK (source <> 'jetstream' OR stream IS NOT NULL);
