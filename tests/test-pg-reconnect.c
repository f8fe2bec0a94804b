/* The PostgreSQL store losing its connections mid-run, against a real
 * server (tests/pg-run.sh): a second connection terminates the engine's
 * backends (pg_terminate_backend, its round's and its listening one) again
 * and again while the engine runs sagas, from another thread, so that the
 * cut lands before, inside and during the commit of rounds. The engine's
 * rounds fail and roll back, the store reconnects, and at the end every
 * instance has completed with one successful attempt-end per step: nothing
 * lost, nothing doubled (an attempt may be invoked again, always with its
 * own key). A run whose cuts hit no round proves nothing, so the test also
 * asserts that rounds failed. SPDX-License-Identifier: MIT */
#include "test-common.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define INSTANCES 300
#define CUT_EVERY 20 /* invocations */
#define CUTS      40 /* then the run finishes undisturbed */
#define STEPS     3

static char store[512];

/* Invocations by key: how many times each attempt key was called. */
static struct {
	pthread_mutex_t mu;
	char keys[INSTANCES * STEPS * 2][80];
	int calls[INSTANCES * STEPS * 2];
	int n, total, cuts_due;
	pthread_cond_t cut; /* signalled every CUT_EVERY invocations */
} K = { .mu = PTHREAD_MUTEX_INITIALIZER, .cut = PTHREAD_COND_INITIALIZER };

static saga_step_result act(saga_step_ctx *ctx, void *user)
{
	(void)user;
	const char *key = saga_step_key(ctx);
	pthread_mutex_lock(&K.mu);
	int i = 0;
	while (i < K.n && strcmp(K.keys[i], key) != 0)
		i++;
	if (i == K.n && K.n < (int)(sizeof(K.keys) / sizeof(K.keys[0])))
		snprintf(K.keys[K.n++], sizeof(K.keys[0]), "%s", key);
	if (i < K.n)
		K.calls[i]++;
	if (++K.total % CUT_EVERY == 0 && K.total <= CUT_EVERY * CUTS) {
		K.cuts_due++;
		pthread_cond_signal(&K.cut);
	}
	pthread_mutex_unlock(&K.mu);
	return SAGA_STEP_OK;
}

static atomic_bool stop;
static atomic_int cuts, cut_errors;

/* Terminates the engine's backends again and again until stopped. */
static void *cutter(void *arg)
{
	(void)arg;
	PGconn *c = PQconnectdb(getenv("SAGA_TEST_PG"));
	ck_assert_msg(PQstatus(c) == CONNECTION_OK, "admin connection: %s", PQerrorMessage(c));
	char db[128], sql[512];
	pg_dbname(db, sizeof(db), store);
	snprintf(sql, sizeof(sql),
	         "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname ="
	         " '%s' AND application_name LIKE 'libsaga%%'",
	         db);
	unsigned seed = 7;
	while (!atomic_load(&stop)) {
		/* Cut a moment after every CUT_EVERY-th invocation (the callback
		 * runs between rounds; the cut lands in the next ones), CUTS
		 * times: a round that invokes more than CUT_EVERY attempts is cut
		 * every time, so the cuts must end for the run to. */
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += 100 * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_mutex_lock(&K.mu);
		if (!K.cuts_due)
			pthread_cond_timedwait(&K.cut, &K.mu, &until);
		bool due = K.cuts_due > 0;
		K.cuts_due = 0;
		pthread_mutex_unlock(&K.mu);
		if (!due)
			continue;
		struct timespec ts = { 0, (long)(rand_r(&seed) % 3000) * 1000L };
		nanosleep(&ts, NULL);
		/* No assertion in the loop: each one's record would fill Check's
		 * pipe. */
		PGresult *r = PQexec(c, sql);
		if (PQresultStatus(r) == PGRES_TUPLES_OK)
			atomic_fetch_add(&cuts, atoi(PQgetvalue(r, 0, 0)));
		else
			atomic_fetch_add(&cut_errors, 1);
		PQclear(r);
	}
	PQfinish(c);
	return NULL;
}

/* Per instance: successful attempt-ends of each step, and rows read. */
typedef struct ends {
	int ok[STEPS];
	int64_t last_seq;
	bool ordered;
} ends;

static int on_event(const saga_event *ev, void *user)
{
	ends *e = user;
	if (ev->seq <= e->last_seq)
		e->ordered = false;
	e->last_seq = ev->seq;
	if (ev->type == SAGA_EVENT_ATTEMPT_END && ev->outcome == SAGA_OUTCOME_OK &&
	    ev->phase == SAGA_PHASE_ACTION && ev->step >= 0 && ev->step < STEPS)
		e->ok[ev->step]++;
	return 0;
}

START_TEST(terminated_backends_lose_and_double_nothing)
{
	pg_db_fresh(store, sizeof(store));
	saga_options o = SAGA_OPTIONS_INIT;
	o.path = store;
	o.durability = SAGA_DURABILITY_NORMAL;
	char err[512];
	saga_engine *e = NULL;
	ck_assert_msg(saga_engine_open(&e, &o, err, sizeof(err)) == SAGA_OK, "open: %s", err);
	saga_definition *d;
	ck_assert_int_eq(saga_definition_new(&d, "cut", 1), SAGA_OK);
	for (int i = 0; i < STEPS; i++) {
		char name[8];
		snprintf(name, sizeof(name), "s%d", i);
		saga_step_spec sp = { name, SAGA_STEP_RETRIABLE, act, NULL, NULL };
		ck_assert_int_eq(saga_definition_add_step(d, &sp), SAGA_OK);
	}
	ck_assert_int_eq(saga_engine_register(e, d), SAGA_OK);
	saga_definition_free(d);
	int64_t ids[INSTANCES];
	for (int i = 0; i < INSTANCES; i++) {
		char bkey[32];
		snprintf(bkey, sizeof(bkey), "order-%d", i);
		ck_assert_int_eq(saga_start(e, &ids[i], NULL, "cut", bkey, NULL), SAGA_OK);
	}

	pthread_t t;
	atomic_store(&stop, false);
	ck_assert_int_eq(pthread_create(&t, NULL, cutter, NULL), 0);
	int failed_rounds = 0;
	time_t until = time(NULL) + 60;
	for (;;) {
		int rc = saga_run_until_idle(e);
		if (rc != SAGA_OK) {
			failed_rounds++;
			struct timespec ts = { 0, 20 * 1000000L };
			nanosleep(&ts, NULL);
			continue;
		}
		int64_t counts[SAGA_STATE_COUNT];
		if (saga_counts(e, counts) == SAGA_OK && counts[SAGA_COMPLETED] == INSTANCES)
			break;
		if (time(NULL) >= until)
			ck_abort_msg("not all completed in time: %lld completed, %lld running, "
			             "%lld stuck, %d rounds failed (%s)",
			             (long long)counts[SAGA_COMPLETED],
			             (long long)counts[SAGA_RUNNING], (long long)counts[SAGA_STUCK],
			             failed_rounds, saga_engine_errmsg(e));
	}
	atomic_store(&stop, true);
	pthread_join(t, NULL);

	ck_assert_int_eq(atomic_load(&cut_errors), 0);
	ck_assert_msg(atomic_load(&cuts) > 0, "no backend was terminated");
	ck_assert_msg(failed_rounds > 0, "no round failed: the cuts tested nothing");
	for (int i = 0; i < INSTANCES; i++) {
		saga_instance_info info;
		int rc;
		while ((rc = saga_get(e, &info, ids[i])) == SAGA_EIO)
			; /* the last cut may still be reconnecting */
		ck_assert_int_eq(rc, SAGA_OK);
		ck_assert_int_eq(info.state, SAGA_COMPLETED);
		ends en = { { 0 }, 0, true };
		ck_assert_int_eq(saga_history(e, ids[i], on_event, &en), SAGA_OK);
		ck_assert(en.ordered);
		for (int s = 0; s < STEPS; s++)
			ck_assert_msg(en.ok[s] == 1, "instance %lld step %d: %d successful ends",
			              (long long)ids[i], s, en.ok[s]);
	}
	/* Every attempt's key was invoked; one invoked again kept its key. */
	ck_assert_int_eq(K.n, INSTANCES * STEPS);
	int again = 0;
	for (int i = 0; i < K.n; i++)
		again += K.calls[i] - 1;
	fprintf(stderr,
	        "%d backends terminated, %d rounds failed, %d of %d attempts invoked again\n",
	        atomic_load(&cuts), failed_rounds, again, K.n);
	saga_engine_close(e);
	pg_db_drop(store);
}
END_TEST

int main(void)
{
	if (!getenv("SAGA_TEST_PG")) {
		fprintf(stderr, "no server (run through tests/pg-run.sh)\n");
		return 77;
	}
	Suite *s = suite_create("pg-reconnect");
	TCase *tc = tcase_create("terminate");
	tcase_set_timeout(tc, 240);
	tcase_add_test(tc, terminated_backends_lose_and_double_nothing);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
