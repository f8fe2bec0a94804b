/* Out of memory (issue 5, "Out of memory").
 *
 * One failing allocator is installed for all three allocators the engine
 * uses: the engine's own (saga_options.allocator), SQLite's (the
 * SQLITE_CONFIG_MALLOC methods, wrapped around SQLite's defaults while SQLite
 * is shut down) and cJSON's (cJSON_InitHooks). They share one count: for
 * N = 1, 2, ... the Nth allocation made by the library fails, and in the
 * "sticky" mode every allocation after it fails as well (memory stays
 * exhausted), in the "one-shot" mode only that one (a transient shortage).
 * Allocations made by the test's own code (the participant, inputs, the
 * checks) are never failed nor counted: the allocator is paused around them.
 *
 * The scenario for each N, on a fresh store: open, add a listener, register,
 * start "A" (runs to COMPLETED) and "B" (its pivot fails: compensated), three
 * rounds of run_until_idle + 100 ms on the fake clock (the retriable step
 * asks for one retry), get, get_context, history, counts, close. Every call
 * must return 0 or a libsaga error code with a message, never crash, and
 * never SAGA_ECORRUPT: the store is sound, only memory is short. After
 * the close, every allocation of the engine, of cJSON and of SQLite must have
 * been freed (counted per allocator, so a leak is reported with its N; ASan's
 * leak checker and valgrind see the same runs). Then, with the allocator
 * healthy, the store is reopened and the sagas finish with the contract held
 * exactly as in test-iofault.c: one instance per business key, exactly one
 * final outcome per started step and phase, write-ahead at every invocation,
 * the same key on a re-invocation, every delivered event durable.
 * The loop stops at the first N the scenario does not reach. An N that
 * breaks an expectation does not stop it: the failures are grouped by kind
 * and reported at the end with their N.
 *
 * Most allocations (3,000 of 3,500) are SQLite's, inside saga_engine_open,
 * preparing the statements; there every 4th N is run (all of them with
 * SAGA_OOM_FULL=1); every N after the open is run. Under valgrind every
 * 10th N (SAGA_OOM_STRIDE=k sets it). The stores live in TMPDIR, /dev/shm
 * when TMPDIR is not set (see main).
 *
 * A third loop ("same engine", one-shot) lifts the shortage without closing
 * the engine and requires the same engine to finish both sagas.
 *
 * Reproduce one case: SAGA_OOM_N=<n> SAGA_OOM_MODE=sticky|once (run with
 * CK_FORK=no under valgrind --leak-check=full for a leak).
 * SPDX-License-Identifier: MIT */
#include <cjson/cJSON.h>
#include <setjmp.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdbool.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "test-common.h"

#define NSTEPS 4
#define PIVOT 2
#define SHIP 3
static const char *const step_names[NSTEPS] = { "reserve", "hold", "charge", "ship" };
#define DEF_NAME "trip"
#define NWHO 2 /* instances: A completes, B fails at the pivot */
static const char *const who_names[NWHO] = { "A", "B" };
#define MAX_CALLS 256
#define MAX_EVENTS 512
#define MAX_N 200000 /* a safety stop */

/* ------------------------------------------------------------------------ */
/* The failing allocator                                                    */

enum { AL_ENGINE, AL_SQLITE, AL_CJSON, AL_COUNT };
static const char *const al_names[AL_COUNT] = { "engine", "sqlite", "cjson" };

static struct {
	bool armed;
	long nth;
	bool sticky;
	int paused;             /* > 0: the test's own code runs; never fail */
	long count;             /* library allocations since arming */
	long injected;
	long injected_by[AL_COUNT];
	long seen[AL_COUNT];    /* allocations per allocator since arming */
	long live[AL_COUNT];    /* blocks allocated and not freed */
} A;

/* Called for every failure injected: a place for a debugger's breakpoint
 * (gdb -ex 'break oom_injected' ...) to see who allocated. */
__attribute__((noinline)) static void oom_injected(long n, int who)
{
	__asm__ volatile("" ::"r"(n), "r"(who) : "memory");
}

static bool fail_now(int who)
{
	if (!A.armed || A.paused)
		return false;
	long k = ++A.count;
	A.seen[who]++;
	if (k == A.nth || (A.sticky && k > A.nth)) {
		A.injected++;
		A.injected_by[who]++;
		oom_injected(k, who);
		return true;
	}
	return false;
}

static void pause_alloc(void)
{
	A.paused++;
}

static void resume_alloc(void)
{
	A.paused--;
}

static void arm(long nth, bool sticky)
{
	A.armed = true;
	A.nth = nth;
	A.sticky = sticky;
	A.count = 0;
	A.injected = 0;
	memset(A.injected_by, 0, sizeof(A.injected_by));
	memset(A.seen, 0, sizeof(A.seen));
}

static void disarm(void)
{
	A.armed = false;
}

static void *e_malloc(size_t n, void *user)
{
	(void)user;
	if (fail_now(AL_ENGINE))
		return NULL;
	void *p = malloc(n);
	if (p)
		A.live[AL_ENGINE]++;
	return p;
}

static void *e_realloc(void *p, size_t n, void *user)
{
	(void)user;
	if (fail_now(AL_ENGINE))
		return NULL;
	void *q = realloc(p, n);
	if (q && !p)
		A.live[AL_ENGINE]++;
	return q;
}

static void e_free(void *p, void *user)
{
	(void)user;
	if (p) {
		A.live[AL_ENGINE]--;
		free(p);
	}
}

static sqlite3_mem_methods sqlite_orig;
static bool sqlite_wrapped;

static void *s_malloc(int n)
{
	if (fail_now(AL_SQLITE))
		return NULL;
	void *p = sqlite_orig.xMalloc(n);
	if (p)
		A.live[AL_SQLITE]++;
	return p;
}

static void s_free(void *p)
{
	if (p) {
		A.live[AL_SQLITE]--;
		sqlite_orig.xFree(p);
	}
}

static void *s_realloc(void *p, int n)
{
	/* SQLite never reallocates NULL: sqlite3Realloc calls xMalloc. */
	if (fail_now(AL_SQLITE))
		return NULL;
	return sqlite_orig.xRealloc(p, n);
}

static int s_size(void *p)
{
	return sqlite_orig.xSize(p);
}

static int s_roundup(int n)
{
	return sqlite_orig.xRoundup(n);
}

static int s_init(void *app)
{
	return sqlite_orig.xInit(app);
}

static void s_shutdown(void *app)
{
	sqlite_orig.xShutdown(app);
}

static void *j_malloc(size_t n)
{
	if (fail_now(AL_CJSON))
		return NULL;
	void *p = malloc(n);
	if (p)
		A.live[AL_CJSON]++;
	return p;
}

static void j_free(void *p)
{
	if (p) {
		A.live[AL_CJSON]--;
		free(p);
	}
}

/* SQLite's allocator can only change while SQLite is shut down. */
static void install_allocators(void)
{
	ck_assert_int_eq(sqlite3_initialize(), SQLITE_OK);
	ck_assert_int_eq(sqlite3_shutdown(), SQLITE_OK);
	if (!sqlite_wrapped) {
		ck_assert_int_eq(sqlite3_config(SQLITE_CONFIG_GETMALLOC, &sqlite_orig), SQLITE_OK);
		ck_assert(sqlite_orig.xMalloc != NULL);
	}
	sqlite3_mem_methods m = { s_malloc, s_free, s_realloc, s_size, s_roundup, s_init,
		                  s_shutdown, sqlite_orig.pAppData };
	ck_assert_int_eq(sqlite3_config(SQLITE_CONFIG_MALLOC, &m), SQLITE_OK);
	sqlite_wrapped = true;
	ck_assert_int_eq(sqlite3_initialize(), SQLITE_OK);
	cJSON_Hooks h = { j_malloc, j_free };
	cJSON_InitHooks(&h);
}

static void remove_allocators(void)
{
	cJSON_InitHooks(NULL);
	if (sqlite_wrapped && sqlite3_shutdown() == SQLITE_OK) {
		sqlite3_config(SQLITE_CONFIG_MALLOC, &sqlite_orig);
		sqlite_wrapped = false;
		sqlite3_initialize();
	}
}

/* ------------------------------------------------------------------------ */
/* The participant                                                          */

typedef struct call {
	int who;
	int step;
	int phase;
	uint32_t attempt;
	char key[160];
} call;

typedef struct seen_event {
	int64_t instance;
	int64_t seq;
	int type, step, phase, outcome;
	uint32_t attempt;
} seen_event;

static struct {
	char dir[256];
	char path[300];
	fake_clock clock;
	saga_definition *def;
	call calls[MAX_CALLS];
	int ncalls;
	seen_event events[MAX_EVENTS];
	int nevents;
	int violations;
	char violation[512];
	cJSON *in[NWHO]; /* the inputs of the current N */
} T;

static char first_failure[320];

static void violation(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void violation(const char *fmt, ...)
{
	if (T.violations++ == 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(T.violation, sizeof(T.violation), fmt, ap);
		va_end(ap);
	}
}

static int64_t query_int(sqlite3 *db, const char *sql, int64_t a, int64_t b, int64_t c,
                         int64_t d, const char *text)
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

/* Write-ahead: what the store holds when the participant is called. */
static void check_write_ahead(saga_step_ctx *c, int step, int phase)
{
	sqlite3 *db = NULL;
	if (sqlite3_open_v2(T.path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		violation("checker: cannot open the store: %s", db ? sqlite3_errmsg(db) : "?");
		sqlite3_close(db);
		return;
	}
	int64_t id = saga_step_instance(c);
	uint32_t attempt = saga_step_attempt(c);
	int64_t n = query_int(db, "SELECT count(*) FROM history WHERE instance = ?1 AND type = 2"
	                          " AND step = ?2 AND phase = ?3 AND attempt = ?4",
	                      id, step, phase, attempt, NULL);
	if (n != 1)
		violation("write-ahead: %s/%d attempt %u invoked with %lld durable starts",
		          step_names[step], phase, attempt, (long long)n);
	n = query_int(db, "SELECT inflight = 1 AND step = ?2 AND phase = ?3 AND attempt = ?4"
	                  " FROM instances WHERE id = ?1", id, step, phase, attempt, NULL);
	if (n != 1)
		violation("write-ahead: %s/%d attempt %u invoked but the stored row disagrees",
		          step_names[step], phase, attempt);
	if (phase == SAGA_PHASE_ACTION && step > 0) {
		n = query_int(db, "SELECT count(*) FROM history WHERE instance = ?1 AND type = 3"
		                  " AND outcome = 1 AND step = ?2 AND phase = 0",
		              id, step - 1, 0, 0, NULL);
		if (n != 1)
			violation("write-ahead: %s started with %lld durable OK outcomes of %s",
			          step_names[step], (long long)n, step_names[step - 1]);
		n = query_int(db, "SELECT json_extract(context, '$.' || ?5) IS NOT NULL"
		                  " FROM instances WHERE id = ?1", id, 0, 0, 0, step_names[step - 1]);
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
	if (T.ncalls < MAX_CALLS) {
		call *k = &T.calls[T.ncalls++];
		k->who = who;
		k->step = step;
		k->phase = phase;
		k->attempt = saga_step_attempt(c);
		snprintf(k->key, sizeof(k->key), "%s", saga_step_key(c));
	} else {
		violation("participant: more than %d calls", MAX_CALLS);
	}
	check_write_ahead(c, step, phase);
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

/* The participant is the application's code: its allocations never fail. */
static saga_step_result participant(saga_step_ctx *c, void *user)
{
	pause_alloc();
	saga_step_result r = participant_body(c, (int)(intptr_t)user);
	resume_alloc();
	return r;
}

static void listener(const saga_event *ev, void *user)
{
	(void)user;
	if (T.nevents >= MAX_EVENTS) {
		violation("listener: more than %d events", MAX_EVENTS);
		return;
	}
	seen_event *s = &T.events[T.nevents++];
	s->instance = ev->instance;
	s->seq = ev->seq;
	s->type = ev->type;
	s->step = ev->step;
	s->phase = ev->phase;
	s->outcome = ev->outcome;
	s->attempt = ev->attempt;
}

static saga_definition *make_def(void)
{
	saga_definition *d;
	ck_assert_int_eq(saga_definition_new(&d, DEF_NAME, 1), SAGA_OK);
	for (int i = 0; i < NSTEPS; i++) {
		saga_step_spec s = { step_names[i],
			             i < PIVOT ? SAGA_STEP_COMPENSATABLE
			                       : i == PIVOT ? SAGA_STEP_PIVOT : SAGA_STEP_RETRIABLE,
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

/* Where a broken expectation jumps to (see EXPECT); NULL outside the loops. */
static jmp_buf *expect_env;

static void setup(void)
{
	expect_env = NULL;
	memset(&T, 0, sizeof(T));
	memset(&A, 0, sizeof(A));
	tmpdir_make(T.dir, sizeof(T.dir));
	snprintf(T.path, sizeof(T.path), "%s/saga.db", T.dir);
	T.def = make_def();
	install_allocators();
}

static void teardown(void)
{
	expect_env = NULL;
	disarm();
	remove_allocators();
	saga_definition_free(T.def);
	tmpdir_remove(T.dir);
}

static void remove_store(void)
{
	static const char *const sfx[] = { "", "-wal", "-shm", "-journal" };
	for (size_t i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++) {
		char p[320];
		snprintf(p, sizeof(p), "%s%s", T.path, sfx[i]);
		unlink(p);
	}
}

static saga_options options(void)
{
	saga_options o = SAGA_OPTIONS_INIT;
	o.path = T.path;
	o.durability = SAGA_DURABILITY_NORMAL;
	o.clock = fake_clock_make(&T.clock);
	o.seed = 7;
	saga_allocator al = { e_malloc, e_realloc, e_free, NULL };
	o.allocator = al;
	return o;
}

static cJSON *input_of(int who)
{
	pause_alloc();
	cJSON *in = cJSON_CreateObject();
	ck_assert_ptr_nonnull(in);
	cJSON_AddStringToObject(in, "who", who_names[who]);
	resume_alloc();
	return in;
}

/* A broken expectation inside the fault loops ends the current N only: the
 * loop records it and goes on, so one run reports every failing N. Outside
 * the loops it fails the test at once. */
static char expect_msg[1024];
static saga_engine *cur_engine; /* closed when an expectation breaks */

static void expect_failed(int line, const char *fmt, ...)
	__attribute__((format(printf, 2, 3), noreturn));
static void expect_failed(int line, const char *fmt, ...)
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

#define EXPECT(cond, ...)                                       \
	do {                                                    \
		if (!(cond))                                    \
			expect_failed(__LINE__, __VA_ARGS__);   \
	} while (0)

static void free_inputs(void)
{
	for (int w = 0; w < NWHO; w++) {
		cJSON_Delete(T.in[w]);
		T.in[w] = NULL;
	}
}

static long code_counts[32];
static const char *open_errmsg; /* the message of a failed open */

/* Every call answers 0 or a named error with a message. */
static int check_rc(saga_engine *e, const char *what, int rc, long n)
{
	EXPECT(rc <= 0 && rc >= SAGA_ECLOSED, "N=%ld %s: unknown return code %d", n, what,
	       rc);
	code_counts[-rc]++;
	if (rc && !first_failure[0])
		snprintf(first_failure, sizeof(first_failure), "%s: %s (%s)", what,
		         saga_strerror(rc), e ? saga_engine_errmsg(e) : open_errmsg);
	/* The store is sound: a shortage of memory must not be reported as
	 * damage (an operator would restore a backup for nothing). */
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
		seen_event *s = &h->ev[h->n++];
		s->instance = ev->instance;
		s->seq = ev->seq;
		s->type = ev->type;
		s->step = ev->step;
		s->phase = ev->phase;
		s->outcome = ev->outcome;
		s->attempt = ev->attempt;
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
	return 0;
}

/* The per-N statistics. */
typedef struct loop_stats {
	long n_values;      /* N values run */
	long injected;      /* faults injected in total */
	long ops;           /* operations of the kind in the fault-free run */
	long reinvocations; /* participant calls beyond one per outcome */
	long open_failed;   /* the first open failed */
	long calls_failed;  /* API calls that returned an error under a fault */
} loop_stats;

/* Checks the finished store against the contract; e is open on it. */
static void check_contract(saga_engine *e, const int64_t ids[NWHO], const char *label, long n,
                           loop_stats *st)
{
	EXPECT(T.violations == 0, "%s N=%ld: %d violations, first: %s", label, n,
	       T.violations, T.violation);
	int64_t counts[SAGA_STATE_COUNT];
	EXPECT(saga_counts(e, counts) == SAGA_OK, "N=%ld: saga_counts: %s", n,
	       saga_engine_errmsg(e));
	int64_t total = 0;
	for (int i = 0; i < SAGA_STATE_COUNT; i++)
		total += counts[i];
	EXPECT(total == NWHO, "%s N=%ld: %lld instances, want %d", label, n,
	       (long long)total, NWHO);
	static hist h[NWHO];
	for (int w = 0; w < NWHO; w++) {
		saga_instance_info info;
		EXPECT(saga_get(e, &info, ids[w]) == SAGA_OK, "N=%ld: saga_get: %s", n,
		       saga_engine_errmsg(e));
		saga_state want = w == 0 ? SAGA_COMPLETED : SAGA_COMPENSATED;
		EXPECT(info.state == want, "%s N=%ld: %s is %s, want %s", label, n,
		       who_names[w], saga_state_name(info.state), saga_state_name(want));
		memset(&h[w], 0, sizeof(h[w]));
		EXPECT(saga_history(e, ids[w], hist_fn, &h[w]) == SAGA_OK,
		       "N=%ld: saga_history: %s", n, saga_engine_errmsg(e));
		EXPECT(T.violations == 0, "%s N=%ld: %s", label, n, T.violation);
		/* Exactly one final outcome per started step and phase. */
		for (int s = 0; s < NSTEPS; s++) {
			int started = w == 0 || s <= PIVOT;
			int final_a = h[w].ok[s][0] + h[w].fail[s][0];
			EXPECT(final_a == started, "%s N=%ld: %s %s action: %d final outcomes",
			       label, n, who_names[w], step_names[s], final_a);
			EXPECT(started || h[w].starts[s][0] == 0,
			       "%s N=%ld: %s %s was never due but started", label, n,
			       who_names[w], step_names[s]);
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
			EXPECT(h[w].fail[PIVOT][0] == 1 && h[w].ok[0][0] == 1 &&
			       h[w].ok[1][0] == 1,
			       "%s N=%ld: B's forward outcomes are wrong", label, n);
			/* Reverse order: hold is compensated before reserve starts. */
			EXPECT(h[w].ok_seq[1][1] < h[w].first_start_seq[0][1],
			       "%s N=%ld: B compensated out of order", label, n);
		}
		/* Every participant call of this instance used its stable key. */
		int per[NSTEPS][2] = { { 0 } };
		for (int k = 0; k < T.ncalls; k++) {
			const call *c = &T.calls[k];
			if (c->who != w)
				continue;
			char want_key[160];
			snprintf(want_key, sizeof(want_key), "%s/%s/%s", info.uid,
			         step_names[c->step],
			         c->phase == SAGA_PHASE_ACTION ? "action" : "compensation");
			EXPECT(strcmp(c->key, want_key) == 0, "%s N=%ld: key %s, want %s",
			       label, n, c->key, want_key);
			per[c->step][c->phase]++;
		}
		for (int s = 0; s < NSTEPS; s++)
			for (int p = 0; p < 2; p++) {
				/* Attempts that answered (RETRY, FAIL, OK) are legitimate calls. */
				int legit = h[w].ok[s][p] + h[w].fail[s][p] +
				            (w == 0 && s == SHIP && !p);
				EXPECT(per[s][p] >= legit, "%s N=%ld: %s %s/%d called %d times "
				       "for %d outcomes", label, n, who_names[w], step_names[s], p,
				       per[s][p], legit);
				st->reinvocations += per[s][p] - legit;
			}
	}
	/* Every event a listener saw is durable, unchanged. */
	for (int i = 0; i < T.nevents; i++) {
		const seen_event *s = &T.events[i];
		int w = s->instance == ids[0] ? 0 : s->instance == ids[1] ? 1 : -1;
		EXPECT(w >= 0, "%s N=%ld: an event of instance %lld that does not exist",
		       label, n, (long long)s->instance);
		bool found = false;
		for (int k = 0; k < h[w].n && !found; k++) {
			const seen_event *d = &h[w].ev[k];
			found = d->seq == s->seq && d->type == s->type && d->step == s->step &&
			        d->phase == s->phase && d->outcome == s->outcome &&
			        d->attempt == s->attempt;
		}
		EXPECT(found, "%s N=%ld: event seq %lld (%s) was delivered but is not in "
		       "the history", label, n, (long long)s->seq,
		       saga_event_type_name((saga_event_type)s->type));
	}
}

/* Starts A and B (idempotent) and runs until both have ended. With
 * only_missing, instances whose start answered OK are not started again
 * (a start queues the instance, which would hide one the engine forgot). */
static void finish(saga_engine *e, int64_t ids[NWHO], const char *label, long n,
                   bool only_missing)
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
		EXPECT(!ids[w] || ids[w] == id, "%s N=%ld: %s started as %lld, found %lld",
		       label, n, who_names[w], (long long)ids[w], (long long)id);
		EXPECT(!(ids[w] && created), "%s N=%ld: %s created twice", label, n,
		       who_names[w]);
		ids[w] = id;
	}
	for (int round = 0;; round++) {
		if (round == 30) {
			char st[2][160];
			for (int w = 0; w < NWHO; w++) {
				saga_instance_info info;
				saga_get(e, &info, ids[w]);
				long long due = info.due_ms ? (long long)(info.due_ms - T.clock.wall) : 0;
				snprintf(st[w], sizeof(st[w]),
				         "%s %s step %d phase %d attempt %u due %+lld", who_names[w],
				         saga_state_name(info.state), info.step, info.phase, info.attempt,
				         due);
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
		fake_clock_advance(&T.clock, 100);
	}
}


/* ------------------------------------------------------------------------ */
/* The allocation-failure loops                                             */

static long env_long(const char *name)
{
	const char *v = getenv(name);
	return v && *v ? strtol(v, NULL, 10) : 0;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct oom_stats {
	loop_stats base;
	long by[AL_COUNT];      /* failures injected, by allocator */
	long clean[AL_COUNT];   /* allocations per allocator in the fault-free run */
} oom_stats;

/* Every block of the three allocators is freed again. */
static void check_no_leak(const long before[AL_COUNT], const char *when, long n)
{
	for (int a = 0; a < AL_COUNT; a++)
		EXPECT(A.live[a] == before[a],
		       "N=%ld (%s): %ld %s allocation(s) leaked %s; the failure hit: %s", n,
		       A.sticky ? "sticky" : "one-shot", A.live[a] - before[a], al_names[a],
		       when, first_failure[0] ? first_failure : "no call reported it");
}

/* One N; returns the failures injected. */
static long run_one(long n, bool sticky, bool same_engine, oom_stats *st)
{
	remove_store();
	T.ncalls = 0;
	T.nevents = 0;
	T.violations = 0;
	first_failure[0] = '\0';
	T.clock.wall = 1700000000000ull;
	T.clock.mono = 1000;
	saga_options o = options();
	int64_t ids[NWHO] = { 0, 0 };
	char err[256] = "";
	saga_engine *e = NULL;
	long before[AL_COUNT];
	memcpy(before, A.live, sizeof(before));
	T.in[0] = input_of(0);
	T.in[1] = input_of(1);
	cJSON **in = T.in;

	arm(n, sticky);
	int rc = saga_engine_open(&e, &o, err, sizeof(err));
	cur_engine = rc == SAGA_OK ? e : NULL;
	open_errmsg = err;
	check_rc(NULL, "open", rc, n);
	if (rc) {
		EXPECT(e == NULL && err[0], "N=%ld: open failed without a message", n);
		st->base.open_failed++;
		st->base.calls_failed++;
	} else {
		st->base.calls_failed +=
			check_rc(e, "add_listener", saga_engine_add_listener(e, listener, NULL), n) != 0;
		st->base.calls_failed += check_rc(e, "register", saga_engine_register(e, T.def), n) != 0;
		for (int w = 0; w < NWHO; w++) {
			int64_t id = 0;
			rc = check_rc(e, "start", saga_start(e, &id, NULL, DEF_NAME, who_names[w], in[w]),
			              n);
			if (rc == SAGA_OK) {
				EXPECT(id > 0, "N=%ld: start gave id %lld", n, (long long)id);
				ids[w] = id;
			}
			st->base.calls_failed += rc != 0;
		}
		for (int round = 0; round < 3; round++) {
			st->base.calls_failed += check_rc(e, "run", saga_run_until_idle(e), n) != 0;
			fake_clock_advance(&T.clock, 100);
		}
		if (ids[0]) {
			saga_instance_info info;
			st->base.calls_failed += check_rc(e, "get", saga_get(e, &info, ids[0]), n) != 0;
			cJSON *ctx = NULL;
			rc = saga_get_context(e, &ctx, ids[0]);
			bool out_ok = rc == SAGA_OK ? ctx != NULL : ctx == NULL;
			cJSON_Delete(ctx);
			check_rc(e, "get_context", rc, n);
			EXPECT(out_ok, "N=%ld: get_context: output and answer disagree", n);
			st->base.calls_failed += rc != 0;
			static hist h;
			memset(&h, 0, sizeof(h));
			st->base.calls_failed +=
				check_rc(e, "history", saga_history(e, ids[0], hist_fn, &h), n) != 0;
		}
		int64_t counts[SAGA_STATE_COUNT];
		st->base.calls_failed += check_rc(e, "counts", saga_counts(e, counts), n) != 0;
		if (same_engine) {
			disarm();
			rc = saga_engine_register(e, T.def);
			EXPECT(rc == SAGA_OK || rc == SAGA_EEXISTS, "N=%ld: register: %s", n,
			       saga_engine_errmsg(e));
			finish(e, ids, "same engine", n, true);
			check_contract(e, ids, "same engine", n, &st->base);
		}
		saga_engine_close(e);
		cur_engine = NULL;
	}
	disarm();
	free_inputs();
	long injected = A.injected;
	check_no_leak(before, "by the scenario", n);

	/* Memory is back: the store opens and the sagas finish. */
	rc = saga_engine_open(&e, &o, err, sizeof(err));
	cur_engine = rc == SAGA_OK ? e : NULL;
	EXPECT(rc == SAGA_OK, "N=%ld: the store does not reopen: %s", n, err);
	EXPECT(saga_engine_add_listener(e, listener, NULL) == SAGA_OK, "N=%ld: add_listener: %s",
	       n, saga_engine_errmsg(e));
	EXPECT(saga_engine_register(e, T.def) == SAGA_OK, "N=%ld: register: %s", n,
	       saga_engine_errmsg(e));
	finish(e, ids, sticky ? "sticky" : "one-shot", n, false);
	check_contract(e, ids, sticky ? "sticky" : "one-shot", n, &st->base);
	saga_engine_close(e);
	cur_engine = NULL;
	check_no_leak(before, "after recovery", n);
	return injected;
}

/* The N values whose scenario broke an expectation, grouped by the kind of
 * failure (the message without its numbers). */
#define MAX_FAILED 40
#define MAX_KINDS 16
static long failed_n[MAX_FAILED];
static long nfailed;
static struct failure_kind {
	char sig[256];
	char first[1024];
	long first_n, count;
} failure_kinds[MAX_KINDS];
static int nfailure_kinds;

static void note_failure(long n, const char *msg)
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

/* Prints the failures and fails the test when there were any. */
static void report_failures(const char *label)
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

/* Adds what the last N injected (A keeps it until the next arm()). */
static void account(oom_stats *st)
{
	st->base.n_values++;
	st->base.injected += A.injected;
	for (int a = 0; a < AL_COUNT; a++) {
		st->by[a] += A.injected_by[a];
		st->clean[a] = A.seen[a];
	}
}

/* Allocations made by saga_engine_open on a fresh store (SQLite reading the
 * schema and preparing the statements: most of a run's allocations). */
static long open_allocations(void)
{
	remove_store();
	saga_options o = options();
	saga_engine *e = NULL;
	char err[256];
	arm(LONG_MAX, false);
	int rc = saga_engine_open(&e, &o, err, sizeof(err));
	long n = A.count;
	disarm();
	ck_assert_msg(rc == SAGA_OK, "open: %s", err);
	saga_engine_close(e);
	return n;
}

/* Inside saga_engine_open every OPEN_STRIDE-th allocation is failed (all
 * of them with SAGA_OOM_FULL=1): they are SQLite's, preparing statements,
 * and each gives the engine the same SQLITE_NOMEM from the same call. Every
 * allocation after the open is failed. */
#define OPEN_STRIDE 4

static void oom_loop(bool sticky, bool same_engine)
{
	static oom_stats st;
	static long n;
	memset(&st, 0, sizeof(st));
	memset(code_counts, 0, sizeof(code_counts));
	nfailed = 0;
	nfailure_kinds = 0;
	static double t0;
	static long only;
	t0 = now_s();
	only = env_long("SAGA_OOM_N");
	const char *mode = getenv("SAGA_OOM_MODE");
	if (only && mode && strcmp(mode, sticky ? "sticky" : "once") != 0)
		return;
	static long in_open, stride, skipped;
	in_open = open_allocations();
	stride = env_long("SAGA_OOM_FULL") ? 1 : OPEN_STRIDE;
	/* Under valgrind (local use: meson test --setup=valgrind) every N costs
	 * ~30 times more: sample every all_stride-th N everywhere. */
	static long all_stride;
	all_stride = env_long("SAGA_OOM_STRIDE");
	const char *pre = getenv("LD_PRELOAD");
	if (!all_stride && pre && strstr(pre, "vgpreload"))
		all_stride = 10;
	if (all_stride < 1)
		all_stride = 1;
	skipped = 0;
	jmp_buf env;
	for (n = only ? only : 1;; n++) {
		ck_assert_msg(n < MAX_N, "more than %d allocations?", MAX_N);
		if (!only && ((n <= in_open && n % stride != 1 % stride) ||
		              (all_stride > 1 && n % all_stride != 1))) {
			skipped++;
			continue;
		}
		expect_env = &env;
		if (setjmp(env)) {
			/* This N broke the contract: note it, clean up, go on. */
			disarm();
			saga_engine_close(cur_engine);
			cur_engine = NULL;
			free_inputs();
			note_failure(n, expect_msg);
			account(&st);
			/* no fault reached: that was the fault-free run */
			if (only || nfailed >= 200 || A.injected == 0)
				break;
			continue;
		}
		long inj = run_one(n, sticky, same_engine, &st);
		account(&st);
		if (inj == 0 || only)
			break;
	}
	expect_env = NULL;
	char codes[512] = "";
	for (int i = 1; i < 32; i++)
		if (code_counts[i]) {
			char one[64];
			snprintf(one, sizeof(one), " %s=%ld", saga_strerror(-i), code_counts[i]);
			strncat(codes, one, sizeof(codes) - strlen(codes) - 1);
		}
	printf("oom %-8s%s N=%ld..%ld (%ld N run; in the open's first %ld allocations every %ld-th"
	       "%s), "
	       "%ld allocation failures injected (engine %ld, sqlite %ld, "
	       "cjson %ld); a fault-free run allocates engine %ld, sqlite %ld, cjson %ld; "
	       "%ld failed calls (%ld opens), %ld re-invocations, %ld N broke the contract, "
	       "%.2f s; codes:%s\n",
	       sticky ? "sticky" : "one-shot", same_engine ? " [same engine]" : "",
	       only ? only : 1, n, st.base.n_values, in_open, stride,
	       all_stride > 1 ? ", sampled: SAGA_OOM_STRIDE" : "", st.base.injected,
	       st.by[AL_ENGINE], st.by[AL_SQLITE],
	       st.by[AL_CJSON], st.clean[AL_ENGINE], st.clean[AL_SQLITE], st.clean[AL_CJSON],
	       st.base.calls_failed, st.base.open_failed, st.base.reinvocations, nfailed,
	       now_s() - t0, codes);
	char label[64];
	snprintf(label, sizeof(label), "oom %s%s", sticky ? "sticky" : "one-shot",
	         same_engine ? " [same engine]" : "");
	report_failures(label);
	if (!only)
		ck_assert_int_gt(st.base.injected, 0);
}

START_TEST(oom_sticky)
{
	oom_loop(true, false);
}
END_TEST

START_TEST(oom_once)
{
	oom_loop(false, false);
}
END_TEST

START_TEST(oom_once_same_engine)
{
	oom_loop(false, true);
}
END_TEST

/* The allocator hooks are the engine's: one set without the others is refused. */
START_TEST(allocator_all_or_none)
{
	saga_options o = options();
	o.allocator.realloc_fn = NULL;
	saga_engine *e = (saga_engine *)1;
	char err[256] = "";
	ck_assert_int_eq(saga_engine_open(&e, &o, err, sizeof(err)), SAGA_EINVAL);
	ck_assert_ptr_null(e);
	ck_assert_ptr_nonnull(strstr(err, "allocator"));
}
END_TEST

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	/* The loops create and sync thousands of small stores; on a disk the
	 * fsyncs of the checkpoints dominate the run time, and the faults here
	 * are simulated anyway: use memory when TMPDIR does not say otherwise. */
	if (!getenv("TMPDIR") && access("/dev/shm", W_OK) == 0)
		setenv("TMPDIR", "/dev/shm", 1);
	Suite *s = suite_create("oom");
	TCase *tc = tcase_create("oom");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 500);
	tcase_add_test(tc, allocator_all_or_none);
	tcase_add_test(tc, oom_sticky);
	tcase_add_test(tc, oom_once);
	tcase_add_test(tc, oom_once_same_engine);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
