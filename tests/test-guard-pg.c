/* The participant guard on PostgreSQL (include/saga_pg.h) against a real
 * server (tests/pg-run.sh), a fresh database per test: the cases every
 * database shares with test-guard.c (guard-cases.h), that a verdict commits or rolls back with the participant's
 * own transaction (also when the participant's process is SIGKILLed), and
 * what only a server with row locks and other sessions shows: a concurrent
 * call for the same key waits for the first one's transaction and answers
 * after it, and a snapshot isolation conflict is SAGA_EBUSY.
 * SPDX-License-Identifier: MIT */
#include "test-common.h"

#include "saga_pg.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char store[512];
static PGconn *db;

static PGconn *connect_db(void)
{
	PGconn *c = PQconnectdb(store + strlen("postgresql:"));
	ck_assert_msg(c && PQstatus(c) == CONNECTION_OK, "connect: %s",
	              c ? PQerrorMessage(c) : "out of memory");
	return c;
}

static void exec(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
	ck_assert_msg(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK, "%s: %s", sql,
	              PQerrorMessage(c));
	PQclear(r);
}

/* The first value of a query with one text parameter, as an integer; 0
 * when there is no row. */
static int64_t value_of(const char *sql, const char *key)
{
	PGresult *r = PQexecParams(db, sql, 1, NULL, &key, NULL, NULL, 0);
	ck_assert_msg(r && PQresultStatus(r) == PGRES_TUPLES_OK, "%s: %s", sql, PQerrorMessage(db));
	int64_t v = PQntuples(r) ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : 0;
	PQclear(r);
	return v;
}

/* The stored state of a key, or 0 when it has no row. */
static int state_of(const char *key)
{
	if (value_of("SELECT count(*) FROM saga_guard WHERE action_key = $1", key))
		ck_assert_int_gt(value_of("SELECT at FROM saga_guard WHERE action_key = $1", key),
		                 0); /* `at` is recorded */
	return (int)value_of("SELECT state FROM saga_guard WHERE action_key = $1", key);
}

/* The highest fence recorded for a key, or 0 when it has none. */
static int64_t fence_of(const char *key)
{
	return value_of("SELECT fence FROM saga_guard_fence WHERE action_key = $1", key);
}

/* One guard call on c; fence 0 makes the unfenced call. */
static int guard(PGconn *c, const char *key, bool compensation, int64_t fence,
                 saga_guard_verdict *v)
{
	if (fence)
		return compensation ? saga_guard_pg_compensation_fenced(c, key, fence, v)
		                    : saga_guard_pg_action_fenced(c, key, fence, v);
	return compensation ? saga_guard_pg_compensation(c, key, v)
	                    : saga_guard_pg_action(c, key, v);
}

/* One guard call on c in its own committed transaction. */
static saga_guard_verdict call_on(PGconn *c, const char *key, bool compensation, int64_t fence)
{
	saga_guard_verdict v = (saga_guard_verdict)-1;
	exec(c, "BEGIN");
	int rc = guard(c, key, compensation, fence, &v);
	ck_assert_msg(rc == SAGA_OK, "%s: %s", saga_strerror(rc), PQerrorMessage(c));
	exec(c, "COMMIT");
	return v;
}

static saga_guard_verdict action(const char *key)
{
	return call_on(db, key, false, 0);
}

static saga_guard_verdict compensation(const char *key)
{
	return call_on(db, key, true, 0);
}

static saga_guard_verdict action_at(const char *key, int64_t fence)
{
	return call_on(db, key, false, fence);
}

static saga_guard_verdict compensation_at(const char *key, int64_t fence)
{
	return call_on(db, key, true, fence);
}

/* For guard-cases.h: the test's connection. */
static int guard_call(const char *key, bool compensation, int64_t fence, saga_guard_verdict *v)
{
	return guard(db, key, compensation, fence, v);
}

static void sql(const char *text)
{
	exec(db, text);
}

static int guard_init(void)
{
	return saga_guard_pg_init(db);
}

#define BEGIN_WRITE "BEGIN"

#include "guard-cases.h"

static void setup(void)
{
	pg_db_fresh(store, sizeof(store));
	db = connect_db();
	ck_assert_int_eq(saga_guard_pg_init(db), SAGA_OK);
}

static void teardown(void)
{
	PQfinish(db);
	db = NULL;
	pg_db_drop(store);
}

START_TEST(init_is_idempotent)
{
	ck_assert_int_eq(saga_guard_pg_init(db), SAGA_OK);
	ck_assert_int_eq(action("k"), SAGA_GUARD_PROCEED);
	ck_assert_int_eq(saga_guard_pg_init(db), SAGA_OK);
	ck_assert_int_eq(state_of("k"), S_ACTION);
	/* Inside the participant's transaction, it runs in that one. */
	exec(db, "DROP TABLE saga_guard_fence");
	exec(db, "BEGIN");
	ck_assert_int_eq(saga_guard_pg_init(db), SAGA_OK);
	exec(db, "ROLLBACK");
	ck_assert_int_eq(
	        value_of("SELECT count(*) FROM pg_tables WHERE tablename = $1", "saga_guard_fence"),
	        0);
}
END_TEST

START_TEST(bad_arguments)
{
	saga_guard_verdict v;
	ck_assert_int_eq(saga_guard_pg_init(NULL), SAGA_EINVAL);
	exec(db, "BEGIN");
	ck_assert_int_eq(saga_guard_pg_action(NULL, "k", &v), SAGA_EINVAL);
	ck_assert_int_eq(saga_guard_pg_action(db, NULL, &v), SAGA_EINVAL);
	ck_assert_int_eq(saga_guard_pg_action(db, "", &v), SAGA_EINVAL);
	ck_assert_int_eq(saga_guard_pg_action(db, "k", NULL), SAGA_EINVAL);
	ck_assert_int_eq(saga_guard_pg_compensation(NULL, "k", &v), SAGA_EINVAL);
	ck_assert_int_eq(saga_guard_pg_compensation(db, NULL, &v), SAGA_EINVAL);
	ck_assert_int_eq(saga_guard_pg_compensation(db, "", &v), SAGA_EINVAL);
	ck_assert_int_eq(saga_guard_pg_compensation(db, "k", NULL), SAGA_EINVAL);
	exec(db, "COMMIT");
	ck_assert_int_eq(state_of("k"), S_NONE);
}
END_TEST

/* Outside a transaction block, in a failed one, or in pipeline mode. */
START_TEST(refused_outside_a_transaction)
{
	saga_guard_verdict v;
	ck_assert_int_eq(saga_guard_pg_action(db, "k", &v), SAGA_ESTATE);
	ck_assert_int_eq(saga_guard_pg_compensation(db, "k", &v), SAGA_ESTATE);
	ck_assert_int_eq(state_of("k"), S_NONE);
	exec(db, "BEGIN");
	PQclear(PQexec(db, "SELECT no_such_column FROM saga_guard"));
	ck_assert_int_eq(PQtransactionStatus(db), PQTRANS_INERROR);
	ck_assert_int_eq(saga_guard_pg_action(db, "k", &v), SAGA_ESTATE);
	exec(db, "ROLLBACK");
	ck_assert_int_eq(PQenterPipelineMode(db), 1);
	ck_assert_int_eq(saga_guard_pg_init(db), SAGA_ESTATE);
	ck_assert_int_eq(saga_guard_pg_action(db, "k", &v), SAGA_ESTATE);
	ck_assert_int_eq(PQexitPipelineMode(db), 1);
	ck_assert_int_eq(state_of("k"), S_NONE);
}
END_TEST

START_TEST(works_inside_a_savepoint)
{
	saga_guard_verdict v;
	exec(db, "BEGIN");
	exec(db, "SAVEPOINT outer_sp");
	ck_assert_int_eq(saga_guard_pg_action(db, "s", &v), SAGA_OK);
	ck_assert_int_eq(v, SAGA_GUARD_PROCEED);
	exec(db, "ROLLBACK TO outer_sp");
	exec(db, "COMMIT");
	ck_assert_int_eq(state_of("s"), S_NONE);
}
END_TEST

START_TEST(verdict_is_durable)
{
	ck_assert_int_eq(action("d"), SAGA_GUARD_PROCEED);
	ck_assert_int_eq(compensation("d2"), SAGA_GUARD_EMPTY);
	PQfinish(db);
	db = connect_db();
	ck_assert_int_eq(saga_guard_pg_init(db), SAGA_OK);
	ck_assert_int_eq(action("d"), SAGA_GUARD_DONE);
	ck_assert_int_eq(action("d2"), SAGA_GUARD_REFUSED);
}
END_TEST

/* The participant's process dies (SIGKILL) inside its transaction, after
 * the verdict and its effect: neither is kept, and the retried action
 * proceeds. Killed after COMMIT, both are kept. */
START_TEST(killed_participant_keeps_verdict_and_effect_together)
{
	exec(db, "CREATE TABLE effect(k text)");
	for (int committed = 0; committed < 2; committed++) {
		const char *key = committed ? "after" : "before";
		fflush(stdout);
		pid_t pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			PGconn *c = PQconnectdb(store + strlen("postgresql:"));
			saga_guard_verdict v;
			const char *p[1] = { key };
			PGresult *r = NULL;
			if (PQstatus(c) != CONNECTION_OK)
				_exit(2);
			PQclear(PQexec(c, "BEGIN"));
			if (saga_guard_pg_action(c, key, &v) != SAGA_OK || v != SAGA_GUARD_PROCEED)
				_exit(3);
			r = PQexecParams(c, "INSERT INTO effect VALUES ($1)", 1, NULL, p, NULL,
			                 NULL, 0);
			if (PQresultStatus(r) != PGRES_COMMAND_OK)
				_exit(4);
			if (committed)
				PQclear(PQexec(c, "COMMIT"));
			raise(SIGKILL);
			_exit(5);
		}
		int st = 0;
		ck_assert_int_eq(waitpid(pid, &st, 0), pid);
		ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "child status %d", st);
		/* The server ends the dead session's transaction once it sees the
		 * socket closed; a share lock on the table (which conflicts with
		 * its row writes) waits for that. */
		exec(db, "BEGIN");
		exec(db, "LOCK TABLE saga_guard IN SHARE MODE");
		exec(db, "COMMIT");
		int64_t effects = value_of("SELECT count(*) FROM effect WHERE k = $1", key);
		ck_assert_int_eq(effects, committed);
		ck_assert_int_eq(state_of(key), committed ? S_ACTION : S_NONE);
		ck_assert_int_eq(action(key), committed ? SAGA_GUARD_DONE : SAGA_GUARD_PROCEED);
	}
}
END_TEST

/* Two sessions call the guard for one key: the second waits for the first
 * one's transaction and answers from what it left. */
typedef struct second_call {
	const char *key;
	bool compensation;
	int64_t fence; /* 0: unfenced */
	saga_guard_verdict verdict;
	int rc;
	int backend_pid;
} second_call;

static void *second_session(void *arg)
{
	second_call *sc = arg;
	PGconn *c = PQconnectdb(store + strlen("postgresql:"));
	sc->rc = SAGA_ERROR;
	if (PQstatus(c) == CONNECTION_OK) {
		__atomic_store_n(&sc->backend_pid, PQbackendPID(c), __ATOMIC_SEQ_CST);
		PGresult *r = PQexec(c, "BEGIN");
		PQclear(r);
		sc->rc = guard(c, sc->key, sc->compensation, sc->fence, &sc->verdict);
		PQclear(PQexec(c, "COMMIT"));
	}
	PQfinish(c);
	return NULL;
}

/* Waits until the session of pid waits for a lock (pg_stat_activity); no
 * time limit but the test's own. */
static void wait_until_blocked(second_call *sc)
{
	int pid;
	while ((pid = __atomic_load_n(&sc->backend_pid, __ATOMIC_SEQ_CST)) == 0)
		sched_yield();
	char spid[16];
	snprintf(spid, sizeof(spid), "%d", pid);
	PGconn *watch = connect_db();
	for (;;) {
		const char *p[1] = { spid };
		PGresult *r = PQexecParams(watch,
		                           "SELECT count(*) FROM pg_stat_activity WHERE pid = $1"
		                           " AND wait_event_type = 'Lock'",
		                           1, NULL, p, NULL, NULL, 0);
		ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
		bool blocked = strcmp(PQgetvalue(r, 0, 0), "1") == 0;
		PQclear(r);
		if (blocked)
			break;
		struct timespec ts = { 0, 5 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	PQfinish(watch);
}

/* The first session's call (uncommitted until `commit`); then the second
 * session's call for the same key, which must wait; the answer it gives
 * once the first commits or rolls back. Fences 0: unfenced calls. */
static saga_guard_verdict race_at(const char *key, bool first_comp, int64_t first_fence,
                                  bool second_comp, int64_t second_fence, bool commit)
{
	saga_guard_verdict v;
	exec(db, "BEGIN");
	ck_assert_int_eq(guard(db, key, first_comp, first_fence, &v), SAGA_OK);
	second_call sc = { key, second_comp, second_fence, (saga_guard_verdict)-1, 0, 0 };
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, second_session, &sc), 0);
	wait_until_blocked(&sc);
	exec(db, commit ? "COMMIT" : "ROLLBACK");
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(sc.rc, SAGA_OK);
	return sc.verdict;
}

static saga_guard_verdict race(const char *key, bool first_comp, bool second_comp, bool commit)
{
	return race_at(key, first_comp, 0, second_comp, 0, commit);
}

START_TEST(concurrent_calls_wait_for_each_other)
{
	/* An empty compensation in flight: the hanging action that races it
	 * is refused once it commits, and goes ahead if it rolls back. */
	ck_assert_int_eq(race("e1", true, false, true), SAGA_GUARD_REFUSED);
	ck_assert_int_eq(race("e2", true, false, false), SAGA_GUARD_PROCEED);
	/* An action in flight: a compensation racing it undoes it once it
	 * commits, and is empty if it rolls back. */
	ck_assert_int_eq(race("a1", false, true, true), SAGA_GUARD_PROCEED);
	ck_assert_int_eq(state_of("a1"), S_COMPENSATED);
	ck_assert_int_eq(race("a2", false, true, false), SAGA_GUARD_EMPTY);
	/* A compensation of a done action in flight: a retried action after
	 * it is refused, not answered DONE from the row as it was before. */
	ck_assert_int_eq(action("c1"), SAGA_GUARD_PROCEED);
	ck_assert_int_eq(race("c1", true, false, true), SAGA_GUARD_REFUSED);
	ck_assert_int_eq(action("c2"), SAGA_GUARD_PROCEED);
	ck_assert_int_eq(race("c2", true, false, false), SAGA_GUARD_DONE);
}
END_TEST

/* Under REPEATABLE READ a row committed after the snapshot is a
 * serialization failure: SAGA_EBUSY, the transaction to be retried. */
START_TEST(busy_is_reported)
{
	PGconn *other = connect_db();
	exec(other, "BEGIN ISOLATION LEVEL REPEATABLE READ");
	exec(other, "SELECT count(*) FROM saga_guard"); /* the snapshot */
	ck_assert_int_eq(action("b"), SAGA_GUARD_PROCEED);
	saga_guard_verdict v;
	ck_assert_int_eq(saga_guard_pg_compensation(other, "b", &v), SAGA_EBUSY);
	exec(other, "ROLLBACK");
	PQfinish(other);
	ck_assert_int_eq(state_of("b"), S_ACTION);
}
END_TEST

START_TEST(store_errors_are_mapped)
{
	saga_guard_verdict v;
	/* No table: the participant forgot saga_guard_pg_init. */
	exec(db, "DROP TABLE saga_guard");
	exec(db, "BEGIN");
	ck_assert_int_eq(saga_guard_pg_action(db, "k", &v), SAGA_ESTORE);
	ck_assert_ptr_nonnull(strstr(PQerrorMessage(db), "saga_guard"));
	exec(db, "ROLLBACK");
	exec(db, "BEGIN");
	ck_assert_int_eq(saga_guard_pg_compensation(db, "k", &v), SAGA_ESTORE);
	exec(db, "ROLLBACK");
	ck_assert_int_eq(saga_guard_pg_init(db), SAGA_OK);

	/* A read-only transaction cannot record a verdict. */
	exec(db, "BEGIN READ ONLY");
	ck_assert_int_eq(saga_guard_pg_action(db, "k", &v), SAGA_ESTORE);
	exec(db, "ROLLBACK");

	/* A row in a state the guard never writes. */
	exec(db, "INSERT INTO saga_guard VALUES ('bad', 7, 1)");
	exec(db, "BEGIN");
	ck_assert_int_eq(saga_guard_pg_action(db, "bad", &v), SAGA_ECORRUPT);
	ck_assert_int_eq(saga_guard_pg_compensation(db, "bad", &v), SAGA_ECORRUPT);
	exec(db, "ROLLBACK");
}
END_TEST

START_TEST(fenced_bad_arguments)
{
	saga_guard_verdict v;
	ck_assert_int_eq(saga_guard_pg_action_fenced(db, "k", 1, &v), SAGA_ESTATE);
	exec(db, "BEGIN");
	ck_assert_int_eq(saga_guard_pg_action_fenced(NULL, "k", 1, &v), SAGA_EINVAL);
	ck_assert_int_eq(saga_guard_pg_action_fenced(db, "", 1, &v), SAGA_EINVAL);
	ck_assert_int_eq(saga_guard_pg_action_fenced(db, "k", 1, NULL), SAGA_EINVAL);
	ck_assert_int_eq(saga_guard_pg_action_fenced(db, "k", 0, &v), SAGA_EINVAL);
	ck_assert_int_eq(saga_guard_pg_compensation_fenced(db, NULL, 1, &v), SAGA_EINVAL);
	ck_assert_int_eq(saga_guard_pg_compensation_fenced(db, "k", -3, &v), SAGA_EINVAL);
	exec(db, "COMMIT");
	ck_assert_int_eq(state_of("k"), S_NONE);
	ck_assert_int_eq(fence_of("k"), 0);
}
END_TEST

/* Two owners' calls with fences race on one key: the higher fence in
 * flight holds the mark; the lower one, waiting, is stale once the higher
 * commits, and answered as usual if it rolls back. */
START_TEST(concurrent_lower_fence_is_stale)
{
	ck_assert_int_eq(race_at("f", false, 5, true, 3, true), SAGA_GUARD_STALE);
	ck_assert_int_eq(fence_of("f"), 5);
	ck_assert_int_eq(state_of("f"), S_ACTION);
	ck_assert_int_eq(race_at("g", false, 5, true, 3, false), SAGA_GUARD_EMPTY);
	ck_assert_int_eq(fence_of("g"), 3);
	/* An equal fence is the same owner: it waits and goes on. */
	ck_assert_int_eq(race_at("h", false, 4, true, 4, true), SAGA_GUARD_PROCEED);
	ck_assert_int_eq(state_of("h"), S_COMPENSATED);
}
END_TEST

static Suite *guard_suite(void)
{
	Suite *s = suite_create("guard-pg");
	TCase *transitions = tcase_create("transitions");
	tcase_add_checked_fixture(transitions, setup, teardown);
	tcase_add_test(transitions, init_is_idempotent);
	tcase_add_test(transitions, bad_arguments);
	tcase_add_test(transitions, refused_outside_a_transaction);
	suite_add_tcase(s, transitions);

	TCase *transactions = tcase_create("transactions");
	tcase_add_checked_fixture(transactions, setup, teardown);
	tcase_set_timeout(transactions, 30);
	tcase_add_test(transactions, works_inside_a_savepoint);
	tcase_add_test(transactions, verdict_is_durable);
	tcase_add_test(transactions, killed_participant_keeps_verdict_and_effect_together);
	tcase_add_test(transactions, concurrent_calls_wait_for_each_other);
	tcase_add_test(transactions, busy_is_reported);
	tcase_add_test(transactions, store_errors_are_mapped);
	suite_add_tcase(s, transactions);

	TCase *fences = tcase_create("fences");
	tcase_add_checked_fixture(fences, setup, teardown);
	tcase_add_test(fences, fenced_bad_arguments);
	tcase_add_test(fences, concurrent_lower_fence_is_stale);
	suite_add_tcase(s, fences);
	add_guard_cases(transitions, transactions, fences);
	return s;
}

int main(void)
{
	return run_suite(guard_suite());
}
