/* What is registered on an engine: definitions, circuit breakers and
 * listeners, and looking them up by name. SPDX-License-Identifier: MIT */
#include "engine_int.h"

#include <stdatomic.h>
#include <string.h>

const reg_def *find_def(saga_engine *e, const char *name, int version)
{
	const reg_def *best = NULL;
	for (size_t i = 0; i < e->ndefs; i++) {
		const saga_definition *d = e->defs[i]->def;
		if (strcmp(d->name, name) != 0)
			continue;
		if (version > 0 ? d->version == version
		                : (!best || d->version > best->def->version))
			best = e->defs[i];
	}
	return best;
}

/* Adds a copy of def to the engine's definitions. */
static int add_def(saga_engine *e, const saga_definition *def, bool stored_only)
{
	/* The array moves as it grows; the reg_def it points to does not. */
	reg_def **defs = saga_realloc(&e->alloc, e->defs, (e->ndefs + 1) * sizeof(*defs));
	if (!defs)
		return set_err(e, SAGA_ENOMEM, "out of memory");
	e->defs = defs;
	reg_def *rd = saga_calloc(&e->alloc, 1, sizeof(*rd));
	if (!rd || saga_definition_clone(&rd->def, def, &e->alloc) ||
	    !(rd->names = saga_calloc(&e->alloc, def->nsteps ? def->nsteps : 1, sizeof(char *))) ||
	    mx_def_init(e, rd)) {
		if (rd) {
			saga_definition_free(rd->def);
			saga_free(&e->alloc, rd->names);
		}
		saga_free(&e->alloc, rd);
		return set_err(e, SAGA_ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < def->nsteps; i++)
		rd->names[i] = rd->def->steps[i].name;
	rd->stored_only = stored_only;
	e->defs[e->ndefs++] = rd;
	return SAGA_OK;
}

/* Makes definition (name, version) known from its stored snapshot, unless
 * it is known already; with the mutex. */
int register_stored(saga_engine *e, const char *name, int version)
{
	if (find_def(e, name, version))
		return SAGA_OK;
	char *snap = NULL;
	int rc = e->st->get_definition(e->store, &snap, name, version, &e->alloc);
	if (rc == SAGA_ENOTFOUND)
		return set_err(e, rc, "definition '%s' version %d is not in the store", name,
		               version);
	if (rc)
		return store_err(e, rc);
	saga_definition *def = NULL;
	rc = saga_definition_from_snapshot(&def, snap);
	saga_free(&e->alloc, snap);
	if (rc)
		return set_err(e, rc, "the stored snapshot of '%s' version %d %s", name, version,
		               rc == SAGA_ENOMEM ? "cannot be read: out of memory" : "is damaged");
	rc = add_def(e, def, true);
	saga_definition_free(def);
	return rc;
}

int saga_engine_register(saga_engine *e, const saga_definition *def)
{
	if (!e || !def)
		return bad_args(e, "a definition is needed");
	char msg[256];
	pthread_mutex_lock(&e->mu);
	int rc = saga_definition_validate(def, msg, sizeof(msg));
	if (rc) {
		rc = set_err(e, rc, "%s", msg);
		goto out;
	}
	if (find_def(e, def->name, def->version)) {
		rc = set_err(e, SAGA_EEXISTS, "definition '%s' version %d is already registered",
		             def->name, def->version);
		goto out;
	}
	char *snap = saga_definition_snapshot(def);
	if (!snap) {
		rc = set_err(e, SAGA_ENOMEM, "out of memory");
		goto out;
	}
	rc = e->st->put_definition(e->store, def->name, def->version, snap);
	cJSON_free(snap);
	if (rc == SAGA_OK && e->st->epoch(e->store))
		rc = e->st->serve(e->store, def->name, def->version);
	if (rc) {
		rc = rc == SAGA_ECONFLICT ? set_err(e, rc, "%s", e->st->errmsg(e->store))
		                          : store_err(e, rc);
		goto out;
	}
	if ((rc = add_def(e, def, false)))
		goto out;
	/* Instances of this definition parked in the store may now run. */
	e->active_scanned = false;
	e->next_timer = 0;
	work_arrived(e);
out:
	pthread_mutex_unlock(&e->mu);
	return rc;
}

saga_breaker *find_breaker(saga_engine *e, const char *name)
{
	for (breaker_entry *b = e->breakers; b; b = b->next)
		if (strcmp(saga_breaker_name(b->b), name) == 0)
			return b->b;
	return NULL;
}

int saga_engine_add_breaker(saga_engine *e, const char *name, const saga_breaker_config *cfg)
{
	if (!e || !name || !cfg)
		return bad_args(e, "a breaker name and configuration are needed");
	pthread_mutex_lock(&e->mu);
	int rc;
	if (find_breaker(e, name)) {
		rc = set_err(e, SAGA_EEXISTS, "breaker '%s' already exists", name);
		goto out;
	}
	breaker_entry *be = saga_malloc(&e->alloc, sizeof(*be));
	if (!be) {
		rc = set_err(e, SAGA_ENOMEM, "out of memory");
		goto out;
	}
	rc = saga_breaker_new(&be->b, name, cfg, &e->clock);
	if (rc) {
		saga_free(&e->alloc, be);
		rc = set_err(e, rc, "breaker '%s': %s", name,
		             rc == SAGA_EINVAL ? "invalid configuration" : saga_strerror(rc));
		goto out;
	}
	be->next = e->breakers;
	e->breakers = be;
out:
	pthread_mutex_unlock(&e->mu);
	return rc;
}

saga_breaker *saga_engine_breaker(saga_engine *e, const char *name)
{
	if (!e || !name)
		return NULL;
	pthread_mutex_lock(&e->mu);
	saga_breaker *b = find_breaker(e, name);
	pthread_mutex_unlock(&e->mu);
	return b;
}

/* Frees the removed listeners when no delivery can still be walking them;
 * called with the mutex (a delivery starts under it: listeners_hold). */
static void reap_retired(saga_engine *e)
{
	if (atomic_load_explicit(&e->delivering, memory_order_acquire) != 0)
		return;
	while (e->retired) {
		listener *l = e->retired;
		e->retired = l->retired_next;
		saga_free(&e->alloc, l);
	}
}

int saga_engine_add_listener(saga_engine *e, saga_listener_fn fn, void *user)
{
	if (!e || !fn)
		return bad_args(e, "a listener function is needed");
	listener *l = saga_malloc(&e->alloc, sizeof(*l));
	if (!l)
		return set_err(e, SAGA_ENOMEM, "out of memory");
	l->fn = fn;
	l->user = user;
	atomic_init(&l->removed, false);
	l->retired_next = NULL;
	pthread_mutex_lock(&e->mu);
	atomic_init(&l->next, e->listeners);
	e->listeners = l; /* deliveries under way keep the head they took */
	pthread_mutex_unlock(&e->mu);
	return SAGA_OK;
}

int saga_engine_remove_listener(saga_engine *e, saga_listener_fn fn, void *user)
{
	if (!e || !fn)
		return bad_args(e, "a listener function is needed");
	pthread_mutex_lock(&e->mu);
	int rc = SAGA_OK;
	listener *prev = NULL, *l = e->listeners;
	while (l && (l->fn != fn || l->user != user)) {
		prev = l;
		l = atomic_load_explicit(&l->next, memory_order_relaxed);
	}
	if (!l) {
		rc = set_err(e, SAGA_ENOTFOUND, "no such listener is registered");
	} else {
		atomic_store_explicit(&l->removed, true, memory_order_release);
		listener *next = atomic_load_explicit(&l->next, memory_order_relaxed);
		if (prev)
			atomic_store_explicit(&prev->next, next, memory_order_release);
		else
			e->listeners = next;
		/* A delivery may stand on it: its next pointer stays valid. */
		l->retired_next = e->retired;
		e->retired = l;
		reap_retired(e);
	}
	pthread_mutex_unlock(&e->mu);
	return rc;
}

/* The listeners for one delivery; called with the mutex. Until
 * listeners_release, no listener it can reach is freed. */
listener *listeners_hold(saga_engine *e)
{
	atomic_fetch_add_explicit(&e->delivering, 1, memory_order_relaxed);
	return e->listeners;
}

/* Calls each listener still registered; called without the mutex. */
void listeners_deliver(listener *ls, const saga_event *ev)
{
	for (listener *l = ls; l; l = atomic_load_explicit(&l->next, memory_order_acquire))
		if (!atomic_load_explicit(&l->removed, memory_order_acquire))
			l->fn(ev, l->user);
}

void listeners_release(saga_engine *e)
{
	atomic_fetch_sub_explicit(&e->delivering, 1, memory_order_release);
}

/* At close: no delivery runs any more. */
void listeners_free(saga_engine *e)
{
	while (e->listeners) {
		listener *l = e->listeners;
		e->listeners = atomic_load_explicit(&l->next, memory_order_relaxed);
		saga_free(&e->alloc, l);
	}
	reap_retired(e);
}
