/* A step's timeout counts from the invocation of its callback, not from the
 * moment its start was written (issue 10, item 8).
 *
 * 1000 instances are in flight at once, each with one step whose callback is
 * quick (1 ms of the injected clock with the caller driving; 1 ms of real
 * time and none of the injected clock with workers) under a 100 ms timeout
 * and a circuit breaker that opens on failures or slow calls (50 % of at
 * least 10 calls, slow at 100 ms). The time an attempt waits to be invoked
 * is made much longer than the timeout, deterministically, on the injected
 * clock:
 *  - workers = 0: the round invokes its 1000 callbacks one after the other,
 *    so the last one runs ~1 s after its start was written;
 *  - workers = 1 and 4: every worker is held in a callback of another
 *    definition while the 1000 starts are committed, the clock then jumps
 *    1 s, and the workers are released.
 * Every answer comes within the timeout of its invocation: no LATE event,
 * no TIMEOUT, the breaker never opens nor refuses, every instance completes,
 * and saga_step_deadline() is the invocation's time plus the timeout.
 *
 * Async steps (timeout 400 ms): the 300 starts of a round are written, the
 * clock moves 300 ms before the first callback runs (the listener of the
 * starts, which runs between the commit and the invocations), then each
 * callback takes 1 ms and answers PENDING. In a child process killed with
 * SIGKILL afterwards. Reopened, the store holds each pending attempt's
 * deadline counted from its own invocation (the instance is due then), and
 * a completion before that deadline is accepted, one after it is LATE.
 * SPDX-License-Identifier: MIT */
#include "test-common.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NINST      1000
#define TIMEOUT_MS 100
#define T0         1700000000000ULL

/* A fake clock that threads may read and move at once. */
static _Atomic uint64_t clk;

static uint64_t clk_read(void *user)
{
	(void)user;
	return atomic_load(&clk);
}

static saga_clock atomic_clock(void)
{
	saga_clock c = { clk_read, clk_read, NULL };
	return c;
}

static char dir[256];
static char path[300];

static atomic_int late_events, timeout_outcomes, refused_events, starts_of_call;
static atomic_int breaker_opened, deadline_mismatch, blockers_in;
static atomic_int calls;
static bool advance_in_callback; /* workers = 0: each callback takes 1 ms of the clock */
static bool jump_on_start;       /* each attempt start (its event) moves the clock 1 ms */

static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static bool gate_open;

static void setup(void)
{
	tmpdir_make(dir, sizeof(dir));
	test_store_name(path, sizeof(path), dir, "store.db");
	atomic_store(&clk, T0);
	atomic_store(&late_events, 0);
	atomic_store(&timeout_outcomes, 0);
	atomic_store(&refused_events, 0);
	atomic_store(&starts_of_call, 0);
	atomic_store(&breaker_opened, 0);
	atomic_store(&deadline_mismatch, 0);
	atomic_store(&blockers_in, 0);
	atomic_store(&calls, 0);
	gate_open = false;
	jump_on_start = false;
}

static void teardown(void)
{
	test_store_drop(path);
	tmpdir_remove(dir);
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0)
		;
}

static void listener(const saga_event *ev, void *user)
{
	(void)user;
	if (ev->type == SAGA_EVENT_LATE)
		atomic_fetch_add(&late_events, 1);
	if (ev->type == SAGA_EVENT_ATTEMPT_END && ev->outcome == SAGA_OUTCOME_TIMEOUT)
		atomic_fetch_add(&timeout_outcomes, 1);
	if (ev->type == SAGA_EVENT_BREAKER_REFUSED)
		atomic_fetch_add(&refused_events, 1);
	if (ev->type == SAGA_EVENT_ATTEMPT_START && ev->step_name &&
	    strcmp(ev->step_name, "call") == 0)
		atomic_fetch_add(&starts_of_call, 1);
	if (ev->type == SAGA_EVENT_ATTEMPT_START && jump_on_start)
		atomic_fetch_add(&clk, 1);
}

static void on_breaker(const char *name, saga_breaker_state from, saga_breaker_state to,
                       uint64_t generation, void *user)
{
	(void)name;
	(void)from;
	(void)generation;
	(void)user;
	if (to == SAGA_BREAKER_OPEN)
		atomic_fetch_add(&breaker_opened, 1);
}

/* The timed step: quick, and it checks the deadline it is told. */
static saga_step_result call_step(saga_step_ctx *ctx, void *user)
{
	(void)user;
	uint64_t entry = atomic_load(&clk);
	if (saga_step_deadline(ctx) != entry + TIMEOUT_MS)
		atomic_fetch_add(&deadline_mismatch, 1);
	atomic_fetch_add(&calls, 1);
	if (advance_in_callback)
		atomic_fetch_add(&clk, 1);
	else
		sleep_ms(1);
	return SAGA_STEP_OK;
}

static saga_step_result undo_step(saga_step_ctx *ctx, void *user)
{
	(void)ctx;
	(void)user;
	return SAGA_STEP_OK;
}

/* Holds a worker until the gate opens. */
static saga_step_result blocker_step(saga_step_ctx *ctx, void *user)
{
	(void)ctx;
	(void)user;
	atomic_fetch_add(&blockers_in, 1);
	pthread_mutex_lock(&gate_mu);
	while (!gate_open)
		pthread_cond_wait(&gate_cv, &gate_mu);
	pthread_mutex_unlock(&gate_mu);
	return SAGA_STEP_OK;
}

static saga_engine *open_engine(unsigned int workers)
{
	saga_options o = SAGA_OPTIONS_INIT;
	o.path = path;
	o.workers = workers;
	o.max_in_flight = 1024;
	o.clock = atomic_clock();
	saga_engine *e = NULL;
	char err[256];
	ck_assert_msg(saga_engine_open(&e, &o, err, sizeof(err)) == SAGA_OK, "open: %s", err);
	ck_assert_int_eq(saga_engine_add_listener(e, listener, NULL), SAGA_OK);

	saga_breaker_config bc = SAGA_BREAKER_CONFIG_INIT;
	bc.window_size = 100;
	bc.minimum_calls = 10;
	bc.failure_rate_threshold = 50.0;
	bc.slow_call_ms = TIMEOUT_MS;
	bc.slow_call_rate_threshold = 50.0;
	bc.open_wait_ms = 60000;
	ck_assert_int_eq(saga_engine_add_breaker(e, "svc", &bc), SAGA_OK);
	ck_assert_int_eq(saga_breaker_set_listener(saga_engine_breaker(e, "svc"), on_breaker, NULL),
	                 SAGA_OK);

	saga_definition *d;
	ck_assert_int_eq(saga_definition_new(&d, "timed", 1), SAGA_OK);
	saga_step_spec s = { "call", SAGA_STEP_COMPENSATABLE, call_step, undo_step, NULL };
	ck_assert_int_eq(saga_definition_add_step(d, &s), SAGA_OK);
	ck_assert_int_eq(saga_definition_set_timeout(d, "call", TIMEOUT_MS, TIMEOUT_MS), SAGA_OK);
	ck_assert_int_eq(saga_definition_set_breaker(d, "call", "svc"), SAGA_OK);
	ck_assert_int_eq(saga_engine_register(e, d), SAGA_OK);
	saga_definition_free(d);

	ck_assert_int_eq(saga_definition_new(&d, "blocker", 1), SAGA_OK);
	saga_step_spec b = { "hold", SAGA_STEP_RETRIABLE, blocker_step, NULL, NULL };
	ck_assert_int_eq(saga_definition_add_step(d, &b), SAGA_OK);
	ck_assert_int_eq(saga_engine_register(e, d), SAGA_OK);
	saga_definition_free(d);
	return e;
}

static int64_t *start_timed(saga_engine *e)
{
	static int64_t ids[NINST];
	static saga_start_request reqs[NINST];
	for (int i = 0; i < NINST; i++)
		reqs[i] = (saga_start_request){ "timed", NULL, NULL };
	ck_assert_msg(saga_start_batch(e, ids, NULL, reqs, NINST) == SAGA_OK, "%s",
	              saga_engine_errmsg(e));
	return ids;
}

static void check_outcome(saga_engine *e, const int64_t *ids)
{
	ck_assert_int_eq(atomic_load(&calls), NINST);
	ck_assert_msg(atomic_load(&late_events) == 0, "%d LATE events", atomic_load(&late_events));
	ck_assert_msg(atomic_load(&timeout_outcomes) == 0, "%d TIMEOUT outcomes",
	              atomic_load(&timeout_outcomes));
	ck_assert_msg(atomic_load(&breaker_opened) == 0, "the breaker opened %d times",
	              atomic_load(&breaker_opened));
	ck_assert_msg(atomic_load(&refused_events) == 0, "the breaker refused %d calls",
	              atomic_load(&refused_events));
	ck_assert_msg(atomic_load(&deadline_mismatch) == 0,
	              "saga_step_deadline was not invocation + timeout %d times",
	              atomic_load(&deadline_mismatch));
	saga_breaker_snapshot snap;
	ck_assert_int_eq(saga_breaker_get_snapshot(&snap, saga_engine_breaker(e, "svc")), SAGA_OK);
	ck_assert_int_eq(snap.state, SAGA_BREAKER_CLOSED);
	ck_assert_int_eq(snap.failures, 0);
	ck_assert_int_eq(snap.slow_calls, 0);
	for (int i = 0; i < NINST; i++) {
		saga_instance_info info;
		ck_assert_int_eq(saga_get(e, &info, ids[i]), SAGA_OK);
		ck_assert_msg(info.state == SAGA_COMPLETED, "instance %lld is %s",
		              (long long)ids[i], saga_state_name(info.state));
	}
}

START_TEST(caller_driven_queue_wait_is_not_timeout)
{
	advance_in_callback = true;
	saga_engine *e = open_engine(0);
	int64_t *ids = start_timed(e);
	ck_assert_int_eq(saga_run_until_idle(e), SAGA_OK);
	/* The last of the round ran ~1 s after its start was written. */
	ck_assert_uint_ge(atomic_load(&clk), T0 + NINST);
	check_outcome(e, ids);
	saga_engine_close(e);
}
END_TEST

START_TEST(workers_queue_wait_is_not_timeout)
{
	static const unsigned int nworkers[] = { 1, 4 };
	unsigned int w = nworkers[_i];
	advance_in_callback = false;
	saga_engine *e = open_engine(w);
	int64_t bid[4];
	for (unsigned int i = 0; i < w; i++)
		ck_assert_int_eq(saga_start(e, &bid[i], NULL, "blocker", NULL, NULL), SAGA_OK);
	while (atomic_load(&blockers_in) < (int)w)
		sleep_ms(1);
	/* Every worker is busy: the 1000 starts are written and wait. */
	int64_t *ids = start_timed(e);
	while (atomic_load(&starts_of_call) < NINST)
		sleep_ms(1);
	atomic_fetch_add(&clk, 10 * TIMEOUT_MS);
	pthread_mutex_lock(&gate_mu);
	gate_open = true;
	pthread_cond_broadcast(&gate_cv);
	pthread_mutex_unlock(&gate_mu);
	ck_assert_msg(saga_wait_idle(e, 120000) == SAGA_OK, "%s", saga_engine_errmsg(e));
	check_outcome(e, ids);
	saga_engine_close(e);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Async steps: the PENDING record holds the deadline from the invocation   */

#define NASYNC           300
#define ASYNC_TIMEOUT_MS 400

static FILE *entries; /* "<key> <invocation ms>" per call, or NULL */

static saga_step_result async_step(saga_step_ctx *ctx, void *user)
{
	(void)user;
	uint64_t entry = atomic_load(&clk);
	if (saga_step_deadline(ctx) != entry + ASYNC_TIMEOUT_MS)
		atomic_fetch_add(&deadline_mismatch, 1);
	if (entries)
		fprintf(entries, "%s %llu\n", saga_step_key(ctx), (unsigned long long)entry);
	atomic_fetch_add(&clk, 1);
	return SAGA_STEP_PENDING;
}

static saga_engine *open_async(void)
{
	saga_options o = SAGA_OPTIONS_INIT;
	o.path = path;
	o.max_in_flight = 1024;
	o.clock = atomic_clock();
	saga_engine *e = NULL;
	char err[256];
	ck_assert_msg(saga_engine_open(&e, &o, err, sizeof(err)) == SAGA_OK, "open: %s", err);
	ck_assert_int_eq(saga_engine_add_listener(e, listener, NULL), SAGA_OK);
	saga_definition *d;
	ck_assert_int_eq(saga_definition_new(&d, "async", 1), SAGA_OK);
	saga_step_spec s = { "hold", SAGA_STEP_COMPENSATABLE, async_step, undo_step, NULL };
	ck_assert_int_eq(saga_definition_add_step(d, &s), SAGA_OK);
	ck_assert_int_eq(saga_definition_set_timeout(d, "hold", ASYNC_TIMEOUT_MS, ASYNC_TIMEOUT_MS),
	                 SAGA_OK);
	ck_assert_int_eq(saga_engine_register(e, d), SAGA_OK);
	saga_definition_free(d);
	return e;
}

START_TEST(pending_deadline_survives_a_crash)
{
	char epath[320];
	snprintf(epath, sizeof(epath), "%s/entries.txt", dir);
	int ready[2];
	ck_assert_int_eq(pipe(ready), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		/* The child runs the round, reports, and waits to be killed. */
		entries = fopen(epath, "w");
		jump_on_start = true;
		saga_engine *e = open_async();
		int64_t ids[NASYNC];
		saga_start_request reqs[NASYNC];
		for (int i = 0; i < NASYNC; i++)
			reqs[i] = (saga_start_request){ "async", NULL, NULL };
		int rc = saga_start_batch(e, ids, NULL, reqs, NASYNC);
		if (rc == SAGA_OK)
			rc = saga_run_until_idle(e);
		fclose(entries);
		entries = NULL;
		char c = rc == SAGA_OK && atomic_load(&late_events) == 0 &&
		                         atomic_load(&deadline_mismatch) == 0
		                 ? 'y'
		                 : 'n';
		if (write(ready[1], &c, 1) != 1)
			_exit(3);
		for (;;)
			pause();
	}
	close(ready[1]);
	char c = 0;
	ck_assert_int_eq(read(ready[0], &c, 1), 1);
	close(ready[0]);
	kill(pid, SIGKILL);
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	ck_assert_msg(c == 'y', "the child saw LATE answers or wrong deadlines");

	/* Recovery: each pending attempt is due at its own invocation + timeout.
	 * Invoked at +300 .. +599, due at +700 .. +999; now is +850. */
	atomic_store(&clk, T0 + 850);
	test_store_owners_dead(path);
	saga_engine *e = open_async();
	FILE *f = fopen(epath, "r");
	ck_assert_ptr_nonnull(f);
	char key[160];
	unsigned long long entry;
	int n = 0, accepted = 0, late = 0;
	while (fscanf(f, "%159s %llu", key, &entry) == 2) {
		n++;
		uint64_t deadline = entry + ASYNC_TIMEOUT_MS;
		int rc = saga_complete(e, key, SAGA_STEP_OK, NULL);
		if (deadline > T0 + 850) {
			ck_assert_msg(rc == SAGA_OK,
			              "%s: invoked at +%llu, completed at +850: %d %s", key,
			              entry - T0, rc, saga_engine_errmsg(e));
			accepted++;
		} else {
			ck_assert_msg(rc == SAGA_ELATE,
			              "%s: invoked at +%llu, completed at +850: %d", key,
			              entry - T0, rc);
			late++;
		}
	}
	fclose(f);
	ck_assert_int_eq(n, NASYNC);
	ck_assert_int_eq(accepted, 149); /* invoked at +451 .. +599 */
	ck_assert_int_eq(late, 151);     /* invoked at +300 .. +450 */
	ck_assert_int_eq(saga_run_until_idle(e), SAGA_OK);
	int64_t counts[SAGA_STATE_COUNT];
	ck_assert_int_eq(saga_counts(e, counts), SAGA_OK);
	ck_assert_int_eq(counts[SAGA_COMPLETED], 149);
	saga_engine_close(e);
}
END_TEST

/* The stored due time of a pending instance is its attempt's deadline. */
static int due_check(const saga_instance_info *info, void *user)
{
	int *bad = user;
	if (info->state != SAGA_WAITING || info->due_ms < T0 + NASYNC + ASYNC_TIMEOUT_MS ||
	    info->due_ms >= T0 + 2 * NASYNC + ASYNC_TIMEOUT_MS)
		(*bad)++;
	return 0;
}

START_TEST(pending_due_is_invocation_plus_timeout)
{
	entries = fopen("/dev/null", "w");
	jump_on_start = true;
	saga_engine *e = open_async();
	int64_t ids[NASYNC];
	saga_start_request reqs[NASYNC];
	for (int i = 0; i < NASYNC; i++)
		reqs[i] = (saga_start_request){ "async", NULL, NULL };
	ck_assert_int_eq(saga_start_batch(e, ids, NULL, reqs, NASYNC), SAGA_OK);
	ck_assert_int_eq(saga_run_until_idle(e), SAGA_OK);
	fclose(entries);
	entries = NULL;
	ck_assert_int_eq(atomic_load(&late_events), 0);
	ck_assert_int_eq(atomic_load(&deadline_mismatch), 0);
	uint64_t due = 0;
	ck_assert_int_eq(saga_next_due(e, &due), SAGA_OK);
	ck_assert_uint_eq(due, T0 + NASYNC + ASYNC_TIMEOUT_MS); /* the first invoked */
	int bad = 0;
	ck_assert_int_eq(saga_list(e, SAGA_WAITING, due_check, &bad), SAGA_OK);
	ck_assert_int_eq(bad, 0);
	int64_t counts[SAGA_STATE_COUNT];
	ck_assert_int_eq(saga_counts(e, counts), SAGA_OK);
	ck_assert_int_eq(counts[SAGA_WAITING], NASYNC);
	/* The last one invoked is still within its time long after the first's. */
	saga_instance_info info;
	ck_assert_int_eq(saga_get(e, &info, ids[NASYNC - 1]), SAGA_OK);
	ck_assert_uint_eq(info.due_ms, T0 + 2 * NASYNC - 1 + ASYNC_TIMEOUT_MS);
	saga_engine_close(e);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("timeout-clock");
	TCase *tc = tcase_create("timeout counts from the invocation");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 240);
	tcase_add_test(tc, caller_driven_queue_wait_is_not_timeout);
	tcase_add_loop_test(tc, workers_queue_wait_is_not_timeout, 0, 2);
	tcase_add_test(tc, pending_deadline_survives_a_crash);
	tcase_add_test(tc, pending_due_is_invocation_plus_timeout);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
