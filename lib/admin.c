/* The admin API: a store seen by an operator, through an engine that runs
 * nothing. The handle's engine is opened deferred and never started, with
 * no definition registered: it takes no instance to run and serves no
 * definition. Reads go to the store's table of functions (store.h) under
 * the engine's mutex, each one statement (a short read transaction of its
 * own). The operator's verbs are the engine's (admin_command, command.c):
 * the definition of the instance is made known from its stored snapshot,
 * an instance owned elsewhere gets a command row, and one owned by nobody
 * is changed here in one fenced transaction and handed back to the pool at
 * once (the handle's owner registration is retired).
 * SPDX-License-Identifier: MIT */
#include "engine_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct saga_admin {
	saga_engine *e;
	unsigned int flags;
	uint64_t rng;
	char err[512];
};

/* Keeps the message of a failed call of the engine; returns rc. */
static int keep_err(saga_admin *a, int rc)
{
	if (rc)
		saga_fmt(a->err, sizeof(a->err), "%s", saga_engine_errmsg(a->e));
	else
		a->err[0] = '\0';
	return rc;
}

static int admin_err(saga_admin *a, int rc, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static int admin_err(saga_admin *a, int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(a->err, sizeof(a->err), fmt, ap);
	va_end(ap);
	return rc;
}

int saga_admin_open(saga_admin **out, const char *store, unsigned int flags, char *errmsg,
                    size_t errmsg_size)
{
	char dummy[1];
	if (!errmsg) {
		errmsg = dummy;
		errmsg_size = sizeof(dummy);
	}
	if (out)
		*out = NULL;
	if (!out || !store || (flags & ~SAGA_ADMIN_READ_ONLY)) {
		saga_fmt(errmsg, errmsg_size,
		         "admin_open: out, a store and valid flags are needed");
		return SAGA_EINVAL;
	}
	/* The store must be there (a file; a database or schema with its
	 * tables): an operator's typo never makes a new store. */
	const store_ops *ops;
	const char *target;
	int rc = store_for_name(&ops, &target, store, errmsg, errmsg_size);
	if (rc || (rc = ops->probe(target, errmsg, errmsg_size)))
		return rc;
	saga_admin *a = calloc(1, sizeof(*a));
	if (!a) {
		saga_fmt(errmsg, errmsg_size, "out of memory");
		return SAGA_ENOMEM;
	}
	saga_options o = SAGA_OPTIONS_INIT;
	o.path = store;
	o.deferred_start = 1; /* never started: it runs nothing */
	rc = saga_engine_open(&a->e, &o, errmsg, errmsg_size);
	if (rc) {
		free(a);
		return rc;
	}
	a->flags = flags;
	a->rng = seed_from_system();
	*out = a;
	return SAGA_OK;
}

void saga_admin_close(saga_admin *a)
{
	if (!a)
		return;
	saga_engine_close(a->e);
	free(a);
}

const char *saga_admin_errmsg(const saga_admin *a)
{
	return a ? a->err : "no admin handle";
}

/* ---- reads ---- */

/* The name of step `step` of the row's definition, from its snapshot. */
static void step_name_of(saga_engine *e, const saga_row *r, char *out, size_t size)
{
	out[0] = '\0';
	if (register_stored(e, r->def_name, r->def_version) != SAGA_OK)
		return;
	const reg_def *rd = find_def(e, r->def_name, r->def_version);
	if (rd && r->step >= 0 && (size_t)r->step < rd->def->nsteps)
		saga_fmt(out, size, "%s", rd->names[r->step]);
}

/* With the mutex. */
static void to_instance(saga_engine *e, saga_admin_instance *out, const saga_row *r)
{
	memset(out, 0, sizeof(*out));
	row_to_info(&out->info, r);
	step_name_of(e, r, out->step_name, sizeof(out->step_name));
	out->owner = r->owner;
	out->fence = r->fence;
	out->inflight = r->inflight;
	out->pending = r->pending;
	out->compensated_any = r->comp_done_any;
	out->recoveries = r->recoveries > UINT32_MAX ? UINT32_MAX : (uint32_t)r->recoveries;
}

static bool matches(const saga_row *r, const saga_admin_filter *f)
{
	if (f->key_prefix &&
	    (!r->has_bkey || strncmp(r->bkey, f->key_prefix, strlen(f->key_prefix)) != 0))
		return false;
	if (f->error_text && !strstr(r->error, f->error_text))
		return false;
	return f->owner < 0 || r->owner == f->owner;
}

/* The rows of one store page, read before they are looked at (the step
 * names need other statements). */
#define ADMIN_PAGE 64
struct rows {
	saga_row v[ADMIN_PAGE];
	int n;
};

static int keep_row(const saga_row *r, void *user)
{
	struct rows *p = user;
	p->v[p->n++] = *r;
	return 0;
}

int saga_admin_list(saga_admin *a, saga_admin_instance *out, size_t *n, size_t cap,
                    const saga_admin_filter *filter, int64_t after_id)
{
	if (n)
		*n = 0;
	if (!a)
		return SAGA_EINVAL;
	if (!out || !n || cap == 0 || after_id < 0)
		return admin_err(a, SAGA_EINVAL,
		                 "list: out, n, a capacity and an id >= 0 are needed");
	saga_admin_filter all = SAGA_ADMIN_FILTER_INIT;
	const saga_admin_filter *f = filter ? filter : &all;
	if (f->version != SAGA_ADMIN_FILTER_VERSION)
		return admin_err(a, SAGA_EINVAL, "list: filter version %u is not %d", f->version,
		                 SAGA_ADMIN_FILTER_VERSION);
	if (f->owner < -1)
		return admin_err(a, SAGA_EINVAL, "list: owner is an epoch, 0 or -1");
	saga_list_filter lf = { SAGA_LIST_FILTER_VERSION, f->state,           f->definition,
		                f->definition_version,    f->created_from_ms, f->created_to_ms,
		                f->updated_from_ms,       f->updated_to_ms };
	saga_engine *e = a->e;
	int rc = check_list_filter(e, &lf);
	if (rc)
		return keep_err(a, rc);
	store_filter sf = { f->state,           f->definition,    f->definition_version,
		            f->created_from_ms, f->created_to_ms, f->updated_from_ms,
		            f->updated_to_ms };
	struct rows *p = malloc(sizeof(*p));
	if (!p)
		return admin_err(a, SAGA_ENOMEM, "out of memory");
	pthread_mutex_lock(&e->mu);
	int64_t after = after_id;
	while (*n < cap) {
		p->n = 0;
		if ((rc = e->st->page(e->store, &sf, after, ADMIN_PAGE, keep_row, p))) {
			rc = store_err(e, rc);
			break;
		}
		for (int i = 0; i < p->n && *n < cap; i++)
			if (matches(&p->v[i], f))
				to_instance(e, &out[(*n)++], &p->v[i]);
		if (p->n < ADMIN_PAGE)
			break;
		after = p->v[p->n - 1].id;
	}
	pthread_mutex_unlock(&e->mu);
	free(p);
	if (rc)
		*n = 0;
	return keep_err(a, rc);
}

/* Reads the row named by id, or by ref (a uid, else a business key). */
static int find_row(saga_engine *e, saga_row *r, int64_t id, const char *ref,
                    const saga_alloc *alloc)
{
	int rc = SAGA_ENOTFOUND;
	if (id > 0) {
		rc = e->st->load(e->store, r, id, alloc);
	} else if (ref) {
		if (strlen(ref) == SAGA_UID_LEN)
			rc = e->st->load_uid(e->store, r, ref, alloc);
		int64_t found = 0;
		if (rc == SAGA_ENOTFOUND &&
		    (rc = e->st->find_bkey(e->store, &found, ref)) == SAGA_OK)
			rc = e->st->load(e->store, r, found, alloc);
	}
	if (rc == SAGA_ENOTFOUND)
		return id > 0 || !ref ? set_err(e, rc, "no instance %lld", (long long)id)
		                      : set_err(e, rc, "no instance with uid or key '%s'", ref);
	return rc ? store_err(e, rc) : SAGA_OK;
}

int saga_admin_get(saga_admin *a, saga_admin_instance *out, int64_t id, const char *ref)
{
	if (!a)
		return SAGA_EINVAL;
	if (!out || (id <= 0 && !ref))
		return admin_err(a, SAGA_EINVAL, "get: out and an id or a uid or key are needed");
	saga_engine *e = a->e;
	saga_row r;
	pthread_mutex_lock(&e->mu);
	int rc = find_row(e, &r, id, ref, NULL);
	if (rc == SAGA_OK)
		to_instance(e, out, &r);
	pthread_mutex_unlock(&e->mu);
	return keep_err(a, rc);
}

int saga_admin_context(saga_admin *a, cJSON **out, int64_t id)
{
	if (!a)
		return SAGA_EINVAL;
	if (!out)
		return admin_err(a, SAGA_EINVAL, "context: out is needed");
	*out = NULL;
	saga_engine *e = a->e;
	saga_row r;
	pthread_mutex_lock(&e->mu);
	int rc = find_row(e, &r, id, NULL, &e->alloc);
	if (rc == SAGA_OK) {
		rc = parse_context(e, out, r.context, id);
		saga_free(&e->alloc, r.context);
	}
	pthread_mutex_unlock(&e->mu);
	return keep_err(a, rc);
}

int saga_admin_history(saga_admin *a, int64_t id, saga_event_fn fn, void *user)
{
	if (!a)
		return SAGA_EINVAL;
	return keep_err(a, saga_history(a->e, id, fn, user));
}

int saga_admin_metrics_write(saga_admin *a, saga_metrics_format format, saga_write_fn write,
                             void *user)
{
	if (!a)
		return SAGA_EINVAL;
	return keep_err(a, saga_metrics_write(a->e, SAGA_METRICS_STORE, format, write, user));
}

int saga_admin_counts(saga_admin *a, int64_t counts[SAGA_STATE_COUNT])
{
	if (!a)
		return SAGA_EINVAL;
	return keep_err(a, saga_counts(a->e, counts));
}

struct count_call {
	saga_admin_count_fn fn;
	void *user;
};

static int pass_count(const char *name, int version, int state, int64_t n, void *user)
{
	struct count_call *c = user;
	return c->fn(name, version, (saga_state)state, n, c->user);
}

int saga_admin_counts_by_definition(saga_admin *a, saga_admin_count_fn fn, void *user)
{
	if (!a)
		return SAGA_EINVAL;
	if (!fn)
		return admin_err(a, SAGA_EINVAL, "counts: a function is needed");
	struct count_call c = { fn, user };
	saga_engine *e = a->e;
	pthread_mutex_lock(&e->mu);
	int rc = e->st->def_counts(e->store, pass_count, &c);
	if (rc)
		rc = store_err(e, rc);
	pthread_mutex_unlock(&e->mu);
	return keep_err(a, rc);
}

int saga_admin_definitions(saga_admin *a, saga_admin_definition_fn fn, void *user)
{
	if (!a)
		return SAGA_EINVAL;
	if (!fn)
		return admin_err(a, SAGA_EINVAL, "definitions: a function is needed");
	saga_engine *e = a->e;
	pthread_mutex_lock(&e->mu);
	int rc = e->st->definitions(e->store, fn, user);
	if (rc)
		rc = store_err(e, rc);
	pthread_mutex_unlock(&e->mu);
	return keep_err(a, rc);
}

struct owner_call {
	saga_admin_owner_fn fn;
	void *user;
};

static int pass_owner(const store_owner *o, void *user)
{
	struct owner_call *c = user;
	saga_admin_owner ao = { o->epoch,  o->host,       o->pid,    o->state,
		                o->age_ms, o->lease_left, o->served, o->instances };
	return c->fn(&ao, c->user);
}

int saga_admin_owners(saga_admin *a, int all, saga_admin_owner_fn fn, void *user)
{
	if (!a)
		return SAGA_EINVAL;
	if (!fn)
		return admin_err(a, SAGA_EINVAL, "owners: a function is needed");
	struct owner_call c = { fn, user };
	saga_engine *e = a->e;
	pthread_mutex_lock(&e->mu);
	int rc = e->st->owners(e->store, all != 0, pass_owner, &c);
	if (rc)
		rc = store_err(e, rc);
	pthread_mutex_unlock(&e->mu);
	return keep_err(a, rc);
}

/* ---- the operator's requests ---- */

/* Hands back what this handle's owner registration holds (an instance a
 * request changed here) and retires it: the pool's engines take it, and no
 * live owner is left behind by the handle. */
static int hand_back(saga_admin *a)
{
	saga_engine *e = a->e;
	pthread_mutex_lock(&e->mu);
	int rc = e->st->epoch(e->store) ? e->st->retire(e->store) : SAGA_OK;
	if (rc)
		rc = set_err(e, store_err(e, rc), "applied, but not handed back to the pool: %s",
		             e->st->errmsg(e->store));
	pthread_mutex_unlock(&e->mu);
	return rc;
}

static int writable(saga_admin *a)
{
	if (a->flags & SAGA_ADMIN_READ_ONLY)
		return admin_err(a, SAGA_ESTATE, "the admin handle is read-only");
	return SAGA_OK;
}

#define ACTOR_MAX  128
#define REASON_MAX 512

int saga_admin_request(saga_admin *a, char *request, int *queued, int64_t id, saga_admin_verb verb,
                       const char *actor, const char *reason)
{
	static const int verbs[] = { [SAGA_ADMIN_RETRY] = CMD_RETRY,
		                     [SAGA_ADMIN_SKIP] = CMD_SKIP,
		                     [SAGA_ADMIN_RESUME] = CMD_RESUME,
		                     [SAGA_ADMIN_CANCEL] = CMD_CANCEL };
	if (queued)
		*queued = 0;
	if (request)
		request[0] = '\0';
	if (!a)
		return SAGA_EINVAL;
	if ((unsigned)verb > SAGA_ADMIN_CANCEL)
		return admin_err(a, SAGA_EINVAL, "request: %d is not a verb", (int)verb);
	if (!actor || !*actor || strlen(actor) > ACTOR_MAX || !reason || !*reason ||
	    strlen(reason) > REASON_MAX)
		return admin_err(a, SAGA_EINVAL,
		                 "request: an actor (1 to %d bytes) and a reason (1 to %d bytes) "
		                 "are needed",
		                 ACTOR_MAX, REASON_MAX);
	int rc = writable(a);
	if (rc)
		return rc;
	char token[SAGA_ADMIN_REQUEST_LEN + 1];
	saga_fmt(token, sizeof(token), "%016llx%016llx",
	         (unsigned long long)saga_random_next(&a->rng),
	         (unsigned long long)saga_random_next(&a->rng));
	cJSON *note = cJSON_CreateObject();
	char *text = NULL;
	if (!note || !cJSON_AddStringToObject(note, "actor", actor) ||
	    !cJSON_AddStringToObject(note, "reason", reason) ||
	    !cJSON_AddStringToObject(note, "request", token) ||
	    !(text = cJSON_PrintUnformatted(note))) {
		cJSON_Delete(note);
		return admin_err(a, SAGA_ENOMEM, "out of memory");
	}
	cJSON_Delete(note);
	saga_engine *e = a->e;
	/* The verbs decide on the definition's step kinds: known from the
	 * stored snapshot. */
	saga_row r;
	pthread_mutex_lock(&e->mu);
	rc = find_row(e, &r, id, NULL, NULL);
	if (rc == SAGA_OK)
		rc = register_stored(e, r.def_name, r.def_version);
	pthread_mutex_unlock(&e->mu);
	bool q = false;
	if (rc == SAGA_OK)
		rc = admin_command(e, id, verbs[verb], text, &q);
	cJSON_free(text);
	if (rc)
		return keep_err(a, rc);
	/* Queued or applied, the owner registration the write needed ends
	 * here: a handle holds nothing between requests. */
	if ((rc = hand_back(a)))
		return keep_err(a, rc);
	if (queued)
		*queued = q;
	if (request)
		saga_fmt(request, SAGA_ADMIN_REQUEST_LEN + 1, "%s", token);
	return keep_err(a, SAGA_OK);
}

/* What the history says of a request. */
struct seen {
	char needle[SAGA_ADMIN_REQUEST_LEN + 16];
	int found; /* 0 not yet, 1 applied, 2 refused */
	char detail[600];
};

static int look_for(const saga_event *ev, void *user)
{
	struct seen *s = user;
	if (ev->type != SAGA_EVENT_OPERATOR || !strstr(ev->detail, s->needle))
		return 0;
	s->found = strncmp(ev->detail, "refused:", 8) == 0 ? 2 : 1;
	saga_fmt(s->detail, sizeof(s->detail), "%s", ev->detail);
	return 1;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int saga_admin_wait(saga_admin *a, int64_t id, const char *request, uint64_t timeout_ms)
{
	if (!a)
		return SAGA_EINVAL;
	if (!request || strlen(request) != SAGA_ADMIN_REQUEST_LEN)
		return admin_err(a, SAGA_EINVAL, "wait: a request id is needed");
	struct seen s = { .found = 0 };
	saga_fmt(s.needle, sizeof(s.needle), "\"request\":\"%s\"", request);
	uint64_t end = mono_ms() + timeout_ms;
	for (;;) {
		int rc = saga_history(a->e, id, look_for, &s);
		if (rc)
			return keep_err(a, rc);
		if (s.found == 1)
			return keep_err(a, SAGA_OK);
		if (s.found == 2)
			return admin_err(a, SAGA_ESTATE, "%s", s.detail);
		if (mono_ms() >= end)
			return admin_err(a, SAGA_EBUSY,
			                 "request %s on instance %lld is not applied yet: its "
			                 "owner has not run since",
			                 request, (long long)id);
		struct timespec ts = { 0, 20 * 1000000L };
		nanosleep(&ts, NULL);
	}
}

int saga_admin_purge(saga_admin *a, int64_t *purged, int state, uint64_t older_than_ms)
{
	if (purged)
		*purged = 0;
	if (!a)
		return SAGA_EINVAL;
	int rc = writable(a);
	if (rc)
		return rc;
	rc = saga_purge(a->e, purged, state, older_than_ms);
	if (rc)
		return keep_err(a, rc);
	return keep_err(a, hand_back(a));
}
