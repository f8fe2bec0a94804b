/* Rows of a SQLite store: definitions, instance rows written (fenced) and
 * read (checked), the scans for active and due instances, the next due
 * time, the history read back, listings and counts, business keys, and the
 * purge of finished instances.
 * SPDX-License-Identifier: MIT */
#include "store_sqlite_int.h"

#include <string.h>

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

int store_insert_many(saga_store *s, saga_row *rows, size_t n)
{
	if (sqlite3_get_autocommit(s->db))
		return refuse(s, SAGA_EINVAL, "store: insert_many works in a transaction");
	int rc = SAGA_OK;
	for (size_t i = 0; i < n && rc == SAGA_OK; i++) {
		rc = store_insert(s, &rows[i]);
		/* A key taken: no row, and the transaction goes on (only the
		 * statement was undone). */
		if (rc == SAGA_EEXISTS && rows[i].has_bkey) {
			rows[i].id = 0;
			rc = SAGA_OK;
		}
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

int store_load_many(saga_store *s, const int64_t *ids, size_t n, store_load_fn fn, void *user,
                    const saga_alloc *a)
{
	/* The prepared load, once per id: no round trip to save here. */
	for (size_t i = 0; i < n; i++) {
		saga_row r;
		int rc = store_load(s, &r, ids[i], a);
		if (rc == SAGA_ENOTFOUND || rc == SAGA_ECORRUPT)
			continue;
		if (rc)
			return rc;
		if (fn(&r, user))
			break;
	}
	return SAGA_OK;
}

int store_load_uid(saga_store *s, saga_row *r, const char *uid, const saga_alloc *a)
{
	sqlite3_stmt *st = s->st[ST_LOAD_UID];
	int rc = sqlite3_bind_text(st, 1, uid, -1, SQLITE_STATIC);
	if (rc != SQLITE_OK)
		return fail(s, rc, "bind");
	return load_by(s, st, r, a);
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

/* Steps st, whose rows are (name, version, key, count), calling fn for
 * each; nonzero from fn stops. The caller resets or finalizes st. */
static int pass_counts(saga_store *s, sqlite3_stmt *st, store_count_fn fn, void *user,
                       const char *what)
{
	int src;
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(st, 0);
		if (fn(name ? name : "", sqlite3_column_int(st, 1), sqlite3_column_int(st, 2),
		       sqlite3_column_int64(st, 3), user))
			break;
	}
	return src == SQLITE_ROW || src == SQLITE_DONE ? SAGA_OK : fail(s, src, what);
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

int store_stuck_counts(saga_store *s, store_count_fn fn, void *user)
{
	sqlite3_stmt *st = s->st[ST_STUCK];
	int rc = pass_counts(s, st, fn, user, "count stuck");
	sqlite3_reset(st);
	return rc;
}

int store_overdue(saga_store *s, uint64_t now, uint64_t late, int64_t *overdue,
                  uint64_t *oldest_due)
{
	sqlite3_stmt *st = s->st[ST_OVERDUE];
	int rc = SAGA_OK;
	*overdue = 0;
	*oldest_due = 0;
	BIND(sqlite3_bind_int64(st, 1, time_param(now)));
	BIND(sqlite3_bind_int64(st, 2, time_param(late)));
	int src = sqlite3_step(st);
	if (src == SQLITE_ROW) {
		*overdue = sqlite3_column_int64(st, 0);
		*oldest_due = (uint64_t)sqlite3_column_int64(st, 1);
		src = sqlite3_step(st);
	}
	if (src != SQLITE_DONE)
		rc = fail(s, src, "count overdue");
done:
	return done_with(st, rc);
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

/* ---- what an operator reads ---- */

int store_list_definitions(saga_store *s, store_def_fn fn, void *user)
{
	sqlite3_stmt *st;
	int src, rc = prepare_once(s, &st,
	                           "SELECT name, version, snapshot FROM definitions"
	                           " ORDER BY name, version",
	                           "list definitions");
	if (rc)
		return rc;
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(st, 0);
		const char *snap = (const char *)sqlite3_column_text(st, 2);
		if (fn(name ? name : "", sqlite3_column_int(st, 1), snap ? snap : "", user))
			break;
	}
	return finish_once(s, st, src, "list definitions");
}

int store_def_counts(saga_store *s, store_count_fn fn, void *user)
{
	sqlite3_stmt *st;
	int rc = prepare_once(s, &st,
	                      "SELECT def_name, def_version, state, count(*) FROM instances"
	                      " GROUP BY def_name, def_version, state"
	                      " ORDER BY def_name, def_version, state",
	                      "count by definition");
	if (rc)
		return rc;
	rc = pass_counts(s, st, fn, user, "count by definition");
	sqlite3_finalize(st);
	return rc;
}
