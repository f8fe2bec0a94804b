/* Shared helpers for the Check suites. SPDX-License-Identifier: MIT */

#define _XOPEN_SOURCE 700 /* nftw */
#include "test-common.h"

#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#ifdef SAGA_HAVE_POSTGRESQL
#include <libpq-fe.h>
#endif

static uint64_t fake_wall(void *user)
{
	return ((fake_clock *)user)->wall;
}

static uint64_t fake_mono(void *user)
{
	return ((fake_clock *)user)->mono;
}

saga_clock fake_clock_make(fake_clock *fc)
{
	saga_clock c = { fake_wall, fake_mono, fc };
	return c;
}

void fake_clock_advance(fake_clock *fc, uint64_t ms)
{
	fc->wall += ms;
	fc->mono += ms;
}

void tmpdir_make(char *buf, size_t size)
{
	const char *base = getenv("TMPDIR");
	snprintf(buf, size, "%s/saga-test-XXXXXX", base && *base ? base : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(buf));
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void tmpdir_remove(const char *path)
{
	nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static long kill_at, events_seen;

void kill_at_event_arm(long n)
{
	kill_at = n;
	events_seen = 0;
}

void kill_at_event(const saga_event *ev, void *user)
{
	(void)ev;
	(void)user;
	if (kill_at && ++events_seen == kill_at)
		raise(SIGKILL);
}

bool test_store_is_pg(void)
{
	const char *v = getenv("SAGA_TEST_STORE");
	return v && strcmp(v, "postgresql") == 0;
}

bool sqlite_only(const char *why)
{
	if (!test_store_is_pg())
		return false;
	fprintf(stderr, "skipped on PostgreSQL: %s\n", why);
	return true;
}

void test_store_name(char *buf, size_t size, const char *dir, const char *file)
{
	if (test_store_is_pg())
		pg_db_fresh(buf, size);
	else
		ck_assert_int_lt(snprintf(buf, size, "%s/%s", dir, file), (int)size);
}

static bool is_pg_name(const char *name)
{
	return strncmp(name, "postgresql:", 11) == 0;
}

/* One statement (exec) or a query's first value (out) on a SQLite store. */
static void sqlite_sql(const char *path, const char *sql, int64_t *out)
{
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_busy_timeout(db, 10000);
	if (rc == SQLITE_OK && !out)
		rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
	if (rc == SQLITE_OK && out) {
		sqlite3_stmt *st = NULL;
		rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
		if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
			*out = sqlite3_column_int64(st, 0);
		else if (rc == SQLITE_OK)
			rc = SQLITE_ERROR;
		sqlite3_finalize(st);
	}
	ck_assert_msg(rc == SQLITE_OK, "%s on %s: %s", sql, path, db ? sqlite3_errmsg(db) : "?");
	sqlite3_close(db);
}

#ifdef SAGA_HAVE_POSTGRESQL

/* Runs sql on a connection to conninfo: a command, or (out) a query whose
 * first value is an integer. */
static void pg_sql(const char *conninfo, const char *sql, int64_t *out)
{
	PGconn *c = PQconnectdb(conninfo);
	ck_assert_msg(c && PQstatus(c) == CONNECTION_OK, "connect %s: %s", conninfo,
	              c ? PQerrorMessage(c) : "out of memory");
	PGresult *r = PQexec(c, sql);
	ExecStatusType want = out ? PGRES_TUPLES_OK : PGRES_COMMAND_OK;
	ck_assert_msg(r && PQresultStatus(r) == want, "%s: %s", sql, PQerrorMessage(c));
	if (out) {
		ck_assert_msg(PQntuples(r) > 0 && !PQgetisnull(r, 0, 0), "%s: no value", sql);
		*out = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	}
	PQclear(r);
	PQfinish(c);
}

void test_store_exec(const char *name, const char *sql)
{
	if (is_pg_name(name))
		pg_sql(name + 11, sql, NULL);
	else
		sqlite_sql(name, sql, NULL);
}

int64_t test_store_int(const char *name, const char *sql)
{
	int64_t v = 0;
	if (is_pg_name(name))
		pg_sql(name + 11, sql, &v);
	else
		sqlite_sql(name, sql, &v);
	return v;
}

/* Appends ` key='value'` to buf, quoted as libpq reads it. */
static void put_kv(char *buf, size_t size, const char *key, const char *val)
{
	size_t n = strlen(buf);
	ck_assert_int_lt(snprintf(buf + n, size - n, "%s%s='", n ? " " : "", key), (int)(size - n));
	n = strlen(buf);
	for (; *val; val++) {
		ck_assert_uint_lt(n + 3, size);
		if (*val == '\'' || *val == '\\')
			buf[n++] = '\\';
		buf[n++] = *val;
	}
	ck_assert_uint_lt(n + 1, size);
	buf[n++] = '\'';
	buf[n] = '\0';
}

void pg_conninfo(char *buf, size_t size, const char *db)
{
	const char *server = getenv("SAGA_TEST_PG");
	ck_assert_msg(server && *server, "SAGA_TEST_PG is not set (run through tests/pg-run.sh)");
	char *err = NULL;
	PQconninfoOption *opts = PQconninfoParse(server, &err);
	ck_assert_msg(opts, "SAGA_TEST_PG: %s", err ? err : "out of memory");
	buf[0] = '\0';
	for (PQconninfoOption *o = opts; o->keyword; o++)
		if (o->val && *o->val && strcmp(o->keyword, "dbname") != 0)
			put_kv(buf, size, o->keyword, o->val);
	PQconninfoFree(opts);
	put_kv(buf, size, "dbname", db);
}

/* Runs one statement on the maintenance database; fails the test unless it
 * succeeds. */
static void pg_admin(const char *sql)
{
	const char *server = getenv("SAGA_TEST_PG");
	ck_assert_msg(server && *server, "SAGA_TEST_PG is not set (run through tests/pg-run.sh)");
	PGconn *c = PQconnectdb(server);
	ck_assert_msg(c && PQstatus(c) == CONNECTION_OK, "connect %s: %s", server,
	              c ? PQerrorMessage(c) : "out of memory");
	PGresult *r = PQexec(c, sql);
	ck_assert_msg(r && PQresultStatus(r) == PGRES_COMMAND_OK, "%s: %s", sql, PQerrorMessage(c));
	PQclear(r);
	PQfinish(c);
}

void pg_dbname(char *buf, size_t size, const char *store)
{
	ck_assert_int_eq(strncmp(store, "postgresql:", 11), 0);
	char *err = NULL;
	PQconninfoOption *opts = PQconninfoParse(store + 11, &err);
	ck_assert_msg(opts, "%s: %s", store, err ? err : "out of memory");
	buf[0] = '\0';
	for (PQconninfoOption *o = opts; o->keyword; o++)
		if (strcmp(o->keyword, "dbname") == 0 && o->val)
			snprintf(buf, size, "%s", o->val);
	PQconninfoFree(opts);
	ck_assert_msg(buf[0], "%s: no dbname", store);
}

/* A database name unique on the server: this process and a count. */
static void pg_new_name(char *buf, size_t size)
{
	static unsigned long n;
	snprintf(buf, size, "saga_test_%ld_%lu", (long)getpid(), ++n);
}

static void pg_store_of(char *buf, size_t size, const char *db)
{
	ck_assert_uint_gt(size, 11);
	memcpy(buf, "postgresql:", 12);
	pg_conninfo(buf + 11, size - 11, db);
}

/* Creates a database of a new name, a copy of `template`, and writes its
 * store name to buf. From PostgreSQL 15 by copying files (about 3 times
 * faster here than the default WAL_LOG strategy, which writes the copy to
 * the WAL: a test server runs with fsync off and never needs it). */
static void pg_create(char *buf, size_t size, const char *template)
{
	const char *server = getenv("SAGA_TEST_PG");
	ck_assert_msg(server && *server, "SAGA_TEST_PG is not set (run through tests/pg-run.sh)");
	char db[64], sql[200];
	pg_new_name(db, sizeof(db));
	PGconn *c = PQconnectdb(server);
	ck_assert_msg(c && PQstatus(c) == CONNECTION_OK, "connect %s: %s", server,
	              c ? PQerrorMessage(c) : "out of memory");
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s TEMPLATE \"%s\"%s", db, template,
	         PQserverVersion(c) >= 150000 ? " STRATEGY FILE_COPY" : "");
	PQfinish(c);
	pg_admin(sql);
	pg_store_of(buf, size, db);
}

void pg_db_fresh(char *buf, size_t size)
{
	pg_create(buf, size, "template1");
}

void pg_db_drop(const char *store)
{
	char db[64], sql[160];
	pg_dbname(db, sizeof(db), store);
	snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS \"%s\" WITH (FORCE)", db);
	pg_admin(sql);
}

void test_store_copy(char *to, size_t size, const char *from, const char *dir, const char *file)
{
	if (!test_store_is_pg()) {
		(void)from;
		ck_assert_int_lt(snprintf(to, size, "%s/%s", dir, file), (int)size);
		return;
	}
	char src[64];
	pg_dbname(src, sizeof(src), from);
	pg_create(to, size, src);
}

#else

void test_store_exec(const char *name, const char *sql)
{
	ck_assert_msg(!is_pg_name(name), "libsaga was built without PostgreSQL");
	sqlite_sql(name, sql, NULL);
}

int64_t test_store_int(const char *name, const char *sql)
{
	int64_t v = 0;
	ck_assert_msg(!is_pg_name(name), "libsaga was built without PostgreSQL");
	sqlite_sql(name, sql, &v);
	return v;
}

void pg_conninfo(char *buf, size_t size, const char *db)
{
	(void)buf;
	(void)size;
	(void)db;
	ck_abort_msg("libsaga was built without PostgreSQL");
}

void pg_db_fresh(char *buf, size_t size)
{
	pg_conninfo(buf, size, NULL);
}

void pg_db_drop(const char *store)
{
	(void)store;
	ck_abort_msg("libsaga was built without PostgreSQL");
}

void test_store_copy(char *to, size_t size, const char *from, const char *dir, const char *file)
{
	(void)from;
	ck_assert_int_lt(snprintf(to, size, "%s/%s", dir, file), (int)size);
}

#endif

void test_store_owners_dead(const char *name)
{
	if (is_pg_name(name))
		test_store_exec(name, "UPDATE owners SET lease_until = 0 WHERE state = 0");
}

void test_store_drop(const char *name)
{
	if (is_pg_name(name))
		pg_db_drop(name);
}

int run_suite(Suite *s)
{
	/* On PostgreSQL only through tests/pg-run.sh, and only when built
	 * with it; elsewhere a skip, never a pass. */
	if (test_store_is_pg()) {
#ifndef SAGA_HAVE_POSTGRESQL
		printf("libsaga was built without PostgreSQL: skipped\n");
		srunner_free(srunner_create(s));
		return 77;
#else
		const char *server = getenv("SAGA_TEST_PG");
		if (!server || !*server) {
			printf("SAGA_TEST_STORE=postgresql without SAGA_TEST_PG (run through "
			       "tests/pg-run.sh): skipped\n");
			srunner_free(srunner_create(s));
			return 77;
		}
#endif
	}
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
