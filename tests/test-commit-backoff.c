/* A full disk under the worker-mode driver (issue 10, item 7).
 *
 * The store goes through the failing VFS (faultvfs.c) with SQLITE_FULL on
 * every write once armed: every commit fails. Real threads (a driver and two
 * workers) run for a window of one second of real time while the disk is
 * full; the test counts the commits attempted (the faults injected: each
 * failed commit fails at its first write) and the lines logged. A driver
 * that retries at once makes thousands of attempts and logs a line for
 * each; one that backs off (100 ms, doubling, capped) makes a handful and
 * logs the change of state once. The bound (40 attempts, 2 lines) is far
 * from both, so a slow machine does not make it flaky: being slower only
 * makes fewer attempts. After the disk is freed the instances finish and
 * the recovery is logged once, with the number of failed rounds; a second
 * full-disk episode is logged again (the state was reset).
 *
 * Caller-driven mode (workers = 0): saga_run_due and saga_run_until_idle
 * return the error of the failed commit after one attempt instead of
 * retrying inside the call.
 * SPDX-License-Identifier: MIT */
#include "test-common.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "faultvfs.h"

#define NINST 8

static char dir[256];
static char path[300];

static atomic_int log_lines;     /* WARN and ERROR lines */
static atomic_int log_failing;   /* "rounds failing" lines */
static atomic_int log_recovered; /* "succeed again" lines */
static atomic_long recovered_after;

static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static bool gate_open;
static atomic_int invoked;

static void on_log(saga_log_level level, const char *msg, void *user)
{
	(void)user;
	if (level < SAGA_LOG_WARN)
		return;
	atomic_fetch_add(&log_lines, 1);
	if (strstr(msg, "rounds failing"))
		atomic_fetch_add(&log_failing, 1);
	const char *again = strstr(msg, "succeed again after ");
	if (again) {
		atomic_fetch_add(&log_recovered, 1);
		atomic_store(&recovered_after, atol(again + strlen("succeed again after ")));
	}
}

/* Waits until the test opens the gate, then answers OK. */
static saga_step_result gated(saga_step_ctx *ctx, void *user)
{
	(void)ctx;
	(void)user;
	atomic_fetch_add(&invoked, 1);
	pthread_mutex_lock(&gate_mu);
	while (!gate_open)
		pthread_cond_wait(&gate_cv, &gate_mu);
	pthread_mutex_unlock(&gate_mu);
	return SAGA_STEP_OK;
}

static void set_gate(bool open)
{
	pthread_mutex_lock(&gate_mu);
	gate_open = open;
	pthread_cond_broadcast(&gate_cv);
	pthread_mutex_unlock(&gate_mu);
}

static void setup(void)
{
	tmpdir_make(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/store.db", dir);
	ck_assert_int_eq(faultvfs_register(1), SQLITE_OK);
	atomic_store(&log_lines, 0);
	atomic_store(&log_failing, 0);
	atomic_store(&log_recovered, 0);
	atomic_store(&recovered_after, 0);
	atomic_store(&invoked, 0);
	set_gate(false);
}

static void teardown(void)
{
	faultvfs_disarm();
	faultvfs_restore_default();
	tmpdir_remove(dir);
}

static saga_engine *open_engine(unsigned int workers)
{
	saga_options o = SAGA_OPTIONS_INIT;
	o.path = path;
	o.workers = workers;
	o.log = on_log;
	o.log_level = SAGA_LOG_INFO;
	saga_engine *e = NULL;
	char err[256];
	ck_assert_msg(saga_engine_open(&e, &o, err, sizeof(err)) == SAGA_OK, "open: %s", err);
	saga_definition *d;
	ck_assert_int_eq(saga_definition_new(&d, "d", 1), SAGA_OK);
	saga_step_spec a = { "a", SAGA_STEP_RETRIABLE, gated, NULL, NULL };
	saga_step_spec b = { "b", SAGA_STEP_RETRIABLE, gated, NULL, NULL };
	ck_assert_int_eq(saga_definition_add_step(d, &a), SAGA_OK);
	ck_assert_int_eq(saga_definition_add_step(d, &b), SAGA_OK);
	ck_assert_int_eq(saga_engine_register(e, d), SAGA_OK);
	saga_definition_free(d);
	return e;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0)
		;
}

static void assert_all_completed(saga_engine *e, const int64_t *ids, int n)
{
	for (int i = 0; i < n; i++) {
		saga_instance_info info;
		ck_assert_int_eq(saga_get(e, &info, ids[i]), SAGA_OK);
		ck_assert_msg(info.state == SAGA_COMPLETED, "instance %lld is %s",
		              (long long)ids[i], saga_state_name(info.state));
	}
}

/* One full-disk episode with workers: instances whose callbacks are held at
 * the gate; the disk fills; the callbacks answer, and every commit fails
 * for a second; then the disk is freed. */
static void full_disk_episode(saga_engine *e, int64_t *ids, int episode)
{
	set_gate(false);
	int before = atomic_load(&invoked);
	for (int i = 0; i < NINST; i++) {
		char key[32];
		snprintf(key, sizeof(key), "k%d-%d", episode, i);
		ck_assert_int_eq(saga_start(e, &ids[i], NULL, "d", key, NULL), SAGA_OK);
	}
	/* Both workers hold a callback: the starts are committed. */
	while (atomic_load(&invoked) < before + 2)
		sleep_ms(1);
	int lines0 = atomic_load(&log_lines);
	faultvfs_arm(FAULTVFS_WRITE, 1, SQLITE_FULL, true);
	set_gate(true); /* the answers now need a commit, and every commit fails */
	sleep_ms(1000);
	long attempts = faultvfs_injected();
	int lines = atomic_load(&log_lines) - lines0;
	ck_assert_msg(attempts >= 1, "no commit was attempted while the disk was full");
	ck_assert_msg(attempts <= 40, "%ld commits attempted in 1 s with a full disk", attempts);
	ck_assert_msg(lines <= 2, "%d lines logged in 1 s with a full disk", lines);
	ck_assert_int_eq(atomic_load(&log_failing), episode);

	faultvfs_disarm();
	ck_assert_msg(saga_wait_idle(e, 30000) == SAGA_OK, "not idle after the disk was freed: %s",
	              saga_engine_errmsg(e));
	assert_all_completed(e, ids, NINST);
	ck_assert_int_eq(atomic_load(&log_recovered), episode);
	ck_assert_int_ge(atomic_load(&recovered_after), 1);
	ck_assert_int_le(atomic_load(&recovered_after), attempts + 8);
}

START_TEST(workers_back_off_while_commits_fail)
{
	saga_engine *e = open_engine(2);
	int64_t ids[NINST];
	full_disk_episode(e, ids, 1);
	/* Reset on success: a second episode is a new change of state. */
	full_disk_episode(e, ids, 2);
	saga_engine_close(e);
}
END_TEST

START_TEST(caller_driven_returns_the_error)
{
	saga_engine *e = open_engine(0);
	set_gate(true);
	int64_t ids[NINST];
	for (int i = 0; i < NINST; i++)
		ck_assert_int_eq(saga_start(e, &ids[i], NULL, "d", NULL, NULL), SAGA_OK);

	faultvfs_arm(FAULTVFS_WRITE, 1, SQLITE_FULL, true);
	unsigned int ran = 0;
	int rc = saga_run_due(e, &ran);
	ck_assert_msg(rc == SAGA_EFULL, "run_due: %d %s", rc, saga_engine_errmsg(e));
	ck_assert_int_le(faultvfs_injected(), 2);
	long before = faultvfs_injected();
	rc = saga_run_until_idle(e);
	ck_assert_msg(rc == SAGA_EFULL, "run_until_idle: %d %s", rc, saga_engine_errmsg(e));
	ck_assert_int_le(faultvfs_injected() - before, 2);
	ck_assert_int_eq(atomic_load(&log_lines), 0);

	faultvfs_disarm();
	ck_assert_int_eq(saga_run_until_idle(e), SAGA_OK);
	assert_all_completed(e, ids, NINST);
	saga_engine_close(e);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("commit-backoff");
	TCase *tc = tcase_create("full disk");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, workers_back_off_while_commits_fail);
	tcase_add_test(tc, caller_driven_returns_the_error);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
