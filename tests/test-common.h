/* Shared helpers for the Check suites. SPDX-License-Identifier: MIT */
#ifndef SAGA_TEST_COMMON_H
#define SAGA_TEST_COMMON_H

#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#include "saga.h"

/* A fake clock: both wall and monotonic time are `now`, moved by the test. */
typedef struct fake_clock {
	uint64_t wall;
	uint64_t mono;
} fake_clock;

/* A saga_clock reading from *fc. */
saga_clock fake_clock_make(fake_clock *fc);
void fake_clock_advance(fake_clock *fc, uint64_t ms);

/* A fresh temporary directory (mkdtemp) whose path is written to buf;
 * removed with everything in it by tmpdir_remove. */
void tmpdir_make(char *buf, size_t size);
void tmpdir_remove(const char *path);

/* A crash point after a commit: kill_at_event is a listener (listeners run
 * after the event's commit) that raises SIGKILL at the n-th event it sees
 * once kill_at_event_arm(n) was called; n = 0: never. */
void kill_at_event_arm(long n);
void kill_at_event(const saga_event *ev, void *user);

/* The store an engine test runs on, named in buf: with SAGA_TEST_STORE
 * unset (or "sqlite"), the SQLite file `file` in `dir`; with
 * SAGA_TEST_STORE=postgresql, a fresh database on the server of SAGA_TEST_PG
 * (tests/pg-run.sh), named "postgresql:host=... dbname=...". Every engine
 * test takes its store's name from here. test_store_drop removes a database
 * made so (a SQLite file goes with its directory); test_store_copy makes
 * `to` a fresh store holding what `from` holds, from a store no process has
 * open. Fail the test on error. */
void test_store_name(char *buf, size_t size, const char *dir, const char *file);
void test_store_drop(const char *name);
void test_store_copy(char *to, size_t size, const char *from, const char *dir, const char *file);

/* Runs SQL on a store named as test_store_name names it (another connection
 * than the engine's): test_store_exec runs statements, test_store_int gives
 * the first column of the first row of a query as an integer. Fail the test
 * on error. */
void test_store_exec(const char *name, const char *sql);
int64_t test_store_int(const char *name, const char *sql);

/* Call once every process the test killed on the store is dead, and before
 * any process opens it again: from then on those owners are known dead. On
 * SQLite they are already (the kernel dropped their locks); on PostgreSQL a
 * dead owner is known only once its lease lapses, which this makes happen
 * now (every live owner's lease ends in the past), instead of the test
 * sleeping through a lease. How long a takeover takes is the multi-host
 * test's to check, not a crash test's. */
void test_store_owners_dead(const char *name);

/* True when the engine tests run on PostgreSQL (SAGA_TEST_STORE). */
bool test_store_is_pg(void);

/* For a test that cannot run on PostgreSQL: true (after saying why on
 * stderr) when the tests run there; the test then returns at once. */
bool sqlite_only(const char *why);

/* PostgreSQL databases for tests, on the server of SAGA_TEST_PG: pg_db_fresh
 * creates one with a name unique on the server and writes its store name
 * ("postgresql:" and a libpq conninfo) to buf; pg_db_drop drops the
 * database of such a name, whoever is still connected. Both fail the test
 * on error; neither is available without PostgreSQL (the test exits 77). */
void pg_db_fresh(char *buf, size_t size);
void pg_db_drop(const char *store);

/* The dbname of a store name "postgresql:CONNINFO", in buf. */
void pg_dbname(char *buf, size_t size, const char *store);

/* The conninfo of SAGA_TEST_PG with its dbname replaced by `db`, in buf. */
void pg_conninfo(char *buf, size_t size, const char *db);

/* Runs one suite and returns the process exit status for meson. */
int run_suite(Suite *s);

#endif
