/* The hand-off between the driver and the workers (driver.c): the driver
 * hands committed attempts to the workers through a list and takes their
 * answers back through another, and waits for the answers still out before
 * it commits, for a bounded time.
 *
 *  - Answers given while the engine closes are recorded by the close: after
 *    a reopen, no step that answered runs again. That holds for callbacks
 *    running when close begins and for attempts still waiting in the list
 *    (the workers invoke them before they leave).
 *  - A callback that does not return does not hold up the other instances:
 *    the driver's wait for answers is bounded, so their rounds go on.
 *  - Closing in the middle of a busy run, then reopening, leaves exactly one
 *    outcome per step and phase in every history.
 * No timing assertion: the bounds on waits are generous (seconds) and only
 * keep a broken engine from hanging the suite.
 * SPDX-License-Identifier: MIT */
#include "test-common.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static char dir[256];
static char path[300];

static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static bool gate_open;
static atomic_int gated_calls; /* calls of the gated step */
static atomic_int free_calls;  /* calls of the steps that answer at once */
static pthread_t gated_thread; /* the thread of the last gated call */

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, ms % 1000 * 1000000L };
	nanosleep(&ts, NULL);
}

static void set_gate(bool open)
{
	pthread_mutex_lock(&gate_mu);
	gate_open = open;
	pthread_cond_broadcast(&gate_cv);
	pthread_mutex_unlock(&gate_mu);
}

/* Waits until the test opens the gate, then answers OK. */
static saga_step_result gated(saga_step_ctx *ctx, void *user)
{
	(void)ctx;
	(void)user;
	pthread_mutex_lock(&gate_mu);
	gated_thread = pthread_self();
	atomic_fetch_add(&gated_calls, 1);
	while (!gate_open)
		pthread_cond_wait(&gate_cv, &gate_mu);
	pthread_mutex_unlock(&gate_mu);
	return SAGA_STEP_OK;
}

static saga_step_result answer_ok(saga_step_ctx *ctx, void *user)
{
	(void)ctx;
	(void)user;
	atomic_fetch_add(&free_calls, 1);
	return SAGA_STEP_OK;
}

static void setup(void)
{
	tmpdir_make(dir, sizeof(dir));
	test_store_name(path, sizeof(path), dir, "w.db");
	set_gate(false);
	atomic_store(&gated_calls, 0);
	atomic_store(&free_calls, 0);
}

static void teardown(void)
{
	set_gate(true);
	test_store_drop(path);
	tmpdir_remove(dir);
}

static saga_engine *open_engine(unsigned int workers, unsigned int max_in_flight)
{
	saga_options o = SAGA_OPTIONS_INIT;
	o.path = path;
	o.durability = SAGA_DURABILITY_NORMAL;
	o.workers = workers;
	o.max_in_flight = max_in_flight;
	saga_engine *e;
	char err[256];
	ck_assert_msg(saga_engine_open(&e, &o, err, sizeof(err)) == SAGA_OK, "%s", err);
	return e;
}

/* Registers `name`: n compensatable steps, step i running fns[i]. */
static void define_steps(saga_engine *e, const char *name, const saga_step_fn *fns, int n)
{
	saga_definition *d;
	ck_assert_int_eq(saga_definition_new(&d, name, 1), SAGA_OK);
	for (int i = 0; i < n; i++) {
		char step[16];
		snprintf(step, sizeof(step), "s%d", i);
		saga_step_spec s = { step, SAGA_STEP_COMPENSATABLE, fns[i], answer_ok, NULL };
		ck_assert_int_eq(saga_definition_add_step(d, &s), SAGA_OK);
	}
	ck_assert_int_eq(saga_engine_register(e, d), SAGA_OK);
	saga_definition_free(d);
}

/* Registers `name`: nsteps compensatable steps; the first runs fn0, the
 * others answer at once. */
static void define(saga_engine *e, const char *name, int nsteps, saga_step_fn fn0)
{
	saga_step_fn fns[8];
	for (int i = 0; i < nsteps && i < 8; i++)
		fns[i] = i == 0 ? fn0 : answer_ok;
	define_steps(e, name, fns, nsteps);
}

static void wait_for(atomic_int *n, int at_least)
{
	for (int i = 0; i < 10000 && atomic_load(n) < at_least; i++)
		sleep_ms(1);
	ck_assert_int_ge(atomic_load(n), at_least);
}

static void *open_gate_later(void *arg)
{
	(void)arg;
	sleep_ms(100);
	set_gate(true);
	return NULL;
}

/* Outcomes recorded per (step, phase), from a history. */
typedef struct outcomes {
	int ends[8][2];
	int duplicates; /* a second final outcome for one step and phase */
} outcomes;

static int count_ends(const saga_event *ev, void *user)
{
	outcomes *o = user;
	if (ev->type == SAGA_EVENT_ATTEMPT_END && ev->step >= 0 && ev->step < 8 &&
	    (ev->outcome == SAGA_OUTCOME_OK || ev->outcome == SAGA_OUTCOME_FAIL) &&
	    ++o->ends[ev->step][ev->phase] > 1)
		o->duplicates++;
	return 0;
}

/* Instance id is COMPLETED, and its history holds exactly one final
 * outcome for the action of each of its nsteps steps. */
static void assert_completed_once(saga_engine *e, int64_t id, int nsteps)
{
	saga_instance_info info;
	ck_assert_int_eq(saga_get(e, &info, id), SAGA_OK);
	ck_assert_int_eq(info.state, SAGA_COMPLETED);
	outcomes o;
	memset(&o, 0, sizeof(o));
	ck_assert_int_eq(saga_history(e, id, count_ends, &o), SAGA_OK);
	ck_assert_int_eq(o.duplicates, 0);
	for (int s = 0; s < nsteps; s++)
		ck_assert_int_eq(o.ends[s][SAGA_PHASE_ACTION], 1);
}

/* Two instances whose first step blocks, with one worker: one callback
 * runs and the other attempt waits in the list when close begins. Both
 * answer during the close; both answers are recorded, so after a reopen
 * the first step runs no more. */
START_TEST(close_records_the_answers_it_waits_for)
{
	saga_engine *e = open_engine(1, 8);
	define(e, "g", 2, gated);
	int64_t ids[2];
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(saga_start(e, &ids[i], NULL, "g", NULL, NULL), SAGA_OK);
	wait_for(&gated_calls, 1);
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, open_gate_later, NULL), 0);
	saga_engine_close(e);
	pthread_join(t, NULL);
	ck_assert_int_eq(atomic_load(&gated_calls), 2);

	e = open_engine(0, 8);
	define(e, "g", 2, gated);
	ck_assert_int_eq(saga_run_until_idle(e), SAGA_OK);
	ck_assert_int_eq(atomic_load(&gated_calls), 2); /* no step ran twice */
	for (int i = 0; i < 2; i++)
		assert_completed_once(e, ids[i], 2);
	saga_engine_close(e);
}
END_TEST

/* One worker of two is held in a callback that does not return; the
 * other instances still run to the end through the other worker. */
START_TEST(a_blocked_callback_holds_up_no_one)
{
	saga_engine *e = open_engine(2, 64);
	define(e, "slow", 1, gated);
	define(e, "fast", 3, answer_ok);
	int64_t slow;
	ck_assert_int_eq(saga_start(e, &slow, NULL, "slow", NULL, NULL), SAGA_OK);
	wait_for(&gated_calls, 1);
	enum { NFAST = 40 };
	int64_t ids[NFAST];
	for (int i = 0; i < NFAST; i++)
		ck_assert_int_eq(saga_start(e, &ids[i], NULL, "fast", NULL, NULL), SAGA_OK);
	wait_for(&free_calls, 3 * NFAST);
	int64_t counts[SAGA_STATE_COUNT];
	for (int i = 0; i < 10000; i++) {
		ck_assert_int_eq(saga_counts(e, counts), SAGA_OK);
		if (counts[SAGA_COMPLETED] == NFAST)
			break;
		sleep_ms(1);
	}
	ck_assert_int_eq(counts[SAGA_COMPLETED], NFAST);
	saga_instance_info info;
	ck_assert_int_eq(saga_get(e, &info, slow), SAGA_OK);
	ck_assert_int_eq(info.state, SAGA_RUNNING);
	set_gate(true);
	ck_assert_int_eq(saga_wait_idle(e, 60000), SAGA_OK);
	ck_assert_int_eq(saga_get(e, &info, slow), SAGA_OK);
	ck_assert_int_eq(info.state, SAGA_COMPLETED);
	saga_engine_close(e);
}
END_TEST

/* Many workers and few slots, closed in the middle of the run a few times:
 * every instance ends, and no step has two outcomes. */
START_TEST(close_mid_run_loses_and_repeats_nothing)
{
	enum { N = 300, STEPS = 4 };
	set_gate(true);
	saga_engine *e = open_engine(8, 16);
	define(e, "m", STEPS, answer_ok);
	static int64_t ids[N];
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(saga_start(e, &ids[i], NULL, "m", NULL, NULL), SAGA_OK);
	for (int k = 0; k < 3; k++) {
		saga_engine_close(e);
		e = open_engine(8, 16);
		define(e, "m", STEPS, answer_ok);
		sleep_ms(2);
	}
	ck_assert_int_eq(saga_wait_idle(e, 60000), SAGA_OK);
	for (int i = 0; i < N; i++)
		assert_completed_once(e, ids[i], STEPS);
	saga_engine_close(e);
}
END_TEST

/* A listener that takes its time over the creation of an instance, then
 * notes its id. */
static atomic_llong created_seen;

static void slow_on_created(const saga_event *ev, void *user)
{
	(void)user;
	if (ev->type != SAGA_EVENT_CREATED)
		return;
	sleep_ms(200);
	atomic_store(&created_seen, ev->instance);
}

/* With workers, saga_start from another thread returns once the events of
 * its commit are delivered, as it does when its caller commits: a program
 * that starts replacements for what ended has heard of all that ended. */
START_TEST(a_start_returns_after_its_events)
{
	atomic_store(&created_seen, 0);
	saga_engine *e = open_engine(1, 8);
	define(e, "f", 1, answer_ok);
	ck_assert_int_eq(saga_engine_add_listener(e, slow_on_created, NULL), SAGA_OK);
	for (int i = 0; i < 3; i++) {
		int64_t id;
		ck_assert_int_eq(saga_start(e, &id, NULL, "f", NULL, NULL), SAGA_OK);
		long long seen = atomic_load(&created_seen);
		ck_assert_int_eq(seen, id);
	}
	ck_assert_int_eq(saga_wait_idle(e, 60000), SAGA_OK);
	saga_engine_close(e);
}
END_TEST

/* What the listener below saw on the worker-led round. */
static pthread_t end_thread;
static atomic_int end_seen;
static int listener_start_rc, listener_wait_rc;
static int64_t listener_started;

static void on_gated_end(const saga_event *ev, void *user)
{
	saga_engine *e = user;
	if (ev->type != SAGA_EVENT_ATTEMPT_END || ev->step != 1 || atomic_load(&end_seen))
		return;
	end_thread = pthread_self();
	/* On the thread running the round, a start commits on its own and a
	 * wait is refused, as on the driver thread. */
	listener_start_rc = saga_start(e, &listener_started, NULL, "f", NULL, NULL);
	saga_instance_info info;
	listener_wait_rc = saga_wait(e, &info, ev->instance, 1000);
	atomic_store(&end_seen, 1);
}

/* The worker whose answer is the last one out runs the next round itself
 * (no wake-up of the driver thread, then of a worker): the round that
 * records the gated step's outcome delivers its events on the thread that
 * ran the callback. A listener there can start instances, and is refused
 * saga_wait, as on the driver thread. */
START_TEST(the_last_answer_runs_the_next_round)
{
	atomic_store(&end_seen, 0);
	saga_engine *e = open_engine(1, 8);
	define(e, "f", 1, answer_ok);
	const saga_step_fn fns[3] = { answer_ok, gated, answer_ok };
	define_steps(e, "g3", fns, 3);
	ck_assert_int_eq(saga_engine_add_listener(e, on_gated_end, e), SAGA_OK);
	int64_t id;
	ck_assert_int_eq(saga_start(e, &id, NULL, "g3", NULL, NULL), SAGA_OK);
	wait_for(&gated_calls, 1);
	/* The driver thread has delivered that round and waits for news; it
	 * looks at the timers every 50 ms: the answer comes between two looks. */
	sleep_ms(125);
	set_gate(true);
	/* Nothing else wakes the driver thread meanwhile (saga_wait_idle
	 * would). */
	wait_for(&end_seen, 1);
	ck_assert_int_eq(saga_wait_idle(e, 60000), SAGA_OK);
	ck_assert_msg(pthread_equal(end_thread, gated_thread),
	              "the round was not run by the worker that answered last");
	ck_assert_int_eq(listener_start_rc, SAGA_OK);
	ck_assert_int_eq(listener_wait_rc, SAGA_ESTATE);
	assert_completed_once(e, id, 3);
	saga_instance_info info;
	ck_assert_int_eq(saga_get(e, &info, listener_started), SAGA_OK);
	ck_assert_int_eq(info.state, SAGA_COMPLETED);
	saga_engine_close(e);
}
END_TEST

/* A listener that takes 20 ms over every attempt's start, and steps that
 * count the calls that run while it does. */
static atomic_int in_slow_listener, calls_during_delivery;

static void slow_on_start(const saga_event *ev, void *user)
{
	(void)user;
	if (ev->type != SAGA_EVENT_ATTEMPT_START)
		return;
	atomic_fetch_add(&in_slow_listener, 1);
	sleep_ms(20);
	atomic_fetch_sub(&in_slow_listener, 1);
}

static saga_step_result note_overlap(saga_step_ctx *ctx, void *user)
{
	(void)ctx;
	(void)user;
	/* Well inside a delivery that began with the hand-off, if it did. */
	sleep_ms(5);
	if (atomic_load(&in_slow_listener))
		atomic_fetch_add(&calls_during_delivery, 1);
	return SAGA_STEP_OK;
}

/* When deliveries are slow, a round hands its attempts to the workers
 * before it delivers, so that they run meanwhile (otherwise after it, so
 * that the last answer finds no round under way). */
START_TEST(slow_listeners_do_not_hold_up_the_callbacks)
{
	atomic_store(&in_slow_listener, 0);
	atomic_store(&calls_during_delivery, 0);
	saga_engine *e = open_engine(2, 8);
	const saga_step_fn fns[6] = { note_overlap, note_overlap, note_overlap,
		                      note_overlap, note_overlap, note_overlap };
	define_steps(e, "o", fns, 6);
	ck_assert_int_eq(saga_engine_add_listener(e, slow_on_start, NULL), SAGA_OK);
	int64_t id;
	ck_assert_int_eq(saga_start(e, &id, NULL, "o", NULL, NULL), SAGA_OK);
	ck_assert_int_eq(saga_wait_idle(e, 60000), SAGA_OK);
	assert_completed_once(e, id, 6);
	ck_assert_int_ge(atomic_load(&calls_during_delivery), 1);
	saga_engine_close(e);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("workers");
	TCase *tc = tcase_create("hand-off");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, close_records_the_answers_it_waits_for);
	tcase_add_test(tc, a_blocked_callback_holds_up_no_one);
	tcase_add_test(tc, close_mid_run_loses_and_repeats_nothing);
	tcase_add_test(tc, a_start_returns_after_its_events);
	tcase_add_test(tc, the_last_answer_runs_the_next_round);
	tcase_add_test(tc, slow_listeners_do_not_hold_up_the_callbacks);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
