/* Waiting for one instance to end (saga_wait). With workers the caller
 * sleeps on wait_cv, which a commit that changes a state broadcasts (txn.c).
 * Without workers the caller drives: it runs rounds (saga_run_due) while
 * work is due and sleeps on wait_cv between them, which work arriving from
 * another thread (wake.c) and any caller's commit broadcast.
 * SPDX-License-Identifier: MIT */
#include "engine_int.h"

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
	bool ran_last = true;
	while (rc == SAGA_OK && (rc = get_info(e, out, id)) == SAGA_OK && !ended((int)out->state)) {
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
			nap = nap_until_timer(e, nap);
		}
		/* Another process may be the one that ends it: its commits wake
		 * nobody here, so the store is read again this often. */
		if (nap > SAGA_POLL_MS)
			nap = SAGA_POLL_MS;
		struct timespec ts = deadline_after_ms(nap);
		pthread_cond_timedwait(&e->wait_cv, &e->mu, &ts);
	}
	pthread_mutex_unlock(&e->mu);
	return rc;
}
