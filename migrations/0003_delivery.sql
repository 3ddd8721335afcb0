-- The delivery contract: retry knobs, event age, ordering, per-trigger
-- bounds, attribute filters and re-drive bookkeeping.

ALTER TABLE weft.triggers
    ADD COLUMN backoff_multiplier real NOT NULL DEFAULT 2.0
        CHECK (backoff_multiplier BETWEEN 1.0 AND 10.0),
    -- 0: no jitter; 1: the delay is uniformly random in [0, backoff].
    ADD COLUMN backoff_jitter real NOT NULL DEFAULT 0.5
        CHECK (backoff_jitter BETWEEN 0.0 AND 1.0),
    -- Events older than this (by their broker timestamp) are dead-lettered
    -- with reason 'expired' instead of being run or retried. NULL: no limit.
    ADD COLUMN max_event_age_ms bigint
        CHECK (max_event_age_ms IS NULL OR max_event_age_ms > 0),
    -- 'ordered': events with the same message key run one after another, in
    -- partition order; a failing event holds back its key (not the
    -- partition) until it succeeds or is dead-lettered.
    ADD COLUMN ordering text NOT NULL DEFAULT 'unordered'
        CHECK (ordering IN ('unordered', 'ordered')),
    -- In-flight events of this trigger; at the bound its topic is paused.
    ADD COLUMN max_inflight integer NOT NULL DEFAULT 1000
        CHECK (max_inflight BETWEEN 1 AND 1000000);

CREATE TYPE weft.filter_op AS ENUM ('exact', 'prefix', 'suffix');

-- Filters on CloudEvents attributes (type, subject, source, id, or any
-- extension), combined with AND. A trigger's event_type column is the
-- same as an ('type', 'exact', ...) filter.
CREATE TABLE weft.trigger_filters (
    trigger   text NOT NULL REFERENCES weft.triggers (name)
              ON DELETE CASCADE ON UPDATE CASCADE,
    attribute text NOT NULL CHECK (attribute ~ '^[a-z0-9]{1,64}$'),
    op        weft.filter_op NOT NULL DEFAULT 'exact',
    value     text NOT NULL CHECK (length(value) <= 4096),
    PRIMARY KEY (trigger, attribute, op, value)
);

CREATE TRIGGER trigger_filters_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON weft.trigger_filters FOR EACH STATEMENT EXECUTE FUNCTION weft.notify_catalog();

ALTER TABLE weft.dead_letters
    ADD COLUMN redrive_new_key boolean,
    ADD COLUMN redrive_topic text;
