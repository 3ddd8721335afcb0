-- Sagas: a named, ordered list of steps; each step is a function and may
-- name a compensation function. A trigger starts a saga instead of running
-- a function (weft.triggers.saga). Steps travel as events on the saga's
-- step topic, transitions are published on its event topic, and the state
-- of every instance lives here. Forward-only: later changes are new files.

CREATE TABLE weft.sagas (
    name              text PRIMARY KEY
                      CHECK (name ~ '^[a-z][a-z0-9_.-]{0,62}$'),
    -- The broker of both topics below; a jetstream saga names the stream
    -- that captures step_topic.
    broker            weft.broker NOT NULL DEFAULT 'kafka',
    stream            text CHECK (stream IS NULL OR stream ~ '^[A-Za-z0-9_-]{1,255}$'),
    -- Each step's input is published here as a CloudEvent of type
    -- weft.saga.step and consumed by weft, so every step is observable and
    -- replayable.
    step_topic        text NOT NULL CHECK (step_topic ~ '^[A-Za-z0-9._-]{1,249}$'),
    -- Every transition (weft.saga.started, ...; see the README).
    event_topic       text NOT NULL CHECK (event_topic ~ '^[A-Za-z0-9._-]{1,249}$'),
    -- Step events that failed for good and stuck compensations.
    dead_letter_topic text NOT NULL CHECK (dead_letter_topic ~ '^[A-Za-z0-9._-]{1,249}$'),
    -- An instance that makes no progress (no step finishes) for this long
    -- is failed and compensated.
    deadline_ms       bigint NOT NULL DEFAULT 600000
                      CHECK (deadline_ms BETWEEN 100 AND 2592000000),
    enabled           boolean NOT NULL DEFAULT true,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CHECK (step_topic <> event_topic),
    CHECK (broker <> 'jetstream' OR stream IS NOT NULL)
);

CREATE TABLE weft.saga_steps (
    saga               text NOT NULL REFERENCES weft.sagas (name)
                       ON DELETE CASCADE ON UPDATE CASCADE,
    position           integer NOT NULL CHECK (position BETWEEN 1 AND 64),
    name               text NOT NULL CHECK (name ~ '^[a-z][a-z0-9_.-]{0,62}$'),
    function           text NOT NULL REFERENCES weft.functions (name) ON UPDATE CASCADE,
    -- Runs when a later step fails for good; receives this step's input
    -- and output. NULL: nothing to undo.
    compensation       text REFERENCES weft.functions (name) ON UPDATE CASCADE,
    -- Per step (and its compensation): attempts and backoff, as on a
    -- trigger; the timeout is the function's timeout_ms.
    max_attempts       integer NOT NULL DEFAULT 3 CHECK (max_attempts BETWEEN 1 AND 1000),
    backoff_initial_ms integer NOT NULL DEFAULT 200
                       CHECK (backoff_initial_ms BETWEEN 0 AND 86400000),
    backoff_max_ms     integer NOT NULL DEFAULT 30000
                       CHECK (backoff_max_ms BETWEEN 0 AND 86400000),
    PRIMARY KEY (saga, position),
    UNIQUE (saga, name),
    CHECK (backoff_max_ms >= backoff_initial_ms)
);

-- A trigger runs either a function or a saga.
ALTER TABLE weft.triggers
    ALTER COLUMN function DROP NOT NULL,
    ADD COLUMN saga text REFERENCES weft.sagas (name) ON UPDATE CASCADE,
    ADD CONSTRAINT triggers_function_or_saga CHECK ((function IS NULL) <> (saga IS NULL));

CREATE TRIGGER sagas_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON weft.sagas FOR EACH STATEMENT EXECUTE FUNCTION weft.notify_catalog();
CREATE TRIGGER saga_steps_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON weft.saga_steps FOR EACH STATEMENT EXECUTE FUNCTION weft.notify_catalog();

CREATE TYPE weft.saga_status AS ENUM ('running', 'compensating', 'completed', 'aborted', 'stuck');

-- One row per saga instance. The id is derived from the starting trigger,
-- generation and the start event's idempotency key, so a redelivered or
-- replayed start event finds its instance instead of starting a second.
CREATE TABLE weft.saga_instances (
    id           uuid PRIMARY KEY,
    saga         text NOT NULL REFERENCES weft.sagas (name) ON UPDATE CASCADE,
    trigger      text NOT NULL,
    start_key    text NOT NULL,
    status       weft.saga_status NOT NULL DEFAULT 'running',
    -- running: the step in flight; compensating: the step being undone.
    current_step integer NOT NULL,
    failed_step  integer,
    error        text,
    -- Pushed forward by every step that finishes.
    deadline_at  timestamptz NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);
CREATE INDEX saga_instances_deadline ON weft.saga_instances (deadline_at)
    WHERE status = 'running';
CREATE INDEX saga_instances_saga ON weft.saga_instances (saga, status, started_at);

-- Each step's (and each compensation's) input and output.
CREATE TABLE weft.saga_step_runs (
    instance    uuid NOT NULL REFERENCES weft.saga_instances (id) ON DELETE CASCADE,
    position    integer NOT NULL,
    phase       text NOT NULL CHECK (phase IN ('do', 'compensate')),
    -- 'late': finished after the saga had already moved on (deadline).
    status      text NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'late')),
    input       bytea,
    input_type  text,
    output      bytea,
    output_type text,
    error       text,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    PRIMARY KEY (instance, position, phase)
);

-- The outbox and the timeline: every event a transition publishes, in
-- order, written in the transition's transaction. `cause` names the
-- transition ('start', 'do:2', 'compensate:1', 'deadline'); a transition
-- seen twice (a redelivered step event) publishes its stored events again,
-- with the same ids, instead of moving the saga twice.
CREATE TABLE weft.saga_events (
    instance     uuid NOT NULL REFERENCES weft.saga_instances (id) ON DELETE CASCADE,
    seq          integer NOT NULL,
    saga         text NOT NULL,
    cause        text NOT NULL,
    topic        text NOT NULL,
    id           text NOT NULL,
    type         text NOT NULL,
    -- weft.saga.step events: the step and phase they start.
    step         integer,
    phase        text,
    data         bytea,
    content_type text,
    at           timestamptz NOT NULL DEFAULT now(),
    -- Set once the broker acknowledged it. A transition without a source
    -- event to redeliver it (a deadline) is published again from here.
    published_at timestamptz,
    PRIMARY KEY (instance, seq)
);
CREATE INDEX saga_events_cause ON weft.saga_events (instance, cause);

-- ---- the state machine --------------------------------------------------
-- Each transition is one function call (one round trip, one transaction)
-- that returns the events it publishes, in order. The dispatcher publishes
-- them and only then acknowledges the event that caused the transition.

-- A step's data as JSON for transition events and compensation inputs:
-- the JSON itself when it is JSON, else {"data_base64": ..., "datacontenttype": ...}.
CREATE FUNCTION weft.saga_json(p_data bytea, p_ctype text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_data IS NULL OR length(p_data) = 0 THEN
        RETURN 'null'::jsonb;
    END IF;
    IF p_ctype IS NULL OR p_ctype ~* '^(application|text)/json' OR p_ctype ~* '\+json' THEN
        BEGIN
            RETURN convert_from(p_data, 'UTF8')::jsonb;
        EXCEPTION WHEN others THEN
            NULL; -- not JSON after all: base64 below
        END;
    END IF;
    RETURN jsonb_build_object('data_base64', translate(encode(p_data, 'base64'), E'\n', ''),
                              'datacontenttype', p_ctype);
END
$$;

-- Appends one event to an instance's outbox. Step events get the id
-- md5(instance/step/phase) as a UUID: it is their idempotency key.
CREATE FUNCTION weft.saga_emit(p_instance uuid, p_cause text, p_topic text, p_type text,
                               p_step integer, p_phase text, p_data bytea, p_ctype text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    s integer;
BEGIN
    SELECT coalesce(max(seq), 0) + 1 INTO s FROM weft.saga_events WHERE instance = p_instance;
    INSERT INTO weft.saga_events (instance, seq, saga, cause, topic, id, type, step, phase,
                                  data, content_type)
    VALUES (p_instance, s, (SELECT saga FROM weft.saga_instances WHERE id = p_instance),
            p_cause, p_topic,
            CASE WHEN p_type = 'weft.saga.step'
                 THEN md5(p_instance::text || '/' || p_step || '/' || p_phase)::uuid::text
                 ELSE md5(p_instance::text || '#' || s)::uuid::text END,
            p_type, p_step, p_phase, p_data, p_ctype);
END
$$;

CREATE FUNCTION weft.saga_emit_json(p_instance uuid, p_cause text, p_topic text, p_type text,
                                    p_data jsonb)
RETURNS void LANGUAGE sql AS $$
    SELECT weft.saga_emit(p_instance, p_cause, p_topic, p_type, NULL, NULL,
                          convert_to(p_data::text, 'UTF8'), 'application/json');
$$;

-- Compensates the completed steps below p_below that have a compensation,
-- highest first, one at a time: starts the next one, or ends the saga
-- 'aborted' when none is left.
CREATE FUNCTION weft.saga_compensate_below(p_instance uuid, p_below integer, p_cause text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    inst weft.saga_instances;
    sg weft.sagas;
    st weft.saga_steps;
    run weft.saga_step_runs;
BEGIN
    SELECT * INTO inst FROM weft.saga_instances WHERE id = p_instance;
    SELECT * INTO sg FROM weft.sagas WHERE name = inst.saga;
    SELECT s.* INTO st FROM weft.saga_steps s
      JOIN weft.saga_step_runs r ON r.instance = p_instance AND r.position = s.position
                                AND r.phase = 'do' AND r.status = 'completed'
     WHERE s.saga = inst.saga AND s.position < p_below AND s.compensation IS NOT NULL
     ORDER BY s.position DESC LIMIT 1;
    IF NOT FOUND THEN
        UPDATE weft.saga_instances SET status = 'aborted', finished_at = now(), updated_at = now()
         WHERE id = p_instance;
        PERFORM weft.saga_emit_json(p_instance, p_cause, sg.event_topic, 'weft.saga.aborted',
            jsonb_build_object('saga', inst.saga, 'instance', p_instance,
                               'failed_step', inst.failed_step, 'error', inst.error));
        RETURN;
    END IF;
    SELECT * INTO run FROM weft.saga_step_runs
     WHERE instance = p_instance AND position = st.position AND phase = 'do';
    UPDATE weft.saga_instances SET status = 'compensating', current_step = st.position,
           updated_at = now()
     WHERE id = p_instance;
    INSERT INTO weft.saga_step_runs (instance, position, phase, status, input, input_type)
    VALUES (p_instance, st.position, 'compensate', 'running',
            convert_to(jsonb_build_object('saga', inst.saga, 'instance', p_instance,
                                          'step', st.position, 'name', st.name,
                                          'input', weft.saga_json(run.input, run.input_type),
                                          'output', weft.saga_json(run.output, run.output_type))::text,
                       'UTF8'),
            'application/json');
    PERFORM weft.saga_emit(p_instance, p_cause, sg.step_topic, 'weft.saga.step', st.position,
                           'compensate',
                           (SELECT input FROM weft.saga_step_runs WHERE instance = p_instance
                               AND position = st.position AND phase = 'compensate'),
                           'application/json');
END
$$;

-- Fails the instance at step p_step (for good) and starts compensating.
CREATE FUNCTION weft.saga_fail(p_instance uuid, p_step integer, p_cause text, p_reason text,
                               p_error text, p_attempts integer)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    inst weft.saga_instances;
    sg weft.sagas;
BEGIN
    SELECT * INTO inst FROM weft.saga_instances WHERE id = p_instance;
    SELECT * INTO sg FROM weft.sagas WHERE name = inst.saga;
    UPDATE weft.saga_instances SET failed_step = p_step, error = p_error, updated_at = now()
     WHERE id = p_instance;
    PERFORM weft.saga_emit_json(p_instance, p_cause, sg.event_topic, 'weft.saga.step.failed',
        jsonb_build_object('saga', inst.saga, 'instance', p_instance, 'step', p_step,
                           'name', (SELECT name FROM weft.saga_steps
                                     WHERE saga = inst.saga AND position = p_step),
                           'phase', 'do', 'reason', p_reason, 'error', p_error,
                           'attempts', p_attempts));
    IF EXISTS (SELECT 1 FROM weft.saga_steps s
                 JOIN weft.saga_step_runs r ON r.instance = p_instance
                  AND r.position = s.position AND r.phase = 'do' AND r.status = 'completed'
                WHERE s.saga = inst.saga AND s.position < p_step
                  AND s.compensation IS NOT NULL) THEN
        PERFORM weft.saga_emit_json(p_instance, p_cause, sg.event_topic, 'weft.saga.compensating',
            jsonb_build_object('saga', inst.saga, 'instance', p_instance,
                               'failed_step', p_step, 'reason', p_reason, 'error', p_error));
    END IF;
    PERFORM weft.saga_compensate_below(p_instance, p_step, p_cause);
END
$$;

-- A start event: creates the instance (once per instance id) and publishes
-- weft.saga.started and the first step. Called again for the same id (a
-- redelivered or replayed start event), it returns the same events.
CREATE FUNCTION weft.saga_start(p_instance uuid, p_saga text, p_trigger text, p_key text,
                                p_data bytea, p_ctype text)
RETURNS SETOF weft.saga_events LANGUAGE plpgsql AS $$
DECLARE
    sg weft.sagas;
    first_pos integer;
    names jsonb;
BEGIN
    SELECT * INTO sg FROM weft.sagas WHERE name = p_saga;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown saga %', p_saga;
    END IF;
    SELECT min(position), jsonb_agg(name ORDER BY position) INTO first_pos, names
      FROM weft.saga_steps WHERE saga = p_saga;
    IF first_pos IS NULL THEN
        RAISE EXCEPTION 'saga % has no steps', p_saga;
    END IF;
    INSERT INTO weft.saga_instances (id, saga, trigger, start_key, current_step, deadline_at)
    VALUES (p_instance, p_saga, p_trigger, p_key, first_pos,
            now() + sg.deadline_ms * interval '1 millisecond')
    ON CONFLICT (id) DO NOTHING;
    IF FOUND THEN
        INSERT INTO weft.saga_step_runs (instance, position, phase, status, input, input_type)
        VALUES (p_instance, first_pos, 'do', 'running', p_data, p_ctype);
        PERFORM weft.saga_emit_json(p_instance, 'start', sg.event_topic, 'weft.saga.started',
            jsonb_build_object('saga', p_saga, 'instance', p_instance, 'trigger', p_trigger,
                               'steps', names, 'input', weft.saga_json(p_data, p_ctype)));
        PERFORM weft.saga_emit(p_instance, 'start', sg.step_topic, 'weft.saga.step', first_pos,
                               'do', p_data, p_ctype);
    END IF;
    RETURN QUERY SELECT * FROM weft.saga_events WHERE instance = p_instance AND cause = 'start'
                  ORDER BY seq;
END
$$;

-- A step (p_phase 'do') or a compensation ('compensate') finished: ok, or
-- failed for good (retries exhausted or non-retryable). Moves the saga one
-- transition and returns its events; the same call again returns the same
-- events; a result for a step the saga no longer waits for (it passed its
-- deadline meanwhile) is kept as 'late' and publishes nothing.
CREATE FUNCTION weft.saga_step_done(p_instance uuid, p_step integer, p_phase text, p_ok boolean,
                                    p_output bytea, p_otype text, p_reason text, p_error text,
                                    p_attempts integer)
RETURNS SETOF weft.saga_events LANGUAGE plpgsql AS $$
DECLARE
    inst weft.saga_instances;
    sg weft.sagas;
    st weft.saga_steps;
    nxt weft.saga_steps;
    v_cause text := p_phase || ':' || p_step;
BEGIN
    SELECT * INTO inst FROM weft.saga_instances WHERE id = p_instance FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown saga instance %', p_instance;
    END IF;
    IF EXISTS (SELECT 1 FROM weft.saga_events WHERE instance = p_instance AND cause = v_cause) THEN
        RETURN QUERY SELECT * FROM weft.saga_events
                      WHERE instance = p_instance AND cause = v_cause ORDER BY seq;
        RETURN;
    END IF;
    IF NOT ((p_phase = 'do' AND inst.status = 'running' AND inst.current_step = p_step) OR
            (p_phase = 'compensate' AND inst.status = 'compensating'
             AND inst.current_step = p_step)) THEN
        UPDATE weft.saga_step_runs SET status = 'late', output = p_output, output_type = p_otype,
               error = p_error, finished_at = now()
         WHERE instance = p_instance AND position = p_step AND phase = p_phase
           AND status IN ('running', 'failed');
        RETURN;
    END IF;
    SELECT * INTO sg FROM weft.sagas WHERE name = inst.saga;
    SELECT * INTO st FROM weft.saga_steps WHERE saga = inst.saga AND position = p_step;
    UPDATE weft.saga_step_runs
       SET status = CASE WHEN p_ok THEN 'completed' ELSE 'failed' END, output = p_output,
           output_type = p_otype, error = p_error, finished_at = now()
     WHERE instance = p_instance AND position = p_step AND phase = p_phase;
    UPDATE weft.saga_instances
       SET deadline_at = now() + sg.deadline_ms * interval '1 millisecond', updated_at = now()
     WHERE id = p_instance;

    IF p_phase = 'do' AND p_ok THEN
        PERFORM weft.saga_emit_json(p_instance, v_cause, sg.event_topic, 'weft.saga.step.completed',
            jsonb_build_object('saga', inst.saga, 'instance', p_instance, 'step', p_step,
                               'name', st.name, 'output', weft.saga_json(p_output, p_otype)));
        SELECT * INTO nxt FROM weft.saga_steps
         WHERE saga = inst.saga AND position > p_step ORDER BY position LIMIT 1;
        IF FOUND THEN
            UPDATE weft.saga_instances SET current_step = nxt.position WHERE id = p_instance;
            INSERT INTO weft.saga_step_runs (instance, position, phase, status, input, input_type)
            VALUES (p_instance, nxt.position, 'do', 'running', p_output, p_otype);
            PERFORM weft.saga_emit(p_instance, v_cause, sg.step_topic, 'weft.saga.step',
                                   nxt.position, 'do', p_output, p_otype);
        ELSE
            UPDATE weft.saga_instances SET status = 'completed', finished_at = now()
             WHERE id = p_instance;
            PERFORM weft.saga_emit_json(p_instance, v_cause, sg.event_topic, 'weft.saga.completed',
                jsonb_build_object('saga', inst.saga, 'instance', p_instance,
                                   'output', weft.saga_json(p_output, p_otype)));
        END IF;
    ELSIF p_phase = 'do' THEN
        PERFORM weft.saga_fail(p_instance, p_step, v_cause, coalesce(p_reason, 'failed'), p_error,
                               p_attempts);
    ELSIF p_ok THEN
        PERFORM weft.saga_emit_json(p_instance, v_cause, sg.event_topic,
            'weft.saga.step.compensated',
            jsonb_build_object('saga', inst.saga, 'instance', p_instance, 'step', p_step,
                               'name', st.name));
        PERFORM weft.saga_compensate_below(p_instance, p_step, v_cause);
    ELSE
        UPDATE weft.saga_instances SET status = 'stuck', error = p_error, finished_at = now()
         WHERE id = p_instance;
        PERFORM weft.saga_emit_json(p_instance, v_cause, sg.event_topic, 'weft.saga.step.failed',
            jsonb_build_object('saga', inst.saga, 'instance', p_instance, 'step', p_step,
                               'name', st.name, 'phase', 'compensate',
                               'reason', coalesce(p_reason, 'failed'), 'error', p_error,
                               'attempts', p_attempts));
        PERFORM weft.saga_emit_json(p_instance, v_cause, sg.event_topic, 'weft.saga.stuck',
            jsonb_build_object('saga', inst.saga, 'instance', p_instance, 'step', p_step,
                               'name', st.name, 'failed_step', inst.failed_step,
                               'error', p_error));
    END IF;
    RETURN QUERY SELECT * FROM weft.saga_events
                  WHERE instance = p_instance AND cause = v_cause ORDER BY seq;
END
$$;

-- Running instances past their deadline (at most p_max, skipping any that
-- another dispatcher is handling): the step in flight is failed with
-- reason 'deadline' and the completed steps are compensated. Returns the
-- events of every instance it moved.
CREATE FUNCTION weft.saga_expire(p_max integer)
RETURNS SETOF weft.saga_events LANGUAGE plpgsql AS $$
DECLARE
    inst weft.saga_instances;
    sg weft.sagas;
BEGIN
    FOR inst IN SELECT * FROM weft.saga_instances
                 WHERE status = 'running' AND deadline_at < now()
                 ORDER BY deadline_at LIMIT p_max
                 FOR UPDATE SKIP LOCKED LOOP
        SELECT * INTO sg FROM weft.sagas WHERE name = inst.saga;
        UPDATE weft.saga_step_runs SET status = 'failed', error = 'deadline exceeded',
               finished_at = now()
         WHERE instance = inst.id AND position = inst.current_step AND phase = 'do'
           AND status = 'running';
        PERFORM weft.saga_fail(inst.id, inst.current_step, 'deadline', 'deadline',
                               format('no step finished within %s ms', sg.deadline_ms), 0);
        RETURN QUERY SELECT * FROM weft.saga_events
                      WHERE instance = inst.id AND cause = 'deadline' ORDER BY seq;
    END LOOP;
END
$$;
