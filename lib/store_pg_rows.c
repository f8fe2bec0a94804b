/* Rows of a PostgreSQL store: definitions, instance rows written (fenced,
 * queued in the round's pipeline) and read (checked), history, the scans
 * for active and due instances, the next due time, listings and counts,
 * business keys, and the purge of finished instances.
 * SPDX-License-Identifier: MIT */
#include "store_pg_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pg_get_definition(saga_store *s, char **snapshot, const char *name, int version,
                      const saga_alloc *a)
{
	*snapshot = NULL;
	pg_params p = { .n = 0 };
	p_text(&p, name);
	p_int(&p, version);
	PGresult *r = NULL;
	int rc = pg_query(s, P_DEF_GET, &p, &r);
	if (rc)
		return rc;
	if (PQntuples(r) != 1)
		rc = SAGA_ENOTFOUND;
	else if (!(*snapshot = saga_strdup(a, PQgetvalue(r, 0, 0))))
		rc = SAGA_ENOMEM;
	PQclear(r);
	return rc;
}

int pg_put_definition(saga_store *s, const char *name, int version, const char *snapshot)
{
	/* One statement: another process may register the same definition at
	 * the same moment. When one is there already, it must be the same. */
	pg_params p = { .n = 0 };
	p_text(&p, name);
	p_int(&p, version);
	p_text(&p, snapshot);
	PGresult *r = NULL;
	int rc = pg_query(s, P_DEF_PUT, &p, &r);
	bool put = rc == SAGA_OK && PQntuples(r) == 1;
	PQclear(r);
	if (rc || put)
		return rc;
	char *old = NULL;
	if ((rc = pg_get_definition(s, &old, name, version, &s->alloc)))
		return rc;
	if (strcmp(old, snapshot) != 0)
		rc = pg_refuse(s, SAGA_ECONFLICT,
		               "definition '%s' version %d differs from the one in the store; "
		               "give the changed definition a new version",
		               name, version);
	saga_free(&s->alloc, old);
	return rc;
}

/* The columns every write of a row sets, in the statements' order. */
static void row_params(pg_params *p, const saga_row *r)
{
	p_int(p, r->state);
	p_int(p, r->phase);
	p_int(p, r->step);
	p_int(p, r->attempt);
	p_int(p, r->inflight);
	p_int(p, r->pending);
	p_int(p, r->pivot_done);
	p_int(p, r->reason);
	p_int(p, r->fwd_started);
	p_int(p, r->comp_done_any);
	p_time(p, r->due_at);
	p_time(p, r->deadline_at);
	p_time(p, r->attempt_deadline);
	p_time(p, r->step_since);
	p_time(p, r->prev_delay);
}

/* The parameters of P_INSERT for r. */
static void insert_params(pg_params *p, const saga_row *r)
{
	p_text(p, r->uid);
	p_text(p, r->def_name);
	p_int(p, r->def_version);
	p_text(p, r->has_bkey ? r->bkey : NULL);
	row_params(p, r);
	p_time(p, r->created_at);
	p_time(p, r->updated_at);
	p_text(p, r->error);
	p_text(p, r->context ? r->context : "{}");
	p_int(p, r->owner);
	p_int(p, r->fence);
	p_int(p, r->next_seq);
	p_int(p, r->recoveries);
	p_time(p, r->state >= SAGA_COMPLETED ? r->updated_at : 0);
}

/* A row inserted: what the store now holds of it. */
static void inserted(saga_store *s, saga_row *r)
{
	r->stored_state = r->state;
	r->stored_due = r->due_at;
	pg_note_wake(s); /* a new instance (of the pool, when nobody owns it) */
}

int pg_insert(saga_store *s, saga_row *r)
{
	pg_params p = { .n = 0 };
	insert_params(&p, r);
	PGresult *res = NULL;
	int rc = pg_query(s, P_INSERT, &p, &res);
	if (rc)
		return rc;
	if (PQntuples(res) != 1) {
		PQclear(res);
		return pg_refuse(s, SAGA_EEXISTS, "store: business key '%s' is taken", r->bkey);
	}
	r->id = pg_i64(res, 0, 0);
	PQclear(res);
	inserted(s, r);
	return SAGA_OK;
}

/* Gives the rows of an insert's answer (id, uid) their ids: the answer
 * comes in the rows' order, but is matched by uid whatever its order. */
static int take_ids(saga_store *s, const PGresult *res, saga_row *rows, size_t n)
{
	size_t next = 0;
	for (int k = 0; k < PQntuples(res); k++) {
		const char *uid = PQgetvalue(res, k, 1);
		size_t j = next, tries = 0;
		while (tries < n && strcmp(rows[j].uid, uid) != 0) {
			j = j + 1 == n ? 0 : j + 1;
			tries++;
		}
		int64_t id = pg_i64(res, k, 0);
		if (tries == n || id <= 0 || rows[j].id)
			return pg_refuse(s, SAGA_ESTORE,
			                 "store: an insert answered a row it was not given");
		rows[j].id = id;
		next = j + 1 == n ? 0 : j + 1;
	}
	return SAGA_OK;
}

int pg_insert_many(saga_store *s, saga_row *rows, size_t n)
{
	if (!s->in_txn)
		return pg_refuse(s, SAGA_EINVAL, "store: insert_many works in a transaction");
	int rc = pg_usable(s);
	/* One statement for as many rows as a batch takes, queued behind the
	 * round's other statements: one round trip, not one a row. A business
	 * key taken answers no row (the insert waits for a concurrent
	 * inserter's outcome) and leaves the transaction usable. */
	for (size_t done = 0; done < n && rc == SAGA_OK;) {
		size_t k = 0;
		while (done + k < n && !pg_batch_full(&s->ins) && rc == SAGA_OK) {
			pg_params p = { .n = 0 };
			insert_params(&p, &rows[done + k]);
			rows[done + k].id = 0;
			rc = pg_batch_put(s, &s->ins, &p, 0);
			k++;
		}
		PGresult *res = NULL;
		if (rc == SAGA_OK && (rc = pg_batch_query(s, &s->ins, &res)) == SAGA_OK)
			rc = take_ids(s, res, rows + done, k);
		PQclear(res);
		done += k;
	}
	pg_batch_clear(&s->ins);
	for (size_t i = 0; i < n && rc == SAGA_OK; i++) {
		if (rows[i].id)
			inserted(s, &rows[i]);
		else if (!rows[i].has_bkey)
			rc = pg_refuse(s, SAGA_ESTORE, "store: an insert gave no id");
	}
	return rc;
}

int pg_update(saga_store *s, saga_row *r)
{
	if (!s->epoch)
		return pg_refuse(s, SAGA_EFENCED,
		                 "store: no owner registered (or retired): it holds no instance");
	pg_params p = { .n = 0 };
	p_int(&p, r->id);
	row_params(&p, r);
	p_time(&p, r->updated_at);
	p_text(&p, r->error);
	p_text(&p, r->context ? r->context : "{}");
	p_int(&p, r->next_seq);
	p_int(&p, r->recoveries);
	p_int(&p, s->epoch);
	p_int(&p, r->fence);
	/* Gathered with the round's other updates: a refusal (a row that did
	 * not change) fails the transaction on the server, and the commit says
	 * SAGA_EFENCED. */
	int rc = pg_gather(s, &s->upd, &p, r->id);
	if (rc == SAGA_OK) {
		r->stored_state = r->state;
		r->stored_due = r->due_at;
	}
	return rc;
}

/* An integer column, checked: a value out of its range is damage. */
static bool col_int(const PGresult *res, int row, int col, int64_t lo, int64_t hi, int64_t *out)
{
	if (PQgetisnull(res, row, col))
		return false;
	const char *t = PQgetvalue(res, row, col);
	char *end = NULL;
	errno = 0;
	long long v = strtoll(t, &end, 10);
	if (errno || end == t || *end || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

static void copy_text(char *dst, size_t size, const PGresult *res, int row, int col)
{
	saga_fmt(dst, size, "%s", PQgetvalue(res, row, col));
}

/* Reads row `i` of a result of ROW_COLUMNS; the context is copied when
 * alloc is not NULL. */
static int read_row(saga_store *s, const PGresult *res, int i, saga_row *r, const saga_alloc *a)
{
	memset(r, 0, sizeof(*r));
	int64_t v[28];
	for (int col = 0; col < 28; col++) {
		if (col == 1 || col == 2 || col == 4 || col == 22 || col == 23)
			continue;                                /* text */
		bool narrow = col >= 3 && col <= 14 && col != 8; /* C ints */
		if (!col_int(res, i, col, narrow ? -1 : 0, narrow ? INT32_MAX : INT64_MAX, &v[col]))
			return pg_refuse(s, SAGA_ECORRUPT,
			                 "store: instance %s: column %d holds an impossible value",
			                 PQgetvalue(res, i, 0), col);
	}
	r->id = v[0];
	copy_text(r->uid, sizeof(r->uid), res, i, 1);
	copy_text(r->def_name, sizeof(r->def_name), res, i, 2);
	r->def_version = (int)v[3];
	r->has_bkey = !PQgetisnull(res, i, 4);
	copy_text(r->bkey, sizeof(r->bkey), res, i, 4);
	r->state = (int)v[5];
	r->phase = (int)v[6];
	r->step = (int)v[7];
	r->attempt = v[8] > UINT32_MAX / 2 ? UINT32_MAX : (uint32_t)v[8];
	r->inflight = v[9] != 0;
	r->pending = v[10] != 0;
	r->pivot_done = v[11] != 0;
	r->reason = (int)v[12];
	r->fwd_started = (int)v[13];
	r->comp_done_any = v[14] != 0;
	r->due_at = (uint64_t)v[15];
	r->deadline_at = (uint64_t)v[16];
	r->attempt_deadline = (uint64_t)v[17];
	r->step_since = (uint64_t)v[18];
	r->prev_delay = (uint64_t)v[19];
	r->created_at = (uint64_t)v[20];
	r->updated_at = (uint64_t)v[21];
	copy_text(r->error, sizeof(r->error), res, i, 22);
	r->owner = v[24];
	r->fence = v[25];
	r->next_seq = v[26];
	r->recoveries = v[27];
	r->stored_state = r->state;
	r->stored_due = r->due_at;
	if (r->state < 0 || r->state >= SAGA_STATE_COUNT || r->phase < 0 || r->phase > 1)
		return pg_refuse(s, SAGA_ECORRUPT, "store: instance %lld has an invalid state",
		                 (long long)r->id);
	if (a && !(r->context = saga_strdup(a, PQgetvalue(res, i, 23))))
		return SAGA_ENOMEM;
	return SAGA_OK;
}

static int load_by(saga_store *s, int stmt, const char *key, saga_row *r, const saga_alloc *a)
{
	pg_params p = { .n = 0 };
	p_text(&p, key);
	PGresult *res = NULL;
	int rc = pg_query(s, stmt, &p, &res);
	if (rc)
		return rc;
	rc = PQntuples(res) == 1 ? read_row(s, res, 0, r, a) : SAGA_ENOTFOUND;
	PQclear(res);
	return rc;
}

int pg_load(saga_store *s, saga_row *r, int64_t id, const saga_alloc *a)
{
	char key[24];
	saga_fmt(key, sizeof(key), "%lld", (long long)id);
	return load_by(s, P_LOAD, key, r, a);
}

int pg_load_uid(saga_store *s, saga_row *r, const char *uid, const saga_alloc *a)
{
	return load_by(s, P_LOAD_UID, uid, r, a);
}

int pg_load_many(saga_store *s, const int64_t *ids, size_t n, store_load_fn fn, void *user,
                 const saga_alloc *a)
{
	if (n == 0)
		return SAGA_OK;
	/* One statement for all of them, the ids as an array literal. */
	size_t size = n * 21 + 3;
	char *list = n <= SIZE_MAX / 21 - 1 ? saga_malloc(&s->alloc, size) : NULL;
	if (!list)
		return SAGA_ENOMEM;
	size_t len = 0;
	list[len++] = '{';
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(list + len, size - len, i ? ",%lld" : "%lld",
		                        (long long)ids[i]);
	saga_fmt(list + len, size - len, "}");
	pg_params p = { .n = 0 };
	p_text(&p, list);
	PGresult *res = NULL;
	int rc = pg_query(s, P_LOAD_MANY, &p, &res);
	saga_free(&s->alloc, list);
	if (rc)
		return rc;
	for (int i = 0, rows = PQntuples(res); i < rows; i++) {
		saga_row r;
		int code = read_row(s, res, i, &r, a);
		if (code == SAGA_ECORRUPT)
			continue; /* absent: load() tells the caller why */
		if (code) {
			rc = code;
			break;
		}
		if (fn(&r, user))
			break;
	}
	PQclear(res);
	return rc;
}

int pg_find_bkey(saga_store *s, int64_t *id, const char *bkey)
{
	pg_params p = { .n = 0 };
	p_text(&p, bkey);
	return pg_ints(s, P_FIND_BKEY, &p, id, 1);
}

int pg_add_history(saga_store *s, const saga_hist *h)
{
	if (!s->in_txn)
		return pg_refuse(s, SAGA_ESTATE, "store: history written outside a transaction");
	pg_params p = { .n = 0 };
	p_int(&p, h->instance);
	p_int(&p, h->seq);
	p_time(&p, h->at);
	p_int(&p, h->type);
	p_int(&p, h->state);
	p_int(&p, h->step);
	p_int(&p, h->phase);
	p_int(&p, h->attempt);
	p_int(&p, h->outcome);
	p_text(&p, h->detail ? h->detail : "");
	p_int(&p, h->fence);
	p_int(&p, s->epoch);
	return pg_gather(s, &s->hist, &p, h->instance);
}

int pg_last_outcome(saga_store *s, int64_t id, int step, int phase, int *outcome)
{
	*outcome = 0;
	pg_params p = { .n = 0 };
	p_int(&p, id);
	p_int(&p, step);
	p_int(&p, phase);
	int64_t v = 0;
	int rc = pg_ints(s, P_LAST_OUTCOME, &p, &v, 1);
	*outcome = (int)v;
	return rc == SAGA_ENOTFOUND ? SAGA_OK : rc;
}

/* Calls fn with the first column of each row; nonzero from fn stops. */
static int each_id(saga_store *s, int stmt, const pg_params *p, store_id_fn fn, void *user)
{
	PGresult *r = NULL;
	int rc = pg_query(s, stmt, p, &r);
	if (rc)
		return rc;
	for (int i = 0, n = PQntuples(r); i < n; i++)
		if (fn(pg_i64(r, i, 0), user))
			break;
	PQclear(r);
	return SAGA_OK;
}

int pg_scan_active(saga_store *s, store_id_fn fn, void *user)
{
	pg_params p = { .n = 0 };
	p_int(&p, s->epoch);
	return each_id(s, P_SCAN_ACTIVE, &p, fn, user);
}

int pg_scan_due(saga_store *s, uint64_t now, int limit, store_id_fn fn, void *user)
{
	pg_params p = { .n = 0 };
	p_int(&p, s->epoch);
	p_time(&p, now);
	p_int(&p, limit);
	return each_id(s, P_SCAN_DUE, &p, fn, user);
}

/* The earliest due times of this owner's parked instances and the pool's. */
static int next_dues(saga_store *s, uint64_t *own, uint64_t *pool)
{
	*own = *pool = 0;
	pg_params p = { .n = 0 };
	p_int(&p, s->epoch);
	int64_t v[2];
	int rc = pg_ints(s, P_NEXT_DUE, &p, v, 2);
	if (rc == SAGA_OK) {
		*own = (uint64_t)v[0];
		*pool = (uint64_t)v[1];
	}
	return rc;
}

int pg_next_due_pool(saga_store *s, uint64_t *out)
{
	uint64_t own;
	return next_dues(s, &own, out);
}

int pg_next_due(saga_store *s, uint64_t *out)
{
	uint64_t own = 0, pool = 0;
	int rc = next_dues(s, &own, &pool);
	*out = !own ? pool : !pool ? own : own < pool ? own : pool;
	return rc;
}

int pg_history(saga_store *s, int64_t id, saga_event_fn fn, void *user, const char *const *names,
               size_t nsteps)
{
	pg_params p = { .n = 0 };
	p_int(&p, id);
	PGresult *r = NULL;
	int rc = pg_query(s, P_HISTORY, &p, &r);
	if (rc)
		return rc;
	for (int i = 0, n = PQntuples(r); i < n; i++) {
		saga_event ev;
		ev.instance = id;
		ev.seq = pg_i64(r, i, 0);
		ev.at_ms = (uint64_t)pg_i64(r, i, 1);
		ev.type = (saga_event_type)pg_i64(r, i, 2);
		ev.state = (saga_state)pg_i64(r, i, 3);
		ev.step = (int)pg_i64(r, i, 4);
		ev.phase = (saga_phase)pg_i64(r, i, 5);
		ev.attempt = (uint32_t)pg_i64(r, i, 6);
		ev.outcome = (saga_outcome)pg_i64(r, i, 7);
		ev.detail = PQgetvalue(r, i, 8);
		ev.fence = pg_i64(r, i, 9);
		ev.step_name =
		        (names && ev.step >= 0 && (size_t)ev.step < nsteps) ? names[ev.step] : NULL;
		if (fn(&ev, user))
			break;
	}
	PQclear(r);
	return SAGA_OK;
}

/* Calls fn for each row of a query of whole rows; nonzero from fn stops. */
static int each_row(saga_store *s, int stmt, const pg_params *p, store_row_fn fn, void *user)
{
	PGresult *r = NULL;
	int rc = pg_query(s, stmt, p, &r);
	if (rc)
		return rc;
	for (int i = 0, n = PQntuples(r); i < n; i++) {
		saga_row row;
		if ((rc = read_row(s, r, i, &row, NULL)) || fn(&row, user))
			break;
	}
	PQclear(r);
	return rc;
}

int pg_page(saga_store *s, const store_filter *f, int64_t after, int limit, store_row_fn fn,
            void *user)
{
	pg_params p = { .n = 0 };
	p_int(&p, after);
	p_text(&p, f->def_name);
	p_int(&p, f->def_version);
	p_time(&p, f->created_from);
	p_time(&p, f->created_to ? f->created_to : UINT64_MAX);
	p_time(&p, f->updated_from);
	p_time(&p, f->updated_to ? f->updated_to : UINT64_MAX);
	p_int(&p, limit);
	p_int(&p, f->state);
	return each_row(s, P_PAGE, &p, fn, user);
}

int pg_pending_rows(saga_store *s, int64_t after, int limit, store_row_fn fn, void *user)
{
	pg_params p = { .n = 0 };
	p_int(&p, after);
	p_int(&p, limit);
	return each_row(s, P_PENDING, &p, fn, user);
}

int pg_counts(saga_store *s, int64_t counts[SAGA_STATE_COUNT])
{
	for (int i = 0; i < SAGA_STATE_COUNT; i++)
		counts[i] = 0;
	PGresult *r = NULL;
	int rc = pg_query(s, P_COUNTS, NULL, &r);
	if (rc)
		return rc;
	for (int i = 0, n = PQntuples(r); i < n; i++) {
		int64_t state = pg_i64(r, i, 0);
		if (state >= 0 && state < SAGA_STATE_COUNT)
			counts[state] = pg_i64(r, i, 1);
	}
	PQclear(r);
	return SAGA_OK;
}

/* Asked on the listening connection, outside the round's transaction,
 * which a refused text would abort. */
int pg_json_valid(saga_store *s, const char *text, bool *valid)
{
	*valid = false;
	if (s->listen_broken || PQstatus(s->listen) != CONNECTION_OK)
		return pg_refuse(s, SAGA_EIO, "store: the second connection is down");
	const char *v[1] = { text };
	PGresult *r =
	        PQexecParams(s->listen, "SELECT $1::json IS NOT NULL", 1, NULL, v, NULL, NULL, 0);
	ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
	const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	int rc = SAGA_OK;
	if (st == PGRES_TUPLES_OK)
		*valid = true;
	else if (!state || strcmp(state, "22P02") != 0)
		rc = pg_refuse(s, SAGA_EIO, "store: check JSON: %s",
		               r ? PQresultErrorMessage(r) : PQerrorMessage(s->listen));
	PQclear(r);
	return rc;
}

int pg_purge_batch(saga_store *s, int state, uint64_t before, int64_t *purged)
{
	*purged = 0;
	pg_params p = { .n = 0 };
	p_int(&p, state);
	p_time(&p, before);
	p_int(&p, STORE_PURGE_BATCH);
	return pg_ints(s, P_PURGE, &p, purged, 1);
}

/* ---- what an operator reads ---- */

int pg_list_owners(saga_store *s, bool all, store_owner_fn fn, void *user)
{
	pg_params p = { .n = 0 };
	p_int(&p, all);
	PGresult *r = NULL;
	int rc = pg_query(s, P_OWNERS, &p, &r);
	if (rc)
		return rc;
	for (int i = 0, n = PQntuples(r); i < n; i++) {
		store_owner o = { pg_i64(r, i, 0),           PQgetvalue(r, i, 1),
			          pg_i64(r, i, 2),           (int)pg_i64(r, i, 3),
			          (uint64_t)pg_i64(r, i, 4), (uint64_t)pg_i64(r, i, 5),
			          PQgetvalue(r, i, 6),       pg_i64(r, i, 7) };
		if (fn(&o, user))
			break;
	}
	PQclear(r);
	return SAGA_OK;
}

int pg_list_definitions(saga_store *s, store_def_fn fn, void *user)
{
	PGresult *r = NULL;
	int rc = pg_query(s, P_DEFS, NULL, &r);
	if (rc)
		return rc;
	for (int i = 0, n = PQntuples(r); i < n; i++)
		if (fn(PQgetvalue(r, i, 0), (int)pg_i64(r, i, 1), PQgetvalue(r, i, 2), user))
			break;
	PQclear(r);
	return SAGA_OK;
}

/* Runs stmt, whose rows are (name, version, key, count), calling fn for
 * each; nonzero from fn stops. */
static int pass_counts(saga_store *s, int stmt, store_count_fn fn, void *user)
{
	PGresult *r = NULL;
	int rc = pg_query(s, stmt, NULL, &r);
	if (rc)
		return rc;
	for (int i = 0, n = PQntuples(r); i < n; i++)
		if (fn(PQgetvalue(r, i, 0), (int)pg_i64(r, i, 1), (int)pg_i64(r, i, 2),
		       pg_i64(r, i, 3), user))
			break;
	PQclear(r);
	return SAGA_OK;
}

int pg_def_counts(saga_store *s, store_count_fn fn, void *user)
{
	return pass_counts(s, P_DEF_COUNTS, fn, user);
}

int pg_stuck_counts(saga_store *s, store_count_fn fn, void *user)
{
	return pass_counts(s, P_STUCK, fn, user);
}

int pg_overdue(saga_store *s, uint64_t now, uint64_t late, int64_t *overdue, uint64_t *oldest_due)
{
	pg_params p = { .n = 0 };
	p_time(&p, now);
	p_time(&p, late);
	int64_t v[2] = { 0, 0 };
	int rc = pg_ints(s, P_OVERDUE, &p, v, 2);
	*overdue = v[0];
	*oldest_due = (uint64_t)v[1];
	return rc;
}
