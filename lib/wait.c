/* Waiting for one instance to end (saga_wait). With workers the caller
 * sleeps on wait_cv, which a commit that changes a state broadcasts (txn.c).
 * Without workers the caller drives: it runs rounds (saga_run_due) while
 * work is due and sleeps on wait_cv between them, which work arriving from
 * another thread (wake.c) and any caller's commit broadcast.
 * SPDX-License-Identifier: MIT */
#include "engine_int.h"

/* The longest sleep of a caller-driven wait without news: an injected clock
 * does not wake a condition variable, so timers are looked at this often. */
#define WAIT_NAP_MS 50

static bool final_or_stuck(int state)
{
	return state == SAGA_COMPLETED || state == SAGA_COMPENSATED || state == SAGA_STUCK;
}

/* Reads instance id as committed into *out; *done says whether the wait is
 * over. Called with the mutex. */
static int look(saga_engine *e, saga_instance_info *out, int64_t id, bool *done)
{
	saga_row r;
	int rc = store_load(e->store, &r, id, NULL);
	if (rc == SAGA_ENOTFOUND)
		return set_err(e, rc, "wait: no instance %lld", (long long)id);
	if (rc)
		return store_err(e, rc);
	row_to_info(out, &r);
	*done = final_or_stuck(r.state);
	return SAGA_OK;
}

/* How long a caller-driven wait may sleep before the next timer falls due
 * (at most `ms`). Called with the mutex. */
static uint64_t until_timer(saga_engine *e, uint64_t ms)
{
	if (ms > WAIT_NAP_MS)
		ms = WAIT_NAP_MS;
	uint64_t now = now_wall(e);
	if (e->next_timer != UINT64_MAX && e->next_timer > now && e->next_timer - now < ms)
		ms = e->next_timer - now;
	return ms;
}

int saga_wait(saga_engine *e, saga_instance_info *out, int64_t id, uint64_t timeout_ms)
{
	if (!e || !out)
		return bad_args(e, "wait: out is needed");
	uint64_t start = saga_sys_mono_ms(NULL);
	pthread_mutex_lock(&e->mu);
	int rc = SAGA_OK;
	if (!e->started)
		rc = set_err(e, SAGA_ESTATE, "wait: the engine is not started (saga_engine_start)");
	else if (e->driver_running && pthread_equal(pthread_self(), e->driver_tid))
		rc = set_err(e, SAGA_ESTATE, "wait: not from a listener on the driver thread");
	bool done = false, ran_last = true;
	while (rc == SAGA_OK && (rc = look(e, out, id, &done)) == SAGA_OK && !done) {
		uint64_t spent = saga_sys_mono_ms(NULL) - start;
		if (spent >= timeout_ms) {
			rc = set_err(e, SAGA_EBUSY, "wait: instance %lld is still %s after %llu ms",
			             (long long)id, saga_state_name(out->state),
			             (unsigned long long)timeout_ms);
			break;
		}
		uint64_t nap = timeout_ms - spent;
		if (!e->nworkers) {
			/* A round that ran nothing while work is loaded means another
			 * thread's round is invoking it: sleep until its commit. */
			if (ran_last && !nothing_due(e)) {
				unsigned int ran = 0;
				pthread_mutex_unlock(&e->mu);
				rc = saga_run_due(e, &ran);
				pthread_mutex_lock(&e->mu);
				ran_last = ran > 0;
				continue;
			}
			ran_last = true;
			nap = until_timer(e, nap);
		}
		struct timespec ts = deadline_after_ms(nap);
		pthread_cond_timedwait(&e->wait_cv, &e->mu, &ts);
	}
	pthread_mutex_unlock(&e->mu);
	return rc;
}
