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
#include <stdbool.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "test-common.h"
#include "scenario.h"

#define MAX_N 200000 /* a safety stop */

/* ------------------------------------------------------------------------ */
/* The failing allocator                                                    */

enum { AL_ENGINE, AL_SQLITE, AL_CJSON, AL_COUNT };
static const char *const al_names[AL_COUNT] = { "engine", "sqlite", "cjson" };

static struct {
	bool armed;
	long nth;
	bool sticky;
	int paused; /* > 0: the test's own code runs; never fail */
	long count; /* library allocations since arming */
	long injected;
	long injected_by[AL_COUNT];
	long seen[AL_COUNT]; /* allocations per allocator since arming */
	long live[AL_COUNT]; /* blocks allocated and not freed */
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
	sqlite3_mem_methods m = { s_malloc,  s_free, s_realloc,  s_size,
		                  s_roundup, s_init, s_shutdown, sqlite_orig.pAppData };
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
/* Fixture                                                                  */

static void setup(void)
{
	scenario_setup();
	memset(&A, 0, sizeof(A));
	/* The participant and the inputs are the test's: never failed. */
	scn.cfg.pause = pause_alloc;
	scn.cfg.resume = resume_alloc;
	scn.cfg.memory_faults = true;
	install_allocators();
}

static void teardown(void)
{
	expect_env = NULL;
	disarm();
	remove_allocators();
	scenario_teardown();
}

static saga_options options(void)
{
	saga_options o = SAGA_OPTIONS_INIT;
	o.path = scn.path;
	o.durability = SAGA_DURABILITY_NORMAL;
	o.clock = fake_clock_make(&scn.clock);
	o.seed = 7;
	saga_allocator al = { e_malloc, e_realloc, e_free, NULL };
	o.allocator = al;
	return o;
}

/* ------------------------------------------------------------------------ */
/* The allocation-failure loops                                             */

typedef struct oom_stats {
	loop_stats base;
	long by[AL_COUNT];    /* failures injected, by allocator */
	long clean[AL_COUNT]; /* allocations per allocator in the fault-free run */
} oom_stats;

/* Every block of the three allocators is freed again. */
static void check_no_leak(const long before[AL_COUNT], const char *when, long n)
{
	for (int a = 0; a < AL_COUNT; a++)
		EXPECT(A.live[a] == before[a],
		       "N=%ld (%s): %ld %s allocation(s) leaked %s; the failure hit: %s", n,
		       A.sticky ? "sticky" : "one-shot", A.live[a] - before[a], al_names[a], when,
		       first_failure[0] ? first_failure : "no call reported it");
}

static void arm_oom(long n, const void *sticky)
{
	arm(n, *(const bool *)sticky);
}

/* One N; returns the failures injected. */
static long run_one(long n, bool sticky, bool same_engine, oom_stats *st)
{
	scenario_reset();
	saga_options o = options();
	int64_t ids[NWHO] = { 0, 0 };
	long before[AL_COUNT];
	memcpy(before, A.live, sizeof(before));

	scenario_drive(&o, n, same_engine, arm_oom, &sticky, disarm, ids, &st->base);
	long injected = A.injected;
	check_no_leak(before, "by the scenario", n);

	/* Memory is back: the store opens and the sagas finish. */
	scenario_recover(&o, NULL, sticky ? "sticky" : "one-shot", n, ids, &st->base);
	check_no_leak(before, "after recovery", n);
	return injected;
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
	scenario_loop_begin();
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
			scenario_abandon(disarm);
			scenario_note_failure(n, expect_msg);
			account(&st);
			/* no fault reached: that was the fault-free run */
			if (only || scenario_nfailed() >= 200 || A.injected == 0)
				break;
			continue;
		}
		long inj = run_one(n, sticky, same_engine, &st);
		account(&st);
		if (inj == 0 || only)
			break;
	}
	expect_env = NULL;
	char codes[512];
	scenario_codes(codes, sizeof(codes));
	printf("oom %-8s%s N=%ld..%ld (%ld N run; in the open's first %ld allocations every %ld-th"
	       "%s), "
	       "%ld allocation failures injected (engine %ld, sqlite %ld, "
	       "cjson %ld); a fault-free run allocates engine %ld, sqlite %ld, cjson %ld; "
	       "%ld failed calls (%ld opens), %ld re-invocations, %ld N broke the contract, "
	       "%.2f s; codes:%s\n",
	       sticky ? "sticky" : "one-shot", same_engine ? " [same engine]" : "", only ? only : 1,
	       n, st.base.n_values, in_open, stride,
	       all_stride > 1 ? ", sampled: SAGA_OOM_STRIDE" : "", st.base.injected,
	       st.by[AL_ENGINE], st.by[AL_SQLITE], st.by[AL_CJSON], st.clean[AL_ENGINE],
	       st.clean[AL_SQLITE], st.clean[AL_CJSON], st.base.calls_failed, st.base.open_failed,
	       st.base.reinvocations, scenario_nfailed(), now_s() - t0, codes);
	char label[64];
	snprintf(label, sizeof(label), "oom %s%s", sticky ? "sticky" : "one-shot",
	         same_engine ? " [same engine]" : "");
	scenario_report_failures(label);
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
	scenario_main_init();
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
