/* The PostgreSQL store's own behaviour, against a real server
 * (tests/pg-run.sh), where it differs from the SQLite store's: opening waits
 * for the schema's advisory lock only for busy_timeout_ms.
 * SPDX-License-Identifier: MIT */
#include "test-common.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
	suite_add_tcase(s, tc);
	return run_suite(s);
}
