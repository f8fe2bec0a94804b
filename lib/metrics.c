/* Metrics: the engine's counters and histograms, and saga_metrics_write,
 * which renders them with the gauges read from the store in the Prometheus
 * text format 0.0.4 or OpenMetrics 1.0.0.
 *
 * Counting costs no allocation per event and no lock of its own: record
 * (txn.c) hands each history row to mx_record under the engine mutex, which
 * notes the counts in a list that lives as long as the engine (grown, never
 * shrunk); the commit adds them up (mx_commit) and a rollback drops them
 * (mx_drop), so the metrics count what is durable, once. Store errors are
 * counted with relaxed atomics, being found outside the mutex too.
 * SPDX-License-Identifier: MIT */
#include "engine_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Duration buckets in ms, and their bounds as written (seconds). */
static const uint64_t dur_bound[MX_BUCKETS] = { 5,    10,   25,   50,    100,   250,   500,
	                                        1000, 2500, 5000, 10000, 30000, 60000, 300000 };
static const char *const dur_le[MX_BUCKETS] = { "0.005", "0.01", "0.025", "0.05", "0.1",
	                                        "0.25",  "0.5",  "1.0",   "2.5",  "5.0",
	                                        "10.0",  "30.0", "60.0",  "300.0" };
/* History rows per commit. */
static const uint64_t rows_bound[MX_BUCKETS] = { 1,   2,   4,   8,    16,   32,   64,
	                                         128, 256, 512, 1024, 2048, 4096, 8192 };
static const char *const rows_le[MX_BUCKETS] = { "1.0",    "2.0",    "4.0",    "8.0",   "16.0",
	                                         "32.0",   "64.0",   "128.0",  "256.0", "512.0",
	                                         "1024.0", "2048.0", "4096.0", "8192.0" };

static void observe(mx_hist *h, const uint64_t bound[MX_BUCKETS], uint64_t v)
{
	size_t i = 0;
	while (i < MX_BUCKETS && v > bound[i])
		i++;
	h->n[i]++;
	h->count++;
	h->sum += v;
}

/* ---- counting ---- */

int mx_def_init(saga_engine *e, reg_def *rd)
{
	memset(&rd->mx, 0, sizeof(rd->mx));
	size_t n = rd->def->nsteps ? rd->def->nsteps : 1;
	rd->mx.steps = saga_calloc(&e->alloc, n, sizeof(mx_step));
	return rd->mx.steps ? SAGA_OK : set_err(e, SAGA_ENOMEM, "out of memory");
}

void mx_def_free(saga_engine *e, reg_def *rd)
{
	saga_free(&e->alloc, rd->mx.steps);
	rd->mx.steps = NULL;
}

static int push(saga_engine *e, uint64_t *counter, mx_hist *hist, uint64_t v)
{
	if (e->nmx == e->mx_cap) {
		size_t cap = e->mx_cap ? e->mx_cap * 2 : 64;
		mx_pend *p = saga_realloc(&e->alloc, e->mx, cap * sizeof(*p));
		if (!p)
			return set_err(e, SAGA_ENOMEM, "out of memory");
		e->mx = p;
		e->mx_cap = cap;
	}
	e->mx[e->nmx++] = (mx_pend){ counter, hist, v };
	return SAGA_OK;
}

static int outcome_slot(saga_outcome o)
{
	switch (o) {
	case SAGA_OUTCOME_OK:
		return MX_OK;
	case SAGA_OUTCOME_FAIL:
		return MX_FAIL;
	case SAGA_OUTCOME_RETRY:
		return MX_RETRY;
	case SAGA_OUTCOME_PENDING:
		return MX_PENDING;
	case SAGA_OUTCOME_TIMEOUT:
		return MX_TIMEOUT;
	case SAGA_OUTCOME_NONE:
		break;
	}
	return MX_INTERRUPTED;
}

int mx_record(saga_engine *e, const inst *in, saga_event_type type, int step, int phase,
              saga_outcome outcome, uint64_t now)
{
	if (!in->rd)
		return SAGA_OK;
	mx_def *m = (mx_def *)&in->rd->mx;
	int rc = SAGA_OK;
	switch (type) {
	case SAGA_EVENT_CREATED:
		rc = push(e, &m->started, NULL, 0);
		break;
	case SAGA_EVENT_STATE: {
		int st = in->row.state;
		if (!ended(st))
			break;
		int r = in->row.reason >= 0 && in->row.reason < MX_REASONS ? in->row.reason : 0;
		uint64_t age = now > in->row.created_at ? now - in->row.created_at : 0;
		rc = push(e, &m->ended[st][r], &m->duration[st], age);
		break;
	}
	case SAGA_EVENT_ATTEMPT_END: {
		if (step < 0 || (size_t)step >= in->rd->def->nsteps || (phase != 0 && phase != 1))
			break;
		mx_step *ms = &m->steps[step];
		/* The callback's time, when this is its answer (apply_result). */
		bool timed = in->stage == STAGE_RESULT && in->wall_end >= in->wall_start &&
		             outcome != SAGA_OUTCOME_NONE;
		rc = push(e, &ms->attempts[phase][outcome_slot(outcome)],
		          timed ? &ms->duration[phase] : NULL,
		          timed ? in->wall_end - in->wall_start : 0);
		break;
	}
	default:
		break;
	}
	return rc;
}

void mx_commit(saga_engine *e, uint64_t rows)
{
	for (size_t i = 0; i < e->nmx; i++) {
		mx_pend *p = &e->mx[i];
		if (p->counter)
			(*p->counter)++;
		if (p->hist)
			observe(p->hist, dur_bound, p->v);
	}
	e->nmx = 0;
	observe(&e->per_commit, rows_bound, rows);
}

void mx_drop(saga_engine *e)
{
	e->nmx = 0;
}

void mx_store_error(saga_engine *e, int code)
{
	if (code < 0 && code > -MX_CODES)
		atomic_fetch_add_explicit(&e->store_errors[-code], 1, memory_order_relaxed);
}

/* ---- rendering ---- */

/* The text is rendered into memory under the engine mutex, and handed to
 * the caller's writer after it is released (the writer may call the
 * engine). */
typedef struct out {
	const saga_alloc *alloc;
	bool om; /* OpenMetrics */
	int rc;  /* SAGA_ENOMEM once an append failed */
	char *buf;
	size_t len, cap;
} out;

static void put(out *o, const char *s, size_t n)
{
	if (o->rc)
		return;
	if (o->cap - o->len < n) {
		size_t cap = o->cap ? o->cap : 16384;
		while (cap - o->len < n)
			cap *= 2;
		char *b = saga_realloc(o->alloc, o->buf, cap);
		if (!b) {
			o->rc = SAGA_ENOMEM;
			return;
		}
		o->buf = b;
		o->cap = cap;
	}
	memcpy(o->buf + o->len, s, n);
	o->len += n;
}

static void puts_(out *o, const char *s)
{
	put(o, s, strlen(s));
}

static void putf(out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(out *o, const char *fmt, ...)
{
	char tmp[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n > 0)
		put(o, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* A label value: backslash, double quote and newline escaped (both formats). */
static void put_value(out *o, const char *v)
{
	for (const char *p = v; *p; p++) {
		if (*p == '\\')
			puts_(o, "\\\\");
		else if (*p == '"')
			puts_(o, "\\\"");
		else if (*p == '\n')
			puts_(o, "\\n");
		else
			put(o, p, 1);
	}
}

/* Labels: a NULL-terminated list of name, value pairs. */
static void put_labels(out *o, const char *const *lv, const char *le)
{
	bool any = false;
	for (size_t i = 0; lv && lv[i]; i += 2) {
		puts_(o, any ? "," : "{");
		puts_(o, lv[i]);
		puts_(o, "=\"");
		put_value(o, lv[i + 1]);
		puts_(o, "\"");
		any = true;
	}
	if (le) {
		puts_(o, any ? "," : "{");
		puts_(o, "le=\"");
		puts_(o, le);
		puts_(o, "\"");
		any = true;
	}
	if (any)
		puts_(o, "}");
}

enum kind { COUNTER, GAUGE, HISTOGRAM, INFO };

/* A family's HELP, TYPE (and, OpenMetrics, UNIT) lines. `name` is the
 * family's name: a counter's without _total, an info's without _info. */
static void family(out *o, const char *name, enum kind k, const char *unit, const char *help)
{
	static const char *const type[] = { "counter", "gauge", "histogram", "info" };
	const char *suffix = "";
	if (!o->om && k == COUNTER)
		suffix = "_total";
	if (!o->om && k == INFO)
		suffix = "_info";
	putf(o, "# HELP %s%s %s\n", name, suffix, help);
	putf(o, "# TYPE %s%s %s\n", name, suffix, type[!o->om && k == INFO ? GAUGE : k]);
	if (o->om && unit)
		putf(o, "# UNIT %s %s\n", name, unit);
}

static void sample(out *o, const char *name, const char *suffix, const char *const *lv, uint64_t v)
{
	puts_(o, name);
	puts_(o, suffix);
	put_labels(o, lv, NULL);
	putf(o, " %llu\n", (unsigned long long)v);
}

/* A histogram's series; `scale` 1000 writes ms as seconds, exactly. */
static void hist(out *o, const char *name, const char *const *lv, const mx_hist *h,
                 const char *const le[MX_BUCKETS], unsigned scale)
{
	uint64_t cum = 0;
	for (size_t i = 0; i <= MX_BUCKETS; i++) {
		cum += h->n[i];
		puts_(o, name);
		puts_(o, "_bucket");
		put_labels(o, lv, i < MX_BUCKETS ? le[i] : "+Inf");
		putf(o, " %llu\n", (unsigned long long)cum);
	}
	sample(o, name, "_count", lv, h->count);
	puts_(o, name);
	puts_(o, "_sum");
	put_labels(o, lv, NULL);
	if (scale == 1000)
		putf(o, " %llu.%03llu\n", (unsigned long long)(h->sum / 1000),
		     (unsigned long long)(h->sum % 1000));
	else
		putf(o, " %llu\n", (unsigned long long)h->sum);
}

static const char *const state_label[SAGA_STATE_COUNT] = { "running",      "waiting",
	                                                   "compensating", "completed",
	                                                   "compensated",  "stuck" };
static const char *const reason_label[MX_REASONS] = { "none", "failure", "timeout", "cancel",
	                                              "crash_loop" };
static const char *const outcome_label[MX_OUTCOMES] = { "ok",      "fail",    "retry",
	                                                "pending", "timeout", "interrupted" };
static const char *const phase_label[2] = { "action", "compensation" };

/* Store error codes worth a series of their own; the rest count as other. */
static const struct {
	int code;
	const char *label;
} error_label[] = {
	{ SAGA_EBUSY, "busy" },       { SAGA_EFULL, "full" },     { SAGA_EIO, "io" },
	{ SAGA_ECORRUPT, "corrupt" }, { SAGA_EFENCED, "fenced" }, { SAGA_ESTORE, "store" },
	{ SAGA_ENOMEM, "nomem" },
};
#define NERROR_LABELS (sizeof(error_label) / sizeof(error_label[0]))

static void instance_metrics(out *o, saga_engine *e)
{
	char ver[16];
	family(o, "saga_instances_started", COUNTER, NULL, "Instances created by this process.");
	for (size_t d = 0; d < e->ndefs; d++) {
		const reg_def *rd = e->defs[d];
		snprintf(ver, sizeof(ver), "%d", rd->def->version);
		const char *lv[] = { "definition", rd->def->name, "version", ver, NULL };
		sample(o, "saga_instances_started", "_total", lv, rd->mx.started);
	}
	family(o, "saga_instances_ended", COUNTER, NULL,
	       "Instances that reached a final state (or STUCK) in this process.");
	for (size_t d = 0; d < e->ndefs; d++) {
		const reg_def *rd = e->defs[d];
		snprintf(ver, sizeof(ver), "%d", rd->def->version);
		for (int st = SAGA_COMPLETED; st < SAGA_STATE_COUNT; st++)
			for (int r = 0; r < MX_REASONS; r++) {
				/* Only the pairs that can happen. */
				if ((st == SAGA_COMPLETED) != (r == SAGA_REASON_NONE) ||
				    (st != SAGA_STUCK && r == SAGA_REASON_CRASH_LOOP))
					continue;
				const char *lv[] = { "definition", rd->def->name,   "version",
					             ver,          "state",         state_label[st],
					             "reason",     reason_label[r], NULL };
				sample(o, "saga_instances_ended", "_total", lv,
				       rd->mx.ended[st][r]);
			}
	}
	family(o, "saga_instance_duration_seconds", HISTOGRAM, "seconds",
	       "From creation to the final state (or STUCK), of the instances that ended here.");
	for (size_t d = 0; d < e->ndefs; d++) {
		const reg_def *rd = e->defs[d];
		snprintf(ver, sizeof(ver), "%d", rd->def->version);
		for (int st = SAGA_COMPLETED; st < SAGA_STATE_COUNT; st++) {
			const char *lv[] = { "definition", rd->def->name,   "version", ver,
				             "state",      state_label[st], NULL };
			hist(o, "saga_instance_duration_seconds", lv, &rd->mx.duration[st], dur_le,
			     1000);
		}
	}
}

/* The series of each step and phase that can run (a compensation only
 * where the step has one): the attempts by outcome, or the durations. */
static void step_series(out *o, saga_engine *e, bool durations)
{
	char ver[16];
	for (size_t d = 0; d < e->ndefs; d++) {
		const reg_def *rd = e->defs[d];
		snprintf(ver, sizeof(ver), "%d", rd->def->version);
		for (size_t s = 0; s < rd->def->nsteps; s++)
			for (int ph = 0; ph < 2; ph++) {
				if (ph && !rd->def->steps[s].compensation)
					continue;
				const mx_step *ms = &rd->mx.steps[s];
				const char *lv[] = {
					"definition", rd->def->name, "version", ver,
					"step",       rd->names[s],  "phase",   phase_label[ph],
					"outcome",    NULL,          NULL
				};
				if (durations) {
					lv[8] = NULL; /* no outcome label */
					hist(o, "saga_attempt_duration_seconds", lv,
					     &ms->duration[ph], dur_le, 1000);
					continue;
				}
				for (int k = 0; k < MX_OUTCOMES; k++) {
					lv[9] = outcome_label[k];
					sample(o, "saga_attempts", "_total", lv,
					       ms->attempts[ph][k]);
				}
			}
	}
}

static void attempt_metrics(out *o, saga_engine *e)
{
	family(o, "saga_attempts", COUNTER, NULL,
	       "Step attempts that ended, by outcome (interrupted: its process died in it).");
	step_series(o, e, false);
	family(o, "saga_attempt_duration_seconds", HISTOGRAM, "seconds",
	       "Time in the step callback, of the attempts this process invoked.");
	step_series(o, e, true);
}

static void breaker_metrics(out *o, saga_engine *e)
{
	static const char *const kind[4] = { "successful", "failed", "ignored", "not_permitted" };
	family(o, "saga_breaker_state", GAUGE, NULL,
	       "1 for the state each circuit breaker is in, 0 for the others.");
	for (breaker_entry *b = e->breakers; b; b = b->next) {
		saga_breaker_snapshot snap;
		if (saga_breaker_get_snapshot(&snap, b->b))
			continue;
		for (int st = 0; st <= SAGA_BREAKER_FORCED_OPEN; st++) {
			const char *lv[] = { "breaker", saga_breaker_name(b->b), "state",
				             saga_breaker_state_name((saga_breaker_state)st),
				             NULL };
			sample(o, "saga_breaker_state", "", lv,
			       snap.state == (saga_breaker_state)st);
		}
	}
	family(o, "saga_breaker_calls", COUNTER, NULL,
	       "Calls through each circuit breaker, by how they went.");
	for (breaker_entry *b = e->breakers; b; b = b->next) {
		uint64_t t[4];
		breaker_totals(b->b, t);
		for (int k = 0; k < 4; k++) {
			const char *lv[] = { "breaker", saga_breaker_name(b->b), "kind", kind[k],
				             NULL };
			sample(o, "saga_breaker_calls", "_total", lv, t[k]);
		}
	}
	family(o, "saga_breaker_transitions", COUNTER, NULL,
	       "State transitions of each circuit breaker.");
	for (breaker_entry *b = e->breakers; b; b = b->next) {
		saga_breaker_snapshot snap;
		if (saga_breaker_get_snapshot(&snap, b->b))
			continue;
		const char *lv[] = { "breaker", saga_breaker_name(b->b), NULL };
		sample(o, "saga_breaker_transitions", "_total", lv, snap.generation);
	}
}

static void engine_metrics(out *o, saga_engine *e)
{
	family(o, "saga_store_commits", COUNTER, NULL, "Transactions this process committed.");
	sample(o, "saga_store_commits", "_total", NULL, e->stats.commits);
	family(o, "saga_store_transitions_per_commit", HISTOGRAM, NULL,
	       "History rows written by each commit (group commit).");
	hist(o, "saga_store_transitions_per_commit", NULL, &e->per_commit, rows_le, 1);
	family(o, "saga_store_errors", COUNTER, NULL, "Failed store calls, by error.");
	uint64_t other = 0;
	for (int c = 1; c < MX_CODES; c++) {
		uint64_t n = atomic_load_explicit(&e->store_errors[c], memory_order_relaxed);
		size_t i = 0;
		while (i < NERROR_LABELS && error_label[i].code != -c)
			i++;
		if (i == NERROR_LABELS)
			other += n;
	}
	for (size_t i = 0; i <= NERROR_LABELS; i++) {
		uint64_t n = i < NERROR_LABELS
		                     ? atomic_load_explicit(&e->store_errors[-error_label[i].code],
		                                            memory_order_relaxed)
		                     : other;
		const char *lv[] = { "code", i < NERROR_LABELS ? error_label[i].label : "other",
			             NULL };
		sample(o, "saga_store_errors", "_total", lv, n);
	}
	family(o, "saga_instances_loaded", GAUGE, NULL,
	       "Instances in this process's memory (at most max_in_flight).");
	sample(o, "saga_instances_loaded", "", NULL, e->nloaded);
	family(o, "saga_callbacks_running", GAUGE, NULL, "Step callbacks running now.");
	sample(o, "saga_callbacks_running", "", NULL, e->invoking);
	family(o, "saga_build", INFO, NULL, "The libsaga linked.");
	const char *lv[] = { "version", SAGA_VERSION_STRING, NULL };
	sample(o, "saga_build", "_info", lv, 1);
}

/* ---- the store gauges ---- */

/* Rows of a count by (definition, version, state or reason), copied out of
 * the store's callback. */
typedef struct count_row {
	char name[SAGA_NAME_MAX + 1];
	int version;
	int key; /* state or reason */
	int64_t n;
} count_row;

typedef struct counts {
	const saga_alloc *alloc;
	count_row *r;
	size_t n, cap;
	int rc;
} counts;

static int collect_count(const char *name, int version, int key, int64_t n, void *user)
{
	counts *c = user;
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 32;
		count_row *r = saga_realloc(c->alloc, c->r, cap * sizeof(*r));
		if (!r) {
			c->rc = SAGA_ENOMEM;
			return 1;
		}
		c->r = r;
		c->cap = cap;
	}
	count_row *r = &c->r[c->n++];
	snprintf(r->name, sizeof(r->name), "%s", name);
	r->version = version;
	r->key = key;
	r->n = n;
	return 0;
}

static int read_counts(saga_store *s, int (*op)(saga_store *, store_count_fn, void *), counts *c)
{
	int rc = op(s, collect_count, c);
	return rc ? rc : c->rc;
}

static void write_store(out *o, const counts *by_state, const counts *stuck, int64_t overdue,
                        uint64_t age)
{
	int64_t total[SAGA_STATE_COUNT] = { 0 };
	char ver[16];
	family(o, "saga_store_instances", GAUGE, NULL,
	       "Instances in the store, by definition, version and state.");
	for (size_t i = 0; i < by_state->n; i++) {
		const count_row *r = &by_state->r[i];
		if (r->key < 0 || r->key >= SAGA_STATE_COUNT)
			continue;
		total[r->key] += r->n;
		snprintf(ver, sizeof(ver), "%d", r->version);
		const char *lv[] = { "definition",        r->name, "version", ver, "state",
			             state_label[r->key], NULL };
		sample(o, "saga_store_instances", "", lv, (uint64_t)r->n);
	}
	family(o, "saga_store_instances_by_state", GAUGE, NULL,
	       "Instances in the store, by state.");
	for (int i = 0; i < SAGA_STATE_COUNT; i++) {
		const char *lv[] = { "state", state_label[i], NULL };
		sample(o, "saga_store_instances_by_state", "", lv, (uint64_t)total[i]);
	}
	family(o, "saga_store_stuck_instances", GAUGE, NULL,
	       "STUCK instances waiting for an operator, by definition, version and reason.");
	for (size_t i = 0; i < stuck->n; i++) {
		const count_row *r = &stuck->r[i];
		snprintf(ver, sizeof(ver), "%d", r->version);
		const char *lv[] = {
			"definition",
			r->name,
			"version",
			ver,
			"reason",
			r->key >= 0 && r->key < MX_REASONS ? reason_label[r->key] : "other",
			NULL
		};
		sample(o, "saga_store_stuck_instances", "", lv, (uint64_t)r->n);
	}
	family(o, "saga_store_overdue_instances", GAUGE, NULL,
	       "WAITING instances due more than 60 seconds ago: nothing picks them up.");
	sample(o, "saga_store_overdue_instances", "", NULL, (uint64_t)overdue);
	family(o, "saga_store_oldest_due_age_seconds", GAUGE, "seconds",
	       "How long the WAITING instance due the longest has been due; 0 when none.");
	putf(o, "saga_store_oldest_due_age_seconds %llu.%03llu\n", (unsigned long long)(age / 1000),
	     (unsigned long long)(age % 1000));
}

/* Reads the gauges from the store and writes them; the store's message
 * tells what failed. */
static int store_metrics(out *o, const store_ops *st, saga_store *s, const saga_alloc *a,
                         uint64_t now)
{
	counts by_state = { .alloc = a }, stuck = { .alloc = a };
	int64_t overdue = 0;
	uint64_t oldest = 0;
	uint64_t late = now > SAGA_METRICS_OVERDUE_MS ? now - SAGA_METRICS_OVERDUE_MS : 0;
	int rc = read_counts(s, st->def_counts, &by_state);
	if (rc == SAGA_OK)
		rc = read_counts(s, st->stuck_counts, &stuck);
	if (rc == SAGA_OK)
		rc = st->overdue(s, now, late, &overdue, &oldest);
	if (rc == SAGA_OK)
		write_store(o, &by_state, &stuck, overdue,
		            oldest && now > oldest ? now - oldest : 0);
	saga_free(a, by_state.r);
	saga_free(a, stuck.r);
	return rc;
}

/* ---- the calls ---- */

const char *saga_metrics_content_type(saga_metrics_format format)
{
	switch (format) {
	case SAGA_METRICS_PROMETHEUS:
		return "text/plain; version=0.0.4; charset=utf-8";
	case SAGA_METRICS_OPENMETRICS:
		return "application/openmetrics-text; version=1.0.0; charset=utf-8";
	}
	return NULL;
}

/* Checks the arguments of a metrics call; 0 or what is wrong. */
static const char *metrics_args(unsigned int flags, saga_metrics_format format, saga_write_fn write)
{
	if (!write)
		return "write is NULL";
	if (!flags || (flags & ~(SAGA_METRICS_PROCESS | SAGA_METRICS_STORE)))
		return "flags must be SAGA_METRICS_PROCESS, SAGA_METRICS_STORE or both";
	if (!saga_metrics_content_type(format))
		return "unknown metrics format";
	return NULL;
}

/* Ends the exposition (# EOF in OpenMetrics) and hands it to the writer. */
static int finish(out *o, saga_write_fn write, void *user)
{
	if (o->om)
		puts_(o, "# EOF\n");
	if (o->rc)
		return o->rc;
	return write(o->buf, o->len, user) ? SAGA_ERROR : SAGA_OK;
}

int saga_metrics_write(saga_engine *e, unsigned int flags, saga_metrics_format format,
                       saga_write_fn write, void *user)
{
	if (!e)
		return SAGA_EINVAL;
	const char *bad = metrics_args(flags, format, write);
	if (bad)
		return bad_args(e, bad);
	out o = { .alloc = &e->alloc, .om = format == SAGA_METRICS_OPENMETRICS };
	int rc = SAGA_OK;
	pthread_mutex_lock(&e->mu);
	if (flags & SAGA_METRICS_PROCESS) {
		instance_metrics(&o, e);
		attempt_metrics(&o, e);
		breaker_metrics(&o, e);
		engine_metrics(&o, e);
	}
	if ((flags & SAGA_METRICS_STORE) &&
	    (rc = store_metrics(&o, e->st, e->store, &e->alloc, now_wall(e))))
		rc = store_err(e, rc);
	pthread_mutex_unlock(&e->mu);
	if (rc == SAGA_OK && (rc = finish(&o, write, user)))
		rc = rc == SAGA_ENOMEM ? set_err(e, rc, "out of memory")
		                       : set_err(e, rc, "metrics: the write callback stopped");
	saga_free(&e->alloc, o.buf);
	return rc;
}
