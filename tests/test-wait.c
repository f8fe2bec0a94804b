/* saga_wait: waiting for one instance to end, with workers and driven by
 * the caller, from the thread that drives and from others. Uses threads
 * (suite "threads"). SPDX-License-Identifier: MIT */
#include "test-common.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define LONG_MS 60000 /* a wait that only ends by the instance */

/* The key of the last step that answered PENDING, handed to the test. */
static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	char key[128];
} P = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, "" };

static const char *mode_of(saga_step_ctx *ctx)
{
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(saga_step_context(ctx), "mode");
	return cJSON_IsString(m) ? m->valuestring : "ok";
}

/* Step a: "retry" fails its first attempt (a 30 ms timer); "pending" is
 * asynchronous; its compensation fails in "stuck". */
static saga_step_result a_do(saga_step_ctx *ctx, void *user)
{
	(void)user;
	const char *m = mode_of(ctx);
	if (strcmp(m, "retry") == 0 && saga_step_attempt(ctx) == 1)
		return SAGA_STEP_RETRY;
	if (strcmp(m, "pending") == 0) {
		pthread_mutex_lock(&P.mu);
		snprintf(P.key, sizeof(P.key), "%s", saga_step_key(ctx));
		pthread_cond_broadcast(&P.cv);
		pthread_mutex_unlock(&P.mu);
		return SAGA_STEP_PENDING;
	}
	return SAGA_STEP_OK;
}

static saga_step_result a_undo(saga_step_ctx *ctx, void *user)
{
	(void)user;
	return strcmp(mode_of(ctx), "stuck") == 0 ? SAGA_STEP_FAIL : SAGA_STEP_OK;
}

/* Step b fails in "fail" and "stuck": a rolls back. */
static saga_step_result b_do(saga_step_ctx *ctx, void *user)
{
	(void)user;
	const char *m = mode_of(ctx);
	return strcmp(m, "fail") == 0 || strcmp(m, "stuck") == 0 ? SAGA_STEP_FAIL : SAGA_STEP_OK;
}

static saga_step_result b_undo(saga_step_ctx *ctx, void *user)
{
	(void)ctx;
	(void)user;
	return SAGA_STEP_OK;
}

static struct {
	char dir[256];
	char path[300];
	saga_engine *e;
} F;

static void open_engine(unsigned int workers)
{
	tmpdir_make(F.dir, sizeof(F.dir));
	test_store_name(F.path, sizeof(F.path), F.dir, "s.db");
	saga_options o = SAGA_OPTIONS_INIT;
	o.path = F.path;
	o.workers = workers;
	o.durability = SAGA_DURABILITY_NORMAL;
	char err[256];
	ck_assert_msg(saga_engine_open(&F.e, &o, err, sizeof(err)) == SAGA_OK, "open: %s", err);
	saga_definition *d;
	ck_assert_int_eq(saga_definition_new(&d, "w", 1), SAGA_OK);
	saga_step_spec a = { "a", SAGA_STEP_COMPENSATABLE, a_do, a_undo, NULL };
	saga_step_spec b = { "b", SAGA_STEP_COMPENSATABLE, b_do, b_undo, NULL };
	ck_assert_int_eq(saga_definition_add_step(d, &a), SAGA_OK);
	ck_assert_int_eq(saga_definition_add_step(d, &b), SAGA_OK);
	saga_retry_policy p = { 3, 0, SAGA_BACKOFF_CONSTANT, 30, 0, 2.0, SAGA_JITTER_NONE };
	ck_assert_int_eq(saga_definition_set_retry(d, NULL, &p), SAGA_OK);
	saga_retry_policy cp = { 1, 0, SAGA_BACKOFF_CONSTANT, 30, 0, 2.0, SAGA_JITTER_NONE };
	ck_assert_int_eq(saga_definition_set_compensation_retry(d, NULL, &cp), SAGA_OK);
	ck_assert_int_eq(saga_engine_register(F.e, d), SAGA_OK);
	saga_definition_free(d);
	P.key[0] = '\0';
}

static void close_engine(void)
{
	saga_engine_close(F.e);
	F.e = NULL;
	test_store_drop(F.path);
	tmpdir_remove(F.dir);
}

static int64_t start_mode(const char *mode)
{
	cJSON *in = cJSON_CreateObject();
	cJSON_AddStringToObject(in, "mode", mode);
	int64_t id = 0;
	ck_assert_int_eq(saga_start(F.e, &id, NULL, "w", NULL, in), SAGA_OK);
	cJSON_Delete(in);
	return id;
}

/* The key of the pending step, once its action has answered. */
static void pending_key(char *out, size_t size)
{
	pthread_mutex_lock(&P.mu);
	while (!P.key[0])
		pthread_cond_wait(&P.cv, &P.mu);
	snprintf(out, size, "%s", P.key);
	pthread_mutex_unlock(&P.mu);
}

/* Each kind of end, with workers (_i = 2) and driven by the waiting thread
 * itself (_i = 0). */
START_TEST(returns_on_each_end)
{
	open_engine((unsigned int)(_i * 2));
	static const struct {
		const char *mode;
		saga_state state;
	} ends[] = { { "ok", SAGA_COMPLETED },
		     { "fail", SAGA_COMPENSATED },
		     { "stuck", SAGA_STUCK } };
	for (size_t k = 0; k < sizeof(ends) / sizeof(ends[0]); k++) {
		int64_t id = start_mode(ends[k].mode);
		saga_instance_info info;
		memset(&info, 0, sizeof(info));
		int rc = saga_wait(F.e, &info, id, LONG_MS);
		ck_assert_msg(rc == SAGA_OK, "%s: %s", ends[k].mode, saga_engine_errmsg(F.e));
		ck_assert_int_eq(info.id, id);
		ck_assert_int_eq(info.state, ends[k].state);
	}
	close_engine();
}
END_TEST

/* An instance sleeping on a retry timer is not the end of the wait (as it
 * is for saga_wait_idle): the wait goes on through the timer. */
START_TEST(waits_through_a_retry_timer)
{
	open_engine((unsigned int)(_i * 2));
	int64_t id = start_mode("retry");
	saga_instance_info info;
	ck_assert_int_eq(saga_wait(F.e, &info, id, LONG_MS), SAGA_OK);
	ck_assert_int_eq(info.state, SAGA_COMPLETED);
	close_engine();
}
END_TEST

/* An async step never completed: the wait ends at its timeout with
 * SAGA_EBUSY and the state it saw. */
START_TEST(times_out)
{
	open_engine((unsigned int)(_i * 2));
	int64_t id = start_mode("pending");
	saga_instance_info info;
	ck_assert_int_eq(saga_wait(F.e, &info, id, 100), SAGA_EBUSY);
	ck_assert_int_eq(info.state, SAGA_WAITING);
	ck_assert_ptr_nonnull(strstr(saga_engine_errmsg(F.e), "WAITING"));
	/* timeout 0 only looks */
	ck_assert_int_eq(saga_wait(F.e, &info, id, 0), SAGA_EBUSY);
	close_engine();
}
END_TEST

struct waiter {
	int64_t id;
	int rc;
	saga_instance_info info;
};

static void *wait_thread(void *arg)
{
	struct waiter *w = arg;
	w->rc = saga_wait(F.e, &w->info, w->id, LONG_MS);
	return NULL;
}

static bool stop_driving;
static pthread_mutex_t drive_mu = PTHREAD_MUTEX_INITIALIZER;

/* A caller that drives the engine in a loop until told to stop. */
static void *drive_thread(void *arg)
{
	(void)arg;
	for (;;) {
		pthread_mutex_lock(&drive_mu);
		bool stop = stop_driving;
		pthread_mutex_unlock(&drive_mu);
		if (stop)
			return NULL;
		ck_assert_int_eq(saga_run_due(F.e, NULL), SAGA_OK);
	}
}

/* Another thread waits while the step is completed from this one: with
 * workers (_i = 2), and driven by a third thread's saga_run_due loop
 * (_i = 0). */
START_TEST(from_another_thread)
{
	open_engine((unsigned int)(_i * 2));
	stop_driving = false;
	pthread_t driver;
	if (_i == 0)
		ck_assert_int_eq(pthread_create(&driver, NULL, drive_thread, NULL), 0);
	struct waiter w = { start_mode("pending"), SAGA_ERROR, { 0 } };
	char key[128];
	pending_key(key, sizeof(key));
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, wait_thread, &w), 0);
	ck_assert_int_eq(saga_complete(F.e, key, SAGA_STEP_OK, NULL), SAGA_OK);
	pthread_join(t, NULL);
	ck_assert_int_eq(w.rc, SAGA_OK);
	ck_assert_int_eq(w.info.state, SAGA_COMPLETED);
	if (_i == 0) {
		pthread_mutex_lock(&drive_mu);
		stop_driving = true;
		pthread_mutex_unlock(&drive_mu);
		pthread_join(driver, NULL);
	}
	close_engine();
}
END_TEST

START_TEST(bad_arguments)
{
	open_engine((unsigned int)(_i * 2));
	saga_instance_info info;
	ck_assert_int_eq(saga_wait(F.e, &info, 12345, 10), SAGA_ENOTFOUND);
	ck_assert_ptr_nonnull(strstr(saga_engine_errmsg(F.e), "no instance 12345"));
	ck_assert_int_eq(saga_wait(F.e, NULL, 1, 10), SAGA_EINVAL);
	ck_assert_str_ne(saga_engine_errmsg(F.e), "no error");
	ck_assert_int_eq(saga_wait(NULL, &info, 1, 10), SAGA_EINVAL);
	close_engine();
}
END_TEST

int main(void)
{
	Suite *s = suite_create("wait");
	TCase *tc = tcase_create("wait");
	tcase_set_timeout(tc, 60);
	/* _i * 2 is the number of workers: 0 (caller-driven) or 2 */
	tcase_add_loop_test(tc, returns_on_each_end, 0, 2);
	tcase_add_loop_test(tc, waits_through_a_retry_timer, 0, 2);
	tcase_add_loop_test(tc, times_out, 0, 2);
	tcase_add_loop_test(tc, from_another_thread, 0, 2);
	tcase_add_loop_test(tc, bad_arguments, 0, 2);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
