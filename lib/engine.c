/* The engine: registration, the driver loop, async completion, cancel,
 * operator commands and queries.
 *
 * Concurrency model: one mutex guards the engine and its SQLite connection.
 * A write transaction is only ever open while the mutex is held, and it is
 * committed before the mutex is released, so every transition of every
 * instance processed in one round shares one commit (group commit). Step
 * callbacks and listeners run with the mutex released.
 *
 * Life of a loaded instance: PROCESS (decide what comes next; may record the
 * start of an attempt) -> INVOKE (the start is committed) -> INVOKING (a
 * callback runs) -> RESULT (its answer waits to be recorded) -> PROCESS ...
 * An instance that parks (timer, breaker, async) or ends is written and
 * dropped from memory: the store holds it.
 *
 * SPDX-License-Identifier: MIT */
#include "internal.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

enum stage { ST_PROCESS, ST_INVOKE, ST_INVOKING, ST_RESULT, ST_DONE };

typedef struct reg_def {
	saga_definition *def;
	const char **names; /* step names, for history queries */
} reg_def;

typedef struct inst {
	saga_row row;
	const reg_def *rd;
	cJSON *ctx;             /* parsed context */
	bool ctx_changed;       /* ctx differs from row.context */
	enum stage stage;
	bool cancel_req;
	bool fresh_start;       /* the start of the current attempt was recorded by this process */
	bool uncommitted;       /* changed in the open transaction */
	bool has_early;         /* saga_complete arrived while the action still ran */
	saga_step_result early;
	cJSON *early_output;
	/* the answer of the last invocation */
	saga_step_result res;
	cJSON *puts;
	char err[256];
	uint64_t wall_start;    /* when the callback was invoked: its timeout counts from here */
	uint64_t wall_end;      /* when it returned */
	saga_breaker *breaker;
	saga_breaker_permit permit;
	bool has_permit;
} inst;

typedef struct pending_event {
	saga_event ev;
	char *detail;
} pending_event;

typedef struct listener {
	saga_listener_fn fn;
	void *user;
	struct listener *next;
} listener;

typedef struct breaker_entry {
	saga_breaker *b;
	struct breaker_entry *next;
} breaker_entry;

struct saga_engine {
	saga_alloc alloc;
	saga_clock clock;
	saga_log_fn log;
	void *log_user;
	saga_log_level log_level;
	unsigned int max_in_flight;
	unsigned int nworkers;
	uint64_t rng;
	saga_store *store;
	pthread_mutex_t mu;
	pthread_cond_t wake;      /* the driver: work arrived */
	pthread_cond_t work_cv;   /* workers: something to invoke */
	pthread_cond_t idle_cv;   /* saga_wait_idle */
	pthread_cond_t start_cv;  /* queued starts: their commit is done */
	struct start_wait *start_queue, *start_tail; /* starts for the driver's next commit */
	pthread_t driver_tid;
	bool driver_running;
	reg_def **defs;           /* each apart: loaded instances point to theirs */
	size_t ndefs;
	breaker_entry *breakers;
	listener *listeners;
	inst **loaded;            /* instances in memory, at most max_in_flight */
	size_t nloaded;
	int64_t *ready;           /* ids waiting to be loaded (FIFO) */
	size_t ready_head, ready_len, ready_cap;
	bool recovered;           /* the unfinished instances were queued */
	int64_t *quarantine;      /* ids of damaged rows: reported once, then skipped */
	size_t nquarantine;
	int64_t new_corrupt;      /* a damaged row found in this call, or 0 */
	uint64_t next_timer;      /* earliest stored due time; 0 = unknown */
	bool in_txn;
	uint64_t txn_rows;        /* history rows in the open transaction */
	uint64_t txn_started;     /* instances created in it */
	saga_stats stats;
	pending_event *events;
	size_t nevents, events_cap;
	unsigned int invoking;    /* callbacks running */
	bool stopping;
	bool driver_idle;
	pthread_t *threads;       /* driver + workers */
	unsigned int nthreads;
};

/* The message of the last failed call, per thread: a thread reads the
 * message of its own call, whatever other threads do meanwhile. */
static _Thread_local struct {
	const saga_engine *engine;
	char text[512];
} last_error;

struct saga_step_ctx {
	saga_engine *engine;
	inst *in;
	const saga_step_def *sd;
	saga_phase phase;
	char key[SAGA_UID_LEN + SAGA_NAME_MAX + 24];
	char action_key[SAGA_UID_LEN + SAGA_NAME_MAX + 24];
	cJSON *puts;
	char err[256];
	uint64_t deadline;      /* invocation + the step's timeout; 0 = none */
};

/* ------------------------------------------------------------------------ */
/* Small helpers                                                            */

static int set_err(saga_engine *e, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int set_err(saga_engine *e, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(last_error.text, sizeof(last_error.text), fmt, ap);
	last_error.engine = e;
	va_end(ap);
	return code;
}

/* Copies the store's message after a failed store call. */
static int store_err(saga_engine *e, int code)
{
	if (code == SAGA_ENOMEM)
		return set_err(e, code, "out of memory");
	return set_err(e, code, "%s", store_errmsg(e->store));
}

static void logf_(saga_engine *e, saga_log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void logf_(saga_engine *e, saga_log_level lvl, const char *fmt, ...)
{
	if (!e->log || lvl < e->log_level)
		return;
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	e->log(lvl, buf, e->log_user);
}

static uint64_t now_wall(saga_engine *e)
{
	return e->clock.wall_ms(e->clock.user);
}

/* The latest time the store can hold (its columns are SQLite's signed
 * 64-bit integers): a time past it means "never". */
#define TIME_END ((uint64_t)INT64_MAX)

/* t + d, saturated at TIME_END: a huge timeout, delay or deadline (the
 * policies take any uint64_t) is far in the future, never wrapped into the
 * past. */
static uint64_t time_add(uint64_t t, uint64_t d)
{
	if (t >= TIME_END || d >= TIME_END - t)
		return TIME_END;
	return t + d;
}

const char *saga_engine_errmsg(const saga_engine *e)
{
	if (!e)
		return "engine is NULL";
	return last_error.engine == e ? last_error.text : "no error";
}

static const char *phase_word(int phase)
{
	return phase == SAGA_PHASE_ACTION ? "action" : "compensation";
}

static const saga_step_def *step_def(const inst *in, int step)
{
	return &in->rd->def->steps[step];
}

/* ------------------------------------------------------------------------ */
/* Registered definitions, breakers, listeners                              */

static const reg_def *find_def(saga_engine *e, const char *name, int version)
{
	const reg_def *best = NULL;
	for (size_t i = 0; i < e->ndefs; i++) {
		const saga_definition *d = e->defs[i]->def;
		if (strcmp(d->name, name) != 0)
			continue;
		if (version > 0 ? d->version == version
		                : (!best || d->version > best->def->version))
			best = e->defs[i];
	}
	return best;
}

int saga_engine_register(saga_engine *e, const saga_definition *def)
{
	if (!e || !def)
		return SAGA_EINVAL;
	char msg[256];
	pthread_mutex_lock(&e->mu);
	int rc = saga_definition_validate(def, msg, sizeof(msg));
	if (rc) {
		rc = set_err(e, rc, "%s", msg);
		goto out;
	}
	if (find_def(e, def->name, def->version)) {
		rc = set_err(e, SAGA_EEXISTS, "definition '%s' version %d is already registered",
		             def->name, def->version);
		goto out;
	}
	char *snap = saga_definition_snapshot(def);
	if (!snap) {
		rc = set_err(e, SAGA_ENOMEM, "out of memory");
		goto out;
	}
	rc = store_put_definition(e->store, def->name, def->version, snap);
	cJSON_free(snap);
	if (rc) {
		rc = rc == SAGA_ECONFLICT ? set_err(e, rc, "%s", store_errmsg(e->store))
		                          : store_err(e, rc);
		goto out;
	}
	/* The array moves as it grows; the reg_def it points to does not. */
	reg_def **defs = saga_realloc(&e->alloc, e->defs, (e->ndefs + 1) * sizeof(*defs));
	if (!defs) {
		rc = set_err(e, SAGA_ENOMEM, "out of memory");
		goto out;
	}
	e->defs = defs;
	reg_def *rd = saga_calloc(&e->alloc, 1, sizeof(*rd));
	if (!rd || (rc = saga_definition_clone(&rd->def, def, &e->alloc)) ||
	    !(rd->names = saga_calloc(&e->alloc, def->nsteps, sizeof(char *)))) {
		if (rd)
			saga_definition_free(rd->def);
		saga_free(&e->alloc, rd);
		rc = set_err(e, SAGA_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < def->nsteps; i++)
		rd->names[i] = rd->def->steps[i].name;
	e->defs[e->ndefs++] = rd;
	/* Instances of this definition parked in the store may now run. */
	e->recovered = false;
	e->next_timer = 0;
	pthread_cond_signal(&e->wake);
out:
	pthread_mutex_unlock(&e->mu);
	return rc;
}

static saga_breaker *find_breaker(saga_engine *e, const char *name)
{
	for (breaker_entry *b = e->breakers; b; b = b->next)
		if (strcmp(saga_breaker_name(b->b), name) == 0)
			return b->b;
	return NULL;
}

int saga_engine_add_breaker(saga_engine *e, const char *name, const saga_breaker_config *cfg)
{
	if (!e || !name || !cfg)
		return SAGA_EINVAL;
	pthread_mutex_lock(&e->mu);
	int rc;
	if (find_breaker(e, name)) {
		rc = set_err(e, SAGA_EEXISTS, "breaker '%s' already exists", name);
		goto out;
	}
	breaker_entry *be = saga_malloc(&e->alloc, sizeof(*be));
	if (!be) {
		rc = set_err(e, SAGA_ENOMEM, "out of memory");
		goto out;
	}
	rc = saga_breaker_new(&be->b, name, cfg, &e->clock);
	if (rc) {
		saga_free(&e->alloc, be);
		rc = set_err(e, rc, "breaker '%s': %s", name,
		             rc == SAGA_EINVAL ? "invalid configuration" : saga_strerror(rc));
		goto out;
	}
	be->next = e->breakers;
	e->breakers = be;
out:
	pthread_mutex_unlock(&e->mu);
	return rc;
}

saga_breaker *saga_engine_breaker(saga_engine *e, const char *name)
{
	if (!e || !name)
		return NULL;
	pthread_mutex_lock(&e->mu);
	saga_breaker *b = find_breaker(e, name);
	pthread_mutex_unlock(&e->mu);
	return b;
}

int saga_engine_add_listener(saga_engine *e, saga_listener_fn fn, void *user)
{
	if (!e || !fn)
		return SAGA_EINVAL;
	listener *l = saga_malloc(&e->alloc, sizeof(*l));
	if (!l)
		return set_err(e, SAGA_ENOMEM, "out of memory");
	l->fn = fn;
	l->user = user;
	pthread_mutex_lock(&e->mu);
	l->next = e->listeners;
	e->listeners = l;
	pthread_mutex_unlock(&e->mu);
	return SAGA_OK;
}

/* ------------------------------------------------------------------------ */
/* Transactions and events                                                  */

static int ensure_txn(saga_engine *e)
{
	if (e->in_txn)
		return SAGA_OK;
	int rc = store_begin(e->store);
	if (rc)
		return store_err(e, rc);
	e->in_txn = true;
	return SAGA_OK;
}

static void drop_events(saga_engine *e)
{
	for (size_t i = 0; i < e->nevents; i++)
		saga_free(&e->alloc, e->events[i].detail);
	e->nevents = 0;
}

/* Appends a history row in the open transaction and queues its event. */
static int record(saga_engine *e, inst *in, saga_event_type type, int step, int phase,
                  uint32_t attempt, saga_outcome outcome, const char *detail)
{
	int rc = ensure_txn(e);
	if (rc)
		return rc;
	saga_hist h = { in->row.id, now_wall(e), type, in->row.state, step, phase, attempt,
		        outcome, detail ? detail : "" };
	int64_t seq = 0;
	if ((rc = store_add_history(e->store, &h, &seq)))
		return store_err(e, rc);
	e->txn_rows++;
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
	pe->ev.seq = seq;
	pe->ev.at_ms = h.at;
	pe->ev.type = type;
	pe->ev.state = (saga_state)h.state;
	pe->ev.step = step;
	pe->ev.step_name = (step >= 0 && in->rd && (size_t)step < in->rd->def->nsteps)
	                           ? in->rd->names[step] : NULL;
	pe->ev.phase = (saga_phase)phase;
	pe->ev.attempt = attempt;
	pe->ev.outcome = outcome;
	pe->ev.detail = pe->detail;
	e->nevents++;
	return SAGA_OK;
}

static int record_state(saga_engine *e, inst *in, const char *detail)
{
	return record(e, in, SAGA_EVENT_STATE, -1, in->row.phase, 0, SAGA_OUTCOME_NONE, detail);
}

/* Writes an instance's row (and its context when it changed). */
static int write_row(saga_engine *e, inst *in)
{
	int rc = ensure_txn(e);
	if (rc)
		return rc;
	if (in->ctx_changed) {
		char *text = cJSON_PrintUnformatted(in->ctx);
		char *copy = text ? saga_strdup(&e->alloc, text) : NULL;
		cJSON_free(text);
		if (!copy)
			return set_err(e, SAGA_ENOMEM, "out of memory");
		saga_free(&e->alloc, in->row.context);
		in->row.context = copy;
		in->ctx_changed = false;
	}
	in->row.updated_at = now_wall(e);
	in->uncommitted = true;
	if ((rc = store_update(e->store, &in->row)))
		return store_err(e, rc);
	return SAGA_OK;
}

static void free_inst(saga_engine *e, inst *in)
{
	if (!in)
		return;
	if (in->has_permit)
		saga_breaker_record(in->breaker, &in->permit, SAGA_CALL_IGNORED);
	cJSON_Delete(in->ctx);
	cJSON_Delete(in->puts);
	cJSON_Delete(in->early_output);
	saga_free(&e->alloc, in->row.context);
	saga_free(&e->alloc, in);
}

/* Delivers the events of the last commit; called without the mutex. */
static void deliver(saga_engine *e, pending_event *evs, size_t n, listener *ls)
{
	for (size_t i = 0; i < n; i++)
		for (listener *l = ls; l; l = l->next)
			l->fn(&evs[i].ev, l->user);
}

static void free_events(saga_engine *e, pending_event *evs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		saga_free(&e->alloc, evs[i].detail);
	saga_free(&e->alloc, evs);
}

/* Unlocks the engine, then delivers what was committed: the queued events
 * are taken out under the mutex, so listeners run without it. */
static void unlock_and_deliver(saga_engine *e)
{
	pending_event *evs = e->events;
	size_t n = e->nevents;
	listener *ls = e->listeners;
	e->events = NULL;
	e->nevents = 0;
	e->events_cap = 0;
	pthread_mutex_unlock(&e->mu);
	deliver(e, evs, n, ls);
	free_events(e, evs, n);
}

static bool is_loaded(saga_engine *e, int64_t id)
{
	for (size_t i = 0; i < e->nloaded; i++)
		if (e->loaded[i]->row.id == id)
			return true;
	return false;
}

static int push_ready(saga_engine *e, int64_t id)
{
	if (e->ready_len == e->ready_cap) {
		size_t cap = e->ready_cap ? e->ready_cap * 2 : 256;
		int64_t *q = saga_malloc(&e->alloc, cap * sizeof(*q));
		if (!q)
			return set_err(e, SAGA_ENOMEM, "out of memory");
		for (size_t i = 0; i < e->ready_len; i++)
			q[i] = e->ready[(e->ready_head + i) % e->ready_cap];
		saga_free(&e->alloc, e->ready);
		e->ready = q;
		e->ready_cap = cap;
		e->ready_head = 0;
	}
	e->ready[(e->ready_head + e->ready_len) % e->ready_cap] = id;
	e->ready_len++;
	return SAGA_OK;
}

static int64_t pop_ready(saga_engine *e)
{
	int64_t id = e->ready[e->ready_head];
	e->ready_head = (e->ready_head + 1) % e->ready_cap;
	e->ready_len--;
	return id;
}

/* A stored row the engine could have written: the step in range for its
 * phase and state, counters in range. A damaged store must give
 * SAGA_ECORRUPT, never an out-of-bounds step. */
static bool row_consistent(const saga_row *r, const saga_definition *d)
{
	int n = (int)d->nsteps;
	if (r->fwd_started < 0 || r->fwd_started > n || r->attempt > UINT32_MAX / 2 ||
	    r->def_version < 1)
		return false;
	if (r->inflight || r->pending)
		return r->step >= 0 && r->step < n && !(r->inflight && r->pending);
	if (r->phase == SAGA_PHASE_COMPENSATION)
		return r->step >= -1 && r->step < n && r->step < r->fwd_started;
	return r->step >= 0 && r->step <= n;
}

/* Parses a stored context. A parse failure is ENOMEM when the text is
 * well-formed JSON (cJSON ran out of memory), ECORRUPT otherwise. */
static int parse_context(saga_engine *e, cJSON **out, const char *text, int64_t id)
{
	*out = cJSON_Parse(text);
	if (*out && cJSON_IsObject(*out))
		return SAGA_OK;
	bool valid = false;
	int rc = SAGA_OK;
	if (!*out && (rc = store_json_valid(e->store, text, &valid)))
		return store_err(e, rc);
	if (!*out && valid)
		return set_err(e, SAGA_ENOMEM, "out of memory");
	cJSON_Delete(*out);
	*out = NULL;
	return set_err(e, SAGA_ECORRUPT, "instance %lld: stored context is not a JSON object",
	               (long long)id);
}

/* Loads an instance row into memory. SAGA_ENOTFOUND when the id is unknown;
 * *out is NULL (and 0 returned) when its definition is not registered. */
static int load_inst(saga_engine *e, inst **out, int64_t id, const char *uid)
{
	*out = NULL;
	inst *in = saga_calloc(&e->alloc, 1, sizeof(*in));
	if (!in)
		return set_err(e, SAGA_ENOMEM, "out of memory");
	int rc = uid ? store_load_uid(e->store, &in->row, uid, &e->alloc)
	             : store_load(e->store, &in->row, id, &e->alloc);
	if (rc) {
		saga_free(&e->alloc, in->row.context);
		saga_free(&e->alloc, in);
		if (rc == SAGA_ENOTFOUND)
			return set_err(e, rc, "no such instance");
		return store_err(e, rc);
	}
	in->rd = find_def(e, in->row.def_name, in->row.def_version);
	if (!in->rd) {
		logf_(e, SAGA_LOG_WARN, "instance %lld: definition '%s' version %d is not registered",
		      (long long)in->row.id, in->row.def_name, in->row.def_version);
		free_inst(e, in);
		return SAGA_OK;
	}
	if (!row_consistent(&in->row, in->rd->def)) {
		int64_t bad = in->row.id;
		free_inst(e, in);
		return set_err(e, SAGA_ECORRUPT, "instance %lld: its stored state is inconsistent",
		               (long long)bad);
	}
	int64_t id_loaded = in->row.id;
	rc = parse_context(e, &in->ctx, in->row.context, id_loaded);
	if (rc) {
		free_inst(e, in);
		return rc;
	}
	*out = in;
	return SAGA_OK;
}

/* ------------------------------------------------------------------------ */
/* The state machine                                                        */

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

static bool ended(const saga_row *r)
{
	return r->state == SAGA_COMPLETED || r->state == SAGA_COMPENSATED || r->state == SAGA_STUCK;
}

/* Leaves the forward path: compensate every started step, newest first. A
 * step whose last answer was a definite FAIL applied nothing and is skipped. */
static int start_compensation(saga_engine *e, inst *in, saga_reason reason, bool skip_current)
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
static bool past_no_return(const inst *in)
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
static int apply_outcome(saga_engine *e, inst *in, saga_outcome outcome, cJSON *puts,
                         const char *errtext)
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
	if ((rc = record(e, in, SAGA_EVENT_ATTEMPT_END, r->step, r->phase, r->attempt, outcome,
	                 errtext)))
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
				cJSON *old = cJSON_GetObjectItemCaseSensitive(in->ctx, item->string);
				bool kept = old ? cJSON_ReplaceItemViaPointer(in->ctx, old, item)
				                : cJSON_AddItemToObject(in->ctx, item->string, item);
				if (!kept) {
					cJSON_Delete(item);
					return set_err(e, SAGA_ENOMEM, "out of memory");
				}
				item = next;
			}
			in->ctx_changed = true;
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
		const saga_retry_policy *p = r->phase == SAGA_PHASE_ACTION
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
		return start_compensation(e, in, outcome == SAGA_OUTCOME_TIMEOUT
		                                         ? SAGA_REASON_TIMEOUT : SAGA_REASON_FAILURE,
		                          false);
	}
	}
}

enum next { NEXT_INVOKE, NEXT_RELEASE };

/* Decides what the instance does next; records the start of an attempt when
 * one is due (the caller commits before invoking it). */
static int advance(saga_engine *e, inst *in, enum next *next)
{
	saga_row *r = &in->row;
	const saga_definition *d = in->rd->def;
	int rc;
	*next = NEXT_RELEASE;
	for (;;) {
		uint64_t now = now_wall(e);
		if (ended(r))
			return SAGA_OK;
		/* A whole-instance deadline stops forward work before the pivot. */
		uint64_t fd = forward_deadline(in);
		if (r->phase == SAGA_PHASE_ACTION && !past_no_return(in) && fd && now >= fd) {
			if (r->inflight || r->pending)
				rc = record(e, in, SAGA_EVENT_ATTEMPT_END, r->step, r->phase, r->attempt,
				            SAGA_OUTCOME_TIMEOUT, "instance deadline passed");
			else
				rc = SAGA_OK;
			if (rc || (rc = start_compensation(e, in, SAGA_REASON_TIMEOUT,
			                                   false)))
				return rc;
			continue;
		}
		if (in->cancel_req) {
			/* saga_cancel came while an attempt ran: it has answered. */
			in->cancel_req = false;
			if (r->phase == SAGA_PHASE_ACTION && !past_no_return(in)) {
				if ((rc = start_compensation(e, in, SAGA_REASON_CANCEL, false)))
					return rc;
				continue;
			}
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
			/* Started before a crash with no outcome: invoke it again. */
			if ((rc = record(e, in, SAGA_EVENT_ATTEMPT_END, r->step, r->phase, r->attempt,
			                 SAGA_OUTCOME_NONE, "interrupted: no outcome recorded")))
				return rc;
			r->inflight = false;
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
		const char *bname = saga_def_breaker(d, (size_t)r->step);
		if (bname) {
			saga_breaker *b = find_breaker(e, bname);
			uint64_t after = 0;
			if (b) {
				int brc = saga_breaker_acquire(b, &in->permit, &after);
				if (brc == SAGA_EOPEN) {
					char msg[96];
					saga_fmt(msg, sizeof(msg), "breaker '%s' open; retry after %llu ms",
					         bname, (unsigned long long)after);
					if ((rc = record(e, in, SAGA_EVENT_BREAKER_REFUSED, r->step, r->phase,
					                 r->attempt, SAGA_OUTCOME_NONE, msg)))
						return rc;
					return park(e, in, time_add(now, after ? after : 10));
				}
				if (brc == SAGA_OK) {
					in->breaker = b;
					in->has_permit = true;
				}
			} else {
				logf_(e, SAGA_LOG_WARN, "step '%s': breaker '%s' is not defined",
				      d->steps[r->step].name, bname);
			}
		}
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
		if ((rc = record(e, in, SAGA_EVENT_ATTEMPT_START, r->step, r->phase, r->attempt,
		                 SAGA_OUTCOME_NONE, NULL)))
			return rc;
		*next = NEXT_INVOKE;
		return SAGA_OK;
	}
}

/* The deadline of an attempt invoked at `invoked`; 0 = no timeout. */
static uint64_t attempt_deadline(const inst *in, uint64_t invoked)
{
	uint64_t t = saga_def_timeout(in->rd->def, (size_t)in->row.step,
	                              (saga_phase)in->row.phase);
	return t ? time_add(invoked, t) : 0;
}

/* Turns an invocation's answer into an outcome (late answers time out). The
 * attempt's deadline counts from the invocation; written with the answer,
 * it is what a PENDING step waits for, also after a restart. */
static int apply_result(saga_engine *e, inst *in)
{
	saga_row *r = &in->row;
	r->attempt_deadline = attempt_deadline(in, in->wall_start);
	saga_outcome oc;
	switch (in->res) {
	case SAGA_STEP_OK: oc = SAGA_OUTCOME_OK; break;
	case SAGA_STEP_FAIL: oc = SAGA_OUTCOME_FAIL; break;
	case SAGA_STEP_RETRY: oc = SAGA_OUTCOME_RETRY; break;
	case SAGA_STEP_PENDING: oc = SAGA_OUTCOME_PENDING; break;
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
		if ((rc = record(e, in, SAGA_EVENT_LATE, r->step, r->phase, r->attempt, oc, msg)))
			return rc;
		oc = SAGA_OUTCOME_TIMEOUT;
		saga_fmt(in->err, sizeof(in->err), "attempt timed out");
	}
	cJSON *puts = in->puts;
	in->puts = NULL;
	if (in->has_early) {
		/* The completion came before the callback answered PENDING. */
		in->has_early = false;
		if (oc == SAGA_OUTCOME_PENDING) {
			oc = in->early == SAGA_STEP_OK ? SAGA_OUTCOME_OK
			   : in->early == SAGA_STEP_FAIL ? SAGA_OUTCOME_FAIL : SAGA_OUTCOME_RETRY;
			cJSON_Delete(puts);
			puts = in->early_output;
			in->early_output = NULL;
			saga_fmt(in->err, sizeof(in->err), "completed asynchronously");
		}
		cJSON_Delete(in->early_output);
		in->early_output = NULL;
	}
	rc = apply_outcome(e, in, oc, oc == SAGA_OUTCOME_OK ? puts : NULL, in->err);
	cJSON_Delete(puts);
	in->err[0] = '\0';
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Rounds                                                                   */

static int queue_id(int64_t id, void *user)
{
	saga_engine *e = user;
	return push_ready(e, id) ? 1 : 0;
}

static bool quarantined(saga_engine *e, int64_t id)
{
	for (size_t i = 0; i < e->nquarantine; i++)
		if (e->quarantine[i] == id)
			return true;
	return false;
}

static int quarantine_add(saga_engine *e, int64_t id)
{
	int64_t *q = saga_realloc(&e->alloc, e->quarantine, (e->nquarantine + 1) * sizeof(*q));
	if (!q)
		return set_err(e, SAGA_ENOMEM, "out of memory");
	q[e->nquarantine++] = id;
	e->quarantine = q;
	return SAGA_OK;
}

/* Brings due instances into memory, up to max_in_flight. */
static int fill(saga_engine *e)
{
	int rc;
	if (!e->recovered) {
		e->recovered = true;
		if ((rc = store_scan_active(e->store, queue_id, e)))
			return store_err(e, rc);
	}
	uint64_t now = now_wall(e);
	if (e->ready_len == 0 && e->nloaded < e->max_in_flight &&
	    (e->next_timer == 0 || e->next_timer <= now)) {
		size_t before = e->ready_len;
		size_t want = e->max_in_flight - e->nloaded + e->nquarantine;
		int room = want < INT_MAX ? (int)want : INT_MAX;
		if ((rc = store_scan_due(e->store, now, room, queue_id, e)))
			return store_err(e, rc);
		if (e->ready_len - before < (size_t)room) {
			uint64_t nd = 0;
			if ((rc = store_next_due(e->store, &nd)))
				return store_err(e, rc);
			/* Later parks lower next_timer; UINT64_MAX means none stored. */
			e->next_timer = nd ? (nd > now ? nd : now + 1) : UINT64_MAX;
		}
	}
	while (e->ready_len && e->nloaded < e->max_in_flight) {
		int64_t id = pop_ready(e);
		if (is_loaded(e, id) || quarantined(e, id))
			continue;
		inst *in;
		rc = load_inst(e, &in, id, NULL);
		if (rc == SAGA_ENOTFOUND)
			continue;
		if (rc == SAGA_ECORRUPT) {
			/* One damaged row must not hold up the others. */
			logf_(e, SAGA_LOG_ERROR, "%s; the instance is skipped", saga_engine_errmsg(e));
			if ((rc = quarantine_add(e, id)))
				return rc;
			e->new_corrupt = id;
			continue;
		}
		if (rc)
			return rc;
		if (!in)
			continue;
		in->stage = ST_PROCESS;
		e->loaded[e->nloaded++] = in;
	}
	return SAGA_OK;
}

static void unload(saga_engine *e, size_t i)
{
	free_inst(e, e->loaded[i]);
	e->loaded[i] = e->loaded[--e->nloaded];
}

/* Ends the open transaction without committing and forgets its events. */
static void abort_txn(saga_engine *e)
{
	if (e->in_txn)
		store_rollback(e->store);
	e->in_txn = false;
	e->txn_rows = e->txn_started = 0;
	drop_events(e);
}

/* After a commit: what the loaded instances hold is what the store holds. */
static int commit_txn(saga_engine *e)
{
	if (!e->in_txn)
		return SAGA_OK;
	e->in_txn = false;
	int rc = store_commit(e->store);
	uint64_t rows = e->txn_rows, started = e->txn_started;
	e->txn_rows = e->txn_started = 0;
	if (rc)
		return store_err(e, rc);
	e->stats.commits++;
	e->stats.history_rows += rows;
	e->stats.started += started;
	for (size_t i = 0; i < e->nloaded; i++)
		e->loaded[i]->uncommitted = false;
	return SAGA_OK;
}

/* After a failed transaction: the instances it changed are reloaded from the
 * store, which still holds their last committed state. */
static void discard_round(saga_engine *e)
{
	abort_txn(e);
	for (size_t i = e->nloaded; i-- > 0;) {
		inst *in = e->loaded[i];
		if (!in->uncommitted && in->stage != ST_RESULT)
			continue;
		int64_t id = in->row.id;
		unload(e, i);
		push_ready(e, id);
	}
}

/* Processes every loaded instance that is not being invoked, and commits.
 * Instances that must be invoked are left in ST_INVOKE. Returns the
 * commit's result; *fill_rc receives that of bringing instances in, which
 * does not stop the others. */
static int process_and_commit(saga_engine *e, int *fill_rc)
{
	*fill_rc = fill(e);
	int rc;
	for (size_t i = 0; i < e->nloaded; i++) {
		inst *in = e->loaded[i];
		if (in->stage != ST_RESULT && in->stage != ST_PROCESS)
			continue;
		/* From here its memory is ahead of the store until the commit. */
		in->uncommitted = true;
		if (in->stage == ST_RESULT) {
			in->fresh_start = false;
			if ((rc = apply_result(e, in)))
				goto fail;
			in->stage = ST_PROCESS;
		}
		enum next next;
		if ((rc = advance(e, in, &next)) || (rc = write_row(e, in)))
			goto fail;
		in->stage = next == NEXT_INVOKE ? ST_INVOKE : ST_DONE;
	}
	if ((rc = commit_txn(e)))
		goto fail;
	/* Parked and finished instances leave memory only once durable. */
	for (size_t i = e->nloaded; i-- > 0;)
		if (e->loaded[i]->stage == ST_DONE)
			unload(e, i);
	return SAGA_OK;
fail:
	discard_round(e);
	return rc;
}

static int process_round(saga_engine *e)
{
	int fill_rc;
	int rc = process_and_commit(e, &fill_rc);
	return rc ? rc : fill_rc;
}

/* "<uid>/<step>/<phase>" without printf: this runs for every attempt. The
 * buffer always fits (uid, a step name of at most SAGA_NAME_MAX, a phase). */
static void key_join(char *dst, size_t size, const char *uid, const char *step,
                     const char *phase)
{
	size_t a = strlen(uid), b = strlen(step), c = strlen(phase);
	if (a + b + c + 3 > size) {
		dst[0] = '\0';
		return;
	}
	memcpy(dst, uid, a);
	dst[a] = '/';
	memcpy(dst + a + 1, step, b);
	dst[a + 1 + b] = '/';
	memcpy(dst + a + b + 2, phase, c + 1);
}

/* Runs one callback; called without the mutex. */
static void invoke(saga_engine *e, inst *in)
{
	saga_row *r = &in->row;
	const saga_step_def *sd = step_def(in, r->step);
	saga_step_ctx c;
	memset(&c, 0, sizeof(c));
	c.engine = e;
	c.in = in;
	c.sd = sd;
	c.phase = (saga_phase)r->phase;
	key_join(c.key, sizeof(c.key), r->uid, sd->name, phase_word(r->phase));
	key_join(c.action_key, sizeof(c.action_key), r->uid, sd->name, "action");
	saga_step_fn fn = r->phase == SAGA_PHASE_ACTION ? sd->action : sd->compensation;
	/* The attempt's clocks start now, however long it waited to run: its
	 * timeout, and the call's duration for its breaker (slow calls). */
	in->wall_start = now_wall(e);
	c.deadline = attempt_deadline(in, in->wall_start);
	if (in->has_permit)
		in->permit.started_ms = e->clock.mono_ms(e->clock.user);
	in->res = fn(&c, sd->user);
	in->wall_end = now_wall(e);
	if (in->has_permit) {
		/* The breaker learns of the call as it ends, so the call's own
		 * duration decides a slow call, not the wait for the round that
		 * records the answer. It watches the health of a service: a
		 * definite answer (OK, FAIL: a business refusal, PENDING) shows it
		 * working; RETRY and an answer after the timeout show it failing. */
		bool late = c.deadline && in->wall_end > c.deadline;
		saga_breaker_record(in->breaker, &in->permit,
		                    in->res != SAGA_STEP_RETRY && !late ? SAGA_CALL_SUCCESS
		                                                        : SAGA_CALL_FAILURE);
		in->has_permit = false;
	}
	in->puts = c.puts;
	memcpy(in->err, c.err, sizeof(in->err));
}

/* Has any loaded instance work for the driver? */
static bool has_stage(saga_engine *e, enum stage st)
{
	for (size_t i = 0; i < e->nloaded; i++)
		if (e->loaded[i]->stage == st)
			return true;
	return false;
}

/* New instances written in one transaction: saga_start_batch commits them
 * alone, saga_run_due_start with a round. */
typedef struct start_set {
	const saga_start_request *reqs;
	size_t n;
	int64_t *ids;
	int *created;
	struct fresh_slot {
		inst *in;   /* the new instance ready to run, or NULL */
		bool moved; /* it went to the driver */
	} *fresh;           /* per request, or NULL */
} start_set;

static int starts_check(saga_engine *e, start_set *ss);
static int starts_insert(saga_engine *e, start_set *ss);
static void starts_to_driver(saga_engine *e, start_set *ss);
static void starts_end(saga_engine *e, start_set *ss, int rc);

/* Starts waiting for a round's commit: from saga_run_due_start, or queued
 * by saga_start_batch for the driver (workers), whose callers wait. */
struct start_wait {
	start_set *ss;
	int rc;
	bool done;
	char msg[256];  /* the driver's message when rc != 0 */
	struct start_wait *next;
};

/* Answers the waiting starts with rc and wakes their callers. */
static void answer_starts(saga_engine *e, struct start_wait *q, int rc)
{
	for (struct start_wait *w = q; w; w = w->next) {
		starts_end(e, w->ss, rc);
		w->rc = rc;
		if (rc)
			saga_fmt(w->msg, sizeof(w->msg), "%s", saga_engine_errmsg(e));
		w->done = true;
	}
	pthread_cond_broadcast(&e->start_cv);
}

/* Inserts the waiting starts in the round's transaction, hands them to the
 * driver, and processes and commits the round with their first starts.
 * Each learns the commit's result; a failed fill is returned after. */
static int round_with_starts(saga_engine *e, struct start_wait *q)
{
	int rc = SAGA_OK, fill_rc = SAGA_OK;
	for (struct start_wait *w = q; w && rc == SAGA_OK; w = w->next)
		rc = starts_insert(e, w->ss);
	if (rc) {
		discard_round(e);
	} else {
		for (struct start_wait *w = q; w; w = w->next)
			starts_to_driver(e, w->ss);
		rc = process_and_commit(e, &fill_rc);
	}
	answer_starts(e, q, rc);
	return rc ? rc : fill_rc;
}

/* One caller-driven round: process, commit, invoke, then record the answers.
 * When attempts whose starts the last round made durable are waiting, they
 * are invoked first: what else is due (new instances, timers) is processed
 * with their answers, in the same commit. With ss, new instances are
 * started in that commit. */
static int run_round(saga_engine *e, unsigned int *ran, start_set *ss)
{
	bool first = !has_stage(e, ST_INVOKE);
	struct start_wait w = { ss, SAGA_OK, false, "", NULL };
	int rc = SAGA_OK;
	if (first)
		rc = ss ? round_with_starts(e, &w) : process_round(e);
	inst *batch[SAGA_MAX_IN_FLIGHT_MAX];
	size_t n = 0;
	for (size_t i = 0; i < e->nloaded && n < sizeof(batch) / sizeof(batch[0]); i++) {
		if (e->loaded[i]->stage == ST_INVOKE) {
			e->loaded[i]->stage = ST_INVOKING;
			batch[n++] = e->loaded[i];
		}
	}
	e->invoking += (unsigned)n;
	unlock_and_deliver(e);
	for (size_t i = 0; i < n; i++)
		invoke(e, batch[i]);
	pthread_mutex_lock(&e->mu);
	e->invoking -= (unsigned)n;
	for (size_t i = 0; i < n; i++)
		batch[i]->stage = ST_RESULT;
	e->stats.attempts += n;
	if (ran)
		*ran += (unsigned)n;
	if (rc)
		return rc;
	if (ss && !first)
		return round_with_starts(e, &w);
	return n ? process_round(e) : SAGA_OK;
}

/* The healthy instances ran; a damaged one found on the way is reported
 * (once: it is skipped from then on). */
static int report_corrupt(saga_engine *e, int rc)
{
	if (rc == SAGA_OK && e->new_corrupt)
		rc = set_err(e, SAGA_ECORRUPT,
		             "instance %lld is damaged in the store and was skipped; the others ran",
		             (long long)e->new_corrupt);
	e->new_corrupt = 0;
	return rc;
}

/* saga_run_due, and with ss saga_run_due_start (e is not NULL). */
static int run_due(saga_engine *e, unsigned int *ran, start_set *ss)
{
	if (e->nworkers)
		return set_err(e, SAGA_ESTATE, "the engine runs its own workers");
	pthread_mutex_lock(&e->mu);
	e->new_corrupt = 0;
	int rc = ss ? starts_check(e, ss) : SAGA_OK;
	if (rc == SAGA_OK)
		rc = report_corrupt(e, run_round(e, ran, ss));
	unlock_and_deliver(e);
	return rc;
}

int saga_run_due(saga_engine *e, unsigned int *ran)
{
	if (ran)
		*ran = 0;
	return e ? run_due(e, ran, NULL) : SAGA_EINVAL;
}

int saga_run_due_start(saga_engine *e, unsigned int *ran, int64_t *ids, int *created,
                       const saga_start_request *reqs, size_t n)
{
	if (ran)
		*ran = 0;
	if (!e || !ids || (!reqs && n))
		return SAGA_EINVAL;
	start_set ss = { reqs, n, ids, created, NULL };
	return run_due(e, ran, &ss);
}

static bool nothing_due(saga_engine *e)
{
	return e->nloaded == 0 && e->ready_len == 0 && e->recovered &&
	       (e->next_timer == UINT64_MAX || e->next_timer > now_wall(e));
}

int saga_run_until_idle(saga_engine *e)
{
	if (!e)
		return SAGA_EINVAL;
	if (e->nworkers)
		return set_err(e, SAGA_ESTATE, "the engine runs its own workers");
	pthread_mutex_lock(&e->mu);
	e->new_corrupt = 0;
	int rc = SAGA_OK;
	for (;;) {
		unsigned int ran = 0;
		if ((rc = run_round(e, &ran, NULL)))
			break;
		if (ran == 0 && nothing_due(e))
			break;
	}
	rc = report_corrupt(e, rc);
	unlock_and_deliver(e);
	return rc;
}

int saga_next_due(saga_engine *e, uint64_t *out)
{
	if (!e || !out)
		return SAGA_EINVAL;
	pthread_mutex_lock(&e->mu);
	uint64_t nd = 0;
	int rc = store_next_due(e->store, &nd);
	if (rc)
		rc = store_err(e, rc);
	if (e->nloaded || e->ready_len || !e->recovered)
		nd = now_wall(e);
	*out = nd;
	pthread_mutex_unlock(&e->mu);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Worker threads                                                           */

static void *worker_main(void *arg)
{
	saga_engine *e = arg;
	pthread_mutex_lock(&e->mu);
	for (;;) {
		inst *in = NULL;
		for (size_t i = 0; i < e->nloaded; i++) {
			if (e->loaded[i]->stage == ST_INVOKE) {
				in = e->loaded[i];
				break;
			}
		}
		if (!in) {
			if (e->stopping)
				break;
			pthread_cond_wait(&e->work_cv, &e->mu);
			continue;
		}
		in->stage = ST_INVOKING;
		e->invoking++;
		pthread_mutex_unlock(&e->mu);
		invoke(e, in);
		pthread_mutex_lock(&e->mu);
		in->stage = ST_RESULT;
		e->stats.attempts++;
		e->invoking--;
		pthread_cond_signal(&e->wake);
	}
	pthread_mutex_unlock(&e->mu);
	return NULL;
}

/* Waits on e->wake until `ms` of the system's monotonic clock have passed or
 * `until_stop` and the engine is stopping; other wake-ups are ignored when
 * until_stop is set. Called with the mutex. */
static void driver_sleep(saga_engine *e, uint64_t ms, bool until_stop)
{
	uint64_t end = saga_sys_mono_ms(NULL) + ms;
	for (;;) {
		uint64_t now = saga_sys_mono_ms(NULL);
		if (now >= end || e->stopping)
			return;
		uint64_t left = end - now;
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += (long)(left % 1000) * 1000000L;
		ts.tv_sec += (time_t)(left / 1000) + ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
		pthread_cond_timedwait(&e->wake, &e->mu, &ts);
		if (!until_stop)
			return;
	}
}

/* The driver's wait after its n-th failed round in a row (n >= 1):
 * ROUND_BACKOFF_FIRST_MS doubled each time, at most ROUND_BACKOFF_MAX_MS. */
#define ROUND_BACKOFF_FIRST_MS 100u
#define ROUND_BACKOFF_MAX_MS 5000u

static uint64_t round_backoff(uint64_t failures)
{
	uint64_t ms = ROUND_BACKOFF_FIRST_MS;
	for (uint64_t i = 1; i < failures && ms < ROUND_BACKOFF_MAX_MS; i++)
		ms *= 2;
	return ms < ROUND_BACKOFF_MAX_MS ? ms : ROUND_BACKOFF_MAX_MS;
}

static void *driver_main(void *arg)
{
	saga_engine *e = arg;
	uint64_t failures = 0; /* failed rounds in a row */
	int last_rc = SAGA_OK;
	pthread_mutex_lock(&e->mu);
	e->driver_tid = pthread_self();
	e->driver_running = true;
	while (!e->stopping) {
		struct start_wait *q = e->start_queue;
		e->start_queue = e->start_tail = NULL;
		int rc = q ? round_with_starts(e, q) : process_round(e);
		/* A failing store (a full disk) fails every round: the change of
		 * state is logged, not each round. */
		if (rc) {
			failures++;
			if (failures == 1)
				logf_(e, SAGA_LOG_ERROR,
				      "engine rounds failing: %s (retrying after %u ms, backing off to "
				      "%u ms while they fail)", saga_engine_errmsg(e),
				      ROUND_BACKOFF_FIRST_MS, ROUND_BACKOFF_MAX_MS);
			else if (rc != last_rc)
				logf_(e, SAGA_LOG_ERROR, "engine rounds still failing, now: %s",
				      saga_engine_errmsg(e));
		} else if (failures) {
			logf_(e, SAGA_LOG_WARN, "engine rounds succeed again after %llu failed rounds",
			      (unsigned long long)failures);
			failures = 0;
		}
		last_rc = rc;
		if (has_stage(e, ST_INVOKE))
			pthread_cond_broadcast(&e->work_cv);
		bool busy = has_stage(e, ST_RESULT) || e->start_queue ||
		            (e->ready_len && e->nloaded < e->max_in_flight);
		bool idle = e->invoking == 0 && !has_stage(e, ST_INVOKE) && nothing_due(e);
		e->driver_idle = idle;
		if (idle)
			pthread_cond_broadcast(&e->idle_cv);
		unlock_and_deliver(e);
		pthread_mutex_lock(&e->mu);
		if (rc) {
			/* Back off whatever is waiting (answers, starts, timers):
			 * retrying at once fails again at once. Only close wakes it. */
			driver_sleep(e, round_backoff(failures), true);
			continue;
		}
		if (busy || e->stopping || has_stage(e, ST_RESULT) || e->start_queue)
			continue;
		/* Sleep until a timer is due, work arrives, or a short while
		 * passes (an injected clock does not wake a condition variable). */
		uint64_t wait_ms = 50;
		uint64_t now = now_wall(e);
		if (e->next_timer != UINT64_MAX && e->next_timer > now && e->next_timer - now < wait_ms)
			wait_ms = e->next_timer - now;
		driver_sleep(e, wait_ms, false);
	}
	/* Starts queued while the engine was closing are refused. */
	if (e->start_queue) {
		set_err(e, SAGA_ECLOSED, "engine is closing");
		answer_starts(e, e->start_queue, SAGA_ECLOSED);
		e->start_queue = e->start_tail = NULL;
	}
	e->driver_running = false;
	pthread_cond_broadcast(&e->work_cv);
	pthread_mutex_unlock(&e->mu);
	return NULL;
}

int saga_wait_idle(saga_engine *e, uint64_t timeout_ms)
{
	if (!e)
		return SAGA_EINVAL;
	if (!e->nworkers)
		return saga_run_until_idle(e);
	uint64_t start = saga_sys_mono_ms(NULL);
	pthread_mutex_lock(&e->mu);
	e->driver_idle = false;
	pthread_cond_signal(&e->wake);
	int rc = SAGA_OK;
	while (!(e->driver_idle && e->invoking == 0 && e->nloaded == 0 && e->ready_len == 0)) {
		uint64_t el = saga_sys_mono_ms(NULL) - start;
		if (el >= timeout_ms) {
			rc = set_err(e, SAGA_EBUSY, "still busy after %llu ms",
			             (unsigned long long)timeout_ms);
			break;
		}
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 20 * 1000000L;
		ts.tv_sec += ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
		pthread_cond_timedwait(&e->idle_cv, &e->mu, &ts);
	}
	pthread_mutex_unlock(&e->mu);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Open and close                                                           */

static uint64_t seed_from_system(void)
{
	uint64_t s = 0;
	if (getrandom(&s, sizeof(s), 0) != (ssize_t)sizeof(s))
		s = saga_sys_wall_ms(NULL) ^ ((uint64_t)getpid() << 32) ^ saga_sys_mono_ms(NULL);
	return s;
}

/* A 128-bit id in hex: 48 bits of the creation time in ms, then 80 random
 * bits. Unique across stores, so a participant never sees the same
 * idempotency key from two instances; time-ordered, so the store's uid index
 * grows at its end instead of touching a random page per new instance. */
static void make_uid(saga_engine *e, char out[SAGA_UID_LEN + 1])
{
	unsigned char b[16];
	if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b)) {
		uint64_t x = saga_random_next(&e->rng) ^ seed_from_system();
		uint64_t y = saga_random_next(&e->rng);
		memcpy(b, &x, 8);
		memcpy(b + 8, &y, 8);
	}
	uint64_t ms = now_wall(e);
	for (int i = 5; i >= 0; i--) {
		b[i] = (unsigned char)(ms & 0xff);
		ms >>= 8;
	}
	static const char hex[] = "0123456789abcdef";
	for (int i = 0; i < 16; i++) {
		out[2 * i] = hex[b[i] >> 4];
		out[2 * i + 1] = hex[b[i] & 15];
	}
	out[SAGA_UID_LEN] = '\0';
}

/* Checks every option against its documented range (saga.h), before
 * anything is allocated or any file is touched. */
static int check_options(const saga_options *o, char *errmsg, size_t errsize)
{
	if (!o->path || !*o->path) {
		saga_fmt(errmsg, errsize, "invalid options: path is required");
		return SAGA_EINVAL;
	}
	if (o->version != SAGA_OPTIONS_VERSION) {
		saga_fmt(errmsg, errsize, "invalid options: version is %u, not SAGA_OPTIONS_VERSION (%u)",
		         o->version, (unsigned)SAGA_OPTIONS_VERSION);
		return SAGA_EINVAL;
	}
	if (o->durability != SAGA_DURABILITY_FULL && o->durability != SAGA_DURABILITY_NORMAL) {
		saga_fmt(errmsg, errsize, "invalid options: durability %d is neither FULL nor NORMAL",
		         (int)o->durability);
		return SAGA_EINVAL;
	}
	if (o->workers > SAGA_WORKERS_MAX) {
		saga_fmt(errmsg, errsize, "invalid options: workers is %u, at most %u", o->workers,
		         (unsigned)SAGA_WORKERS_MAX);
		return SAGA_EINVAL;
	}
	if (o->max_in_flight > SAGA_MAX_IN_FLIGHT_MAX) {
		saga_fmt(errmsg, errsize, "invalid options: max_in_flight is %u, at most %u (0 = 256)",
		         o->max_in_flight, (unsigned)SAGA_MAX_IN_FLIGHT_MAX);
		return SAGA_EINVAL;
	}
	if ((int)o->log_level < SAGA_LOG_DEBUG || (int)o->log_level > SAGA_LOG_ERROR) {
		saga_fmt(errmsg, errsize, "invalid options: log_level %d is not DEBUG..ERROR",
		         (int)o->log_level);
		return SAGA_EINVAL;
	}
	if (o->busy_timeout_ms > SAGA_BUSY_TIMEOUT_MAX) {
		saga_fmt(errmsg, errsize, "invalid options: busy_timeout_ms is %lu, at most %lu (0 = 5000)",
		         (unsigned long)o->busy_timeout_ms, (unsigned long)SAGA_BUSY_TIMEOUT_MAX);
		return SAGA_EINVAL;
	}
	return SAGA_OK;
}

int saga_engine_open(saga_engine **out, const saga_options *o, char *errmsg, size_t errsize)
{
	if (out)
		*out = NULL;
	if (!out || !o) {
		saga_fmt(errmsg, errsize, "invalid arguments: out and options are required");
		return SAGA_EINVAL;
	}
	int rc = check_options(o, errmsg, errsize);
	if (rc)
		return rc;
	saga_alloc a = saga_default_alloc;
	if (o->allocator.malloc_fn || o->allocator.realloc_fn || o->allocator.free_fn) {
		if (!o->allocator.malloc_fn || !o->allocator.realloc_fn || !o->allocator.free_fn) {
			saga_fmt(errmsg, errsize, "allocator: set all three functions or none");
			return SAGA_EINVAL;
		}
		a.malloc_fn = o->allocator.malloc_fn;
		a.realloc_fn = o->allocator.realloc_fn;
		a.free_fn = o->allocator.free_fn;
		a.user = o->allocator.user;
	}
	saga_engine *e = saga_calloc(&a, 1, sizeof(*e));
	if (!e) {
		saga_fmt(errmsg, errsize, "out of memory");
		return SAGA_ENOMEM;
	}
	e->alloc = a;
	saga_clock_resolve(&e->clock, &o->clock);
	e->log = o->log;
	e->log_user = o->log_user;
	e->log_level = o->log_level;
	e->max_in_flight = o->max_in_flight ? o->max_in_flight : 256;
	e->nworkers = o->workers;
	e->rng = o->seed ? o->seed : seed_from_system();
	bool mu = false, c1 = false, c2 = false, c3 = false, c4 = false;
	if (pthread_mutex_init(&e->mu, NULL) != 0 || !(mu = true) ||
	    pthread_cond_init(&e->wake, NULL) != 0 || !(c1 = true) ||
	    pthread_cond_init(&e->work_cv, NULL) != 0 || !(c2 = true) ||
	    pthread_cond_init(&e->idle_cv, NULL) != 0 || !(c3 = true) ||
	    pthread_cond_init(&e->start_cv, NULL) != 0 || !(c4 = true)) {
		saga_fmt(errmsg, errsize, "cannot create a mutex or condition variable");
		rc = SAGA_ERROR;
		goto fail;
	}
	e->loaded = saga_calloc(&a, e->max_in_flight, sizeof(*e->loaded));
	if (!e->loaded) {
		saga_fmt(errmsg, errsize, "out of memory");
		rc = SAGA_ENOMEM;
		goto fail;
	}
	if ((rc = store_open(&e->store, o->path, o->durability, o->busy_timeout_ms, &a, errmsg,
	                     errsize)))
		goto fail;
	if (e->nworkers) {
		e->threads = saga_calloc(&a, e->nworkers + 1, sizeof(pthread_t));
		if (!e->threads) {
			saga_fmt(errmsg, errsize, "out of memory");
			rc = SAGA_ENOMEM;
			goto fail;
		}
		for (unsigned int i = 0; i <= e->nworkers; i++) {
			if (pthread_create(&e->threads[i], NULL, i == 0 ? driver_main : worker_main,
			                   e) != 0) {
				saga_fmt(errmsg, errsize, "cannot start a worker thread");
				rc = SAGA_ERROR;
				goto fail;
			}
			e->nthreads++;
		}
	}
	*out = e;
	return SAGA_OK;
fail:
	if (e->nthreads) {
		pthread_mutex_lock(&e->mu);
		e->stopping = true;
		pthread_cond_broadcast(&e->wake);
		pthread_cond_broadcast(&e->work_cv);
		pthread_mutex_unlock(&e->mu);
		for (unsigned int i = 0; i < e->nthreads; i++)
			pthread_join(e->threads[i], NULL);
	}
	saga_free(&a, e->threads);
	store_close(e->store);
	saga_free(&a, e->loaded);
	if (c4)
		pthread_cond_destroy(&e->start_cv);
	if (c3)
		pthread_cond_destroy(&e->idle_cv);
	if (c2)
		pthread_cond_destroy(&e->work_cv);
	if (c1)
		pthread_cond_destroy(&e->wake);
	if (mu)
		pthread_mutex_destroy(&e->mu);
	saga_free(&a, e);
	return rc;
}

void saga_engine_close(saga_engine *e)
{
	if (!e)
		return;
	pthread_mutex_lock(&e->mu);
	e->stopping = true;
	pthread_cond_broadcast(&e->wake);
	pthread_cond_broadcast(&e->work_cv);
	pthread_mutex_unlock(&e->mu);
	for (unsigned int i = 0; i < e->nthreads; i++)
		pthread_join(e->threads[i], NULL);
	/* Record the answers of callbacks that finished; starts already
	 * recorded but not invoked are resumed at the next open. */
	pthread_mutex_lock(&e->mu);
	bool results = has_stage(e, ST_RESULT);
	for (size_t i = e->nloaded; i-- > 0;)
		if (e->loaded[i]->stage == ST_INVOKE || e->loaded[i]->stage == ST_PROCESS)
			unload(e, i);
	if (results && process_round(e) != SAGA_OK)
		logf_(e, SAGA_LOG_ERROR, "close: %s", saga_engine_errmsg(e));
	unlock_and_deliver(e);
	while (e->nloaded)
		unload(e, 0);
	drop_events(e);
	saga_free(&e->alloc, e->events);
	for (size_t i = 0; i < e->ndefs; i++) {
		saga_definition_free(e->defs[i]->def);
		saga_free(&e->alloc, e->defs[i]->names);
		saga_free(&e->alloc, e->defs[i]);
	}
	saga_free(&e->alloc, e->defs);
	while (e->breakers) {
		breaker_entry *b = e->breakers;
		e->breakers = b->next;
		saga_breaker_free(b->b);
		saga_free(&e->alloc, b);
	}
	while (e->listeners) {
		listener *l = e->listeners;
		e->listeners = l->next;
		saga_free(&e->alloc, l);
	}
	store_close(e->store);
	saga_free(&e->alloc, e->ready);
	saga_free(&e->alloc, e->quarantine);
	saga_free(&e->alloc, e->loaded);
	saga_free(&e->alloc, e->threads);
	pthread_cond_destroy(&e->start_cv);
	pthread_cond_destroy(&e->idle_cv);
	pthread_cond_destroy(&e->work_cv);
	pthread_cond_destroy(&e->wake);
	pthread_mutex_destroy(&e->mu);
	saga_alloc a = e->alloc;
	saga_free(&a, e);
}

/* ------------------------------------------------------------------------ */
/* Starting                                                                 */

/* The in-memory copy of a row just inserted, so that it need not be read
 * back; NULL when memory is short (it is then loaded from the store). */
static inst *fresh_inst(saga_engine *e, const saga_row *r, const reg_def *rd)
{
	inst *in = saga_calloc(&e->alloc, 1, sizeof(*in));
	if (!in)
		return NULL;
	in->row = *r;
	in->rd = rd;
	in->row.context = saga_strdup(&e->alloc, r->context);
	if (!in->row.context || !(in->ctx = cJSON_Parse(r->context)) || !cJSON_IsObject(in->ctx)) {
		free_inst(e, in);
		return NULL;
	}
	return in;
}

/* Inserts one instance in the open transaction; *id is the existing
 * instance's when the business key is taken. With fresh, *fresh may receive
 * the new instance ready to run. */
static int start_one(saga_engine *e, const saga_start_request *q, int64_t *id, int *created,
                     inst **fresh)
{
	*created = 0;
	const reg_def *rd = find_def(e, q->definition, 0);
	if (!rd)
		return set_err(e, SAGA_ENOTFOUND, "definition '%s' is not registered", q->definition);
	int rc;
	if (q->business_key) {
		rc = store_find_bkey(e->store, id, q->business_key);
		if (rc == SAGA_OK)
			return SAGA_OK;
		if (rc != SAGA_ENOTFOUND)
			return store_err(e, rc);
	}
	char *text = q->input ? cJSON_PrintUnformatted(q->input) : NULL;
	if (q->input && !text)
		return set_err(e, SAGA_ENOMEM, "out of memory");
	uint64_t now = now_wall(e);
	inst tmp;
	memset(&tmp, 0, sizeof(tmp));
	saga_row *r = &tmp.row;
	tmp.rd = rd;
	make_uid(e, r->uid);
	saga_fmt(r->def_name, sizeof(r->def_name), "%s", rd->def->name);
	r->def_version = rd->def->version;
	if (q->business_key) {
		r->has_bkey = true;
		saga_fmt(r->bkey, sizeof(r->bkey), "%s", q->business_key);
	}
	r->state = SAGA_RUNNING;
	r->phase = SAGA_PHASE_ACTION;
	r->due_at = now;
	r->deadline_at = rd->def->deadline_ms ? time_add(now, rd->def->deadline_ms) : 0;
	r->created_at = r->updated_at = now;
	r->context = text ? text : (char *)"{}";
	if ((rc = ensure_txn(e)) == SAGA_OK) {
		if ((rc = store_insert(e->store, r)))
			rc = store_err(e, rc);
		else
			rc = record(e, &tmp, SAGA_EVENT_CREATED, -1, 0, 0, SAGA_OUTCOME_NONE,
			            q->business_key ? q->business_key : "");
	}
	if (rc == SAGA_OK) {
		*id = r->id;
		*created = 1;
		e->txn_started++;
		if (fresh)
			*fresh = fresh_inst(e, r, rd);
	}
	cJSON_free(text);
	return rc;
}

static int check_request(saga_engine *e, const saga_start_request *q)
{
	if (!q->definition)
		return set_err(e, SAGA_EINVAL, "a definition name is needed");
	const char *bk = q->business_key;
	if (bk && (!*bk || strlen(bk) > SAGA_KEY_MAX))
		return set_err(e, SAGA_EINVAL, "business key must be 1 to %d bytes", SAGA_KEY_MAX);
	if (q->input && !cJSON_IsObject(q->input))
		return set_err(e, SAGA_EINVAL, "input must be a JSON object");
	return SAGA_OK;
}


/* Checks the requests and zeroes the answers; called with the mutex. */
static int starts_check(saga_engine *e, start_set *ss)
{
	for (size_t i = 0; i < ss->n; i++) {
		ss->ids[i] = 0;
		if (ss->created)
			ss->created[i] = 0;
	}
	int rc = SAGA_OK;
	for (size_t i = 0; i < ss->n && rc == SAGA_OK; i++) {
		rc = check_request(e, &ss->reqs[i]);
		/* Refused here, not in the transaction, where it would also fail
		 * the starts of other threads that share the commit. */
		if (rc == SAGA_OK && !find_def(e, ss->reqs[i].definition, 0))
			rc = set_err(e, SAGA_ENOTFOUND, "definition '%s' is not registered",
			             ss->reqs[i].definition);
	}
	if (rc == SAGA_OK && e->stopping)
		rc = set_err(e, SAGA_ECLOSED, "engine is closing");
	return rc;
}

/* Inserts the instances in the open transaction. With room in memory and
 * nothing queued before them, new instances go straight to the driver
 * instead of being read back: their copies wait in ss->fresh. */
static int starts_insert(saga_engine *e, start_set *ss)
{
	size_t room = e->ready_len == 0 && e->nloaded < e->max_in_flight
	                      ? e->max_in_flight - e->nloaded : 0;
	ss->fresh = room && ss->n ? saga_calloc(&e->alloc, ss->n, sizeof(*ss->fresh)) : NULL;
	int rc = SAGA_OK, made = 0;
	for (size_t i = 0; i < ss->n && rc == SAGA_OK; i++) {
		rc = start_one(e, &ss->reqs[i], &ss->ids[i], &made,
		               ss->fresh && i < room ? &ss->fresh[i].in : NULL);
		if (rc == SAGA_OK && ss->created)
			ss->created[i] = made;
	}
	return rc;
}

/* Moves the fresh copies into memory as instances to process. */
static void starts_to_driver(saga_engine *e, start_set *ss)
{
	for (size_t i = 0; ss->fresh && i < ss->n; i++) {
		struct fresh_slot *f = &ss->fresh[i];
		if (f->in && e->nloaded < e->max_in_flight) {
			f->in->stage = ST_PROCESS;
			f->in->uncommitted = true; /* reloaded if the commit fails */
			e->loaded[e->nloaded++] = f->in;
			f->in = NULL;
			f->moved = true;
		}
	}
}

/* After the commit (rc == 0) or its failure: the instances left out of
 * memory are queued, or every answer is zeroed; the copies are freed. */
static void starts_end(saga_engine *e, start_set *ss, int rc)
{
	for (size_t i = 0; i < ss->n; i++) {
		if (rc) {
			ss->ids[i] = 0;
			if (ss->created)
				ss->created[i] = 0;
		} else if (!(ss->fresh && ss->fresh[i].moved) && push_ready(e, ss->ids[i])) {
			/* Durable now; a full queue only delays it until the next scan. */
			e->recovered = false;
		}
	}
	for (size_t i = 0; ss->fresh && i < ss->n; i++)
		free_inst(e, ss->fresh[i].in);
	saga_free(&e->alloc, ss->fresh);
	ss->fresh = NULL;
	if (rc == SAGA_OK)
		pthread_cond_signal(&e->wake);
}

int saga_start_batch(saga_engine *e, int64_t *ids, int *created,
                     const saga_start_request *reqs, size_t n)
{
	if (!e || !ids || (!reqs && n))
		return SAGA_EINVAL;
	start_set ss = { reqs, n, ids, created, NULL };
	pthread_mutex_lock(&e->mu);
	int rc = starts_check(e, &ss);
	if (rc == SAGA_OK && n && e->driver_running && !pthread_equal(pthread_self(), e->driver_tid)) {
		/* With workers, the starts join the driver's next commit (a
		 * listener on the driver thread commits its own). */
		struct start_wait w = { &ss, SAGA_OK, false, "", NULL };
		if (e->start_tail)
			e->start_tail->next = &w;
		else
			e->start_queue = &w;
		e->start_tail = &w;
		pthread_cond_signal(&e->wake);
		while (!w.done)
			pthread_cond_wait(&e->start_cv, &e->mu);
		if ((rc = w.rc) != SAGA_OK)
			set_err(e, rc, "%s", w.msg);
		pthread_mutex_unlock(&e->mu);
		return rc;
	}
	if (rc == SAGA_OK)
		rc = starts_insert(e, &ss);
	if (rc == SAGA_OK)
		rc = commit_txn(e);
	if (rc)
		abort_txn(e);
	else
		starts_to_driver(e, &ss);
	starts_end(e, &ss, rc);
	unlock_and_deliver(e);
	return rc;
}

int saga_start(saga_engine *e, int64_t *out_id, int *created, const char *definition,
               const char *bkey, const cJSON *input)
{
	saga_start_request q = { definition, bkey, input };
	if (!out_id)
		return SAGA_EINVAL;
	return saga_start_batch(e, out_id, created, &q, 1);
}

/* ------------------------------------------------------------------------ */
/* Commands on one instance: complete, cancel, operator                    */

/* Finds a loaded instance by id, or loads it into a temporary. *temp tells
 * whether the caller must commit and free it. */
static int get_inst(saga_engine *e, inst **out, bool *temp, int64_t id, const char *uid)
{
	for (size_t i = 0; i < e->nloaded; i++) {
		inst *in = e->loaded[i];
		if (uid ? strcmp(in->row.uid, uid) == 0 : in->row.id == id) {
			*out = in;
			*temp = false;
			return SAGA_OK;
		}
	}
	*temp = true;
	int rc = load_inst(e, out, id, uid);
	if (rc == SAGA_OK && !*out)
		rc = set_err(e, SAGA_ENOTFOUND, "the instance's definition is not registered");
	return rc;
}

/* Frees the instance if the command loaded it for itself; returns rc. */
static int release_temp(saga_engine *e, inst *in, bool temp, int rc)
{
	if (temp)
		free_inst(e, in);
	return rc;
}

/* Writes and commits a command's changes; a temporary instance is queued to
 * run and freed. */
static int finish_command(saga_engine *e, inst *in, bool temp, bool changed, int rc)
{
	if (rc == SAGA_OK && changed)
		rc = write_row(e, in);
	if (rc == SAGA_OK)
		rc = commit_txn(e);
	if (rc) {
		if (temp)
			abort_txn(e);
		else
			discard_round(e);
	} else if (temp && changed && in->row.due_at) {
		/* Due now: queue it; due later: the timer scan will find it. */
		if (in->row.due_at <= now_wall(e))
			push_ready(e, in->row.id);
		else if (e->next_timer == 0 || in->row.due_at < e->next_timer)
			e->next_timer = in->row.due_at;
	}
	release_temp(e, in, temp, rc);
	pthread_cond_signal(&e->wake);
	return rc;
}

/* Splits "<uid>/<step>/<phase>". */
static int parse_key(const char *key, char uid[SAGA_UID_LEN + 1], char step[SAGA_NAME_MAX + 1],
                     int *phase)
{
	const char *a = strchr(key, '/');
	const char *b = a ? strrchr(key, '/') : NULL;
	if (!a || b == a || a - key != SAGA_UID_LEN || b - a - 1 > SAGA_NAME_MAX || b - a - 1 < 1)
		return SAGA_EINVAL;
	memcpy(uid, key, SAGA_UID_LEN);
	uid[SAGA_UID_LEN] = '\0';
	memcpy(step, a + 1, (size_t)(b - a - 1));
	step[b - a - 1] = '\0';
	if (strcmp(b + 1, "action") == 0)
		*phase = SAGA_PHASE_ACTION;
	else if (strcmp(b + 1, "compensation") == 0)
		*phase = SAGA_PHASE_COMPENSATION;
	else
		return SAGA_EINVAL;
	return SAGA_OK;
}

int saga_complete(saga_engine *e, const char *key, saga_step_result result, cJSON *output)
{
	if (!e || !key || (result != SAGA_STEP_OK && result != SAGA_STEP_FAIL &&
	                   result != SAGA_STEP_RETRY)) {
		cJSON_Delete(output);
		return e ? set_err(e, SAGA_EINVAL, "complete: a key and OK, FAIL or RETRY are needed")
		         : SAGA_EINVAL;
	}
	char uid[SAGA_UID_LEN + 1], step[SAGA_NAME_MAX + 1];
	int phase;
	if (parse_key(key, uid, step, &phase)) {
		cJSON_Delete(output);
		return set_err(e, SAGA_EINVAL, "'%s' is not a step key", key);
	}
	if (output && !cJSON_IsObject(output)) {
		cJSON_Delete(output);
		return set_err(e, SAGA_EINVAL, "complete: output must be a JSON object");
	}
	pthread_mutex_lock(&e->mu);
	inst *in = NULL;
	bool temp = false;
	int rc = get_inst(e, &in, &temp, 0, uid);
	if (rc)
		goto out;
	saga_row *r = &in->row;
	int idx = saga_definition_step_index(in->rd->def, step);
	if (idx < 0) {
		rc = release_temp(e, in, temp,
		            set_err(e, SAGA_ENOTFOUND, "no step '%s' in '%s'", step, r->def_name));
		goto out;
	}
	uint64_t now = now_wall(e);
	bool current = r->pending && r->step == idx && r->phase == phase &&
	               (temp || in->stage == ST_PROCESS);
	if (current && !(r->attempt_deadline && now >= r->attempt_deadline)) {
		saga_outcome oc = result == SAGA_STEP_OK ? SAGA_OUTCOME_OK
		                : result == SAGA_STEP_FAIL ? SAGA_OUTCOME_FAIL : SAGA_OUTCOME_RETRY;
		rc = apply_outcome(e, in, oc, output, "completed asynchronously");
		rc = finish_command(e, in, temp, true, rc);
		goto out;
	}
	if (current) {
		/* The timeout passed and the timer has not fired yet. */
		rc = apply_outcome(e, in, SAGA_OUTCOME_TIMEOUT, NULL, "async step timed out");
		if (rc == SAGA_OK)
			rc = record(e, in, SAGA_EVENT_LATE, idx, phase, r->attempt, SAGA_OUTCOME_NONE,
			            "completion after the timeout; ignored");
		rc = finish_command(e, in, temp, true, rc);
		if (rc == SAGA_OK)
			rc = set_err(e, SAGA_ELATE, "completion of '%s' after its timeout; ignored", key);
		goto out;
	}
	if (!temp && in->stage != ST_PROCESS && r->inflight && r->step == idx && r->phase == phase &&
	    !in->has_early) {
		/* The action has not answered yet: keep the completion for when it
		 * answers PENDING. It is recorded now; if the process dies before
		 * the answer, the step is invoked again with the same key. */
		rc = record(e, in, SAGA_EVENT_EARLY_COMPLETION, idx, phase, r->attempt,
		            SAGA_OUTCOME_NONE, "completion before the action answered");
		if (rc == SAGA_OK)
			rc = commit_txn(e);
		if (rc) {
			abort_txn(e);
		} else {
			in->has_early = true;
			in->early = result;
			in->early_output = output;
			output = NULL;
		}
		goto out;
	}
	int last = 0;
	if ((rc = store_last_outcome(e->store, r->id, idx, phase, &last))) {
		rc = release_temp(e, in, temp, store_err(e, rc));
		goto out;
	}
	bool late = last == SAGA_OUTCOME_TIMEOUT;
	rc = record(e, in, late ? SAGA_EVENT_LATE : SAGA_EVENT_DUPLICATE, idx, phase, r->attempt,
	            SAGA_OUTCOME_NONE, late ? "completion after the timeout; ignored"
	                                    : "second completion; ignored");
	rc = finish_command(e, in, temp, false, rc);
	if (rc == SAGA_OK)
		rc = late ? set_err(e, SAGA_ELATE, "completion of '%s' after its timeout; ignored", key)
		          : set_err(e, SAGA_EDUPLICATE, "'%s' was already completed; ignored", key);
out:
	/* apply_outcome moved the members it kept; the container is ours. */
	cJSON_Delete(output);
	unlock_and_deliver(e);
	return rc;
}


int saga_cancel(saga_engine *e, int64_t id)
{
	if (!e)
		return SAGA_EINVAL;
	pthread_mutex_lock(&e->mu);
	inst *in;
	bool temp;
	int rc = get_inst(e, &in, &temp, id, NULL);
	if (rc)
		goto out;
	saga_row *r = &in->row;
	if (ended(r)) {
		rc = set_err(e, SAGA_ESTATE, "instance %lld has ended (%s)", (long long)id,
		             saga_state_name((saga_state)r->state));
	} else if (past_no_return(in)) {
		rc = set_err(e, SAGA_ESTATE,
		             "instance %lld is past its pivot (point of no return): it can only go "
		             "forward", (long long)id);
	} else if (r->phase == SAGA_PHASE_COMPENSATION) {
		rc = set_err(e, SAGA_ESTATE, "instance %lld is already compensating", (long long)id);
	}
	if (rc) {
		release_temp(e, in, temp, rc);
		goto out;
	}
	if (!temp && in->stage != ST_PROCESS) {
		/* An attempt is running: compensation starts after its answer. */
		in->cancel_req = true;
		rc = record(e, in, SAGA_EVENT_OPERATOR, -1, r->phase, 0, SAGA_OUTCOME_NONE,
		            "cancel requested");
		if (rc == SAGA_OK)
			rc = commit_txn(e);
		if (rc) {
			in->cancel_req = false;
			abort_txn(e);
		}
		goto out;
	}
	if ((rc = record(e, in, SAGA_EVENT_OPERATOR, -1, r->phase, 0, SAGA_OUTCOME_NONE,
	                 "cancel")) == SAGA_OK) {
		/* An async step still pending is uncertain: it is compensated. */
		rc = start_compensation(e, in, SAGA_REASON_CANCEL, false);
	}
	rc = finish_command(e, in, temp, true, rc);
out:
	unlock_and_deliver(e);
	return rc;
}

enum op { OP_RETRY, OP_SKIP, OP_RESUME };

static int operator_cmd(saga_engine *e, int64_t id, enum op op)
{
	static const char *const names[] = { "operator: retry", "operator: skip",
		                             "operator: resume forward" };
	if (!e)
		return SAGA_EINVAL;
	pthread_mutex_lock(&e->mu);
	inst *in;
	bool temp;
	int rc = get_inst(e, &in, &temp, id, NULL);
	if (rc)
		goto out;
	saga_row *r = &in->row;
	if (r->state != SAGA_STUCK)
		rc = set_err(e, SAGA_ESTATE, "instance %lld is not STUCK (%s)", (long long)id,
		             saga_state_name((saga_state)r->state));
	else if (op == OP_RESUME && r->phase == SAGA_PHASE_COMPENSATION && r->comp_done_any)
		rc = set_err(e, SAGA_ESTATE,
		             "instance %lld: a compensation has completed; it cannot resume forward",
		             (long long)id);
	if (rc) {
		release_temp(e, in, temp, rc);
		goto out;
	}
	int acted_on = r->step, acted_phase = r->phase;
	r->attempt = 0;
	r->prev_delay = 0;
	r->attempt_deadline = 0;
	r->due_at = now_wall(e);
	r->error[0] = '\0';
	if (op == OP_SKIP) {
		if (r->phase == SAGA_PHASE_ACTION) {
			r->step++;
		} else {
			r->step--;
			r->comp_done_any = true;
		}
	} else if (op == OP_RESUME && r->phase == SAGA_PHASE_COMPENSATION) {
		r->phase = SAGA_PHASE_ACTION;
		r->reason = SAGA_REASON_NONE;
		r->step = r->fwd_started > 0 ? r->fwd_started - 1 : 0;
	}
	r->state = r->phase == SAGA_PHASE_ACTION ? SAGA_RUNNING : SAGA_COMPENSATING;
	rc = record(e, in, SAGA_EVENT_OPERATOR, acted_on, acted_phase, 0, SAGA_OUTCOME_NONE,
	            names[op]);
	if (rc == SAGA_OK)
		rc = record_state(e, in, "resumed by an operator");
	rc = finish_command(e, in, temp, true, rc);
out:
	unlock_and_deliver(e);
	return rc;
}

int saga_operator_retry(saga_engine *e, int64_t id)
{
	return operator_cmd(e, id, OP_RETRY);
}

int saga_operator_skip(saga_engine *e, int64_t id)
{
	return operator_cmd(e, id, OP_SKIP);
}

int saga_operator_resume(saga_engine *e, int64_t id)
{
	return operator_cmd(e, id, OP_RESUME);
}

/* ------------------------------------------------------------------------ */
/* Queries                                                                  */

int saga_get(saga_engine *e, saga_instance_info *out, int64_t id)
{
	if (!e || !out)
		return SAGA_EINVAL;
	pthread_mutex_lock(&e->mu);
	saga_row r;
	int rc = store_load(e->store, &r, id, NULL);
	if (rc == SAGA_OK)
		row_to_info(out, &r);
	else
		rc = rc == SAGA_ENOTFOUND ? set_err(e, rc, "no instance %lld", (long long)id)
		                          : store_err(e, rc);
	pthread_mutex_unlock(&e->mu);
	return rc;
}

int saga_get_context(saga_engine *e, cJSON **out, int64_t id)
{
	if (!e || !out)
		return SAGA_EINVAL;
	*out = NULL;
	pthread_mutex_lock(&e->mu);
	saga_row r;
	int rc = store_load(e->store, &r, id, &e->alloc);
	if (rc == SAGA_OK) {
		rc = parse_context(e, out, r.context, id);
		saga_free(&e->alloc, r.context);
	} else {
		rc = rc == SAGA_ENOTFOUND ? set_err(e, rc, "no instance %lld", (long long)id)
		                          : store_err(e, rc);
	}
	pthread_mutex_unlock(&e->mu);
	return rc;
}

int saga_find(saga_engine *e, int64_t *out_id, const char *bkey)
{
	if (!e || !out_id || !bkey)
		return SAGA_EINVAL;
	pthread_mutex_lock(&e->mu);
	int rc = store_find_bkey(e->store, out_id, bkey);
	if (rc && rc != SAGA_ENOTFOUND)
		rc = store_err(e, rc);
	pthread_mutex_unlock(&e->mu);
	return rc;
}

/* Query callbacks run with the engine locked: they must not call the engine.
 * (Documented in docs/api.md.) */
/* History of an instance whose definition this engine has not registered:
 * the step names come from the definition's snapshot in the store. */
static int history_from_snapshot(saga_engine *e, const saga_row *r, saga_event_fn fn,
                                 void *user)
{
	char *snap = NULL;
	int rc = store_get_definition(e->store, &snap, r->def_name, r->def_version, &e->alloc);
	if (rc)
		return rc == SAGA_ENOTFOUND ? store_history(e->store, r->id, fn, user, NULL, 0) : rc;
	cJSON *doc = cJSON_Parse(snap);
	saga_free(&e->alloc, snap);
	const cJSON *steps = cJSON_GetObjectItemCaseSensitive(doc, "steps");
	int n = cJSON_GetArraySize(steps);
	const char **names = n > 0 ? saga_calloc(&e->alloc, (size_t)n, sizeof(char *)) : NULL;
	if (!doc || (n > 0 && !names)) {
		cJSON_Delete(doc);
		return SAGA_ENOMEM;
	}
	int i = 0;
	const cJSON *st;
	cJSON_ArrayForEach(st, steps) {
		const cJSON *nm = cJSON_GetObjectItemCaseSensitive(st, "name");
		names[i++] = cJSON_IsString(nm) ? nm->valuestring : NULL;
	}
	rc = store_history(e->store, r->id, fn, user, names, (size_t)n);
	saga_free(&e->alloc, names);
	cJSON_Delete(doc);
	return rc;
}

int saga_history(saga_engine *e, int64_t id, saga_event_fn fn, void *user)
{
	if (!e || !fn)
		return SAGA_EINVAL;
	pthread_mutex_lock(&e->mu);
	saga_row r;
	int rc = store_load(e->store, &r, id, NULL);
	if (rc == SAGA_OK) {
		const reg_def *rd = find_def(e, r.def_name, r.def_version);
		if (rd)
			rc = store_history(e->store, id, fn, user, rd->names, rd->def->nsteps);
		else
			rc = history_from_snapshot(e, &r, fn, user);
	}
	if (rc)
		rc = rc == SAGA_ENOTFOUND ? set_err(e, rc, "no instance %lld", (long long)id)
		                          : store_err(e, rc);
	pthread_mutex_unlock(&e->mu);
	return rc;
}

int saga_list(saga_engine *e, int state, saga_instance_fn fn, void *user)
{
	if (!e || !fn || state >= SAGA_STATE_COUNT)
		return SAGA_EINVAL;
	pthread_mutex_lock(&e->mu);
	int rc = store_list(e->store, state, fn, user);
	if (rc)
		rc = store_err(e, rc);
	pthread_mutex_unlock(&e->mu);
	return rc;
}

int saga_counts(saga_engine *e, int64_t counts[SAGA_STATE_COUNT])
{
	if (!e || !counts)
		return SAGA_EINVAL;
	pthread_mutex_lock(&e->mu);
	int rc = store_counts(e->store, counts);
	if (rc)
		rc = store_err(e, rc);
	pthread_mutex_unlock(&e->mu);
	return rc;
}

int saga_engine_stats(saga_engine *e, saga_stats *out)
{
	if (!e || !out)
		return SAGA_EINVAL;
	pthread_mutex_lock(&e->mu);
	*out = e->stats;
	pthread_mutex_unlock(&e->mu);
	return SAGA_OK;
}

int saga_purge(saga_engine *e, int64_t *purged, int state, uint64_t older_than_ms)
{
	if (purged)
		*purged = 0;
	if (!e)
		return SAGA_EINVAL;
	if (state != SAGA_COMPLETED && state != SAGA_COMPENSATED && state != -1)
		return set_err(e, SAGA_EINVAL, "only COMPLETED or COMPENSATED instances can be purged");
	int rc = SAGA_OK;
	int64_t total = 0;
	for (int pass = 0; pass < 2 && rc == SAGA_OK; pass++) {
		int st = pass == 0 ? SAGA_COMPLETED : SAGA_COMPENSATED;
		if (state != -1 && state != st)
			continue;
		/* Small transactions, so running sagas are not held up for long. */
		for (;;) {
			pthread_mutex_lock(&e->mu);
			uint64_t now = now_wall(e);
			uint64_t before = now > older_than_ms ? now - older_than_ms : 0;
			int64_t n = 0;
			if ((rc = ensure_txn(e)) == SAGA_OK &&
			    (rc = store_purge_batch(e->store, st, before, &n)) != SAGA_OK)
				rc = store_err(e, rc);
			if (rc == SAGA_OK)
				rc = commit_txn(e);
			if (rc)
				abort_txn(e);
			pthread_mutex_unlock(&e->mu);
			if (rc || n == 0)
				break;
			total += n;
		}
	}
	if (purged)
		*purged = total;
	return rc;
}

/* ------------------------------------------------------------------------ */
/* The step context                                                         */

int64_t saga_step_instance(const saga_step_ctx *c)
{
	return c ? c->in->row.id : 0;
}

const char *saga_step_name(const saga_step_ctx *c)
{
	return c ? c->sd->name : NULL;
}

saga_phase saga_step_phase(const saga_step_ctx *c)
{
	return c ? c->phase : SAGA_PHASE_ACTION;
}

uint32_t saga_step_attempt(const saga_step_ctx *c)
{
	return c ? c->in->row.attempt : 0;
}

const char *saga_step_key(const saga_step_ctx *c)
{
	return c ? c->key : NULL;
}

const char *saga_step_action_key(const saga_step_ctx *c)
{
	return c ? c->action_key : NULL;
}

const cJSON *saga_step_context(const saga_step_ctx *c)
{
	return c ? c->in->ctx : NULL;
}

int saga_step_put(saga_step_ctx *c, const char *key, cJSON *value)
{
	if (!c || !key || !*key || !value) {
		cJSON_Delete(value);
		return SAGA_EINVAL;
	}
	if (!c->puts && !(c->puts = cJSON_CreateObject())) {
		cJSON_Delete(value);
		return SAGA_ENOMEM;
	}
	if (cJSON_GetObjectItemCaseSensitive(c->puts, key)) {
		if (!cJSON_ReplaceItemInObjectCaseSensitive(c->puts, key, value)) {
			cJSON_Delete(value);
			return SAGA_ENOMEM;
		}
		return SAGA_OK;
	}
	if (!cJSON_AddItemToObject(c->puts, key, value)) {
		cJSON_Delete(value);
		return SAGA_ENOMEM;
	}
	return SAGA_OK;
}

uint64_t saga_step_deadline(const saga_step_ctx *c)
{
	return c ? c->deadline : 0;
}

void saga_step_set_error(saga_step_ctx *c, const char *message)
{
	if (c && message)
		saga_fmt(c->err, sizeof(c->err), "%s", message);
}
