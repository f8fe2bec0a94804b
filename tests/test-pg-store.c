/* The PostgreSQL store's own behaviour, against a real server
 * (tests/pg-run.sh), where it differs from the SQLite store's: opening waits
 * for the schema's advisory lock only for busy_timeout_ms, a round's
 * batched writes find their instances through the primary key however the
 * table has grown since the statements were prepared and are planned once
 * even when rounds carry one instance, and a renewal sent with a round's
 * writes and refused there is a lost ownership.
 * SPDX-License-Identifier: MIT */
#include "test-common.h"

#include <libpq-fe.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char store[512];

static void setup(void)
{
	pg_db_fresh(store, sizeof(store));
}

static void teardown(void)
{
	pg_db_drop(store);
}

/* Another session holds the lock under which stores are created and
 * migrated: an open waits busy_timeout_ms, then gives SAGA_EBUSY and
 * writes nothing; once the lock is free, the open creates the store. */
START_TEST(open_waits_for_the_schema_lock_only_so_long)
{
	PGconn *c = PQconnectdb(store + strlen("postgresql:"));
	ck_assert_msg(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
	PGresult *r = PQexec(c, "SELECT pg_advisory_lock(1396786497, hashtext(current_schema()))");
	ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
	PQclear(r);

	saga_options o = SAGA_OPTIONS_INIT;
	o.path = store;
	o.busy_timeout_ms = 300;
	saga_engine *e = NULL;
	char err[512] = "";
	ck_assert_int_eq(saga_engine_open(&e, &o, err, sizeof(err)), SAGA_EBUSY);
	ck_assert_ptr_null(e);
	ck_assert_msg(strstr(err, "creating or migrating"), "message \"%s\"", err);
	ck_assert_int_eq(test_store_int(store, "SELECT count(*) FROM pg_tables WHERE schemaname ="
	                                       " current_schema()"),
	                 0);

	r = PQexec(c, "SELECT pg_advisory_unlock_all()");
	PQclear(r);
	PQfinish(c);
	ck_assert_msg(saga_engine_open(&e, &o, err, sizeof(err)) == SAGA_OK, "open: %s", err);
	saga_engine_close(e);
	ck_assert_int_eq(test_store_int(store, "SELECT schema_version FROM meta"), 4);
}
END_TEST

static saga_step_result noop(saga_step_ctx *ctx, void *user)
{
	(void)ctx;
	(void)user;
	return SAGA_STEP_OK;
}

/* An engine on the test's store, at most `in_flight` instances at once,
 * with the definition (name, 1) of `steps` compensatable steps that run
 * `fn` (compensations do nothing); lease_ms 0 is the default. */
static saga_engine *open_with_steps(unsigned int in_flight, uint32_t lease_ms, const char *name,
                                    int steps, saga_step_fn fn)
{
	saga_options o = SAGA_OPTIONS_INIT;
	o.path = store;
	o.max_in_flight = in_flight;
	o.lease_ms = lease_ms;
	saga_engine *e = NULL;
	char err[512] = "";
	ck_assert_msg(saga_engine_open(&e, &o, err, sizeof(err)) == SAGA_OK, "open: %s", err);
	saga_definition *d = NULL;
	ck_assert_int_eq(saga_definition_new(&d, name, 1), SAGA_OK);
	for (int i = 0; i < steps; i++) {
		char step[8];
		snprintf(step, sizeof(step), "s%d", i);
		saga_step_spec st = { step, SAGA_STEP_COMPENSATABLE, fn, noop, NULL };
		ck_assert_int_eq(saga_definition_add_step(d, &st), SAGA_OK);
	}
	ck_assert_int_eq(saga_engine_register(e, d), SAGA_OK);
	saga_definition_free(d);
	return e;
}

/* Starts n (at most 256) instances of definition `name` in one batch. */
static void start_n(saga_engine *e, const char *name, int n)
{
	saga_start_request reqs[256];
	int64_t ids[256];
	ck_assert_int_le(n, 256);
	for (int i = 0; i < n; i++)
		reqs[i] = (saga_start_request){ .definition = name };
	ck_assert_msg(saga_start_batch(e, ids, NULL, reqs, (size_t)n) == SAGA_OK, "start: %s",
	              saga_engine_errmsg(e));
}

/* The server's count of sequential scans of the instances table and of
 * rows updated in it, once the engine's session has reported its own (a
 * session's counts reach the server's statistics when it ends, a moment
 * after the client closed it). */
static int64_t instance_seq_scans(int64_t updated_at_least)
{
	for (int tries = 0; tries < 200; tries++) {
		if (test_store_int(store, "SELECT n_tup_upd FROM pg_stat_user_tables WHERE"
		                          " relname = 'instances'") >= updated_at_least)
			return test_store_int(store, "SELECT seq_scan FROM pg_stat_user_tables"
			                             " WHERE relname = 'instances'");
		struct timespec ts = { 0, 25 * 1000000L };
		nanosleep(&ts, NULL);
	}
	ck_abort_msg("the engine's updates never reached the server's statistics");
	return -1;
}

/* The statements that write a round's instances in one go are prepared
 * while the store is empty and kept as the table grows: they must look each
 * row up by its key, never scan the table (a plan chosen for an empty table
 * that hashes the whole table every round would make each round slower than
 * the last). A few thousand instances in rounds of 64: the table is scanned
 * a handful of times at most, not once a round. */
START_TEST(round_writes_look_rows_up_by_key)
{
	saga_engine *e = open_with_steps(64, 0, "grow", 3, noop);
	int batches = 40;
	for (int b = 0; b < batches; b++) {
		start_n(e, "grow", 64);
		ck_assert_msg(saga_run_until_idle(e) == SAGA_OK, "run: %s", saga_engine_errmsg(e));
	}
	int64_t counts[SAGA_STATE_COUNT];
	ck_assert_int_eq(saga_counts(e, counts), SAGA_OK);
	ck_assert_int_eq(counts[SAGA_COMPLETED], 64 * batches);
	saga_engine_close(e);
	/* Each instance is updated at least once a step. */
	int64_t scans = instance_seq_scans(64 * batches * 3);
	fprintf(stderr, "sequential scans of instances: %lld\n", (long long)scans);
	ck_assert_msg(scans < batches, "%lld sequential scans of the instances table in %d batches",
	              (long long)scans, batches);
}
END_TEST

/* Makes pg_stat_statements' view (in a schema of its own, beside the
 * store's): what the server counted since it started (tests/pg-run.sh loads
 * the module with SAGA_TEST_PG_STATEMENTS=1). */
static void statements_view(void)
{
	test_store_exec(store, "CREATE SCHEMA stats");
	test_store_exec(store, "CREATE EXTENSION pg_stat_statements SCHEMA stats");
}

/* The sum of `what` (a column of pg_stat_statements, or an expression of
 * them) over this database's statements that begin with `prefix`. */
static int64_t statements_sum(const char *what, const char *prefix)
{
	char sql[512];
	snprintf(sql, sizeof(sql),
	         "SELECT coalesce(sum(%s), 0) FROM stats.pg_stat_statements s JOIN pg_database d"
	         " ON d.oid = s.dbid WHERE d.datname = current_database() AND s.query LIKE '%s%%'",
	         what, prefix);
	return test_store_int(store, sql);
}

/* Rounds of one instance (a caller that runs one saga at a time) send the
 * statements that write a round's instances and history with one row each:
 * the server must keep one plan of each, not plan them again every round
 * (a plan for arrays of unknown length looked dearer than planning anew
 * for one row, and planning cost more than running them). */
START_TEST(rounds_of_one_are_planned_once)
{
	saga_engine *e = open_with_steps(1, 0, "one", 3, noop);
	for (int i = 0; i < 30; i++) {
		start_n(e, "one", 1);
		ck_assert_msg(saga_run_until_idle(e) == SAGA_OK, "run: %s", saga_engine_errmsg(e));
	}
	saga_engine_close(e);
	statements_view();
	const char *kinds[] = { "WITH w AS (UPDATE instances", "WITH w AS (INSERT INTO history" };
	for (int k = 0; k < 2; k++) {
		int64_t calls = statements_sum("calls", kinds[k]);
		int64_t plans = statements_sum("plans", kinds[k]);
		fprintf(stderr, "%s ...: %lld calls, %lld plans\n", kinds[k], (long long)calls,
		        (long long)plans);
		ck_assert_int_ge(calls, 90); /* a round a step, at least */
		ck_assert_msg(plans <= 10, "%s ...: planned %lld times in %lld calls", kinds[k],
		              (long long)plans, (long long)calls);
	}
}
END_TEST

/* An engine looks for lapsed owners at every poll, idle or not: that look
 * must find their instances through the index of owned ones, never read the
 * instances table, which keeps every finished instance until a purge. */
START_TEST(polls_never_read_the_instances_table)
{
	saga_engine *e = open_with_steps(256, 0, "done", 1, noop);
	for (int b = 0; b < 12; b++) {
		start_n(e, "done", 250);
		ck_assert_msg(saga_run_until_idle(e) == SAGA_OK, "run: %s", saga_engine_errmsg(e));
	}
	int64_t pages = test_store_int(store, "SELECT pg_relation_size('instances') / 8192");
	ck_assert_int_ge(pages, 100);
	statements_view();
	ck_assert_int_eq(test_store_int(store, "SELECT 1 FROM stats.pg_stat_statements_reset()"),
	                 1);
	/* Idle for a while: a poll every SAGA_POLL_MS. */
	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		unsigned int ran = 0;
		ck_assert_int_eq(saga_run_due(e, &ran), SAGA_OK);
		struct timespec ts = { 0, 10 * 1000000L };
		nanosleep(&ts, NULL);
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while ((now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000 < 800);
	saga_engine_close(e);
	const char *reap = "WITH t AS MATERIALIZED";
	int64_t calls = statements_sum("calls", reap);
	int64_t blocks = statements_sum("shared_blks_hit + shared_blks_read", reap);
	fprintf(stderr, "polls: %lld, blocks read %lld, the table %lld pages\n", (long long)calls,
	        (long long)blocks, (long long)pages);
	ck_assert_int_ge(calls, 3);
	ck_assert_msg(blocks / calls < pages / 4, "a poll read %lld blocks; the table has %lld",
	              (long long)(blocks / calls), (long long)pages);
}
END_TEST

static atomic_int runs;

static saga_step_result count_run(saga_step_ctx *ctx, void *user)
{
	(void)ctx;
	(void)user;
	atomic_fetch_add(&runs, 1);
	return SAGA_STEP_OK;
}

/* The server takes the engine's lease away while the engine's own count of
 * it still runs (its clock stepped, say): the round whose renewal went with
 * its writes commits nothing, the engine learns it lost its instances,
 * registers anew and finishes every instance under the new registration;
 * the old registration is never renewed again. */
START_TEST(lease_refused_mid_run_is_ownership_lost)
{
	/* A lease the engine's own count never sees run out here. */
	saga_engine *e = open_with_steps(16, 60000, "lapse", 3, count_run);
	start_n(e, "lapse", 16);
	unsigned int ran = 0;
	ck_assert_int_eq(saga_run_due(e, &ran), SAGA_OK); /* the first steps ran */
	int64_t first = test_store_int(store, "SELECT max(epoch) FROM owners");
	char sql[128];
	snprintf(sql, sizeof(sql), "UPDATE owners SET lease_until = 0 WHERE epoch = %lld",
	         (long long)first);
	test_store_exec(store, sql);
	/* The next round's renewal is refused; the engine goes on as a new
	 * owner once the old one is reaped (its lease lapsed on the server). */
	int failed = 0;
	for (int i = 0; i < 200; i++) {
		int64_t counts[SAGA_STATE_COUNT];
		ck_assert_int_eq(saga_counts(e, counts), SAGA_OK);
		if (counts[SAGA_COMPLETED] == 16)
			break;
		if (saga_run_due(e, &ran) != SAGA_OK)
			failed++;
		struct timespec ts = { 0, 20 * 1000000L };
		nanosleep(&ts, NULL);
	}
	int64_t counts[SAGA_STATE_COUNT];
	ck_assert_int_eq(saga_counts(e, counts), SAGA_OK);
	ck_assert_int_eq(counts[SAGA_COMPLETED], 16);
	saga_engine_close(e);
	ck_assert_int_gt(test_store_int(store, "SELECT max(epoch) FROM owners"), first);
	snprintf(sql, sizeof(sql), "SELECT lease_until FROM owners WHERE epoch = %lld",
	         (long long)first);
	ck_assert_int_eq(test_store_int(store, sql), 0);
	/* Every step ran, once or (re-invoked by the new owner) more. */
	ck_assert_int_ge(atomic_load(&runs), 16 * 3);
	fprintf(stderr, "rounds that failed: %d, step runs: %d\n", failed, atomic_load(&runs));
}
END_TEST

int main(void)
{
	if (!getenv("SAGA_TEST_PG")) {
		fprintf(stderr, "no server (run through tests/pg-run.sh)\n");
		return 77;
	}
	Suite *s = suite_create("pg-store");
	TCase *tc = tcase_create("open");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, open_waits_for_the_schema_lock_only_so_long);
	tcase_add_test(tc, round_writes_look_rows_up_by_key);
	tcase_add_test(tc, lease_refused_mid_run_is_ownership_lost);
	tcase_add_test(tc, rounds_of_one_are_planned_once);
	tcase_add_test(tc, polls_never_read_the_instances_table);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
