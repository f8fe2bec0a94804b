/* Bad input on PostgreSQL, against a real server (tests/pg-run.sh): an
 * unreachable server, a wrong password, a database that is not a libsaga
 * store, a store of a newer schema, an admin handle on an empty database.
 * Each is refused by saga_engine_open (saga_admin_open for the last) with
 * a clear message and its documented code, and writes nothing: the
 * database's dump (pg_dump, schema and rows) and the list of databases are
 * the same before and after. Each refusal is shown next to the open that
 * succeeds once the fault is taken away, so a test cannot pass because
 * nothing opens at all. SPDX-License-Identifier: MIT */
#include "test-common.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char store[512];

static void setup(void)
{
	pg_db_fresh(store, sizeof(store));
}

static void teardown(void)
{
	pg_db_drop(store);
}

/* Runs `sql` on the database of store, as the server's superuser. */
static void sql_on(const char *name, const char *sql)
{
	test_store_exec(name, sql);
}

/* The output of a shell command, in a string the caller frees. */
static char *capture(const char *cmd)
{
	FILE *p = popen(cmd, "r");
	ck_assert_msg(p, "popen %s", cmd);
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap);
	ck_assert_ptr_nonnull(buf);
	size_t r;
	while ((r = fread(buf + n, 1, cap - n - 1, p)) > 0) {
		n += r;
		if (cap - n - 1 == 0) {
			cap *= 2;
			buf = realloc(buf, cap);
			ck_assert_ptr_nonnull(buf);
		}
	}
	buf[n] = '\0';
	ck_assert_msg(pclose(p) == 0, "%s failed", cmd);
	return buf;
}

/* Everything a database holds (pg_dump: schema and rows), in a string the
 * caller frees. Lines that begin with a backslash go: newer pg_dumps write
 * \restrict with a random key each run. */
static char *dump(const char *name)
{
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), "'%s/pg_dump' --no-owner '%s' 2>&1", getenv("SAGA_TEST_PGBIN"),
	         name + strlen("postgresql:"));
	char *text = capture(cmd);
	char *out = text;
	for (const char *line = text; *line;) {
		const char *end = strchr(line, '\n');
		size_t len = end ? (size_t)(end - line) + 1 : strlen(line);
		if (line[0] != '\\') {
			memmove(out, line, len);
			out += len;
		}
		line += len;
	}
	*out = '\0';
	return text;
}

/* The server's databases, one per line. */
static char *databases(void)
{
	char cmd[1024];
	snprintf(cmd, sizeof(cmd),
	         "'%s/psql' -Atc 'SELECT datname FROM pg_database ORDER BY 1' '%s' 2>&1",
	         getenv("SAGA_TEST_PGBIN"), getenv("SAGA_TEST_PG"));
	return capture(cmd);
}

static saga_step_result step_ok(saga_step_ctx *ctx, void *user)
{
	(void)ctx;
	(void)user;
	return SAGA_STEP_OK;
}

/* saga_engine_open on `name`; the code, and the message in err. */
static int try_open(const char *name, char *err, size_t size)
{
	saga_options o = SAGA_OPTIONS_INIT;
	o.path = name;
	o.busy_timeout_ms = 2000;
	saga_engine *e = NULL;
	err[0] = '\0';
	int rc = saga_engine_open(&e, &o, err, size);
	if (rc == SAGA_OK) {
		ck_assert_ptr_nonnull(e);
		saga_engine_close(e);
	} else {
		ck_assert_ptr_null(e);
	}
	return rc;
}

/* Opening `name` fails with `code` and a message holding `words`, and
 * changes nothing in the database of `watched` nor the list of databases. */
static void refused(const char *name, const char *watched, int code, const char *words)
{
	char *before = dump(watched), *dbs = databases();
	char err[512];
	int rc = try_open(name, err, sizeof(err));
	ck_assert_msg(rc == code, "open %s: %s (%s), wanted %s", name, saga_strerror(rc), err,
	              saga_strerror(code));
	ck_assert_msg(strstr(err, words), "message \"%s\" lacks \"%s\"", err, words);
	char *after = dump(watched), *dbs_after = databases();
	ck_assert_msg(strcmp(before, after) == 0, "open wrote to the database:\n%s\n---\n%s",
	              before, after);
	ck_assert_str_eq(dbs, dbs_after);
	free(before);
	free(after);
	free(dbs);
	free(dbs_after);
}

static void opens(const char *name)
{
	char err[512];
	int rc = try_open(name, err, sizeof(err));
	ck_assert_msg(rc == SAGA_OK, "open %s: %s (%s)", name, saga_strerror(rc), err);
}

/* A socket directory with no server in it: SAGA_ESTORE with libpq's
 * reason, in both forms of a name, and nothing appears in the directory.
 * The same names pointed at the running server open. */
START_TEST(unreachable_server)
{
	char dir[256], name[600], db[64];
	tmpdir_make(dir, sizeof(dir));
	pg_dbname(db, sizeof(db), store);
	const char *host = getenv("SAGA_TEST_PGHOST");
	ck_assert_ptr_nonnull(host);
	/* the key=value form, and a URI (its host a query parameter) */
	const char *forms[] = { "postgresql:host=%s user=postgres dbname=%s",
		                "postgresql:///%2$s?host=%1$s&user=postgres" };
	for (int i = 0; i < 2; i++) {
		char err[512];
		snprintf(name, sizeof(name), forms[i], dir, db);
		int rc = try_open(name, err, sizeof(err));
		ck_assert_msg(rc == SAGA_ESTORE, "open %s: %s (%s)", name, saga_strerror(rc), err);
		ck_assert_msg(strstr(err, "connect") || strstr(err, "server"), "message \"%s\"",
		              err);
		char cmd[400];
		snprintf(cmd, sizeof(cmd), "ls -A '%s'", dir);
		char *ls = capture(cmd);
		ck_assert_str_eq(ls, "");
		free(ls);
		snprintf(name, sizeof(name), forms[i], host, db);
		opens(name);
	}
	tmpdir_remove(dir);
}
END_TEST

/* A role that logs in with a password (scram-sha-256 in pg_hba.conf, made
 * by pg-run.sh): the wrong one, or none, gives SAGA_ESTORE with the
 * server's "password authentication failed" or libpq's "no password
 * supplied"; the right one opens. */
START_TEST(wrong_password)
{
	const char *role = getenv("SAGA_TEST_PGPW_ROLE");
	ck_assert_ptr_nonnull(role);
	char sql[256], db[600], name[1200];
	/* The role owns a database of its own, so it may create the store's
	 * tables there (PostgreSQL 15 grants no CREATE on public otherwise). */
	snprintf(sql, sizeof(sql),
	         "DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '%s') THEN "
	         "CREATE ROLE %s LOGIN PASSWORD 'right-pw'; END IF; END$$",
	         role, role);
	sql_on(store, sql);
	char dbname[64];
	snprintf(dbname, sizeof(dbname), "saga_pw_%ld", (long)getpid());
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s OWNER %s", dbname, role);
	sql_on(store, sql);
	pg_conninfo(db, sizeof(db), dbname);
	char owned[700];
	snprintf(owned, sizeof(owned), "postgresql:%s", db);

	snprintf(name, sizeof(name), "postgresql:%s user=%s password=wrong-pw", db, role);
	refused(name, owned, SAGA_ESTORE, "password authentication failed");
	snprintf(name, sizeof(name), "postgresql:%s user=%s", db, role);
	refused(name, owned, SAGA_ESTORE, "password");

	snprintf(name, sizeof(name), "postgresql:%s user=%s password=right-pw", db, role);
	opens(name);
	pg_db_drop(owned);
}
END_TEST

/* A database with tables of its own and no libsaga store in it:
 * SAGA_ECORRUPT "not a libsaga store", its tables and rows untouched. */
/* A store whose meta table says a newer schema: SAGA_EVERSION, nothing
 * written; back at this version it opens and its instance is there. A
 * meta table of another application: SAGA_ECORRUPT. */
START_TEST(newer_schema)
{
	saga_options o = SAGA_OPTIONS_INIT;
	o.path = store;
	saga_engine *e = NULL;
	char err[512];
	ck_assert_msg(saga_engine_open(&e, &o, err, sizeof(err)) == SAGA_OK, "%s", err);
	saga_definition *d = NULL;
	ck_assert_int_eq(saga_definition_new(&d, "d", 1), SAGA_OK);
	saga_step_spec st = { "s", SAGA_STEP_RETRIABLE, step_ok, NULL, NULL };
	ck_assert_int_eq(saga_definition_add_step(d, &st), SAGA_OK);
	ck_assert_int_eq(saga_engine_register(e, d), SAGA_OK);
	saga_definition_free(d);
	int64_t id = 0;
	ck_assert_int_eq(saga_start(e, &id, NULL, "d", "key-1", NULL), SAGA_OK);
	saga_engine_close(e);
	int64_t version = test_store_int(store, "SELECT schema_version FROM meta");
	ck_assert_int_ge(version, 4);

	sql_on(store, "UPDATE meta SET schema_version = schema_version + 1");
	refused(store, store, SAGA_EVERSION, "newer");
	sql_on(store, "UPDATE meta SET schema_version = schema_version - 1");
	e = NULL;
	ck_assert_msg(saga_engine_open(&e, &o, err, sizeof(err)) == SAGA_OK, "%s", err);
	int64_t found = 0;
	ck_assert_int_eq(saga_find(e, &found, "key-1"), SAGA_OK);
	ck_assert_int_eq(found, id);
	saga_engine_close(e);

	sql_on(store, "UPDATE meta SET application = 'other'");
	refused(store, store, SAGA_ECORRUPT, "not a libsaga store");
}
END_TEST

START_TEST(not_a_store)
{
	sql_on(store, "CREATE TABLE orders (id bigint PRIMARY KEY, sku text NOT NULL);"
	              "INSERT INTO orders VALUES (1, 'SKU-A'), (2, 'SKU-B')");
	refused(store, store, SAGA_ECORRUPT, "not a libsaga store");
	/* A table of the store's own name that is not the store's. */
	sql_on(store, "CREATE TABLE instances (x text); INSERT INTO instances VALUES ('mine')");
	refused(store, store, SAGA_ECORRUPT, "not a libsaga store");
	ck_assert_int_eq(test_store_int(store, "SELECT count(*) FROM orders"), 2);
	/* Without them, the database becomes a store. */
	sql_on(store, "DROP TABLE orders; DROP TABLE instances");
	opens(store);
	opens(store);
}
END_TEST

/* The admin API opens stores, never makes one: on an empty database it
 * gives SAGA_ENOTFOUND and writes nothing (an operator's typo in a
 * database name must not leave a store's tables behind); once an engine
 * has made the store, it opens. */
START_TEST(admin_open_never_makes_a_store)
{
	char *before = dump(store);
	saga_admin *a = NULL;
	char err[512] = "";
	int rc = saga_admin_open(&a, store, 0, err, sizeof(err));
	ck_assert_msg(rc == SAGA_ENOTFOUND, "admin open: %s (%s)", saga_strerror(rc), err);
	ck_assert_ptr_null(a);
	ck_assert_msg(strstr(err, "no libsaga store"), "message \"%s\"", err);
	char *after = dump(store);
	ck_assert_msg(strcmp(before, after) == 0, "admin open wrote to the database:\n%s\n---\n%s",
	              before, after);
	free(before);
	free(after);
	opens(store);
	ck_assert_msg(saga_admin_open(&a, store, 0, err, sizeof(err)) == SAGA_OK, "admin open: %s",
	              err);
	saga_admin_close(a);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("pg-input");
	TCase *tc = tcase_create("pg-input");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, unreachable_server);
	tcase_add_test(tc, wrong_password);
	tcase_add_test(tc, not_a_store);
	tcase_add_test(tc, newer_schema);
	tcase_add_test(tc, admin_open_never_makes_a_store);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
