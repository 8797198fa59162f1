-- The batch engine's hot statements, version 1: claim, settle, lease renewal, lease recovery (and the
-- money of settling a row, which settle and recovery share).
--
-- Loaded by migration batches/0005_engine_v1; each function has exactly one Python call site in
-- batches/engine/. A change of behaviour is a new version (a new file, a new migration, new names),
-- never an edit of this one, so that a worker of the previous release and one of the next can run
-- side by side while a deploy rolls.
--
-- What they keep true together:
-- - rows are locked in one order everywhere: batch lead, then batch, then day (a claim locks the batch
--   first but takes leads with SKIP LOCKED, so it never waits on a lead);
-- - budgets: a lead is leased only with its whole worst case reserved on the batch and on the day, both
--   within their budgets; settling and recovery release exactly what the row had reserved;
-- - what a lead paid is read from the call log (reports_providercall), never from what a worker says;
-- - every write after the claim is guarded by the lease owner;
-- - claims and settles commit asynchronously (only their own transaction): a PostgreSQL crash can lose
--   the last moment of them, which lease recovery and the call log redo; paid calls, logged by other
--   statements that commit synchronously, flush every earlier commit with them (the WAL is in order).


-- Lease up to p_limit due leads of batch p_batch to p_owner, in position order. p_amounts holds each
-- lead's worst case as priced by the caller ({"<row id>": "<amount>"}); a lead is leased only if its
-- whole amount fits the batch budget and the daily budget after the leads before it (all or nothing per
-- lead). At most the batch's concurrency leads are in flight across the cluster: counted under the batch
-- lock, in a snapshot taken after it.
--
-- Rows (outcome, row_id, lead_id, attempts, run_attempts, reserved_usd): one per leased lead, outcome
-- 'leased', or 'leased_unpriced' when it stopped at a lead missing from p_amounts; or a single row with
-- only an outcome:
--   'stop'      the batch is not queued or running (paused, cancelling, finished, gone);
--   'wait'      nothing can start now (slots full, leads backing off or locked by another claim, or the
--               next lead does not fit a budget while this batch's own reservations are still held);
--   'unpriced'  the next due lead is not in p_amounts: price it and claim again;
--   'done'      nothing is left to start (when the budget cannot take the next lead and the batch
--               holds no reservation, every pending lead is skipped first, and the batch says why).
CREATE FUNCTION batch_claim_v1(
    p_batch bigint,
    p_owner text,
    p_limit integer,
    p_amounts jsonb,
    p_now timestamptz,
    p_lease_until timestamptz,
    p_day date,
    p_daily_budget numeric
) RETURNS TABLE (
    outcome text,
    row_id bigint,
    lead_id bigint,
    attempts integer,
    run_attempts integer,
    reserved_usd numeric
) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_status text;
    v_concurrency integer;
    v_batch_room numeric;
    v_batch_reserved numeric;
    v_day_room numeric;
    v_free integer;
    v_total numeric := 0;
    v_ids bigint[] := '{}';
    v_amounts numeric[] := '{}';
    v_stop text;
    v_candidate record;
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);

    SELECT b.status, b.concurrency, b.budget_usd - b.actual_cost_usd - b.reserved_usd, b.reserved_usd
      INTO v_status, v_concurrency, v_batch_room, v_batch_reserved
      FROM batches_batchreport b
     WHERE b.id = p_batch
       FOR UPDATE;
    IF NOT FOUND OR v_status NOT IN ('queued', 'running') THEN
        RETURN QUERY SELECT 'stop'::text, NULL::bigint, NULL::bigint, NULL::integer, NULL::integer, NULL::numeric;
        RETURN;
    END IF;

    SELECT v_concurrency - count(*)
      INTO v_free
      FROM batches_batchreportlead l
     WHERE l.batch_id = p_batch AND l.status = 'processing' AND l.lease_expires_at > p_now;
    IF v_free <= 0 THEN
        RETURN QUERY SELECT 'wait'::text, NULL::bigint, NULL::bigint, NULL::integer, NULL::integer, NULL::numeric;
        RETURN;
    END IF;

    FOR v_candidate IN
        SELECT l.id, (p_amounts ->> l.id::text)::numeric AS amount
          FROM batches_batchreportlead l
         WHERE l.batch_id = p_batch
           AND l.status = 'pending'
           AND (l.next_attempt_at IS NULL OR l.next_attempt_at <= p_now)
         ORDER BY l.position
         LIMIT LEAST(p_limit, v_free)
           FOR UPDATE SKIP LOCKED
    LOOP
        IF v_candidate.amount IS NULL THEN
            v_stop := 'unpriced';
            EXIT;
        END IF;
        IF v_candidate.amount > 0 THEN
            IF v_batch_room IS NOT NULL AND v_batch_room - v_total < v_candidate.amount THEN
                v_stop := 'budget_exhausted';
                EXIT;
            END IF;
            IF v_day_room IS NULL THEN
                INSERT INTO batches_dailyspend (day, spent_usd, reserved_usd)
                VALUES (p_day, 0, 0)
                ON CONFLICT (day) DO NOTHING;
                SELECT p_daily_budget - d.spent_usd - d.reserved_usd
                  INTO v_day_room
                  FROM batches_dailyspend d
                 WHERE d.day = p_day
                   FOR UPDATE;
            END IF;
            IF v_day_room - v_total < v_candidate.amount THEN
                v_stop := 'daily_budget_exhausted';
                EXIT;
            END IF;
        END IF;
        v_total := v_total + v_candidate.amount;
        v_ids := v_ids || v_candidate.id;
        v_amounts := v_amounts || v_candidate.amount;
    END LOOP;

    IF cardinality(v_ids) > 0 THEN
        UPDATE batches_batchreport
           SET reserved_usd = reserved_usd + v_total,
               status = 'running',
               started_at = COALESCE(started_at, p_now),
               runner_heartbeat_at = CASE WHEN status = 'queued' THEN p_now ELSE runner_heartbeat_at END
         WHERE id = p_batch AND (v_total > 0 OR status = 'queued');
        IF v_total > 0 THEN
            UPDATE batches_dailyspend SET reserved_usd = reserved_usd + v_total WHERE day = p_day;
        END IF;
        RETURN QUERY
            UPDATE batches_batchreportlead l
               SET status = 'processing',
                   lease_owner = p_owner,
                   lease_expires_at = p_lease_until,
                   attempts = l.attempts + 1,
                   run_attempts = l.run_attempts + 1,
                   started_at = COALESCE(l.started_at, p_now),
                   reserved_usd = c.amount,
                   reserved_on = CASE WHEN c.amount > 0 THEN p_day END,
                   next_attempt_at = NULL,
                   updated_at = p_now
              FROM unnest(v_ids, v_amounts) AS c (id, amount)
             WHERE l.id = c.id
         RETURNING CASE WHEN v_stop = 'unpriced' THEN 'leased_unpriced' ELSE 'leased' END,
                   l.id, l.lead_id, l.attempts::integer, l.run_attempts::integer, l.reserved_usd;
        RETURN;
    END IF;

    IF v_stop = 'unpriced' THEN
        RETURN QUERY SELECT 'unpriced'::text, NULL::bigint, NULL::bigint, NULL::integer, NULL::integer, NULL::numeric;
        RETURN;
    END IF;
    IF v_stop IS NOT NULL AND v_batch_reserved = 0 THEN
        -- The next lead does not fit, and no lead of this batch in flight can give room back.
        UPDATE batches_batchreportlead
           SET status = 'skipped',
               error_code = 'budget_exhausted',
               last_error = CASE WHEN v_stop = 'budget_exhausted' THEN 'The batch budget is exhausted.'
                                 ELSE 'The daily budget is exhausted.' END,
               next_attempt_at = NULL,
               finished_at = p_now,
               updated_at = p_now
         WHERE batch_id = p_batch AND status = 'pending';
        UPDATE batches_batchreport SET stop_reason = v_stop WHERE id = p_batch AND stop_reason = '';
        RETURN QUERY SELECT 'done'::text, NULL::bigint, NULL::bigint, NULL::integer, NULL::integer, NULL::numeric;
        RETURN;
    END IF;
    IF v_stop IS NOT NULL
       OR EXISTS (SELECT 1 FROM batches_batchreportlead l WHERE l.batch_id = p_batch AND l.status = 'pending') THEN
        RETURN QUERY SELECT 'wait'::text, NULL::bigint, NULL::bigint, NULL::integer, NULL::integer, NULL::numeric;
        RETURN;
    END IF;
    RETURN QUERY SELECT 'done'::text, NULL::bigint, NULL::bigint, NULL::integer, NULL::integer, NULL::numeric;
END;
$$;


-- The money of settling one batch lead row, locked by the caller (settle or recovery): what the call
-- log says the row paid over all its attempts (in total and per provider), the difference from what the
-- row had booked (p_booked) added to the batch and to day p_day, and the row's reservation (p_reserved)
-- released on both. Locks the batch, then the day, after the lead: the engine's one order.
CREATE FUNCTION batch_lead_settle_money_v1(
    p_row bigint,
    p_batch bigint,
    p_booked numeric,
    p_reserved numeric,
    p_day date
) RETURNS TABLE (paid numeric, breakdown jsonb) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_paid numeric;
    v_breakdown jsonb;
BEGIN
    SELECT COALESCE(sum(paid.total), 0), COALESCE(jsonb_object_agg(paid.provider, paid.total::text), '{}')
      INTO v_paid, v_breakdown
      FROM (SELECT c.provider, sum(c.cost_usd) AS total
              FROM reports_providercall c
             WHERE c.batch_lead_id = p_row
             GROUP BY c.provider) AS paid;

    IF v_paid <> p_booked OR p_reserved <> 0 THEN
        UPDATE batches_batchreport
           SET actual_cost_usd = actual_cost_usd + (v_paid - p_booked),
               reserved_usd = reserved_usd - p_reserved
         WHERE id = p_batch;
        INSERT INTO batches_dailyspend AS d (day, spent_usd, reserved_usd)
        VALUES (p_day, v_paid - p_booked, 0)
        ON CONFLICT (day) DO UPDATE
           SET spent_usd = d.spent_usd + excluded.spent_usd,
               reserved_usd = d.reserved_usd - p_reserved;
    END IF;
    RETURN QUERY SELECT v_paid, v_breakdown;
END;
$$;


-- Write the result of one attempt of a leased lead, if p_owner still holds its lease, and settle its
-- money: the row's cost becomes what the call log says it paid over all its attempts (in total and per
-- provider); the batch and the day book the difference and release the row's reservation.
-- p_result is 'succeeded' (with p_warnings: the sections its report lacks for the lead's own reason),
-- 'failed' (not to be retried), 'transient', 'deferred' or 'unavailable'. A transient failure goes back
-- to 'pending' at p_retry_at while the run has attempts left and the batch is not cancelling (then it is
-- 'cancelled'), else it is 'failed'. A deferred one (a provider whose circuit is open) goes back to
-- 'pending' at p_retry_at without spending the attempt. An 'unavailable' failure is ours and the same for
-- every lead (a provider's plan, quota or key): the lead goes back to 'pending' without spending the
-- attempt, and a queued or running batch pauses with stop_reason 'provider_unavailable' and p_error as
-- its stop_detail. Returns the lead's new status, or NULL when the lease was lost.
CREATE FUNCTION batch_settle_v1(
    p_row bigint,
    p_owner text,
    p_result text,
    p_report bigint,
    p_duration integer,
    p_error text,
    p_code text,
    p_warnings jsonb,
    p_retry_at timestamptz,
    p_now timestamptz,
    p_today date
) RETURNS text LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_lead record;
    v_batch record;
    v_paid numeric;
    v_breakdown jsonb;
    v_status text;
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);

    SELECT l.batch_id, l.run_attempts, l.cost_usd, l.reserved_usd, l.reserved_on
      INTO v_lead
      FROM batches_batchreportlead l
     WHERE l.id = p_row AND l.lease_owner = p_owner AND l.status = 'processing'
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;

    SELECT settled.paid, settled.breakdown INTO v_paid, v_breakdown
      FROM batch_lead_settle_money_v1(p_row, v_lead.batch_id, v_lead.cost_usd, v_lead.reserved_usd,
                                      COALESCE(v_lead.reserved_on, p_today)) AS settled;

    IF p_result = 'succeeded' THEN
        v_status := 'succeeded';
    ELSIF p_result IN ('unavailable', 'deferred') THEN
        v_status := 'pending';
    ELSIF p_result = 'transient' THEN
        SELECT b.status, b.max_retries INTO v_batch FROM batches_batchreport b WHERE b.id = v_lead.batch_id;
        v_status := CASE
            WHEN v_batch.status = 'cancelling' THEN 'cancelled'
            WHEN v_lead.run_attempts <= v_batch.max_retries THEN 'pending'
            ELSE 'failed' END;
    ELSE
        v_status := 'failed';
    END IF;

    UPDATE batches_batchreportlead
       SET status = v_status,
           lease_owner = '',
           lease_expires_at = NULL,
           reserved_usd = 0,
           reserved_on = NULL,
           cost_usd = v_paid,
           cost_breakdown = v_breakdown,
           duration_ms = p_duration,
           report_id = CASE WHEN v_status = 'succeeded' THEN p_report END,
           last_error = CASE WHEN v_status = 'succeeded' THEN '' ELSE p_error END,
           error_code = CASE WHEN v_status = 'succeeded' THEN '' ELSE p_code END,
           finished_at = CASE WHEN v_status = 'pending' THEN NULL ELSE p_now END,
           warnings = CASE WHEN v_status = 'succeeded' THEN COALESCE(p_warnings, '[]') ELSE '[]' END,
           next_attempt_at = CASE WHEN v_status = 'pending' AND p_result <> 'unavailable' THEN p_retry_at END,
           attempts = attempts - CASE WHEN p_result IN ('unavailable', 'deferred') THEN 1 ELSE 0 END,
           run_attempts = run_attempts - CASE WHEN p_result IN ('unavailable', 'deferred') THEN 1 ELSE 0 END,
           updated_at = p_now
     WHERE id = p_row;

    IF p_result = 'unavailable' THEN
        UPDATE batches_batchreport
           SET status = 'paused', stop_reason = 'provider_unavailable', stop_detail = left(p_error, 500)
         WHERE id = v_lead.batch_id AND status IN ('queued', 'running');
    END IF;

    RETURN v_status;
END;
$$;


-- Extend the leases of p_owner's leads in flight in batch p_batch to p_until, and record that the batch
-- has a live runner. Returns how many leases were renewed.
CREATE FUNCTION batch_lease_renew_v1(
    p_batch bigint,
    p_owner text,
    p_now timestamptz,
    p_until timestamptz
) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_renewed integer;
BEGIN
    UPDATE batches_batchreportlead
       SET lease_expires_at = p_until
     WHERE batch_id = p_batch AND status = 'processing' AND lease_owner = p_owner;
    GET DIAGNOSTICS v_renewed = ROW_COUNT;
    UPDATE batches_batchreport SET runner_heartbeat_at = p_now WHERE id = p_batch;
    RETURN v_renewed;
END;
$$;


-- Take back one lead whose lease expired before p_now (its worker died or stopped renewing): book what
-- the call log says it paid, release its reservation, and put it back to 'pending' (its paid provider
-- data is cached, so the retry does not pay again), or end it 'failed' when its run has no attempt
-- left, 'cancelled' when its batch is cancelling, both with error_code 'worker_lost'. One lead per call,
-- so each is its own short transaction. Returns (batch_id, status) of the lead taken back, or no row.
CREATE FUNCTION batch_lease_recover_v1(
    p_now timestamptz,
    p_today date
) RETURNS TABLE (batch_id bigint, status text) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_lead record;
    v_paid numeric;
    v_breakdown jsonb;
    v_status text;
BEGIN
    SELECT l.id, l.batch_id, l.run_attempts, l.cost_usd, l.reserved_usd, l.reserved_on,
           b.max_retries, b.status AS batch_status
      INTO v_lead
      FROM batches_batchreportlead l
      JOIN batches_batchreport b ON b.id = l.batch_id
     WHERE l.status = 'processing' AND l.lease_expires_at < p_now
     ORDER BY l.lease_expires_at
     LIMIT 1
       FOR UPDATE OF l SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN;
    END IF;

    SELECT settled.paid, settled.breakdown INTO v_paid, v_breakdown
      FROM batch_lead_settle_money_v1(v_lead.id, v_lead.batch_id, v_lead.cost_usd, v_lead.reserved_usd,
                                      COALESCE(v_lead.reserved_on, p_today)) AS settled;

    v_status := CASE
        WHEN v_lead.batch_status = 'cancelling' THEN 'cancelled'
        WHEN v_lead.run_attempts > v_lead.max_retries THEN 'failed'
        ELSE 'pending' END;

    UPDATE batches_batchreportlead
       SET status = v_status,
           lease_owner = '',
           lease_expires_at = NULL,
           reserved_usd = 0,
           reserved_on = NULL,
           cost_usd = v_paid,
           cost_breakdown = v_breakdown,
           error_code = CASE WHEN v_status = 'pending' THEN error_code ELSE 'worker_lost' END,
           last_error = CASE WHEN v_status = 'pending' THEN last_error
                             ELSE 'The worker processing this lead stopped responding.' END,
           finished_at = CASE WHEN v_status = 'pending' THEN NULL ELSE p_now END,
           next_attempt_at = NULL,
           updated_at = p_now
     WHERE id = v_lead.id;

    RETURN QUERY SELECT v_lead.batch_id, v_status;
END;
$$;
