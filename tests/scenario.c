/* The scenario of the failure loops (test-iofault.c, test-oom.c): see
 * scenario.h. SPDX-License-Identifier: MIT */
#include "scenario.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *const step_names[NSTEPS] = { "reserve", "hold", "charge", "ship" };
const char *const who_names[NWHO] = { "A", "B" };

scenario_state scn;

void violation(const char *fmt, ...)
{
	if (scn.violations++ == 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(scn.violation, sizeof(scn.violation), fmt, ap);
		va_end(ap);
	}
}

static void pause_own(void)
{
	if (scn.cfg.pause)
		scn.cfg.pause();
}

static void resume_own(void)
{
	if (scn.cfg.resume)
		scn.cfg.resume();
}

/* ------------------------------------------------------------------------ */
/* The participant and its write-ahead check                                */

int64_t query_int(sqlite3 *db, const char *sql, int64_t a, int64_t b, int64_t c, int64_t d,
                  const char *text)
{
	sqlite3_stmt *st = NULL;
	int64_t v = -1;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		violation("checker: %s: %s", sql, sqlite3_errmsg(db));
		return -1;
	}
	sqlite3_bind_int64(st, 1, a);
	sqlite3_bind_int64(st, 2, b);
	sqlite3_bind_int64(st, 3, c);
	sqlite3_bind_int64(st, 4, d);
	if (text)
		sqlite3_bind_text(st, 5, text, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	else
		violation("checker: %s: %s", sql, sqlite3_errmsg(db));
	sqlite3_finalize(st);
	return v;
}

/* What the store holds when the participant is called: what a crash right
 * now would leave. Read through scn.cfg.checker_vfs (test-iofault.c: the
 * plain unix VFS, never faulted). */
static void check_write_ahead(saga_step_ctx *c, int step, int phase)
{
	sqlite3 *db = NULL;
	if (sqlite3_open_v2(scn.path, &db, SQLITE_OPEN_READONLY, scn.cfg.checker_vfs) !=
	    SQLITE_OK) {
		violation("checker: cannot open the store: %s", db ? sqlite3_errmsg(db) : "?");
		sqlite3_close(db);
		return;
	}
	int64_t id = saga_step_instance(c);
	uint32_t attempt = saga_step_attempt(c);
	int64_t n = query_int(db,
	                      "SELECT count(*) FROM history WHERE instance = ?1 AND type = 2"
	                      " AND step = ?2 AND phase = ?3 AND attempt = ?4",
	                      id, step, phase, attempt, NULL);
	if (n != 1)
		violation("write-ahead: %s/%d attempt %u invoked with %lld durable starts",
		          step_names[step], phase, attempt, (long long)n);
	n = query_int(db,
	              "SELECT inflight = 1 AND step = ?2 AND phase = ?3 AND attempt = ?4"
	              " FROM instances WHERE id = ?1",
	              id, step, phase, attempt, NULL);
	if (n != 1)
		violation("write-ahead: %s/%d attempt %u invoked but the stored row disagrees",
		          step_names[step], phase, attempt);
	if (phase == SAGA_PHASE_ACTION && step > 0) {
		n = query_int(db,
		              "SELECT count(*) FROM history WHERE instance = ?1 AND type = 3"
		              " AND outcome = 1 AND step = ?2 AND phase = 0",
		              id, step - 1, 0, 0, NULL);
		if (n != 1)
			violation("write-ahead: %s started with %lld durable OK outcomes of %s",
			          step_names[step], (long long)n, step_names[step - 1]);
		n = query_int(db,
		              "SELECT json_extract(context, '$.' || ?5) IS NOT NULL"
		              " FROM instances WHERE id = ?1",
		              id, 0, 0, 0, step_names[step - 1]);
		if (n != 1)
			violation("write-ahead: %s started before the output of %s was durable",
			          step_names[step], step_names[step - 1]);
	}
	sqlite3_close(db);
}

static int who_of(saga_step_ctx *c)
{
	const cJSON *w = cJSON_GetObjectItemCaseSensitive(saga_step_context(c), "who");
	const char *s = cJSON_GetStringValue(w);
	for (int i = 0; s && i < NWHO; i++)
		if (strcmp(s, who_names[i]) == 0)
			return i;
	return -1;
}

static saga_step_result participant_body(saga_step_ctx *c, int step)
{
	int phase = saga_step_phase(c);
	int who = who_of(c);
	if (who < 0) {
		violation("participant: the context lost its 'who'");
		return SAGA_STEP_FAIL;
	}
	if (scn.ncalls < MAX_CALLS) {
		call *k = &scn.calls[scn.ncalls++];
		k->who = who;
		k->step = step;
		k->phase = phase;
		k->attempt = saga_step_attempt(c);
		snprintf(k->key, sizeof(k->key), "%s", saga_step_key(c));
	} else {
		violation("participant: more than %d calls", MAX_CALLS);
	}
	check_write_ahead(c, step, phase);
	if (scn.cfg.on_invoke)
		scn.cfg.on_invoke();
	if (phase == SAGA_PHASE_COMPENSATION)
		return SAGA_STEP_OK;
	if (step == PIVOT && who == 1) {
		saga_step_set_error(c, "card declined");
		return SAGA_STEP_FAIL;
	}
	if (step == SHIP && saga_step_attempt(c) == 1) {
		saga_step_set_error(c, "carrier busy");
		return SAGA_STEP_RETRY;
	}
	if (saga_step_put(c, step_names[step], cJSON_CreateString("done")) != SAGA_OK)
		violation("participant: saga_step_put failed");
	return SAGA_STEP_OK;
}

/* The participant is the application's code: in test-oom.c its allocations
 * never fail (scn.cfg.pause). */
static saga_step_result participant(saga_step_ctx *c, void *user)
{
	pause_own();
	saga_step_result r = participant_body(c, (int)(intptr_t)user);
	resume_own();
	return r;
}

static void seen_of(seen_event *s, const saga_event *ev)
{
	s->instance = ev->instance;
	s->seq = ev->seq;
	s->type = ev->type;
	s->step = ev->step;
	s->phase = ev->phase;
	s->outcome = ev->outcome;
	s->attempt = ev->attempt;
}

static void listener(const saga_event *ev, void *user)
{
	(void)user;
	if (scn.nevents >= MAX_EVENTS) {
		violation("listener: more than %d events", MAX_EVENTS);
		return;
	}
	seen_of(&scn.events[scn.nevents++], ev);
}

static saga_definition *make_def(void)
{
	saga_definition *d;
	ck_assert_int_eq(saga_definition_new(&d, DEF_NAME, 1), SAGA_OK);
	for (int i = 0; i < NSTEPS; i++) {
		saga_step_spec s = { step_names[i],
			             i < PIVOT    ? SAGA_STEP_COMPENSATABLE
			             : i == PIVOT ? SAGA_STEP_PIVOT
			                          : SAGA_STEP_RETRIABLE,
			             participant, i < PIVOT ? participant : NULL,
			             (void *)(intptr_t)i };
		ck_assert_int_eq(saga_definition_add_step(d, &s), SAGA_OK);
	}
	saga_retry_policy p = { 3, 0, SAGA_BACKOFF_CONSTANT, 100, 0, 2.0, SAGA_JITTER_NONE };
	ck_assert_int_eq(saga_definition_set_retry(d, NULL, &p), SAGA_OK);
	ck_assert_int_eq(saga_definition_set_compensation_retry(d, NULL, &p), SAGA_OK);
	saga_retry_policy forever = { 0, 0, SAGA_BACKOFF_CONSTANT, 100, 0, 2.0, SAGA_JITTER_NONE };
	ck_assert_int_eq(saga_definition_set_retry(d, "ship", &forever), SAGA_OK);
	return d;
}

/* ------------------------------------------------------------------------ */
/* Fixture                                                                  */

jmp_buf *expect_env;

void scenario_setup(void)
{
	expect_env = NULL;
	memset(&scn, 0, sizeof(scn));
	tmpdir_make(scn.dir, sizeof(scn.dir));
	snprintf(scn.path, sizeof(scn.path), "%s/saga.db", scn.dir);
	scn.def = make_def();
}

void scenario_teardown(void)
{
	expect_env = NULL;
	saga_definition_free(scn.def);
	tmpdir_remove(scn.dir);
}

void remove_store(void)
{
	static const char *const sfx[] = { "", "-wal", "-shm", "-journal" };
	for (size_t i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++) {
		char p[320];
		snprintf(p, sizeof(p), "%s%s", scn.path, sfx[i]);
		unlink(p);
	}
}

cJSON *input_of(int who)
{
	pause_own();
	cJSON *in = cJSON_CreateObject();
	ck_assert_ptr_nonnull(in);
	cJSON_AddStringToObject(in, "who", who_names[who]);
	resume_own();
	return in;
}

static void free_inputs(void)
{
	for (int w = 0; w < NWHO; w++) {
		cJSON_Delete(scn.in[w]);
		scn.in[w] = NULL;
	}
}

/* A broken expectation inside the fault loops ends the current N only: the
 * loop records it and goes on, so one run reports every failing N. Outside
 * the loops it fails the test at once. */
char expect_msg[1024];
saga_engine *cur_engine;

void expect_failed(int line, const char *fmt, ...)
{
	char msg[900];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(expect_msg, sizeof(expect_msg), "line %d: %s", line, msg);
	if (expect_env)
		longjmp(*expect_env, 1);
	ck_abort_msg("%s", expect_msg);
	abort(); /* not reached */
}

/* ------------------------------------------------------------------------ */
/* Checking calls                                                           */

long code_counts[32];
char first_failure[320];
static const char *open_errmsg; /* what a failed open is quoted with */

/* Every call answers 0 or a named error with a message. */
static int check_rc(saga_engine *e, const char *what, int rc, long n)
{
	EXPECT(rc <= 0 && rc >= SAGA_ECLOSED, "N=%ld %s: unknown return code %d", n, what, rc);
	code_counts[-rc]++;
	if (rc && !first_failure[0])
		snprintf(first_failure, sizeof(first_failure), "%s: %s (%s)", what,
		         saga_strerror(rc), e ? saga_engine_errmsg(e) : open_errmsg);
	/* The store is sound: a shortage of memory must not be reported as
	 * damage (an operator would restore a backup for nothing). */
	if (scn.cfg.memory_faults)
		EXPECT(rc != SAGA_ECORRUPT, "N=%ld %s: out of memory reported as %s: %s", n, what,
		       saga_strerror(rc), e ? saga_engine_errmsg(e) : open_errmsg);
	if (rc && e) {
		const char *m = saga_engine_errmsg(e);
		EXPECT(m && *m && strcmp(m, "no error") != 0,
		       "N=%ld %s failed (%s) without a message", n, what, saga_strerror(rc));
	}
	return rc;
}

typedef struct hist {
	int starts[NSTEPS][2];
	int ok[NSTEPS][2];
	int fail[NSTEPS][2];
	int retry[NSTEPS][2];
	int64_t first_start_seq[NSTEPS][2];
	int64_t ok_seq[NSTEPS][2];
	seen_event ev[MAX_EVENTS];
	int n;
} hist;

static int hist_fn(const saga_event *ev, void *user)
{
	hist *h = user;
	if (ev->step >= NSTEPS || ev->step < -1) {
		violation("history: step %d out of range", ev->step);
		return 0;
	}
	if (h->n < MAX_EVENTS) {
		seen_of(&h->ev[h->n++], ev);
	}
	if (ev->step < 0)
		return 0;
	int s = ev->step, p = ev->phase & 1;
	if (ev->type == SAGA_EVENT_ATTEMPT_START) {
		if (!h->starts[s][p]++)
			h->first_start_seq[s][p] = ev->seq;
	}
	if (ev->type == SAGA_EVENT_ATTEMPT_END && ev->outcome == SAGA_OUTCOME_OK) {
		h->ok[s][p]++;
		h->ok_seq[s][p] = ev->seq;
	}
	if (ev->type == SAGA_EVENT_ATTEMPT_END && ev->outcome == SAGA_OUTCOME_FAIL)
		h->fail[s][p]++;
	if (ev->type == SAGA_EVENT_ATTEMPT_END && ev->outcome == SAGA_OUTCOME_RETRY)
		h->retry[s][p]++;
	return 0;
}
/* Checks the finished store against the contract; e is open on it. */
static void check_contract(saga_engine *e, const int64_t ids[NWHO], const char *label, long n,
                           loop_stats *st)
{
	EXPECT(scn.violations == 0, "%s N=%ld: %d violations, first: %s", label, n, scn.violations,
	       scn.violation);
	int64_t counts[SAGA_STATE_COUNT];
	EXPECT(saga_counts(e, counts) == SAGA_OK, "N=%ld: saga_counts: %s", n,
	       saga_engine_errmsg(e));
	int64_t total = 0;
	for (int i = 0; i < SAGA_STATE_COUNT; i++)
		total += counts[i];
	EXPECT(total == NWHO, "%s N=%ld: %lld instances, want %d", label, n, (long long)total,
	       NWHO);
	static hist h[NWHO];
	for (int w = 0; w < NWHO; w++) {
		saga_instance_info info;
		EXPECT(saga_get(e, &info, ids[w]) == SAGA_OK, "N=%ld: saga_get: %s", n,
		       saga_engine_errmsg(e));
		saga_state want = w == 0 ? SAGA_COMPLETED : SAGA_COMPENSATED;
		EXPECT(info.state == want, "%s N=%ld: %s is %s, want %s", label, n, who_names[w],
		       saga_state_name(info.state), saga_state_name(want));
		memset(&h[w], 0, sizeof(h[w]));
		EXPECT(saga_history(e, ids[w], hist_fn, &h[w]) == SAGA_OK,
		       "N=%ld: saga_history: %s", n, saga_engine_errmsg(e));
		EXPECT(scn.violations == 0, "%s N=%ld: %s", label, n, scn.violation);
		/* Exactly one final outcome per started step and phase. */
		for (int s = 0; s < NSTEPS; s++) {
			int started = w == 0 || s <= PIVOT;
			int final_a = h[w].ok[s][0] + h[w].fail[s][0];
			EXPECT(final_a == started, "%s N=%ld: %s %s action: %d final outcomes",
			       label, n, who_names[w], step_names[s], final_a);
			EXPECT(started || h[w].starts[s][0] == 0,
			       "%s N=%ld: %s %s was never due but started", label, n, who_names[w],
			       step_names[s]);
			int comp = w == 1 && s < PIVOT;
			EXPECT(h[w].ok[s][1] == comp && h[w].fail[s][1] == 0,
			       "%s N=%ld: %s %s compensation: %d OK, %d FAIL", label, n,
			       who_names[w], step_names[s], h[w].ok[s][1], h[w].fail[s][1]);
			EXPECT(comp || h[w].starts[s][1] == 0,
			       "%s N=%ld: %s %s compensation started", label, n, who_names[w],
			       step_names[s]);
		}
		if (w == 0) {
			for (int s = 0; s < NSTEPS; s++)
				EXPECT(h[w].ok[s][0] == 1, "%s N=%ld: A %s not OK", label, n,
				       step_names[s]);
		} else {
			EXPECT(h[w].fail[PIVOT][0] == 1 && h[w].ok[0][0] == 1 && h[w].ok[1][0] == 1,
			       "%s N=%ld: B's forward outcomes are wrong", label, n);
			/* Reverse order: hold is compensated before reserve starts. */
			EXPECT(h[w].ok_seq[1][1] < h[w].first_start_seq[0][1],
			       "%s N=%ld: B compensated out of order", label, n);
		}
		/* Every participant call of this instance used its stable key. */
		int per[NSTEPS][2] = { { 0 } };
		for (int k = 0; k < scn.ncalls; k++) {
			const call *c = &scn.calls[k];
			if (c->who != w)
				continue;
			char want_key[160];
			snprintf(want_key, sizeof(want_key), "%s/%s/%s", info.uid,
			         step_names[c->step],
			         c->phase == SAGA_PHASE_ACTION ? "action" : "compensation");
			EXPECT(strcmp(c->key, want_key) == 0, "%s N=%ld: key %s, want %s", label, n,
			       c->key, want_key);
			per[c->step][c->phase]++;
		}
		for (int s = 0; s < NSTEPS; s++)
			for (int p = 0; p < 2; p++) {
				/* Attempts that answered (RETRY, FAIL, OK) are legitimate
				 * calls. (A's ship answers RETRY to its first call, but an
				 * attempt interrupted before its call, recorded as such at
				 * recovery, made none.) */
				int legit = h[w].ok[s][p] + h[w].fail[s][p] + h[w].retry[s][p];
				EXPECT(per[s][p] >= legit,
				       "%s N=%ld: %s %s/%d called %d times "
				       "for %d outcomes",
				       label, n, who_names[w], step_names[s], p, per[s][p], legit);
				st->reinvocations += per[s][p] - legit;
			}
	}
	/* Every event a listener saw is durable, unchanged. */
	for (int i = 0; i < scn.nevents; i++) {
		const seen_event *s = &scn.events[i];
		int w = s->instance == ids[0] ? 0 : s->instance == ids[1] ? 1 : -1;
		EXPECT(w >= 0, "%s N=%ld: an event of instance %lld that does not exist", label, n,
		       (long long)s->instance);
		bool found = false;
		for (int k = 0; k < h[w].n && !found; k++) {
			const seen_event *d = &h[w].ev[k];
			found = d->seq == s->seq && d->type == s->type && d->step == s->step &&
			        d->phase == s->phase && d->outcome == s->outcome &&
			        d->attempt == s->attempt;
		}
		EXPECT(found,
		       "%s N=%ld: event seq %lld (%s) was delivered but is not in "
		       "the history",
		       label, n, (long long)s->seq, saga_event_type_name((saga_event_type)s->type));
	}
}

/* Starts A and B (idempotent) and runs until both have ended. With
 * only_missing, instances whose start answered OK are not started again
 * (a start queues the instance, which would hide one the engine forgot). */
static void finish(saga_engine *e, int64_t ids[NWHO], const char *label, long n, bool only_missing)
{
	for (int w = 0; w < NWHO; w++) {
		if (only_missing && ids[w])
			continue;
		cJSON *in = input_of(w);
		int64_t id = 0;
		int created = -1;
		int rc = saga_start(e, &id, &created, DEF_NAME, who_names[w], in);
		cJSON_Delete(in);
		EXPECT(rc == SAGA_OK, "%s N=%ld: start %s after the fault: %s", label, n,
		       who_names[w], saga_engine_errmsg(e));
		/* A start that answered OK is durable: the same instance. */
		EXPECT(!ids[w] || ids[w] == id, "%s N=%ld: %s started as %lld, found %lld", label,
		       n, who_names[w], (long long)ids[w], (long long)id);
		EXPECT(!(ids[w] && created), "%s N=%ld: %s created twice", label, n, who_names[w]);
		ids[w] = id;
	}
	for (int round = 0;; round++) {
		if (round == 30) {
			char st[2][160];
			for (int w = 0; w < NWHO; w++) {
				saga_instance_info info;
				saga_get(e, &info, ids[w]);
				long long due =
				        info.due_ms ? (long long)(info.due_ms - scn.clock.wall) : 0;
				snprintf(st[w], sizeof(st[w]),
				         "%s %s step %d phase %d attempt %u due %+lld",
				         who_names[w], saga_state_name(info.state), info.step,
				         info.phase, info.attempt, due);
			}
			EXPECT(false, "%s N=%ld: the sagas never finish: %s; %s; the fault: %s",
			       label, n, st[0], st[1],
			       first_failure[0] ? first_failure : "none reported");
		}
		int rc = saga_run_until_idle(e);
		EXPECT(rc == SAGA_OK, "%s N=%ld: run after the fault: %s (%s)", label, n,
		       saga_strerror(rc), saga_engine_errmsg(e));
		int done = 0;
		for (int w = 0; w < NWHO; w++) {
			saga_instance_info info;
			EXPECT(saga_get(e, &info, ids[w]) == SAGA_OK, "N=%ld: saga_get: %s", n,
			       saga_engine_errmsg(e));
			done += info.state == SAGA_COMPLETED || info.state == SAGA_COMPENSATED ||
			        info.state == SAGA_STUCK;
		}
		if (done == NWHO)
			break;
		fake_clock_advance(&scn.clock, 100);
	}
}

/* ------------------------------------------------------------------------ */
/* One N                                                                    */

void scenario_reset(void)
{
	remove_store();
	scn.ncalls = 0;
	scn.nevents = 0;
	scn.violations = 0;
	first_failure[0] = '\0';
	scn.clock.wall = 1700000000000ull;
	scn.clock.mono = 1000;
}

void scenario_drive(const saga_options *o, long n, bool same_engine,
                    void (*arm)(long n, const void *arg), const void *arg, void (*lift)(void),
                    int64_t ids[NWHO], loop_stats *st)
{
	char err[256] = "";
	saga_engine *e = NULL;
	scn.in[0] = input_of(0);
	scn.in[1] = input_of(1);

	arm(n, arg);
	int rc = saga_engine_open(&e, o, err, sizeof(err));
	cur_engine = rc == SAGA_OK ? e : NULL;
	open_errmsg = scn.cfg.memory_faults ? err : "open";
	check_rc(NULL, "open", rc, n);
	if (rc) {
		EXPECT(e == NULL && err[0], "N=%ld: open failed without a message", n);
		st->open_failed++;
		st->calls_failed++;
	} else {
		if (scn.cfg.memory_faults)
			st->calls_failed +=
			        check_rc(e, "add_listener",
			                 saga_engine_add_listener(e, listener, NULL), n) != 0;
		else
			EXPECT(saga_engine_add_listener(e, listener, NULL) == SAGA_OK,
			       "N=%ld: add_listener: %s", n, saga_engine_errmsg(e));
		st->calls_failed +=
		        check_rc(e, "register", saga_engine_register(e, scn.def), n) != 0;
		for (int w = 0; w < NWHO; w++) {
			int64_t id = 0;
			rc = check_rc(e, "start",
			              saga_start(e, &id, NULL, DEF_NAME, who_names[w], scn.in[w]),
			              n);
			if (rc == SAGA_OK) {
				EXPECT(id > 0, "N=%ld: start gave id %lld", n, (long long)id);
				ids[w] = id;
			}
			st->calls_failed += rc != 0;
		}
		for (int round = 0; round < 3; round++) {
			st->calls_failed += check_rc(e, "run", saga_run_until_idle(e), n) != 0;
			fake_clock_advance(&scn.clock, 100);
		}
		if (ids[0]) {
			saga_instance_info info;
			st->calls_failed += check_rc(e, "get", saga_get(e, &info, ids[0]), n) != 0;
			cJSON *ctx = NULL;
			rc = saga_get_context(e, &ctx, ids[0]);
			bool out_ok = rc == SAGA_OK ? ctx != NULL : ctx == NULL;
			cJSON_Delete(ctx);
			check_rc(e, "get_context", rc, n);
			EXPECT(out_ok, "N=%ld: get_context: output and answer disagree", n);
			st->calls_failed += rc != 0;
			static hist h;
			memset(&h, 0, sizeof(h));
			st->calls_failed += check_rc(e, "history",
			                             saga_history(e, ids[0], hist_fn, &h), n) != 0;
		}
		int64_t counts[SAGA_STATE_COUNT];
		st->calls_failed += check_rc(e, "counts", saga_counts(e, counts), n) != 0;
		if (same_engine) {
			lift();
			/* Registration is the caller's: redo it if the fault hit it. */
			rc = saga_engine_register(e, scn.def);
			EXPECT(rc == SAGA_OK || rc == SAGA_EEXISTS, "N=%ld: register: %s", n,
			       saga_engine_errmsg(e));
			finish(e, ids, "same engine", n, true);
			check_contract(e, ids, "same engine", n, st);
		}
		saga_engine_close(e);
		cur_engine = NULL;
	}
	lift();
	free_inputs();
	open_errmsg = NULL;
}

void scenario_recover(const saga_options *o, const char *name, const char *label, long n,
                      int64_t ids[NWHO], loop_stats *st)
{
	const char *pre = name ? name : "", *sp = name ? " " : "";
	char err[256] = "";
	saga_engine *e = NULL;
	int rc = saga_engine_open(&e, o, err, sizeof(err));
	cur_engine = rc == SAGA_OK ? e : NULL;
	EXPECT(rc == SAGA_OK, "%s%sN=%ld: the store does not reopen: %s", pre, sp, n, err);
	EXPECT(saga_engine_add_listener(e, listener, NULL) == SAGA_OK, "N=%ld: add_listener: %s", n,
	       saga_engine_errmsg(e));
	EXPECT(saga_engine_register(e, scn.def) == SAGA_OK, "%s%sN=%ld: register: %s", pre, sp, n,
	       saga_engine_errmsg(e));
	finish(e, ids, label, n, false);
	check_contract(e, ids, label, n, st);
	saga_engine_close(e);
	cur_engine = NULL;
}

void scenario_abandon(void (*lift)(void))
{
	lift();
	saga_engine_close(cur_engine);
	cur_engine = NULL;
	free_inputs();
	open_errmsg = NULL;
}

/* ------------------------------------------------------------------------ */
/* The loops                                                                */

void scenario_main_init(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	/* The loops create and sync thousands of small stores; on a disk the
	 * fsyncs of the checkpoints dominate the run time, and the faults here
	 * are simulated anyway: use memory when TMPDIR does not say otherwise. */
	if (!getenv("TMPDIR") && access("/dev/shm", W_OK) == 0)
		setenv("TMPDIR", "/dev/shm", 1);
}

long env_long(const char *name)
{
	const char *v = getenv(name);
	return v && *v ? strtol(v, NULL, 10) : 0;
}

double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#define MAX_FAILED 40
#define MAX_KINDS  16
static long failed_n[MAX_FAILED];
static long nfailed;
static struct failure_kind {
	char sig[256];
	char first[1024];
	long first_n, count;
} failure_kinds[MAX_KINDS];
static int nfailure_kinds;

void scenario_loop_begin(void)
{
	memset(code_counts, 0, sizeof(code_counts));
	nfailed = 0;
	nfailure_kinds = 0;
}

long scenario_nfailed(void)
{
	return nfailed;
}

void scenario_note_failure(long n, const char *msg)
{
	if (nfailed < MAX_FAILED)
		failed_n[nfailed] = n;
	nfailed++;
	char sig[256];
	size_t k = 0;
	for (const char *p = msg; *p && k + 1 < sizeof(sig); p++)
		if (*p < '0' || *p > '9')
			sig[k++] = *p;
	sig[k] = '\0';
	for (int i = 0; i < nfailure_kinds; i++)
		if (strcmp(failure_kinds[i].sig, sig) == 0) {
			failure_kinds[i].count++;
			return;
		}
	if (nfailure_kinds == MAX_KINDS)
		return;
	struct failure_kind *f = &failure_kinds[nfailure_kinds++];
	snprintf(f->sig, sizeof(f->sig), "%s", sig);
	snprintf(f->first, sizeof(f->first), "%s", msg);
	f->first_n = n;
	f->count = 1;
}

void scenario_codes(char *buf, size_t size)
{
	buf[0] = '\0';
	for (int i = 1; i < 32; i++)
		if (code_counts[i]) {
			char one[64];
			snprintf(one, sizeof(one), " %s=%ld", saga_strerror(-i), code_counts[i]);
			strncat(buf, one, size - strlen(buf) - 1);
		}
}

void scenario_report_failures(const char *label)
{
	if (!nfailed)
		return;
	char list[512] = "";
	for (long i = 0; i < nfailed && i < MAX_FAILED; i++) {
		char one[24];
		snprintf(one, sizeof(one), "%s%ld", i ? "," : "", failed_n[i]);
		strncat(list, one, sizeof(list) - strlen(list) - 1);
	}
	for (int i = 0; i < nfailure_kinds; i++)
		printf("%s: %ld N broke: first N=%ld: %s\n", label, failure_kinds[i].count,
		       failure_kinds[i].first_n, failure_kinds[i].first);
	ck_abort_msg("%s: %ld N values broke the contract in %d ways (N = %s%s); first: %s", label,
	             nfailed, nfailure_kinds, list, nfailed > MAX_FAILED ? ",..." : "",
	             failure_kinds[0].first);
}
