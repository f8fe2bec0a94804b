/* The read side (get, find, history, listings, pending steps, counts,
 * stats) and purge. History callbacks run with the engine locked: they must
 * not call the engine (documented in docs/api.md). Listings are read a page
 * at a time under the lock into the caller's array; saga_list calls back
 * between pages, unlocked. SPDX-License-Identifier: MIT */
#include "engine_int.h"
#include "graph_int.h"

#include <limits.h>
#include <string.h>

/* The message of a failed read of instance id. */
static int load_err(saga_engine *e, int rc, int64_t id)
{
	return rc == SAGA_ENOTFOUND ? set_err(e, rc, "no instance %lld", (long long)id)
	                            : store_err(e, rc);
}

int get_info(saga_engine *e, saga_instance_info *out, int64_t id)
{
	saga_row r;
	int rc = e->st->load(e->store, &r, id, NULL);
	if (rc == SAGA_OK)
		row_to_info(out, &r);
	else
		rc = load_err(e, rc, id);
	return rc;
}

int saga_get(saga_engine *e, saga_instance_info *out, int64_t id)
{
	if (!e || !out)
		return bad_args(e, "get: out is needed");
	pthread_mutex_lock(&e->mu);
	int rc = get_info(e, out, id);
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
	int rc = e->st->load(e->store, &r, id, &e->alloc);
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
	int rc = e->st->find_bkey(e->store, out_id, bkey);
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
	int rc = e->st->get_definition(e->store, &snap, r->def_name, r->def_version, &e->alloc);
	if (rc)
		return rc == SAGA_ENOTFOUND ? e->st->history(e->store, r->id, fn, user, NULL, 0)
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
	rc = e->st->history(e->store, r->id, fn, user, names, (size_t)n);
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
	int rc = e->st->load(e->store, &r, id, NULL);
	if (rc == SAGA_OK) {
		const reg_def *rd = find_def(e, r.def_name, r.def_version);
		if (rd)
			rc = e->st->history(e->store, id, fn, user, rd->names, rd->def->nsteps);
		else
			rc = history_from_snapshot(e, &r, fn, user);
	}
	if (rc)
		rc = load_err(e, rc, id);
	pthread_mutex_unlock(&e->mu);
	return rc;
}

/* Fills a page of a listing (store_row_fn). */
struct page_fill {
	saga_instance_info *out;
	size_t n;
};

static int fill_info(const saga_row *r, void *user)
{
	struct page_fill *p = user;
	row_to_info(&p->out[p->n++], r);
	return 0;
}

/* A page is one statement under the lock; its size is the caller's, up to
 * what the statement's LIMIT takes. */
static int page_limit(size_t cap)
{
	return cap > INT_MAX ? INT_MAX : (int)cap;
}

static int check_range(saga_engine *e, uint64_t from, uint64_t to, const char *what)
{
	if (to && to <= from)
		return set_err(e, SAGA_EINVAL, "list: the %s range [from, to) is empty", what);
	return SAGA_OK;
}

int check_list_filter(saga_engine *e, const saga_list_filter *f)
{
	if (f->version != SAGA_LIST_FILTER_VERSION)
		return set_err(e, SAGA_EINVAL, "list: filter version %u is not %d", f->version,
		               SAGA_LIST_FILTER_VERSION);
	if (f->state < -1 || f->state >= SAGA_STATE_COUNT)
		return set_err(e, SAGA_EINVAL, "list: state %d is not a state or -1", f->state);
	if (f->definition && (!*f->definition || strlen(f->definition) > SAGA_NAME_MAX))
		return set_err(e, SAGA_EINVAL, "list: a definition name is 1 to %d bytes",
		               SAGA_NAME_MAX);
	if (f->definition_version < 0)
		return set_err(e, SAGA_EINVAL, "list: definition_version must be 0 or more");
	int rc = check_range(e, f->created_from_ms, f->created_to_ms, "created");
	return rc ? rc : check_range(e, f->updated_from_ms, f->updated_to_ms, "updated");
}

int saga_list_page(saga_engine *e, saga_instance_info *out, size_t *n, size_t cap,
                   const saga_list_filter *filter, int64_t after_id)
{
	if (n)
		*n = 0;
	if (!e || !out || !n || cap == 0 || after_id < 0)
		return bad_args(e, "list_page: out, n, a capacity and an id >= 0 are needed");
	saga_list_filter all = SAGA_LIST_FILTER_INIT;
	const saga_list_filter *f = filter ? filter : &all;
	int rc = check_list_filter(e, f);
	if (rc)
		return rc;
	store_filter sf = { f->state,           f->definition,    f->definition_version,
		            f->created_from_ms, f->created_to_ms, f->updated_from_ms,
		            f->updated_to_ms };
	struct page_fill p = { out, 0 };
	pthread_mutex_lock(&e->mu);
	rc = e->st->page(e->store, &sf, after_id, page_limit(cap), fill_info, &p);
	if (rc)
		rc = store_err(e, rc);
	pthread_mutex_unlock(&e->mu);
	*n = rc ? 0 : p.n;
	return rc;
}

/* The page size of saga_list. */
#define LIST_PAGE 128

int saga_list(saga_engine *e, int state, saga_instance_fn fn, void *user)
{
	if (!e || !fn || state >= SAGA_STATE_COUNT)
		return bad_args(e, "list: a function and a state (or -1) are needed");
	saga_instance_info *page = saga_malloc(&e->alloc, LIST_PAGE * sizeof(*page));
	if (!page)
		return set_err(e, SAGA_ENOMEM, "out of memory");
	saga_list_filter f = SAGA_LIST_FILTER_INIT;
	f.state = state < 0 ? -1 : state;
	int64_t after = 0;
	int rc;
	for (;;) {
		size_t n = 0;
		if ((rc = saga_list_page(e, page, &n, LIST_PAGE, &f, after)) || n == 0)
			break;
		for (size_t i = 0; i < n; i++)
			if (fn(&page[i], user))
				goto out;
		if (n < LIST_PAGE)
			break;
		after = page[n - 1].id;
	}
out:
	saga_free(&e->alloc, page);
	return rc;
}

/* Fills a page of pending steps (store_row_fn); called with the mutex. */
struct pending_fill {
	saga_engine *e;
	saga_pending_step *out;
	size_t n;
	int rc;
};

/* The name of step `step` of a definition this engine has not registered,
 * from its snapshot in the store; "" when there is none. */
static int snapshot_step_name(saga_engine *e, char *buf, size_t size, const saga_row *r)
{
	char *snap = NULL;
	int rc = e->st->get_definition(e->store, &snap, r->def_name, r->def_version, &e->alloc);
	if (rc)
		return rc == SAGA_ENOTFOUND ? SAGA_OK : rc;
	cJSON *doc = cJSON_Parse(snap);
	saga_free(&e->alloc, snap);
	if (!doc)
		return SAGA_ENOMEM;
	const cJSON *st =
	        cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(doc, "steps"), r->step);
	const cJSON *nm = cJSON_GetObjectItemCaseSensitive(st, "name");
	if (cJSON_IsString(nm))
		saga_fmt(buf, size, "%s", nm->valuestring);
	cJSON_Delete(doc);
	return SAGA_OK;
}

static int fill_pending(const saga_row *r, void *user)
{
	struct pending_fill *p = user;
	saga_pending_step *o = &p->out[p->n];
	memset(o, 0, sizeof(*o));
	o->instance = r->id;
	saga_fmt(o->definition, sizeof(o->definition), "%s", r->def_name);
	o->version = r->def_version;
	saga_fmt(o->business_key, sizeof(o->business_key), "%s", r->has_bkey ? r->bkey : "");
	o->step = r->step;
	o->phase = (saga_phase)r->phase;
	o->attempt = r->attempt;
	o->deadline_ms = r->attempt_deadline;
	const reg_def *rd = find_def(p->e, r->def_name, r->def_version);
	if (rd && r->step >= 0 && (size_t)r->step < rd->def->nsteps)
		saga_fmt(o->step_name, sizeof(o->step_name), "%s", rd->names[r->step]);
	else if (!rd && (p->rc = snapshot_step_name(p->e, o->step_name, sizeof(o->step_name), r)))
		return 1;
	if (o->step_name[0])
		saga_fmt(o->key, sizeof(o->key), "%s/%s/%s", r->uid, o->step_name,
		         phase_word(r->phase));
	p->n++;
	return 0;
}

int saga_list_pending(saga_engine *e, saga_pending_step *out, size_t *n, size_t cap,
                      int64_t after_id)
{
	if (n)
		*n = 0;
	if (!e || !out || !n || cap == 0 || after_id < 0)
		return bad_args(e, "list_pending: out, n, a capacity and an id >= 0 are needed");
	struct pending_fill p = { e, out, 0, SAGA_OK };
	pthread_mutex_lock(&e->mu);
	int rc = e->st->pending(e->store, after_id, page_limit(cap), fill_pending, &p);
	if (rc == SAGA_OK)
		rc = p.rc;
	if (rc)
		rc = store_err(e, rc);
	pthread_mutex_unlock(&e->mu);
	*n = rc ? 0 : p.n;
	return rc;
}

int saga_counts(saga_engine *e, int64_t counts[SAGA_STATE_COUNT])
{
	if (!e || !counts)
		return bad_args(e, "counts: an array is needed");
	pthread_mutex_lock(&e->mu);
	int rc = e->st->counts(e->store, counts);
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
			    (rc = e->st->purge_batch(e->store, st, before, &n)) != SAGA_OK)
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

/* ---- diagrams ---- */

/* An instance's history copied out of saga_history's callback, whose
 * strings are borrowed for the call only. */
struct event_copy {
	saga_engine *e;
	saga_event *ev;
	size_t n, cap;
	bool oom;
};

static char *dup_or_null(saga_engine *e, const char *s, bool *oom)
{
	char *d = s ? saga_strdup(&e->alloc, s) : NULL;
	*oom |= s && !d;
	return d;
}

static int copy_event(const saga_event *ev, void *user)
{
	struct event_copy *c = user;
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 64;
		saga_event *t = saga_realloc(&c->e->alloc, c->ev, cap * sizeof(*t));
		if (!t) {
			c->oom = true;
			return 1;
		}
		c->ev = t;
		c->cap = cap;
	}
	saga_event *d = &c->ev[c->n];
	*d = *ev;
	d->step_name = dup_or_null(c->e, ev->step_name, &c->oom);
	d->detail = dup_or_null(c->e, ev->detail, &c->oom);
	c->n++;
	return c->oom;
}

static void free_events(struct event_copy *c)
{
	for (size_t i = 0; i < c->n; i++) {
		saga_free(&c->e->alloc, (char *)c->ev[i].step_name);
		saga_free(&c->e->alloc, (char *)c->ev[i].detail);
	}
	saga_free(&c->e->alloc, c->ev);
}

/* The model of definition (name, version) from its stored snapshot, with
 * its policies when this engine registered it. */
static int graph_of(saga_engine *e, saga_graph **g, const char *name, int version)
{
	char msg[300] = "", *snap = NULL;
	pthread_mutex_lock(&e->mu);
	int rc = e->st->get_definition(e->store, &snap, name, version, &e->alloc);
	if (rc == SAGA_ENOTFOUND)
		rc = set_err(e, rc, "graph: no definition '%s' version %d in the store", name,
		             version);
	else if (rc)
		rc = store_err(e, rc);
	else if ((rc = graph_new(g, snap, &e->alloc, msg, sizeof(msg))))
		rc = set_err(e, rc, "%s", msg);
	const reg_def *rd = rc ? NULL : find_def(e, name, version);
	if (rd && (rc = graph_add_policies(*g, rd->def, msg, sizeof(msg))))
		rc = set_err(e, rc, "%s", msg);
	pthread_mutex_unlock(&e->mu);
	saga_free(&e->alloc, snap);
	return rc;
}

int saga_engine_graph(saga_engine *e, const char *definition, int version, int64_t id,
                      saga_graph_format format, saga_write_fn write, void *user)
{
	if (!e || !write || id < 0 || (id == 0 && (!definition || version < 1)))
		return bad_args(e, "graph: a write function, and an instance id or a "
		                   "definition's name and version, are needed");
	struct event_copy c = { .e = e };
	saga_instance_info info;
	saga_graph *g = NULL;
	char msg[300] = "";
	int rc = SAGA_OK;
	if (id > 0 && (rc = saga_get(e, &info, id)) == SAGA_OK) {
		definition = info.definition;
		version = info.version;
		rc = saga_history(e, id, copy_event, &c);
		if (c.oom)
			rc = set_err(e, SAGA_ENOMEM, "out of memory");
	}
	if (rc == SAGA_OK)
		rc = graph_of(e, &g, definition, version);
	if (rc == SAGA_OK && (rc = graph_add_path(g, c.ev, c.n, msg, sizeof(msg))))
		rc = set_err(e, rc, "%s", msg);
	if (rc == SAGA_OK && (rc = graph_render(g, format, write, user, msg, sizeof(msg))))
		rc = set_err(e, rc, "%s", msg);
	graph_free(g);
	free_events(&c);
	return rc;
}
