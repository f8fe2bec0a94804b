/* The read side (get, find, history, list, counts, stats) and purge.
 * Query callbacks run with the engine locked: they must not call the engine
 * (documented in docs/api.md). SPDX-License-Identifier: MIT */
#include "engine_int.h"

/* The message of a failed read of instance id. */
static int load_err(saga_engine *e, int rc, int64_t id)
{
	return rc == SAGA_ENOTFOUND ? set_err(e, rc, "no instance %lld", (long long)id)
	                            : store_err(e, rc);
}

int saga_get(saga_engine *e, saga_instance_info *out, int64_t id)
{
	if (!e || !out)
		return bad_args(e, "get: out is needed");
	pthread_mutex_lock(&e->mu);
	saga_row r;
	int rc = store_load(e->store, &r, id, NULL);
	if (rc == SAGA_OK)
		row_to_info(out, &r);
	else
		rc = load_err(e, rc, id);
	pthread_mutex_unlock(&e->mu);
	return rc;
}

int saga_get_context(saga_engine *e, cJSON **out, int64_t id)
{
	if (!e || !out)
		return bad_args(e, "get_context: out is needed");
	*out = NULL;
	pthread_mutex_lock(&e->mu);
	saga_row r;
	int rc = store_load(e->store, &r, id, &e->alloc);
	if (rc == SAGA_OK) {
		rc = parse_context(e, out, r.context, id);
		saga_free(&e->alloc, r.context);
	} else {
		rc = load_err(e, rc, id);
	}
	pthread_mutex_unlock(&e->mu);
	return rc;
}

int saga_find(saga_engine *e, int64_t *out_id, const char *bkey)
{
	if (!e || !out_id || !bkey)
		return bad_args(e, "find: out_id and a business key are needed");
	pthread_mutex_lock(&e->mu);
	int rc = store_find_bkey(e->store, out_id, bkey);
	if (rc && rc != SAGA_ENOTFOUND)
		rc = store_err(e, rc);
	pthread_mutex_unlock(&e->mu);
	return rc;
}

/* History of an instance whose definition this engine has not registered:
 * the step names come from the definition's snapshot in the store. */
static int history_from_snapshot(saga_engine *e, const saga_row *r, saga_event_fn fn, void *user)
{
	char *snap = NULL;
	int rc = store_get_definition(e->store, &snap, r->def_name, r->def_version, &e->alloc);
	if (rc)
		return rc == SAGA_ENOTFOUND ? store_history(e->store, r->id, fn, user, NULL, 0)
		                            : rc;
	cJSON *doc = cJSON_Parse(snap);
	saga_free(&e->alloc, snap);
	const cJSON *steps = cJSON_GetObjectItemCaseSensitive(doc, "steps");
	int n = cJSON_GetArraySize(steps);
	const char **names = n > 0 ? saga_calloc(&e->alloc, (size_t)n, sizeof(char *)) : NULL;
	if (!doc || (n > 0 && !names)) {
		cJSON_Delete(doc);
		return SAGA_ENOMEM;
	}
	int i = 0;
	const cJSON *st;
	cJSON_ArrayForEach(st, steps)
	{
		const cJSON *nm = cJSON_GetObjectItemCaseSensitive(st, "name");
		names[i++] = cJSON_IsString(nm) ? nm->valuestring : NULL;
	}
	rc = store_history(e->store, r->id, fn, user, names, (size_t)n);
	saga_free(&e->alloc, names);
	cJSON_Delete(doc);
	return rc;
}

int saga_history(saga_engine *e, int64_t id, saga_event_fn fn, void *user)
{
	if (!e || !fn)
		return bad_args(e, "history: a function is needed");
	pthread_mutex_lock(&e->mu);
	saga_row r;
	int rc = store_load(e->store, &r, id, NULL);
	if (rc == SAGA_OK) {
		const reg_def *rd = find_def(e, r.def_name, r.def_version);
		if (rd)
			rc = store_history(e->store, id, fn, user, rd->names, rd->def->nsteps);
		else
			rc = history_from_snapshot(e, &r, fn, user);
	}
	if (rc)
		rc = load_err(e, rc, id);
	pthread_mutex_unlock(&e->mu);
	return rc;
}

int saga_list(saga_engine *e, int state, saga_instance_fn fn, void *user)
{
	if (!e || !fn || state >= SAGA_STATE_COUNT)
		return bad_args(e, "list: a function and a state (or -1) are needed");
	pthread_mutex_lock(&e->mu);
	int rc = store_list(e->store, state, fn, user);
	if (rc)
		rc = store_err(e, rc);
	pthread_mutex_unlock(&e->mu);
	return rc;
}

int saga_counts(saga_engine *e, int64_t counts[SAGA_STATE_COUNT])
{
	if (!e || !counts)
		return bad_args(e, "counts: an array is needed");
	pthread_mutex_lock(&e->mu);
	int rc = store_counts(e->store, counts);
	if (rc)
		rc = store_err(e, rc);
	pthread_mutex_unlock(&e->mu);
	return rc;
}

int saga_engine_stats(saga_engine *e, saga_stats *out)
{
	if (!e || !out)
		return bad_args(e, "stats: out is needed");
	pthread_mutex_lock(&e->mu);
	*out = e->stats;
	pthread_mutex_unlock(&e->mu);
	return SAGA_OK;
}

int saga_purge(saga_engine *e, int64_t *purged, int state, uint64_t older_than_ms)
{
	if (purged)
		*purged = 0;
	if (!e)
		return SAGA_EINVAL;
	if (state != SAGA_COMPLETED && state != SAGA_COMPENSATED && state != -1)
		return set_err(e, SAGA_EINVAL,
		               "only COMPLETED or COMPENSATED instances can be purged");
	int rc = SAGA_OK;
	int64_t total = 0;
	for (int pass = 0; pass < 2 && rc == SAGA_OK; pass++) {
		int st = pass == 0 ? SAGA_COMPLETED : SAGA_COMPENSATED;
		if (state != -1 && state != st)
			continue;
		/* Small transactions, so running sagas are not held up for long. */
		for (;;) {
			pthread_mutex_lock(&e->mu);
			uint64_t now = now_wall(e);
			uint64_t before = now > older_than_ms ? now - older_than_ms : 0;
			int64_t n = 0;
			if ((rc = ensure_txn(e)) == SAGA_OK &&
			    (rc = store_purge_batch(e->store, st, before, &n)) != SAGA_OK)
				rc = store_err(e, rc);
			rc = end_txn(e, rc);
			pthread_mutex_unlock(&e->mu);
			if (rc || n == 0)
				break;
			total += n;
		}
	}
	if (purged)
		*purged = total;
	return rc;
}
