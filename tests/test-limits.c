/* Numeric limits (issue 10, item 6).
 *
 * saga_options: every numeric option is tried at each end of its documented
 * range and one past it: the bound opens an engine, one past gives
 * SAGA_EINVAL with a message naming the option, and nothing is created (no
 * store file, -wal or -shm after the refused open). busy_timeout_ms at its
 * maximum still waits for a store that another connection locks for a
 * moment.
 *
 * Policies take any uint64_t: a timeout, an instance deadline, a retry
 * delay or a breaker's open wait of UINT64_MAX ms means "never", and must
 * not wrap into the past (an attempt that is late before it starts, a saga
 * that times out at once, a retry or a refused call repeated at once).
 * SPDX-License-Identifier: MIT */
#include "test-common.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdbool.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char dir[256];
static char path[300];

static void setup(void)
{
	tmpdir_make(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/store.db", dir);
}

static void teardown(void)
{
	tmpdir_remove(dir);
}

static bool exists(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0;
}

/* Nothing of a store exists in the directory: no file, no -wal, no -shm. */
static void assert_nothing_created(void)
{
	char p[340];
	ck_assert_msg(!exists(path), "%s was created", path);
	snprintf(p, sizeof(p), "%s-wal", path);
	ck_assert_msg(!exists(p), "%s was created", p);
	snprintf(p, sizeof(p), "%s-shm", path);
	ck_assert_msg(!exists(p), "%s was created", p);
}

/* Opening with `o` is refused with SAGA_EINVAL, a message that names
 * `option`, and no file. */
static void expect_refused(const saga_options *o, const char *option)
{
	saga_engine *e = (saga_engine *)1;
	char err[256] = "";
	int rc = saga_engine_open(&e, o, err, sizeof(err));
	ck_assert_msg(rc == SAGA_EINVAL, "%s: expected SAGA_EINVAL, got %d (%s)", option, rc, err);
	ck_assert_ptr_null(e);
	ck_assert_msg(strstr(err, option) != NULL, "message '%s' does not name '%s'", err, option);
	assert_nothing_created();
}

/* Opening with `o` succeeds; the engine can run a start. */
static void expect_opens(const saga_options *o, const char *what)
{
	saga_engine *e = NULL;
	char err[256] = "";
	int rc = saga_engine_open(&e, o, err, sizeof(err));
	ck_assert_msg(rc == SAGA_OK, "%s: open failed: %d %s", what, rc, err);
	saga_engine_close(e);
}

static saga_options base_options(void)
{
	saga_options o = SAGA_OPTIONS_INIT;
	o.path = path;
	return o;
}

START_TEST(workers_range)
{
	saga_options o = base_options();
	o.workers = SAGA_WORKERS_MAX + 1;
	expect_refused(&o, "workers");
	o.workers = UINT_MAX; /* was a crash: workers + 1 wrapped to 0 */
	expect_refused(&o, "workers");
	o.workers = SAGA_WORKERS_MAX;
	expect_opens(&o, "workers = SAGA_WORKERS_MAX");
	o.workers = 0;
	expect_opens(&o, "workers = 0");
}
END_TEST

START_TEST(max_in_flight_range)
{
	saga_options o = base_options();
	o.max_in_flight = SAGA_MAX_IN_FLIGHT_MAX + 1; /* was silently cut to 1024 */
	expect_refused(&o, "max_in_flight");
	o.max_in_flight = UINT_MAX;
	expect_refused(&o, "max_in_flight");
	o.max_in_flight = SAGA_MAX_IN_FLIGHT_MAX;
	expect_opens(&o, "max_in_flight = SAGA_MAX_IN_FLIGHT_MAX");
	o.max_in_flight = 1;
	expect_opens(&o, "max_in_flight = 1");
	o.max_in_flight = 0;
	expect_opens(&o, "max_in_flight = 0 (the default)");
}
END_TEST

START_TEST(busy_timeout_range)
{
	saga_options o = base_options();
	o.busy_timeout_ms = (uint32_t)SAGA_BUSY_TIMEOUT_MAX + 1; /* was negative: no wait */
	expect_refused(&o, "busy_timeout_ms");
	o.busy_timeout_ms = UINT32_MAX;
	expect_refused(&o, "busy_timeout_ms");
	o.busy_timeout_ms = SAGA_BUSY_TIMEOUT_MAX;
	expect_opens(&o, "busy_timeout_ms = SAGA_BUSY_TIMEOUT_MAX");
	o.busy_timeout_ms = 1;
	expect_opens(&o, "busy_timeout_ms = 1");
}
END_TEST

START_TEST(lease_range)
{
	saga_options o = base_options();
	o.lease_ms = SAGA_LEASE_MIN - 1;
	expect_refused(&o, "lease_ms");
	o.lease_ms = SAGA_LEASE_MAX + 1;
	expect_refused(&o, "lease_ms");
	o.lease_ms = 1000;
	o.lease_margin_ms = 1000; /* a margin is below the lease */
	expect_refused(&o, "lease_margin_ms");
	o.lease_ms = 0;
	o.lease_margin_ms = 10000; /* and below the default lease */
	expect_refused(&o, "lease_margin_ms");
	o.lease_margin_ms = 9999;
	expect_opens(&o, "lease_margin_ms = 9999 with the default lease");
	o.lease_ms = SAGA_LEASE_MIN;
	o.lease_margin_ms = 0;
	expect_opens(&o, "lease_ms = SAGA_LEASE_MIN");
	o.lease_ms = SAGA_LEASE_MAX;
	expect_opens(&o, "lease_ms = SAGA_LEASE_MAX");
	/* A caller built against version 2 has no lease fields: defaults. */
	o.version = 2;
	o.lease_ms = 1; /* past the version-2 struct: not read */
	expect_opens(&o, "version 2");
}
END_TEST

START_TEST(enum_options_range)
{
	saga_options o = base_options();
	o.durability = (saga_durability)2;
	expect_refused(&o, "durability");
	o.durability = (saga_durability)-1;
	expect_refused(&o, "durability");
	o.durability = SAGA_DURABILITY_NORMAL;
	o.log_level = (saga_log_level)(SAGA_LOG_ERROR + 1);
	expect_refused(&o, "log_level");
	o.log_level = (saga_log_level)-1;
	expect_refused(&o, "log_level");
	o.log_level = SAGA_LOG_ERROR;
	expect_opens(&o, "NORMAL, log level ERROR");
	o.durability = SAGA_DURABILITY_FULL;
	o.log_level = SAGA_LOG_DEBUG;
	expect_opens(&o, "FULL, log level DEBUG");
}
END_TEST

START_TEST(version_refused_before_files)
{
	saga_options o = base_options();
	o.version = SAGA_OPTIONS_VERSION + 1;
	expect_refused(&o, "version");
}
END_TEST

/* ------------------------------------------------------------------------ */
/* busy_timeout_ms at its maximum waits for a briefly locked store          */

static saga_step_result ok_step(saga_step_ctx *ctx, void *user)
{
	(void)ctx;
	(void)user;
	return SAGA_STEP_OK;
}

static void *unlock_later(void *arg)
{
	sqlite3 *db = arg;
	struct timespec ts = { 0, 300 * 1000000L };
	nanosleep(&ts, NULL);
	ck_assert_int_eq(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	return NULL;
}

START_TEST(busy_timeout_max_waits)
{
	saga_options o = base_options();
	o.busy_timeout_ms = SAGA_BUSY_TIMEOUT_MAX;
	saga_engine *e = NULL;
	char err[256];
	ck_assert_msg(saga_engine_open(&e, &o, err, sizeof(err)) == SAGA_OK, "%s", err);
	saga_definition *d;
	ck_assert_int_eq(saga_definition_new(&d, "d", 1), SAGA_OK);
	saga_step_spec s = { "a", SAGA_STEP_RETRIABLE, ok_step, NULL, NULL };
	ck_assert_int_eq(saga_definition_add_step(d, &s), SAGA_OK);
	ck_assert_int_eq(saga_engine_register(e, d), SAGA_OK);
	saga_definition_free(d);

	/* Another connection holds the write lock for 300 ms. */
	sqlite3 *db = NULL;
	ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, unlock_later, db), 0);
	int64_t id = 0;
	int rc = saga_start(e, &id, NULL, "d", NULL, NULL);
	pthread_join(t, NULL);
	ck_assert_msg(rc == SAGA_OK, "start while locked: %d %s", rc, saga_engine_errmsg(e));
	ck_assert_int_eq(saga_run_until_idle(e), SAGA_OK);
	saga_instance_info info;
	ck_assert_int_eq(saga_get(e, &info, id), SAGA_OK);
	ck_assert_int_eq(info.state, SAGA_COMPLETED);
	sqlite3_close(db);
	saga_engine_close(e);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Times past the end of time saturate                                      */

static fake_clock fclock;
static int refused, late;
static uint64_t seen_deadline;
static saga_step_result answer_with;

static saga_step_result scripted(saga_step_ctx *ctx, void *user)
{
	(void)user;
	seen_deadline = saga_step_deadline(ctx);
	return answer_with;
}

static void count_events(const saga_event *ev, void *user)
{
	(void)user;
	if (ev->type == SAGA_EVENT_BREAKER_REFUSED)
		refused++;
	if (ev->type == SAGA_EVENT_LATE)
		late++;
}

/* An engine on the fake clock with a one-step definition "d" shaped by
 * `shape`; runs one instance until idle and returns its state. */
static saga_instance_info run_one(void (*shape)(saga_engine *, saga_definition *))
{
	fclock.wall = fclock.mono = 1700000000000ULL;
	refused = late = 0;
	seen_deadline = 0;
	saga_options o = base_options();
	o.clock = fake_clock_make(&fclock);
	saga_engine *e = NULL;
	char err[256];
	ck_assert_msg(saga_engine_open(&e, &o, err, sizeof(err)) == SAGA_OK, "%s", err);
	ck_assert_int_eq(saga_engine_add_listener(e, count_events, NULL), SAGA_OK);
	saga_definition *d;
	ck_assert_int_eq(saga_definition_new(&d, "d", 1), SAGA_OK);
	saga_step_spec s = { "a", SAGA_STEP_COMPENSATABLE, scripted, scripted, NULL };
	ck_assert_int_eq(saga_definition_add_step(d, &s), SAGA_OK);
	shape(e, d);
	ck_assert_int_eq(saga_engine_register(e, d), SAGA_OK);
	saga_definition_free(d);
	int64_t id = 0;
	ck_assert_int_eq(saga_start(e, &id, NULL, "d", NULL, NULL), SAGA_OK);
	ck_assert_msg(saga_run_until_idle(e) == SAGA_OK, "%s", saga_engine_errmsg(e));
	saga_instance_info info;
	ck_assert_int_eq(saga_get(e, &info, id), SAGA_OK);
	saga_engine_close(e);
	return info;
}

static void huge_timeout(saga_engine *e, saga_definition *d)
{
	(void)e;
	ck_assert_int_eq(saga_definition_set_timeout(d, "a", UINT64_MAX, UINT64_MAX), SAGA_OK);
}

START_TEST(huge_timeout_never_late)
{
	answer_with = SAGA_STEP_OK;
	saga_instance_info info = run_one(huge_timeout);
	ck_assert_msg(info.state == SAGA_COMPLETED, "state %s", saga_state_name(info.state));
	ck_assert_int_eq(late, 0);
	ck_assert_uint_eq(seen_deadline, (uint64_t)INT64_MAX);
}
END_TEST

static void huge_deadline(saga_engine *e, saga_definition *d)
{
	(void)e;
	ck_assert_int_eq(saga_definition_set_deadline(d, UINT64_MAX, 1000), SAGA_OK);
}

START_TEST(huge_deadline_does_not_expire)
{
	answer_with = SAGA_STEP_OK;
	saga_instance_info info = run_one(huge_deadline);
	ck_assert_msg(info.state == SAGA_COMPLETED, "state %s (%s)", saga_state_name(info.state),
	              saga_reason_name(info.reason));
	ck_assert_uint_eq(info.deadline_ms, (uint64_t)INT64_MAX);
}
END_TEST

static void huge_retry_delay(saga_engine *e, saga_definition *d)
{
	(void)e;
	saga_retry_policy p = { 3, 0, SAGA_BACKOFF_CONSTANT, UINT64_MAX, 0, 2.0, SAGA_JITTER_NONE };
	ck_assert_int_eq(saga_definition_set_retry(d, "a", &p), SAGA_OK);
}

START_TEST(huge_retry_delay_waits)
{
	answer_with = SAGA_STEP_RETRY;
	saga_instance_info info = run_one(huge_retry_delay);
	ck_assert_msg(info.state == SAGA_WAITING, "state %s", saga_state_name(info.state));
	ck_assert_uint_eq(info.attempt, 1);
	ck_assert_uint_eq(info.due_ms, (uint64_t)INT64_MAX);
}
END_TEST

static void forced_open_huge_wait(saga_engine *e, saga_definition *d)
{
	saga_breaker_config bc = SAGA_BREAKER_CONFIG_INIT;
	bc.open_wait_ms = UINT64_MAX;
	ck_assert_int_eq(saga_engine_add_breaker(e, "b", &bc), SAGA_OK);
	ck_assert_int_eq(saga_breaker_force(saga_engine_breaker(e, "b"), SAGA_BREAKER_FORCED_OPEN),
	                 SAGA_OK);
	ck_assert_int_eq(saga_definition_set_breaker(d, "a", "b"), SAGA_OK);
}

START_TEST(huge_breaker_wait_parks)
{
	answer_with = SAGA_STEP_OK;
	saga_instance_info info = run_one(forced_open_huge_wait);
	ck_assert_msg(info.state == SAGA_WAITING, "state %s", saga_state_name(info.state));
	ck_assert_int_eq(refused, 1);
	ck_assert_uint_eq(info.due_ms, (uint64_t)INT64_MAX);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("limits");
	TCase *tc = tcase_create("ranges");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, workers_range);
	tcase_add_test(tc, max_in_flight_range);
	tcase_add_test(tc, busy_timeout_range);
	tcase_add_test(tc, lease_range);
	tcase_add_test(tc, enum_options_range);
	tcase_add_test(tc, version_refused_before_files);
	tcase_add_test(tc, busy_timeout_max_waits);
	suite_add_tcase(s, tc);
	TCase *tc2 = tcase_create("times saturate");
	tcase_add_checked_fixture(tc2, setup, teardown);
	tcase_set_timeout(tc2, 30);
	tcase_add_test(tc2, huge_timeout_never_late);
	tcase_add_test(tc2, huge_deadline_does_not_expire);
	tcase_add_test(tc2, huge_retry_delay_waits);
	tcase_add_test(tc2, huge_breaker_wait_parks);
	suite_add_tcase(s, tc2);
	return run_suite(s);
}
