/* Open, register, then start (saga_options.deferred_start and
 * saga_engine_start): recovery finds the definitions registered, calls
 * before the start are durable or refused, and callers built against
 * version 1 of saga_options still open an engine that runs at once. Uses
 * threads (suite "threads"). SPDX-License-Identifier: MIT */
#include "test-common.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UNFINISHED 40

static struct {
	char dir[256];
	char path[300];
	saga_engine *e;
	pthread_mutex_t mu;
	int warns;      /* WARN lines logged */
	char last[256]; /* the last of them */
} F = { .mu = PTHREAD_MUTEX_INITIALIZER };

static void count_warns(saga_log_level level, const char *msg, void *user)
{
	(void)user;
	if (level != SAGA_LOG_WARN)
		return;
	pthread_mutex_lock(&F.mu);
	F.warns++;
	snprintf(F.last, sizeof(F.last), "%s", msg);
	pthread_mutex_unlock(&F.mu);
}

static saga_step_result ok(saga_step_ctx *ctx, void *user)
{
	(void)ctx;
	(void)user;
	return SAGA_STEP_OK;
}

static void register_def(void)
{
	saga_definition *d;
	ck_assert_int_eq(saga_definition_new(&d, "r", 1), SAGA_OK);
	saga_step_spec a = { "a", SAGA_STEP_COMPENSATABLE, ok, ok, NULL };
	saga_step_spec b = { "b", SAGA_STEP_RETRIABLE, ok, NULL, NULL };
	ck_assert_int_eq(saga_definition_add_step(d, &a), SAGA_OK);
	ck_assert_int_eq(saga_definition_add_step(d, &b), SAGA_OK);
	ck_assert_int_eq(saga_engine_register(F.e, d), SAGA_OK);
	saga_definition_free(d);
}

static void open_engine(unsigned int workers, int deferred)
{
	saga_options o = SAGA_OPTIONS_INIT;
	o.path = F.path;
	o.workers = workers;
	o.durability = SAGA_DURABILITY_NORMAL;
	o.deferred_start = deferred;
	o.log = count_warns;
	o.log_level = SAGA_LOG_DEBUG;
	char err[256];
	ck_assert_msg(saga_engine_open(&F.e, &o, err, sizeof(err)) == SAGA_OK, "open: %s", err);
}

static void setup(void)
{
	tmpdir_make(F.dir, sizeof(F.dir));
	snprintf(F.path, sizeof(F.path), "%s/s.db", F.dir);
	F.warns = 0;
	F.last[0] = '\0';
}

static void teardown(void)
{
	saga_engine_close(F.e);
	F.e = NULL;
	tmpdir_remove(F.dir);
}

static int64_t start_one(void)
{
	int64_t id = 0;
	ck_assert_int_eq(saga_start(F.e, &id, NULL, "r", NULL, NULL), SAGA_OK);
	return id;
}

static void expect_completed(int64_t id)
{
	saga_instance_info info;
	ck_assert_msg(saga_wait(F.e, &info, id, 60000) == SAGA_OK, "wait: %s",
	              saga_engine_errmsg(F.e));
	ck_assert_int_eq(info.state, SAGA_COMPLETED);
}

/* A store with unfinished instances, reopened with workers: deferred,
 * registered, started. Recovery finds the definition: no "not registered"
 * warning, and every instance finishes. */
START_TEST(restart_without_warnings)
{
	int64_t ids[UNFINISHED];
	open_engine(0, 0);
	register_def();
	for (int i = 0; i < UNFINISHED; i++)
		ids[i] = start_one();
	saga_engine_close(F.e);

	open_engine(2, 1);
	register_def();
	ck_assert_int_eq(saga_engine_start(F.e), SAGA_OK);
	for (int i = 0; i < UNFINISHED; i++)
		expect_completed(ids[i]);
	pthread_mutex_lock(&F.mu);
	ck_assert_msg(F.warns == 0, "%d WARN lines, the last: %s", F.warns, F.last);
	pthread_mutex_unlock(&F.mu);
}
END_TEST

/* Started twice, or started when opened without deferring: SAGA_ESTATE. */
START_TEST(start_twice)
{
	open_engine((unsigned int)_i, 1);
	ck_assert_int_eq(saga_engine_start(F.e), SAGA_OK);
	ck_assert_int_eq(saga_engine_start(F.e), SAGA_ESTATE);
	ck_assert_ptr_nonnull(strstr(saga_engine_errmsg(F.e), "running already"));
	saga_engine_close(F.e);
	open_engine((unsigned int)_i, 0);
	ck_assert_int_eq(saga_engine_start(F.e), SAGA_ESTATE);
	ck_assert_int_eq(saga_engine_start(NULL), SAGA_EINVAL);
}
END_TEST

/* Before the start: starts and queries work and nothing runs; the calls
 * that run or wait for rounds are refused. */
START_TEST(calls_before_start)
{
	unsigned int workers = (unsigned int)_i;
	open_engine(workers, 1);
	register_def();
	int64_t id = start_one();
	saga_instance_info info;
	ck_assert_int_eq(saga_get(F.e, &info, id), SAGA_OK);
	ck_assert_int_eq(info.state, SAGA_RUNNING);
	ck_assert_int_eq(info.step, 0);
	ck_assert_int_eq(saga_wait(F.e, &info, id, 10), SAGA_ESTATE);
	ck_assert_ptr_nonnull(strstr(saga_engine_errmsg(F.e), "not started"));
	ck_assert_int_eq(saga_wait_idle(F.e, 10), SAGA_ESTATE);
	if (!workers) {
		ck_assert_int_eq(saga_run_due(F.e, NULL), SAGA_ESTATE);
		ck_assert_int_eq(saga_run_until_idle(F.e), SAGA_ESTATE);
		int64_t ids[1];
		saga_start_request q = { "r", NULL, NULL };
		ck_assert_int_eq(saga_run_due_start(F.e, NULL, ids, NULL, &q, 1), SAGA_ESTATE);
	}
	saga_stats st;
	ck_assert_int_eq(saga_engine_stats(F.e, &st), SAGA_OK);
	ck_assert_uint_eq(st.attempts, 0);
	ck_assert_int_eq(saga_engine_start(F.e), SAGA_OK);
	ck_assert_int_eq(saga_wait_idle(F.e, 60000), SAGA_OK);
	expect_completed(id);
}
END_TEST

/* Closed without ever being started: nothing ran, the instance waits in
 * the store for the next engine. */
START_TEST(close_before_start)
{
	open_engine(2, 1);
	register_def();
	int64_t id = start_one();
	saga_engine_close(F.e);
	open_engine(2, 0);
	register_def();
	expect_completed(id);
}
END_TEST

/* A caller built against version 1 of saga_options passes the shorter
 * struct: it is read without going past its end (ASan would see it), and
 * the engine runs at once, as it did. */
START_TEST(options_version_1)
{
	size_t v1 = offsetof(saga_options, deferred_start);
	saga_options full = SAGA_OPTIONS_INIT;
	full.version = 1;
	full.path = F.path;
	saga_options *o = malloc(v1);
	ck_assert_ptr_nonnull(o);
	memcpy(o, &full, v1);
	char err[256];
	ck_assert_msg(saga_engine_open(&F.e, o, err, sizeof(err)) == SAGA_OK, "open: %s", err);
	free(o);
	register_def();
	int64_t id = start_one();
	ck_assert_int_eq(saga_run_until_idle(F.e), SAGA_OK);
	expect_completed(id);
	ck_assert_int_eq(saga_engine_start(F.e), SAGA_ESTATE);
}
END_TEST

START_TEST(bad_options)
{
	saga_options o = SAGA_OPTIONS_INIT;
	o.path = F.path;
	o.deferred_start = 2;
	char err[256];
	ck_assert_int_eq(saga_engine_open(&F.e, &o, err, sizeof(err)), SAGA_EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "deferred_start"));
	o.deferred_start = 0;
	o.version = SAGA_OPTIONS_VERSION + 1;
	ck_assert_int_eq(saga_engine_open(&F.e, &o, err, sizeof(err)), SAGA_EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "version is 5"));
	ck_assert_ptr_null(F.e);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("engine-start");
	TCase *tc = tcase_create("engine-start");
	tcase_set_timeout(tc, 120);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, restart_without_warnings);
	/* _i is the number of workers: 0 (caller-driven) or 1 */
	tcase_add_loop_test(tc, start_twice, 0, 2);
	tcase_add_loop_test(tc, calls_before_start, 0, 2);
	tcase_add_test(tc, close_before_start);
	tcase_add_test(tc, options_version_1);
	tcase_add_test(tc, bad_options);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
