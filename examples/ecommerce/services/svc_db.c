/* The services' shared SQLite code: open, transactions, statements.
 * SPDX-License-Identifier: MIT */
#include "svc_db.h"

#include "faults.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SVC_SCHEMA_VERSION 1

uint64_t svc_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int svc_map(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_ROW:
	case SQLITE_DONE:
		return 0;
	case SQLITE_NOMEM:
		return SAGA_ENOMEM;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return SAGA_EBUSY;
	case SQLITE_FULL:
		return SAGA_EFULL;
	case SQLITE_IOERR:
		return SAGA_EIO;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return SAGA_ECORRUPT;
	case SQLITE_CANTOPEN:
		return SAGA_EIO;
	default:
		return SAGA_ESTORE;
	}
}

int svc_bindv(sqlite3_stmt *st, const char *types, va_list ap)
{
	int rc = SQLITE_OK;
	for (int i = 0; types && types[i] && rc == SQLITE_OK; i++) {
		if (types[i] == 'i') {
			rc = sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t));
		} else if (types[i] == 't') {
			const char *t = va_arg(ap, const char *);
			rc = t ? sqlite3_bind_text(st, i + 1, t, -1, SQLITE_TRANSIENT)
			       : sqlite3_bind_null(st, i + 1);
		} else {
			return SAGA_EINVAL;
		}
	}
	return svc_map(rc);
}

static int prepare_v(svc_db *s, sqlite3_stmt **st, const char *sql, const char *types, va_list ap)
{
	*st = NULL;
	int rc = svc_map(sqlite3_prepare_v2(s->db, sql, -1, st, NULL));
	if (rc == 0)
		rc = svc_bindv(*st, types, ap);
	if (rc != 0) {
		sqlite3_finalize(*st);
		*st = NULL;
	}
	return rc;
}

int svc_prepare(svc_db *s, sqlite3_stmt **st, const char *sql, const char *types, ...)
{
	va_list ap;
	va_start(ap, types);
	int rc = prepare_v(s, st, sql, types, ap);
	va_end(ap);
	return rc;
}

int svc_step(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	return svc_map(rc) ? svc_map(rc) : SAGA_ESTORE;
}

int svc_exec(svc_db *s, int *changes, const char *sql, const char *types, ...)
{
	sqlite3_stmt *st;
	va_list ap;
	va_start(ap, types);
	int rc = prepare_v(s, &st, sql, types, ap);
	va_end(ap);
	if (rc != 0)
		return rc;
	while ((rc = svc_step(st)) == 1)
		;
	if (rc == 0 && changes)
		*changes = sqlite3_changes(s->db);
	sqlite3_finalize(st);
	return rc;
}

int svc_int(svc_db *s, int64_t *out, const char *sql, const char *types, ...)
{
	sqlite3_stmt *st;
	va_list ap;
	va_start(ap, types);
	int rc = prepare_v(s, &st, sql, types, ap);
	va_end(ap);
	if (rc != 0)
		return rc;
	rc = svc_step(st);
	if (rc == 1) {
		if (sqlite3_column_type(st, 0) == SQLITE_NULL) {
			rc = SAGA_ENOTFOUND;
		} else {
			*out = sqlite3_column_int64(st, 0);
			rc = 0;
		}
	} else if (rc == 0) {
		rc = SAGA_ENOTFOUND;
	}
	sqlite3_finalize(st);
	return rc;
}

void svc_col_text(sqlite3_stmt *st, int col, char *buf, size_t size)
{
	const unsigned char *t = sqlite3_column_text(st, col);
	snprintf(buf, size, "%s", t ? (const char *)t : "");
}

/* Runs a fixed multi-statement script (schema text, no input in it). */
static int run_script(sqlite3 *db, const char *sql)
{
	while (sql && *sql) {
		sqlite3_stmt *st = NULL;
		const char *tail = NULL;
		int rc = sqlite3_prepare_v2(db, sql, -1, &st, &tail);
		if (rc != SQLITE_OK)
			return svc_map(rc);
		if (st) {
			while ((rc = sqlite3_step(st)) == SQLITE_ROW)
				;
			sqlite3_finalize(st);
			if (rc != SQLITE_DONE)
				return svc_map(rc);
		}
		sql = tail;
	}
	return 0;
}

/* Says why a database could not be opened: the file, SQLite's message and,
 * when there is one, the system's cause. */
static void open_msg(char *msg, size_t msg_size, const char *path, const char *what, sqlite3 *db,
                     int rc)
{
	int sys = db ? sqlite3_system_errno(db) : 0;
	svc_msg(msg, msg_size, "%s: %s: %s%s%s", path, what,
	        db ? sqlite3_errmsg(db) : saga_strerror(rc), sys ? ": " : "",
	        sys ? strerror(sys) : "");
}

/* Applies the schema version 1 (`schema` and the guard's table) in one
 * transaction, unless the file has it. */
static int apply_schema(svc_db *s, const char *schema)
{
	int64_t version = 0;
	int rc = svc_int(s, &version, "PRAGMA user_version", NULL);
	if (rc == 0 && version > SVC_SCHEMA_VERSION)
		return SAGA_EVERSION;
	if (rc != 0 || version == SVC_SCHEMA_VERSION)
		return rc;
	rc = run_script(s->db, "BEGIN IMMEDIATE");
	if (rc != 0)
		return rc;
	rc = run_script(s->db, schema);
	if (rc == 0)
		rc = saga_guard_init(s->db);
	if (rc == 0)
		rc = run_script(s->db, "PRAGMA user_version=1; COMMIT");
	if (rc != 0 && !sqlite3_get_autocommit(s->db))
		run_script(s->db, "ROLLBACK");
	return rc;
}

/* PRAGMA journal_mode=WAL, which answers with a row naming the mode
 * actually set. */
static int set_wal(sqlite3 *db)
{
	sqlite3_stmt *st = NULL;
	int rc = svc_map(sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &st, NULL));
	if (rc == 0) {
		rc = svc_step(st);
		if (rc == 1) {
			const unsigned char *mode = sqlite3_column_text(st, 0);
			rc = mode && strcmp((const char *)mode, "wal") == 0 ? 0 : SAGA_ESTORE;
		} else if (rc == 0) {
			rc = SAGA_ESTORE;
		}
	}
	sqlite3_finalize(st);
	return rc;
}

/* Removes a file that may be left by a crashed creator; 0 if it is gone. */
static int remove_stale(const char *path, const char *suffix)
{
	char p[4200];
	int n = snprintf(p, sizeof p, "%s%s", path, suffix);
	if (n < 0 || (size_t)n >= sizeof p)
		return -1;
	return unlink(p) == 0 || errno == ENOENT ? 0 : -1;
}

/* A new database is born whole: SQLite builds it under a temporary name
 * (mode 0600 set by path as soon as SQLite has created it, before anything
 * is written; its -wal and -shm take that mode), with the schema, then
 * switched to WAL and closed (the close checkpoints, so the file holds
 * everything); then it is linked into place, which fails if another process was first (its file
 * is used). Nothing here opens or closes a database file but SQLite: a
 * descriptor of it closed behind SQLite's back would drop every fcntl lock
 * this process holds on the file. */
static int create_db(svc_db *s, const char *dir, const char *path, const char *schema, char *msg,
                     size_t msg_size)
{
	static unsigned counter;
	char tmp[4200];
	int n = snprintf(tmp, sizeof tmp, "%s.new-%ld-%u", path, (long)getpid(),
	                 __atomic_fetch_add(&counter, 1u, __ATOMIC_RELAXED));
	if (n < 0 || (size_t)n >= sizeof tmp) {
		svc_msg(msg, msg_size, "%s: path too long", path);
		return SAGA_EINVAL;
	}
	if (remove_stale(tmp, "") != 0 || remove_stale(tmp, "-journal") != 0 ||
	    remove_stale(tmp, "-wal") != 0 || remove_stale(tmp, "-shm") != 0) {
		svc_msg(msg, msg_size, "%s: cannot remove a stale file: %s", tmp, strerror(errno));
		return SAGA_EIO;
	}
	svc_db t = { .service = s->service };
	int rc = svc_map(
	        sqlite3_open_v2(tmp, &t.db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL));
	if (rc != 0) {
		open_msg(msg, msg_size, tmp, "cannot create", t.db, rc);
	} else if (chmod(tmp, 0600) != 0) {
		svc_msg(msg, msg_size, "%s: chmod 0600: %s", tmp, strerror(errno));
		rc = SAGA_EIO;
	} else {
		rc = run_script(t.db, "PRAGMA journal_mode=DELETE; PRAGMA synchronous=FULL;");
		if (rc == 0)
			rc = apply_schema(&t, schema);
		/* WAL is recorded in the file, so no opener of the final file has to
		 * switch modes (which needs an exclusive lock, and two openers
		 * racing to take it get "database is locked"). The close below
		 * checkpoints: the file alone holds everything. */
		if (rc == 0)
			rc = set_wal(t.db);
		if (rc != 0)
			open_msg(msg, msg_size, tmp, "cannot create", t.db, rc);
	}
	int crc = svc_map(sqlite3_close(t.db));
	if (rc == 0 && crc != 0) {
		svc_msg(msg, msg_size, "%s: cannot close: %s", tmp, saga_strerror(crc));
		rc = crc;
	}
	if (rc == 0 && link(tmp, path) != 0 && errno != EEXIST) {
		svc_msg(msg, msg_size, "%s: cannot link %s into place: %s", path, tmp,
		        strerror(errno));
		rc = SAGA_EIO;
	}
	remove_stale(tmp, "-journal");
	remove_stale(tmp, "-wal");
	remove_stale(tmp, "-shm");
	if (unlink(tmp) != 0 && errno != ENOENT && rc == 0) {
		svc_msg(msg, msg_size, "%s: cannot remove: %s", tmp, strerror(errno));
		rc = SAGA_EIO;
	}
	if (rc == 0) { /* the new name is durable before anything relies on it */
		int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0 || fsync(dfd) != 0) {
			svc_msg(msg, msg_size, "%s: cannot sync the directory: %s", dir,
			        strerror(errno));
			rc = SAGA_EIO;
		}
		if (dfd >= 0)
			close(dfd);
	}
	return rc;
}

int svc_db_open(svc_db *s, ecom_service service, const char *dir, const char *schema, char *msg,
                size_t msg_size)
{
	svc_msg(msg, msg_size, "%s", "");
	memset(s, 0, sizeof *s);
	s->service = service;
	if (!dir || !*dir) {
		svc_msg(msg, msg_size, "%s: no data directory", ecom_service_name(service));
		return SAGA_EINVAL;
	}
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		svc_msg(msg, msg_size, "%s: cannot create the directory: %s", dir, strerror(errno));
		return errno == ENOENT || errno == ENOTDIR ? SAGA_ENOTFOUND : SAGA_EIO;
	}
	char path[4096];
	int n = snprintf(path, sizeof path, "%s/%s.db", dir, ecom_service_name(service));
	if (n < 0 || (size_t)n >= sizeof path) {
		svc_msg(msg, msg_size, "%s/%s.db: path too long", dir, ecom_service_name(service));
		return SAGA_EINVAL;
	}
	struct stat sb;
	int rc = 0;
	if (stat(path, &sb) != 0) {
		if (errno != ENOENT) {
			svc_msg(msg, msg_size, "%s: %s", path, strerror(errno));
			return SAGA_EIO;
		}
		rc = create_db(s, dir, path, schema, msg, msg_size);
		if (rc != 0)
			return rc;
	}

	rc = svc_map(
	        sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, NULL));
	if (rc == 0)
		rc = svc_map(sqlite3_busy_timeout(s->db, 5000));
	if (rc == 0)
		rc = set_wal(s->db);
	if (rc == 0)
		rc = run_script(s->db, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;");
	/* A file from before the schema was applied at birth: applied now. */
	if (rc == 0)
		rc = apply_schema(s, schema);
	if (rc == 0 && pthread_mutex_init(&s->lock, NULL) != 0)
		rc = SAGA_ENOMEM;
	if (rc != 0) {
		if (rc == SAGA_EVERSION)
			svc_msg(msg, msg_size, "%s: written by a newer version (schema above %d)",
			        path, SVC_SCHEMA_VERSION);
		else
			open_msg(msg, msg_size, path, "cannot open", s->db, rc);
		sqlite3_close(s->db);
		s->db = NULL;
	}
	return rc;
}

void svc_db_close(svc_db *s)
{
	if (!s || !s->db)
		return;
	sqlite3_close(s->db);
	s->db = NULL;
	pthread_mutex_destroy(&s->lock);
}

int svc_db_new(svc_db **out, size_t size, ecom_service service, const char *dir, const char *schema,
               char *msg, size_t msg_size)
{
	*out = NULL;
	svc_msg(msg, msg_size, "%s", "");
	svc_db *s = calloc(1, size);
	if (!s) {
		svc_msg(msg, msg_size, "%s: out of memory", ecom_service_name(service));
		return SAGA_ENOMEM;
	}
	int rc = svc_db_open(s, service, dir, schema, msg, msg_size);
	if (rc != 0) {
		free(s);
		return rc;
	}
	*out = s;
	return 0;
}

void svc_db_delete(svc_db *s)
{
	if (!s)
		return;
	svc_db_close(s);
	free(s);
}

void svc_lock(svc_db *s)
{
	pthread_mutex_lock(&s->lock);
}

void svc_unlock(svc_db *s)
{
	pthread_mutex_unlock(&s->lock);
}

int svc_guard_begin(svc_db *s, const char *op,
                    int (*guard)(struct sqlite3 *, const char *, saga_guard_verdict *),
                    const char *key, saga_guard_verdict *verdict, char *msg, size_t msg_size)
{
	svc_msg(msg, msg_size, "%s", "");
	/* Drawn (and slept) outside the transaction, answered only after the
	 * guard: a key already recorded answers as recorded, so a replay after
	 * a crash just after COMMIT sees the effect, never an injected failure. */
	int injected = ecom_faults_draw(s->faults, s->service, op);
	int rc = svc_begin(s, msg, msg_size);
	if (rc != 0)
		return rc;
	rc = guard(s->db, key, verdict);
	if (rc != 0)
		return svc_fail(s, rc, msg, msg_size);
	int new_key = *verdict == SAGA_GUARD_PROCEED || *verdict == SAGA_GUARD_EMPTY;
	if (new_key && injected != ECOM_OK)
		return svc_rollback(
		        s, ecom_faults_give(s->faults, s->service, op, injected, msg, msg_size));
	return 0;
}

int svc_refuse(svc_db *s, char *msg, size_t msg_size, const char *fmt, ...)
{
	if (msg && msg_size) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(msg, msg_size, fmt, ap);
		va_end(ap);
	}
	return svc_rollback(s, ECOM_REFUSED);
}

int svc_begin(svc_db *s, char *msg, size_t msg_size)
{
	svc_lock(s);
	int rc = svc_map(sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL));
	if (rc != 0) {
		svc_msg(msg, msg_size, "%s: begin: %s", ecom_service_name(s->service),
		        sqlite3_errmsg(s->db));
		svc_unlock(s);
	}
	return rc;
}

int svc_rollback(svc_db *s, int rc)
{
	if (!sqlite3_get_autocommit(s->db))
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	svc_unlock(s);
	return rc;
}

int svc_fail(svc_db *s, int rc, char *msg, size_t msg_size)
{
	svc_msg(msg, msg_size, "%s: %s (%s)", ecom_service_name(s->service), saga_strerror(rc),
	        sqlite3_errmsg(s->db));
	return svc_rollback(s, rc);
}

int svc_commit(svc_db *s, const char *op, char *msg, size_t msg_size)
{
	if (op)
		ecom_faults_crash(s->faults, s->service, op, "before");
	int rc = svc_map(sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL));
	if (rc != 0)
		return svc_fail(s, rc, msg, msg_size);
	svc_unlock(s);
	if (op)
		ecom_faults_crash(s->faults, s->service, op, "after");
	return 0;
}
