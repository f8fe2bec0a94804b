/* Opening and closing a SQLite store: its canonical path, the lock file
 * and its byte locks, the birth of a new store, the checks of what the file
 * is, the schema and its migrations, and the statements prepared at open.
 * SPDX-License-Identifier: MIT */
#define _GNU_SOURCE /* F_OFD_SETLK */
#include "store_sqlite_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SAGA_APPLICATION_ID 0x53414741 /* "SAGA" */

/* Forward migrations: schema version i+1 is reached by running migrations[i]. */
static const char *const migrations[] = {
	/* 1 */
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
	"CREATE INDEX history_instance ON history(instance, seq);",
	/* 2: purging by age finds finished instances without a scan */
	"CREATE INDEX instances_finished ON instances(state, updated_at) WHERE state >= 3;",
	/* 3: one b-tree for the history, keyed by (instance, seq), with the next
	 * seq kept in a one-row table; the purge index on finished_at, a column
	 * that only changes with the state, so that a step's progress rewrites
	 * the row without touching any index; business keys indexed only where
	 * there is one. */
	"CREATE TABLE history_v3("
	"  instance INTEGER NOT NULL, seq INTEGER NOT NULL, at INTEGER NOT NULL,"
	"  type INTEGER NOT NULL, state INTEGER NOT NULL, step INTEGER NOT NULL,"
	"  phase INTEGER NOT NULL, attempt INTEGER NOT NULL, outcome INTEGER NOT NULL,"
	"  detail TEXT NOT NULL, PRIMARY KEY(instance, seq)) WITHOUT ROWID;"
	"INSERT INTO history_v3 SELECT instance, seq, at, type, state, step, phase, attempt,"
	"  outcome, detail FROM history;"
	"CREATE TABLE counters(next_seq INTEGER NOT NULL);"
	"INSERT INTO counters SELECT coalesce(max(seq), 0) + 1 FROM history;"
	"DROP TABLE history;"
	"ALTER TABLE history_v3 RENAME TO history;"
	"CREATE TABLE instances_v3("
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
	"INSERT INTO instances_v3 SELECT id, uid, def_name, def_version, business_key, state,"
	"  phase, step, attempt, inflight, pending, pivot_done, reason, fwd_started,"
	"  comp_done_any, due_at, deadline_at, attempt_deadline, step_since, prev_delay,"
	"  created_at, updated_at, error, context,"
	"  CASE WHEN state >= 3 THEN updated_at ELSE 0 END FROM instances;"
	"DROP TABLE instances;"
	"ALTER TABLE instances_v3 RENAME TO instances;"
	"CREATE UNIQUE INDEX instances_bkey ON instances(business_key)"
	"  WHERE business_key IS NOT NULL;"
	"CREATE INDEX instances_waiting ON instances(due_at) WHERE state = 1;"
	"CREATE INDEX instances_state ON instances(state) WHERE state < 3;"
	"CREATE INDEX instances_finished ON instances(state, finished_at) WHERE state >= 3;",
	/* 4: many processes on one store. Owners with leases; each instance
	 * names its owner (0 = nobody: the pool) and a fence that grows with
	 * every change of owner; the history's seq counts per instance (the
	 * store-wide counter row would serialise every writer), and each row
	 * keeps the fence it was written under; commands for instances another
	 * process owns wait in a table of their own. */
	"CREATE TABLE owners("
	"  epoch INTEGER PRIMARY KEY AUTOINCREMENT, host TEXT NOT NULL, pid INTEGER NOT NULL,"
	"  boot_id TEXT NOT NULL, started_at INTEGER NOT NULL, lease_until INTEGER NOT NULL,"
	"  state INTEGER NOT NULL);"
	"CREATE TABLE owner_defs(epoch INTEGER NOT NULL, def_name TEXT NOT NULL,"
	"  def_version INTEGER NOT NULL, PRIMARY KEY(epoch, def_name, def_version))"
	"  WITHOUT ROWID;"
	"CREATE TABLE commands("
	"  id INTEGER PRIMARY KEY, instance INTEGER NOT NULL, verb INTEGER NOT NULL,"
	"  step INTEGER NOT NULL, phase INTEGER NOT NULL, result INTEGER NOT NULL,"
	"  output TEXT, requested_at INTEGER NOT NULL, origin INTEGER NOT NULL);"
	"CREATE INDEX commands_instance ON commands(instance, id);"
	"ALTER TABLE instances ADD COLUMN owner INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE instances ADD COLUMN fence INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE instances ADD COLUMN next_seq INTEGER NOT NULL DEFAULT 1;"
	"ALTER TABLE instances ADD COLUMN recoveries INTEGER NOT NULL DEFAULT 0;"
	"UPDATE instances SET next_seq = 1 + coalesce((SELECT max(seq) FROM history"
	"  WHERE history.instance = instances.id), 0);"
	"ALTER TABLE history ADD COLUMN fence INTEGER NOT NULL DEFAULT 0;"
	"DROP TABLE counters;"
	"DROP INDEX instances_waiting;"
	"CREATE INDEX instances_waiting ON instances(owner, due_at) WHERE state = 1;"
	"CREATE INDEX instances_pool ON instances(due_at) WHERE owner = 0 AND state < 3;",
};
#define SCHEMA_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))

static int query_int(saga_store *s, const char *sql, int64_t *out)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return fail(s, rc, sql);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*out = sqlite3_column_int64(st, 0);
		rc = SQLITE_OK;
	} else if (rc == SQLITE_DONE) {
		*out = 0;
		rc = SQLITE_OK;
	}
	int code = rc == SQLITE_OK ? SAGA_OK : fail(s, rc, sql);
	sqlite3_finalize(st);
	return code;
}

/* The libsaga code of a failed system call's errno. */
static int sys_code(int err)
{
	switch (err) {
	case ENOSPC:
	case EDQUOT:
		return SAGA_EFULL;
	case ENOMEM:
		return SAGA_ENOMEM;
	default:
		return SAGA_EIO;
	}
}

/* Reads what the file is, before anything is written to it: libsaga's
 * application id, and a schema version this libsaga knows (*ver). A store is
 * only ever born by birth(), which sets the application id in the
 * transaction that creates the tables (every libsaga release has), so an
 * existing file without it was never a libsaga store, or lost its first
 * page. `newborn` is set only for the empty file birth() has just created. */
static int read_schema(saga_store *s, const char *name, bool newborn, int64_t *ver)
{
	int64_t app = 0, tables = 0;
	int rc;
	if ((rc = query_int(s, "PRAGMA application_id", &app)) ||
	    (rc = query_int(s, "PRAGMA user_version", ver)) ||
	    (rc = query_int(s, "SELECT count(*) FROM sqlite_schema", &tables))) {
		if (rc == SAGA_ECORRUPT)
			return refuse(s, rc, "store: %s is damaged or not a SQLite database (%s)",
			              name, sqlite3_errmsg(s->db));
		return rc;
	}
	if (newborn ? app != 0 || tables != 0 || *ver != 0 : app != SAGA_APPLICATION_ID)
		return refuse(s, SAGA_ECORRUPT,
		              "store: %s is not a libsaga store (application id %lld, %lld tables)",
		              name, (long long)app, (long long)tables);
	/* The id is set with the first version, never without it. */
	if (!newborn && *ver < 1)
		return refuse(s, SAGA_ECORRUPT, "store: %s is damaged: schema version %lld", name,
		              (long long)*ver);
	if (*ver > SCHEMA_VERSION)
		return refuse(s, SAGA_EVERSION,
		              "store: %s: schema version %lld is newer than this libsaga (%d)",
		              name, (long long)*ver, SCHEMA_VERSION);
	return SAGA_OK;
}

/* Brings a schema of version `ver` up to this version, in one transaction. */
static int migrate(saga_store *s, int64_t ver)
{
	int rc;
	if (ver == SCHEMA_VERSION)
		return SAGA_OK;
	if ((rc = exec(s, "BEGIN IMMEDIATE", "begin migration")))
		return rc;
	for (int64_t v = ver; v < SCHEMA_VERSION; v++) {
		if ((rc = exec(s, migrations[v], "migrate schema")))
			goto fail;
	}
	char sql[96];
	saga_fmt(sql, sizeof(sql), "PRAGMA user_version = %d; PRAGMA application_id = %d",
	         SCHEMA_VERSION, SAGA_APPLICATION_ID);
	if ((rc = exec(s, sql, "set schema version")) ||
	    (rc = exec(s, "COMMIT", "commit migration")))
		goto fail;
	return SAGA_OK;
fail:
	sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

/* Opening a store
 *
 * Only SQLite ever opens, closes, renames or deletes the database file and
 * its -wal and -shm: POSIX drops every fcntl lock a process holds on a file
 * when any descriptor of that file is closed, so one close() of ours would
 * take SQLite's locks from an engine of this process, and a reader in
 * another process could then checkpoint and delete a -wal still in use.
 *
 * The engine's own lock is a flock on a separate file, "<store>-lock",
 * created beside the store and never deleted; its descriptor lives as long
 * as the engine. The store is named by its canonical path (symbolic links,
 * "." and ".." resolved), so every spelling of one file takes the same
 * lock, and SQLite is given that absolute path, which it cannot read as a
 * URI or as ":memory:".
 *
 * A new store is born whole: under the lock, SQLite builds it in
 * "<store>-new" (created here, O_EXCL, 0600: it is not yet the store), in
 * WAL mode, and closes it (folding the -wal in); the file is synced, renamed
 * into place and the directory synced. A crash leaves no store or a whole
 * one, and the next open removes what is left of "<store>-new". So an
 * existing file that is empty, short, or not marked as libsaga's is damage,
 * refused with SAGA_ECORRUPT and left as it is.                            */

#define SQLITE_MIN_FILE 512 /* the smallest page, and so the smallest database */

/* s->path with `suffix` appended, in s->side (one at a time). */
static const char *side_name(saga_store *s, const char *suffix)
{
	saga_fmt(s->side, s->side_size, "%s%s", s->path, suffix);
	return s->side;
}

/* The canonical absolute name of the store `path` names, in s->path. */
static int canonical_path(saga_store *s, const char *path)
{
	char real[PATH_MAX], dir[PATH_MAX];
	if (strncmp(path, "file:", 5) == 0)
		return refuse(s, SAGA_EINVAL,
		              "store: '%s': store paths are file names, not URIs (a file whose "
		              "name begins with \"file:\" is reached as \"./file:...\")",
		              path);
	size_t len = strlen(path);
	if (len == 0)
		return refuse(s, SAGA_EINVAL, "store: the path is empty");
	if (len >= PATH_MAX)
		return refuse(s, SAGA_EINVAL, "store: the path is too long (%zu bytes)", len);
	if (path[len - 1] == '/')
		return refuse(s, SAGA_EINVAL, "store: '%s' names a directory, not a file", path);
	if (!realpath(path, real)) {
		int err = errno;
		struct stat st;
		if (err != ENOENT)
			return refuse(s, err == ENAMETOOLONG ? SAGA_EINVAL : SAGA_EIO,
			              "store: cannot open %s: %s", path, strerror(err));
		if (lstat(path, &st) == 0)
			return refuse(s, SAGA_EINVAL,
			              "store: '%s' is a symbolic link to a file "
			              "that does not exist",
			              path);
		/* A new store: its directory's canonical name and its own. */
		const char *slash = strrchr(path, '/');
		const char *base = slash ? slash + 1 : path;
		if (strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
			return refuse(s, SAGA_EINVAL, "store: '%s' names a directory, not a file",
			              path);
		if (!slash)
			saga_fmt(dir, sizeof(dir), ".");
		else if (slash == path)
			saga_fmt(dir, sizeof(dir), "/");
		else
			saga_fmt(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
		char rdir[PATH_MAX];
		if (!realpath(dir, rdir)) {
			err = errno;
			return refuse(s, err == ENAMETOOLONG ? SAGA_EINVAL : SAGA_EIO,
			              "store: cannot open %s: directory %s: %s", path, dir,
			              strerror(err));
		}
		int n = snprintf(real, sizeof(real), "%s/%s", strcmp(rdir, "/") ? rdir : "", base);
		if (n < 0 || (size_t)n >= sizeof(real))
			return refuse(s, SAGA_EINVAL, "store: the path is too long");
	}
	/* Room for the names beside it: -lock, -new-journal... */
	size_t n = strlen(real);
	s->side_size = n + 16;
	if (!(s->path = saga_malloc(&s->alloc, n + 1)) ||
	    !(s->side = saga_malloc(&s->alloc, s->side_size)))
		return refuse(s, SAGA_ENOMEM, "out of memory");
	memcpy(s->path, real, n + 1);
	return SAGA_OK;
}

/* The lock file, "<store>-lock", created beside the store and never
 * deleted, holds three kinds of lock, none on the database file itself:
 * - a shared flock for as long as the store is open: an engine of a libsaga
 *   before schema 4, which takes it exclusively, and this one keep each
 *   other out (the older one cannot share the store);
 * - a write lock on byte 0 while the store is opened, born or migrated, so
 *   that only one process at a time does it;
 * - a write lock on byte `epoch` for each owner registered through this
 *   handle: while the process lives, the kernel holds it, so a peer on this
 *   host that finds it free knows the owner is gone, not merely slow.
 * The byte locks are open-file-description locks (F_OFD_SETLK): they
 * belong to this descriptor, so two handles in one process do not share
 * them, and nothing else this process closes can drop them. */
static int take_lock(saga_store *s)
{
	const char *name = side_name(s, "-lock");
	int fd = open(name, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return refuse(s, sys_code(errno), "store: cannot open the lock file %s: %s", name,
		              strerror(errno));
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return refuse(s, SAGA_EINVAL, "store: the lock file %s is not a regular file",
		              name);
	}
	if (flock(fd, LOCK_SH | LOCK_NB) != 0) {
		int err = errno;
		close(fd);
		if (err == EWOULDBLOCK)
			return refuse(s, SAGA_EBUSY,
			              "store: %s is in use by an engine of an older libsaga, "
			              "which cannot share it (its lock file %s is held)",
			              s->path, name);
		return refuse(s, SAGA_EIO, "store: cannot lock %s: %s", name, strerror(err));
	}
	s->lock_fd = fd;
	return SAGA_OK;
}

/* Sets (F_WRLCK), clears (F_UNLCK) or tests (test = true: *held says if
 * another descriptor holds it) the lock on byte `at` of the lock file. */
int byte_lock(saga_store *s, int64_t at, short type, bool test, bool *held)
{
	struct flock fl;
	memset(&fl, 0, sizeof(fl));
	fl.l_type = type;
	fl.l_whence = SEEK_SET;
	fl.l_start = (off_t)at;
	fl.l_len = 1;
	if (fcntl(s->lock_fd, test ? F_OFD_GETLK : F_OFD_SETLK, &fl) != 0)
		return errno == EAGAIN || errno == EACCES ? SAGA_EBUSY : SAGA_EIO;
	if (held)
		*held = fl.l_type != F_UNLCK;
	return SAGA_OK;
}

/* Takes byte 0 (opening, birth, migration), waiting for another process's
 * open to finish, at most busy_ms. */
static int lock_open(saga_store *s, uint32_t busy_ms)
{
	uint64_t waited = 0, limit = busy_ms ? busy_ms : STORE_BUSY_TIMEOUT_DEFAULT;
	for (;;) {
		int rc = byte_lock(s, 0, F_WRLCK, false, NULL);
		if (rc != SAGA_EBUSY) {
			if (rc)
				return refuse(s, rc, "store: cannot lock %s-lock: %s", s->path,
				              strerror(errno));
			return SAGA_OK;
		}
		if (waited >= limit)
			return refuse(s, SAGA_EBUSY,
			              "store: %s: another process has been opening it for %llu ms",
			              s->path, (unsigned long long)waited);
		struct timespec ts = { 0, 2 * 1000 * 1000 };
		nanosleep(&ts, NULL);
		waited += 2;
	}
}

/* Deletes what a birth left (under the lock, so no birth is under way). */
static int remove_leftovers(saga_store *s)
{
	static const char *const sfx[] = { "-new-wal", "-new-shm", "-new-journal", "-new" };
	for (size_t i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++) {
		const char *name = side_name(s, sfx[i]);
		if (unlink(name) != 0 && errno != ENOENT)
			return refuse(s, sys_code(errno), "store: cannot remove %s: %s", name,
			              strerror(errno));
	}
	return SAGA_OK;
}

/* fsync of a file or directory that SQLite does not have open. */
static int sync_path(saga_store *s, const char *name, bool is_dir)
{
	int fd = open(name, O_RDONLY | O_CLOEXEC | (is_dir ? O_DIRECTORY : 0));
	if (fd < 0)
		return refuse(s, sys_code(errno), "store: cannot open %s: %s", name,
		              strerror(errno));
	/* Some file systems cannot sync a directory (EINVAL): nothing to do. */
	int rc = fsync(fd) == 0 || (is_dir && errno == EINVAL) ? SAGA_OK : sys_code(errno);
	if (rc)
		refuse(s, rc, "store: cannot sync %s: %s", name, strerror(errno));
	close(fd);
	return rc;
}

/* Opens s->path with SQLite (never creating it) and sets the busy timeout. */
static int connect_db(saga_store *s, const char *name, uint32_t busy_ms)
{
	int src = sqlite3_open_v2(name, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	if (src != SQLITE_OK)
		return fail(s, src, "open");
	sqlite3_extended_result_codes(s->db, 1);
	int busy = busy_ms ? (int)busy_ms : (int)STORE_BUSY_TIMEOUT_DEFAULT;
	if ((src = sqlite3_busy_timeout(s->db, busy)) != SQLITE_OK)
		return fail(s, src, "busy timeout");
	return SAGA_OK;
}

/* PRAGMA journal_mode=WAL, checked: it answers the mode it chose. */
static int use_wal(saga_store *s)
{
	sqlite3_stmt *st = NULL;
	int src = sqlite3_prepare_v2(s->db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
	if (src == SQLITE_OK)
		src = sqlite3_step(st);
	if (src == SQLITE_ROW) {
		const unsigned char *mode = sqlite3_column_text(st, 0);
		src = mode && strcmp((const char *)mode, "wal") == 0 ? SQLITE_OK : SQLITE_ERROR;
	}
	int rc = src == SQLITE_OK ? SAGA_OK : fail(s, src, "enable WAL");
	sqlite3_finalize(st);
	return rc;
}

/* Builds a new store in "<store>-new" and renames it into place. */
static int birth(saga_store *s, uint32_t busy_ms)
{
	size_t n = s->side_size;
	char *tmp = saga_malloc(&s->alloc, n);
	if (!tmp)
		return refuse(s, SAGA_ENOMEM, "out of memory");
	saga_fmt(tmp, n, "%s", side_name(s, "-new"));
	int rc, fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		rc = refuse(s, sys_code(errno), "store: cannot create %s: %s", tmp,
		            strerror(errno));
		goto out;
	}
	/* Closed before SQLite opens it: never two descriptors of one file. */
	close(fd);
	int64_t ver = 0;
	if ((rc = connect_db(s, tmp, busy_ms)) || (rc = read_schema(s, tmp, true, &ver)) ||
	    (rc = use_wal(s)) || (rc = exec(s, "PRAGMA synchronous=FULL", "set durability")) ||
	    (rc = migrate(s, ver)))
		goto undo;
	int src = sqlite3_close(s->db);
	s->db = NULL;
	if (src != SQLITE_OK) {
		rc = refuse(s, map_rc(src), "store: cannot close %s: %s", tmp, sqlite3_errstr(src));
		goto undo;
	}
	/* The last connection's close folds the -wal into the file and deletes
	 * it; one left behind would hold part of the schema. */
	struct stat st;
	if (stat(side_name(s, "-new-wal"), &st) == 0) {
		rc = refuse(s, SAGA_ESTORE, "store: %s: its -wal was not folded in at close", tmp);
		goto undo;
	}
	if ((rc = sync_path(s, tmp, false)))
		goto undo;
	if (rename(tmp, s->path) != 0) {
		rc = refuse(s, sys_code(errno), "store: cannot rename %s to %s: %s", tmp, s->path,
		            strerror(errno));
		goto undo;
	}
	/* The directory that now names it. */
	char *slash = strrchr(tmp, '/');
	if (slash == tmp)
		slash++;
	*slash = '\0';
	rc = sync_path(s, tmp, true);
	goto out;
undo:
	sqlite3_close(s->db);
	s->db = NULL;
	remove_leftovers(s);
out:
	saga_free(&s->alloc, tmp);
	return rc;
}

int store_open(saga_store **out, const char *path, saga_durability durability, uint32_t busy_ms,
               const saga_alloc *alloc, char *err, size_t err_size)
{
	*out = NULL;
	saga_store *s = saga_calloc(alloc, 1, sizeof(*s));
	if (!s) {
		saga_fmt(err, err_size, "out of memory");
		return SAGA_ENOMEM;
	}
	s->alloc = *alloc;
	s->lock_fd = -1;
	int rc;
	s->data_version = -1;
	if ((rc = canonical_path(s, path)) || (rc = take_lock(s)) || (rc = lock_open(s, busy_ms)))
		goto out;
	/* Under the lock: the store as it is, or a birth. */
	struct stat st;
	if (stat(s->path, &st) == 0) {
		/* Checked before SQLite opens it: SQLite would take an empty
		 * file for a new database, and delete the -wal beside it. */
		if (!S_ISREG(st.st_mode)) {
			rc = refuse(s, SAGA_EINVAL, "store: %s is not a regular file", s->path);
			goto out;
		}
		if (st.st_nlink > 1) {
			rc = refuse(s, SAGA_EINVAL,
			            "store: %s has %ju hard links: a store has one "
			            "name (SQLite finds its -wal by name)",
			            s->path, (uintmax_t)st.st_nlink);
			goto out;
		}
		if (st.st_size < SQLITE_MIN_FILE) {
			rc = refuse(
			        s, SAGA_ECORRUPT,
			        st.st_size == 0
			                ? "store: %s is empty (%lld bytes): a store is never "
			                  "empty, the file "
			                  "is damaged; restore it, or move it away for a new store"
			                : "store: %s is too short to be a store (%lld bytes): the "
			                  "file is "
			                  "damaged; restore it, or move it away for a new store",
			        s->path, (long long)st.st_size);
			goto out;
		}
		if ((rc = remove_leftovers(s)))
			goto out;
	} else if (errno == ENOENT) {
		/* A -wal without its store: the store was moved or deleted. A
		 * new store beside it would take in its frames. */
		const char *wal = side_name(s, "-wal");
		if (stat(wal, &st) == 0 && st.st_size > 0) {
			rc = refuse(
			        s, SAGA_ECORRUPT,
			        "store: %s does not exist but %s does (%lld "
			        "bytes): the store was moved or deleted without its -wal; put it "
			        "back, or move the -wal away for a new store",
			        s->path, wal, (long long)st.st_size);
			goto out;
		}
		if ((rc = remove_leftovers(s)) || (rc = birth(s, busy_ms)))
			goto out;
	} else {
		rc = refuse(s, sys_code(errno), "store: cannot open %s: %s", s->path,
		            strerror(errno));
		goto out;
	}
	int64_t ver = 0;
	if ((rc = connect_db(s, s->path, busy_ms)) || (rc = read_schema(s, s->path, false, &ver)))
		goto out;
	if ((rc = use_wal(s)))
		goto out;
	if ((rc = exec(s,
	               durability == SAGA_DURABILITY_NORMAL ? "PRAGMA synchronous=NORMAL"
	                                                    : "PRAGMA synchronous=FULL",
	               "set durability")))
		goto out;
	/* An 8 MiB page cache keeps the rows of instances in flight and the
	 * ends of the history b-trees in memory between commits. */
	if ((rc = exec(s, "PRAGMA cache_size=-8192", "set cache size")))
		goto out;
	if ((rc = migrate(s, ver)))
		goto out;
	for (int i = 0; i < ST_COUNT; i++) {
		int src = sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
		                             &s->st[i], NULL);
		if (src != SQLITE_OK) {
			rc = fail(s, src, "prepare");
			goto out;
		}
	}
	if ((rc = read_boot_id(s)))
		goto out;
	byte_lock(s, 0, F_UNLCK, false, NULL);
	*out = s;
	return SAGA_OK;
out:
	saga_fmt(err, err_size, "%s", s->errmsg);
	store_close(s);
	return rc;
}

void store_close(saga_store *s)
{
	if (!s)
		return;
	drop_history(s);
	saga_free(&s->alloc, s->hist);
	saga_free(&s->alloc, s->written.v);
	saga_free(&s->alloc, s->histories.v);
	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(s->st[i]);
	sqlite3_close(s->db);
	/* The lock file, never the store: the flock goes with it, after
	 * SQLite is done with the store. */
	if (s->lock_fd >= 0)
		close(s->lock_fd);
	saga_free(&s->alloc, s->path);
	saga_free(&s->alloc, s->side);
	saga_free(&s->alloc, s);
}
