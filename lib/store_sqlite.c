/* The SQLite store: schema and migrations, instance rows, history.
 * Every run-time statement is prepared once and reused (the migrations and
 * the checks at open are prepared as they run); nothing is assembled from
 * input.
 *
 * Over the tree's ~800-line mark on purpose: it is the whole of the one
 * store backend, and its parts (the schema with its migrations, the open
 * path that guards the file, the statements that read and write rows) share
 * the statement table and struct saga_store. The open path is the part to
 * move out (store_open.c) when a second backend brings a store interface
 * (docs/architecture.md, "A new store").
 * SPDX-License-Identifier: MIT */
#define _GNU_SOURCE /* F_OFD_SETLK, CLOCK_BOOTTIME */
#include "store.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <fcntl.h>
#include <sqlite3.h>
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

#define ROW_COLUMNS                                                                       \
	"id, uid, def_name, def_version, business_key, state, phase, step, attempt,"      \
	" inflight, pending, pivot_done, reason, fwd_started, comp_done_any, due_at,"     \
	" deadline_at, attempt_deadline, step_since, prev_delay, created_at, updated_at," \
	" error, context, owner, fence, next_seq, recoveries"

/* The columns of ROW_COLUMNS in order, as read_row reads them; the row
 * statements bind column c as parameter c + 1 (PARAM), so ?N in their SQL
 * is column N - 1. finished_at is not read: the insert binds it (?25) and
 * the update derives it from the state. */
enum row_col {
	COL_ID,
	COL_UID,
	COL_DEF_NAME,
	COL_DEF_VERSION,
	COL_BUSINESS_KEY,
	COL_STATE,
	COL_PHASE,
	COL_STEP,
	COL_ATTEMPT,
	COL_INFLIGHT,
	COL_PENDING,
	COL_PIVOT_DONE,
	COL_REASON,
	COL_FWD_STARTED,
	COL_COMP_DONE_ANY,
	COL_DUE_AT,
	COL_DEADLINE_AT,
	COL_ATTEMPT_DEADLINE,
	COL_STEP_SINCE,
	COL_PREV_DELAY,
	COL_CREATED_AT,
	COL_UPDATED_AT,
	COL_ERROR,
	COL_CONTEXT,
	COL_OWNER,
	COL_FENCE,
	COL_NEXT_SEQ,
	COL_RECOVERIES,
	COL_FINISHED_AT
};
#define PARAM(col) ((col) + 1)
_Static_assert(PARAM(COL_FINISHED_AT) == 29, "ST_INSERT binds finished_at as ?29");

enum stmt_id {
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_DEF_GET,
	ST_DEF_PUT,
	ST_INSERT,
	ST_UPDATE,
	ST_PROGRESS,
	ST_LOAD,
	ST_LOAD_UID,
	ST_FIND_BKEY,
	ST_HIST_ADD,
	ST_SCAN_ACTIVE,
	ST_SCAN_DUE,
	ST_NEXT_DUE,
	ST_LAST_OUTCOME,
	ST_HISTORY,
	ST_PAGE,
	ST_PAGE_STATE,
	ST_PAGE_ACTIVE,
	ST_PENDING,
	ST_COUNTS,
	ST_PURGE_PICK,
	ST_PURGE_HIST,
	ST_PURGE_INST,
	ST_JSON_VALID,
	ST_HIST_ADD_MANY,
	ST_RENEW,
	ST_SERVE,
	ST_OWNERS_LIVE,
	ST_OWNER_END,
	ST_OWNER_RELEASE,
	ST_OWNER_UNSERVE,
	ST_CLAIM,
	ST_CLAIM_ONE,
	ST_NEXT_DUE_POOL,
	ST_CMD_PUT,
	ST_CMD_LIST,
	ST_CMD_DEL,
	ST_CMD_FIND,
	ST_PURGE_CMDS,
	ST_DATA_VERSION,
	ST_COUNT
};

/* History rows wait in memory until the commit (or a read of the history)
 * and go in HIST_MANY at a time: one statement for many rows. */
#define HIST_MANY   32
#define HIST_ROW    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
#define HIST_ROWS4  HIST_ROW "," HIST_ROW "," HIST_ROW "," HIST_ROW
#define HIST_ROWS16 HIST_ROWS4 "," HIST_ROWS4 "," HIST_ROWS4 "," HIST_ROWS4
#define HIST_INSERT                                                        \
	"INSERT INTO history(instance, seq, at, type, state, step, phase," \
	" attempt, outcome, detail, fence) VALUES "

/* The filters of a page after its id and state terms: ?2 definition name
 * (NULL = any), ?3 version (0 = any), ?4..?5 created and ?6..?7 updated
 * ranges [from, to), ?8 the page size. */
#define PAGE_FILTER                                                           \
	" AND (?2 IS NULL OR def_name = ?2) AND (?3 = 0 OR def_version = ?3)" \
	" AND created_at >= ?4 AND created_at < ?5 AND updated_at >= ?6 AND"  \
	" updated_at < ?7 ORDER BY id LIMIT ?8"

/* Who may write an instance row: its owner (?25, bound to the writer's
 * epoch), or anyone when it has ended and stays so (nobody owns it; what
 * is written then is a note in its history, a late or second completion). */
#define WRITER "(owner = ?25 OR (owner = 0 AND state >= 3 AND ?6 >= 3))"

static const char *const stmt_sql[ST_COUNT] = {
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_DEF_GET] = "SELECT snapshot FROM definitions WHERE name = ?1 AND version = ?2",
	[ST_DEF_PUT] = "INSERT OR IGNORE INTO definitions(name, version, snapshot)"
	               " VALUES (?1, ?2, ?3)",
	[ST_INSERT] = "INSERT INTO instances(" ROW_COLUMNS ", finished_at) VALUES (NULL, ?2, ?3,"
	              " ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19,"
	              " ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29)",
	[ST_UPDATE] = "UPDATE instances SET state = ?6, phase = ?7, step = ?8, attempt = ?9,"
	              " inflight = ?10, pending = ?11, pivot_done = ?12, reason = ?13,"
	              " fwd_started = ?14, comp_done_any = ?15, due_at = ?16, deadline_at = ?17,"
	              " attempt_deadline = ?18, step_since = ?19, prev_delay = ?20,"
	              " updated_at = ?22, error = ?23, context = ?24, next_seq = ?27,"
	              " recoveries = ?28,"
	              /* an ended instance belongs to nobody */
	              " owner = CASE WHEN ?6 < 3 THEN ?25 ELSE 0 END,"
	              /* the time it reached its final state, kept while it stays there */
	              " finished_at = CASE WHEN ?6 < 3 THEN 0 WHEN state = ?6 THEN finished_at"
	              " ELSE ?22 END WHERE id = ?1 AND fence = ?26 AND " WRITER,
	/* The same row when its indexed columns (state, due_at, and with the
	 * state finished_at) keep their values: no index is touched (setting an
	 * indexed column costs its index's upkeep even when the value is the
	 * same). It changes nothing when the stored values differ, and
	 * store_update then writes the row whole. */
	[ST_PROGRESS] = "UPDATE instances SET phase = ?7, step = ?8, attempt = ?9,"
	                " inflight = ?10, pending = ?11, pivot_done = ?12, reason = ?13,"
	                " fwd_started = ?14, comp_done_any = ?15, deadline_at = ?17,"
	                " attempt_deadline = ?18, step_since = ?19, prev_delay = ?20,"
	                " updated_at = ?22, error = ?23, context = ?24, next_seq = ?27,"
	                " recoveries = ?28 WHERE id = ?1 AND state = ?6 AND due_at = ?16"
	                " AND fence = ?26 AND " WRITER,
	[ST_LOAD] = "SELECT " ROW_COLUMNS " FROM instances WHERE id = ?1",
	[ST_LOAD_UID] = "SELECT " ROW_COLUMNS " FROM instances WHERE uid = ?1",
	[ST_FIND_BKEY] = "SELECT id FROM instances WHERE business_key = ?1",
	[ST_HIST_ADD] = HIST_INSERT HIST_ROW,
	[ST_HIST_ADD_MANY] = HIST_INSERT HIST_ROWS16 "," HIST_ROWS16,
	[ST_SCAN_ACTIVE] = "SELECT id FROM instances WHERE state < 3 AND state IN (0, 2)"
	                   " AND owner = ?1 ORDER BY id",
	[ST_SCAN_DUE] = "SELECT id FROM instances WHERE state = 1 AND owner = ?3 AND due_at > 0"
	                " AND due_at <= ?1 ORDER BY due_at LIMIT ?2",
	[ST_NEXT_DUE] = "SELECT min(due_at) FROM instances WHERE state = 1 AND owner = ?1"
	                " AND due_at > 0",
	[ST_LAST_OUTCOME] = "SELECT outcome FROM history WHERE instance = ?1 AND step = ?2 AND"
	                    " phase = ?3 AND type = 3 ORDER BY seq DESC LIMIT 1",
	[ST_HISTORY] = "SELECT seq, at, type, state, step, phase, attempt, outcome, detail,"
	               " fence FROM history WHERE instance = ?1 ORDER BY seq",
	/* A page of a listing (keyset paging on id). With a state filter, an
	 * unfinished state reads the instances_state index (state, then id),
	 * whose partial condition the literal "state < 3" lets SQLite use. */
	[ST_PAGE] = "SELECT " ROW_COLUMNS " FROM instances WHERE id > ?1" PAGE_FILTER,
	[ST_PAGE_STATE] =
	        "SELECT " ROW_COLUMNS " FROM instances WHERE state = ?9 AND id > ?1" PAGE_FILTER,
	[ST_PAGE_ACTIVE] = "SELECT " ROW_COLUMNS " FROM instances WHERE state = ?9 AND state < 3"
	                   " AND id > ?1" PAGE_FILTER,
	[ST_PENDING] = "SELECT " ROW_COLUMNS " FROM instances WHERE state = 1 AND state < 3"
	               " AND pending = 1 AND id > ?1 ORDER BY id LIMIT ?2",
	[ST_COUNTS] = "SELECT state, count(*) FROM instances GROUP BY state",
	[ST_PURGE_PICK] = "SELECT id FROM instances WHERE state >= 3 AND state = ?1"
	                  " AND finished_at < ?2 ORDER BY finished_at LIMIT ?3",
	[ST_PURGE_HIST] = "DELETE FROM history WHERE instance = ?1",
	[ST_PURGE_INST] = "DELETE FROM instances WHERE id = ?1 AND state = ?2",
	[ST_JSON_VALID] = "SELECT json_valid(?1)",
	/* Ownership. The lease is renewed only while it runs: a lapsed one
	 * never comes back (the owner registers anew). */
	[ST_RENEW] = "UPDATE owners SET lease_until = ?2 + ?3 WHERE epoch = ?1 AND state = 0"
	             " AND lease_until > ?2",
	[ST_SERVE] = "INSERT OR IGNORE INTO owner_defs(epoch, def_name, def_version)"
	             " VALUES (?1, ?2, ?3)",
	[ST_OWNERS_LIVE] = "SELECT epoch, lease_until, boot_id FROM owners WHERE state = 0"
	                   " AND epoch <> ?1",
	[ST_OWNER_END] = "UPDATE owners SET state = ?2 WHERE epoch = ?1 AND state = 0",
	[ST_OWNER_RELEASE] = "UPDATE instances SET owner = 0 WHERE state < 3 AND owner = ?1",
	[ST_OWNER_UNSERVE] = "DELETE FROM owner_defs WHERE epoch = ?1",
	/* A claim: unowned instances that are due, of the definitions this
	 * owner serves, earliest first; each one's fence grows, and an
	 * interrupted attempt counts a recovery. */
	[ST_CLAIM] = "UPDATE instances SET owner = ?1, fence = fence + 1,"
	             " recoveries = recoveries + inflight WHERE id IN (SELECT id FROM instances"
	             " WHERE owner = 0 AND state < 3 AND (state <> 1 OR due_at > 0)"
	             " AND due_at <= ?2 AND (def_name, def_version) IN (SELECT def_name,"
	             " def_version FROM owner_defs WHERE epoch = ?1) ORDER BY due_at LIMIT ?3)"
	             " RETURNING id",
	/* One instance a command acts on, unowned and unfinished or STUCK. */
	[ST_CLAIM_ONE] = "UPDATE instances SET owner = ?1, fence = fence + 1,"
	                 " recoveries = recoveries + inflight WHERE id = ?2 AND owner = 0"
	                 " AND (state < 3 OR state = 5)",
	[ST_NEXT_DUE_POOL] = "SELECT min(max(due_at, 1)) FROM instances WHERE owner = 0"
	                     " AND state < 3 AND (state <> 1 OR due_at > 0) AND (def_name,"
	                     " def_version) IN (SELECT def_name, def_version FROM owner_defs"
	                     " WHERE epoch = ?1)",
	[ST_CMD_PUT] = "INSERT INTO commands(instance, verb, step, phase, result, output,"
	               " requested_at, origin) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
	[ST_CMD_LIST] = "SELECT c.id, c.instance, c.verb, c.step, c.phase, c.result, c.output,"
	                " c.requested_at FROM commands c JOIN instances i ON i.id = c.instance"
	                " WHERE i.owner = ?1 ORDER BY c.id",
	[ST_CMD_DEL] = "DELETE FROM commands WHERE id = ?1",
	[ST_CMD_FIND] = "SELECT count(*) FROM commands WHERE instance = ?1 AND verb = ?2"
	                " AND step = ?3 AND phase = ?4",
	[ST_PURGE_CMDS] = "DELETE FROM commands WHERE instance = ?1",
	[ST_DATA_VERSION] = "PRAGMA data_version",
};

/* A history row waiting for its statement. Its detail is a copy: in small
 * when it fits, else in big. */
struct hist_entry {
	saga_hist h;
	char *big;
	char small[48];
};

struct saga_store {
	int lock_fd; /* "<path>-lock": a shared flock, and this owner's byte (OFD lock) */
	char *path;  /* the store's canonical absolute path */
	char *side;  /* room for path + a suffix (side_name) */
	size_t side_size;
	sqlite3 *db;
	sqlite3_stmt *st[ST_COUNT];
	int64_t epoch;        /* this handle's owner; 0 = none registered */
	uint64_t lease_ms;    /* its lease's length */
	uint64_t lease_until; /* when it lapses (lease clock), as last renewed */
	char boot_id[40];     /* this boot's id: the lease clock's epoch */
	int64_t data_version; /* PRAGMA data_version as last read; -1 = never */
	/* The open transaction's fencing: a refused write leaves it only a
	 * rollback; history is committed only for instances written in it. */
	bool fenced;
	struct id_set {
		int64_t *v;
		size_t n, cap;
	} written, histories;    /* written: a hash set (open addressing, 0 = free,
	                         at most half full); histories: a list */
	struct hist_entry *hist; /* history rows not written yet, oldest first */
	size_t nhist, hist_cap;
	int hist_failed; /* rows were lost: the transaction cannot commit */
	saga_alloc alloc;
	char errmsg[512];
};

/* In the store, a failed constraint is a unique key already taken. */
static int map_rc(int rc)
{
	return (rc & 0xff) == SQLITE_CONSTRAINT ? SAGA_EEXISTS : sqlite_to_saga(rc);
}

/* Records the SQLite error and returns the matching libsaga code. */
static int fail(saga_store *s, int rc, const char *what)
{
	saga_fmt(s->errmsg, sizeof(s->errmsg), "store: %s: %s (%s)", what,
	         s->db ? sqlite3_errmsg(s->db) : "no database", sqlite3_errstr(rc));
	return map_rc(rc);
}

/* Binds a parameter, or records the error and goes to done. */
#define BIND(call)                                  \
	do {                                        \
		int brc_ = (call);                  \
		if (brc_ != SQLITE_OK) {            \
			rc = fail(s, brc_, "bind"); \
			goto done;                  \
		}                                   \
	} while (0)

/* A time bound as SQLite holds it: never past the largest signed value. */
static sqlite3_int64 time_param(uint64_t t)
{
	return t > (uint64_t)INT64_MAX ? INT64_MAX : (sqlite3_int64)t;
}

/* Makes a statement ready for its next use, and passes rc on. */
static int done_with(sqlite3_stmt *st, int rc)
{
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc;
}

const char *store_errmsg(const saga_store *s)
{
	return s->errmsg;
}

static int exec(saga_store *s, const char *sql, const char *what)
{
	int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
	return rc == SQLITE_OK ? SAGA_OK : fail(s, rc, what);
}

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

/* Sets the store's message and returns code. */
static int refuse(saga_store *s, int code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static int refuse(saga_store *s, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(s->errmsg, sizeof(s->errmsg), fmt, ap);
	va_end(ap);
	if (n < 0)
		s->errmsg[0] = '\0';
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

static int flush_history(saga_store *s);
static void drop_history(saga_store *s);
static int read_boot_id(saga_store *s);
static void txn_reset(saga_store *s);
static int one_int(saga_store *s, sqlite3_stmt *st, const char *what, sqlite3_int64 *out);

/* ------------------------------------------------------------------------ */
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
static int byte_lock(saga_store *s, int64_t at, short type, bool test, bool *held)
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

/* Runs a statement that returns no rows, and resets it. */
static int exec_stmt(saga_store *s, sqlite3_stmt *st, const char *what)
{
	int rc = sqlite3_step(st);
	int code = (rc == SQLITE_DONE || rc == SQLITE_ROW) ? SAGA_OK : fail(s, rc, what);
	/* Every caller binds all of the statement's parameters before each
	 * step, so the bindings are left as they are (clearing them costs). */
	sqlite3_reset(st);
	return code;
}

/* ------------------------------------------------------------------------ */
/* Owners: leases, claims, reaping
 *
 * The lease clock is CLOCK_BOOTTIME, which every process on the host shares
 * and which counts while the machine sleeps; a lease is only compared with
 * the clock of the boot it was written under (owners.boot_id): an owner
 * from another boot is dead. The due times stay on the engine's wall clock,
 * which survives reboots. */

static uint64_t lease_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int read_boot_id(saga_store *s)
{
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
	size_t n = f ? fread(s->boot_id, 1, sizeof(s->boot_id) - 1, f) : 0;
	if (f)
		fclose(f);
	while (n && (s->boot_id[n - 1] == '\n' || s->boot_id[n - 1] == ' '))
		n--;
	s->boot_id[n] = '\0';
	if (n == 0)
		return refuse(s, SAGA_EIO,
		              "store: cannot read this boot's id "
		              "(/proc/sys/kernel/random/boot_id)");
	return SAGA_OK;
}

int64_t store_epoch(const saga_store *s)
{
	return s->epoch;
}

uint64_t store_lease_left(const saga_store *s)
{
	uint64_t now = lease_now();
	return s->lease_until > now ? s->lease_until - now : 0;
}

/* Binds ?1 to this owner and runs a statement that returns no rows. */
static int exec_owned(saga_store *s, int id, int64_t epoch, const char *what)
{
	sqlite3_stmt *st = s->st[id];
	int brc = sqlite3_bind_int64(st, 1, epoch);
	return brc == SQLITE_OK ? exec_stmt(s, st, what) : fail(s, brc, "bind");
}

/* Ends owner `epoch` (state 1 dead, 2 retired), its unfinished instances
 * back to the pool, its definitions forgotten; in the open transaction. */
static int end_owner(saga_store *s, int64_t epoch, int state)
{
	sqlite3_stmt *st = s->st[ST_OWNER_END];
	int rc = SAGA_OK;
	BIND(sqlite3_bind_int64(st, 1, epoch));
	BIND(sqlite3_bind_int(st, 2, state));
	if ((rc = exec_stmt(s, st, "end owner")) ||
	    (rc = exec_owned(s, ST_OWNER_RELEASE, epoch, "release instances")))
		return rc;
	return exec_owned(s, ST_OWNER_UNSERVE, epoch, "forget definitions");
done:
	return done_with(st, rc);
}

enum { OWNER_LIVE = 0, OWNER_DEAD = 1, OWNER_RETIRED = 2 };

int store_register(saga_store *s, uint64_t lease_ms)
{
	char host[256] = "";
	if (gethostname(host, sizeof(host) - 1) != 0)
		host[0] = '\0';
	int rc = exec(s, "BEGIN IMMEDIATE", "begin registration");
	if (rc)
		return rc;
	int64_t old = s->epoch;
	if (old && (rc = end_owner(s, old, OWNER_RETIRED)))
		goto fail;
	uint64_t now = lease_now();
	sqlite3_stmt *st = NULL;
	int src = sqlite3_prepare_v2(s->db,
	                             "INSERT INTO owners(host, pid, boot_id, started_at,"
	                             " lease_until, state) VALUES (?1, ?2, ?3, ?4, ?5, 0)",
	                             -1, &st, NULL);
	if (src == SQLITE_OK)
		src = sqlite3_bind_text(st, 1, host, -1, SQLITE_STATIC);
	if (src == SQLITE_OK)
		src = sqlite3_bind_int64(st, 2, (sqlite3_int64)getpid());
	if (src == SQLITE_OK)
		src = sqlite3_bind_text(st, 3, s->boot_id, -1, SQLITE_STATIC);
	if (src == SQLITE_OK)
		src = sqlite3_bind_int64(st, 4, (sqlite3_int64)now);
	if (src == SQLITE_OK)
		src = sqlite3_bind_int64(st, 5, (sqlite3_int64)(now + lease_ms));
	if (src == SQLITE_OK && (src = sqlite3_step(st)) == SQLITE_DONE)
		src = SQLITE_OK;
	sqlite3_finalize(st);
	if (src != SQLITE_OK) {
		rc = fail(s, src, "register owner");
		goto fail;
	}
	int64_t epoch = sqlite3_last_insert_rowid(s->db);
	/* The liveness byte is held before anyone can see the owner. */
	if ((rc = byte_lock(s, epoch, F_WRLCK, false, NULL))) {
		rc = refuse(s, rc == SAGA_EBUSY ? SAGA_ECORRUPT : rc,
		            "store: cannot lock byte %lld of %s-lock", (long long)epoch, s->path);
		goto fail;
	}
	if ((rc = exec(s, "COMMIT", "commit registration"))) {
		byte_lock(s, epoch, F_UNLCK, false, NULL);
		goto fail;
	}
	if (old)
		byte_lock(s, old, F_UNLCK, false, NULL);
	s->epoch = epoch;
	s->lease_ms = lease_ms;
	s->lease_until = now + lease_ms;
	return SAGA_OK;
fail:
	sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

int store_serve(saga_store *s, const char *name, int version)
{
	if (!s->epoch)
		return refuse(s, SAGA_ESTATE, "store: no owner registered");
	sqlite3_stmt *st = s->st[ST_SERVE];
	int rc = SAGA_OK;
	BIND(sqlite3_bind_int64(st, 1, s->epoch));
	BIND(sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC));
	BIND(sqlite3_bind_int(st, 3, version));
	return exec_stmt(s, st, "serve definition");
done:
	return done_with(st, rc);
}

int store_retire(saga_store *s)
{
	if (!s->epoch)
		return SAGA_OK;
	int rc = exec(s, "BEGIN IMMEDIATE", "begin retirement");
	if (rc == SAGA_OK && (rc = end_owner(s, s->epoch, OWNER_RETIRED)) == SAGA_OK)
		rc = exec(s, "COMMIT", "commit retirement");
	if (rc) {
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		return rc;
	}
	byte_lock(s, s->epoch, F_UNLCK, false, NULL);
	s->epoch = 0;
	return SAGA_OK;
}

int store_begin(saga_store *s)
{
	txn_reset(s);
	int rc = exec_stmt(s, s->st[ST_BEGIN], "begin");
	if (rc || !s->epoch)
		return rc;
	/* The heartbeat, and the fence of everything this transaction writes:
	 * the lease is renewed only while it has not lapsed. */
	uint64_t now = lease_now();
	sqlite3_stmt *st = s->st[ST_RENEW];
	BIND(sqlite3_bind_int64(st, 1, s->epoch));
	BIND(sqlite3_bind_int64(st, 2, (sqlite3_int64)now));
	BIND(sqlite3_bind_int64(st, 3, (sqlite3_int64)s->lease_ms));
	if ((rc = exec_stmt(s, st, "renew lease")))
		goto fail;
	if (sqlite3_changes(s->db) != 1) {
		rc = refuse(s, SAGA_EFENCED,
		            "store: the lease of owner %lld lapsed; another process may own its "
		            "instances now",
		            (long long)s->epoch);
		s->lease_until = 0;
		goto fail;
	}
	s->lease_until = now + s->lease_ms;
	return SAGA_OK;
done:
	done_with(st, rc);
fail:
	store_rollback(s);
	return rc;
}

int store_reap(saga_store *s, int64_t *reaped, int *live)
{
	*reaped = 0;
	*live = 0;
	sqlite3_stmt *st = s->st[ST_OWNERS_LIVE];
	int64_t dead[64];
	int ndead = 0, src, rc = SAGA_OK;
	uint64_t now = lease_now();
	BIND(sqlite3_bind_int64(st, 1, s->epoch));
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t epoch = sqlite3_column_int64(st, 0);
		uint64_t until = (uint64_t)sqlite3_column_int64(st, 1);
		const char *boot = (const char *)sqlite3_column_text(st, 2);
		bool same_boot = boot && strcmp(boot, s->boot_id) == 0, held = true;
		/* On this host, a free byte means the process is gone. */
		if (same_boot && until > now &&
		    byte_lock(s, epoch, F_WRLCK, true, &held) != SAGA_OK)
			held = true; /* cannot tell: the lease decides */
		if (!same_boot || until <= now || !held) {
			if (ndead < (int)(sizeof(dead) / sizeof(dead[0])))
				dead[ndead++] = epoch;
		} else {
			(*live)++;
		}
	}
	rc = src == SQLITE_DONE ? SAGA_OK : fail(s, src, "list owners");
	done_with(st, rc);
	if (rc || !ndead)
		return rc;
	/* A lapsed lease is never renewed and a gone process never comes
	 * back: what was read outside a transaction still holds in it. */
	bool own = sqlite3_get_autocommit(s->db);
	if (own && (rc = exec(s, "BEGIN IMMEDIATE", "begin reaping")))
		return rc;
	for (int i = 0; i < ndead && rc == SAGA_OK; i++)
		rc = end_owner(s, dead[i], OWNER_DEAD);
	if (own && rc == SAGA_OK)
		rc = exec(s, "COMMIT", "commit reaping");
	if (own && rc)
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	if (rc == SAGA_OK)
		*reaped = ndead;
	return rc;
done:
	return done_with(st, rc);
}

int store_claim_one(saga_store *s, int64_t id, bool *claimed)
{
	*claimed = false;
	if (!s->epoch)
		return refuse(s, SAGA_ESTATE, "store: no owner registered");
	sqlite3_stmt *st = s->st[ST_CLAIM_ONE];
	int rc = SAGA_OK;
	BIND(sqlite3_bind_int64(st, 1, s->epoch));
	BIND(sqlite3_bind_int64(st, 2, id));
	if ((rc = exec_stmt(s, st, "claim instance")) == SAGA_OK)
		*claimed = sqlite3_changes(s->db) == 1;
	return rc;
done:
	return done_with(st, rc);
}

int store_claim(saga_store *s, uint64_t now, int limit, store_id_fn fn, void *user)
{
	if (!s->epoch)
		return refuse(s, SAGA_ESTATE, "store: no owner registered");
	sqlite3_stmt *st = s->st[ST_CLAIM];
	int rc = SAGA_OK, src;
	BIND(sqlite3_bind_int64(st, 1, s->epoch));
	BIND(sqlite3_bind_int64(st, 2, time_param(now)));
	BIND(sqlite3_bind_int(st, 3, limit));
	/* Every row is stepped: the statement claims them all, whatever fn says. */
	bool stop = false;
	while ((src = sqlite3_step(st)) == SQLITE_ROW)
		if (!stop && fn(sqlite3_column_int64(st, 0), user))
			stop = true;
	rc = src == SQLITE_DONE ? SAGA_OK : fail(s, src, "claim");
done:
	return done_with(st, rc);
}

int store_changed(saga_store *s, bool *changed)
{
	sqlite3_int64 v = 0;
	int rc = one_int(s, s->st[ST_DATA_VERSION], "data version", &v);
	if (rc)
		return rc;
	*changed = v != s->data_version;
	s->data_version = v;
	return SAGA_OK;
}

int store_put_command(saga_store *s, const store_command *c)
{
	sqlite3_stmt *st = s->st[ST_CMD_PUT];
	int rc = SAGA_OK;
	BIND(sqlite3_bind_int64(st, 1, c->instance));
	BIND(sqlite3_bind_int(st, 2, c->verb));
	BIND(sqlite3_bind_int(st, 3, c->step));
	BIND(sqlite3_bind_int(st, 4, c->phase));
	BIND(sqlite3_bind_int(st, 5, c->result));
	if (c->output)
		BIND(sqlite3_bind_text(st, 6, c->output, -1, SQLITE_STATIC));
	else
		BIND(sqlite3_bind_null(st, 6));
	BIND(sqlite3_bind_int64(st, 7, time_param(c->requested_at)));
	BIND(sqlite3_bind_int64(st, 8, s->epoch));
	return exec_stmt(s, st, "queue command");
done:
	return done_with(st, rc);
}

int store_commands(saga_store *s, store_command_fn fn, void *user)
{
	sqlite3_stmt *st = s->st[ST_CMD_LIST];
	int rc = SAGA_OK, src;
	BIND(sqlite3_bind_int64(st, 1, s->epoch));
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		store_command c;
		c.id = sqlite3_column_int64(st, 0);
		c.instance = sqlite3_column_int64(st, 1);
		c.verb = sqlite3_column_int(st, 2);
		c.step = sqlite3_column_int(st, 3);
		c.phase = sqlite3_column_int(st, 4);
		c.result = sqlite3_column_int(st, 5);
		c.output = (const char *)sqlite3_column_text(st, 6);
		c.requested_at = (uint64_t)sqlite3_column_int64(st, 7);
		if (fn(&c, user))
			break;
	}
	if (src != SQLITE_ROW && src != SQLITE_DONE)
		rc = fail(s, src, "read commands");
done:
	return done_with(st, rc);
}

int store_count_commands(saga_store *s, const store_command *c, int64_t *n)
{
	sqlite3_stmt *st = s->st[ST_CMD_FIND];
	int rc = SAGA_OK;
	BIND(sqlite3_bind_int64(st, 1, c->instance));
	BIND(sqlite3_bind_int(st, 2, c->verb));
	BIND(sqlite3_bind_int(st, 3, c->step));
	BIND(sqlite3_bind_int(st, 4, c->phase));
	sqlite3_int64 v = 0;
	rc = one_int(s, st, "count commands", &v);
	*n = v;
	return rc;
done:
	return done_with(st, rc);
}

int store_delete_command(saga_store *s, int64_t id)
{
	return exec_owned(s, ST_CMD_DEL, id, "delete command");
}

static void drop_history(saga_store *s)
{
	for (size_t i = 0; i < s->nhist; i++)
		saga_free(&s->alloc, s->hist[i].big);
	s->nhist = 0;
}

static int bind_hist(saga_store *s, sqlite3_stmt *st, int base, const struct hist_entry *e)
{
	const saga_hist *h = &e->h;
	int rc = SAGA_OK;
	BIND(sqlite3_bind_int64(st, base + 1, h->instance));
	BIND(sqlite3_bind_int64(st, base + 2, h->seq));
	BIND(sqlite3_bind_int64(st, base + 3, (sqlite3_int64)h->at));
	BIND(sqlite3_bind_int(st, base + 4, h->type));
	BIND(sqlite3_bind_int(st, base + 5, h->state));
	BIND(sqlite3_bind_int(st, base + 6, h->step));
	BIND(sqlite3_bind_int(st, base + 7, h->phase));
	BIND(sqlite3_bind_int64(st, base + 8, h->attempt));
	BIND(sqlite3_bind_int(st, base + 9, h->outcome));
	BIND(sqlite3_bind_text(st, base + 10, e->big ? e->big : e->small, -1, SQLITE_STATIC));
	BIND(sqlite3_bind_int64(st, base + 11, h->fence));
done:
	return rc;
}

/* Writes the waiting history rows, HIST_MANY to a statement while there are
 * that many. A failure loses them: the transaction must then roll back, and
 * store_commit refuses to commit it. */
static int flush_history(saga_store *s)
{
	int rc = s->hist_failed;
	for (size_t i = 0; i < s->nhist && rc == SAGA_OK;) {
		size_t n = s->nhist - i >= HIST_MANY ? HIST_MANY : 1;
		sqlite3_stmt *st = s->st[n == 1 ? ST_HIST_ADD : ST_HIST_ADD_MANY];
		for (size_t k = 0; k < n && rc == SAGA_OK; k++)
			rc = bind_hist(s, st, (int)k * 11, &s->hist[i + k]);
		if (rc == SAGA_OK) {
			rc = exec_stmt(s, st, "add history");
		} else {
			done_with(st, rc);
		}
		i += n;
	}
	drop_history(s);
	return s->hist_failed = rc;
}

/* Appends an id to a list (a repeat of the last one is left out). */
static int id_add(saga_store *s, struct id_set *set, int64_t id)
{
	if (set->n && set->v[set->n - 1] == id)
		return SAGA_OK;
	if (set->n == set->cap) {
		size_t cap = set->cap ? set->cap * 2 : 128;
		int64_t *v = saga_realloc(&s->alloc, set->v, cap * sizeof(*v));
		if (!v)
			return SAGA_ENOMEM;
		set->v = v;
		set->cap = cap;
	}
	set->v[set->n++] = id;
	return SAGA_OK;
}

static size_t id_slot(const struct id_set *set, int64_t id)
{
	size_t i = (size_t)((uint64_t)id * 0x9e3779b97f4a7c15ull >> 20) & (set->cap - 1);
	while (set->v[i] != 0 && set->v[i] != id)
		i = (i + 1) & (set->cap - 1);
	return i;
}

/* Adds an id (> 0) to a hash set. */
static int id_put(saga_store *s, struct id_set *set, int64_t id)
{
	if (2 * (set->n + 1) > set->cap) {
		size_t cap = set->cap ? set->cap * 2 : 128;
		int64_t *v = saga_calloc(&s->alloc, cap, sizeof(*v));
		if (!v)
			return SAGA_ENOMEM;
		struct id_set grown = { v, 0, cap };
		for (size_t i = 0; i < set->cap; i++)
			if (set->v[i])
				grown.v[id_slot(&grown, set->v[i])] = set->v[i], grown.n++;
		saga_free(&s->alloc, set->v);
		*set = grown;
	}
	size_t i = id_slot(set, id);
	if (!set->v[i]) {
		set->v[i] = id;
		set->n++;
	}
	return SAGA_OK;
}

/* Every instance with history in the transaction was written in it (by
 * its owner, so the fence held): else the history is another owner's. */
static int check_histories(saga_store *s)
{
	struct id_set *h = &s->histories, *w = &s->written;
	for (size_t i = 0; i < h->n; i++)
		if (!w->cap || !w->v[id_slot(w, h->v[i])])
			return refuse(s, SAGA_EFENCED,
			              "store: history of instance %lld without a write of it: "
			              "not this owner's",
			              (long long)h->v[i]);
	return SAGA_OK;
}

static void txn_reset(saga_store *s)
{
	s->fenced = false;
	if (s->written.n)
		memset(s->written.v, 0, s->written.cap * sizeof(*s->written.v));
	s->written.n = s->histories.n = 0;
}

int store_commit(saga_store *s)
{
	int rc = s->fenced ? refuse(s, SAGA_EFENCED,
	                            "store: a fenced write was refused: the transaction "
	                            "cannot commit")
	                   : check_histories(s);
	if (rc == SAGA_OK)
		rc = flush_history(s);
	if (rc == SAGA_OK)
		rc = exec_stmt(s, s->st[ST_COMMIT], "commit");
	txn_reset(s);
	if (rc) {
		store_rollback(s);
		return rc;
	}
	return SAGA_OK;
}

void store_rollback(saga_store *s)
{
	if (!sqlite3_get_autocommit(s->db)) {
		sqlite3_step(s->st[ST_ROLLBACK]);
		sqlite3_reset(s->st[ST_ROLLBACK]);
	}
	drop_history(s);
	s->hist_failed = SAGA_OK;
	txn_reset(s);
}

/* Steps a statement whose parameters are bound and that answers at most one
 * row of one integer: SAGA_OK with *out set, SAGA_ENOTFOUND without a row, or
 * the error. Resets the statement either way. */
static int one_int(saga_store *s, sqlite3_stmt *st, const char *what, sqlite3_int64 *out)
{
	int src = sqlite3_step(st);
	int rc = SAGA_OK;
	if (src == SQLITE_ROW)
		*out = sqlite3_column_int64(st, 0);
	else
		rc = src == SQLITE_DONE ? SAGA_ENOTFOUND : fail(s, src, what);
	return done_with(st, rc);
}

int store_get_definition(saga_store *s, char **snapshot, const char *name, int version,
                         const saga_alloc *a)
{
	sqlite3_stmt *st = s->st[ST_DEF_GET];
	int rc = SAGA_OK;
	*snapshot = NULL;
	BIND(sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC));
	BIND(sqlite3_bind_int(st, 2, version));
	int src = sqlite3_step(st);
	if (src == SQLITE_ROW) {
		const char *t = (const char *)sqlite3_column_text(st, 0);
		if (!t || !(*snapshot = saga_strdup(a, t)))
			rc = SAGA_ENOMEM;
	} else {
		rc = src == SQLITE_DONE ? SAGA_ENOTFOUND : fail(s, src, "read definition");
	}
done:
	return done_with(st, rc);
}

int store_put_definition(saga_store *s, const char *name, int version, const char *snapshot)
{
	/* One statement: another process may register the same definition at
	 * the same moment. When one is there already, it must be the same. */
	sqlite3_stmt *st = s->st[ST_DEF_PUT];
	int rc = SAGA_OK;
	BIND(sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC));
	BIND(sqlite3_bind_int(st, 2, version));
	BIND(sqlite3_bind_text(st, 3, snapshot, -1, SQLITE_STATIC));
	if ((rc = exec_stmt(s, st, "store definition")) || sqlite3_changes(s->db) == 1)
		return rc;
	char *old = NULL;
	if ((rc = store_get_definition(s, &old, name, version, &s->alloc)))
		return rc;
	if (strcmp(old, snapshot) != 0) {
		saga_fmt(s->errmsg, sizeof(s->errmsg),
		         "definition '%s' version %d differs from the one in the store; "
		         "give the changed definition a new version",
		         name, version);
		rc = SAGA_ECONFLICT;
	}
	saga_free(&s->alloc, old);
	return rc;
done:
	return done_with(st, rc);
}

/* Which columns a statement sets: the insert all of them, the update all but
 * the fixed ones (finished_at from the state), progress neither those nor
 * state and due_at. */
enum row_kind { ROW_INSERT, ROW_UPDATE, ROW_PROGRESS };

static int bind_row(saga_store *s, sqlite3_stmt *st, const saga_row *r, enum row_kind kind)
{
	int rc = SAGA_OK;
	BIND(sqlite3_bind_int64(st, PARAM(COL_ID), r->id));
	if (kind == ROW_INSERT) {
		BIND(sqlite3_bind_int64(st, PARAM(COL_FINISHED_AT),
		                        r->state >= SAGA_COMPLETED ? (sqlite3_int64)r->updated_at
		                                                   : 0));
		BIND(sqlite3_bind_text(st, PARAM(COL_UID), r->uid, -1, SQLITE_STATIC));
		BIND(sqlite3_bind_text(st, PARAM(COL_DEF_NAME), r->def_name, -1, SQLITE_STATIC));
		BIND(sqlite3_bind_int(st, PARAM(COL_DEF_VERSION), r->def_version));
		if (r->has_bkey)
			BIND(sqlite3_bind_text(st, PARAM(COL_BUSINESS_KEY), r->bkey, -1,
			                       SQLITE_STATIC));
		else
			BIND(sqlite3_bind_null(st, PARAM(COL_BUSINESS_KEY)));
		BIND(sqlite3_bind_int64(st, PARAM(COL_CREATED_AT), (sqlite3_int64)r->created_at));
	}
	BIND(sqlite3_bind_int(st, PARAM(COL_STATE), r->state));
	BIND(sqlite3_bind_int(st, PARAM(COL_PHASE), r->phase));
	BIND(sqlite3_bind_int(st, PARAM(COL_STEP), r->step));
	BIND(sqlite3_bind_int64(st, PARAM(COL_ATTEMPT), r->attempt));
	BIND(sqlite3_bind_int(st, PARAM(COL_INFLIGHT), r->inflight));
	BIND(sqlite3_bind_int(st, PARAM(COL_PENDING), r->pending));
	BIND(sqlite3_bind_int(st, PARAM(COL_PIVOT_DONE), r->pivot_done));
	BIND(sqlite3_bind_int(st, PARAM(COL_REASON), r->reason));
	BIND(sqlite3_bind_int(st, PARAM(COL_FWD_STARTED), r->fwd_started));
	BIND(sqlite3_bind_int(st, PARAM(COL_COMP_DONE_ANY), r->comp_done_any));
	BIND(sqlite3_bind_int64(st, PARAM(COL_DUE_AT), (sqlite3_int64)r->due_at));
	BIND(sqlite3_bind_int64(st, PARAM(COL_DEADLINE_AT), (sqlite3_int64)r->deadline_at));
	BIND(sqlite3_bind_int64(st, PARAM(COL_ATTEMPT_DEADLINE),
	                        (sqlite3_int64)r->attempt_deadline));
	BIND(sqlite3_bind_int64(st, PARAM(COL_STEP_SINCE), (sqlite3_int64)r->step_since));
	BIND(sqlite3_bind_int64(st, PARAM(COL_PREV_DELAY), (sqlite3_int64)r->prev_delay));
	BIND(sqlite3_bind_int64(st, PARAM(COL_UPDATED_AT), (sqlite3_int64)r->updated_at));
	BIND(sqlite3_bind_text(st, PARAM(COL_ERROR), r->error, -1, SQLITE_STATIC));
	BIND(sqlite3_bind_text(st, PARAM(COL_CONTEXT), r->context ? r->context : "{}", -1,
	                       SQLITE_STATIC));
	/* The insert writes the row's owner; an update is by this owner. */
	BIND(sqlite3_bind_int64(st, PARAM(COL_OWNER), kind == ROW_INSERT ? r->owner : s->epoch));
	BIND(sqlite3_bind_int64(st, PARAM(COL_FENCE), r->fence));
	BIND(sqlite3_bind_int64(st, PARAM(COL_NEXT_SEQ), r->next_seq));
	BIND(sqlite3_bind_int64(st, PARAM(COL_RECOVERIES), r->recoveries));
done:
	return rc;
}

/* Binds and runs one of the row statements. */
static int write_row(saga_store *s, saga_row *r, enum row_kind kind)
{
	static const int ids[] = {
		[ROW_INSERT] = ST_INSERT, [ROW_UPDATE] = ST_UPDATE, [ROW_PROGRESS] = ST_PROGRESS
	};
	static const char *const what[] = { [ROW_INSERT] = "insert instance",
		                            [ROW_UPDATE] = "update instance",
		                            [ROW_PROGRESS] = "update instance" };
	sqlite3_stmt *st = s->st[ids[kind]];
	int rc = bind_row(s, st, r, kind);
	if (rc) {
		return done_with(st, rc);
	}
	if ((rc = exec_stmt(s, st, what[kind])))
		return rc;
	r->stored_state = r->state;
	r->stored_due = r->due_at;
	return SAGA_OK;
}

int store_insert(saga_store *s, saga_row *r)
{
	int rc = write_row(s, r, ROW_INSERT);
	if (rc == SAGA_OK) {
		r->id = sqlite3_last_insert_rowid(s->db);
		rc = id_put(s, &s->written, r->id);
	}
	return rc;
}

int store_update(saga_store *s, saga_row *r)
{
	if (!s->epoch)
		return refuse(s, SAGA_EFENCED,
		              "store: no owner registered (or retired): "
		              "it holds no instance");
	/* Most writes are a step's progress, with the state and due time as
	 * they were: the narrow statement leaves the indexes alone. What the
	 * row remembers of the store is only a hint; the statement itself
	 * checks, and changes nothing when the store differs. */
	if (r->state == r->stored_state && r->due_at == r->stored_due) {
		int rc = write_row(s, r, ROW_PROGRESS);
		if (rc == SAGA_OK && sqlite3_changes(s->db) == 1)
			return id_put(s, &s->written, r->id);
		if (rc)
			return rc;
	}
	int rc = write_row(s, r, ROW_UPDATE);
	if (rc == SAGA_OK && sqlite3_changes(s->db) == 1)
		return id_put(s, &s->written, r->id);
	s->fenced = s->fenced || rc == SAGA_OK;
	if (rc == SAGA_OK)
		return refuse(s, SAGA_EFENCED,
		              "store: instance %lld is no longer this process's (owner %lld, "
		              "fence %lld as loaded)",
		              (long long)r->id, (long long)r->owner, (long long)r->fence);
	return rc;
}

static void copy_col(char *dst, size_t size, sqlite3_stmt *st, int col)
{
	const unsigned char *t = sqlite3_column_text(st, col);
	size_t n = t ? (size_t)sqlite3_column_bytes(st, col) : 0;
	if (n >= size)
		n = size - 1; /* longer than the field allows: cut, never overflow */
	if (n)
		memcpy(dst, t, n);
	dst[n] = '\0';
}

/* Reads the current row of st; context is copied when alloc is not NULL. */
static int read_row(saga_store *s, sqlite3_stmt *st, saga_row *r, const saga_alloc *a)
{
	memset(r, 0, sizeof(*r));
	/* Integers must be integers, and the narrow ones must fit: text, or a
	 * state of 2^32, would read as 0 in C yet match nothing in the SQL
	 * scans, hiding the instance from recovery. Times are never negative. */
	for (int col = COL_DEF_VERSION; col <= COL_UPDATED_AT; col++) {
		if (col == COL_BUSINESS_KEY)
			continue;
		sqlite3_int64 v = sqlite3_column_int64(st, col);
		bool narrow = col <= COL_COMP_DONE_ANY; /* version .. comp_done_any are C ints */
		if (sqlite3_column_type(st, col) != SQLITE_INTEGER || v < (narrow ? -1 : 0) ||
		    (narrow && v > INT32_MAX)) {
			saga_fmt(s->errmsg, sizeof(s->errmsg),
			         "store: instance %lld: column %d holds an impossible value",
			         (long long)sqlite3_column_int64(st, COL_ID), col);
			return SAGA_ECORRUPT;
		}
	}
	r->id = sqlite3_column_int64(st, COL_ID);
	copy_col(r->uid, sizeof(r->uid), st, COL_UID);
	copy_col(r->def_name, sizeof(r->def_name), st, COL_DEF_NAME);
	r->def_version = sqlite3_column_int(st, COL_DEF_VERSION);
	r->has_bkey = sqlite3_column_type(st, COL_BUSINESS_KEY) != SQLITE_NULL;
	copy_col(r->bkey, sizeof(r->bkey), st, COL_BUSINESS_KEY);
	r->state = sqlite3_column_int(st, COL_STATE);
	r->phase = sqlite3_column_int(st, COL_PHASE);
	r->step = sqlite3_column_int(st, COL_STEP);
	sqlite3_int64 attempt = sqlite3_column_int64(st, COL_ATTEMPT);
	r->attempt = attempt < 0 || attempt > UINT32_MAX / 2 ? UINT32_MAX : (uint32_t)attempt;
	r->inflight = sqlite3_column_int(st, COL_INFLIGHT) != 0;
	r->pending = sqlite3_column_int(st, COL_PENDING) != 0;
	r->pivot_done = sqlite3_column_int(st, COL_PIVOT_DONE) != 0;
	r->reason = sqlite3_column_int(st, COL_REASON);
	r->fwd_started = sqlite3_column_int(st, COL_FWD_STARTED);
	r->comp_done_any = sqlite3_column_int(st, COL_COMP_DONE_ANY) != 0;
	r->due_at = (uint64_t)sqlite3_column_int64(st, COL_DUE_AT);
	r->deadline_at = (uint64_t)sqlite3_column_int64(st, COL_DEADLINE_AT);
	r->attempt_deadline = (uint64_t)sqlite3_column_int64(st, COL_ATTEMPT_DEADLINE);
	r->step_since = (uint64_t)sqlite3_column_int64(st, COL_STEP_SINCE);
	r->prev_delay = (uint64_t)sqlite3_column_int64(st, COL_PREV_DELAY);
	r->created_at = (uint64_t)sqlite3_column_int64(st, COL_CREATED_AT);
	r->updated_at = (uint64_t)sqlite3_column_int64(st, COL_UPDATED_AT);
	for (int col = COL_OWNER; col <= COL_RECOVERIES; col++) {
		if (sqlite3_column_type(st, col) != SQLITE_INTEGER ||
		    sqlite3_column_int64(st, col) < 0) {
			saga_fmt(s->errmsg, sizeof(s->errmsg),
			         "store: instance %lld: column %d holds an impossible value",
			         (long long)sqlite3_column_int64(st, COL_ID), col);
			return SAGA_ECORRUPT;
		}
	}
	r->owner = sqlite3_column_int64(st, COL_OWNER);
	r->fence = sqlite3_column_int64(st, COL_FENCE);
	r->next_seq = sqlite3_column_int64(st, COL_NEXT_SEQ);
	r->recoveries = sqlite3_column_int64(st, COL_RECOVERIES);
	r->stored_state = r->state;
	r->stored_due = r->due_at;
	copy_col(r->error, sizeof(r->error), st, COL_ERROR);
	if (r->state < 0 || r->state >= SAGA_STATE_COUNT || r->phase < 0 || r->phase > 1) {
		saga_fmt(s->errmsg, sizeof(s->errmsg), "store: instance %lld has an invalid state",
		         (long long)r->id);
		return SAGA_ECORRUPT;
	}
	if (a) {
		const char *ctx = (const char *)sqlite3_column_text(st, COL_CONTEXT);
		if (!ctx && sqlite3_errcode(s->db) == SQLITE_NOMEM)
			return SAGA_ENOMEM;
		if (!(r->context = saga_strdup(a, ctx ? ctx : "{}")))
			return SAGA_ENOMEM;
	}
	return SAGA_OK;
}

static int load_by(saga_store *s, sqlite3_stmt *st, saga_row *r, const saga_alloc *a)
{
	int rc = sqlite3_step(st);
	int code;
	if (rc == SQLITE_ROW)
		code = read_row(s, st, r, a);
	else if (rc == SQLITE_DONE)
		code = SAGA_ENOTFOUND;
	else
		code = fail(s, rc, "load instance");
	return done_with(st, code);
}

int store_load(saga_store *s, saga_row *r, int64_t id, const saga_alloc *a)
{
	sqlite3_stmt *st = s->st[ST_LOAD];
	int rc = sqlite3_bind_int64(st, 1, id);
	if (rc != SQLITE_OK)
		return fail(s, rc, "bind");
	return load_by(s, st, r, a);
}

int store_load_uid(saga_store *s, saga_row *r, const char *uid, const saga_alloc *a)
{
	sqlite3_stmt *st = s->st[ST_LOAD_UID];
	int rc = sqlite3_bind_text(st, 1, uid, -1, SQLITE_STATIC);
	if (rc != SQLITE_OK)
		return fail(s, rc, "bind");
	return load_by(s, st, r, a);
}

/* Bounds the rows held in memory within one transaction. */
#define HIST_BUFFER_MAX 1024

int store_add_history(saga_store *s, const saga_hist *h)
{
	/* The row waits for the commit of the open transaction: there must be one. */
	if (sqlite3_get_autocommit(s->db)) {
		saga_fmt(s->errmsg, sizeof(s->errmsg),
		         "store: history written outside a transaction");
		return SAGA_ESTATE;
	}
	int rc;
	if (s->nhist == s->hist_cap) {
		if (s->hist_cap >= HIST_BUFFER_MAX) {
			if ((rc = flush_history(s)))
				return rc;
		} else {
			size_t cap = s->hist_cap ? s->hist_cap * 2 : 64;
			struct hist_entry *n = saga_realloc(&s->alloc, s->hist, cap * sizeof(*n));
			if (!n)
				return SAGA_ENOMEM;
			s->hist = n;
			s->hist_cap = cap;
		}
	}
	if ((rc = id_add(s, &s->histories, h->instance)))
		return rc;
	struct hist_entry *e = &s->hist[s->nhist];
	const char *detail = h->detail ? h->detail : "";
	size_t len = strlen(detail);
	e->big = NULL;
	if (len < sizeof(e->small))
		memcpy(e->small, detail, len + 1);
	else if (!(e->big = saga_strdup(&s->alloc, detail)))
		return SAGA_ENOMEM;
	e->h = *h;
	e->h.detail = NULL; /* the copy is bound, never this pointer */
	s->nhist++;
	return SAGA_OK;
}

/* Steps through an id query, calling fn for each id. */
static int scan_ids(saga_store *s, sqlite3_stmt *st, store_id_fn fn, void *user)
{
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (fn(sqlite3_column_int64(st, 0), user))
			break;
	}
	int code = (rc == SQLITE_ROW || rc == SQLITE_DONE) ? SAGA_OK : fail(s, rc, "scan");
	return done_with(st, code);
}

int store_scan_active(saga_store *s, store_id_fn fn, void *user)
{
	sqlite3_stmt *st = s->st[ST_SCAN_ACTIVE];
	int rc = sqlite3_bind_int64(st, 1, s->epoch);
	return rc == SQLITE_OK ? scan_ids(s, st, fn, user) : done_with(st, fail(s, rc, "bind"));
}

int store_scan_due(saga_store *s, uint64_t now, int limit, store_id_fn fn, void *user)
{
	sqlite3_stmt *st = s->st[ST_SCAN_DUE];
	int rc = SAGA_OK;
	BIND(sqlite3_bind_int64(st, 1, (sqlite3_int64)now));
	BIND(sqlite3_bind_int(st, 2, limit));
	BIND(sqlite3_bind_int64(st, 3, s->epoch));
	return scan_ids(s, st, fn, user);
done:
	return done_with(st, rc);
}

/* min(due_at) of one of the next-due queries, bound to this owner. */
static int min_due(saga_store *s, sqlite3_stmt *st, uint64_t *out)
{
	*out = 0;
	int rc = sqlite3_bind_int64(st, 1, s->epoch);
	if (rc != SQLITE_OK)
		return done_with(st, fail(s, rc, "bind"));
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*out = (uint64_t)sqlite3_column_int64(st, 0);
	return done_with(st, (rc == SQLITE_ROW || rc == SQLITE_DONE) ? SAGA_OK
	                                                             : fail(s, rc, "next due"));
}

int store_next_due_pool(saga_store *s, uint64_t *out)
{
	return min_due(s, s->st[ST_NEXT_DUE_POOL], out);
}

int store_next_due(saga_store *s, uint64_t *out)
{
	uint64_t own = 0, pool = 0;
	int rc = min_due(s, s->st[ST_NEXT_DUE], &own);
	if (rc == SAGA_OK)
		rc = min_due(s, s->st[ST_NEXT_DUE_POOL], &pool);
	*out = !own ? pool : !pool ? own : own < pool ? own : pool;
	return rc;
}

int store_history(saga_store *s, int64_t id, saga_event_fn fn, void *user, const char *const *names,
                  size_t nsteps)
{
	sqlite3_stmt *st = s->st[ST_HISTORY];
	int rc = flush_history(s), src;
	if (rc)
		return rc;
	BIND(sqlite3_bind_int64(st, 1, id));
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		saga_event ev;
		ev.instance = id;
		ev.seq = sqlite3_column_int64(st, 0);
		ev.at_ms = (uint64_t)sqlite3_column_int64(st, 1);
		ev.type = (saga_event_type)sqlite3_column_int(st, 2);
		ev.state = (saga_state)sqlite3_column_int(st, 3);
		ev.step = sqlite3_column_int(st, 4);
		ev.phase = (saga_phase)sqlite3_column_int(st, 5);
		ev.attempt = (uint32_t)sqlite3_column_int64(st, 6);
		ev.outcome = (saga_outcome)sqlite3_column_int(st, 7);
		const unsigned char *d = sqlite3_column_text(st, 8);
		ev.detail = d ? (const char *)d : "";
		ev.fence = sqlite3_column_int64(st, 9);
		ev.step_name =
		        (names && ev.step >= 0 && (size_t)ev.step < nsteps) ? names[ev.step] : NULL;
		if (fn(&ev, user))
			break;
	}
	if (src != SQLITE_ROW && src != SQLITE_DONE)
		rc = fail(s, src, "read history");
done:
	return done_with(st, rc);
}

void row_to_info(saga_instance_info *info, const saga_row *r)
{
	memset(info, 0, sizeof(*info));
	info->id = r->id;
	saga_fmt(info->uid, sizeof(info->uid), "%s", r->uid);
	saga_fmt(info->definition, sizeof(info->definition), "%s", r->def_name);
	info->version = r->def_version;
	saga_fmt(info->business_key, sizeof(info->business_key), "%s", r->has_bkey ? r->bkey : "");
	info->state = (saga_state)r->state;
	info->reason = (saga_reason)r->reason;
	info->phase = (saga_phase)r->phase;
	info->step = r->step;
	info->attempt = r->attempt;
	info->pivot_done = r->pivot_done;
	info->created_ms = r->created_at;
	info->updated_ms = r->updated_at;
	info->due_ms = r->due_at;
	info->deadline_ms = r->deadline_at;
	saga_fmt(info->error, sizeof(info->error), "%s", r->error);
}

/* Steps through a query of whole rows, calling fn for each. */
static int scan_rows(saga_store *s, sqlite3_stmt *st, store_row_fn fn, void *user)
{
	int rc = SAGA_OK, src;
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		saga_row r;
		if ((rc = read_row(s, st, &r, NULL)))
			return done_with(st, rc);
		if (fn(&r, user))
			break;
	}
	if (src != SQLITE_ROW && src != SQLITE_DONE)
		rc = fail(s, src, "list");
	return done_with(st, rc);
}

int store_page(saga_store *s, const store_filter *f, int64_t after, int limit, store_row_fn fn,
               void *user)
{
	sqlite3_stmt *st = s->st[f->state < 0   ? ST_PAGE
	                         : f->state < 3 ? ST_PAGE_ACTIVE
	                                        : ST_PAGE_STATE];
	int rc = SAGA_OK;
	BIND(sqlite3_bind_int64(st, 1, after));
	if (f->def_name)
		BIND(sqlite3_bind_text(st, 2, f->def_name, -1, SQLITE_STATIC));
	else
		BIND(sqlite3_bind_null(st, 2));
	BIND(sqlite3_bind_int(st, 3, f->def_version));
	BIND(sqlite3_bind_int64(st, 4, time_param(f->created_from)));
	BIND(sqlite3_bind_int64(st, 5, f->created_to ? time_param(f->created_to) : INT64_MAX));
	BIND(sqlite3_bind_int64(st, 6, time_param(f->updated_from)));
	BIND(sqlite3_bind_int64(st, 7, f->updated_to ? time_param(f->updated_to) : INT64_MAX));
	BIND(sqlite3_bind_int(st, 8, limit));
	if (f->state >= 0)
		BIND(sqlite3_bind_int(st, 9, f->state));
	return scan_rows(s, st, fn, user);
done:
	return done_with(st, rc);
}

int store_pending(saga_store *s, int64_t after, int limit, store_row_fn fn, void *user)
{
	sqlite3_stmt *st = s->st[ST_PENDING];
	int rc = SAGA_OK;
	BIND(sqlite3_bind_int64(st, 1, after));
	BIND(sqlite3_bind_int(st, 2, limit));
	return scan_rows(s, st, fn, user);
done:
	return done_with(st, rc);
}

int store_counts(saga_store *s, int64_t counts[SAGA_STATE_COUNT])
{
	sqlite3_stmt *st = s->st[ST_COUNTS];
	int src;
	for (int i = 0; i < SAGA_STATE_COUNT; i++)
		counts[i] = 0;
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		int state = sqlite3_column_int(st, 0);
		if (state >= 0 && state < SAGA_STATE_COUNT)
			counts[state] = sqlite3_column_int64(st, 1);
	}
	int rc = src == SQLITE_DONE ? SAGA_OK : fail(s, src, "count");
	sqlite3_reset(st);
	return rc;
}

/* Collects ids for store_purge_batch. */
typedef struct id_list {
	int64_t ids[STORE_PURGE_BATCH];
	int n;
} id_list;

static int collect_id(int64_t id, void *user)
{
	id_list *l = user;
	l->ids[l->n++] = id;
	return l->n == (int)(sizeof(l->ids) / sizeof(l->ids[0]));
}

int store_purge_batch(saga_store *s, int state, uint64_t before, int64_t *purged)
{
	sqlite3_stmt *st = s->st[ST_PURGE_PICK];
	id_list l;
	l.n = 0;
	*purged = 0;
	int rc = flush_history(s);
	if (rc)
		return rc;
	BIND(sqlite3_bind_int(st, 1, state));
	BIND(sqlite3_bind_int64(st, 2, (sqlite3_int64)before));
	BIND(sqlite3_bind_int(st, 3, (int)(sizeof(l.ids) / sizeof(l.ids[0]))));
	if ((rc = scan_ids(s, st, collect_id, &l)))
		return rc;
	for (int i = 0; i < l.n; i++) {
		sqlite3_stmt *h = s->st[ST_PURGE_HIST];
		sqlite3_stmt *in = s->st[ST_PURGE_INST];
		if (sqlite3_bind_int64(h, 1, l.ids[i]) != SQLITE_OK ||
		    sqlite3_bind_int64(in, 1, l.ids[i]) != SQLITE_OK ||
		    sqlite3_bind_int(in, 2, state) != SQLITE_OK)
			return fail(s, sqlite3_errcode(s->db), "bind");
		sqlite3_stmt *c = s->st[ST_PURGE_CMDS];
		if (sqlite3_bind_int64(c, 1, l.ids[i]) != SQLITE_OK)
			return fail(s, sqlite3_errcode(s->db), "bind");
		if ((rc = exec_stmt(s, h, "purge history")) ||
		    (rc = exec_stmt(s, c, "purge commands")) ||
		    (rc = exec_stmt(s, in, "purge instance")))
			return rc;
	}
	*purged = l.n;
	return SAGA_OK;
done:
	return done_with(st, rc);
}

int store_find_bkey(saga_store *s, int64_t *id, const char *bkey)
{
	sqlite3_stmt *st = s->st[ST_FIND_BKEY];
	int rc = sqlite3_bind_text(st, 1, bkey, -1, SQLITE_STATIC);
	if (rc != SQLITE_OK)
		return fail(s, rc, "bind");
	sqlite3_int64 v = 0;
	rc = one_int(s, st, "find business key", &v);
	if (rc == SAGA_OK)
		*id = v;
	return rc;
}

int store_last_outcome(saga_store *s, int64_t id, int step, int phase, int *outcome)
{
	sqlite3_stmt *st = s->st[ST_LAST_OUTCOME];
	*outcome = 0;
	int rc = flush_history(s);
	if (rc)
		return rc;
	BIND(sqlite3_bind_int64(st, 1, id));
	BIND(sqlite3_bind_int(st, 2, step));
	BIND(sqlite3_bind_int(st, 3, phase));
	sqlite3_int64 v = 0;
	rc = one_int(s, st, "last outcome", &v);
	if (rc == SAGA_OK)
		*outcome = (int)v;
	return rc == SAGA_ENOTFOUND ? SAGA_OK : rc;
done:
	return done_with(st, rc);
}

int store_json_valid(saga_store *s, const char *text, bool *valid)
{
	sqlite3_stmt *st = s->st[ST_JSON_VALID];
	*valid = false;
	int rc = sqlite3_bind_text(st, 1, text, -1, SQLITE_STATIC);
	if (rc != SQLITE_OK)
		return fail(s, rc, "bind");
	sqlite3_int64 v = 0;
	if ((rc = one_int(s, st, "check JSON", &v)) == SAGA_OK)
		*valid = v == 1;
	return rc;
}

const store_ops store_sqlite_ops = {
	.version = STORE_OPS_VERSION,
	.name = "sqlite",
	.open = store_open,
	.close = store_close,
	.errmsg = store_errmsg,
	.register_owner = store_register,
	.epoch = store_epoch,
	.lease_left = store_lease_left,
	.serve = store_serve,
	.retire = store_retire,
	.reap = store_reap,
	.claim = store_claim,
	.claim_one = store_claim_one,
	.changed = store_changed,
	.begin = store_begin,
	.commit = store_commit,
	.rollback = store_rollback,
	.put_definition = store_put_definition,
	.get_definition = store_get_definition,
	.insert = store_insert,
	.update = store_update,
	.load = store_load,
	.load_uid = store_load_uid,
	.find_bkey = store_find_bkey,
	.add_history = store_add_history,
	.last_outcome = store_last_outcome,
	.scan_active = store_scan_active,
	.scan_due = store_scan_due,
	.next_due = store_next_due,
	.next_due_pool = store_next_due_pool,
	.put_command = store_put_command,
	.commands = store_commands,
	.delete_command = store_delete_command,
	.count_commands = store_count_commands,
	.history = store_history,
	.page = store_page,
	.pending = store_pending,
	.counts = store_counts,
	.json_valid = store_json_valid,
	.purge_batch = store_purge_batch,
};
