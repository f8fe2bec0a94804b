/* The participant guard on a real SQLite file: every transition of the
 * saga_guard table, and that a verdict commits or rolls back with the
 * participant's own transaction. SPDX-License-Identifier: MIT */
#include <limits.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "test-common.h"

static char dir[PATH_MAX];
static char path[PATH_MAX + 16];
static sqlite3 *db;

static sqlite3 *open_db(int flags)
{
	sqlite3 *d = NULL;
	ck_assert_int_eq(sqlite3_open_v2(path, &d, flags, NULL), SQLITE_OK);
	return d;
}

static void exec(sqlite3 *d, const char *sql)
{
	char *err = NULL;
	int rc = sqlite3_exec(d, sql, NULL, NULL, &err);
	ck_assert_msg(rc == SQLITE_OK, "%s: %s", sql, err ? err : "?");
	sqlite3_free(err);
}

/* The stored state of a key, or 0 when it has no row. */
static int state_of(const char *key)
{
	sqlite3_stmt *st = NULL;
	ck_assert_int_eq(sqlite3_prepare_v2(db,
	                                    "SELECT state, at FROM saga_guard WHERE action_key = ?",
	                                    -1, &st, NULL),
	                 SQLITE_OK);
	ck_assert_int_eq(sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC), SQLITE_OK);
	int state = 0;
	if (sqlite3_step(st) == SQLITE_ROW) {
		state = sqlite3_column_int(st, 0);
		ck_assert_int_gt(sqlite3_column_int64(st, 1), 0); /* `at` is recorded */
	}
	sqlite3_finalize(st);
	return state;
}

/* One guard call on db, in the transaction the test opened; fence 0 makes
 * the unfenced call. */
static int guard_call(const char *key, bool compensation, int64_t fence, saga_guard_verdict *v)
{
	if (fence)
		return compensation ? saga_guard_compensation_fenced(db, key, fence, v)
		                    : saga_guard_action_fenced(db, key, fence, v);
	return compensation ? saga_guard_compensation(db, key, v) : saga_guard_action(db, key, v);
}

/* One guard call in its own committed transaction. */
static saga_guard_verdict call_committed(const char *key, bool compensation, int64_t fence)
{
	saga_guard_verdict v = (saga_guard_verdict)-1;
	exec(db, "BEGIN IMMEDIATE");
	ck_assert_int_eq(guard_call(key, compensation, fence, &v), SAGA_OK);
	exec(db, "COMMIT");
	return v;
}

static void sql(const char *text)
{
	exec(db, text);
}

static int guard_init(void)
{
	return saga_guard_init(db);
}

#define BEGIN_WRITE "BEGIN IMMEDIATE"

static saga_guard_verdict action(const char *key)
{
	return call_committed(key, false, 0);
}

static saga_guard_verdict compensation(const char *key)
{
	return call_committed(key, true, 0);
}

static saga_guard_verdict action_at(const char *key, int64_t fence)
{
	return call_committed(key, false, fence);
}

static saga_guard_verdict compensation_at(const char *key, int64_t fence)
{
	return call_committed(key, true, fence);
}

/* The highest fence recorded for a key, or 0 when it has none. */
static int64_t fence_of(const char *key)
{
	sqlite3_stmt *st = NULL;
	ck_assert_int_eq(
	        sqlite3_prepare_v2(db, "SELECT fence FROM saga_guard_fence WHERE action_key = ?",
	                           -1, &st, NULL),
	        SQLITE_OK);
	ck_assert_int_eq(sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC), SQLITE_OK);
	int64_t fence = 0;
	if (sqlite3_step(st) == SQLITE_ROW)
		fence = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return fence;
}

static void setup(void)
{
	tmpdir_make(dir, sizeof dir);
	snprintf(path, sizeof path, "%s/participant.db", dir);
	db = open_db(SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
	exec(db, "PRAGMA journal_mode=WAL");
	ck_assert_int_eq(saga_guard_init(db), SAGA_OK);
}

static void teardown(void)
{
	sqlite3_close(db);
	db = NULL;
	tmpdir_remove(dir);
}

#include "guard-cases.h"

START_TEST(init_is_idempotent)
{
	ck_assert_int_eq(saga_guard_init(db), SAGA_OK);
	ck_assert_int_eq(action("k"), SAGA_GUARD_PROCEED);
	ck_assert_int_eq(saga_guard_init(db), SAGA_OK);
	ck_assert_int_eq(state_of("k"), S_ACTION);
}
END_TEST

START_TEST(bad_arguments)
{
	saga_guard_verdict v;
	ck_assert_int_eq(saga_guard_init(NULL), SAGA_EINVAL);
	exec(db, "BEGIN");
	ck_assert_int_eq(saga_guard_action(NULL, "k", &v), SAGA_EINVAL);
	ck_assert_int_eq(saga_guard_action(db, NULL, &v), SAGA_EINVAL);
	ck_assert_int_eq(saga_guard_action(db, "", &v), SAGA_EINVAL);
	ck_assert_int_eq(saga_guard_action(db, "k", NULL), SAGA_EINVAL);
	ck_assert_int_eq(saga_guard_compensation(NULL, "k", &v), SAGA_EINVAL);
	ck_assert_int_eq(saga_guard_compensation(db, NULL, &v), SAGA_EINVAL);
	ck_assert_int_eq(saga_guard_compensation(db, "", &v), SAGA_EINVAL);
	ck_assert_int_eq(saga_guard_compensation(db, "k", NULL), SAGA_EINVAL);
	exec(db, "COMMIT");
	ck_assert_int_eq(state_of("k"), S_NONE);
}
END_TEST

START_TEST(refused_outside_a_transaction)
{
	saga_guard_verdict v;
	ck_assert_int_eq(saga_guard_action(db, "k", &v), SAGA_ESTATE);
	ck_assert_int_eq(saga_guard_compensation(db, "k", &v), SAGA_ESTATE);
	ck_assert_int_eq(state_of("k"), S_NONE);
}
END_TEST

START_TEST(works_inside_a_savepoint)
{
	saga_guard_verdict v;
	exec(db, "SAVEPOINT outer_sp");
	ck_assert_int_eq(saga_guard_action(db, "s", &v), SAGA_OK);
	ck_assert_int_eq(v, SAGA_GUARD_PROCEED);
	exec(db, "ROLLBACK TO outer_sp");
	exec(db, "RELEASE outer_sp");
	ck_assert_int_eq(state_of("s"), S_NONE);
}
END_TEST

START_TEST(verdict_is_durable)
{
	ck_assert_int_eq(action("d"), SAGA_GUARD_PROCEED);
	ck_assert_int_eq(compensation("d2"), SAGA_GUARD_EMPTY);
	sqlite3_close(db);
	db = open_db(SQLITE_OPEN_READWRITE);
	ck_assert_int_eq(saga_guard_init(db), SAGA_OK);
	ck_assert_int_eq(action("d"), SAGA_GUARD_DONE);
	ck_assert_int_eq(action("d2"), SAGA_GUARD_REFUSED);
}
END_TEST

START_TEST(busy_is_reported)
{
	sqlite3 *other = open_db(SQLITE_OPEN_READWRITE);
	sqlite3_busy_timeout(other, 0);
	exec(db, "BEGIN IMMEDIATE");
	exec(other, "BEGIN");
	saga_guard_verdict v;
	ck_assert_int_eq(saga_guard_action(other, "b", &v), SAGA_EBUSY);
	ck_assert_int_eq(saga_guard_compensation(other, "b", &v), SAGA_EBUSY);
	exec(other, "ROLLBACK");
	exec(db, "ROLLBACK");
	sqlite3_close(other);
}
END_TEST

START_TEST(store_errors_are_mapped)
{
	saga_guard_verdict v;
	/* No table: the participant forgot saga_guard_init. */
	sqlite3 *bare = NULL;
	char other[PATH_MAX + 16];
	snprintf(other, sizeof other, "%s/bare.db", dir);
	ck_assert_int_eq(sqlite3_open(other, &bare), SQLITE_OK);
	exec(bare, "BEGIN");
	ck_assert_int_eq(saga_guard_action(bare, "k", &v), SAGA_ESTORE);
	ck_assert_int_eq(saga_guard_compensation(bare, "k", &v), SAGA_ESTORE);
	exec(bare, "ROLLBACK");
	sqlite3_close(bare);

	/* A read-only connection cannot record a verdict. */
	sqlite3 *ro = open_db(SQLITE_OPEN_READONLY);
	exec(ro, "BEGIN");
	ck_assert_int_eq(saga_guard_action(ro, "k", &v), SAGA_ESTORE);
	exec(ro, "ROLLBACK");
	sqlite3_close(ro);

	/* A row in a state the guard never writes. */
	exec(db, "INSERT INTO saga_guard VALUES ('bad', 7, 1)");
	exec(db, "BEGIN");
	ck_assert_int_eq(saga_guard_action(db, "bad", &v), SAGA_ECORRUPT);
	ck_assert_int_eq(saga_guard_compensation(db, "bad", &v), SAGA_ECORRUPT);
	exec(db, "ROLLBACK");
}
END_TEST

START_TEST(fenced_bad_arguments)
{
	saga_guard_verdict v;
	ck_assert_int_eq(saga_guard_action_fenced(db, "k", 1, &v), SAGA_ESTATE);
	exec(db, "BEGIN");
	ck_assert_int_eq(saga_guard_action_fenced(NULL, "k", 1, &v), SAGA_EINVAL);
	ck_assert_int_eq(saga_guard_action_fenced(db, "", 1, &v), SAGA_EINVAL);
	ck_assert_int_eq(saga_guard_action_fenced(db, "k", 1, NULL), SAGA_EINVAL);
	ck_assert_int_eq(saga_guard_action_fenced(db, "k", 0, &v), SAGA_EINVAL);
	ck_assert_int_eq(saga_guard_compensation_fenced(db, NULL, 1, &v), SAGA_EINVAL);
	ck_assert_int_eq(saga_guard_compensation_fenced(db, "k", -3, &v), SAGA_EINVAL);
	exec(db, "COMMIT");
	ck_assert_int_eq(state_of("k"), S_NONE);
	ck_assert_int_eq(fence_of("k"), 0);
}
END_TEST

static Suite *guard_suite(void)
{
	Suite *s = suite_create("guard");
	TCase *transitions = tcase_create("transitions");
	tcase_add_checked_fixture(transitions, setup, teardown);
	tcase_add_test(transitions, init_is_idempotent);
	tcase_add_test(transitions, bad_arguments);
	tcase_add_test(transitions, refused_outside_a_transaction);
	suite_add_tcase(s, transitions);

	TCase *transactions = tcase_create("transactions");
	tcase_add_checked_fixture(transactions, setup, teardown);
	tcase_add_test(transactions, works_inside_a_savepoint);
	tcase_add_test(transactions, verdict_is_durable);
	tcase_add_test(transactions, busy_is_reported);
	tcase_add_test(transactions, store_errors_are_mapped);
	suite_add_tcase(s, transactions);

	TCase *fences = tcase_create("fences");
	tcase_add_checked_fixture(fences, setup, teardown);
	tcase_add_test(fences, fenced_bad_arguments);
	suite_add_tcase(s, fences);
	add_guard_cases(transitions, transactions, fences);
	return s;
}

int main(void)
{
	return run_suite(guard_suite());
}
