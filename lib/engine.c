/* Opening and closing an engine: checking the options, building the engine
 * and starting its threads, and tearing it all down. The rest of the engine
 * lives in the files listed in engine_int.h. SPDX-License-Identifier: MIT */
#include "engine_int.h"

/* max_in_flight when the options give 0. */
#define MAX_IN_FLIGHT_DEFAULT 256u

/* Checks every option against its documented range (saga.h), before
 * anything is allocated or any file is touched. */
static int check_options(const saga_options *o, char *errmsg, size_t errsize)
{
	if (!o->path || !*o->path) {
		saga_fmt(errmsg, errsize, "invalid options: path is required");
		return SAGA_EINVAL;
	}
	if (o->version != SAGA_OPTIONS_VERSION) {
		saga_fmt(errmsg, errsize,
		         "invalid options: version is %u, not SAGA_OPTIONS_VERSION (%u)",
		         o->version, (unsigned)SAGA_OPTIONS_VERSION);
		return SAGA_EINVAL;
	}
	if (o->durability != SAGA_DURABILITY_FULL && o->durability != SAGA_DURABILITY_NORMAL) {
		saga_fmt(errmsg, errsize,
		         "invalid options: durability %d is neither FULL nor NORMAL",
		         (int)o->durability);
		return SAGA_EINVAL;
	}
	if (o->workers > SAGA_WORKERS_MAX) {
		saga_fmt(errmsg, errsize, "invalid options: workers is %u, at most %u", o->workers,
		         (unsigned)SAGA_WORKERS_MAX);
		return SAGA_EINVAL;
	}
	if (o->max_in_flight > SAGA_MAX_IN_FLIGHT_MAX) {
		saga_fmt(errmsg, errsize,
		         "invalid options: max_in_flight is %u, at most %u (0 = %u)",
		         o->max_in_flight, (unsigned)SAGA_MAX_IN_FLIGHT_MAX, MAX_IN_FLIGHT_DEFAULT);
		return SAGA_EINVAL;
	}
	if ((int)o->log_level < SAGA_LOG_DEBUG || (int)o->log_level > SAGA_LOG_ERROR) {
		saga_fmt(errmsg, errsize, "invalid options: log_level %d is not DEBUG..ERROR",
		         (int)o->log_level);
		return SAGA_EINVAL;
	}
	if (o->busy_timeout_ms > SAGA_BUSY_TIMEOUT_MAX) {
		saga_fmt(errmsg, errsize,
		         "invalid options: busy_timeout_ms is %lu, at most %lu (0 = %lu)",
		         (unsigned long)o->busy_timeout_ms, (unsigned long)SAGA_BUSY_TIMEOUT_MAX,
		         (unsigned long)STORE_BUSY_TIMEOUT_DEFAULT);
		return SAGA_EINVAL;
	}
	return SAGA_OK;
}

/* The condition variables, in the order they are made. */
#define NCONDS 4
static void conds(saga_engine *e, pthread_cond_t *cv[NCONDS])
{
	cv[0] = &e->wake;
	cv[1] = &e->work_cv;
	cv[2] = &e->idle_cv;
	cv[3] = &e->start_cv;
}

/* Makes the mutexes and the condition variables: all of them, or none. */
static int sync_init(saga_engine *e)
{
	pthread_cond_t *cv[NCONDS];
	conds(e, cv);
	if (pthread_mutex_init(&e->mu, NULL) != 0)
		return SAGA_ERROR;
	if (pthread_mutex_init(&e->qmu, NULL) != 0) {
		pthread_mutex_destroy(&e->mu);
		return SAGA_ERROR;
	}
	for (size_t i = 0; i < NCONDS; i++) {
		if (pthread_cond_init(cv[i], NULL) != 0) {
			while (i-- > 0)
				pthread_cond_destroy(cv[i]);
			pthread_mutex_destroy(&e->qmu);
			pthread_mutex_destroy(&e->mu);
			return SAGA_ERROR;
		}
	}
	return SAGA_OK;
}

static void sync_destroy(saga_engine *e)
{
	pthread_cond_t *cv[NCONDS];
	conds(e, cv);
	for (size_t i = NCONDS; i-- > 0;)
		pthread_cond_destroy(cv[i]);
	pthread_mutex_destroy(&e->qmu);
	pthread_mutex_destroy(&e->mu);
}

/* Stops the driver and the workers, and waits for them. */
static void stop_threads(saga_engine *e)
{
	pthread_mutex_lock(&e->mu);
	e->stopping = true;
	pthread_cond_broadcast(&e->wake);
	pthread_cond_broadcast(&e->work_cv);
	pthread_mutex_unlock(&e->mu);
	for (unsigned int i = 0; i < e->nthreads; i++)
		pthread_join(e->threads[i], NULL);
}

int saga_engine_open(saga_engine **out, const saga_options *o, char *errmsg, size_t errsize)
{
	if (out)
		*out = NULL;
	if (!out || !o) {
		saga_fmt(errmsg, errsize, "invalid arguments: out and options are required");
		return SAGA_EINVAL;
	}
	int rc = check_options(o, errmsg, errsize);
	if (rc)
		return rc;
	saga_alloc a = saga_default_alloc;
	if (o->allocator.malloc_fn || o->allocator.realloc_fn || o->allocator.free_fn) {
		if (!o->allocator.malloc_fn || !o->allocator.realloc_fn || !o->allocator.free_fn) {
			saga_fmt(errmsg, errsize, "allocator: set all three functions or none");
			return SAGA_EINVAL;
		}
		a = o->allocator;
	}
	saga_engine *e = saga_calloc(&a, 1, sizeof(*e));
	if (!e) {
		saga_fmt(errmsg, errsize, "out of memory");
		return SAGA_ENOMEM;
	}
	e->alloc = a;
	saga_clock_resolve(&e->clock, &o->clock);
	e->log = o->log;
	e->log_user = o->log_user;
	e->log_level = o->log_level;
	e->max_in_flight = o->max_in_flight ? o->max_in_flight : MAX_IN_FLIGHT_DEFAULT;
	e->nworkers = o->workers;
	e->rng = o->seed ? o->seed : seed_from_system();
	if (sync_init(e) != SAGA_OK) {
		saga_fmt(errmsg, errsize, "cannot create a mutex or condition variable");
		saga_free(&a, e);
		return SAGA_ERROR;
	}
	e->loaded = saga_calloc(&a, e->max_in_flight, sizeof(*e->loaded));
	if (!e->loaded) {
		saga_fmt(errmsg, errsize, "out of memory");
		rc = SAGA_ENOMEM;
		goto fail;
	}
	if ((rc = store_open(&e->store, o->path, o->durability, o->busy_timeout_ms, &a, errmsg,
	                     errsize)))
		goto fail;
	if (e->nworkers) {
		e->threads = saga_calloc(&a, e->nworkers + 1, sizeof(pthread_t));
		if (!e->threads) {
			saga_fmt(errmsg, errsize, "out of memory");
			rc = SAGA_ENOMEM;
			goto fail;
		}
		for (unsigned int i = 0; i <= e->nworkers; i++) {
			if (pthread_create(&e->threads[i], NULL, i == 0 ? driver_main : worker_main,
			                   e) != 0) {
				saga_fmt(errmsg, errsize, "cannot start a worker thread");
				rc = SAGA_ERROR;
				goto fail;
			}
			e->nthreads++;
		}
	}
	*out = e;
	return SAGA_OK;
fail:
	stop_threads(e);
	saga_free(&a, e->threads);
	store_close(e->store);
	saga_free(&a, e->loaded);
	sync_destroy(e);
	saga_free(&a, e);
	return rc;
}

void saga_engine_close(saga_engine *e)
{
	if (!e)
		return;
	stop_threads(e);
	/* Record the answers of callbacks that finished; starts already
	 * recorded but not invoked are resumed at the next open. */
	pthread_mutex_lock(&e->mu);
	bool results = has_stage(e, STAGE_RESULT);
	for (size_t i = e->nloaded; i-- > 0;)
		if (e->loaded[i]->stage == STAGE_INVOKE || e->loaded[i]->stage == STAGE_PROCESS)
			unload(e, i);
	if (results && process_round(e) != SAGA_OK)
		log_at(e, SAGA_LOG_ERROR, "close: %s", saga_engine_errmsg(e));
	unlock_and_deliver(e);
	while (e->nloaded)
		unload(e, 0);
	drop_events(e);
	saga_free(&e->alloc, e->events);
	for (size_t i = 0; i < e->ndefs; i++) {
		saga_definition_free(e->defs[i]->def);
		saga_free(&e->alloc, e->defs[i]->names);
		saga_free(&e->alloc, e->defs[i]);
	}
	saga_free(&e->alloc, e->defs);
	while (e->breakers) {
		breaker_entry *b = e->breakers;
		e->breakers = b->next;
		saga_breaker_free(b->b);
		saga_free(&e->alloc, b);
	}
	while (e->listeners) {
		listener *l = e->listeners;
		e->listeners = l->next;
		saga_free(&e->alloc, l);
	}
	store_close(e->store);
	saga_free(&e->alloc, e->ready);
	saga_free(&e->alloc, e->quarantine);
	saga_free(&e->alloc, e->loaded);
	saga_free(&e->alloc, e->threads);
	sync_destroy(e);
	saga_alloc a = e->alloc;
	saga_free(&a, e);
}
