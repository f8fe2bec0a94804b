/* The SQLite store's spine: the SQL of every statement prepared at open
 * (nothing is assembled from input), the helpers the store's files share,
 * the round's transaction (its id sets, the history rows buffered until the
 * commit, commit and rollback), and the store_sqlite_ops table. The rest of
 * the backend: store_open.c, store_owners.c, store_rows.c
 * (store_sqlite_int.h lists what each holds).
 * SPDX-License-Identifier: MIT */
#include "store_sqlite_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

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

const char *const stmt_sql[ST_COUNT] = {
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
	/* STUCK ones through instances_finished (state >= 3). */
	[ST_STUCK] = "SELECT def_name, def_version, reason, count(*) FROM instances"
	             " WHERE state >= 3 AND state = 5 GROUP BY def_name, def_version, reason"
	             " ORDER BY def_name, def_version, reason",
	/* The WAITING ones due by ?1 (instances_waiting), and of them those due by ?2. */
	[ST_OVERDUE] = "SELECT coalesce(sum(due_at <= ?2), 0), coalesce(min(due_at), 0)"
	               " FROM instances WHERE state = 1 AND due_at > 0 AND due_at <= ?1",
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

/* In the store, a failed constraint is a unique key already taken. */
int map_rc(int rc)
{
	return (rc & 0xff) == SQLITE_CONSTRAINT ? SAGA_EEXISTS : sqlite_to_saga(rc);
}

/* Records the SQLite error and returns the matching libsaga code. */
int fail(saga_store *s, int rc, const char *what)
{
	saga_fmt(s->errmsg, sizeof(s->errmsg), "store: %s: %s (%s)", what,
	         s->db ? sqlite3_errmsg(s->db) : "no database", sqlite3_errstr(rc));
	return map_rc(rc);
}

/* A time bound as SQLite holds it: never past the largest signed value. */
sqlite3_int64 time_param(uint64_t t)
{
	return t > (uint64_t)INT64_MAX ? INT64_MAX : (sqlite3_int64)t;
}

/* Makes a statement ready for its next use, and passes rc on. */
int done_with(sqlite3_stmt *st, int rc)
{
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc;
}

const char *store_errmsg(const saga_store *s)
{
	return s->errmsg;
}

int exec(saga_store *s, const char *sql, const char *what)
{
	int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
	return rc == SQLITE_OK ? SAGA_OK : fail(s, rc, what);
}

/* Sets the store's message and returns code. */
int refuse(saga_store *s, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	saga_vfmt(s->errmsg, sizeof(s->errmsg), fmt, ap);
	va_end(ap);
	return code;
}

/* Runs a statement that returns no rows, and resets it. */
int exec_stmt(saga_store *s, sqlite3_stmt *st, const char *what)
{
	int rc = sqlite3_step(st);
	int code = (rc == SQLITE_DONE || rc == SQLITE_ROW) ? SAGA_OK : fail(s, rc, what);
	/* Every caller binds all of the statement's parameters before each
	 * step, so the bindings are left as they are (clearing them costs). */
	sqlite3_reset(st);
	return code;
}

void drop_history(saga_store *s)
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
int flush_history(saga_store *s)
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
int id_put(saga_store *s, struct id_set *set, int64_t id)
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

void txn_reset(saga_store *s)
{
	s->fenced = false;
	s->lease_next = 0;
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
	if (rc == SAGA_OK && s->lease_next)
		s->lease_until = s->lease_next; /* the renewal is the store's now */
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
int one_int(saga_store *s, sqlite3_stmt *st, const char *what, sqlite3_int64 *out)
{
	int src = sqlite3_step(st);
	int rc = SAGA_OK;
	if (src == SQLITE_ROW)
		*out = sqlite3_column_int64(st, 0);
	else
		rc = src == SQLITE_DONE ? SAGA_ENOTFOUND : fail(s, src, what);
	return done_with(st, rc);
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

int prepare_once(saga_store *s, sqlite3_stmt **st, const char *sql, const char *what)
{
	int src = sqlite3_prepare_v2(s->db, sql, -1, st, NULL);
	if (src == SQLITE_OK)
		return SAGA_OK;
	sqlite3_finalize(*st);
	*st = NULL;
	return fail(s, src, what);
}

int finish_once(saga_store *s, sqlite3_stmt *st, int src, const char *what)
{
	int rc = src == SQLITE_ROW || src == SQLITE_DONE ? SAGA_OK : fail(s, src, what);
	sqlite3_finalize(st);
	return rc;
}

/* A SQLite store is a file: one that exists is opened (and checked then). */
static int store_probe(const char *path, char *err, size_t err_size)
{
	struct stat st;
	if (stat(path, &st) == 0)
		return SAGA_OK;
	int e = errno;
	saga_fmt(err, err_size, "store: %s: %s", path, strerror(e));
	return e == ENOENT || e == ENOTDIR ? SAGA_ENOTFOUND : SAGA_EIO;
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
	.owners = store_list_owners,
	.definitions = store_list_definitions,
	.def_counts = store_def_counts,
	.stuck_counts = store_stuck_counts,
	.overdue = store_overdue,
	.load_many = store_load_many,
	.insert_many = store_insert_many,
	.probe = store_probe,
};
