/* The state machine: what a loaded instance does next, decided from its row
 * and the answer of its last attempt. It writes only through txn.c.
 *
 * States (saga_state) and the function that performs each transition:
 *
 *   RUNNING      -> RUNNING       advance (next step; the start of an attempt)
 *   RUNNING      -> WAITING       park (retry delay, PENDING), acquire_breaker
 *                                 (breaker open)
 *   RUNNING      -> COMPLETED     advance -> end_as (past the last step)
 *   RUNNING      -> COMPENSATING  start_compensation (FAIL, retries exhausted,
 *                                 timeout, deadline, cancel)
 *   RUNNING      -> STUCK         end_as (a retriable step fails; the pivot's
 *                                 outcome is unknown)
 *   WAITING      -> RUNNING       advance "resumed" (due), apply_outcome
 *                                 "resumed" (async completion)
 *   WAITING      -> COMPENSATING  start_compensation (as from RUNNING)
 *   COMPENSATING -> COMPENSATING  advance (the previous compensatable step)
 *   COMPENSATING -> WAITING       park (retry delay), acquire_breaker (breaker
 *                                 open)
 *   COMPENSATING -> COMPENSATED   advance -> end_as (before the first step)
 *   COMPENSATING -> STUCK         end_as (a compensation fails or exhausts
 *                                 its retries)
 *   STUCK        -> RUNNING or COMPENSATING  operator_cmd (command.c)
 *
 * apply_result turns a callback's answer into an outcome; apply_outcome
 * records the outcome and makes the move. acquire_breaker and
 * release_breaker are all the engine says to a circuit breaker.
 * SPDX-License-Identifier: MIT */
#include "engine_int.h"

static void set_error_text(inst *in, const char *msg)
{
	saga_fmt(in->row.error, sizeof(in->row.error), "%s", msg ? msg : "");
}

static int end_as(saga_engine *e, inst *in, saga_state state, const char *detail)
{
	in->row.state = state;
	in->row.due_at = 0;
	in->row.inflight = false;
	in->row.pending = false;
	return record_state(e, in, detail);
}

/* Makes the instance due now. One already due keeps its time: a step's
 * progress then leaves due_at, and with it the timer index, untouched. */
static void mark_due(saga_row *r, uint64_t now)
{
	if (r->due_at == 0 || r->due_at > now)
		r->due_at = now;
}

bool ended(int state)
{
	return state == SAGA_COMPLETED || state == SAGA_COMPENSATED || state == SAGA_STUCK;
}

/* Leaves the forward path: compensate every started step, newest first. A
 * step whose last answer was a definite FAIL applied nothing and is skipped. */
int start_compensation(saga_engine *e, inst *in, saga_reason reason, bool skip_current)
{
	saga_row *r = &in->row;
	r->phase = SAGA_PHASE_COMPENSATION;
	r->reason = reason;
	r->step = r->fwd_started - 1 - (skip_current ? 1 : 0);
	r->attempt = 0;
	r->prev_delay = 0;
	r->inflight = false;
	r->pending = false;
	r->attempt_deadline = 0;
	r->state = SAGA_COMPENSATING;
	r->due_at = now_wall(e);
	char d[64];
	saga_fmt(d, sizeof(d), "compensating (%s)", saga_reason_name(reason));
	return record_state(e, in, d);
}

/* Has the instance started a step that cannot be compensated? */
bool past_no_return(const inst *in)
{
	return in->row.pivot_done || in->row.fwd_started > saga_def_no_return(in->rd->def);
}

static uint64_t forward_deadline(const inst *in)
{
	if (!in->row.deadline_at)
		return 0;
	uint64_t reserve = in->rd->def->comp_reserve_ms;
	return in->row.deadline_at > reserve ? in->row.deadline_at - reserve : 1;
}

/* Parks the instance in WAITING until `when` (0: until an event wakes it). */
static int park(saga_engine *e, inst *in, uint64_t when)
{
	uint64_t fd = forward_deadline(in);
	if (in->row.phase == SAGA_PHASE_ACTION && !past_no_return(in) && fd && (!when || fd < when))
		when = fd;
	bool changed = in->row.state != SAGA_WAITING;
	in->row.state = SAGA_WAITING;
	in->row.due_at = when;
	if (when && (e->next_timer == 0 || when < e->next_timer))
		e->next_timer = when;
	return changed ? record_state(e, in, "waiting") : SAGA_OK;
}

/* Records the answer of an attempt and moves the instance on.
 * outcome is the recorded outcome (TIMEOUT for an answer past its time). */
int apply_outcome(saga_engine *e, inst *in, saga_outcome outcome, cJSON *puts, const char *errtext)
{
	saga_row *r = &in->row;
	const saga_step_def *sd = step_def(in, r->step);
	uint64_t now = now_wall(e);
	int rc;
	bool was_waiting = r->state == SAGA_WAITING;
	r->inflight = false;
	r->pending = false;
	if (outcome != SAGA_OUTCOME_OK && outcome != SAGA_OUTCOME_PENDING)
		set_error_text(in, errtext && *errtext ? errtext : saga_outcome_name(outcome));
	if ((rc = record_attempt(e, in, SAGA_EVENT_ATTEMPT_END, outcome, errtext)))
		return rc;
	switch (outcome) {
	case SAGA_OUTCOME_PENDING:
		r->pending = true;
		return park(e, in, r->attempt_deadline);
	case SAGA_OUTCOME_OK:
		if (puts) {
			cJSON *item = puts->child;
			while (item) {
				cJSON *next = item->next;
				cJSON_DetachItemViaPointer(puts, item);
				/* Replace through the pointer: replacing by name would
				 * free the name the item still points to. */
				cJSON *context = in->context;
				cJSON *old =
				        cJSON_GetObjectItemCaseSensitive(context, item->string);
				bool kept =
				        old ? cJSON_ReplaceItemViaPointer(context, old, item)
				            : cJSON_AddItemToObject(context, item->string, item);
				if (!kept) {
					cJSON_Delete(item);
					return set_err(e, SAGA_ENOMEM, "out of memory");
				}
				item = next;
			}
			in->context_changed = true;
		}
		/* The error that started a rollback stays visible after it. */
		if (r->phase == SAGA_PHASE_ACTION)
			r->error[0] = '\0';
		r->attempt = 0;
		r->prev_delay = 0;
		r->attempt_deadline = 0;
		if (r->phase == SAGA_PHASE_ACTION) {
			if (sd->kind == SAGA_STEP_PIVOT)
				r->pivot_done = true;
			r->step++;
			r->state = SAGA_RUNNING;
		} else {
			r->comp_done_any = true;
			r->step--;
			r->state = SAGA_COMPENSATING;
		}
		mark_due(r, now);
		/* An async completion wakes a WAITING instance: say so. */
		return was_waiting ? record_state(e, in, "resumed") : SAGA_OK;
	case SAGA_OUTCOME_FAIL:
		if (r->phase == SAGA_PHASE_COMPENSATION || sd->kind == SAGA_STEP_RETRIABLE)
			return end_as(e, in, SAGA_STUCK, "stuck: the step failed");
		return start_compensation(e, in, SAGA_REASON_FAILURE, true);
	default: { /* RETRY or TIMEOUT */
		const saga_retry_policy *p =
		        r->phase == SAGA_PHASE_ACTION
		                ? saga_def_retry(in->rd->def, (size_t)r->step)
		                : saga_def_comp_retry(in->rd->def, (size_t)r->step);
		uint64_t delay = 0;
		uint64_t elapsed = now > r->step_since ? now - r->step_since : 0;
		if (saga_retry_next(&delay, p, r->attempt, elapsed, r->prev_delay, &e->rng) == 1) {
			r->prev_delay = delay < TIME_END ? delay : TIME_END; /* stored */
			return park(e, in, time_add(now, delay));
		}
		if (r->phase == SAGA_PHASE_COMPENSATION || sd->kind == SAGA_STEP_RETRIABLE)
			return end_as(e, in, SAGA_STUCK, "stuck: the retry policy is exhausted");
		if (sd->kind == SAGA_STEP_PIVOT && outcome == SAGA_OUTCOME_TIMEOUT)
			/* The pivot may have happened and cannot be compensated. */
			return end_as(e, in, SAGA_STUCK, "stuck: the pivot's outcome is unknown");
		return start_compensation(e, in,
		                          outcome == SAGA_OUTCOME_TIMEOUT ? SAGA_REASON_TIMEOUT
		                                                          : SAGA_REASON_FAILURE,
		                          false);
	}
	}
}

/* An open breaker that names no wait: look again after this long. */
#define BREAKER_RECHECK_MS 10

/* Asks the breaker of the current step, if it has one, for a permit before
 * its attempt starts. *refused when the breaker is open: the refusal is
 * recorded and the instance parked until the breaker may let calls through.
 * A permit is held in `in` until the call ends (release_breaker). */
static int acquire_breaker(saga_engine *e, inst *in, uint64_t now, bool *refused)
{
	const saga_definition *d = in->rd->def;
	const char *bname = saga_def_breaker(d, (size_t)in->row.step);
	*refused = false;
	if (!bname)
		return SAGA_OK;
	saga_breaker *b = find_breaker(e, bname);
	if (!b) {
		log_inst(e, SAGA_LOG_WARN, "breaker.undefined", in, in->row.step, in->row.phase,
		         in->row.attempt, 0, "breaker '%s' is not defined", bname);
		return SAGA_OK;
	}
	uint64_t after = 0;
	int brc = saga_breaker_acquire(b, &in->permit, &after);
	if (brc == SAGA_EOPEN) {
		*refused = true;
		char msg[96];
		saga_fmt(msg, sizeof(msg), "breaker '%s' open; retry after %llu ms", bname,
		         (unsigned long long)after);
		int rc = record_attempt(e, in, SAGA_EVENT_BREAKER_REFUSED, SAGA_OUTCOME_NONE, msg);
		return rc ? rc : park(e, in, time_add(now, after ? after : BREAKER_RECHECK_MS));
	}
	if (brc == SAGA_OK) {
		in->breaker = b;
		in->has_permit = true;
	}
	return SAGA_OK;
}

/* Tells the breaker how the call under its permit went, as the call ends
 * (invoke, without the mutex), so that the call's own duration decides a
 * slow call, not the wait for the round that records the answer. The
 * breaker watches the health of a service: a definite answer (OK, FAIL: a
 * business refusal, PENDING) shows it working; RETRY and an answer after
 * the timeout show it failing. */
void release_breaker(inst *in, bool late)
{
	if (!in->has_permit)
		return;
	saga_breaker_record(in->breaker, &in->permit,
	                    in->res != SAGA_STEP_RETRY && !late ? SAGA_CALL_SUCCESS
	                                                        : SAGA_CALL_FAILURE);
	in->has_permit = false;
}

/* Decides what the instance does next; records the start of an attempt when
 * one is due (the caller commits before invoking it). */
int advance(saga_engine *e, inst *in, enum next *next)
{
	saga_row *r = &in->row;
	const saga_definition *d = in->rd->def;
	int rc;
	*next = NEXT_RELEASE;
	for (;;) {
		uint64_t now = now_wall(e);
		if (ended(r->state))
			return SAGA_OK;
		/* A whole-instance deadline stops forward work before the pivot. */
		uint64_t fd = forward_deadline(in);
		if (r->phase == SAGA_PHASE_ACTION && !past_no_return(in) && fd && now >= fd) {
			if (r->inflight || r->pending)
				rc = record_attempt(e, in, SAGA_EVENT_ATTEMPT_END,
				                    SAGA_OUTCOME_TIMEOUT,
				                    "instance deadline passed");
			else
				rc = SAGA_OK;
			if (rc || (rc = start_compensation(e, in, SAGA_REASON_TIMEOUT, false)))
				return rc;
			continue;
		}
		if (r->pending) {
			if (r->attempt_deadline && now >= r->attempt_deadline) {
				if ((rc = apply_outcome(e, in, SAGA_OUTCOME_TIMEOUT, NULL,
				                        "async step timed out")))
					return rc;
				continue;
			}
			return park(e, in, r->attempt_deadline);
		}
		if (r->inflight && !in->fresh_start) {
			/* Started before a crash with no outcome: invoke it again,
			 * unless it has been, again and again, and each time its
			 * owner died in it. */
			if ((rc = record_attempt(e, in, SAGA_EVENT_ATTEMPT_END, SAGA_OUTCOME_NONE,
			                         "interrupted: no outcome recorded")))
				return rc;
			r->inflight = false;
			if (r->recoveries >= SAGA_RECOVERY_LIMIT) {
				r->reason = SAGA_REASON_CRASH_LOOP;
				set_error_text(in, "crash loop: its owner died in this attempt "
				                   "again and again");
				return end_as(e, in, SAGA_STUCK, "stuck: crash loop");
			}
		}
		if (r->state == SAGA_WAITING && r->due_at > now)
			return SAGA_OK; /* not due yet (woken early): stays parked */
		if (r->phase == SAGA_PHASE_ACTION) {
			if ((size_t)r->step >= d->nsteps)
				return end_as(e, in, SAGA_COMPLETED, "completed");
		} else {
			while (r->step >= 0 && d->steps[r->step].kind != SAGA_STEP_COMPENSATABLE)
				r->step--;
			if (r->step < 0)
				return end_as(e, in, SAGA_COMPENSATED, "compensated");
		}
		bool refused = false;
		if ((rc = acquire_breaker(e, in, now, &refused)) || refused)
			return rc;
		/* Record the start of the attempt: durable before it is invoked. */
		if (r->state == SAGA_WAITING) {
			r->state = r->phase == SAGA_PHASE_ACTION ? SAGA_RUNNING : SAGA_COMPENSATING;
			if ((rc = record_state(e, in, "resumed")))
				return rc;
		}
		if (r->attempt == 0)
			r->step_since = now;
		r->attempt++;
		r->inflight = true;
		in->fresh_start = true;
		/* The timeout counts from the invocation (invoke()), not from
		 * here: the attempt may wait for a worker or for the callbacks
		 * before it in the round. Its deadline is stored with its answer. */
		r->attempt_deadline = 0;
		if (r->phase == SAGA_PHASE_ACTION && r->step >= r->fwd_started)
			r->fwd_started = r->step + 1;
		r->state = r->phase == SAGA_PHASE_ACTION ? SAGA_RUNNING : SAGA_COMPENSATING;
		mark_due(r, now);
		rc = record_attempt(e, in, SAGA_EVENT_ATTEMPT_START, SAGA_OUTCOME_NONE, NULL);
		if (rc)
			return rc;
		*next = NEXT_INVOKE;
		return SAGA_OK;
	}
}

/* The deadline of an attempt invoked at `invoked`; 0 = no timeout. */
uint64_t attempt_deadline(const inst *in, uint64_t invoked)
{
	uint64_t t = saga_def_timeout(in->rd->def, (size_t)in->row.step, (saga_phase)in->row.phase);
	return t ? time_add(invoked, t) : 0;
}

/* Turns an invocation's answer into an outcome (late answers time out). The
 * attempt's deadline counts from the invocation; written with the answer,
 * it is what a PENDING step waits for, also after a restart. */
int apply_result(saga_engine *e, inst *in)
{
	saga_row *r = &in->row;
	r->attempt_deadline = attempt_deadline(in, in->wall_start);
	saga_outcome oc;
	switch (in->res) {
	case SAGA_STEP_OK:
		oc = SAGA_OUTCOME_OK;
		break;
	case SAGA_STEP_FAIL:
		oc = SAGA_OUTCOME_FAIL;
		break;
	case SAGA_STEP_RETRY:
		oc = SAGA_OUTCOME_RETRY;
		break;
	case SAGA_STEP_PENDING:
		oc = SAGA_OUTCOME_PENDING;
		break;
	default:
		oc = SAGA_OUTCOME_FAIL;
		saga_fmt(in->err, sizeof(in->err), "callback returned an invalid result %d",
		         (int)in->res);
		break;
	}
	int rc;
	if (r->attempt_deadline && in->wall_end > r->attempt_deadline) {
		char msg[96];
		saga_fmt(msg, sizeof(msg), "answer %s arrived after the timeout; ignored",
		         saga_outcome_name(oc));
		if ((rc = record_attempt(e, in, SAGA_EVENT_LATE, oc, msg)))
			return rc;
		oc = SAGA_OUTCOME_TIMEOUT;
		saga_fmt(in->err, sizeof(in->err), "attempt timed out");
	}
	cJSON *puts = in->puts;
	in->puts = NULL;
	r->recoveries = 0; /* an answer: the instance is not in a crash loop */
	rc = apply_outcome(e, in, oc, oc == SAGA_OUTCOME_OK ? puts : NULL, in->err);
	cJSON_Delete(puts);
	in->err[0] = '\0';
	return rc;
}
