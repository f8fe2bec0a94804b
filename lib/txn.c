/* The round's transaction: one write transaction per round (group commit),
 * the history rows written in it, the instance rows, and the events that
 * are delivered to listeners once it has committed. The only engine file
 * that begins, commits or rolls back the store's transactions.
 * SPDX-License-Identifier: MIT */
#include "engine_int.h"

/* Declares every registered definition as run by this owner. */
int serve_all(saga_engine *e)
{
	for (size_t i = 0; i < e->ndefs; i++) {
		const saga_definition *d = e->defs[i]->def;
		if (e->defs[i]->stored_only)
			continue;
		int rc = e->st->serve(e->store, d->name, d->version);
		if (rc)
			return store_err(e, rc);
	}
	return SAGA_OK;
}

/* The lease lapsed (this process was paused, or could not reach the store,
 * for longer than it): another process may own every instance it held.
 * Nothing in memory is written again; callbacks running finish and their
 * answers are dropped (the new owner invokes them again with the same
 * key). The process goes on as a new owner. */
static int ownership_lost(saga_engine *e)
{
	log_at(e, SAGA_LOG_ERROR, "lease.lost", "%s; dropping what it held and registering anew",
	       e->st->errmsg(e->store));
	for (size_t i = 0; i < e->nloaded; i++)
		e->loaded[i]->lost = true; /* unloaded after the round (driver.c) */
	/* Attempts handed to the workers before now must not begin, whatever
	 * lease the new registration brings (worker_main). */
	atomic_fetch_add(&e->lease_gen, 1);
	e->ready_len = 0;
	e->active_scanned = false;
	e->next_timer = 0;
	drop_cmds(e);
	int rc = e->st->register_owner(e->store, e->lease_ms);
	if (rc)
		return store_err(e, rc);
	return serve_all(e);
}

/* Registers this engine as an owner if it is not one yet: at its first
 * write or round, so that an engine that only reads leaves no trace. */
int owner_ready(saga_engine *e)
{
	if (e->st->epoch(e->store))
		return SAGA_OK;
	int rc = e->st->register_owner(e->store, e->lease_ms);
	if (rc)
		return store_err(e, rc);
	return serve_all(e);
}

bool renew_due(saga_engine *e)
{
	return e->st->lease_left(e->store) < e->lease_ms - e->lease_ms / 3;
}

void renew_lease(saga_engine *e, const char *when)
{
	int rc = end_txn(e, ensure_txn(e));
	if (rc)
		log_at(e, SAGA_LOG_WARN, "lease.renew_failed", "cannot renew the lease %s: %s",
		       when, saga_engine_errmsg(e));
}

/* Sets begin_until from the lease as the store now has it. */
void note_lease(saga_engine *e)
{
	uint64_t left = e->st->lease_left(e->store);
	uint64_t ms = left > e->margin_ms ? left - e->margin_ms : 0;
	atomic_store(&e->begin_until, saga_sys_boot_us() + ms * 1000u);
}

int ensure_txn(saga_engine *e)
{
	if (e->in_txn)
		return SAGA_OK;
	int rc = owner_ready(e);
	if (rc)
		return rc;
	rc = e->st->begin(e->store);
	/* Lost: what is in memory is marked lost (nothing of it is written
	 * again), and the work goes on under the new registration. */
	if (rc == SAGA_EFENCED && (rc = ownership_lost(e)) == SAGA_OK)
		rc = e->st->begin(e->store);
	if (rc)
		return store_err(e, rc);
	e->in_txn = true;
	if (e->nworkers)
		note_lease(e); /* begin renewed it; only workers read it */
	return SAGA_OK;
}

void drop_events(saga_engine *e)
{
	for (size_t i = 0; i < e->nevents; i++)
		saga_free(&e->alloc, e->events[i].detail);
	e->nevents = 0;
}

/* The history rows worth a log line, logged as they are written (before
 * the commit): an instance that ends (STUCK a warning, COMPENSATED info,
 * COMPLETED debug) and an attempt that did not succeed (a retry debug, the
 * others info). */
static void log_event(saga_engine *e, const inst *in, const saga_hist *h)
{
	saga_log_level lvl = SAGA_LOG_INFO;
	const char *ev;
	if (h->type == SAGA_EVENT_STATE && ended(h->state)) {
		ev = h->state == SAGA_STUCK         ? "instance.stuck"
		     : h->state == SAGA_COMPENSATED ? "instance.compensated"
		                                    : "instance.completed";
		lvl = h->state == SAGA_STUCK       ? SAGA_LOG_WARN
		      : h->state == SAGA_COMPLETED ? SAGA_LOG_DEBUG
		                                   : SAGA_LOG_INFO;
	} else if (h->type == SAGA_EVENT_ATTEMPT_END && h->outcome != SAGA_OUTCOME_OK &&
	           h->outcome != SAGA_OUTCOME_PENDING) {
		ev = h->outcome == SAGA_OUTCOME_RETRY     ? "attempt.retry"
		     : h->outcome == SAGA_OUTCOME_FAIL    ? "attempt.failed"
		     : h->outcome == SAGA_OUTCOME_TIMEOUT ? "attempt.timeout"
		                                          : "attempt.interrupted";
		if (h->outcome == SAGA_OUTCOME_RETRY)
			lvl = SAGA_LOG_DEBUG;
	} else {
		return;
	}
	if (!log_on(e, lvl))
		return;
	const char *err =
	        h->type == SAGA_EVENT_STATE || h->outcome != SAGA_OUTCOME_NONE ? in->row.error : "";
	log_inst(e, lvl, ev, in, h->step, h->phase, h->attempt, 0, "%s%s%s", h->detail,
	         err[0] ? ": " : "", err);
}

/* Appends a history row in the open transaction and queues its event. */
int record(saga_engine *e, inst *in, saga_event_type type, int step, int phase, uint32_t attempt,
           saga_outcome outcome, const char *detail)
{
	if (in->lost)
		return SAGA_OK; /* another process's now: nothing is written */
	int rc = ensure_txn(e);
	if (rc)
		return rc;
	saga_hist h;
	h.instance = in->row.id;
	h.seq = in->row.next_seq++;
	h.fence = in->row.fence;
	h.at = now_wall(e);
	h.type = type;
	h.state = in->row.state;
	h.step = step;
	h.phase = phase;
	h.attempt = attempt;
	h.outcome = outcome;
	h.detail = detail ? detail : "";
	in->uncommitted = true;
	if ((rc = e->st->add_history(e->store, &h)))
		return store_err(e, rc);
	if ((rc = mx_record(e, in, type, step, phase, outcome, h.at)))
		return rc;
	log_event(e, in, &h);
	e->txn_rows++;
	e->txn_states |= type == SAGA_EVENT_STATE;
	if (!e->listeners)
		return SAGA_OK;
	if (e->nevents == e->events_cap) {
		size_t cap = e->events_cap ? e->events_cap * 2 : 64;
		pending_event *ev = saga_realloc(&e->alloc, e->events, cap * sizeof(*ev));
		if (!ev)
			return set_err(e, SAGA_ENOMEM, "out of memory");
		e->events = ev;
		e->events_cap = cap;
	}
	pending_event *pe = &e->events[e->nevents];
	if (!(pe->detail = saga_strdup(&e->alloc, h.detail)))
		return set_err(e, SAGA_ENOMEM, "out of memory");
	pe->ev.instance = h.instance;
	pe->ev.seq = h.seq;
	pe->ev.fence = h.fence;
	pe->ev.at_ms = h.at;
	pe->ev.type = type;
	pe->ev.state = (saga_state)h.state;
	pe->ev.step = step;
	pe->ev.step_name = (step >= 0 && in->rd && (size_t)step < in->rd->def->nsteps)
	                           ? in->rd->names[step]
	                           : NULL;
	pe->ev.phase = (saga_phase)phase;
	pe->ev.attempt = attempt;
	pe->ev.outcome = outcome;
	pe->ev.detail = pe->detail;
	e->nevents++;
	return SAGA_OK;
}

/* A history row about the current attempt: its step, phase and number. */
int record_attempt(saga_engine *e, inst *in, saga_event_type type, saga_outcome outcome,
                   const char *detail)
{
	return record(e, in, type, in->row.step, in->row.phase, in->row.attempt, outcome, detail);
}

int record_state(saga_engine *e, inst *in, const char *detail)
{
	return record(e, in, SAGA_EVENT_STATE, -1, in->row.phase, 0, SAGA_OUTCOME_NONE, detail);
}

/* Writes an instance's row (and its context when it changed). */
int put_instance(saga_engine *e, inst *in)
{
	if (in->lost)
		return SAGA_OK;
	int rc = ensure_txn(e);
	if (rc)
		return rc;
	if (in->context_changed) {
		char *text = cJSON_PrintUnformatted(in->context);
		char *copy = text ? saga_strdup(&e->alloc, text) : NULL;
		cJSON_free(text);
		if (!copy)
			return set_err(e, SAGA_ENOMEM, "out of memory");
		saga_free(&e->alloc, in->row.context);
		in->row.context = copy;
		in->context_changed = false;
	}
	in->row.updated_at = now_wall(e);
	in->uncommitted = true;
	if ((rc = e->st->update(e->store, &in->row)))
		return store_err(e, rc);
	return SAGA_OK;
}

/* Delivers the events of the last commit; called without the mutex. */
static void deliver(saga_engine *e, pending_event *evs, size_t n, listener *ls)
{
	for (size_t i = 0; i < n; i++)
		listeners_deliver(ls, &evs[i].ev);
}

static void free_events(saga_engine *e, pending_event *evs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		saga_free(&e->alloc, evs[i].detail);
	saga_free(&e->alloc, evs);
}

/* Unlocks the engine, then delivers what was committed: the queued events
 * are taken out under the mutex, so listeners run without it. */
void unlock_and_deliver(saga_engine *e)
{
	pending_event *evs = e->events;
	size_t n = e->nevents;
	listener *ls = n ? listeners_hold(e) : NULL;
	e->events = NULL;
	e->nevents = 0;
	e->events_cap = 0;
	pthread_mutex_unlock(&e->mu);
	deliver(e, evs, n, ls);
	if (n)
		listeners_release(e);
	free_events(e, evs, n);
}

/* Ends the open transaction without committing and forgets its events. */
void abort_txn(saga_engine *e)
{
	if (e->in_txn)
		e->st->rollback(e->store);
	e->in_txn = false;
	e->txn_rows = e->txn_started = 0;
	e->txn_states = false;
	drop_events(e);
	mx_drop(e);
}

/* After a commit: what the loaded instances hold is what the store holds. */
int commit_txn(saga_engine *e)
{
	if (!e->in_txn)
		return SAGA_OK;
	e->in_txn = false;
	int rc = e->st->commit(e->store);
	uint64_t rows = e->txn_rows, started = e->txn_started;
	bool states = e->txn_states;
	e->txn_rows = e->txn_started = 0;
	e->txn_states = false;
	if (rc) {
		mx_drop(e);
		return store_err(e, rc);
	}
	mx_commit(e, rows);
	/* saga_wait looks again: with workers when a state changed; without,
	 * after any round, as it may be waiting for another caller's round. */
	if (states || !e->nworkers)
		pthread_cond_broadcast(&e->wait_cv);
	e->stats.commits++;
	e->stats.history_rows += rows;
	e->stats.started += started;
	for (size_t i = 0; i < e->nloaded; i++)
		e->loaded[i]->uncommitted = false;
	return SAGA_OK;
}

/* Commits the open transaction when rc is SAGA_OK, else ends it without
 * committing; returns the result. */
int end_txn(saga_engine *e, int rc)
{
	if (rc == SAGA_OK)
		rc = commit_txn(e);
	if (rc)
		abort_txn(e);
	return rc;
}
