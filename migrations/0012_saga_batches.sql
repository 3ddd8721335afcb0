-- Saga transitions in batches, as the ledger's claims and records are.
--
-- The dispatcher asked for one transition per statement: one round trip
-- and one durable commit per saga event, one after another on its saga
-- connection. weft.saga_transitions runs a batch of them in one statement
-- and one transaction: element i of the arrays is a start (p_saga[i] is
-- set: weft.saga_start) or a finished step or compensation (p_saga[i] is
-- NULL: weft.saga_step_done). Each runs in a subtransaction of its own,
-- so one that fails (the state machine refusing with RAISE EXCEPTION, or
-- anything else) leaves the others alone: its row carries ord = i and the
-- error's SQLSTATE and message instead of an event. The other rows are the
-- events of element ord, in order, as the single calls return them.
CREATE FUNCTION weft.saga_transitions(p_instance uuid[], p_saga text[], p_trigger text[],
                                      p_key text[], p_step integer[], p_phase text[],
                                      p_ok boolean[], p_data bytea[], p_ctype text[],
                                      p_reason text[], p_error text[], p_attempts integer[])
RETURNS TABLE (ord integer, err_state text, err_message text, instance text, seq integer,
               cause text, topic text, id text, type text, step integer, phase text,
               data bytea, content_type text, saga text)
LANGUAGE plpgsql AS $$
DECLARE
    i integer;
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_instance, 1), 0) LOOP
        BEGIN
            IF p_saga[i] IS NOT NULL THEN
                RETURN QUERY
                    SELECT i, NULL::text, NULL::text, e.instance::text, e.seq, e.cause, e.topic,
                           e.id, e.type, coalesce(e.step, 0), e.phase, e.data, e.content_type,
                           e.saga
                      FROM weft.saga_start(p_instance[i], p_saga[i], p_trigger[i], p_key[i],
                                           p_data[i], p_ctype[i]) e;
            ELSE
                RETURN QUERY
                    SELECT i, NULL::text, NULL::text, e.instance::text, e.seq, e.cause, e.topic,
                           e.id, e.type, coalesce(e.step, 0), e.phase, e.data, e.content_type,
                           e.saga
                      FROM weft.saga_step_done(p_instance[i], p_step[i], p_phase[i], p_ok[i],
                                               p_data[i], p_ctype[i], p_reason[i], p_error[i],
                                               p_attempts[i]) e;
            END IF;
        EXCEPTION WHEN OTHERS THEN
            -- The function ran to its end before RETURN QUERY added a
            -- row, so an error leaves no rows of element i behind.
            RETURN QUERY SELECT i, SQLSTATE::text, SQLERRM::text, NULL::text, NULL::integer,
                                NULL::text, NULL::text, NULL::text, NULL::text, NULL::integer,
                                NULL::text, NULL::bytea, NULL::text, NULL::text;
        END;
    END LOOP;
END
$$;
