/* Opening a store: many engines share one store file whatever the name each
 * gives it (one lock file, so each sees the others' liveness), a second open
 * that leaves the first engine's SQLite locks alone, an engine of an older
 * libsaga kept out, a new store that is born whole or not at all (so that an
 * existing empty or short file is damage) and a store of schema version 3
 * migrated. Real files, real processes (fork) and real SIGKILLs.
 * SPDX-License-Identifier: MIT */
#define _GNU_SOURCE /* F_OFD_SETLK, CLOCK_BOOTTIME */
#include "test-common.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define APPLICATION_ID 0x53414741 /* "SAGA" */
#define SCHEMA_VERSION 4
#define LONG_LEASE     60000 /* ms: far longer than any of these tests */

static char dir[256];
static char path[320];

static void setup(void)
{
	tmpdir_make(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/s.db", dir);
}

static void teardown(void)
{
	tmpdir_remove(dir);
}

static saga_step_result step_ok(saga_step_ctx *ctx, void *user)
{
	(void)ctx;
	(void)user;
	return SAGA_STEP_OK;
}

/* A definition of one step that succeeds. */
static saga_definition *make_def(const char *name)
{
	saga_definition *d = NULL;
	saga_step_spec spec = { "only", SAGA_STEP_RETRIABLE, step_ok, NULL, NULL };
	if (saga_definition_new(&d, name, 1) != SAGA_OK)
		return NULL;
	if (saga_definition_add_step(d, &spec) != SAGA_OK) {
		saga_definition_free(d);
		return NULL;
	}
	return d;
}

/* Registers the definition `name` (make_def). */
static int register_def(saga_engine *e, const char *name)
{
	saga_definition *d = make_def(name);
	int rc = d ? saga_engine_register(e, d) : SAGA_ENOMEM;
	saga_definition_free(d);
	return rc;
}

/* Opens an engine (caller-driven) on `p` with the definition `def`
 * registered; lease_ms 0 for the default lease. */
static int open_leased(saga_engine **e, const char *p, const char *def, uint32_t lease_ms,
                       char *err, size_t size)
{
	saga_options o = SAGA_OPTIONS_INIT;
	o.path = p;
	o.seed = 7;
	o.lease_ms = lease_ms;
	err[0] = '\0';
	int rc = saga_engine_open(e, &o, err, size);
	if (rc)
		return rc;
	if ((rc = register_def(*e, def))) {
		snprintf(err, size, "register: %s", saga_engine_errmsg(*e));
		saga_engine_close(*e);
		*e = NULL;
	}
	return rc;
}

/* The same with "t" and the default lease. */
static int open_engine(saga_engine **e, const char *p, char *err, size_t size)
{
	return open_leased(e, p, "t", 0, err, size);
}

/* An open that must be refused with `want`; the message must contain `has`. */
static void refused(const char *p, int want, const char *has)
{
	saga_options o = SAGA_OPTIONS_INIT;
	saga_engine *e = (saga_engine *)1;
	char err[512] = "";
	o.path = p;
	int rc = saga_engine_open(&e, &o, err, sizeof(err));
	if (rc == SAGA_OK)
		saga_engine_close(e);
	ck_assert_msg(rc == want, "open '%s': %s (%s), want %s", p, saga_strerror(rc), err,
	              saga_strerror(want));
	ck_assert_ptr_null(e);
	ck_assert_msg(strstr(err, has) != NULL, "open '%s': message '%s' lacks '%s'", p, err, has);
}

static bool exists(const char *p)
{
	struct stat st;
	return lstat(p, &st) == 0;
}

static void write_file(const char *p, const void *data, size_t n)
{
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, data, n), (ssize_t)n);
	ck_assert_int_eq(close(fd), 0);
}

/* The whole file in a malloc'd buffer (NULL when it does not exist). */
static char *read_file(const char *p, size_t *n)
{
	FILE *f = fopen(p, "rb");
	if (!f)
		return NULL;
	char *buf = NULL;
	size_t cap = 0, len = 0;
	for (;;) {
		if (len == cap) {
			cap = cap ? cap * 2 : 4096;
			buf = realloc(buf, cap);
			ck_assert_ptr_nonnull(buf);
		}
		size_t got = fread(buf + len, 1, cap - len, f);
		len += got;
		if (got == 0)
			break;
	}
	fclose(f);
	*n = len;
	return buf;
}

static void assert_same_file(const char *p, const char *want, size_t want_n)
{
	size_t n = 0;
	char *got = read_file(p, &n);
	ck_assert_msg(got != NULL, "%s is gone", p);
	ck_assert_msg(n == want_n && (n == 0 || memcmp(got, want, n) == 0),
	              "%s changed: %zu bytes, was %zu", p, n, want_n);
	free(got);
}

/* Whether `p` is a whole store as SQLite reads it: libsaga's application
 * id, the current schema version, the tables of schema 4 (owners,
 * owner_defs, commands; instances with their owner, fence, next_seq and
 * recoveries; history with its fence; no store-wide counter row). */
static bool whole_store(const char *p, char *why, size_t size)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	bool ok = false;
	if (sqlite3_open_v2(p, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
		snprintf(why, size, "open: %s", db ? sqlite3_errmsg(db) : "?");
		goto out;
	}
	if (sqlite3_prepare_v2(
	            db,
	            "SELECT (SELECT application_id FROM pragma_application_id),"
	            " (SELECT user_version FROM pragma_user_version),"
	            " (SELECT count(*) FROM instances), (SELECT count(*) FROM history),"
	            " (SELECT count(*) FROM owners), (SELECT count(*) FROM owner_defs),"
	            " (SELECT count(*) FROM commands),"
	            " (SELECT count(*) FROM pragma_table_info('instances') WHERE name IN"
	            "  ('owner', 'fence', 'next_seq', 'recoveries')),"
	            " (SELECT count(*) FROM pragma_table_info('history') WHERE name = 'fence'),"
	            " (SELECT count(*) FROM sqlite_schema WHERE name = 'counters')",
	            -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_ROW) {
		snprintf(why, size, "read: %s", sqlite3_errmsg(db));
		goto out;
	}
	if (sqlite3_column_int(st, 0) != APPLICATION_ID ||
	    sqlite3_column_int(st, 1) != SCHEMA_VERSION) {
		snprintf(why, size, "application id %d, schema version %d",
		         sqlite3_column_int(st, 0), sqlite3_column_int(st, 1));
		goto out;
	}
	if (sqlite3_column_int(st, 7) != 4 || sqlite3_column_int(st, 8) != 1 ||
	    sqlite3_column_int(st, 9) != 0) {
		snprintf(why, size,
		         "schema 4 columns: %d of 4 in instances, %d of 1 in history; "
		         "%d counters table(s)",
		         sqlite3_column_int(st, 7), sqlite3_column_int(st, 8),
		         sqlite3_column_int(st, 9));
		goto out;
	}
	ok = true;
out:
	sqlite3_finalize(st);
	sqlite3_close(db);
	return ok;
}

/* Starts one instance of `def`; its id and uid. */
static int start_def(saga_engine *e, const char *def, int64_t *id, char uid[SAGA_UID_LEN + 1])
{
	int rc = saga_start(e, id, NULL, def, NULL, NULL);
	if (rc)
		return rc;
	saga_instance_info info;
	if ((rc = saga_get(e, &info, *id)))
		return rc;
	memcpy(uid, info.uid, SAGA_UID_LEN + 1);
	return SAGA_OK;
}

static int start_one(saga_engine *e, int64_t *id, char uid[SAGA_UID_LEN + 1])
{
	return start_def(e, "t", id, uid);
}

/* Writes a whole line to a pipe, or ends the (child) process. */
static void say(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(int fd, const char *fmt, ...)
{
	char line[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line) || write(fd, line, (size_t)n) != n)
		_exit(3);
}

/* Sleeps `ms` milliseconds (so that an engine's next round looks for other
 * processes' work: it does every SAGA_POLL_MS). */
static void nap_ms(unsigned ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
	}
}

static saga_state state_of(saga_engine *e, int64_t id)
{
	saga_instance_info info;
	int rc = saga_get(e, &info, id);
	ck_assert_msg(rc == SAGA_OK, "saga_get %lld: %s", (long long)id, saga_strerror(rc));
	return info.state;
}

/* Whether a process other than a child of this one holds a read lock on
 * the database file's shared range (SQLite's SHARED lock, which a
 * connection in WAL mode keeps while it is open). Asked from a child, since
 * F_GETLK does not report the caller's own locks. */
static bool shared_lock_held(const char *p)
{
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int fd = open(p, O_RDONLY);
		struct flock fl;
		memset(&fl, 0, sizeof(fl));
		fl.l_type = F_WRLCK;
		fl.l_whence = SEEK_SET;
		fl.l_start = 0x40000000 + 2; /* SQLite's PENDING_BYTE + 2: SHARED_FIRST */
		fl.l_len = 510;              /* SHARED_SIZE */
		if (fd < 0 || fcntl(fd, F_GETLK, &fl) != 0)
			_exit(2);
		_exit(fl.l_type == F_RDLCK ? 0 : 1);
	}
	int status = 0;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) <= 1);
	return WEXITSTATUS(status) == 0;
}

/* ------------------------------------------------------------------------ */
/* A second engine on the store leaves the first one's locks alone          */

#define BEFORE 3 /* sagas started before the second engine */
#define SECOND 3 /* second engines opened and closed, one saga each */
#define AFTER  5 /* sagas started after the other process's read */

/* The child: an engine, sagas, then SECOND times a second engine on the
 * same store that starts a saga and is closed, then (once the parent has
 * read the store) more sagas; every saga whose saga_start returned 0 is
 * reported as "S id uid". Waits to be killed. */
static void locks_child(int out, int in)
{
	saga_engine *e = NULL;
	char err[512], uid[SAGA_UID_LEN + 1];
	int64_t id;
	int rc;
	if ((rc = open_engine(&e, path, err, sizeof(err)))) {
		say(out, "X open %d %s\n", rc, err);
		_exit(2);
	}
	for (int i = 0; i < BEFORE; i++) {
		if ((rc = start_one(e, &id, uid)) == SAGA_OK)
			say(out, "S %lld %s\n", (long long)id, uid);
	}
	int second = SAGA_OK;
	for (int k = 0; k < SECOND && second == SAGA_OK; k++) {
		saga_engine *e2 = NULL;
		if ((second = open_engine(&e2, path, err, sizeof(err))) == SAGA_OK &&
		    (second = start_one(e2, &id, uid)) == SAGA_OK)
			say(out, "S %lld %s\n", (long long)id, uid);
		saga_engine_close(e2);
	}
	say(out, "B %d\n", second);
	char go;
	if (read(in, &go, 1) != 1)
		_exit(3);
	for (int i = 0; i < AFTER; i++) {
		if ((rc = start_one(e, &id, uid)) == SAGA_OK)
			say(out, "S %lld %s\n", (long long)id, uid);
		else
			say(out, "F %d %s\n", rc, saga_engine_errmsg(e));
	}
	say(out, "D\n");
	for (;;)
		pause();
}

/* The second engine's close must not drop the first one's fcntl locks on
 * the database file (POSIX locks belong to the process: closing any
 * descriptor of the file drops them all). If it did, the reader below
 * would take itself for the last connection, checkpoint and delete the
 * -wal that the first engine goes on writing: its later sagas would be
 * lost with the SIGKILL. */
START_TEST(second_open_keeps_the_locks)
{
	int to_child[2], from_child[2];
	ck_assert_int_eq(pipe(to_child), 0);
	ck_assert_int_eq(pipe(from_child), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(to_child[1]);
		close(from_child[0]);
		locks_child(from_child[1], to_child[0]);
	}
	close(to_child[0]);
	close(from_child[1]);
	FILE *in = fdopen(from_child[0], "r");
	ck_assert_ptr_nonnull(in);
	struct {
		long long id;
		char uid[SAGA_UID_LEN + 1];
	} started[BEFORE + SECOND + AFTER];
	int nstarted = 0, second = -1, done = 0;
	char line[256];
	while (!done && fgets(line, sizeof(line), in)) {
		if (line[0] == 'S') {
			ck_assert_int_lt(nstarted, BEFORE + SECOND + AFTER);
			ck_assert_int_eq(sscanf(line, "S %lld %32s", &started[nstarted].id,
			                        started[nstarted].uid),
			                 2);
			nstarted++;
		} else if (line[0] == 'B') {
			ck_assert_int_eq(sscanf(line, "B %d", &second), 1);
			/* Another process reads the store as the sqlite3 shell
			 * would, and closes it: at its close SQLite checkpoints and
			 * deletes the -wal if it can lock the database file. */
			sqlite3 *db = NULL;
			sqlite3_stmt *st = NULL;
			ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL),
			                 SQLITE_OK);
			ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT count(*) FROM instances",
			                                    -1, &st, NULL),
			                 SQLITE_OK);
			ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
			ck_assert_int_eq(sqlite3_column_int(st, 0), nstarted);
			sqlite3_finalize(st);
			ck_assert_int_eq(sqlite3_close(db), SQLITE_OK);
			ck_assert_int_eq(write(to_child[1], "g", 1), 1);
		} else if (line[0] == 'D') {
			done = 1;
		} else {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			ck_abort_msg("child: %s", line);
		}
	}
	kill(pid, SIGKILL);
	int status = 0;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	fclose(in);
	close(to_child[1]);
	ck_assert_msg(done, "the child ended early");
	ck_assert_msg(second == SAGA_OK, "a second engine in the child answered %d", second);
	ck_assert_int_eq(nstarted, BEFORE + SECOND + AFTER);

	saga_engine *e = NULL;
	char err[512];
	ck_assert_msg(open_engine(&e, path, err, sizeof(err)) == SAGA_OK, "reopen: %s", err);
	int lost = 0;
	for (int i = 0; i < nstarted; i++) {
		saga_instance_info info;
		int rc = saga_get(e, &info, started[i].id);
		if (rc != SAGA_OK || strcmp(info.uid, started[i].uid) != 0)
			lost++;
	}
	/* The killed engine's sagas and the closed ones' are all run here. */
	ck_assert_int_eq(saga_run_until_idle(e), SAGA_OK);
	int64_t counts[SAGA_STATE_COUNT];
	ck_assert_int_eq(saga_counts(e, counts), SAGA_OK);
	saga_engine_close(e);
	ck_assert_msg(lost == 0, "%d of %d sagas whose saga_start returned 0 were lost", lost,
	              nstarted);
	ck_assert_int_eq(counts[SAGA_COMPLETED], nstarted);
}
END_TEST

/* In one process: second engines opened and closed leave SQLite's lock on
 * the database file with the first (another process sees it), and the first
 * goes on; the sagas the second ones started are run by the first once
 * they are closed (their close hands them back). */
START_TEST(second_open_same_process_store_keeps_working)
{
	saga_engine *e = NULL;
	char err[512], uid[SAGA_UID_LEN + 1];
	int64_t id;
	ck_assert_msg(open_engine(&e, path, err, sizeof(err)) == SAGA_OK, "%s", err);
	ck_assert_int_eq(start_one(e, &id, uid), SAGA_OK);
	ck_assert_msg(shared_lock_held(path), "no SHARED lock on an open store");
	for (int i = 0; i < 3; i++) {
		saga_engine *e2 = NULL;
		ck_assert_msg(open_engine(&e2, path, err, sizeof(err)) == SAGA_OK, "%s", err);
		ck_assert_int_eq(start_one(e2, &id, uid), SAGA_OK);
		saga_engine_close(e2);
		ck_assert_msg(shared_lock_held(path), "a second engine dropped the first's locks");
		ck_assert_int_eq(start_one(e, &id, uid), SAGA_OK);
	}
	ck_assert_int_eq(saga_run_until_idle(e), SAGA_OK);
	int64_t counts[SAGA_STATE_COUNT];
	ck_assert_int_eq(saga_counts(e, counts), SAGA_OK);
	ck_assert_int_eq(counts[SAGA_COMPLETED], 7);
	saga_engine_close(e);
}
END_TEST

/* An engine of a libsaga before schema 4 owned its store by an exclusive
 * flock on "<store>-lock" and cannot share it: while it holds that flock,
 * an open is refused with SAGA_EBUSY before the database file is touched
 * (the old engine's SQLite locks and the file stay as they were), and while
 * this libsaga has the store open, the old engine's flock cannot be
 * taken. */
START_TEST(older_libsaga_kept_out)
{
	saga_engine *e = NULL;
	char err[512], uid[SAGA_UID_LEN + 1], lock[340];
	int64_t id;
	snprintf(lock, sizeof(lock), "%s-lock", path);
	ck_assert_msg(open_engine(&e, path, err, sizeof(err)) == SAGA_OK, "%s", err);
	ck_assert_int_eq(start_one(e, &id, uid), SAGA_OK);
	int old = open(lock, O_RDWR | O_CLOEXEC);
	ck_assert_int_ge(old, 0);
	ck_assert_msg(flock(old, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK,
	              "an older engine could take the store of an open engine");
	saga_engine_close(e);

	/* The older engine: its flock, and the store open in SQLite (the file
	 * read first: closing a descriptor of it drops this process's fcntl
	 * locks on it). */
	size_t n = 0;
	char *before = read_file(path, &n);
	ck_assert_ptr_nonnull(before);
	ck_assert_int_eq(flock(old, LOCK_EX | LOCK_NB), 0);
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT count(*) FROM instances", -1, &st, NULL),
	                 SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	ck_assert_int_eq(sqlite3_column_int(st, 0), 1);
	sqlite3_reset(st);
	ck_assert_msg(shared_lock_held(path), "no SHARED lock held by the older engine");
	for (int i = 0; i < 3; i++) {
		refused(path, SAGA_EBUSY, "older libsaga");
		ck_assert_msg(shared_lock_held(path), "a refused open dropped the SQLite locks");
	}
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		saga_options o = SAGA_OPTIONS_INIT;
		saga_engine *e2 = NULL;
		o.path = path;
		int rc = saga_engine_open(&e2, &o, err, sizeof(err));
		saga_engine_close(e2);
		_exit(rc == SAGA_EBUSY && strstr(err, "older libsaga") ? 0 : 1);
	}
	int status = 0;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	              "another process's open was not refused as the older libsaga's");
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	ck_assert_int_eq(sqlite3_column_int(st, 0), 1);
	sqlite3_finalize(st);
	ck_assert_int_eq(sqlite3_close(db), SQLITE_OK);
	assert_same_file(path, before, n);
	free(before);
	ck_assert_int_eq(close(old), 0);

	/* The older engine gone, the store opens and its saga runs. */
	ck_assert_msg(open_engine(&e, path, err, sizeof(err)) == SAGA_OK, "%s", err);
	ck_assert_int_eq(saga_run_until_idle(e), SAGA_OK);
	ck_assert_int_eq(state_of(e, id), SAGA_COMPLETED);
	saga_engine_close(e);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* One store under any name is one store                                    */

/* `abs` spelled relative to the working directory. */
static void relative_to_cwd(char *out, size_t size, const char *abs)
{
	char cwd[1024];
	ck_assert_ptr_nonnull(getcwd(cwd, sizeof(cwd)));
	out[0] = '\0';
	for (const char *c = cwd; *c; c++) {
		if (*c == '/' && c[1] != '\0')
			strncat(out, "../", size - strlen(out) - 1);
	}
	strncat(out, abs + 1, size - strlen(out) - 1);
}

/* dir/real/s.db, dir/real/sub/, dir/real/link.db -> s.db, dir/alias -> real */
static char real_dir[300], store[340];

static void make_names(void)
{
	char p[400];
	snprintf(real_dir, sizeof(real_dir), "%s/real", dir);
	ck_assert_int_eq(mkdir(real_dir, 0700), 0);
	snprintf(store, sizeof(store), "%s/s.db", real_dir);
	snprintf(p, sizeof(p), "%s/sub", real_dir);
	ck_assert_int_eq(mkdir(p, 0700), 0);
	snprintf(p, sizeof(p), "%s/link.db", real_dir);
	ck_assert_int_eq(symlink("s.db", p), 0);
	snprintf(p, sizeof(p), "%s/alias", dir);
	ck_assert_int_eq(symlink("real", p), 0);
}

/* Every "-lock" file in `d` is one of the stores' own: no spelling of a
 * store made a lock file of its own beside it. */
static void no_stray_lock_file(const char *d)
{
	static const char *const own[] = { "s.db-lock", "file:odd.db-lock", ":memory:-lock" };
	DIR *dd = opendir(d);
	ck_assert_ptr_nonnull(dd);
	struct dirent *de;
	while ((de = readdir(dd))) {
		size_t n = strlen(de->d_name);
		if (n < 5 || strcmp(de->d_name + n - 5, "-lock") != 0)
			continue;
		bool known = false;
		for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
			known = known || strcmp(de->d_name, own[i]) == 0;
		ck_assert_msg(known, "%s: a lock file of another name: %s", d, de->d_name);
	}
	closedir(dd);
}

/* Every name of the store reaches its one lock file, so an engine opened by
 * any of them sees the first engine's owner alive through its liveness byte
 * and leaves its saga alone (with a lock file of its own, the byte would be
 * free there: the owner taken for dead, its saga run here at the first
 * round, as liveness_seen_in_the_lock_file_only shows). The leases are long:
 * only the byte can tell. */
START_TEST(one_owner_whatever_the_spelling)
{
	make_names();
	saga_engine *e = NULL;
	char err[512], p[1400], rel[1200], uid[SAGA_UID_LEN + 1];
	int64_t id;
	/* The store is created through a symlinked directory... */
	snprintf(p, sizeof(p), "%s/alias/s.db", dir);
	ck_assert_msg(open_leased(&e, p, "t", LONG_LEASE, err, sizeof(err)) == SAGA_OK, "%s", err);
	ck_assert(exists(store));
	ck_assert_int_eq(start_one(e, &id, uid), SAGA_OK);
	/* ...and an engine opened by every other name of it shares it. */
	const char *const forms[] = { "%s/real/s.db",     "%s/real/./s.db",
		                      "%s/real//s.db",    "%s/real/sub/../s.db",
		                      "%s/real/link.db",  "%s/alias/s.db",
		                      "%s/alias/link.db", "%s/./alias/../real/s.db" };
	int opened = 0;
	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		char names[3][1400];
		snprintf(names[0], sizeof(names[0]), forms[i], dir);
		relative_to_cwd(rel, sizeof(rel), names[0]);
		snprintf(names[1], sizeof(names[1]), "%s", rel);
		snprintf(names[2], sizeof(names[2]), "./%s", rel);
		for (int k = 0; k < 3; k++) {
			saga_engine *e2 = NULL;
			ck_assert_msg(open_leased(&e2, names[k], "t", LONG_LEASE, err,
			                          sizeof(err)) == SAGA_OK,
			              "open '%s': %s", names[k], err);
			ck_assert_int_eq(saga_run_until_idle(e2), SAGA_OK);
			ck_assert_msg(state_of(e2, id) == SAGA_RUNNING,
			              "an engine opened as '%s' took the saga of a live owner "
			              "(state %s)",
			              names[k], saga_state_name(state_of(e2, id)));
			saga_engine_close(e2);
			no_stray_lock_file(real_dir);
			no_stray_lock_file(dir);
			opened++;
		}
	}
	ck_assert_int_eq(opened, 24);
	/* "file:" names are not file names: refused, never read as URIs. */
	snprintf(p, sizeof(p), "file:%s", store);
	refused(p, SAGA_EINVAL, "not URIs");
	relative_to_cwd(rel, sizeof(rel), store);
	snprintf(p, sizeof(p), "file:%s", rel);
	refused(p, SAGA_EINVAL, "not URIs");
	snprintf(p, sizeof(p), "file:%s?mode=rw", rel);
	refused(p, SAGA_EINVAL, "not URIs");
	/* The first engine kept its saga throughout. */
	ck_assert_int_eq(saga_run_until_idle(e), SAGA_OK);
	ck_assert_int_eq(state_of(e, id), SAGA_COMPLETED);
	saga_engine_close(e);
}
END_TEST

/* From processes that work in the store's directory: each opens it by a
 * short relative name, starts a saga and is killed; an engine opened by
 * another name saw it alive (its saga left alone) and takes its saga over
 * at its next look (SAGA_POLL_MS), far within the lease: the kernel
 * released the killed process's byte in the one lock file. */
START_TEST(one_owner_from_another_process)
{
	make_names();
	saga_engine *e = NULL;
	char err[512], p[400];
	/* Created by its own name, then opened through two symbolic links. */
	ck_assert_msg(open_engine(&e, store, err, sizeof(err)) == SAGA_OK, "%s", err);
	saga_engine_close(e);
	snprintf(p, sizeof(p), "%s/alias/link.db", dir);
	ck_assert_msg(open_leased(&e, p, "t", LONG_LEASE, err, sizeof(err)) == SAGA_OK, "%s", err);
	static const char *const names[] = {
		"s.db",          "./s.db",  "sub/../s.db",     "link.db",
		"../alias/s.db", ".//s.db", "../alias/link.db"
	};
	int taken = 0;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		int fds[2];
		ck_assert_int_eq(pipe(fds), 0);
		pid_t pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			saga_engine *e2 = NULL;
			char uid[SAGA_UID_LEN + 1];
			int64_t id = 0;
			close(fds[0]);
			if (chdir(real_dir) != 0)
				_exit(2);
			int rc = open_leased(&e2, names[i], "t", LONG_LEASE, err, sizeof(err));
			if (rc == SAGA_OK)
				rc = start_one(e2, &id, uid);
			say(fds[1], "%d %lld %s\n", rc, (long long)id, err);
			for (;;)
				pause();
		}
		close(fds[1]);
		char line[700] = "";
		FILE *in = fdopen(fds[0], "r");
		ck_assert_ptr_nonnull(in);
		bool got = fgets(line, sizeof(line), in) != NULL;
		fclose(in);
		int rc = -1;
		long long id = 0;
		if (!got || sscanf(line, "%d %lld", &rc, &id) != 2 || rc != SAGA_OK) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			ck_abort_msg("child, '%s' (in %s): %s", names[i], real_dir, line);
		}
		/* Alive: its byte is held in the lock file this engine reads. */
		nap_ms(SAGA_POLL_MS + 10);
		ck_assert_int_eq(saga_run_until_idle(e), SAGA_OK);
		saga_state before = state_of(e, id);
		ck_assert_int_eq(kill(pid, SIGKILL), 0);
		ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
		ck_assert_msg(before == SAGA_RUNNING,
		              "the saga of a live owner opened as '%s' was taken (%s)", names[i],
		              saga_state_name(before));
		/* Killed: taken over at the next look, its lease far from lapsed. */
		nap_ms(SAGA_POLL_MS + 10);
		ck_assert_int_eq(saga_run_until_idle(e), SAGA_OK);
		ck_assert_msg(state_of(e, id) == SAGA_COMPLETED,
		              "the saga of a killed owner opened as '%s' was not taken over (%s)",
		              names[i], saga_state_name(state_of(e, id)));
		taken++;
		no_stray_lock_file(real_dir);
		no_stray_lock_file(dir);
	}
	ck_assert_int_eq(taken, (int)(sizeof(names) / sizeof(names[0])));

	/* "file:" names are refused; a file whose name begins with "file:" is
	 * reached as "./file:...", and ":memory:" is a file name like any
	 * other: both are durable stores, shared under their two spellings. */
	static const char *const uris[] = { "file:s.db", "file:./s.db", "file:link.db" };
	int n = (int)(sizeof(uris) / sizeof(uris[0]));
	int fds[2];
	ck_assert_int_eq(pipe(fds), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(fds[0]);
		if (chdir(real_dir) != 0)
			_exit(2);
		for (int i = 0; i < n; i++) {
			saga_options o = SAGA_OPTIONS_INIT;
			saga_engine *e2 = NULL;
			o.path = uris[i];
			int rc = saga_engine_open(&e2, &o, err, sizeof(err));
			say(fds[1], "%d %d %s\n", i, rc, err);
			saga_engine_close(e2);
		}
		static const char *const odd[] = { "./file:odd.db", ":memory:" };
		for (int k = 0; k < 2; k++) {
			saga_engine *e2 = NULL, *e3 = NULL;
			char uid[SAGA_UID_LEN + 1], other[64];
			int64_t id = 0;
			int rc = open_engine(&e2, odd[k], err, sizeof(err));
			if (rc == SAGA_OK)
				rc = start_one(e2, &id, uid);
			snprintf(other, sizeof(other), "%s%s", k == 0 ? "" : "./", odd[k]);
			saga_options o = SAGA_OPTIONS_INIT;
			o.path = other;
			int rc2 = rc ? rc : saga_engine_open(&e3, &o, err, sizeof(err));
			saga_engine_close(e3);
			saga_engine_close(e2);
			saga_instance_info info;
			int rc3 = rc ? rc : open_engine(&e2, odd[k], err, sizeof(err));
			if (rc3 == SAGA_OK) {
				rc3 = saga_get(e2, &info, id);
				saga_engine_close(e2);
			}
			say(fds[1], "odd %d %d %d %d %s\n", k, rc, rc2, rc3, err);
		}
		say(fds[1], "end\n");
		_exit(0);
	}
	close(fds[1]);
	FILE *in = fdopen(fds[0], "r");
	ck_assert_ptr_nonnull(in);
	char line[700];
	int seen = 0, odd_seen = 0;
	bool end = false;
	while (fgets(line, sizeof(line), in)) {
		int i, rc, rc2, rc3;
		if (strncmp(line, "end", 3) == 0) {
			end = true;
		} else if (sscanf(line, "odd %d %d %d %d", &i, &rc, &rc2, &rc3) == 4) {
			ck_assert_msg(rc == SAGA_OK && rc2 == SAGA_OK && rc3 == SAGA_OK,
			              "child, %s", line);
			odd_seen++;
		} else {
			ck_assert_int_eq(sscanf(line, "%d %d", &i, &rc), 2);
			ck_assert_int_lt(i, n);
			ck_assert_msg(rc == SAGA_EINVAL && strstr(line, "not URIs"),
			              "child, '%s' (in %s): %s", uris[i], real_dir, line);
			seen++;
		}
	}
	fclose(in);
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ck_assert(end);
	ck_assert_int_eq(seen, n);
	ck_assert_int_eq(odd_seen, 2);
	snprintf(p, sizeof(p), "%s/file:odd.db", real_dir);
	ck_assert(exists(p));
	snprintf(p, sizeof(p), "%s/:memory:", real_dir);
	ck_assert(exists(p));
	/* No file was created under a name the refused spellings gave. */
	snprintf(p, sizeof(p), "%s/file:s.db", real_dir);
	ck_assert(!exists(p));
	snprintf(p, sizeof(p), "%s/file:", real_dir);
	ck_assert(!exists(p));
	no_stray_lock_file(real_dir);
	saga_engine_close(e);
}
END_TEST

/* The checker of the two tests above: an owner is alive for a peer on this
 * host only through its byte in the store's own lock file. Two owners with
 * long leases are written by hand, each with an unfinished saga; the byte
 * of one is held in "s.db-lock", that of the other in "link.db-lock" (the
 * lock file an engine that kept the name it was given would use for
 * "link.db"). An engine takes the second one's saga at its first round and
 * leaves the first one's. */
static int64_t fake_owner(sqlite3 *db, int64_t instance)
{
	char boot[64] = "";
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_ptr_nonnull(fgets(boot, sizeof(boot), f));
	fclose(f);
	boot[strcspn(boot, "\n")] = '\0';
	struct timespec ts;
	ck_assert_int_eq(clock_gettime(CLOCK_BOOTTIME, &ts), 0);
	long long now = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	char sql[512];
	snprintf(sql, sizeof(sql),
	         "INSERT INTO owners(host, pid, boot_id, started_at, lease_until, state)"
	         " VALUES ('test', %d, '%s', %lld, %lld, 0)",
	         (int)getpid(), boot, now, now + LONG_LEASE);
	ck_assert_int_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	int64_t epoch = sqlite3_last_insert_rowid(db);
	snprintf(sql, sizeof(sql),
	         "UPDATE instances SET owner = %lld, fence = fence + 1 WHERE id = %lld",
	         (long long)epoch, (long long)instance);
	ck_assert_int_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_changes(db), 1);
	return epoch;
}

/* An open-file-description lock on byte `at` of file `p` (created if need
 * be), as an owner's liveness byte; the descriptor. */
static int hold_byte(const char *p, int64_t at)
{
	int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	ck_assert_int_ge(fd, 0);
	struct flock fl;
	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	fl.l_start = (off_t)at;
	fl.l_len = 1;
	ck_assert_int_eq(fcntl(fd, F_OFD_SETLK, &fl), 0);
	return fd;
}

START_TEST(liveness_seen_in_the_lock_file_only)
{
	make_names();
	saga_engine *e = NULL;
	char err[512], uid[SAGA_UID_LEN + 1], p[400];
	int64_t kept, taken;
	ck_assert_msg(open_engine(&e, store, err, sizeof(err)) == SAGA_OK, "%s", err);
	ck_assert_int_eq(start_one(e, &kept, uid), SAGA_OK);
	ck_assert_int_eq(start_one(e, &taken, uid), SAGA_OK);
	saga_engine_close(e);
	sqlite3 *db = NULL;
	ck_assert_int_eq(sqlite3_open_v2(store, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	int64_t alive = fake_owner(db, kept), elsewhere = fake_owner(db, taken);
	ck_assert_int_eq(sqlite3_close(db), SQLITE_OK);
	snprintf(p, sizeof(p), "%s-lock", store);
	int fd1 = hold_byte(p, alive);
	snprintf(p, sizeof(p), "%s/link.db-lock", real_dir);
	int fd2 = hold_byte(p, elsewhere);

	snprintf(p, sizeof(p), "%s/link.db", real_dir);
	ck_assert_msg(open_leased(&e, p, "t", LONG_LEASE, err, sizeof(err)) == SAGA_OK, "%s", err);
	ck_assert_int_eq(saga_run_until_idle(e), SAGA_OK);
	ck_assert_int_eq(state_of(e, taken), SAGA_COMPLETED);
	ck_assert_int_eq(state_of(e, kept), SAGA_RUNNING);
	/* Its byte released, the other owner is gone too. */
	ck_assert_int_eq(close(fd1), 0);
	nap_ms(SAGA_POLL_MS + 10);
	ck_assert_int_eq(saga_run_until_idle(e), SAGA_OK);
	ck_assert_int_eq(state_of(e, kept), SAGA_COMPLETED);
	saga_engine_close(e);
	ck_assert_int_eq(close(fd2), 0);
}
END_TEST

/* A second name for the same file by a hard link would give it a second
 * -wal and a second lock file: a store with more than one link is refused,
 * under either name, while an engine has it open too (which goes on). A
 * symbolic link to nothing is refused rather than replaced by a file. */
START_TEST(hard_links_and_dangling_links)
{
	make_names();
	saga_engine *e = NULL;
	char err[512], hard[400], dangling[400], target[400], uid[SAGA_UID_LEN + 1];
	int64_t id;
	ck_assert_msg(open_engine(&e, store, err, sizeof(err)) == SAGA_OK, "%s", err);
	snprintf(hard, sizeof(hard), "%s/hard.db", real_dir);
	ck_assert_int_eq(link(store, hard), 0);
	refused(hard, SAGA_EINVAL, "hard link");
	refused(store, SAGA_EINVAL, "hard link");
	ck_assert_msg(shared_lock_held(store), "a refused open dropped the engine's locks");
	ck_assert_int_eq(start_one(e, &id, uid), SAGA_OK);
	ck_assert_int_eq(saga_run_until_idle(e), SAGA_OK);
	ck_assert_int_eq(state_of(e, id), SAGA_COMPLETED);
	saga_engine_close(e);
	refused(store, SAGA_EINVAL, "hard link");
	ck_assert_int_eq(unlink(hard), 0);
	ck_assert_msg(open_engine(&e, store, err, sizeof(err)) == SAGA_OK, "%s", err);
	saga_engine_close(e);

	snprintf(dangling, sizeof(dangling), "%s/dangling.db", real_dir);
	snprintf(target, sizeof(target), "%s/nowhere.db", real_dir);
	ck_assert_int_eq(symlink("nowhere.db", dangling), 0);
	refused(dangling, SAGA_EINVAL, "symbolic link");
	ck_assert(!exists(target));
	/* A directory, and a name that ends in a slash, are not store files. */
	refused(real_dir, SAGA_EINVAL, "not a regular file");
	snprintf(target, sizeof(target), "%s/new.db/", real_dir);
	refused(target, SAGA_EINVAL, "directory");
}
END_TEST

/* ------------------------------------------------------------------------ */
/* A new store is born whole; an existing empty or short file is damage     */

START_TEST(new_store_works)
{
	saga_engine *e = NULL;
	char err[512], uid[SAGA_UID_LEN + 1], p[400];
	int64_t id;
	ck_assert_msg(open_engine(&e, path, err, sizeof(err)) == SAGA_OK, "%s", err);
	ck_assert_int_eq(start_one(e, &id, uid), SAGA_OK);
	struct stat st;
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0600);
	snprintf(p, sizeof(p), "%s-lock", path);
	ck_assert_int_eq(stat(p, &st), 0);
	ck_assert_int_eq(st.st_mode & 0077, 0);
	saga_engine_close(e);
	/* Closed: the store and its lock file, nothing else. */
	DIR *d = opendir(dir);
	ck_assert_ptr_nonnull(d);
	struct dirent *de;
	while ((de = readdir(d))) {
		ck_assert_msg(strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
		                      strcmp(de->d_name, "s.db") == 0 ||
		                      strcmp(de->d_name, "s.db-lock") == 0,
		              "left beside the store: %s", de->d_name);
	}
	closedir(d);
	char why[256];
	ck_assert_msg(whole_store(path, why, sizeof(why)), "%s", why);
	ck_assert_msg(open_engine(&e, path, err, sizeof(err)) == SAGA_OK, "%s", err);
	saga_instance_info info;
	ck_assert_int_eq(saga_get(e, &info, id), SAGA_OK);
	ck_assert_str_eq(info.uid, uid);
	saga_engine_close(e);
}
END_TEST

/* The store's name chooses its backend: "sqlite:PATH" is the SQLite file
 * PATH (the same store as PATH); a PostgreSQL name, in a libsaga built
 * without PostgreSQL, is refused with SAGA_EINVAL and nothing is made. */
START_TEST(store_names_choose_the_backend)
{
	saga_engine *e = NULL;
	char err[512], uid[SAGA_UID_LEN + 1], named[400];
	int64_t id;
	snprintf(named, sizeof(named), "sqlite:%s", path);
	ck_assert_msg(open_engine(&e, named, err, sizeof(err)) == SAGA_OK, "%s", err);
	ck_assert_int_eq(start_one(e, &id, uid), SAGA_OK);
	saga_engine_close(e);
	ck_assert_msg(open_engine(&e, path, err, sizeof(err)) == SAGA_OK, "%s", err);
	saga_instance_info info;
	ck_assert_int_eq(saga_get(e, &info, id), SAGA_OK);
	ck_assert_str_eq(info.uid, uid);
	saga_engine_close(e);
#ifndef SAGA_HAVE_POSTGRESQL
	const char *pg[] = { "postgresql://saga@localhost/orders", "postgres://localhost/x",
		             "postgresql:host=/run/postgresql dbname=orders password=secret" };
	for (size_t i = 0; i < sizeof(pg) / sizeof(pg[0]); i++) {
		refused(pg[i], SAGA_EINVAL, "built without PostgreSQL support");
		struct stat st;
		ck_assert_int_ne(stat(pg[i], &st), 0); /* no file of that name */
	}
#endif
}
END_TEST

/* An empty, a 1-byte and a 100-byte file (the start of a real store's
 * header, application id included) are damage: refused with SAGA_ECORRUPT
 * naming the file, and left as they were. */
START_TEST(short_files_are_damage)
{
	char header[100], good[320];
	snprintf(good, sizeof(good), "%s/good.db", dir);
	saga_engine *e = NULL;
	char err[512];
	ck_assert_msg(open_engine(&e, good, err, sizeof(err)) == SAGA_OK, "%s", err);
	saga_engine_close(e);
	size_t n = 0;
	char *whole = read_file(good, &n);
	ck_assert_ptr_nonnull(whole);
	ck_assert_uint_ge(n, sizeof(header));
	memcpy(header, whole, sizeof(header));
	free(whole);

	static const size_t sizes[] = { 0, 1, 100 };
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		char p[320], side[340];
		snprintf(p, sizeof(p), "%s/cut%zu.db", dir, sizes[i]);
		write_file(p, header, sizes[i]);
		refused(p, SAGA_ECORRUPT, strrchr(p, '/') + 1);
		refused(p, SAGA_ECORRUPT, sizes[i] == 0 ? "empty" : "short");
		assert_same_file(p, header, sizes[i]);
		static const char *const sfx[] = { "-wal", "-shm", "-journal" };
		for (int k = 0; k < 3; k++) {
			snprintf(side, sizeof(side), "%s%s", p, sfx[k]);
			ck_assert_msg(!exists(side), "%s was created", side);
		}
	}
}
END_TEST

/* An empty file with a -wal beside it: both are left alone (SQLite would
 * delete the -wal of a zero-length database). */
START_TEST(empty_file_with_wal_left_alone)
{
	char wal[340];
	snprintf(wal, sizeof(wal), "%s-wal", path);
	write_file(path, "", 0);
	char frames[4096];
	for (size_t i = 0; i < sizeof(frames); i++)
		frames[i] = (char)(i * 7);
	write_file(wal, frames, sizeof(frames));
	refused(path, SAGA_ECORRUPT, "empty");
	assert_same_file(path, "", 0);
	assert_same_file(wal, frames, sizeof(frames));
}
END_TEST

/* A SQLite database that is not a libsaga store (no application id, no
 * tables: nothing libsaga ever wrote) is refused too. */
START_TEST(empty_sqlite_database_refused)
{
	sqlite3 *db = NULL;
	ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
	ck_assert_int_eq(sqlite3_exec(db,
	                              "PRAGMA journal_mode=WAL; CREATE TABLE x(y); DROP TABLE x",
	                              NULL, NULL, NULL),
	                 SQLITE_OK);
	ck_assert_int_eq(sqlite3_close(db), SQLITE_OK);
	size_t n = 0;
	char *before = read_file(path, &n);
	ck_assert_ptr_nonnull(before);
	refused(path, SAGA_ECORRUPT, "not a libsaga store");
	refused(path, SAGA_ECORRUPT, "s.db");
	assert_same_file(path, before, n);
	free(before);
}
END_TEST

/* A schema version libsaga never writes with its application id (0, or
 * negative) is damage, not a store to build from scratch or to index the
 * migrations with. */
START_TEST(impossible_schema_version)
{
	saga_engine *e = NULL;
	char err[512];
	ck_assert_msg(open_engine(&e, path, err, sizeof(err)) == SAGA_OK, "%s", err);
	saga_engine_close(e);
	static const char *const sql[] = { "PRAGMA user_version = -1", "PRAGMA user_version = 0" };
	for (int i = 0; i < 2; i++) {
		sqlite3 *db = NULL;
		ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
		ck_assert_int_eq(sqlite3_exec(db, sql[i], NULL, NULL, NULL), SQLITE_OK);
		ck_assert_int_eq(sqlite3_close(db), SQLITE_OK);
		refused(path, SAGA_ECORRUPT, "schema version");
	}
}
END_TEST

/* A store moved away (or deleted) without its -wal: no new store is made
 * beside the old -wal, which SQLite would read into it or delete. */
START_TEST(wal_without_store_refused)
{
	int fds[2];
	ck_assert_int_eq(pipe(fds), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(fds[0]);
		saga_engine *e = NULL;
		char err[512], uid[SAGA_UID_LEN + 1];
		int64_t id = 0;
		int rc = open_engine(&e, path, err, sizeof(err));
		for (int i = 0; i < 3 && rc == SAGA_OK; i++)
			rc = start_one(e, &id, uid);
		say(fds[1], "%d %lld\n", rc, (long long)id);
		for (;;)
			pause();
	}
	close(fds[1]);
	char line[64];
	FILE *in = fdopen(fds[0], "r");
	ck_assert_ptr_nonnull(in);
	ck_assert_ptr_nonnull(fgets(line, sizeof(line), in));
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	fclose(in);
	int rc;
	long long last;
	ck_assert_int_eq(sscanf(line, "%d %lld", &rc, &last), 2);
	ck_assert_int_eq(rc, SAGA_OK);

	char moved[340], wal[340];
	snprintf(moved, sizeof(moved), "%s/moved.db", dir);
	snprintf(wal, sizeof(wal), "%s-wal", path);
	ck_assert_int_eq(rename(path, moved), 0);
	size_t n = 0;
	char *frames = read_file(wal, &n);
	ck_assert_ptr_nonnull(frames);
	ck_assert_uint_gt(n, 0);
	refused(path, SAGA_ECORRUPT, "-wal");
	ck_assert(!exists(path));
	assert_same_file(wal, frames, n);
	free(frames);
	/* Put back, the store has every saga. */
	ck_assert_int_eq(rename(moved, path), 0);
	saga_engine *e = NULL;
	char err[512];
	ck_assert_msg(open_engine(&e, path, err, sizeof(err)) == SAGA_OK, "%s", err);
	saga_instance_info info;
	ck_assert_int_eq(saga_get(e, &info, last), SAGA_OK);
	saga_engine_close(e);
}
END_TEST

/* ---- SIGKILL at every file operation SQLite makes during a birth ------- */

/* In the child, SQLite's unix VFS calls these instead of the system calls;
 * the Nth call of any of them raises SIGKILL before it is made. */
static long kill_at, kill_calls;
static sqlite3_syscall_ptr real_open, real_close, real_write, real_pwrite, real_pwrite64,
        real_ftruncate, real_unlink;

static void count_call(void)
{
	if (++kill_calls == kill_at)
		raise(SIGKILL);
}

static int k_open(const char *p, int flags, int mode)
{
	count_call();
	return ((int (*)(const char *, int, int))real_open)(p, flags, mode);
}

static int k_close(int fd)
{
	count_call();
	return ((int (*)(int))real_close)(fd);
}

static ssize_t k_write(int fd, const void *buf, size_t n)
{
	count_call();
	return ((ssize_t(*)(int, const void *, size_t))real_write)(fd, buf, n);
}

static ssize_t k_pwrite(int fd, const void *buf, size_t n, off_t off)
{
	count_call();
	return ((ssize_t(*)(int, const void *, size_t, off_t))real_pwrite)(fd, buf, n, off);
}

static ssize_t k_pwrite64(int fd, const void *buf, size_t n, off_t off)
{
	count_call();
	return ((ssize_t(*)(int, const void *, size_t, off_t))real_pwrite64)(fd, buf, n, off);
}

static int k_ftruncate(int fd, off_t size)
{
	count_call();
	return ((int (*)(int, off_t))real_ftruncate)(fd, size);
}

static int k_unlink(const char *p)
{
	count_call();
	return ((int (*)(const char *))real_unlink)(p);
}

static void hook(sqlite3_vfs *v, const char *name, sqlite3_syscall_ptr *real,
                 sqlite3_syscall_ptr mine)
{
	*real = v->xGetSystemCall(v, name);
	if (*real && v->xSetSystemCall(v, name, mine) != SQLITE_OK)
		_exit(4);
}

static void arm_kill(long n)
{
	sqlite3_vfs *v = sqlite3_vfs_find("unix");
	if (!v || v->iVersion < 3)
		_exit(4);
	kill_at = n;
	kill_calls = 0;
	hook(v, "open", &real_open, (sqlite3_syscall_ptr)k_open);
	hook(v, "close", &real_close, (sqlite3_syscall_ptr)k_close);
	hook(v, "write", &real_write, (sqlite3_syscall_ptr)k_write);
	hook(v, "pwrite", &real_pwrite, (sqlite3_syscall_ptr)k_pwrite);
	hook(v, "pwrite64", &real_pwrite64, (sqlite3_syscall_ptr)k_pwrite64);
	hook(v, "ftruncate", &real_ftruncate, (sqlite3_syscall_ptr)k_ftruncate);
	hook(v, "unlink", &real_unlink, (sqlite3_syscall_ptr)k_unlink);
}

/* Waits for each of n children, which must have exited with 0. */
static void wait_children(const pid_t *pids, int n)
{
	for (int k = 0; k < n; k++) {
		int status;
		ck_assert_int_eq(waitpid(pids[k], &status, 0), pids[k]);
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d: status %#x",
		              k, status);
	}
}

/* Only the store and its lock file are left in `d` once the engine closed. */
static void only_store_left(const char *d)
{
	DIR *dd = opendir(d);
	ck_assert_ptr_nonnull(dd);
	struct dirent *de;
	while ((de = readdir(dd))) {
		ck_assert_msg(strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
		                      strcmp(de->d_name, "s.db") == 0 ||
		                      strcmp(de->d_name, "s.db-lock") == 0,
		              "%s: left beside the store: %s", d, de->d_name);
	}
	closedir(dd);
}

START_TEST(birth_killed_anywhere)
{
	long kills = 0, absent = 0, whole = 0;
	bool finished = false;
	for (long n = 1; n < 5000 && !finished; n++) {
		char d[300], p[340];
		snprintf(d, sizeof(d), "%s/n%ld", dir, n);
		ck_assert_int_eq(mkdir(d, 0700), 0);
		snprintf(p, sizeof(p), "%s/s.db", d);
		pid_t pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			saga_engine *e = NULL;
			char err[512], uid[SAGA_UID_LEN + 1];
			int64_t id;
			arm_kill(n);
			if (open_engine(&e, p, err, sizeof(err)) != SAGA_OK)
				_exit(2);
			if (start_one(e, &id, uid) != SAGA_OK)
				_exit(3);
			saga_engine_close(e);
			_exit(0);
		}
		int status = 0;
		ck_assert_int_eq(waitpid(pid, &status, 0), pid);
		if (WIFEXITED(status)) {
			ck_assert_msg(WEXITSTATUS(status) == 0, "kill point %ld: child exit %d", n,
			              WEXITSTATUS(status));
			finished = true;
		} else {
			ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
			kills++;
		}
		/* No store, or a whole one. */
		char why[256];
		if (!exists(p)) {
			absent += !finished;
		} else {
			ck_assert_msg(
			        whole_store(p, why, sizeof(why)),
			        "killed at SQLite file operation %ld: %s is not a whole store: %s",
			        n, p, why);
			whole += !finished;
		}
		/* Whatever the kill left, the next open works and tidies up. */
		saga_engine *e = NULL;
		char err[512];
		ck_assert_msg(open_engine(&e, p, err, sizeof(err)) == SAGA_OK,
		              "after a kill at point %ld: %s", n, err);
		saga_engine_close(e);
		ck_assert_msg(whole_store(p, why, sizeof(why)), "%s", why);
		only_store_left(d);
	}
	printf("store-open birth: %ld kill points (%ld left no store, %ld a whole one)\n", kills,
	       absent, whole);
	ck_assert(finished);
	/* The kills reached both sides of the rename. */
	ck_assert_int_gt(absent, 0);
	ck_assert_int_gt(whole, 0);
}
END_TEST

/* Processes creating the same store at once: the birth is made by one of
 * them under the lock file's byte 0, the others wait for it and open the
 * store it made; all of them work in it at once, and it ends whole with
 * every saga each of them started (a second birth renaming its store over
 * the first would lose the sagas started in the first). Each registers a
 * definition of its own: registering one definition from many processes at
 * once is concurrent_registrations_of_one_definition. */
#define CREATORS 4

START_TEST(two_creators)
{
	int go[2], res[2], hold[2];
	ck_assert_int_eq(pipe(go), 0);
	ck_assert_int_eq(pipe(res), 0);
	ck_assert_int_eq(pipe(hold), 0);
	pid_t pids[CREATORS];
	for (int k = 0; k < CREATORS; k++) {
		pids[k] = fork();
		ck_assert_int_ge(pids[k], 0);
		if (pids[k] == 0) {
			char c, err[512], uid[SAGA_UID_LEN + 1] = "-";
			saga_engine *e = NULL;
			int64_t id = 0;
			if (read(go[0], &c, 1) != 1)
				_exit(2);
			char def[8];
			snprintf(def, sizeof(def), "c%d", k);
			int rc = open_leased(&e, path, def, 0, err, sizeof(err));
			if (rc == SAGA_OK)
				rc = start_def(e, def, &id, uid);
			say(res[1], "%d %lld %s %.100s\n", rc, (long long)id, uid, err);
			if (read(hold[0], &c, 1) != 1)
				_exit(2);
			saga_engine_close(e);
			_exit(0);
		}
	}
	char gos[CREATORS], holds[CREATORS];
	memset(gos, 'g', sizeof(gos));
	memset(holds, 'h', sizeof(holds));
	ck_assert_int_eq(write(go[1], gos, sizeof(gos)), (ssize_t)sizeof(gos));
	int rcs[CREATORS];
	long long ids[CREATORS];
	char uids[CREATORS][SAGA_UID_LEN + 1], lines[CREATORS][256];
	for (int k = 0; k < CREATORS; k++) {
		char *line = lines[k];
		ssize_t got = 0;
		/* One short line each: "rc id uid message\n", written at once. */
		for (;;) {
			ck_assert_int_eq(read(res[0], line + got, 1), 1);
			if (line[got] == '\n')
				break;
			got++;
			ck_assert_int_lt(got, (ssize_t)sizeof(lines[k]) - 1);
		}
		line[got] = '\0';
		ck_assert_int_eq(sscanf(line, "%d %lld %32s", &rcs[k], &ids[k], uids[k]), 3);
	}
	ck_assert_int_eq(write(hold[1], holds, sizeof(holds)), (ssize_t)sizeof(holds));
	wait_children(pids, CREATORS);
	for (int k = 0; k < CREATORS; k++)
		ck_assert_msg(rcs[k] == SAGA_OK, "creator %d answered %s (%s)", k,
		              saga_strerror(rcs[k]), lines[k]);
	char why[256];
	ck_assert_msg(whole_store(path, why, sizeof(why)), "%s", why);
	only_store_left(dir);
	saga_engine *e = NULL;
	char err[512];
	ck_assert_msg(open_engine(&e, path, err, sizeof(err)) == SAGA_OK, "%s", err);
	for (int k = 0; k < CREATORS; k++) {
		saga_instance_info info;
		char def[8];
		snprintf(def, sizeof(def), "c%d", k);
		ck_assert_int_eq(register_def(e, def), SAGA_OK);
		ck_assert_int_eq(saga_get(e, &info, ids[k]), SAGA_OK);
		ck_assert_str_eq(info.uid, uids[k]);
	}
	int64_t counts[SAGA_STATE_COUNT];
	ck_assert_int_eq(saga_run_until_idle(e), SAGA_OK);
	ck_assert_int_eq(saga_counts(e, counts), SAGA_OK);
	ck_assert_int_eq(counts[SAGA_COMPLETED], CREATORS);
	saga_engine_close(e);
}
END_TEST

/* Processes that register the same new definition on one store at once
 * all succeed (replicas of one service starting together). A registration
 * that read the definitions table and then inserted, in two statements,
 * let two processes both read "absent": the second insert failed on the
 * primary key (SAGA_EEXISTS, "UNIQUE constraint failed"; this test caught
 * it in 6 to 9 of 12 registrations). The window is held open here by
 * another connection's write transaction, taken before the registrars go
 * and rolled back a moment later: their reads go through, their writes
 * wait for it. */
#define REGISTRARS 4
#define ROUNDS     3

START_TEST(concurrent_registrations_of_one_definition)
{
	saga_engine *e = NULL;
	char err[512];
	ck_assert_msg(open_engine(&e, path, err, sizeof(err)) == SAGA_OK, "%s", err);
	saga_engine_close(e);
	int go[REGISTRARS][2], res[2];
	ck_assert_int_eq(pipe(res), 0);
	pid_t pids[REGISTRARS];
	for (int k = 0; k < REGISTRARS; k++) {
		ck_assert_int_eq(pipe(go[k]), 0);
		pids[k] = fork();
		ck_assert_int_ge(pids[k], 0);
		if (pids[k] == 0) {
			saga_options o = SAGA_OPTIONS_INIT;
			o.path = path;
			if (saga_engine_open(&e, &o, err, sizeof(err)) != SAGA_OK)
				_exit(2);
			for (int r = 0; r < ROUNDS; r++) {
				char name[16], c;
				snprintf(name, sizeof(name), "d%d", r);
				if (read(go[k][0], &c, 1) != 1)
					_exit(2);
				int rc = register_def(e, name);
				say(res[1], "%d %d %.200s\n", r, rc,
				    rc ? saga_engine_errmsg(e) : "");
			}
			saga_engine_close(e);
			_exit(0);
		}
	}
	close(res[1]);
	FILE *in = fdopen(res[0], "r");
	ck_assert_ptr_nonnull(in);
	sqlite3 *db = NULL;
	ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_busy_timeout(db, 5000), SQLITE_OK);
	int failed = 0, answers = 0;
	char first[400] = "";
	for (int r = 0; r < ROUNDS; r++) {
		ck_assert_int_eq(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
		for (int k = 0; k < REGISTRARS; k++)
			ck_assert_int_eq(write(go[k][1], "g", 1), 1);
		nap_ms(200);
		ck_assert_int_eq(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
		for (int k = 0; k < REGISTRARS; k++) {
			char line[400];
			int round, rc;
			ck_assert_ptr_nonnull(fgets(line, sizeof(line), in));
			ck_assert_int_eq(sscanf(line, "%d %d", &round, &rc), 2);
			ck_assert_int_eq(round, r);
			answers++;
			if (rc != SAGA_OK && failed++ == 0)
				snprintf(first, sizeof(first), "%s", line);
		}
	}
	fclose(in);
	ck_assert_int_eq(sqlite3_close(db), SQLITE_OK);
	for (int k = 0; k < REGISTRARS; k++)
		close(go[k][1]);
	wait_children(pids, REGISTRARS);
	ck_assert_int_eq(answers, REGISTRARS * ROUNDS);
	ck_assert_msg(failed == 0, "%d of %d concurrent registrations failed; the first: %s",
	              failed, answers, first);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* A store of schema version 3 is migrated                                  */

/* Schema version 3 as libsaga wrote it (migrations never change): one
 * store-wide history seq, kept in the counters row. */
static const char v3_schema[] =
        "PRAGMA journal_mode=WAL;"
        "CREATE TABLE definitions("
        "  name TEXT NOT NULL, version INTEGER NOT NULL, snapshot TEXT NOT NULL,"
        "  PRIMARY KEY(name, version));"
        "CREATE TABLE instances("
        "  id INTEGER PRIMARY KEY, uid TEXT NOT NULL UNIQUE,"
        "  def_name TEXT NOT NULL, def_version INTEGER NOT NULL, business_key TEXT,"
        "  state INTEGER NOT NULL, phase INTEGER NOT NULL, step INTEGER NOT NULL,"
        "  attempt INTEGER NOT NULL, inflight INTEGER NOT NULL, pending INTEGER NOT NULL,"
        "  pivot_done INTEGER NOT NULL, reason INTEGER NOT NULL,"
        "  fwd_started INTEGER NOT NULL, comp_done_any INTEGER NOT NULL,"
        "  due_at INTEGER NOT NULL, deadline_at INTEGER NOT NULL,"
        "  attempt_deadline INTEGER NOT NULL, step_since INTEGER NOT NULL,"
        "  prev_delay INTEGER NOT NULL, created_at INTEGER NOT NULL,"
        "  updated_at INTEGER NOT NULL, error TEXT NOT NULL, context TEXT NOT NULL,"
        "  finished_at INTEGER NOT NULL);"
        "CREATE UNIQUE INDEX instances_bkey ON instances(business_key)"
        "  WHERE business_key IS NOT NULL;"
        "CREATE INDEX instances_waiting ON instances(due_at) WHERE state = 1;"
        "CREATE INDEX instances_state ON instances(state) WHERE state < 3;"
        "CREATE INDEX instances_finished ON instances(state, finished_at) WHERE state >= 3;"
        "CREATE TABLE history("
        "  instance INTEGER NOT NULL, seq INTEGER NOT NULL, at INTEGER NOT NULL,"
        "  type INTEGER NOT NULL, state INTEGER NOT NULL, step INTEGER NOT NULL,"
        "  phase INTEGER NOT NULL, attempt INTEGER NOT NULL, outcome INTEGER NOT NULL,"
        "  detail TEXT NOT NULL, PRIMARY KEY(instance, seq)) WITHOUT ROWID;"
        "CREATE TABLE counters(next_seq INTEGER NOT NULL);"
        "PRAGMA application_id = 1396787009;" /* 0x53414741, "SAGA" */
        "PRAGMA user_version = 3;";

#define V3_INSTANCE_COLUMNS                                                           \
	"id, uid, def_name, def_version, business_key, state, phase, step, attempt,"  \
	" inflight, pending, pivot_done, reason, fwd_started, comp_done_any, due_at," \
	" deadline_at, attempt_deadline, step_since, prev_delay, created_at,"         \
	" updated_at, error, context, finished_at"

static saga_step_result b_answer = SAGA_STEP_OK;

static saga_step_result step_b(saga_step_ctx *ctx, void *user)
{
	(void)ctx;
	(void)user;
	return b_answer;
}

/* "m": a, b (its answer is b_answer), c. */
static saga_definition *make_def3(void)
{
	saga_definition *d = NULL;
	const saga_step_spec specs[] = { { "a", SAGA_STEP_RETRIABLE, step_ok, NULL, NULL },
		                         { "b", SAGA_STEP_RETRIABLE, step_b, NULL, NULL },
		                         { "c", SAGA_STEP_RETRIABLE, step_ok, NULL, NULL } };
	ck_assert_int_eq(saga_definition_new(&d, "m", 1), SAGA_OK);
	for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++)
		ck_assert_int_eq(saga_definition_add_step(d, &specs[i]), SAGA_OK);
	return d;
}

static saga_engine *open_m(const char *p)
{
	saga_options o = SAGA_OPTIONS_INIT;
	saga_engine *e = NULL;
	char err[512];
	o.path = p;
	o.seed = 7;
	ck_assert_msg(saga_engine_open(&e, &o, err, sizeof(err)) == SAGA_OK, "open %s: %s", p, err);
	saga_definition *d = make_def3();
	ck_assert_int_eq(saga_engine_register(e, d), SAGA_OK);
	saga_definition_free(d);
	return e;
}

static int64_t sql_int(sqlite3 *db, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int64_t sql_int(sqlite3 *db, const char *fmt, ...)
{
	char sql[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(sql, sizeof(sql), fmt, ap);
	va_end(ap);
	sqlite3_stmt *st = NULL;
	ck_assert_msg(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK, "%s: %s", sql,
	              sqlite3_errmsg(db));
	ck_assert_msg(sqlite3_step(st) == SQLITE_ROW, "%s: %s", sql, sqlite3_errmsg(db));
	int64_t v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

struct seqs {
	int n;
	int64_t seq[64], fence[64];
	saga_state last;
};

static int collect(const saga_event *ev, void *user)
{
	struct seqs *s = user;
	ck_assert_int_lt(s->n, 64);
	s->seq[s->n] = ev->seq;
	s->fence[s->n] = ev->fence;
	s->n++;
	s->last = ev->state;
	return 0;
}

/* A schema-3 store at `path`, built by hand from the rows of one this
 * libsaga wrote (at dir/src.db): three instances, COMPLETED, WAITING for an
 * async completion, and RUNNING but never run; their history with
 * store-wide seqs (3 * seq + which instance: unique, interleaved, the
 * waiting one's rows below the others', so the store-wide counter is not
 * its next seq). */
struct v3_store {
	char src[320];
	int64_t ids[3], old_rows[3], old_max[3];
};

static void make_v3_store(struct v3_store *v)
{
	snprintf(v->src, sizeof(v->src), "%s/src.db", dir);
	saga_engine *e = open_m(v->src);
	ck_assert_int_eq(saga_start(e, &v->ids[0], NULL, "m", NULL, NULL), SAGA_OK);
	ck_assert_int_eq(saga_run_until_idle(e), SAGA_OK);
	b_answer = SAGA_STEP_PENDING;
	ck_assert_int_eq(saga_start(e, &v->ids[1], NULL, "m", NULL, NULL), SAGA_OK);
	ck_assert_int_eq(saga_run_until_idle(e), SAGA_OK);
	b_answer = SAGA_STEP_OK;
	ck_assert_int_eq(saga_start(e, &v->ids[2], NULL, "m", NULL, NULL), SAGA_OK);
	ck_assert_int_eq(state_of(e, v->ids[0]), SAGA_COMPLETED);
	ck_assert_int_eq(state_of(e, v->ids[1]), SAGA_WAITING);
	ck_assert_int_eq(state_of(e, v->ids[2]), SAGA_RUNNING);
	saga_engine_close(e);

	sqlite3 *db = NULL;
	char *msg = NULL;
	ck_assert_int_eq(
	        sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL),
	        SQLITE_OK);
	ck_assert_msg(sqlite3_exec(db, v3_schema, NULL, NULL, &msg) == SQLITE_OK, "%s", msg);
	char sql[2048];
	snprintf(sql, sizeof(sql),
	         "ATTACH '%s' AS cur;"
	         "INSERT INTO definitions SELECT name, version, snapshot FROM cur.definitions;"
	         "INSERT INTO instances(" V3_INSTANCE_COLUMNS ") SELECT " V3_INSTANCE_COLUMNS
	         " FROM cur.instances;"
	         "INSERT INTO history SELECT instance, 3 * seq + CASE instance WHEN %lld THEN 0"
	         " WHEN %lld THEN 1 ELSE 2 END, at, type, state, step, phase, attempt, outcome,"
	         " detail FROM cur.history;"
	         "INSERT INTO counters SELECT max(seq) + 1 FROM history;"
	         "DETACH cur",
	         v->src, (long long)v->ids[0], (long long)v->ids[1]);
	ck_assert_msg(sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK, "%s", msg);
	for (int k = 0; k < 3; k++) {
		v->old_rows[k] = sql_int(db, "SELECT count(*) FROM history WHERE instance = %lld",
		                         (long long)v->ids[k]);
		v->old_max[k] = sql_int(db, "SELECT max(seq) FROM history WHERE instance = %lld",
		                        (long long)v->ids[k]);
		ck_assert_int_gt(v->old_rows[k], 0);
	}
	int64_t store_next = sql_int(db, "SELECT next_seq FROM counters");
	ck_assert_int_lt(v->old_max[1] + 1, store_next);
	ck_assert_int_eq(sqlite3_close(db), SQLITE_OK);
}

/* The store at `path` is of schema 4 as a store born of this libsaga, each
 * instance's next_seq its own max(seq) + 1, every instance in the pool, the
 * old history rows under fence 0. */
static void check_v3_migrated(const struct v3_store *v)
{
	sqlite3 *db = NULL;
	ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	ck_assert_int_eq(sql_int(db, "PRAGMA user_version"), SCHEMA_VERSION);
	ck_assert_int_eq(sql_int(db, "SELECT count(*) FROM sqlite_schema WHERE name = 'counters'"),
	                 0);
	for (int k = 0; k < 3; k++) {
		ck_assert_int_eq(sql_int(db, "SELECT next_seq FROM instances WHERE id = %lld",
		                         (long long)v->ids[k]),
		                 v->old_max[k] + 1);
		ck_assert_int_eq(sql_int(db, "SELECT owner FROM instances WHERE id = %lld",
		                         (long long)v->ids[k]),
		                 0);
	}
	ck_assert_int_eq(sql_int(db, "SELECT count(*) FROM history WHERE fence <> 0"), 0);
	char sql[400];
	snprintf(sql, sizeof(sql), "ATTACH '%s' AS cur", v->src);
	ck_assert_int_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	ck_assert_int_eq(sql_int(db, "SELECT count(*) FROM (SELECT type, name FROM"
	                             " main.sqlite_schema EXCEPT SELECT type, name FROM"
	                             " cur.sqlite_schema)"),
	                 0);
	ck_assert_int_eq(sql_int(db, "SELECT count(*) FROM (SELECT type, name FROM"
	                             " cur.sqlite_schema EXCEPT SELECT type, name FROM"
	                             " main.sqlite_schema)"),
	                 0);
	ck_assert_int_eq(sqlite3_close(db), SQLITE_OK);
}

/* The schema-3 store opened: migrated before anything runs; the unfinished
 * instances run to the end, their history going on in order from where it
 * stopped. */
START_TEST(schema_3_store_migrated)
{
	struct v3_store v;
	make_v3_store(&v);
	const int64_t *ids = v.ids, *old_rows = v.old_rows, *old_max = v.old_max;
	saga_engine *e = open_m(path);
	check_v3_migrated(&v);

	/* The waiting one is completed, the fresh one claimed from the pool. */
	saga_pending_step pend[4];
	size_t np = 0;
	ck_assert_int_eq(saga_list_pending(e, pend, &np, 4, 0), SAGA_OK);
	ck_assert_int_eq(np, 1);
	ck_assert_int_eq(pend[0].instance, ids[1]);
	ck_assert_int_eq(saga_complete(e, pend[0].key, SAGA_STEP_OK, NULL), SAGA_OK);
	ck_assert_int_eq(saga_run_until_idle(e), SAGA_OK);
	for (int k = 0; k < 3; k++) {
		struct seqs h = { 0 };
		ck_assert_int_eq(saga_history(e, ids[k], collect, &h), SAGA_OK);
		ck_assert_int_eq(h.last, SAGA_COMPLETED);
		ck_assert_int_ge(h.n, old_rows[k]);
		for (int i = 1; i < h.n; i++)
			ck_assert_msg(h.seq[i] > h.seq[i - 1], "instance %d: seq %lld after %lld",
			              k, (long long)h.seq[i], (long long)h.seq[i - 1]);
		/* The rows of schema 3 kept their seqs. */
		for (int i = 0; i < old_rows[k]; i++)
			ck_assert_int_eq(h.seq[i] % 3, k);
		ck_assert_int_eq(h.seq[old_rows[k] - 1], old_max[k]);
		/* The rows written since: from old max + 1 on, one by one, under a
		 * fence of this owner's. */
		for (int i = (int)old_rows[k]; i < h.n; i++) {
			ck_assert_int_eq(h.seq[i], old_max[k] + 1 + (i - old_rows[k]));
			ck_assert_int_ge(h.fence[i], 1);
		}
		if (k == 0)
			ck_assert_int_eq(h.n, old_rows[0]);
		else
			ck_assert_int_gt(h.n, old_rows[k]);
	}
	saga_engine_close(e);
	char why[256];
	ck_assert_msg(whole_store(path, why, sizeof(why)), "%s", why);
}
END_TEST

/* Processes opening the schema-3 store at once: one migrates it under the
 * lock file's byte 0, the others wait and open the migrated store (each
 * reading the version before the migration and running it again would
 * fail on its tables, or number the history twice); then every instance
 * runs to the end. */
#define MIGRATORS 4

START_TEST(schema_3_store_migrated_by_many_at_once)
{
	struct v3_store v;
	make_v3_store(&v);
	int go[2], res[2];
	ck_assert_int_eq(pipe(go), 0);
	ck_assert_int_eq(pipe(res), 0);
	pid_t pids[MIGRATORS];
	for (int k = 0; k < MIGRATORS; k++) {
		pids[k] = fork();
		ck_assert_int_ge(pids[k], 0);
		if (pids[k] == 0) {
			saga_options o = SAGA_OPTIONS_INIT;
			saga_engine *e = NULL;
			char err[512] = "", c;
			o.path = path;
			if (read(go[0], &c, 1) != 1)
				_exit(2);
			int rc = saga_engine_open(&e, &o, err, sizeof(err));
			say(res[1], "%d %.200s\n", rc, err);
			saga_engine_close(e);
			_exit(0);
		}
	}
	close(res[1]);
	char gos[MIGRATORS];
	memset(gos, 'g', sizeof(gos));
	ck_assert_int_eq(write(go[1], gos, sizeof(gos)), (ssize_t)sizeof(gos));
	FILE *in = fdopen(res[0], "r");
	ck_assert_ptr_nonnull(in);
	char line[300];
	int answers = 0;
	while (fgets(line, sizeof(line), in)) {
		ck_assert_msg(atoi(line) == SAGA_OK, "a process opening the store: %s", line);
		answers++;
	}
	fclose(in);
	wait_children(pids, MIGRATORS);
	ck_assert_int_eq(answers, MIGRATORS);
	check_v3_migrated(&v);
	saga_engine *e = open_m(path);
	saga_pending_step pend[4];
	size_t np = 0;
	ck_assert_int_eq(saga_list_pending(e, pend, &np, 4, 0), SAGA_OK);
	ck_assert_int_eq(np, 1);
	ck_assert_int_eq(saga_complete(e, pend[0].key, SAGA_STEP_OK, NULL), SAGA_OK);
	ck_assert_int_eq(saga_run_until_idle(e), SAGA_OK);
	for (int k = 0; k < 3; k++)
		ck_assert_int_eq(state_of(e, v.ids[k]), SAGA_COMPLETED);
	saga_engine_close(e);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("store-open");
	TCase *tc = tcase_create("store-open");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 110);
	tcase_add_test(tc, second_open_keeps_the_locks);
	tcase_add_test(tc, second_open_same_process_store_keeps_working);
	tcase_add_test(tc, older_libsaga_kept_out);
	tcase_add_test(tc, one_owner_whatever_the_spelling);
	tcase_add_test(tc, one_owner_from_another_process);
	tcase_add_test(tc, liveness_seen_in_the_lock_file_only);
	tcase_add_test(tc, hard_links_and_dangling_links);
	tcase_add_test(tc, new_store_works);
	tcase_add_test(tc, store_names_choose_the_backend);
	tcase_add_test(tc, short_files_are_damage);
	tcase_add_test(tc, empty_file_with_wal_left_alone);
	tcase_add_test(tc, empty_sqlite_database_refused);
	tcase_add_test(tc, impossible_schema_version);
	tcase_add_test(tc, wal_without_store_refused);
	tcase_add_test(tc, birth_killed_anywhere);
	tcase_add_test(tc, two_creators);
	tcase_add_test(tc, schema_3_store_migrated);
	tcase_add_test(tc, schema_3_store_migrated_by_many_at_once);
	tcase_add_test(tc, concurrent_registrations_of_one_definition);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
