/* Opening, starting and closing an engine: checking the options, building
 * the engine, starting its threads (at open, or at saga_engine_start when
 * the options defer it), and tearing it all down. The rest of the engine
 * lives in the files listed in engine_int.h. SPDX-License-Identifier: MIT */
#include "engine_int.h"

#include <stddef.h>
#include <string.h>

/* max_in_flight when the options give 0. */
#define MAX_IN_FLIGHT_DEFAULT 256u
/* lease_ms when the options give 0. */
#define LEASE_DEFAULT_MS 10000u

/* Checks every option against its documented range (saga.h), before
 * anything is allocated or any file is touched. */
static int check_options(const saga_options *o, char *errmsg, size_t errsize)
{
	if (!o->path || !*o->path) {
		saga_fmt(errmsg, errsize, "invalid options: path is required");
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
	if (o->lease_ms && (o->lease_ms < SAGA_LEASE_MIN || o->lease_ms > SAGA_LEASE_MAX)) {
		saga_fmt(errmsg, errsize,
		         "invalid options: lease_ms is %lu, not %lu .. %lu (0 = %lu)",
		         (unsigned long)o->lease_ms, (unsigned long)SAGA_LEASE_MIN,
		         (unsigned long)SAGA_LEASE_MAX, (unsigned long)LEASE_DEFAULT_MS);
		return SAGA_EINVAL;
	}
	uint32_t lease = o->lease_ms ? o->lease_ms : LEASE_DEFAULT_MS;
	if (o->lease_margin_ms >= lease) {
		saga_fmt(errmsg, errsize,
		         "invalid options: lease_margin_ms is %lu, not below the lease (%lu ms)",
		         (unsigned long)o->lease_margin_ms, (unsigned long)lease);
		return SAGA_EINVAL;
	}
	if (o->deferred_start != 0 && o->deferred_start != 1) {
		saga_fmt(errmsg, errsize, "invalid options: deferred_start %d is neither 0 nor 1",
		         o->deferred_start);
		return SAGA_EINVAL;
	}
	return SAGA_OK;
}

/* The options as this version reads them: a caller built against version 1
 * passes a shorter struct, whose fields are copied and the later ones left
 * at their defaults. */
static int read_options(saga_options *out, const saga_options *o, char *errmsg, size_t errsize)
{
	static const saga_options defaults = SAGA_OPTIONS_INIT;
	*out = defaults;
	if (o->version == 1) {
		memcpy(out, o, offsetof(saga_options, deferred_start));
	} else if (o->version == 2) {
		memcpy(out, o, offsetof(saga_options, lease_ms));
	} else if (o->version == 3) {
		memcpy(out, o, offsetof(saga_options, log_record));
	} else if (o->version == SAGA_OPTIONS_VERSION) {
		*out = *o;
	} else {
		saga_fmt(errmsg, errsize,
		         "invalid options: version is %u, not 1, 2, 3 or SAGA_OPTIONS_VERSION (%u)",
		         o->version, (unsigned)SAGA_OPTIONS_VERSION);
		return SAGA_EINVAL;
	}
	return SAGA_OK;
}

/* The condition variables, in the order they are made. */
#define NCONDS 5
static void conds(saga_engine *e, pthread_cond_t *cv[NCONDS])
{
	cv[0] = &e->wake;
	cv[1] = &e->work_cv;
	cv[2] = &e->idle_cv;
	cv[3] = &e->start_cv;
	cv[4] = &e->wait_cv;
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
	e->nthreads = 0;
}

/* Starts the driver and the workers (none without workers): all of them, or
 * none. */
static int start_threads(saga_engine *e, char *errmsg, size_t errsize)
{
	if (!e->nworkers)
		return SAGA_OK;
	if (!e->threads)
		e->threads = saga_calloc(&e->alloc, e->nworkers + 1, sizeof(pthread_t));
	if (!e->threads) {
		saga_fmt(errmsg, errsize, "out of memory");
		return SAGA_ENOMEM;
	}
	for (unsigned int i = 0; i <= e->nworkers; i++) {
		if (pthread_create(&e->threads[i], NULL, i == 0 ? driver_main : worker_main, e) !=
		    0) {
			saga_fmt(errmsg, errsize, "cannot start a worker thread");
			stop_threads(e);
			pthread_mutex_lock(&e->mu);
			e->stopping = false;
			pthread_mutex_unlock(&e->mu);
			return SAGA_ERROR;
		}
		e->nthreads++;
	}
	return SAGA_OK;
}

int saga_engine_open(saga_engine **out, const saga_options *o, char *errmsg, size_t errsize)
{
	if (out)
		*out = NULL;
	if (!out || !o) {
		saga_fmt(errmsg, errsize, "invalid arguments: out and options are required");
		return SAGA_EINVAL;
	}
	saga_options opts;
	int rc = read_options(&opts, o, errmsg, errsize);
	if (rc || (rc = check_options(&opts, errmsg, errsize)))
		return rc;
	o = &opts;
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
	e->st = &store_sqlite_ops;
	saga_clock_resolve(&e->clock, &o->clock);
	e->log = o->log;
	e->log_user = o->log_user;
	e->log_level = o->log_level;
	e->log_record = o->log_record;
	e->log_record_user = o->log_record_user;
	e->max_in_flight = o->max_in_flight ? o->max_in_flight : MAX_IN_FLIGHT_DEFAULT;
	e->nworkers = o->workers;
	e->rng = o->seed ? o->seed : seed_from_system();
	e->fd_read = e->fd_write = -1;
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
	e->lease_ms = o->lease_ms ? o->lease_ms : LEASE_DEFAULT_MS;
	e->margin_ms = o->lease_margin_ms ? o->lease_margin_ms : e->lease_ms / 2;
	if ((rc = e->st->open(&e->store, o->path, o->durability, o->busy_timeout_ms, &a, errmsg,
	                      errsize)))
		goto fail;

	if (!o->deferred_start) {
		if ((rc = start_threads(e, errmsg, errsize)))
			goto fail;
		e->started = true;
	}
	*out = e;
	return SAGA_OK;
fail:
	saga_free(&a, e->threads);
	e->st->close(e->store);
	saga_free(&a, e->loaded);
	sync_destroy(e);
	saga_free(&a, e);
	return rc;
}

int saga_engine_start(saga_engine *e)
{
	if (!e)
		return SAGA_EINVAL;
	pthread_mutex_lock(&e->mu);
	bool was = e->started;
	e->started = true; /* claimed: a concurrent call finds it taken */
	pthread_mutex_unlock(&e->mu);
	if (was)
		return set_err(e, SAGA_ESTATE, "engine_start: the engine is running already");
	/* The threads are made without the mutex: they take it at once. */
	char msg[256];
	int rc = start_threads(e, msg, sizeof(msg));
	pthread_mutex_lock(&e->mu);
	if (rc)
		e->started = false;
	else
		work_arrived(e); /* the first round resumes what is unfinished */
	pthread_mutex_unlock(&e->mu);
	return rc ? set_err(e, rc, "engine_start: %s", msg) : SAGA_OK;
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
		log_at(e, SAGA_LOG_ERROR, "close.failed", "close: %s", saga_engine_errmsg(e));
	unlock_and_deliver(e);
	while (e->nloaded)
		unload(e, 0);
	/* Everything unfinished goes back to the pool: another process takes
	 * it over at once, without waiting for this lease to lapse. */
	if (e->st->retire(e->store) != SAGA_OK)
		log_at(e, SAGA_LOG_ERROR, "close.failed",
		       "close: cannot hand the instances back: %s", e->st->errmsg(e->store));
	drop_cmds(e);
	drop_events(e);
	saga_free(&e->alloc, e->events);
	saga_free(&e->alloc, e->mx);
	for (size_t i = 0; i < e->ndefs; i++) {
		saga_definition_free(e->defs[i]->def);
		saga_free(&e->alloc, e->defs[i]->names);
		mx_def_free(e, e->defs[i]);
		saga_free(&e->alloc, e->defs[i]);
	}
	saga_free(&e->alloc, e->defs);
	while (e->breakers) {
		breaker_entry *b = e->breakers;
		e->breakers = b->next;
		saga_breaker_free(b->b);
		saga_free(&e->alloc, b);
	}
	listeners_free(e);
	e->st->close(e->store);
	fd_close(e);
	saga_free(&e->alloc, e->ready);
	saga_free(&e->alloc, e->quarantine);
	saga_free(&e->alloc, e->loaded);
	saga_free(&e->alloc, e->threads);
	sync_destroy(e);
	saga_alloc a = e->alloc;
	saga_free(&a, e);
}
