/* Opening a store: one engine per store file whatever the name it is given,
 * a refused open that leaves the open engine's SQLite locks alone, and a new
 * store that is born whole or not at all, so that an existing empty or short
 * file is damage. Real files, real processes (fork) and real SIGKILLs.
 * SPDX-License-Identifier: MIT */
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
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define APPLICATION_ID 0x53414741 /* "SAGA" */
#define SCHEMA_VERSION 3

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

static saga_definition *make_def(void)
{
	saga_definition *d = NULL;
	saga_step_spec spec = { "only", SAGA_STEP_RETRIABLE, step_ok, NULL, NULL };
	if (saga_definition_new(&d, "t", 1) != SAGA_OK)
		return NULL;
	if (saga_definition_add_step(d, &spec) != SAGA_OK) {
		saga_definition_free(d);
		return NULL;
	}
	return d;
}

/* Opens an engine (caller-driven) on `p` with the definition registered. */
static int open_engine(saga_engine **e, const char *p, char *err, size_t size)
{
	saga_options o = SAGA_OPTIONS_INIT;
	o.path = p;
	o.seed = 7;
	err[0] = '\0';
	int rc = saga_engine_open(e, &o, err, size);
	if (rc)
		return rc;
	saga_definition *d = make_def();
	rc = d ? saga_engine_register(*e, d) : SAGA_ENOMEM;
	saga_definition_free(d);
	if (rc) {
		snprintf(err, size, "register: %s", saga_engine_errmsg(*e));
		saga_engine_close(*e);
		*e = NULL;
	}
	return rc;
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
 * id, the current schema version, the tables. */
static bool whole_store(const char *p, char *why, size_t size)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	bool ok = false;
	if (sqlite3_open_v2(p, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
		snprintf(why, size, "open: %s", db ? sqlite3_errmsg(db) : "?");
		goto out;
	}
	if (sqlite3_prepare_v2(db,
	                       "SELECT (SELECT application_id FROM pragma_application_id),"
	                       " (SELECT user_version FROM pragma_user_version),"
	                       " (SELECT count(*) FROM instances), (SELECT count(*) FROM history)",
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
	ok = true;
out:
	sqlite3_finalize(st);
	sqlite3_close(db);
	return ok;
}

/* Starts one instance of "t"; its id and uid. */
static int start_one(saga_engine *e, int64_t *id, char uid[SAGA_UID_LEN + 1])
{
	int rc = saga_start(e, id, NULL, "t", NULL, NULL);
	if (rc)
		return rc;
	saga_instance_info info;
	if ((rc = saga_get(e, &info, *id)))
		return rc;
	memcpy(uid, info.uid, SAGA_UID_LEN + 1);
	return SAGA_OK;
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

/* ------------------------------------------------------------------------ */
/* A refused second open leaves the first engine's locks alone              */

#define BEFORE 3 /* sagas started before the refused open */
#define AFTER  5 /* and after the other process's read */

/* The child: an engine, sagas, a refused second open on the same store,
 * then (once the parent has read the store) more sagas; every saga whose
 * saga_start returned 0 is reported as "S id uid". Waits to be killed. */
static void locks_child(int out, int in)
{
	saga_engine *e = NULL, *e2 = (saga_engine *)1;
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
	saga_options o = SAGA_OPTIONS_INIT;
	o.path = path;
	rc = saga_engine_open(&e2, &o, err, sizeof(err));
	say(out, "B %d\n", rc);
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

START_TEST(refused_open_keeps_the_locks)
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
	} started[BEFORE + AFTER];
	int nstarted = 0, busy = 1, done = 0;
	char line[256];
	while (!done && fgets(line, sizeof(line), in)) {
		if (line[0] == 'S') {
			ck_assert_int_lt(nstarted, BEFORE + AFTER);
			ck_assert_int_eq(sscanf(line, "S %lld %32s", &started[nstarted].id,
			                        started[nstarted].uid),
			                 2);
			nstarted++;
		} else if (line[0] == 'B') {
			ck_assert_int_eq(sscanf(line, "B %d", &busy), 1);
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
			ck_assert_int_eq(sqlite3_column_int(st, 0), BEFORE);
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
	ck_assert_msg(busy == SAGA_EBUSY, "the second open in the child answered %d", busy);
	ck_assert_int_eq(nstarted, BEFORE + AFTER);

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
	saga_engine_close(e);
	ck_assert_msg(lost == 0, "%d of %d sagas whose saga_start returned 0 were lost", lost,
	              nstarted);
}
END_TEST

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

/* In one process: a refused open leaves SQLite's lock on the database file
 * with the engine (another process sees it), and the engine goes on. */
START_TEST(refused_open_same_process_store_keeps_working)
{
	saga_engine *e = NULL;
	char err[512], uid[SAGA_UID_LEN + 1];
	int64_t id;
	ck_assert_msg(open_engine(&e, path, err, sizeof(err)) == SAGA_OK, "%s", err);
	ck_assert_int_eq(start_one(e, &id, uid), SAGA_OK);
	ck_assert_msg(shared_lock_held(path), "no SHARED lock on an open store");
	for (int i = 0; i < 3; i++) {
		refused(path, SAGA_EBUSY, "in use");
		ck_assert_msg(shared_lock_held(path), "a refused open dropped the engine's locks");
		ck_assert_int_eq(start_one(e, &id, uid), SAGA_OK);
	}
	ck_assert_int_eq(saga_run_until_idle(e), SAGA_OK);
	int64_t counts[SAGA_STATE_COUNT];
	ck_assert_int_eq(saga_counts(e, counts), SAGA_OK);
	ck_assert_int_eq(counts[SAGA_COMPLETED], 4);
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

START_TEST(one_owner_whatever_the_spelling)
{
	make_names();
	saga_engine *e = NULL;
	char err[512], p[1400], rel[1200];
	/* The store is created through a symlinked directory... */
	snprintf(p, sizeof(p), "%s/alias/s.db", dir);
	ck_assert_msg(open_engine(&e, p, err, sizeof(err)) == SAGA_OK, "%s", err);
	ck_assert(exists(store));
	/* ...and every other name of it is refused while the engine runs. */
	const char *const forms[] = { "%s/real/s.db",     "%s/real/./s.db",
		                      "%s/real//s.db",    "%s/real/sub/../s.db",
		                      "%s/real/link.db",  "%s/alias/s.db",
		                      "%s/alias/link.db", "%s/./alias/../real/s.db" };
	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		snprintf(p, sizeof(p), forms[i], dir);
		refused(p, SAGA_EBUSY, "in use");
		relative_to_cwd(rel, sizeof(rel), p);
		refused(rel, SAGA_EBUSY, "in use");
		snprintf(p, sizeof(p), "./%s", rel);
		refused(p, SAGA_EBUSY, "in use");
	}
	/* "file:" names are not file names: refused, never read as URIs. */
	snprintf(p, sizeof(p), "file:%s", store);
	refused(p, SAGA_EINVAL, "not URIs");
	relative_to_cwd(rel, sizeof(rel), store);
	snprintf(p, sizeof(p), "file:%s", rel);
	refused(p, SAGA_EINVAL, "not URIs");
	snprintf(p, sizeof(p), "file:%s?mode=rw", rel);
	refused(p, SAGA_EINVAL, "not URIs");
	saga_engine_close(e);
}
END_TEST

/* The same from a second process that works in the store's directory: short
 * relative names, "file:" names, ":memory:", a file named "file:...". */
START_TEST(one_owner_from_another_process)
{
	make_names();
	saga_engine *e = NULL;
	char err[512];
	ck_assert_msg(open_engine(&e, store, err, sizeof(err)) == SAGA_OK, "%s", err);
	static const struct {
		const char *name;
		int want;
	} tries[] = {
		{ "s.db", SAGA_EBUSY },          { "./s.db", SAGA_EBUSY },
		{ "sub/../s.db", SAGA_EBUSY },   { "link.db", SAGA_EBUSY },
		{ "../alias/s.db", SAGA_EBUSY }, { "../alias/link.db", SAGA_EBUSY },
		{ ".//s.db", SAGA_EBUSY },       { "file:s.db", SAGA_EINVAL },
		{ "file:./s.db", SAGA_EINVAL },  { "file:link.db", SAGA_EINVAL },
	};
	int n = (int)(sizeof(tries) / sizeof(tries[0]));
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
			o.path = tries[i].name;
			int rc = saga_engine_open(&e2, &o, err, sizeof(err));
			say(fds[1], "%d %d %s\n", i, rc, err);
			saga_engine_close(e2);
		}
		/* A file whose name begins with "file:" is reached as
		 * "./file:...", and ":memory:" is a file name like any other:
		 * both are durable stores with one owner. */
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
			ck_assert_msg(rc == SAGA_OK && rc2 == SAGA_EBUSY && rc3 == SAGA_OK,
			              "child, %s", line);
			odd_seen++;
		} else {
			ck_assert_int_eq(sscanf(line, "%d %d", &i, &rc), 2);
			ck_assert_int_lt(i, n);
			ck_assert_msg(rc == tries[i].want, "child, '%s' (in %s): %s", tries[i].name,
			              real_dir, line);
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
	char p[400];
	snprintf(p, sizeof(p), "%s/file:odd.db", real_dir);
	ck_assert(exists(p));
	snprintf(p, sizeof(p), "%s/:memory:", real_dir);
	ck_assert(exists(p));
	/* No file was created under a name the refused spellings gave. */
	snprintf(p, sizeof(p), "%s/file:s.db", real_dir);
	ck_assert(!exists(p));
	snprintf(p, sizeof(p), "%s/file:", real_dir);
	ck_assert(!exists(p));
	saga_engine_close(e);
}
END_TEST

/* A second name for the same file by a hard link would give it a second
 * -wal: a store with more than one link is refused. A symbolic link to
 * nothing is refused rather than replaced by a file. */
START_TEST(hard_links_and_dangling_links)
{
	make_names();
	saga_engine *e = NULL;
	char err[512], hard[400], dangling[400], target[400];
	ck_assert_msg(open_engine(&e, store, err, sizeof(err)) == SAGA_OK, "%s", err);
	snprintf(hard, sizeof(hard), "%s/hard.db", real_dir);
	ck_assert_int_eq(link(store, hard), 0);
	refused(hard, SAGA_EINVAL, "hard link");
	refused(store, SAGA_EBUSY, "in use");
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

/* Two processes creating the same store at once: one builds it, the other
 * is refused while the first holds it; the store is whole. */
START_TEST(two_creators)
{
	int go[2], res[2], hold[2];
	ck_assert_int_eq(pipe(go), 0);
	ck_assert_int_eq(pipe(res), 0);
	ck_assert_int_eq(pipe(hold), 0);
	pid_t pids[2];
	for (int k = 0; k < 2; k++) {
		pids[k] = fork();
		ck_assert_int_ge(pids[k], 0);
		if (pids[k] == 0) {
			char c, err[512];
			saga_engine *e = NULL;
			if (read(go[0], &c, 1) != 1)
				_exit(2);
			int rc = open_engine(&e, path, err, sizeof(err));
			say(res[1], "%d\n", rc);
			if (read(hold[0], &c, 1) != 1)
				_exit(2);
			saga_engine_close(e);
			_exit(0);
		}
	}
	ck_assert_int_eq(write(go[1], "gg", 2), 2);
	int rcs[2];
	for (int k = 0; k < 2; k++) {
		char line[32];
		ssize_t got = 0;
		/* One short line each: "rc\n". */
		for (;;) {
			ck_assert_int_eq(read(res[0], line + got, 1), 1);
			if (line[got] == '\n')
				break;
			got++;
			ck_assert_int_lt(got, (ssize_t)sizeof(line) - 1);
		}
		line[got] = '\0';
		rcs[k] = atoi(line);
	}
	ck_assert_int_eq(write(hold[1], "hh", 2), 2);
	for (int k = 0; k < 2; k++) {
		int status;
		ck_assert_int_eq(waitpid(pids[k], &status, 0), pids[k]);
		ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	ck_assert_msg((rcs[0] == SAGA_OK && rcs[1] == SAGA_EBUSY) ||
	                      (rcs[1] == SAGA_OK && rcs[0] == SAGA_EBUSY),
	              "two creators answered %d and %d", rcs[0], rcs[1]);
	char why[256];
	ck_assert_msg(whole_store(path, why, sizeof(why)), "%s", why);
	only_store_left(dir);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("store-open");
	TCase *tc = tcase_create("store-open");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 110);
	tcase_add_test(tc, refused_open_keeps_the_locks);
	tcase_add_test(tc, refused_open_same_process_store_keeps_working);
	tcase_add_test(tc, one_owner_whatever_the_spelling);
	tcase_add_test(tc, one_owner_from_another_process);
	tcase_add_test(tc, hard_links_and_dangling_links);
	tcase_add_test(tc, new_store_works);
	tcase_add_test(tc, short_files_are_damage);
	tcase_add_test(tc, empty_file_with_wal_left_alone);
	tcase_add_test(tc, empty_sqlite_database_refused);
	tcase_add_test(tc, impossible_schema_version);
	tcase_add_test(tc, wal_without_store_refused);
	tcase_add_test(tc, birth_killed_anywhere);
	tcase_add_test(tc, two_creators);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
