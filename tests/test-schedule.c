/* Scheduled starts (saga_start_at) and the pending async steps a program
 * re-sends after a restart (saga_list_pending, saga_step_business_key), with
 * the fake clock, across close/reopen and a real SIGKILL.
 * SPDX-License-Identifier: MIT */
#include "test-common.h"

#include <cjson/cJSON.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define T0 1700000000000ull

typedef struct fixture {
	char dir[256];
	char path[300];
	fake_clock clock;
	saga_engine *e;
	int actions, comps;
	bool pending; /* the first step answers PENDING */
	int bkey_mismatch;
} fixture;

static fixture F;

/* Checks saga_step_business_key against the input's "bk" (absent: NULL). */
static void check_bkey(saga_step_ctx *ctx)
{
	const cJSON *bk = cJSON_GetObjectItemCaseSensitive(saga_step_context(ctx), "bk");
	const char *got = saga_step_business_key(ctx);
	if (cJSON_IsString(bk) ? !got || strcmp(got, bk->valuestring) != 0 : got != NULL)
		F.bkey_mismatch++;
}

static saga_step_result first(saga_step_ctx *ctx, void *user)
{
	(void)user;
	check_bkey(ctx);
	F.actions++;
	return F.pending ? SAGA_STEP_PENDING : SAGA_STEP_OK;
}

static saga_step_result second(saga_step_ctx *ctx, void *user)
{
	(void)user;
	check_bkey(ctx);
	F.actions++;
	return SAGA_STEP_OK;
}

static saga_step_result undo(saga_step_ctx *ctx, void *user)
{
	(void)ctx;
	(void)user;
	F.comps++;
	return SAGA_STEP_OK;
}

static void open_engine(void)
{
	saga_options o = SAGA_OPTIONS_INIT;
	o.path = F.path;
	o.durability = SAGA_DURABILITY_NORMAL;
	o.clock = fake_clock_make(&F.clock);
	char err[256];
	ck_assert_msg(saga_engine_open(&F.e, &o, err, sizeof(err)) == SAGA_OK, "open: %s", err);
	saga_definition *d;
	ck_assert_int_eq(saga_definition_new(&d, "trip", 1), SAGA_OK);
	saga_step_spec a = { "reserve", SAGA_STEP_COMPENSATABLE, first, undo, NULL };
	saga_step_spec b = { "confirm", SAGA_STEP_PIVOT, second, NULL, NULL };
	ck_assert_int_eq(saga_definition_add_step(d, &a), SAGA_OK);
	ck_assert_int_eq(saga_definition_add_step(d, &b), SAGA_OK);
	ck_assert_int_eq(saga_definition_set_timeout(d, "reserve", 3600000, 0), SAGA_OK);
	ck_assert_int_eq(saga_engine_register(F.e, d), SAGA_OK);
	saga_definition_free(d);
}

static void setup(void)
{
	memset(&F, 0, sizeof(F));
	tmpdir_make(F.dir, sizeof(F.dir));
	test_store_name(F.path, sizeof(F.path), F.dir, "saga.db");
	F.clock.wall = T0;
	F.clock.mono = 1000;
	open_engine();
}

static void teardown(void)
{
	saga_engine_close(F.e);
	test_store_drop(F.path);
	tmpdir_remove(F.dir);
}

static void reopen(void)
{
	saga_engine_close(F.e);
	open_engine();
}

static void run(void)
{
	ck_assert_msg(saga_run_until_idle(F.e) == SAGA_OK, "run: %s", saga_engine_errmsg(F.e));
}

static saga_instance_info info_of(int64_t id)
{
	saga_instance_info info;
	ck_assert_int_eq(saga_get(F.e, &info, id), SAGA_OK);
	return info;
}

static int64_t start_at(const char *bkey, uint64_t at, int *created)
{
	int64_t id = 0;
	cJSON *in = cJSON_CreateObject();
	if (bkey)
		cJSON_AddStringToObject(in, "bk", bkey);
	int rc = saga_start_at(F.e, &id, created, "trip", bkey, in, at);
	cJSON_Delete(in);
	ck_assert_msg(rc == SAGA_OK, "start_at: %s", saga_engine_errmsg(F.e));
	return id;
}

/* The scheduled instance id waits `left` ms more: it does not run before,
 * and runs to its end once the clock gets there. */
static void runs_in(int64_t id, uint64_t left)
{
	run();
	ck_assert_int_eq(F.actions, 0);
	ck_assert_int_eq(info_of(id).state, SAGA_WAITING);
	fake_clock_advance(&F.clock, left);
	run();
	ck_assert_int_eq(info_of(id).state, SAGA_COMPLETED);
	ck_assert_int_eq(F.actions, 2);
	ck_assert_int_eq(F.bkey_mismatch, 0);
}

/* ---- scheduled starts ---- */

START_TEST(nothing_runs_before_its_time)
{
	int created = 0;
	int64_t id = start_at("later", T0 + 10000, &created);
	ck_assert_int_eq(created, 1);
	saga_instance_info i = info_of(id);
	ck_assert_int_eq(i.state, SAGA_WAITING);
	ck_assert_uint_eq(i.due_ms, T0 + 10000);
	run();
	uint64_t due = 0;
	ck_assert_int_eq(saga_next_due(F.e, &due), SAGA_OK);
	ck_assert_uint_eq(due, T0 + 10000);
	fake_clock_advance(&F.clock, 9999);
	runs_in(id, 1);
}
END_TEST

START_TEST(survives_reopen)
{
	int64_t id = start_at(NULL, T0 + 60000, NULL);
	reopen();
	run();
	ck_assert_int_eq(F.actions, 0);
	fake_clock_advance(&F.clock, 59999);
	reopen();
	runs_in(id, 1);
}
END_TEST

/* Runs `child` in a child process on the store (engine open, definition
 * registered); it fills `size` bytes of `answer`, which go to the parent
 * through a pipe once it is done, and waits. The parent reads the answer,
 * kills the child with SIGKILL, and reopens the store. */
static void kill_when_done(void (*child)(void *answer), void *answer, size_t size)
{
	saga_engine_close(F.e);
	F.e = NULL;
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	fflush(stdout);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		open_engine();
		child(answer);
		if (write(p[1], answer, size) != (ssize_t)size)
			_exit(3);
		for (;;)
			pause();
	}
	ck_assert_int_eq(read(p[0], answer, size), (ssize_t)size);
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	close(p[0]);
	close(p[1]);
	test_store_owners_dead(F.path);
	open_engine();
}

/* The child schedules an instance and is killed: the start must be durable
 * when saga_start_at returns. */
static void schedule_one(void *answer)
{
	*(int64_t *)answer = start_at("killed", T0 + 5000, NULL);
}

START_TEST(survives_sigkill)
{
	int64_t id = 0;
	kill_when_done(schedule_one, &id, sizeof(id));
	runs_in(id, 5000);
}
END_TEST

START_TEST(a_past_time_starts_at_once)
{
	int64_t id = start_at(NULL, T0 - 5000, NULL);
	ck_assert_int_eq(info_of(id).state, SAGA_RUNNING);
	int64_t now_id = start_at(NULL, T0, NULL);
	run();
	ck_assert_int_eq(info_of(id).state, SAGA_COMPLETED);
	ck_assert_int_eq(info_of(now_id).state, SAGA_COMPLETED);
	ck_assert_int_eq(F.actions, 4);
}
END_TEST

static int count_type(const saga_event *ev, void *user)
{
	if (ev->type == SAGA_EVENT_ATTEMPT_START)
		++*(int *)user;
	return 0;
}

START_TEST(cancel_before_the_start_compensates_nothing)
{
	int64_t id = start_at("cancelled", T0 + 10000, NULL);
	ck_assert_int_eq(saga_cancel(F.e, id), SAGA_OK);
	run();
	saga_instance_info i = info_of(id);
	ck_assert_int_eq(i.state, SAGA_COMPENSATED);
	ck_assert_int_eq(i.reason, SAGA_REASON_CANCEL);
	fake_clock_advance(&F.clock, 20000);
	run();
	ck_assert_int_eq(F.actions, 0);
	ck_assert_int_eq(F.comps, 0);
	int attempts = 0;
	ck_assert_int_eq(saga_history(F.e, id, count_type, &attempts), SAGA_OK);
	ck_assert_int_eq(attempts, 0);
	ck_assert_int_eq(saga_cancel(F.e, id), SAGA_ESTATE);
}
END_TEST

START_TEST(business_keys_and_batches)
{
	int created = 0;
	int64_t id = start_at("once", T0 + 1000, &created);
	ck_assert_int_eq(created, 1);
	/* The key is taken: the same instance, whatever the time asked. */
	ck_assert_int_eq(start_at("once", T0 + 99000, &created), id);
	ck_assert_int_eq(created, 0);
	ck_assert_int_eq(start_at("once", T0 - 1, &created), id);
	ck_assert_int_eq(created, 0);
	ck_assert_uint_eq(info_of(id).due_ms, T0 + 1000);

	saga_start_request reqs[3] = { { "trip", NULL, NULL },
		                       { "trip", "once", NULL },
		                       { "trip", "twice", NULL } };
	int64_t ids[3];
	int made[3];
	ck_assert_int_eq(saga_start_batch_at(F.e, ids, made, reqs, 3, T0 + 2000), SAGA_OK);
	ck_assert_int_eq(made[0], 1);
	ck_assert_int_eq(made[1], 0);
	ck_assert_int_eq(ids[1], id);
	ck_assert_int_eq(made[2], 1);
	ck_assert_int_eq(info_of(ids[0]).state, SAGA_WAITING);
	ck_assert_uint_eq(info_of(ids[2]).due_ms, T0 + 2000);
	fake_clock_advance(&F.clock, 1000);
	run();
	ck_assert_int_eq(info_of(id).state, SAGA_COMPLETED);
	ck_assert_int_eq(info_of(ids[0]).state, SAGA_WAITING);
	fake_clock_advance(&F.clock, 1000);
	run();
	ck_assert_int_eq(info_of(ids[0]).state, SAGA_COMPLETED);
	ck_assert_int_eq(info_of(ids[2]).state, SAGA_COMPLETED);

	/* Bad arguments: all or none, with a message. */
	saga_start_request bad[2] = { { "trip", NULL, NULL }, { "nope", NULL, NULL } };
	ck_assert_int_eq(saga_start_batch_at(F.e, ids, made, bad, 2, T0 + 9000), SAGA_ENOTFOUND);
	ck_assert_int_eq(ids[0], 0);
	ck_assert_int_eq(saga_start_at(F.e, NULL, NULL, "trip", NULL, NULL, T0 + 9000),
	                 SAGA_EINVAL);
	ck_assert_int_eq(saga_start_at(F.e, ids, NULL, NULL, NULL, NULL, T0 + 9000), SAGA_EINVAL);
	ck_assert_int_eq(saga_start_at(NULL, ids, NULL, "trip", NULL, NULL, T0 + 9000),
	                 SAGA_EINVAL);
	ck_assert_int_eq(saga_start_batch_at(F.e, NULL, NULL, reqs, 1, T0 + 9000), SAGA_EINVAL);
	ck_assert_int_eq(saga_start_at(F.e, ids, NULL, "trip", "", NULL, T0 + 9000), SAGA_EINVAL);
	ck_assert_ptr_nonnull(strstr(saga_engine_errmsg(F.e), "business key"));
	int64_t counts[SAGA_STATE_COUNT];
	ck_assert_int_eq(saga_counts(F.e, counts), SAGA_OK);
	ck_assert_int_eq(counts[SAGA_WAITING], 0);
}
END_TEST

/* ---- pending async steps ---- */

#define NPENDING 7

/* The child starts sagas whose first step answers PENDING, runs them until
 * they wait, says so, and is killed. The parent reopens, lists the pending
 * steps page by page, and completes each by its key. */
static void park_pending(void *answer)
{
	F.pending = true;
	for (int i = 0; i < NPENDING; i++) {
		char bk[32];
		snprintf(bk, sizeof(bk), "order-%d", i);
		start_at(i == 3 ? NULL : bk, 0, NULL);
	}
	int rc = saga_run_until_idle(F.e);
	*(char *)answer = rc == SAGA_OK && F.actions == NPENDING && F.bkey_mismatch == 0;
}

START_TEST(pending_keys_survive_sigkill)
{
	char ok = 0;
	kill_when_done(park_pending, &ok, 1);
	ck_assert_msg(ok, "the child did not park its instances as expected");
	/* A scheduled instance waits too, but on no step: not listed. */
	start_at("scheduled", T0 + 100000, NULL);
	saga_pending_step got[NPENDING + 1];
	size_t total = 0, n = 0;
	int64_t after = 0;
	do {
		ck_assert_int_eq(saga_list_pending(F.e, got + total, &n, 3, after), SAGA_OK);
		if (n)
			after = got[total + n - 1].instance;
		total += n;
	} while (n == 3);
	ck_assert_uint_eq(total, NPENDING);
	for (size_t i = 0; i < total; i++) {
		saga_pending_step *s = &got[i];
		saga_instance_info info = info_of(s->instance);
		ck_assert_int_eq(info.state, SAGA_WAITING);
		if (i > 0)
			ck_assert_int_gt(s->instance, got[i - 1].instance);
		char want[SAGA_STEP_KEY_MAX + 1];
		snprintf(want, sizeof(want), "%s/reserve/action", info.uid);
		ck_assert_str_eq(s->key, want);
		ck_assert_str_eq(s->step_name, "reserve");
		ck_assert_str_eq(s->definition, "trip");
		ck_assert_int_eq(s->version, 1);
		ck_assert_int_eq(s->step, 0);
		ck_assert_int_eq(s->phase, SAGA_PHASE_ACTION);
		ck_assert_uint_eq(s->attempt, 1);
		ck_assert_uint_eq(s->deadline_ms, T0 + 3600000);
		char bk[32];
		snprintf(bk, sizeof(bk), "order-%d", (int)i);
		ck_assert_str_eq(s->business_key, i == 3 ? "" : bk);
	}
	for (size_t i = 0; i < total; i++)
		ck_assert_msg(saga_complete(F.e, got[i].key, SAGA_STEP_OK, NULL) == SAGA_OK,
		              "complete %s: %s", got[i].key, saga_engine_errmsg(F.e));
	run();
	for (size_t i = 0; i < total; i++)
		ck_assert_int_eq(info_of(got[i].instance).state, SAGA_COMPLETED);
	ck_assert_int_eq(F.actions, NPENDING); /* the second steps, in this process */
	ck_assert_int_eq(F.bkey_mismatch, 0);
	ck_assert_int_eq(saga_list_pending(F.e, got, &n, 3, 0), SAGA_OK);
	ck_assert_uint_eq(n, 0);

	ck_assert_int_eq(saga_list_pending(F.e, got, &n, 0, 0), SAGA_EINVAL);
	ck_assert_int_eq(saga_list_pending(F.e, NULL, &n, 3, 0), SAGA_EINVAL);
	ck_assert_int_eq(saga_list_pending(F.e, got, NULL, 3, 0), SAGA_EINVAL);
	ck_assert_int_eq(saga_list_pending(F.e, got, &n, 3, -5), SAGA_EINVAL);
	ck_assert_int_eq(saga_list_pending(NULL, got, &n, 3, 0), SAGA_EINVAL);
	ck_assert_ptr_null(saga_step_business_key(NULL));
}
END_TEST

/* A definition no longer registered: its step names come from the stored
 * snapshot, so the keys still complete the steps. */
START_TEST(pending_keys_of_an_unregistered_definition)
{
	F.pending = true;
	int64_t id = start_at("solo", 0, NULL);
	run();
	saga_engine_close(F.e);
	saga_options o = SAGA_OPTIONS_INIT;
	o.path = F.path;
	o.clock = fake_clock_make(&F.clock);
	ck_assert_int_eq(saga_engine_open(&F.e, &o, NULL, 0), SAGA_OK);
	saga_pending_step s;
	size_t n = 0;
	ck_assert_int_eq(saga_list_pending(F.e, &s, &n, 1, 0), SAGA_OK);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(s.instance, id);
	ck_assert_str_eq(s.step_name, "reserve");
	ck_assert_str_eq(s.business_key, "solo");
	ck_assert_ptr_nonnull(strstr(s.key, "/reserve/action"));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("schedule");
	TCase *tc = tcase_create("scheduled");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, nothing_runs_before_its_time);
	tcase_add_test(tc, survives_reopen);
	tcase_add_test(tc, survives_sigkill);
	tcase_add_test(tc, a_past_time_starts_at_once);
	tcase_add_test(tc, cancel_before_the_start_compensates_nothing);
	tcase_add_test(tc, business_keys_and_batches);
	suite_add_tcase(s, tc);
	tc = tcase_create("pending");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, pending_keys_survive_sigkill);
	tcase_add_test(tc, pending_keys_of_an_unregistered_definition);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
