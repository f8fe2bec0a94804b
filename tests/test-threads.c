/* The threaded engine under load from many threads at once: starting,
 * completing asynchronously, cancelling, querying, and reopening. Run under
 * ThreadSanitizer in CI (suite "threads"). SPDX-License-Identifier: MIT */
#include "test-common.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STARTERS    4
#define PER_STARTER 60
#define TOTAL       (STARTERS * PER_STARTER)

/* Keys of pending steps, handed from the step callback to the completers. */
typedef struct keyq {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	char keys[TOTAL * 2][128];
	int head, tail;
	bool done;
} keyq;

typedef struct world {
	saga_engine *e;
	keyq q;
	pthread_mutex_t mu;
	int actions[3]; /* successful actions per step */
	int compensations[3];
	int64_t ids[TOTAL];
	int nids;
	int cancelled_ok;
	long events;
	pthread_rwlock_t swap; /* completers read-lock; close/reopen write-locks */
} world;

static world W;

static saga_step_result act(saga_step_ctx *ctx, void *user)
{
	int step = (int)(intptr_t)user;
	pthread_mutex_lock(&W.mu);
	W.actions[step]++;
	pthread_mutex_unlock(&W.mu);
	if (step == 1) {
		/* Asynchronous: the completer threads answer later by key. */
		pthread_mutex_lock(&W.q.mu);
		snprintf(W.q.keys[W.q.tail++ % (TOTAL * 2)], 128, "%s", saga_step_key(ctx));
		pthread_cond_signal(&W.q.cv);
		pthread_mutex_unlock(&W.q.mu);
		return SAGA_STEP_PENDING;
	}
	return SAGA_STEP_OK;
}

static saga_step_result undo(saga_step_ctx *ctx, void *user)
{
	(void)ctx;
	int step = (int)(intptr_t)user;
	pthread_mutex_lock(&W.mu);
	W.compensations[step]++;
	pthread_mutex_unlock(&W.mu);
	return SAGA_STEP_OK;
}

static void on_event(const saga_event *ev, void *user)
{
	(void)ev;
	(void)user;
	pthread_mutex_lock(&W.mu);
	W.events++;
	pthread_mutex_unlock(&W.mu);
}

static void *starter(void *arg)
{
	int base = (int)(intptr_t)arg;
	for (int i = 0; i < PER_STARTER; i++) {
		char bkey[32];
		snprintf(bkey, sizeof(bkey), "order-%d", base * PER_STARTER + i);
		int64_t id;
		ck_assert_int_eq(saga_start(W.e, &id, NULL, "t", bkey, NULL), SAGA_OK);
		/* The same business key from another thread: same instance. */
		int64_t again;
		int created = 1;
		ck_assert_int_eq(saga_start(W.e, &again, &created, "t", bkey, NULL), SAGA_OK);
		ck_assert_int_eq(again, id);
		ck_assert_int_eq(created, 0);
		pthread_mutex_lock(&W.mu);
		W.ids[W.nids++] = id;
		pthread_mutex_unlock(&W.mu);
	}
	return NULL;
}

static void *completer(void *arg)
{
	(void)arg;
	for (;;) {
		char key[128];
		pthread_mutex_lock(&W.q.mu);
		while (W.q.head == W.q.tail && !W.q.done)
			pthread_cond_wait(&W.q.cv, &W.q.mu);
		if (W.q.head == W.q.tail) {
			pthread_mutex_unlock(&W.q.mu);
			return NULL;
		}
		snprintf(key, sizeof(key), "%s", W.q.keys[W.q.head++ % (TOTAL * 2)]);
		pthread_mutex_unlock(&W.q.mu);
		pthread_rwlock_rdlock(&W.swap);
		int rc = saga_complete(W.e, key, SAGA_STEP_OK, NULL);
		/* Cancelled first: the pending step was abandoned and compensated,
		 * and the answer is ignored. */
		ck_assert_msg(rc == SAGA_OK || rc == SAGA_EDUPLICATE, "complete: %d", rc);
		/* A second completion is always ignored. */
		ck_assert_int_eq(saga_complete(W.e, key, SAGA_STEP_OK, NULL), SAGA_EDUPLICATE);
		pthread_rwlock_unlock(&W.swap);
	}
}

static void *canceller(void *arg)
{
	(void)arg;
	for (int i = 0; i < TOTAL; i += 3) {
		int64_t id = 0;
		pthread_mutex_lock(&W.mu);
		if (i < W.nids)
			id = W.ids[i];
		pthread_mutex_unlock(&W.mu);
		if (!id)
			continue;
		int rc = saga_cancel(W.e, id);
		ck_assert_msg(rc == SAGA_OK || rc == SAGA_ESTATE, "cancel: %d", rc);
		if (rc == SAGA_OK) {
			pthread_mutex_lock(&W.mu);
			W.cancelled_ok++;
			pthread_mutex_unlock(&W.mu);
		}
		int64_t counts[SAGA_STATE_COUNT];
		ck_assert_int_eq(saga_counts(W.e, counts), SAGA_OK);
	}
	return NULL;
}

static int count_ok(const saga_event *ev, void *user)
{
	int *ok = user;
	if (ev->type == SAGA_EVENT_ATTEMPT_END && ev->outcome == SAGA_OUTCOME_OK &&
	    ev->phase == SAGA_PHASE_ACTION)
		ok[ev->step]++;
	return 0;
}

static saga_engine *open_engine(const char *path)
{
	saga_options o = SAGA_OPTIONS_INIT;
	o.path = path;
	o.durability = SAGA_DURABILITY_NORMAL;
	o.workers = 3;
	o.max_in_flight = 16;
	saga_engine *e;
	char err[256];
	ck_assert_msg(saga_engine_open(&e, &o, err, sizeof(err)) == SAGA_OK, "%s", err);
	saga_definition *d;
	ck_assert_int_eq(saga_definition_new(&d, "t", 1), SAGA_OK);
	const char *names[] = { "reserve", "charge", "ship" };
	for (int i = 0; i < 3; i++) {
		saga_step_spec s = { names[i], i < 2 ? SAGA_STEP_COMPENSATABLE : SAGA_STEP_PIVOT,
			             act, i < 2 ? undo : NULL, (void *)(intptr_t)i };
		ck_assert_int_eq(saga_definition_add_step(d, &s), SAGA_OK);
	}
	ck_assert_int_eq(saga_engine_register(e, d), SAGA_OK);
	saga_definition_free(d);
	ck_assert_int_eq(saga_engine_add_listener(e, on_event, NULL), SAGA_OK);
	return e;
}

START_TEST(many_threads)
{
	char dir[256], path[300];
	tmpdir_make(dir, sizeof(dir));
	test_store_name(path, sizeof(path), dir, "t.db");
	memset(&W, 0, sizeof(W));
	pthread_mutex_init(&W.mu, NULL);
	pthread_mutex_init(&W.q.mu, NULL);
	pthread_cond_init(&W.q.cv, NULL);
	pthread_rwlock_init(&W.swap, NULL);
	W.e = open_engine(path);
	pthread_t st[STARTERS], co[2], ca;
	for (int i = 0; i < STARTERS; i++)
		pthread_create(&st[i], NULL, starter, (void *)(intptr_t)i);
	for (int i = 0; i < 2; i++)
		pthread_create(&co[i], NULL, completer, NULL);
	pthread_create(&ca, NULL, canceller, NULL);
	for (int i = 0; i < STARTERS; i++)
		pthread_join(st[i], NULL);
	pthread_join(ca, NULL);
	/* Close and reopen while some instances still wait for completions:
	 * they stay durable and are completed through the new engine. */
	ck_assert_int_eq(saga_wait_idle(W.e, 60000), SAGA_OK);
	pthread_rwlock_wrlock(&W.swap);
	saga_engine_close(W.e);
	W.e = open_engine(path);
	pthread_rwlock_unlock(&W.swap);
	pthread_mutex_lock(&W.q.mu);
	W.q.done = true;
	pthread_cond_broadcast(&W.q.cv);
	pthread_mutex_unlock(&W.q.mu);
	for (int i = 0; i < 2; i++)
		pthread_join(co[i], NULL);
	ck_assert_int_eq(saga_wait_idle(W.e, 60000), SAGA_OK);
	int64_t counts[SAGA_STATE_COUNT];
	ck_assert_int_eq(saga_counts(W.e, counts), SAGA_OK);
	ck_assert_int_eq(counts[SAGA_COMPLETED] + counts[SAGA_COMPENSATED], TOTAL);
	ck_assert_int_eq(counts[SAGA_COMPENSATED], W.cancelled_ok);
	/* Every completed instance ran each step once; every compensated one
	 * undid both started steps (the pending one is uncertain). */
	ck_assert_int_eq(W.actions[2], counts[SAGA_COMPLETED]);
	ck_assert_int_le(W.compensations[0], counts[SAGA_COMPENSATED]);
	ck_assert_int_le(W.compensations[1], counts[SAGA_COMPENSATED]);
	/* An instance cancelled before its first step ran nothing. */
	ck_assert_int_ge(W.actions[0], counts[SAGA_COMPLETED]);
	ck_assert_int_le(W.actions[0], TOTAL);
	for (int i = 0; i < TOTAL; i++) {
		int ok[3] = { 0, 0, 0 };
		ck_assert_int_eq(saga_history(W.e, W.ids[i], count_ok, ok), SAGA_OK);
		saga_instance_info info;
		ck_assert_int_eq(saga_get(W.e, &info, W.ids[i]), SAGA_OK);
		for (int k = 0; k < 3; k++)
			ck_assert_int_le(ok[k], 1); /* exactly-once outcomes */
		if (info.state == SAGA_COMPLETED)
			ck_assert(ok[0] == 1 && ok[1] == 1 && ok[2] == 1);
	}
	saga_engine_close(W.e);
	test_store_drop(path);
	tmpdir_remove(dir);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("threads");
	TCase *tc = tcase_create("threads");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, many_threads);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
