/* I/O faults and damaged stores (issue 5, "I/O faults").
 *
 * The fault loops. The shim in faultvfs.c is SQLite's default VFS in this
 * process, so the engine's store goes through it. For one kind of fault and
 * N = 1, 2, ... a fresh store is driven through a complete scenario with the
 * Nth operation of that kind failing (counted from before saga_engine_open):
 *   open, register, start "A" (runs to COMPLETED), start "B" (its pivot
 *   fails: compensated), three rounds of run_until_idle + 100 ms on the fake
 *   clock (the retriable step asks for one retry), get, get_context,
 *   history, counts, close.
 * Every call must return 0 or a libsaga error code with a message, never
 * crash nor hang (Check's timeout). Then the fault is lifted and the store is
 * reopened: it must open, the same starts (idempotent by business key) and
 * run_until_idle must finish both instances, SQLite's integrity_check must
 * pass, and the contract is checked:
 *  - exactly one instance per business key; A COMPLETED, B COMPENSATED;
 *  - the history holds exactly one final outcome (OK or FAIL) for every
 *    step and phase that was started, and none for steps never started;
 *    compensations in reverse order;
 *  - write-ahead: at every invocation, a separate read-only connection (on
 *    the plain "unix" VFS, so it is never faulted) sees the attempt's
 *    ATTEMPT_START row and, for an action after the first, the previous
 *    step's OK outcome and its output in the stored context;
 *  - at-least-once: a participant may be invoked again after a fault, always
 *    with the same idempotency key <uid>/<step>/<phase>;
 *  - nothing reported is lost: every event a listener received (listeners
 *    run after the commit) is in the history after reopening, and an id
 *    returned by a successful saga_start is the instance found by its key.
 * The loop ends with the first N that the scenario does not reach: that run
 * had no fault and is checked the same way. An N that breaks an expectation
 * does not stop the loop: the failures are grouped by kind and reported
 * together at the end, with their N. The kinds of fault: a failed write, a
 * failed sync (durability NORMAL, where WAL syncs only at checkpoints, and
 * FULL, which syncs every commit), a failed read, a full disk (SQLITE_FULL
 * on that write and every one after it), a read error that persists, and
 * the two read kinds again with a cold page cache (another connection
 * touches the store at every invocation, so the engine reads its pages
 * again each round; a warm cache reads only while opening).
 * A second loop ("same engine") lifts a one-shot fault before closing and
 * requires the same engine to finish both sagas, without the help of a
 * second saga_start (which would queue a forgotten instance again).
 *
 * Damaged stores: a store truncated to half its size (and other cuts), a
 * page of rows in the middle of the file overwritten with garbage, then
 * garbage in each page in turn, foreign SQLite files, and instance rows
 * changed behind the engine's back each give an error code with a message
 * (SAGA_ECORRUPT where the damage is detectable), never a crash (run this
 * suite under ASan: out-of-bounds reads show there); one bad instance does
 * not stop a healthy one. A store of schema version 1 is migrated.
 *
 * The stores live in TMPDIR, /dev/shm when TMPDIR is not set (see main).
 * Set SAGA_FAULT_N=<n> to run one N only (reproduce a failure).
 * SPDX-License-Identifier: MIT */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "faultvfs.h"
#include "scenario.h"

#define MAX_N 20000 /* a safety stop for the fault loops */

/* ------------------------------------------------------------------------ */
/* The participant's extra: a cold page cache                               */

static bool cold_cache; /* the participant writes the store from another connection */

/* Another connection rewrites the schema cookie with its own value: nothing
 * changes, but the engine's connection must drop its page cache and read the
 * pages again (through the shim) at its next transaction. */
static void chill_cache(void)
{
	sqlite3 *db = NULL;
	if (sqlite3_open_v2(scn.path, &db, SQLITE_OPEN_READWRITE, "unix") != SQLITE_OK) {
		violation("cache: cannot open the store");
		sqlite3_close(db);
		return;
	}
	sqlite3_busy_timeout(db, 5000);
	int64_t v = query_int(db, "PRAGMA user_version", 0, 0, 0, 0, NULL);
	char sql[64];
	snprintf(sql, sizeof(sql), "PRAGMA user_version = %lld", (long long)v);
	if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
		violation("cache: %s", sqlite3_errmsg(db));
	sqlite3_close(db);
}

static void on_invoke(void)
{
	if (cold_cache)
		chill_cache();
}

/* ------------------------------------------------------------------------ */
/* Fixture                                                                  */

static void setup(void)
{
	scenario_setup();
	cold_cache = false;
	ck_assert_int_eq(faultvfs_register(1), SQLITE_OK);
	ck_assert_str_eq(sqlite3_vfs_find(NULL)->zName, FAULTVFS_NAME);
	/* The checker reads through the plain unix VFS, never faulted. */
	scn.cfg.checker_vfs = "unix";
	scn.cfg.on_invoke = on_invoke;
}

static void teardown(void)
{
	expect_env = NULL;
	faultvfs_disarm();
	faultvfs_restore_default();
	scenario_teardown();
}

static saga_options options(saga_durability dur)
{
	saga_options o = SAGA_OPTIONS_INIT;
	o.path = scn.path;
	o.durability = dur;
	o.clock = fake_clock_make(&scn.clock);
	o.seed = 7;
	return o;
}

/* ------------------------------------------------------------------------ */
/* The fault loops                                                          */

typedef struct fault_kind {
	const char *name;
	faultvfs_op op;
	int code;
	bool sticky;
	saga_durability durability;
	bool cold_cache;
} fault_kind;

static const fault_kind kinds[] = {
	{ "write", FAULTVFS_WRITE, SQLITE_IOERR_WRITE, false, SAGA_DURABILITY_NORMAL, false },
	{ "sync", FAULTVFS_SYNC, SQLITE_IOERR_FSYNC, false, SAGA_DURABILITY_NORMAL, false },
	{ "sync (durability FULL)", FAULTVFS_SYNC, SQLITE_IOERR_FSYNC, false, SAGA_DURABILITY_FULL,
	  false },
	{ "read", FAULTVFS_READ, SQLITE_IOERR_READ, false, SAGA_DURABILITY_NORMAL, false },
	{ "full disk (SQLITE_FULL from the Nth write on)", FAULTVFS_WRITE, SQLITE_FULL, true,
	  SAGA_DURABILITY_NORMAL, false },
	{ "read error from the Nth read on", FAULTVFS_READ, SQLITE_IOERR_READ, true,
	  SAGA_DURABILITY_NORMAL, false },
	/* A warm page cache reads only while opening; these make the engine
	 * read its pages again at every round. */
	{ "read, cold cache", FAULTVFS_READ, SQLITE_IOERR_READ, false, SAGA_DURABILITY_NORMAL,
	  true },
	{ "read error from the Nth read on, cold cache", FAULTVFS_READ, SQLITE_IOERR_READ, true,
	  SAGA_DURABILITY_NORMAL, true },
};
#define NKINDS ((int)(sizeof(kinds) / sizeof(kinds[0])))

/* SQLite's own check of the file, through the plain unix VFS. */
static bool store_intact(char *msg, size_t size)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	bool ok = false;
	snprintf(msg, size, "cannot open");
	if (sqlite3_open_v2(scn.path, &db, SQLITE_OPEN_READONLY, "unix") == SQLITE_OK &&
	    sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW) {
		const char *r = (const char *)sqlite3_column_text(st, 0);
		snprintf(msg, size, "%s", r ? r : "?");
		ok = r && strcmp(r, "ok") == 0;
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return ok;
}

static void arm_kind(long n, const void *arg)
{
	const fault_kind *k = arg;
	faultvfs_arm(k->op, n, k->code, k->sticky);
}

/* One N: the scenario under the fault; returns the faults injected. With
 * same_engine, the fault is lifted before close and the same engine must
 * finish the sagas. */
static long run_one(const fault_kind *k, long n, bool same_engine, loop_stats *st)
{
	scenario_reset();
	cold_cache = k->cold_cache;
	saga_options o = options(k->durability);
	int64_t ids[NWHO] = { 0, 0 };

	scenario_drive(&o, n, same_engine, arm_kind, k, faultvfs_disarm, ids, st);
	long injected = faultvfs_injected();

	/* The fault is lifted: the store opens intact and recovery finishes. */
	scenario_recover(&o, k->name, k->name, n, ids, st);
	char why[256];
	EXPECT(store_intact(why, sizeof(why)), "%s N=%ld: integrity_check: %s", k->name, n, why);
	return injected;
}

/* Adds what the last N injected (the shim keeps it until the next arming). */
static void account(loop_stats *st, const fault_kind *k)
{
	st->n_values++;
	st->injected += faultvfs_injected();
	st->ops = faultvfs_calls(k->op);
}

static void fault_loop(const fault_kind *k, bool same_engine)
{
	static loop_stats st;
	static long n;
	memset(&st, 0, sizeof(st));
	scenario_loop_begin();
	static double t0;
	static long only;
	t0 = now_s();
	only = env_long("SAGA_FAULT_N");
	jmp_buf env;
	for (n = only ? only : 1;; n++) {
		ck_assert_msg(n < MAX_N, "%s: more than %d operations?", k->name, MAX_N);
		expect_env = &env;
		if (setjmp(env)) {
			/* This N broke the contract: note it, clean up, go on. */
			scenario_abandon(faultvfs_disarm);
			scenario_note_failure(n, expect_msg);
			account(&st, k);
			/* no fault reached: that was the fault-free run */
			if (only || scenario_nfailed() >= 200 || faultvfs_injected() == 0)
				break;
			continue;
		}
		long inj = run_one(k, n, same_engine, &st);
		account(&st, k);
		if (inj == 0 || only)
			break;
	}
	expect_env = NULL;
	char codes[512];
	scenario_codes(codes, sizeof(codes));
	printf("iofault %-46s%s N=%ld..%ld: %ld faults injected, %ld %s ops in a fault-free run, "
	       "%ld failed calls (%ld opens), %ld re-invocations, %ld N broke the contract, "
	       "%.2f s; codes:%s\n",
	       k->name, same_engine ? " [same engine]" : "", only ? only : 1, n, st.injected,
	       st.ops, faultvfs_op_name(k->op), st.calls_failed, st.open_failed, st.reinvocations,
	       scenario_nfailed(), now_s() - t0, codes);
	char label[128];
	snprintf(label, sizeof(label), "iofault %s%s", k->name,
	         same_engine ? " [same engine]" : "");
	scenario_report_failures(label);
	if (!only)
		ck_assert_int_gt(st.injected, 0);
}

START_TEST(io_fault_loop)
{
	fault_loop(&kinds[_i], false);
}
END_TEST

/* One-shot faults only: a persistent fault cannot be expected to heal
 * without the operator. */
START_TEST(io_fault_same_engine)
{
	static const int one_shot[] = { 0, 2, 3, 6 };
	fault_loop(&kinds[one_shot[_i]], true);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Damaged stores                                                           */

/* A store holding `n` finished instances with some bulk, and one left
 * RUNNING at its first step (id returned in *running, business key "R"). */
static void make_store(const char *path, int n, int64_t *running)
{
	saga_options o = options(SAGA_DURABILITY_NORMAL);
	o.path = path;
	saga_engine *e;
	char err[256];
	ck_assert_msg(saga_engine_open(&e, &o, err, sizeof(err)) == SAGA_OK, "open: %s", err);
	ck_assert_int_eq(saga_engine_register(e, scn.def), SAGA_OK);
	char pad[301];
	memset(pad, 'x', 300);
	pad[300] = '\0';
	for (int i = 0; i < n; i++) {
		cJSON *in = input_of(i % 2);
		cJSON_AddStringToObject(in, "pad", pad);
		char bkey[32];
		snprintf(bkey, sizeof(bkey), "order-%d", i);
		int64_t id;
		ck_assert_int_eq(saga_start(e, &id, NULL, DEF_NAME, bkey, in), SAGA_OK);
		cJSON_Delete(in);
	}
	for (int r = 0; r < 4; r++) {
		ck_assert_int_eq(saga_run_until_idle(e), SAGA_OK);
		fake_clock_advance(&scn.clock, 100);
	}
	if (running) {
		cJSON *in = input_of(0);
		ck_assert_int_eq(saga_start(e, running, NULL, DEF_NAME, "R", in), SAGA_OK);
		cJSON_Delete(in);
	}
	saga_engine_close(e);
	scn.ncalls = 0;
	scn.nevents = 0;
}

static off_t file_size(const char *path)
{
	struct stat sb;
	ck_assert_int_eq(stat(path, &sb), 0);
	return sb.st_size;
}

static void copy_file(const char *from, const char *to)
{
	FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
	ck_assert_ptr_nonnull(in);
	ck_assert_ptr_nonnull(out);
	char buf[65536];
	size_t got;
	while ((got = fread(buf, 1, sizeof(buf), in)) > 0)
		ck_assert_uint_eq(fwrite(buf, 1, got, out), got);
	fclose(in);
	ck_assert_int_eq(fclose(out), 0);
}

static void scribble(const char *path, off_t offset, size_t len, uint64_t seed)
{
	int fd = open(path, O_WRONLY);
	ck_assert_int_ge(fd, 0);
	unsigned char buf[4096];
	ck_assert_uint_le(len, sizeof(buf));
	for (size_t i = 0; i < len; i++)
		buf[i] = (unsigned char)(saga_random_next(&seed) >> 56);
	ck_assert_int_eq(pwrite(fd, buf, len, offset), (ssize_t)len);
	close(fd);
}

/* What a damaged store did: the worst outcome of each API call. */
typedef struct damage_result {
	int open_rc;
	int first_error;   /* the first error code seen (0: none) */
	const char *where; /* which call gave it */
	char msg[256];
	int ncalls, nerrors;
} damage_result;

static int list_fn(const saga_instance_info *info, void *user)
{
	(void)info;
	(*(int *)user)++;
	return 0;
}

static int nop_event(const saga_event *ev, void *user)
{
	(void)user;
	/* A corrupted row may name any step: only the name may be trusted. */
	if (ev->step_name)
		ck_assert_uint_gt(strlen(ev->step_name), 0);
	return 0;
}

static void note_damage(damage_result *r, saga_engine *e, const char *where, int rc)
{
	ck_assert_msg(rc <= 0 && rc >= SAGA_ECLOSED, "%s: unknown return code %d", where, rc);
	r->ncalls++;
	if (rc == 0)
		return;
	r->nerrors++;
	const char *m = saga_engine_errmsg(e);
	ck_assert_msg(m && *m && strcmp(m, "no error") != 0, "%s: %s without a message", where,
	              saga_strerror(rc));
	if (!r->first_error) {
		r->first_error = rc;
		r->where = where;
		snprintf(r->msg, sizeof(r->msg), "%s", m);
	}
}

/* Runs every API call on a damaged store; none may crash. */
static damage_result use_store(const char *path)
{
	damage_result r;
	memset(&r, 0, sizeof(r));
	saga_options o = options(SAGA_DURABILITY_NORMAL);
	o.path = path;
	saga_engine *e = NULL;
	char err[256] = "";
	r.open_rc = saga_engine_open(&e, &o, err, sizeof(err));
	ck_assert_msg(r.open_rc <= 0 && r.open_rc >= SAGA_ECLOSED, "open: code %d", r.open_rc);
	if (r.open_rc) {
		ck_assert_ptr_null(e);
		ck_assert_msg(err[0], "open failed (%s) without a message",
		              saga_strerror(r.open_rc));
		r.first_error = r.open_rc;
		r.where = "open";
		snprintf(r.msg, sizeof(r.msg), "%s", err);
		return r;
	}
	note_damage(&r, e, "register", saga_engine_register(e, scn.def));
	int n = 0;
	note_damage(&r, e, "list", saga_list(e, -1, list_fn, &n));
	int64_t counts[SAGA_STATE_COUNT];
	note_damage(&r, e, "counts", saga_counts(e, counts));
	for (int64_t id = 1; id <= 45; id++) {
		saga_instance_info info;
		int rc = saga_get(e, &info, id);
		note_damage(&r, e, "get", rc == SAGA_ENOTFOUND ? 0 : rc);
		cJSON *ctx = NULL;
		rc = saga_get_context(e, &ctx, id);
		cJSON_Delete(ctx);
		note_damage(&r, e, "get_context", rc == SAGA_ENOTFOUND ? 0 : rc);
		rc = saga_history(e, id, nop_event, NULL);
		note_damage(&r, e, "history", rc == SAGA_ENOTFOUND ? 0 : rc);
	}
	int64_t id = 0;
	int rc = saga_find(e, &id, "order-3");
	note_damage(&r, e, "find", rc == SAGA_ENOTFOUND ? 0 : rc);
	for (int round = 0; round < 3; round++) {
		note_damage(&r, e, "run", saga_run_until_idle(e));
		fake_clock_advance(&scn.clock, 100);
	}
	cJSON *in = input_of(0);
	note_damage(&r, e, "start", saga_start(e, &id, NULL, DEF_NAME, "new-after-damage", in));
	cJSON_Delete(in);
	note_damage(&r, e, "run", saga_run_until_idle(e));
	saga_engine_close(e);
	return r;
}

static void remove_side_files(const char *path)
{
	char p[400];
	snprintf(p, sizeof(p), "%s-wal", path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", path);
	unlink(p);
}

START_TEST(truncated_store)
{
	char clean[300];
	snprintf(clean, sizeof(clean), "%s/clean.db", scn.dir);
	make_store(clean, 40, NULL);
	off_t size = file_size(clean);
	ck_assert_int_ge(size, 8 * 4096);
	/* Half, and a few other cuts: mid-page and a whole number of pages. */
	const off_t cuts[] = { size / 2, size / 2 + 1000, (size / 4096 / 2) * 4096, 4096, 100 };
	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		copy_file(clean, scn.path);
		remove_side_files(scn.path);
		ck_assert_int_eq(truncate(scn.path, cuts[i]), 0);
		damage_result r = use_store(scn.path);
		printf("iofault truncated to %lld of %lld bytes: %s from %s: %s\n",
		       (long long)cuts[i], (long long)size,
		       r.first_error ? saga_strerror(r.first_error) : "no error",
		       r.where ? r.where : "-", r.msg);
		ck_assert_msg(
		        r.first_error == SAGA_ECORRUPT,
		        "a store truncated to %lld bytes: %s from %s (%s), want SAGA_ECORRUPT",
		        (long long)cuts[i], saga_strerror(r.first_error), r.where ? r.where : "-",
		        r.msg);
	}
}
END_TEST

/* The 0-based index of the first table b-tree leaf page (type byte 0x0d)
 * from the middle of the file on. */
static long middle_table_page(const char *path, long pages)
{
	FILE *f = fopen(path, "rb");
	ck_assert_ptr_nonnull(f);
	for (long p = pages / 2; p < pages; p++) {
		ck_assert_int_eq(fseeko(f, (off_t)p * 4096, SEEK_SET), 0);
		int type = fgetc(f);
		if (type == 0x0d) {
			fclose(f);
			return p;
		}
	}
	fclose(f);
	ck_abort_msg("no table page in the second half of the store");
	return 0;
}

START_TEST(corrupted_pages)
{
	char clean[300];
	snprintf(clean, sizeof(clean), "%s/clean.db", scn.dir);
	make_store(clean, 40, NULL);
	off_t size = file_size(clean);
	long pages = (long)(size / 4096);
	ck_assert_int_ge(pages, 8);
	long detected = 0, undetected = 0, other = 0;
	/* Garbage over a page of rows in the middle of the file (the issue's
	 * case: must be detected), then 256 bytes in the middle of each page in turn
	 * and 12 bytes over each page's b-tree header (detected or not: garbage
	 * inside a text value cannot be, the file has no checksums; never a
	 * crash, and any error is SAGA_ECORRUPT or SAGA_ESTORE). */
	for (long p = -1; p < 2 * pages; p++) {
		copy_file(clean, scn.path);
		remove_side_files(scn.path);
		off_t off;
		size_t len;
		if (p < 0) {
			/* the first table page from the middle of the file on: it
			 * holds instance or history rows, which the calls read */
			off = middle_table_page(clean, pages) * 4096;
			len = 4096;
		} else if (p < pages) {
			off = p * 4096 + 2048 - 128;
			len = 256;
		} else {
			/* the b-tree page header; page 1 has it after the file header */
			off = (p - pages) * 4096 + (p == pages ? 100 : 0);
			len = 12;
		}
		scribble(scn.path, off, len, (uint64_t)p + 99);
		damage_result r = use_store(scn.path);
		if (r.first_error == SAGA_ECORRUPT)
			detected++;
		else if (r.first_error == 0)
			undetected++;
		else
			other++;
		if (p < 0) {
			printf("iofault garbage at %lld..%lld of %lld bytes: %s from %s: %s\n",
			       (long long)off, (long long)(off + (off_t)len), (long long)size,
			       r.first_error ? saga_strerror(r.first_error) : "no error",
			       r.where ? r.where : "-", r.msg);
			ck_assert_msg(r.first_error == SAGA_ECORRUPT,
			              "garbage in the middle of the store: %s from %s (%s)",
			              saga_strerror(r.first_error), r.where ? r.where : "-", r.msg);
		}
		ck_assert_msg(r.first_error == 0 || r.first_error == SAGA_ECORRUPT ||
		                      r.first_error == SAGA_ESTORE,
		              "page %ld damaged: %s from %s (%s)", p, saga_strerror(r.first_error),
		              r.where ? r.where : "-", r.msg);
	}
	printf("iofault corrupted pages (%ld pages, %ld cases): %ld SAGA_ECORRUPT, %ld other "
	       "errors, %ld unnoticed (inside a text value or a page no call reads), no crash\n",
	       pages, 2 * pages + 1, detected, other, undetected);
	ck_assert_int_gt(detected, 0);
}
END_TEST

static void sql_file(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	unlink(path);
	remove_side_files(path);
	ck_assert_int_eq(
	        sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, "unix"),
	        SQLITE_OK);
	char *msg = NULL;
	ck_assert_msg(sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK, "%s: %s", sql, msg);
	sqlite3_close(db);
}

START_TEST(foreign_files)
{
	struct {
		const char *what;
		const char *sql; /* NULL: raw bytes below */
		int want;        /* expected code of open or the first failing call */
		int also;        /* another acceptable code (0: none) */
	} cases[] = {
		{ "another application's database (application_id set, no tables)",
		  "PRAGMA application_id = 1234", SAGA_ECORRUPT, 0 },
		{ "a database with data and no application id",
		  "CREATE TABLE orders(id INTEGER PRIMARY KEY, total REAL);"
		  "INSERT INTO orders VALUES (1, 12.5)",
		  SAGA_ECORRUPT, 0 },
		/* These two claim to be stores and are not: "not a libsaga
		 * store" or the SQL error that shows it are both clear. */
		{ "libsaga's application id and version but no tables",
		  "PRAGMA application_id = 1396787009; PRAGMA user_version = 1", SAGA_ESTORE,
		  SAGA_ECORRUPT },
		{ "libsaga's id and version, an 'instances' table of another shape",
		  "PRAGMA application_id = 1396787009; PRAGMA user_version = 1;"
		  "CREATE TABLE instances(id INTEGER PRIMARY KEY, name TEXT);"
		  "CREATE TABLE history(x); CREATE TABLE definitions(y)",
		  SAGA_ESTORE, SAGA_ECORRUPT },
		/* libsaga never leaves a store without its application id, nor
		 * an empty file: a new store is born whole, under another name. */
		{ "an empty SQLite database (schema version 0, no application id)",
		  "PRAGMA user_version = 0", SAGA_ECORRUPT, 0 },
		{ "a SQLite header followed by garbage", NULL, SAGA_ECORRUPT, 0 },
		{ "a zero-length file", NULL, SAGA_ECORRUPT, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (cases[i].sql) {
			sql_file(scn.path, cases[i].sql);
		} else {
			remove_store();
			FILE *f = fopen(scn.path, "wb");
			ck_assert_ptr_nonnull(f);
			if (strstr(cases[i].what, "garbage")) {
				fputs("SQLite format 3", f);
				fputc(0, f);
				uint64_t seed = 5;
				for (int b = 0; b < 3 * 4096; b++)
					fputc((int)(saga_random_next(&seed) >> 56), f);
			}
			fclose(f);
		}
		damage_result r = use_store(scn.path);
		printf("iofault foreign file, %s: %s from %s: %s\n", cases[i].what,
		       r.first_error ? saga_strerror(r.first_error) : "no error",
		       r.where ? r.where : "-", r.msg);
		ck_assert_msg(r.first_error == cases[i].want ||
		                      (cases[i].also && r.first_error == cases[i].also),
		              "%s: %s from %s (%s), want %s", cases[i].what,
		              saga_strerror(r.first_error), r.where ? r.where : "-", r.msg,
		              saga_strerror(cases[i].want));
		if (cases[i].want == SAGA_OK)
			ck_assert_int_eq(r.nerrors, 0);
	}
}
END_TEST

/* Schema version 1 as it was released (migrations never change): the
 * tables, indexes, application id and user_version of a store written by
 * libsaga 0.1.0 before any later migration. */
static const char v1_schema[] =
        "CREATE TABLE definitions("
        "  name TEXT NOT NULL, version INTEGER NOT NULL, snapshot TEXT NOT NULL,"
        "  PRIMARY KEY(name, version));"
        "CREATE TABLE instances("
        "  id INTEGER PRIMARY KEY, uid TEXT NOT NULL UNIQUE,"
        "  def_name TEXT NOT NULL, def_version INTEGER NOT NULL,"
        "  business_key TEXT UNIQUE,"
        "  state INTEGER NOT NULL, phase INTEGER NOT NULL, step INTEGER NOT NULL,"
        "  attempt INTEGER NOT NULL, inflight INTEGER NOT NULL, pending INTEGER NOT NULL,"
        "  pivot_done INTEGER NOT NULL, reason INTEGER NOT NULL,"
        "  fwd_started INTEGER NOT NULL, comp_done_any INTEGER NOT NULL,"
        "  due_at INTEGER NOT NULL, deadline_at INTEGER NOT NULL,"
        "  attempt_deadline INTEGER NOT NULL, step_since INTEGER NOT NULL,"
        "  prev_delay INTEGER NOT NULL, created_at INTEGER NOT NULL,"
        "  updated_at INTEGER NOT NULL, error TEXT NOT NULL, context TEXT NOT NULL);"
        "CREATE INDEX instances_waiting ON instances(due_at) WHERE state = 1;"
        "CREATE INDEX instances_state ON instances(state) WHERE state < 3;"
        "CREATE TABLE history("
        "  seq INTEGER PRIMARY KEY, instance INTEGER NOT NULL, at INTEGER NOT NULL,"
        "  type INTEGER NOT NULL, state INTEGER NOT NULL, step INTEGER NOT NULL,"
        "  phase INTEGER NOT NULL, attempt INTEGER NOT NULL, outcome INTEGER NOT NULL,"
        "  detail TEXT NOT NULL);"
        "CREATE INDEX history_instance ON history(instance, seq);"
        "PRAGMA application_id = 1396787009;" /* 0x53414741, "SAGA" */
        "PRAGMA user_version = 1;";

#define V1_INSTANCE_COLUMNS                                                           \
	"id, uid, def_name, def_version, business_key, state, phase, step, attempt,"  \
	" inflight, pending, pivot_done, reason, fwd_started, comp_done_any, due_at," \
	" deadline_at, attempt_deadline, step_since, prev_delay, created_at,"         \
	" updated_at, error, context"

static int64_t db_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	ck_assert_msg(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK, "%s: %s", sql,
	              sqlite3_errmsg(db));
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	int64_t v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/* A store of schema version 1 holding two finished instances and one that
 * is RUNNING is migrated when opened; its instances go on. */
START_TEST(older_schema_migrated)
{
	char cur[300], old[300];
	snprintf(cur, sizeof(cur), "%s/current.db", scn.dir);
	snprintf(old, sizeof(old), "%s/v1.db", scn.dir);
	int64_t running = 0;
	make_store(cur, 2, &running);
	sqlite3 *db;
	ck_assert_int_eq(
	        sqlite3_open_v2(old, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, "unix"),
	        SQLITE_OK);
	char sql[2048];
	snprintf(sql, sizeof(sql),
	         "ATTACH '%s' AS cur;"
	         "INSERT INTO definitions SELECT name, version, snapshot FROM cur.definitions;"
	         "INSERT INTO instances(" V1_INSTANCE_COLUMNS ") SELECT " V1_INSTANCE_COLUMNS
	         " FROM cur.instances;"
	         /* schema 1 numbered the history store-wide */
	         "INSERT INTO history SELECT row_number() OVER (ORDER BY instance, seq),"
	         " instance, at, type, state, step, phase, attempt,"
	         " outcome, detail FROM cur.history; DETACH cur",
	         cur);
	char *msg = NULL;
	ck_assert_msg(sqlite3_exec(db, v1_schema, NULL, NULL, &msg) == SQLITE_OK, "%s", msg);
	ck_assert_msg(sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK, "%s", msg);
	int64_t old_rows = db_int(db, "SELECT count(*) FROM history");
	int64_t old_max = db_int(db, "SELECT max(seq) FROM history");
	int64_t current_version = 0;
	{
		sqlite3 *c;
		ck_assert_int_eq(sqlite3_open_v2(cur, &c, SQLITE_OPEN_READONLY, "unix"), SQLITE_OK);
		current_version = db_int(c, "PRAGMA user_version");
		sqlite3_close(c);
	}
	sqlite3_close(db);

	saga_options o = options(SAGA_DURABILITY_NORMAL);
	o.path = old;
	saga_engine *e;
	char err[256];
	ck_assert_msg(saga_engine_open(&e, &o, err, sizeof(err)) == SAGA_OK, "open v1: %s", err);
	ck_assert_int_eq(saga_engine_register(e, scn.def), SAGA_OK);
	for (int r = 0; r < 4; r++) {
		ck_assert_int_eq(saga_run_until_idle(e), SAGA_OK);
		fake_clock_advance(&scn.clock, 100);
	}
	saga_instance_info info;
	ck_assert_int_eq(saga_get(e, &info, running), SAGA_OK);
	ck_assert_str_eq(saga_state_name(info.state), "COMPLETED");
	int64_t counts[SAGA_STATE_COUNT];
	ck_assert_int_eq(saga_counts(e, counts), SAGA_OK);
	ck_assert_int_eq(counts[SAGA_COMPLETED] + counts[SAGA_COMPENSATED], 3);
	saga_engine_close(e);

	ck_assert_int_eq(sqlite3_open_v2(old, &db, SQLITE_OPEN_READONLY, "unix"), SQLITE_OK);
	ck_assert_int_eq(db_int(db, "PRAGMA user_version"), current_version);
	/* The history came over whole, and the rows written after the migration
	 * follow it: seq stays unique and increasing across the store. */
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM history WHERE seq <= %lld",
	         (long long)old_max);
	ck_assert_int_eq(db_int(db, sql), old_rows);
	snprintf(sql, sizeof(sql),
	         "SELECT count(*) FROM history WHERE instance = %lld AND seq > %lld",
	         (long long)running, (long long)old_max);
	ck_assert_int_gt(db_int(db, sql), 0);
	/* Since schema 4 the seq counts per instance, from what each instance
	 * had: unique and increasing within it, and its row knows the next. */
	ck_assert_int_eq(db_int(db, "SELECT count(*) FROM (SELECT instance, seq FROM history"
	                            " GROUP BY instance, seq HAVING count(*) > 1)"),
	                 0);
	ck_assert_int_eq(db_int(db,
	                        "SELECT count(*) FROM instances i WHERE next_seq !="
	                        " (SELECT max(seq) + 1 FROM history h WHERE h.instance = i.id)"),
	                 0);
	/* Finished instances carry their finishing time (their last change)
	 * for the purge index; the others none. */
	ck_assert_int_eq(db_int(db, "SELECT count(*) FROM instances WHERE state >= 3 AND"
	                            " finished_at != updated_at"),
	                 0);
	ck_assert_int_eq(db_int(db, "SELECT count(*) FROM instances WHERE state < 3 AND"
	                            " finished_at != 0"),
	                 0);
	snprintf(sql, sizeof(sql), "ATTACH '%s' AS cur", cur);
	ck_assert_int_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	/* The same tables and indexes as a store created by this version. */
	ck_assert_int_eq(db_int(db,
	                        "SELECT count(*) FROM (SELECT type, name FROM main.sqlite_schema"
	                        " EXCEPT SELECT type, name FROM cur.sqlite_schema)"),
	                 0);
	ck_assert_int_eq(db_int(db, "SELECT count(*) FROM (SELECT type, name FROM cur.sqlite_schema"
	                            " EXCEPT SELECT type, name FROM main.sqlite_schema)"),
	                 0);
	sqlite3_close(db);
	printf("iofault a schema version 1 store: migrated to version %lld, its RUNNING "
	       "instance completed\n",
	       (long long)current_version);
}
END_TEST

/* A row changed behind the engine's back. want_corrupt: some call must
 * answer SAGA_ECORRUPT (the damage is detectable); otherwise any answer
 * but a crash will do. */
static const struct row_damage {
	const char *what;
	const char *sql;
	bool on_history;
	bool want_corrupt;
} row_damages[] = {
	{ "context is not JSON", "UPDATE instances SET context = 'not json' WHERE id = ?1", false,
	  true },
	{ "context is a JSON array", "UPDATE instances SET context = '[1,2]' WHERE id = ?1", false,
	  true },
	{ "context is a blob", "UPDATE instances SET context = x'00ff00' WHERE id = ?1", false,
	  true },
	{ "state 99", "UPDATE instances SET state = 99 WHERE id = ?1", false, true },
	{ "state -1", "UPDATE instances SET state = -1 WHERE id = ?1", false, true },
	{ "phase 7", "UPDATE instances SET phase = 7 WHERE id = ?1", false, true },
	{ "step 99", "UPDATE instances SET step = 99 WHERE id = ?1", false, true },
	{ "step -7", "UPDATE instances SET step = -7 WHERE id = ?1", false, true },
	{ "fwd_started 99", "UPDATE instances SET fwd_started = 99 WHERE id = ?1", false, true },
	{ "compensating at step = number of steps (4)",
	  "UPDATE instances SET state = 2, phase = 1, step = 4, fwd_started = 4 WHERE id = ?1",
	  false, true },
	{ "an in-flight compensation at step 4",
	  "UPDATE instances SET state = 2, phase = 1, step = 4, fwd_started = 4, inflight = 1,"
	  " attempt = 1 WHERE id = ?1",
	  false, true },
	{ "a pending async action at step 4 whose timeout passed",
	  "UPDATE instances SET state = 1, step = 4, fwd_started = 4, pending = 1, attempt = 1,"
	  " attempt_deadline = 1, due_at = 1 WHERE id = ?1",
	  false, true },
	{ "a compensation at step 4 waiting on a due retry",
	  "UPDATE instances SET state = 1, phase = 1, step = 4, fwd_started = 4, due_at = 1"
	  " WHERE id = ?1",
	  false, true },
	{ "an unregistered definition version",
	  "UPDATE instances SET def_version = 9 WHERE id = ?1", false, false },
	{ "an empty uid", "UPDATE instances SET uid = '' WHERE id = ?1", false, false },
	{ "history rows with an unknown type, step, phase and outcome",
	  "UPDATE history SET type = 99, step = 1000, phase = 9, outcome = 77 WHERE instance = ?1",
	  true, false },
	{ "an empty error blob and an empty definition name",
	  "UPDATE instances SET error = x'', def_name = '' WHERE id = ?1", false, false },
};
#define NROW_DAMAGES ((int)(sizeof(row_damages) / sizeof(row_damages[0])))

START_TEST(corrupted_rows)
{
	const struct row_damage *d = &row_damages[_i];
	char clean[300];
	snprintf(clean, sizeof(clean), "%s/clean.db", scn.dir);
	int64_t bad = 0;
	make_store(clean, 2, &bad);
	/* A healthy instance next to the damaged one must still finish. */
	saga_options o = options(SAGA_DURABILITY_NORMAL);
	o.path = clean;
	saga_engine *e;
	char err[256];
	ck_assert_int_eq(saga_engine_open(&e, &o, err, sizeof(err)), SAGA_OK);
	ck_assert_int_eq(saga_engine_register(e, scn.def), SAGA_OK);
	cJSON *in = input_of(0);
	int64_t good = 0;
	ck_assert_int_eq(saga_start(e, &good, NULL, DEF_NAME, "G", in), SAGA_OK);
	cJSON_Delete(in);
	saga_engine_close(e);

	sqlite3 *db;
	ck_assert_int_eq(sqlite3_open_v2(clean, &db, SQLITE_OPEN_READWRITE, "unix"), SQLITE_OK);
	sqlite3_stmt *st;
	ck_assert_int_eq(sqlite3_prepare_v2(db, d->sql, -1, &st, NULL), SQLITE_OK);
	sqlite3_bind_int64(st, 1, d->on_history ? 1 : bad);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
	ck_assert_int_gt(sqlite3_changes(db), 0);
	sqlite3_finalize(st);
	sqlite3_close(db);

	damage_result r;
	memset(&r, 0, sizeof(r));
	ck_assert_int_eq(saga_engine_open(&e, &o, err, sizeof(err)), SAGA_OK);
	note_damage(&r, e, "register", saga_engine_register(e, scn.def));
	int64_t ids[] = { bad, good, 1 };
	for (int round = 0; round < 6; round++) {
		note_damage(&r, e, "run", saga_run_until_idle(e));
		fake_clock_advance(&scn.clock, 100);
	}
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		saga_instance_info info;
		note_damage(&r, e, "get", saga_get(e, &info, ids[i]));
		cJSON *ctx = NULL;
		note_damage(&r, e, "get_context", saga_get_context(e, &ctx, ids[i]));
		cJSON_Delete(ctx);
		note_damage(&r, e, "history", saga_history(e, ids[i], nop_event, NULL));
	}
	int n = 0;
	note_damage(&r, e, "list", saga_list(e, -1, list_fn, &n));
	int64_t counts[SAGA_STATE_COUNT];
	note_damage(&r, e, "counts", saga_counts(e, counts));
	saga_instance_info ginfo, binfo;
	ck_assert_int_eq(saga_get(e, &ginfo, good), SAGA_OK);
	int brc = saga_get(e, &binfo, bad);
	printf("iofault damaged row, %s: %s from %s: %s; damaged instance %s; healthy one %s\n",
	       d->what, r.first_error ? saga_strerror(r.first_error) : "no error",
	       r.where ? r.where : "-", r.msg,
	       brc ? saga_strerror(brc) : saga_state_name(binfo.state),
	       saga_state_name(ginfo.state));
	ck_assert_msg(!d->want_corrupt || r.first_error == SAGA_ECORRUPT,
	              "%s: %s from %s (%s), want SAGA_ECORRUPT", d->what,
	              saga_strerror(r.first_error), r.where ? r.where : "-", r.msg);
	ck_assert_msg(ginfo.state == SAGA_COMPLETED, "%s: the healthy instance next to it is %s",
	              d->what, saga_state_name(ginfo.state));
	saga_engine_close(e);
}
END_TEST

int main(void)
{
	scenario_main_init();
	Suite *s = suite_create("iofault");
	TCase *tc = tcase_create("faults");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 300);
	tcase_add_loop_test(tc, io_fault_loop, 0, NKINDS);
	tcase_add_loop_test(tc, io_fault_same_engine, 0, 4);
	suite_add_tcase(s, tc);
	TCase *tc2 = tcase_create("damaged");
	tcase_add_checked_fixture(tc2, setup, teardown);
	tcase_set_timeout(tc2, 120);
	tcase_add_test(tc2, truncated_store);
	tcase_add_test(tc2, corrupted_pages);
	tcase_add_test(tc2, foreign_files);
	tcase_add_test(tc2, older_schema_migrated);
	tcase_add_loop_test(tc2, corrupted_rows, 0, NROW_DAMAGES);
	suite_add_tcase(s, tc2);
	return run_suite(s);
}
