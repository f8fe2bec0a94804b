/* The engine end to end on a real SQLite file (or, with
 * SAGA_TEST_STORE=postgresql, a PostgreSQL database: test_store_name),
 * driven by the caller, with an injected clock. SPDX-License-Identifier: MIT */
#include "test-common.h"

#include <cjson/cJSON.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>
#include <pthread.h>

#define NSTEPS  5
#define PIVOT   3
#define LOG_MAX 256

/* What each step answers, attempt by attempt (the last entry repeats). */
typedef struct script {
	saga_step_result action[8];
	int naction;
	saga_step_result comp[8];
	int ncomp;
	uint64_t action_sleep_ms; /* moves the fake clock during the call */
} script;

typedef struct fixture {
	char dir[256];
	char path[300];
	fake_clock clock;
	saga_engine *e;
	script scripts[NSTEPS];
	char log[LOG_MAX][160];
	char keys[LOG_MAX][128];
	int nlog;
	int events[16];
	int nevents;
} fixture;

static fixture F;

static const char *const step_names[NSTEPS] = { "order", "stock", "pay", "ship", "notify" };

static saga_step_result answer(const saga_step_result *seq, int n, uint32_t attempt)
{
	if (n == 0)
		return SAGA_STEP_OK;
	return seq[attempt - 1 < (uint32_t)n ? attempt - 1 : (uint32_t)n - 1];
}

static void note(saga_step_ctx *ctx, const char *what)
{
	ck_assert_int_lt(F.nlog, LOG_MAX);
	snprintf(F.log[F.nlog], sizeof(F.log[0]), "%s:%s", what, saga_step_name(ctx));
	snprintf(F.keys[F.nlog], sizeof(F.keys[0]), "%s", saga_step_key(ctx));
	F.nlog++;
}

static saga_step_result do_action(saga_step_ctx *ctx, void *user)
{
	script *s = user;
	note(ctx, "do");
	if (s->action_sleep_ms)
		fake_clock_advance(&F.clock, s->action_sleep_ms);
	saga_step_result r = answer(s->action, s->naction, saga_step_attempt(ctx));
	if (r == SAGA_STEP_OK) {
		char v[64];
		snprintf(v, sizeof(v), "%s-done", saga_step_name(ctx));
		ck_assert_int_eq(saga_step_put(ctx, saga_step_name(ctx), cJSON_CreateString(v)),
		                 SAGA_OK);
	} else {
		saga_step_set_error(ctx, "scripted failure");
	}
	return r;
}

static saga_step_result do_comp(saga_step_ctx *ctx, void *user)
{
	script *s = user;
	note(ctx, "undo");
	return answer(s->comp, s->ncomp, saga_step_attempt(ctx));
}

static void listener(const saga_event *ev, void *user)
{
	(void)user;
	if ((int)ev->type < 16)
		F.events[ev->type]++;
}

static saga_definition *make_def(int version)
{
	saga_definition *d;
	ck_assert_int_eq(saga_definition_new(&d, "order", version), SAGA_OK);
	for (int i = 0; i < NSTEPS; i++) {
		saga_step_spec s = { step_names[i],
			             i < PIVOT    ? SAGA_STEP_COMPENSATABLE
			             : i == PIVOT ? SAGA_STEP_PIVOT
			                          : SAGA_STEP_RETRIABLE,
			             do_action, i < PIVOT ? do_comp : NULL, &F.scripts[i] };
		ck_assert_int_eq(saga_definition_add_step(d, &s), SAGA_OK);
	}
	/* Retries every 100 ms, no jitter, so tests can move the clock exactly. */
	saga_retry_policy p = { 3, 0, SAGA_BACKOFF_CONSTANT, 100, 0, 2.0, SAGA_JITTER_NONE };
	ck_assert_int_eq(saga_definition_set_retry(d, NULL, &p), SAGA_OK);
	saga_retry_policy cp = { 2, 0, SAGA_BACKOFF_CONSTANT, 100, 0, 2.0, SAGA_JITTER_NONE };
	ck_assert_int_eq(saga_definition_set_compensation_retry(d, NULL, &cp), SAGA_OK);
	return d;
}

/* Reopens the store with the fake clock and no definition, for tests that
 * register a definition with policies of their own (register_def). */
static void reopen_bare(void)
{
	saga_engine_close(F.e);
	saga_options o = SAGA_OPTIONS_INIT;
	o.path = F.path;
	o.clock = fake_clock_make(&F.clock);
	char err[256];
	ck_assert_msg(saga_engine_open(&F.e, &o, err, sizeof(err)) == SAGA_OK, "open: %s", err);
}

static void register_def(saga_definition *d)
{
	ck_assert_msg(saga_engine_register(F.e, d) == SAGA_OK, "register: %s",
	              saga_engine_errmsg(F.e));
	saga_definition_free(d);
}

static void open_engine(void)
{
	saga_options o = SAGA_OPTIONS_INIT;
	o.path = F.path;
	o.durability = SAGA_DURABILITY_NORMAL;
	o.clock = fake_clock_make(&F.clock);
	o.seed = 42;
	char err[256];
	ck_assert_msg(saga_engine_open(&F.e, &o, err, sizeof(err)) == SAGA_OK, "open: %s", err);
	saga_definition *d = make_def(1);
	register_def(d);
	ck_assert_int_eq(saga_engine_add_listener(F.e, listener, NULL), SAGA_OK);
}

static void setup(void)
{
	memset(&F, 0, sizeof(F));
	tmpdir_make(F.dir, sizeof(F.dir));
	test_store_name(F.path, sizeof(F.path), F.dir, "saga.db");
	F.clock.wall = 1700000000000ull;
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

static int64_t start(const char *bkey)
{
	int64_t id = 0;
	cJSON *in = cJSON_CreateObject();
	cJSON_AddNumberToObject(in, "total", 1250);
	/* The stock step writes "stock" again: an existing key is replaced. */
	cJSON_AddStringToObject(in, "stock", "before");
	int rc = saga_start(F.e, &id, NULL, "order", bkey, in);
	cJSON_Delete(in);
	ck_assert_msg(rc == SAGA_OK, "start: %s", saga_engine_errmsg(F.e));
	return id;
}

static saga_instance_info info_of(int64_t id)
{
	saga_instance_info info;
	ck_assert_int_eq(saga_get(F.e, &info, id), SAGA_OK);
	return info;
}

static void run(void)
{
	ck_assert_msg(saga_run_until_idle(F.e) == SAGA_OK, "run: %s", saga_engine_errmsg(F.e));
}

/* The log joined with spaces. */
static const char *joined(void)
{
	static char buf[LOG_MAX * 24];
	buf[0] = '\0';
	for (int i = 0; i < F.nlog; i++) {
		if (i)
			strcat(buf, " ");
		strcat(buf, F.log[i]);
	}
	return buf;
}

typedef struct hist_count {
	int ends_ok[NSTEPS][2];
	int starts[NSTEPS][2];
	int operators;
	int late;
	int duplicate;
	int refused;
	int resumed;
	int op_resumed; /* STATE "resumed by an operator" right after an OPERATOR */
	int prev_type;
	int n;
} hist_count;

static int count_event(const saga_event *ev, void *user)
{
	hist_count *h = user;
	h->n++;
	if (ev->type == SAGA_EVENT_ATTEMPT_END && ev->outcome == SAGA_OUTCOME_OK)
		h->ends_ok[ev->step][ev->phase]++;
	if (ev->type == SAGA_EVENT_ATTEMPT_START) {
		h->starts[ev->step][ev->phase]++;
		ck_assert_str_eq(ev->step_name, step_names[ev->step]);
	}
	h->operators += ev->type == SAGA_EVENT_OPERATOR;
	h->late += ev->type == SAGA_EVENT_LATE;
	h->duplicate += ev->type == SAGA_EVENT_DUPLICATE;
	h->refused += ev->type == SAGA_EVENT_BREAKER_REFUSED;
	h->resumed += ev->type == SAGA_EVENT_STATE && ev->state == SAGA_RUNNING &&
	              strcmp(ev->detail, "resumed") == 0;
	h->op_resumed += ev->type == SAGA_EVENT_STATE && h->n > 1 &&
	                 h->prev_type == SAGA_EVENT_OPERATOR &&
	                 (ev->state == SAGA_RUNNING || ev->state == SAGA_COMPENSATING) &&
	                 strcmp(ev->detail, "resumed by an operator") == 0;
	h->prev_type = ev->type;
	return 0;
}

static hist_count history(int64_t id)
{
	hist_count h;
	memset(&h, 0, sizeof(h));
	ck_assert_int_eq(saga_history(F.e, id, count_event, &h), SAGA_OK);
	return h;
}

START_TEST(happy_path)
{
	int64_t id = start(NULL);
	run();
	saga_instance_info info = info_of(id);
	ck_assert_str_eq(saga_state_name(info.state), "COMPLETED");
	ck_assert_int_eq(info.pivot_done, 1);
	ck_assert_str_eq(joined(), "do:order do:stock do:pay do:ship do:notify");
	/* Keys: <uid>/<step>/action. */
	char want[128];
	snprintf(want, sizeof(want), "%s/pay/action", info.uid);
	ck_assert_str_eq(F.keys[2], want);
	cJSON *ctx = NULL;
	ck_assert_int_eq(saga_get_context(F.e, &ctx, id), SAGA_OK);
	ck_assert_int_eq((int)cJSON_GetObjectItem(ctx, "total")->valuedouble, 1250);
	ck_assert_str_eq(cJSON_GetObjectItem(ctx, "ship")->valuestring, "ship-done");
	ck_assert_str_eq(cJSON_GetObjectItem(ctx, "stock")->valuestring, "stock-done");
	cJSON_Delete(ctx);
	hist_count h = history(id);
	for (int i = 0; i < NSTEPS; i++) {
		ck_assert_int_eq(h.ends_ok[i][0], 1);
		ck_assert_int_eq(h.starts[i][0], 1);
	}
	ck_assert_int_eq(F.events[SAGA_EVENT_ATTEMPT_START], NSTEPS);
	ck_assert_int_eq(F.events[SAGA_EVENT_CREATED], 1);
	int64_t counts[SAGA_STATE_COUNT];
	ck_assert_int_eq(saga_counts(F.e, counts), SAGA_OK);
	ck_assert_int_eq(counts[SAGA_COMPLETED], 1);
	ck_assert_int_eq(counts[SAGA_RUNNING], 0);
}
END_TEST

/* A permanent failure at step _i: the compensations of the steps started
 * before it, newest first; the failed step applied nothing. */
START_TEST(permanent_failure_each_step)
{
	static const char *const want[NSTEPS] = {
		"do:order",
		"do:order do:stock undo:order",
		"do:order do:stock do:pay undo:stock undo:order",
		"do:order do:stock do:pay do:ship undo:pay undo:stock undo:order",
		"do:order do:stock do:pay do:ship do:notify",
	};
	F.scripts[_i].action[0] = SAGA_STEP_FAIL;
	F.scripts[_i].naction = 1;
	int64_t id = start(NULL);
	run();
	saga_instance_info info = info_of(id);
	ck_assert_str_eq(joined(), want[_i]);
	if (_i == NSTEPS - 1) {
		/* Past the pivot a failure cannot roll back: an operator is needed. */
		ck_assert_str_eq(saga_state_name(info.state), "STUCK");
	} else {
		ck_assert_str_eq(saga_state_name(info.state), "COMPENSATED");
		ck_assert_int_eq(info.reason, SAGA_REASON_FAILURE);
		/* Why it rolled back stays visible after the compensations. */
		ck_assert_str_eq(info.error, "scripted failure");
	}
	/* Compensation keys name the compensation phase. */
	for (int k = 0; k < F.nlog; k++)
		if (strncmp(F.log[k], "undo:", 5) == 0)
			ck_assert_ptr_nonnull(strstr(F.keys[k], "/compensation"));
}
END_TEST

START_TEST(transient_then_success)
{
	script *s = &F.scripts[2];
	s->action[0] = SAGA_STEP_RETRY;
	s->action[1] = SAGA_STEP_RETRY;
	s->action[2] = SAGA_STEP_OK;
	s->naction = 3;
	int64_t id = start(NULL);
	run();
	/* The delay is a stored time: the instance waits in the store. */
	saga_instance_info info = info_of(id);
	ck_assert_str_eq(saga_state_name(info.state), "WAITING");
	ck_assert_uint_eq(info.due_ms, F.clock.wall + 100);
	uint64_t due = 0;
	ck_assert_int_eq(saga_next_due(F.e, &due), SAGA_OK);
	ck_assert_uint_eq(due, F.clock.wall + 100);
	fake_clock_advance(&F.clock, 99);
	run();
	ck_assert_int_eq(F.nlog, 3);
	fake_clock_advance(&F.clock, 1);
	run();
	ck_assert_int_eq(F.nlog, 4);
	/* A restart in the middle of the backoff resumes it at the right time. */
	reopen();
	run();
	ck_assert_int_eq(F.nlog, 4);
	fake_clock_advance(&F.clock, 100);
	run();
	info = info_of(id);
	ck_assert_str_eq(saga_state_name(info.state), "COMPLETED");
	ck_assert_str_eq(joined(), "do:order do:stock do:pay do:pay do:pay do:ship do:notify");
	ck_assert_str_eq(F.keys[2], F.keys[3]);
	ck_assert_str_eq(F.keys[2], F.keys[4]);
}
END_TEST

/* Retries exhausted: the outcome is uncertain, so the step is compensated. */
START_TEST(retries_exhausted_compensates_step)
{
	F.scripts[1].action[0] = SAGA_STEP_RETRY;
	F.scripts[1].naction = 1;
	int64_t id = start(NULL);
	for (int i = 0; i < 5; i++) {
		run();
		fake_clock_advance(&F.clock, 100);
	}
	saga_instance_info info = info_of(id);
	ck_assert_str_eq(saga_state_name(info.state), "COMPENSATED");
	ck_assert_str_eq(joined(), "do:order do:stock do:stock do:stock undo:stock undo:order");
}
END_TEST

START_TEST(async_completion)
{
	F.scripts[3].action[0] = SAGA_STEP_PENDING;
	F.scripts[3].naction = 1;
	int64_t id = start(NULL);
	run();
	saga_instance_info info = info_of(id);
	ck_assert_str_eq(saga_state_name(info.state), "WAITING");
	ck_assert_int_eq(F.nlog, 4);
	char key[128];
	snprintf(key, sizeof(key), "%s", F.keys[3]);
	/* Completion survives a restart: the key is all that is needed. */
	F.nlog = 0;
	reopen();
	run();
	ck_assert_int_eq(F.nlog, 0);
	cJSON *out = cJSON_CreateObject();
	cJSON_AddStringToObject(out, "tracking", "T-1");
	ck_assert_int_eq(saga_complete(F.e, key, SAGA_STEP_OK, out), SAGA_OK);
	ck_assert_int_eq(saga_complete(F.e, key, SAGA_STEP_OK, NULL), SAGA_EDUPLICATE);
	run();
	info = info_of(id);
	ck_assert_str_eq(saga_state_name(info.state), "COMPLETED");
	ck_assert_str_eq(joined(), "do:notify");
	cJSON *ctx = NULL;
	ck_assert_int_eq(saga_get_context(F.e, &ctx, id), SAGA_OK);
	ck_assert_str_eq(cJSON_GetObjectItem(ctx, "tracking")->valuestring, "T-1");
	cJSON_Delete(ctx);
	hist_count h = history(id);
	ck_assert_int_eq(h.duplicate, 1);
	ck_assert_int_eq(h.ends_ok[3][0], 1);
	ck_assert_int_eq(h.resumed, 1); /* WAITING -> RUNNING is an event too */
	/* Bad keys are refused. */
	ck_assert_int_eq(saga_complete(F.e, "nonsense", SAGA_STEP_OK, NULL), SAGA_EINVAL);
	ck_assert_int_eq(saga_complete(F.e, "0123456789abcdef0123456789abcdef/ship/action",
	                               SAGA_STEP_OK, NULL),
	                 SAGA_ENOTFOUND);
}
END_TEST

START_TEST(async_late_completion)
{
	reopen_bare();
	saga_definition *d = make_def(1);
	ck_assert_int_eq(saga_definition_set_timeout(d, "stock", 500, 0), SAGA_OK);
	register_def(d);
	F.scripts[1].action[0] = SAGA_STEP_PENDING;
	F.scripts[1].naction = 1;
	int64_t id = start(NULL);
	run();
	char key[128];
	snprintf(key, sizeof(key), "%s", F.keys[1]);
	fake_clock_advance(&F.clock, 500);
	/* The timeout passed before the timer fired: the completion is late. */
	ck_assert_int_eq(saga_complete(F.e, key, SAGA_STEP_OK, NULL), SAGA_ELATE);
	/* Timed out = uncertain: retried with the same key after the delay. */
	fake_clock_advance(&F.clock, 100);
	run();
	ck_assert_str_eq(F.keys[2], key);
	ck_assert_int_eq(saga_complete(F.e, key, SAGA_STEP_OK, NULL), SAGA_OK);
	/* and a second answer to the finished step is late, not a duplicate,
	 * only when the last outcome was a timeout; here it is a duplicate. */
	ck_assert_int_eq(saga_complete(F.e, key, SAGA_STEP_OK, NULL), SAGA_EDUPLICATE);
	run();
	ck_assert_str_eq(saga_state_name(info_of(id).state), "COMPLETED");
	hist_count h = history(id);
	ck_assert_int_eq(h.late, 1);
	ck_assert_int_eq(h.starts[1][0], 2);
}
END_TEST

/* A synchronous step that answers after its timeout: the answer is recorded
 * as late and the attempt counts as TIMEOUT (uncertain). */
START_TEST(sync_timeout_is_late)
{
	reopen_bare();
	saga_definition *d = make_def(1);
	ck_assert_int_eq(saga_definition_set_timeout(d, "pay", 50, 0), SAGA_OK);
	saga_retry_policy once = { 1, 0, SAGA_BACKOFF_CONSTANT, 100, 0, 2.0, SAGA_JITTER_NONE };
	ck_assert_int_eq(saga_definition_set_retry(d, "pay", &once), SAGA_OK);
	register_def(d);
	F.scripts[2].action_sleep_ms = 51;
	int64_t id = start(NULL);
	run();
	saga_instance_info info = info_of(id);
	ck_assert_str_eq(saga_state_name(info.state), "COMPENSATED");
	ck_assert_int_eq(info.reason, SAGA_REASON_TIMEOUT);
	/* The timed-out step is compensated: its outcome is unknown. */
	ck_assert_str_eq(joined(), "do:order do:stock do:pay undo:pay undo:stock undo:order");
	ck_assert_int_eq(history(id).late, 1);
	cJSON *ctx = NULL;
	ck_assert_int_eq(saga_get_context(F.e, &ctx, id), SAGA_OK);
	ck_assert_ptr_null(cJSON_GetObjectItem(ctx, "pay")); /* late output ignored */
	cJSON_Delete(ctx);
}
END_TEST

/* An instance whose pivot ("ship") timed out on both its attempts. */
static int64_t stuck_at_pivot(void)
{
	reopen_bare();
	saga_definition *d = make_def(1);
	ck_assert_int_eq(saga_definition_set_timeout(d, "ship", 50, 0), SAGA_OK);
	saga_retry_policy twice = { 2, 0, SAGA_BACKOFF_CONSTANT, 100, 0, 2.0, SAGA_JITTER_NONE };
	ck_assert_int_eq(saga_definition_set_retry(d, "ship", &twice), SAGA_OK);
	register_def(d);
	F.scripts[3].action_sleep_ms = 51;
	int64_t id = start(NULL);
	run();
	fake_clock_advance(&F.clock, 100);
	run();
	return id;
}

/* A pivot whose attempts all time out may have happened: it cannot be
 * compensated, so an operator must decide. */
START_TEST(pivot_timeout_goes_stuck)
{
	int64_t id = stuck_at_pivot();
	saga_instance_info info = info_of(id);
	ck_assert_str_eq(saga_state_name(info.state), "STUCK");
	ck_assert_str_eq(joined(), "do:order do:stock do:pay do:ship do:ship");
	ck_assert_int_eq(saga_cancel(F.e, id), SAGA_ESTATE);
	/* The operator learns the pivot happened: skip it and go on. */
	F.scripts[3].action_sleep_ms = 0;
	ck_assert_int_eq(saga_operator_skip(F.e, id), SAGA_OK);
	run();
	ck_assert_str_eq(saga_state_name(info_of(id).state), "COMPLETED");
}
END_TEST

/* Past the pivot a step retries until it succeeds: the definition's
 * default of 3 attempts does not apply to it. */
START_TEST(retriable_retries_until_success)
{
	script *s = &F.scripts[4];
	for (int i = 0; i < 6; i++)
		s->action[i] = SAGA_STEP_RETRY;
	s->action[6] = SAGA_STEP_OK;
	s->naction = 7;
	int64_t id = start(NULL);
	for (int i = 0; i < 10; i++) {
		run();
		fake_clock_advance(&F.clock, 60000);
	}
	ck_assert_str_eq(saga_state_name(info_of(id).state), "COMPLETED");
	ck_assert_int_eq(history(id).starts[4][0], 7);
}
END_TEST

START_TEST(instance_deadline)
{
	reopen_bare();
	saga_definition *d = make_def(1);
	ck_assert_int_eq(saga_definition_set_deadline(d, 1000, 200), SAGA_OK);
	register_def(d);
	F.scripts[1].action[0] = SAGA_STEP_RETRY;
	F.scripts[1].naction = 1;
	int64_t id = start(NULL);
	run();
	/* Waiting on a 100 ms retry; the forward deadline is 800 ms. */
	for (int i = 0; i < 2; i++) {
		fake_clock_advance(&F.clock, 100);
		run();
	}
	/* Attempts exhausted before the deadline: compensated for failure.
	 * Now an instance whose stock step stays pending until the deadline. */
	ck_assert_str_eq(saga_state_name(info_of(id).state), "COMPENSATED");
	F.nlog = 0;
	F.scripts[1].action[0] = SAGA_STEP_PENDING;
	int64_t id2 = start(NULL);
	run();
	ck_assert_str_eq(saga_state_name(info_of(id2).state), "WAITING");
	ck_assert_uint_eq(info_of(id2).due_ms, F.clock.wall + 800);
	fake_clock_advance(&F.clock, 799);
	run();
	ck_assert_str_eq(saga_state_name(info_of(id2).state), "WAITING");
	fake_clock_advance(&F.clock, 1);
	run();
	saga_instance_info info = info_of(id2);
	ck_assert_str_eq(saga_state_name(info.state), "COMPENSATED");
	ck_assert_int_eq(info.reason, SAGA_REASON_TIMEOUT);
	ck_assert_str_eq(joined(), "do:order do:stock undo:stock undo:order");
}
END_TEST

START_TEST(cancel_before_and_after_pivot)
{
	F.scripts[2].action[0] = SAGA_STEP_PENDING;
	F.scripts[2].naction = 1;
	int64_t id = start(NULL);
	run();
	ck_assert_int_eq(saga_cancel(F.e, id), SAGA_OK);
	run();
	saga_instance_info info = info_of(id);
	ck_assert_str_eq(saga_state_name(info.state), "COMPENSATED");
	ck_assert_int_eq(info.reason, SAGA_REASON_CANCEL);
	/* The pending step is uncertain: compensated too. */
	ck_assert_str_eq(joined(), "do:order do:stock do:pay undo:pay undo:stock undo:order");
	ck_assert_int_eq(saga_cancel(F.e, id), SAGA_ESTATE);

	F.nlog = 0;
	F.scripts[2].naction = 0;
	F.scripts[4].action[0] = SAGA_STEP_RETRY;
	F.scripts[4].naction = 1;
	int64_t id2 = start(NULL);
	run();
	ck_assert_int_eq(info_of(id2).pivot_done, 1);
	ck_assert_int_eq(saga_cancel(F.e, id2), SAGA_ESTATE);
	ck_assert_ptr_nonnull(strstr(saga_engine_errmsg(F.e), "pivot"));
	ck_assert_int_eq(saga_cancel(F.e, 9999), SAGA_ENOTFOUND);
}
END_TEST

START_TEST(idempotent_start)
{
	int64_t a = start("order-17"), b = 0;
	int created = -1;
	ck_assert_int_eq(saga_start(F.e, &b, &created, "order", "order-17", NULL), SAGA_OK);
	ck_assert_int_eq(a, b);
	ck_assert_int_eq(created, 0);
	run();
	ck_assert_int_eq(saga_start(F.e, &b, &created, "order", "order-17", NULL), SAGA_OK);
	ck_assert_int_eq(a, b);
	int64_t found = 0;
	ck_assert_int_eq(saga_find(F.e, &found, "order-17"), SAGA_OK);
	ck_assert_int_eq(found, a);
	ck_assert_int_eq(saga_find(F.e, &found, "order-18"), SAGA_ENOTFOUND);
	int64_t counts[SAGA_STATE_COUNT];
	ck_assert_int_eq(saga_counts(F.e, counts), SAGA_OK);
	ck_assert_int_eq(counts[SAGA_COMPLETED], 1);
	ck_assert_str_eq(joined(), "do:order do:stock do:pay do:ship do:notify");
	/* Bad input */
	ck_assert_int_eq(saga_start(F.e, &b, NULL, "nope", NULL, NULL), SAGA_ENOTFOUND);
	cJSON *arr = cJSON_CreateArray();
	ck_assert_int_eq(saga_start(F.e, &b, NULL, "order", NULL, arr), SAGA_EINVAL);
	cJSON_Delete(arr);
	ck_assert_int_eq(saga_start(F.e, &b, NULL, "order", "", NULL), SAGA_EINVAL);
}
END_TEST

/* A batch of starts with business keys, in one store call: a key another
 * instance holds, a key twice in the batch, and a start without a key.
 * Each request gets the instance of its key, created only once. */
START_TEST(keyed_batch_start)
{
	int64_t held = start("order-held");
	saga_start_request reqs[5] = { { "order", "order-a", NULL },
		                       { "order", "order-held", NULL },
		                       { "order", "order-a", NULL },
		                       { "order", NULL, NULL },
		                       { "order", "order-b", NULL } };
	int64_t ids[5];
	int made[5];
	ck_assert_msg(saga_start_batch(F.e, ids, made, reqs, 5) == SAGA_OK, "start: %s",
	              saga_engine_errmsg(F.e));
	ck_assert_int_eq(made[0], 1);
	ck_assert_int_eq(made[1], 0);
	ck_assert_int_eq(ids[1], held);
	ck_assert_int_eq(made[2], 0);
	ck_assert_int_eq(ids[2], ids[0]);
	ck_assert_int_eq(made[3], 1);
	ck_assert_int_eq(made[4], 1);
	ck_assert(ids[0] != held && ids[3] != held && ids[4] != held && ids[0] != ids[3] &&
	          ids[0] != ids[4] && ids[3] != ids[4]);
	run();
	int64_t counts[SAGA_STATE_COUNT];
	ck_assert_int_eq(saga_counts(F.e, counts), SAGA_OK);
	ck_assert_int_eq(counts[SAGA_COMPLETED], 4);
	int64_t found = 0;
	ck_assert_int_eq(saga_find(F.e, &found, "order-a"), SAGA_OK);
	ck_assert_int_eq(found, ids[0]);
	ck_assert_int_eq(saga_find(F.e, &found, "order-b"), SAGA_OK);
	ck_assert_int_eq(found, ids[4]);
	/* Again: every key is taken now; the keyless one is new. */
	ck_assert_int_eq(saga_start_batch(F.e, ids, made, reqs, 5), SAGA_OK);
	ck_assert_int_eq(made[0] + made[1] + made[2] + made[4], 0);
	ck_assert_int_eq(made[3], 1);
	ck_assert_int_eq(ids[1], held);
}
END_TEST

/* A compensation that fails goes STUCK; each operator command is recorded. */
START_TEST(stuck_and_operator_retry)
{
	F.scripts[2].action[0] = SAGA_STEP_FAIL;
	F.scripts[2].naction = 1;
	F.scripts[1].comp[0] = SAGA_STEP_FAIL;
	F.scripts[1].comp[1] = SAGA_STEP_OK;
	F.scripts[1].ncomp = 2;
	int64_t id = start(NULL);
	run();
	saga_instance_info info = info_of(id);
	ck_assert_str_eq(saga_state_name(info.state), "STUCK");
	ck_assert_str_eq(info.error, "FAIL");
	ck_assert_int_eq(saga_operator_resume(F.e, id), SAGA_OK);
	/* resume went forward from the failed step: pay fails again. */
	run();
	ck_assert_str_eq(saga_state_name(info_of(id).state), "STUCK");
	F.scripts[1].comp[0] = SAGA_STEP_OK; /* the operator fixed the cause */
	ck_assert_int_eq(saga_operator_retry(F.e, id), SAGA_OK);
	run();
	ck_assert_str_eq(saga_state_name(info_of(id).state), "COMPENSATED");
	ck_assert_str_eq(joined(), "do:order do:stock do:pay undo:stock do:pay undo:stock "
	                           "undo:stock undo:order");
	ck_assert_int_eq(history(id).operators, 2);
	/* Each command leaves STUCK with the OPERATOR event, then a STATE event
	 * (docs/api.md, "Instances, states, events"). */
	ck_assert_int_eq(history(id).op_resumed, 2);
	ck_assert_int_eq(saga_operator_retry(F.e, id), SAGA_ESTATE);
}
END_TEST

START_TEST(stuck_and_operator_skip)
{
	F.scripts[1].action[0] = SAGA_STEP_FAIL;
	F.scripts[1].naction = 1;
	F.scripts[0].comp[0] = SAGA_STEP_RETRY;
	F.scripts[0].ncomp = 1;
	int64_t id = start(NULL);
	run();
	fake_clock_advance(&F.clock, 100);
	run();
	/* Two compensation attempts (the policy), then STUCK. */
	ck_assert_str_eq(saga_state_name(info_of(id).state), "STUCK");
	ck_assert_int_eq(saga_operator_resume(F.e, id), SAGA_OK);
	run();
	fake_clock_advance(&F.clock, 100);
	run();
	ck_assert_str_eq(saga_state_name(info_of(id).state), "STUCK");
	ck_assert_int_eq(saga_operator_skip(F.e, id), SAGA_OK);
	run();
	ck_assert_str_eq(saga_state_name(info_of(id).state), "COMPENSATED");
	ck_assert_str_eq(joined(), "do:order do:stock undo:order undo:order do:stock undo:order "
	                           "undo:order");
	ck_assert_int_eq(history(id).operators, 2);
	ck_assert_int_eq(history(id).op_resumed, 2);
	ck_assert_int_eq(saga_operator_resume(F.e, id), SAGA_ESTATE);
	/* Past the pivot: a retriable step that fails goes STUCK; skip moves on. */
	F.nlog = 0;
	F.scripts[1].naction = 0;
	F.scripts[4].action[0] = SAGA_STEP_FAIL;
	F.scripts[4].naction = 1;
	int64_t id2 = start(NULL);
	run();
	ck_assert_str_eq(saga_state_name(info_of(id2).state), "STUCK");
	ck_assert_int_eq(saga_operator_skip(F.e, id2), SAGA_OK);
	run();
	ck_assert_str_eq(saga_state_name(info_of(id2).state), "COMPLETED");
}
END_TEST

START_TEST(reopen_resumes)
{
	int64_t id = start("k1");
	int64_t id2 = start("k2");
	reopen();
	run();
	ck_assert_str_eq(saga_state_name(info_of(id).state), "COMPLETED");
	ck_assert_str_eq(saga_state_name(info_of(id2).state), "COMPLETED");
	ck_assert_int_eq(F.nlog, 2 * NSTEPS);
	/* A changed definition under the same version is refused. */
	saga_definition *d;
	ck_assert_int_eq(saga_definition_new(&d, "order", 1), SAGA_OK);
	saga_step_spec s = { "other", SAGA_STEP_PIVOT, do_action, NULL, NULL };
	ck_assert_int_eq(saga_definition_add_step(d, &s), SAGA_OK);
	saga_engine_close(F.e);
	saga_options o = SAGA_OPTIONS_INIT;
	o.path = F.path;
	char err[256];
	ck_assert_int_eq(saga_engine_open(&F.e, &o, err, sizeof(err)), SAGA_OK);
	ck_assert_int_eq(saga_engine_register(F.e, d), SAGA_ECONFLICT);
	ck_assert_ptr_nonnull(strstr(saga_engine_errmsg(F.e), "version"));
	saga_definition_free(d);
	d = make_def(1);
	ck_assert_int_eq(saga_engine_register(F.e, d), SAGA_OK);
	ck_assert_int_eq(saga_engine_register(F.e, d), SAGA_EEXISTS);
	saga_definition_free(d);
}
END_TEST

static int count_listed(const saga_instance_info *info, void *user)
{
	(void)info;
	(*(int *)user)++;
	return 0;
}

START_TEST(list_and_counts)
{
	F.scripts[3].action[0] = SAGA_STEP_PENDING;
	F.scripts[3].naction = 1;
	start(NULL);
	start(NULL);
	run();
	int n = 0;
	ck_assert_int_eq(saga_list(F.e, SAGA_WAITING, count_listed, &n), SAGA_OK);
	ck_assert_int_eq(n, 2);
	n = 0;
	ck_assert_int_eq(saga_list(F.e, SAGA_COMPLETED, count_listed, &n), SAGA_OK);
	ck_assert_int_eq(n, 0);
	n = 0;
	ck_assert_int_eq(saga_list(F.e, -1, count_listed, &n), SAGA_OK);
	ck_assert_int_eq(n, 2);
	int64_t counts[SAGA_STATE_COUNT];
	ck_assert_int_eq(saga_counts(F.e, counts), SAGA_OK);
	ck_assert_int_eq(counts[SAGA_WAITING], 2);
}
END_TEST

START_TEST(breaker_parks_instance)
{
	reopen_bare();
	saga_breaker_config bc = SAGA_BREAKER_CONFIG_INIT;
	bc.open_wait_ms = 500; /* how often a forced-open breaker is asked again */
	ck_assert_int_eq(saga_engine_add_breaker(F.e, "payments", &bc), SAGA_OK);
	ck_assert_int_eq(saga_engine_add_breaker(F.e, "payments", &bc), SAGA_EEXISTS);
	saga_definition *d = make_def(1);
	ck_assert_int_eq(saga_definition_set_breaker(d, "pay", "payments"), SAGA_OK);
	register_def(d);
	saga_breaker *b = saga_engine_breaker(F.e, "payments");
	ck_assert_ptr_nonnull(b);
	ck_assert_int_eq(saga_breaker_force(b, SAGA_BREAKER_FORCED_OPEN), SAGA_OK);
	int64_t id = start(NULL);
	for (int i = 0; i < 5; i++) {
		run();
		fake_clock_advance(&F.clock, 1000);
	}
	saga_instance_info info = info_of(id);
	ck_assert_str_eq(saga_state_name(info.state), "WAITING");
	ck_assert_int_eq(info.attempt, 0); /* refusals are not attempts */
	ck_assert_int_ge(history(id).refused, 2);
	ck_assert_str_eq(joined(), "do:order do:stock");
	ck_assert_int_eq(saga_breaker_force(b, SAGA_BREAKER_CLOSED), SAGA_OK);
	fake_clock_advance(&F.clock, 1000);
	run();
	ck_assert_str_eq(saga_state_name(info_of(id).state), "COMPLETED");
}
END_TEST

/* Failures open the breaker mid-run; instances park without using attempts
 * and resume when a probe closes it. */
START_TEST(breaker_opens_mid_run)
{
	reopen_bare();
	saga_breaker_config bc = SAGA_BREAKER_CONFIG_INIT;
	bc.window_size = 4;
	bc.minimum_calls = 2;
	bc.failure_rate_threshold = 50;
	bc.open_wait_ms = 1000;
	bc.half_open_calls = 1;
	ck_assert_int_eq(saga_engine_add_breaker(F.e, "payments", &bc), SAGA_OK);
	saga_definition *d = make_def(1);
	saga_retry_policy p = { 5, 0, SAGA_BACKOFF_CONSTANT, 100, 0, 2.0, SAGA_JITTER_NONE };
	ck_assert_int_eq(saga_definition_set_retry(d, "pay", &p), SAGA_OK);
	ck_assert_int_eq(saga_definition_set_breaker(d, "pay", "payments"), SAGA_OK);
	register_def(d);
	script *s = &F.scripts[2];
	s->action[0] = SAGA_STEP_RETRY;
	s->action[1] = SAGA_STEP_RETRY;
	s->action[2] = SAGA_STEP_OK;
	s->naction = 3;
	int64_t a = start(NULL);
	run();
	fake_clock_advance(&F.clock, 100);
	run(); /* A's second failure: 2 of 2 calls failed -> OPEN */
	saga_breaker_snapshot snap;
	ck_assert_int_eq(saga_breaker_get_snapshot(&snap, saga_engine_breaker(F.e, "payments")),
	                 SAGA_OK);
	ck_assert_int_eq(snap.state, SAGA_BREAKER_OPEN);
	s->naction = 0; /* the payment service recovers */
	int64_t b = start(NULL);
	run();
	fake_clock_advance(&F.clock, 100);
	run();
	ck_assert_str_eq(saga_state_name(info_of(b).state), "WAITING");
	ck_assert_int_eq(info_of(b).attempt, 0);
	ck_assert_int_eq(info_of(a).attempt, 2); /* refusals are not attempts */
	ck_assert_int_ge(history(b).refused, 1);
	for (int i = 0; i < 12; i++) {
		fake_clock_advance(&F.clock, 100);
		run();
	}
	ck_assert_str_eq(saga_state_name(info_of(a).state), "COMPLETED");
	ck_assert_str_eq(saga_state_name(info_of(b).state), "COMPLETED");
	ck_assert_int_eq(history(b).starts[2][0], 1);
	ck_assert_int_eq(history(a).starts[2][0], 3);
	ck_assert_int_eq(saga_breaker_get_snapshot(&snap, saga_engine_breaker(F.e, "payments")),
	                 SAGA_OK);
	ck_assert_int_eq(snap.state, SAGA_BREAKER_CLOSED);
}
END_TEST

/* A business refusal (FAIL) is a healthy answer: it does not open the
 * breaker; transient failures (RETRY) do. */
START_TEST(breaker_ignores_business_refusals)
{
	reopen_bare();
	saga_breaker_config bc = SAGA_BREAKER_CONFIG_INIT;
	bc.window_size = 4;
	bc.minimum_calls = 2;
	ck_assert_int_eq(saga_engine_add_breaker(F.e, "payments", &bc), SAGA_OK);
	saga_definition *d = make_def(1);
	ck_assert_int_eq(saga_definition_set_breaker(d, "pay", "payments"), SAGA_OK);
	register_def(d);
	F.scripts[2].action[0] = SAGA_STEP_FAIL;
	F.scripts[2].naction = 1;
	for (int i = 0; i < 3; i++)
		start(NULL);
	run();
	saga_breaker_snapshot snap;
	saga_breaker *b = saga_engine_breaker(F.e, "payments");
	ck_assert_int_eq(saga_breaker_get_snapshot(&snap, b), SAGA_OK);
	ck_assert_int_eq(snap.state, SAGA_BREAKER_CLOSED);
	ck_assert_uint_eq(snap.calls, 3);
	ck_assert_uint_eq(snap.failures, 0);
	F.scripts[2].action[0] = SAGA_STEP_RETRY;
	start(NULL);
	start(NULL);
	run();
	ck_assert_int_eq(saga_breaker_get_snapshot(&snap, b), SAGA_OK);
	ck_assert_int_eq(snap.state, SAGA_BREAKER_OPEN);
}
END_TEST

/* The history names steps even when this engine has not registered the
 * definition: the store keeps a snapshot of it. */
static int check_names(const saga_event *ev, void *user)
{
	if (ev->step >= 0) {
		ck_assert_ptr_nonnull(ev->step_name);
		ck_assert_str_eq(ev->step_name, step_names[ev->step]);
		(*(int *)user)++;
	}
	return 0;
}

START_TEST(history_names_from_snapshot)
{
	int64_t id = start(NULL);
	run();
	saga_engine_close(F.e);
	saga_options o = SAGA_OPTIONS_INIT;
	o.path = F.path;
	char err[256];
	ck_assert_int_eq(saga_engine_open(&F.e, &o, err, sizeof(err)), SAGA_OK);
	int named = 0;
	ck_assert_int_eq(saga_history(F.e, id, check_names, &named), SAGA_OK);
	ck_assert_int_eq(named, 2 * NSTEPS);
}
END_TEST

/* A damaged row naming version 0 must not run against another version's
 * steps: it is reported and skipped, and the other instances run. */
START_TEST(damaged_version_is_corrupt)
{
	int64_t bad = start("bad"), good = start("good");
	saga_engine_close(F.e);
	char sql[100];
	snprintf(sql, sizeof(sql), "UPDATE instances SET def_version = 0 WHERE id = %lld",
	         (long long)bad);
	test_store_exec(F.path, sql);
	open_engine();
	/* Claims take only the (name, version) pairs an engine has registered:
	 * nobody runs version 0, so the row waits unowned, and is never run. */
	ck_assert_int_eq(saga_run_until_idle(F.e), SAGA_OK);
	ck_assert_str_eq(saga_state_name(info_of(good).state), "COMPLETED");
	ck_assert_str_eq(saga_state_name(info_of(bad).state), "RUNNING");
	ck_assert_int_eq(F.nlog, NSTEPS); /* only the good one ran */
}
END_TEST

/* Processes register one definition and start one business key at the same
 * moment on one store: each succeeds, and one instance is created (a check
 * and then an insert, each in its own transaction, let a second process
 * fail on the first one's row). */
/* A caller-driven round invokes its callbacks one after the other: longer
 * together than the lease, they must not lose it (the lease is renewed
 * between them). Losing it dropped their answers and ran each again. */
static atomic_int slow_calls;
static int lease_lapses;

static saga_step_result slow_step(saga_step_ctx *ctx, void *user)
{
	(void)ctx;
	(void)user;
	atomic_fetch_add(&slow_calls, 1);
	struct timespec ts = { 1, 100 * 1000 * 1000 };
	nanosleep(&ts, NULL);
	return SAGA_STEP_OK;
}

static void lapse_log(saga_log_level level, const char *msg, void *user)
{
	(void)level;
	(void)user;
	if (strstr(msg, "lapsed"))
		lease_lapses++;
}

START_TEST(long_round_keeps_the_lease)
{
	char path[400];
	test_store_name(path, sizeof(path), F.dir, "slow.db");
	saga_options o = SAGA_OPTIONS_INIT;
	o.path = path;
	o.lease_ms = 3000;
	o.log = lapse_log;
	o.log_level = SAGA_LOG_WARN;
	saga_engine *e = NULL;
	ck_assert_int_eq(saga_engine_open(&e, &o, NULL, 0), SAGA_OK);
	saga_definition *d = NULL;
	ck_assert_int_eq(saga_definition_new(&d, "slow", 1), SAGA_OK);
	saga_step_spec st = { "wait", SAGA_STEP_RETRIABLE, slow_step, NULL, NULL };
	ck_assert_int_eq(saga_definition_add_step(d, &st), SAGA_OK);
	ck_assert_int_eq(saga_engine_register(e, d), SAGA_OK);
	saga_definition_free(d);
	saga_start_request reqs[4];
	int64_t ids[4];
	for (int i = 0; i < 4; i++)
		reqs[i] = (saga_start_request){ "slow", NULL, NULL };
	ck_assert_int_eq(saga_start_batch(e, ids, NULL, reqs, 4), SAGA_OK);
	ck_assert_int_eq(saga_run_until_idle(e), SAGA_OK); /* 4 x 1.1 s > 3 s */
	for (int i = 0; i < 4; i++) {
		saga_instance_info info;
		ck_assert_int_eq(saga_get(e, &info, ids[i]), SAGA_OK);
		ck_assert_int_eq(info.state, SAGA_COMPLETED);
	}
	ck_assert_int_eq(atomic_load(&slow_calls), 4);
	ck_assert_int_eq(lease_lapses, 0);
	saga_engine_close(e);
	test_store_drop(path);
}
END_TEST

START_TEST(concurrent_registration)
{
	for (int round = 0; round < 10; round++) {
		char path[400], file[32];
		snprintf(file, sizeof(file), "reg-%d.db", round);
		test_store_name(path, sizeof(path), F.dir, file);
		pid_t pids[6];
		int go[2]; /* closed by the parent: every child goes at once */
		ck_assert_int_eq(pipe(go), 0);
		for (int p = 0; p < 6; p++) {
			pids[p] = fork();
			ck_assert_int_ge(pids[p], 0);
			if (pids[p] == 0) {
				close(go[1]);
				char c;
				if (read(go[0], &c, 1) != 0)
					_exit(4);
				saga_options o = SAGA_OPTIONS_INIT;
				o.path = path;
				saga_engine *e = NULL;
				if (saga_engine_open(&e, &o, NULL, 0) != SAGA_OK)
					_exit(2);
				saga_definition *d = make_def(1);
				int rc = saga_engine_register(e, d);
				saga_definition_free(d);
				/* and start one business key: one of them creates it */
				struct timespec ts = { 0, 20 * 1000 * 1000 };
				nanosleep(&ts, NULL); /* the others have registered too */
				int64_t id = 0;
				int created = 0;
				const char *what = "register";
				if (rc == SAGA_OK) {
					what = "start";
					rc = saga_start(e, &id, &created, "order", "same-key",
					                NULL);
				}
				if (rc != SAGA_OK) /* for the parent's report */
					fprintf(stderr, "process %d: %s: %s (%s)\n", p, what,
					        saga_strerror(rc), saga_engine_errmsg(e));
				saga_engine_close(e);
				_exit(rc != SAGA_OK ? 1 : created ? 0 : 3);
			}
		}
		close(go[0]);
		close(go[1]);
		int made = 0;
		for (int p = 0; p < 6; p++) {
			int st = 0;
			ck_assert_int_eq(waitpid(pids[p], &st, 0), pids[p]);
			ck_assert_msg(WIFEXITED(st) &&
			                      (WEXITSTATUS(st) == 0 || WEXITSTATUS(st) == 3),
			              "round %d: process %d: status %d", round, p, st);
			made += WEXITSTATUS(st) == 0;
		}
		ck_assert_int_eq(made, 1);
		test_store_drop(path);
	}
}
END_TEST

START_TEST(store_errors)
{
	/* SQLite files: foreign, not a database, the lock file, the file's
	 * mode. PostgreSQL's bad input is test-pg-input's. */
	if (sqlite_only("SQLite files"))
		return;
	int64_t id = start(NULL);
	saga_engine *e = NULL;
	saga_options o = SAGA_OPTIONS_INIT;
	char err[256];
	ck_assert_int_eq(saga_engine_open(&e, &o, err, sizeof(err)), SAGA_EINVAL);
	ck_assert_ptr_null(e);
	/* A foreign SQLite file. */
	char p[400];
	snprintf(p, sizeof(p), "%s/foreign.db", F.dir);
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "sqlite3 '%s' 'CREATE TABLE t(x)'", p);
	if (system(cmd) == 0) {
		o.path = p;
		ck_assert_int_eq(saga_engine_open(&e, &o, err, sizeof(err)), SAGA_ECORRUPT);
		ck_assert_ptr_nonnull(strstr(err, "not a libsaga store"));
	}
	/* Not a database at all. */
	snprintf(p, sizeof(p), "%s/text.db", F.dir);
	FILE *f = fopen(p, "w");
	ck_assert_ptr_nonnull(f);
	for (int i = 0; i < 200; i++)
		fputs("this is not a database file at all\n", f);
	fclose(f);
	o.path = p;
	ck_assert_int_eq(saga_engine_open(&e, &o, err, sizeof(err)), SAGA_ECORRUPT);
	/* Engines share a store; one of a libsaga that cannot (it holds the
	 * lock file's flock exclusively) keeps this one out. */
	o.path = F.path;
	ck_assert_int_eq(saga_engine_open(&e, &o, err, sizeof(err)), SAGA_OK);
	saga_engine_close(e);
	e = NULL;
	snprintf(p, sizeof(p), "%s-lock", F.path);
	saga_engine_close(F.e);
	int lk = open(p, O_RDWR);
	ck_assert_int_ge(lk, 0);
	ck_assert_int_eq(flock(lk, LOCK_EX | LOCK_NB), 0);
	ck_assert_int_eq(saga_engine_open(&e, &o, err, sizeof(err)), SAGA_EBUSY);
	ck_assert_ptr_nonnull(strstr(err, "older libsaga"));
	ck_assert_ptr_null(e);
	close(lk);
	open_engine();
	/* A directory that does not exist. */
	o.path = "/nonexistent-dir/saga.db";
	ck_assert_int_lt(saga_engine_open(&e, &o, err, sizeof(err)), 0);
	ck_assert_ptr_null(e);
	/* A newer schema is refused. */
	snprintf(cmd, sizeof(cmd), "sqlite3 '%s' 'PRAGMA user_version=99'", F.path);
	saga_engine_close(F.e);
	F.e = NULL;
	if (system(cmd) == 0) {
		o.path = F.path;
		ck_assert_int_eq(saga_engine_open(&e, &o, err, sizeof(err)), SAGA_EVERSION);
	}
	/* Back at this version, the refused store opens and its instance goes
	 * on (migrations from older stores are tested by test-iofault). */
	snprintf(cmd, sizeof(cmd), "sqlite3 '%s' 'PRAGMA user_version=4'", F.path);
	ck_assert_int_eq(system(cmd), 0);
	open_engine();
	run();
	ck_assert_str_eq(saga_state_name(info_of(id).state), "COMPLETED");
	saga_engine_close(F.e);
	open_engine();
	/* The store file is private. */
	ck_assert_int_eq(access(F.path, R_OK), 0);
	char mode_cmd[600];
	snprintf(mode_cmd, sizeof(mode_cmd), "test \"$(stat -c %%a '%s')\" = 600", F.path);
	ck_assert_int_eq(system(mode_cmd), 0);
}
END_TEST

/* The counters match what the store holds; they start from zero. */
START_TEST(engine_stats)
{
	saga_stats st;
	ck_assert_int_eq(saga_engine_stats(NULL, &st), SAGA_EINVAL);
	ck_assert_int_eq(saga_engine_stats(F.e, NULL), SAGA_EINVAL);
	ck_assert_int_eq(saga_engine_stats(F.e, &st), SAGA_OK);
	ck_assert_uint_eq(st.commits + st.attempts + st.history_rows + st.started, 0);
	int64_t a = start(NULL), b = start("stats-key");
	ck_assert_int_eq(saga_engine_stats(F.e, &st), SAGA_OK);
	ck_assert_uint_eq(st.started, 2);
	ck_assert_uint_eq(st.commits, 2);
	ck_assert_uint_eq(st.attempts, 0);
	ck_assert_int_eq(start("stats-key"), b); /* the same instance: nothing created */
	run();
	ck_assert_int_eq(saga_engine_stats(F.e, &st), SAGA_OK);
	ck_assert_uint_eq(st.started, 2);
	ck_assert_uint_eq(st.attempts, 2 * NSTEPS);
	/* The two instances move together: one commit per round after the starts. */
	ck_assert_uint_ge(st.commits, 3 + NSTEPS);
	ck_assert_uint_le(st.commits, 3 + 2 * (NSTEPS + 1));
	hist_count h;
	memset(&h, 0, sizeof(h));
	ck_assert_int_eq(saga_history(F.e, a, count_event, &h), SAGA_OK);
	ck_assert_int_eq(saga_history(F.e, b, count_event, &h), SAGA_OK);
	ck_assert_uint_eq(st.history_rows, (uint64_t)h.n);
	reopen();
	ck_assert_int_eq(saga_engine_stats(F.e, &st), SAGA_OK);
	ck_assert_uint_eq(st.commits + st.attempts + st.history_rows + st.started, 0);
}
END_TEST

START_TEST(purge_finished)
{
	F.scripts[1].action[0] = SAGA_STEP_FAIL;
	F.scripts[1].naction = 1;
	int64_t failed = start(NULL);
	run();
	F.scripts[1].naction = 0;
	F.scripts[3].action[0] = SAGA_STEP_PENDING;
	F.scripts[3].naction = 1;
	int64_t waiting = start(NULL);
	run();
	F.scripts[3].naction = 0;
	int64_t done[3];
	for (int i = 0; i < 3; i++)
		done[i] = start(NULL);
	run();
	fake_clock_advance(&F.clock, 10000);
	int64_t fresh = start(NULL);
	run();
	int64_t n = -1;
	ck_assert_int_eq(saga_purge(F.e, &n, SAGA_STUCK, 0), SAGA_EINVAL);
	ck_assert_int_eq(saga_purge(F.e, &n, SAGA_COMPLETED, 5000), SAGA_OK);
	ck_assert_int_eq(n, 3);
	saga_instance_info info;
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(saga_get(F.e, &info, done[i]), SAGA_ENOTFOUND);
	ck_assert_int_eq(saga_history(F.e, done[0], count_event, &(hist_count){ 0 }),
	                 SAGA_ENOTFOUND);
	/* Newer, unfinished and compensated ones stay. */
	ck_assert_int_eq(saga_get(F.e, &info, fresh), SAGA_OK);
	ck_assert_int_eq(saga_get(F.e, &info, waiting), SAGA_OK);
	ck_assert_int_eq(saga_get(F.e, &info, failed), SAGA_OK);
	fake_clock_advance(&F.clock, 1);
	ck_assert_int_eq(saga_purge(F.e, &n, -1, 0), SAGA_OK);
	ck_assert_int_eq(n, 2); /* fresh (COMPLETED) and failed (COMPENSATED) */
	ck_assert_int_eq(saga_get(F.e, &info, waiting), SAGA_OK);
	ck_assert_int_eq(saga_get(F.e, &info, failed), SAGA_ENOTFOUND);
}
END_TEST

/* saga_run_due_start: new instances share the round's commit. */
START_TEST(run_due_start_shares_the_commit)
{
	saga_start_request reqs[2] = { { "order", NULL, NULL }, { "order", "rds-key", NULL } };
	int64_t ids[2], first[2];
	int created[2];
	unsigned int ran = 99;
	saga_stats st;
	/* A refused request: nothing starts and nothing runs. */
	saga_start_request bad = { NULL, NULL, NULL };
	ck_assert_int_eq(saga_run_due_start(F.e, &ran, ids, created, &bad, 1), SAGA_EINVAL);
	ck_assert_int_eq(ids[0], 0);
	ck_assert_uint_eq(ran, 0);
	ck_assert_int_eq(saga_engine_stats(F.e, &st), SAGA_OK);
	ck_assert_uint_eq(st.commits, 0);
	/* The first call has nothing to invoke before: it starts, invokes the
	 * first steps and records them (two commits). Each later call invokes
	 * first and commits once. */
	ck_assert_int_eq(saga_run_due_start(F.e, &ran, first, created, reqs, 2), SAGA_OK);
	ck_assert_int_gt(first[0], 0);
	ck_assert_int_gt(first[1], 0);
	ck_assert_int_eq(created[0] + created[1], 2);
	ck_assert_uint_eq(ran, 2);
	reqs[1].business_key = "rds-key-2";
	for (int k = 2; k <= 4; k++) {
		ck_assert_int_eq(saga_run_due_start(F.e, &ran, ids, created, reqs, 2), SAGA_OK);
		ck_assert_int_eq(created[0] + created[1], 2);
		ck_assert_uint_eq(ran, 2 * (unsigned)k - 2);
		ck_assert_int_eq(saga_engine_stats(F.e, &st), SAGA_OK);
		ck_assert_uint_eq(st.commits, (uint64_t)k + 1);
		ck_assert_uint_eq(st.started, 2 * (uint64_t)k);
		reqs[1].business_key = k == 2 ? "rds-key-3" : "rds-key-4";
	}
	/* A key already taken gives its instance, not a new one. */
	reqs[1].business_key = "rds-key";
	ck_assert_int_eq(saga_run_due_start(F.e, &ran, ids, created, reqs, 2), SAGA_OK);
	ck_assert_int_eq(ids[1], first[1]);
	ck_assert_int_eq(created[1], 0);
	ck_assert_int_eq(created[0], 1);
	/* Durable when the call returned: a reopened engine has them all. */
	int64_t last = ids[0];
	reopen();
	run();
	ck_assert_str_eq(saga_state_name(info_of(first[0]).state), "COMPLETED");
	ck_assert_str_eq(saga_state_name(info_of(first[1]).state), "COMPLETED");
	ck_assert_str_eq(saga_state_name(info_of(last).state), "COMPLETED");
	int64_t counts[SAGA_STATE_COUNT];
	ck_assert_int_eq(saga_counts(F.e, counts), SAGA_OK);
	ck_assert_int_eq(counts[SAGA_COMPLETED], 9);
}
END_TEST

/* The age saga_purge() compares is the time the instance finished, not the
 * time it was created or went STUCK. */
START_TEST(purge_counts_from_the_finish)
{
	int64_t id = stuck_at_pivot();
	ck_assert_str_eq(saga_state_name(info_of(id).state), "STUCK");
	fake_clock_advance(&F.clock, 60000);
	F.scripts[3].action_sleep_ms = 0;
	ck_assert_int_eq(saga_operator_skip(F.e, id), SAGA_OK);
	run();
	ck_assert_str_eq(saga_state_name(info_of(id).state), "COMPLETED");
	int64_t n = -1;
	fake_clock_advance(&F.clock, 1000);
	ck_assert_int_eq(saga_purge(F.e, &n, SAGA_COMPLETED, 30000), SAGA_OK);
	ck_assert_int_eq(n, 0);
	ck_assert_int_eq(info_of(id).id, id);
	fake_clock_advance(&F.clock, 30000);
	ck_assert_int_eq(saga_purge(F.e, &n, SAGA_COMPLETED, 30000), SAGA_OK);
	ck_assert_int_eq(n, 1);
	saga_instance_info info;
	ck_assert_int_eq(saga_get(F.e, &info, id), SAGA_ENOTFOUND);
}
END_TEST

/* Many instances through worker threads (run under TSan in CI). */
static int worker_calls;
static pthread_mutex_t worker_mu = PTHREAD_MUTEX_INITIALIZER;

static saga_step_result count_step(saga_step_ctx *ctx, void *user)
{
	(void)ctx;
	(void)user;
	pthread_mutex_lock(&worker_mu);
	worker_calls++;
	pthread_mutex_unlock(&worker_mu);
	return SAGA_STEP_OK;
}

/* Starts of an unregistered definition, from another thread. */
static void *bad_starter(void *arg)
{
	saga_engine *e = arg;
	for (int i = 0; i < 200; i++) {
		int64_t id = -1;
		ck_assert_int_eq(saga_start(e, &id, NULL, "no-such-saga", NULL, NULL),
		                 SAGA_ENOTFOUND);
		ck_assert_int_eq(id, 0);
	}
	return NULL;
}

START_TEST(workers_many_instances)
{
	saga_engine_close(F.e);
	saga_options o = SAGA_OPTIONS_INIT;
	o.path = F.path;
	o.durability = SAGA_DURABILITY_NORMAL;
	o.workers = 4;
	o.max_in_flight = 32;
	char err[256];
	ck_assert_int_eq(saga_engine_open(&F.e, &o, err, sizeof(err)), SAGA_OK);
	saga_definition *d;
	ck_assert_int_eq(saga_definition_new(&d, "w", 1), SAGA_OK);
	const char *names[] = { "a", "b", "c" };
	for (int i = 0; i < 3; i++) {
		saga_step_spec s = { names[i], i < 2 ? SAGA_STEP_COMPENSATABLE : SAGA_STEP_PIVOT,
			             count_step, i < 2 ? count_step : NULL, NULL };
		ck_assert_int_eq(saga_definition_add_step(d, &s), SAGA_OK);
	}
	register_def(d);
	worker_calls = 0;
	/* A start from this thread joins the driver's next commit: when it
	 * returns, the row is in the store for another connection to read. */
	/* Refused starts from another thread at the same time fail alone: the
	 * commit they would have shared still takes these. */
	pthread_t bad;
	ck_assert_int_eq(pthread_create(&bad, NULL, bad_starter, F.e), 0);
	for (int i = 0; i < 200; i++) {
		int64_t id;
		ck_assert_int_eq(saga_start(F.e, &id, NULL, "w", NULL, NULL), SAGA_OK);
		ck_assert_int_gt(id, 0);
		if (i % 20 == 0) {
			char sql[80];
			snprintf(sql, sizeof(sql), "SELECT count(*) FROM instances WHERE id = %lld",
			         (long long)id);
			ck_assert_int_eq(test_store_int(F.path, sql), 1);
		}
	}
	pthread_join(bad, NULL);
	saga_stats stats;
	ck_assert_int_eq(saga_engine_stats(F.e, &stats), SAGA_OK);
	ck_assert_uint_eq(stats.started, 200);
	ck_assert_int_eq(saga_run_due(F.e, NULL), SAGA_ESTATE);
	ck_assert_msg(saga_wait_idle(F.e, 60000) == SAGA_OK, "%s", saga_engine_errmsg(F.e));
	int64_t counts[SAGA_STATE_COUNT];
	ck_assert_int_eq(saga_counts(F.e, counts), SAGA_OK);
	ck_assert_int_eq(counts[SAGA_COMPLETED], 200);
	pthread_mutex_lock(&worker_mu);
	ck_assert_int_eq(worker_calls, 600);
	pthread_mutex_unlock(&worker_mu);
}
END_TEST

/* An allocator whose realloc always moves the block and poisons the old one,
 * so a pointer kept into a reallocated array reads garbage at once. */
static void *moving_malloc(size_t n, void *user)
{
	(void)user;
	size_t *p = malloc(sizeof(size_t) + n);
	if (!p)
		return NULL;
	*p = n;
	return p + 1;
}

static void moving_free(void *ptr, void *user)
{
	(void)user;
	if (!ptr)
		return;
	size_t *p = (size_t *)ptr - 1;
	memset(p, 0xA5, sizeof(size_t) + *p);
	free(p);
}

static void *moving_realloc(void *ptr, size_t n, void *user)
{
	void *q = moving_malloc(n, user);
	if (q && ptr) {
		size_t old = ((size_t *)ptr)[-1];
		memcpy(q, ptr, old < n ? old : n);
		moving_free(ptr, user);
	}
	return q;
}

static saga_step_result plain_ok(saga_step_ctx *ctx, void *user)
{
	(void)ctx;
	(void)user;
	return SAGA_STEP_OK;
}

/* Registering a definition while instances of another are in memory (an
 * attempt started, not yet invoked) must not leave them pointing into the
 * old array of registered definitions. */
START_TEST(register_while_instances_loaded)
{
	saga_engine_close(F.e);
	saga_options o = SAGA_OPTIONS_INIT;
	o.path = F.path;
	o.clock = fake_clock_make(&F.clock);
	o.allocator.malloc_fn = moving_malloc;
	o.allocator.realloc_fn = moving_realloc;
	o.allocator.free_fn = moving_free;
	char err[256];
	ck_assert_msg(saga_engine_open(&F.e, &o, err, sizeof(err)) == SAGA_OK, "open: %s", err);
	saga_definition *d;
	ck_assert_int_eq(saga_definition_new(&d, "first", 1), SAGA_OK);
	saga_step_spec a = { "a", SAGA_STEP_RETRIABLE, plain_ok, NULL, NULL };
	saga_step_spec b = { "b", SAGA_STEP_RETRIABLE, plain_ok, NULL, NULL };
	ck_assert_int_eq(saga_definition_add_step(d, &a), SAGA_OK);
	ck_assert_int_eq(saga_definition_add_step(d, &b), SAGA_OK);
	ck_assert_int_eq(saga_engine_register(F.e, d), SAGA_OK);
	saga_definition_free(d);
	int64_t id;
	ck_assert_int_eq(saga_start(F.e, &id, NULL, "first", NULL, NULL), SAGA_OK);
	unsigned int ran = 0;
	ck_assert_int_eq(saga_run_due(F.e, &ran), SAGA_OK);
	ck_assert_uint_eq(ran, 1);
	saga_instance_info info;
	ck_assert_int_eq(saga_get(F.e, &info, id), SAGA_OK);
	ck_assert_int_eq(info.step, 1); /* b's start is written; it waits in memory */
	for (int v = 1; v <= 3; v++) {
		ck_assert_int_eq(saga_definition_new(&d, "second", v), SAGA_OK);
		ck_assert_int_eq(saga_definition_add_step(d, &a), SAGA_OK);
		ck_assert_int_eq(saga_engine_register(F.e, d), SAGA_OK);
		saga_definition_free(d);
	}
	ck_assert_int_eq(saga_run_until_idle(F.e), SAGA_OK);
	ck_assert_int_eq(saga_get(F.e, &info, id), SAGA_OK);
	ck_assert_int_eq(info.state, SAGA_COMPLETED);
}
END_TEST

/* An argument error on an engine replaces the message of an older failure:
 * saga_engine_errmsg never describes a call that came before. */
#define EXPECT_FRESH_EINVAL(call)                                                        \
	do {                                                                             \
		saga_instance_info info_;                                                \
		ck_assert_int_eq(saga_get(F.e, &info_, 99999), SAGA_ENOTFOUND);          \
		ck_assert_ptr_nonnull(strstr(saga_engine_errmsg(F.e), "99999"));         \
		ck_assert_int_eq((call), SAGA_EINVAL);                                   \
		ck_assert_msg(strstr(saga_engine_errmsg(F.e), "99999") == NULL,          \
		              "%s: stale message '%s'", #call, saga_engine_errmsg(F.e)); \
	} while (0)

START_TEST(einval_replaces_stale_message)
{
	int64_t id = 0;
	int n = 0;
	saga_start_request req = { "order", NULL, NULL };
	saga_breaker_config bc = SAGA_BREAKER_CONFIG_INIT;
	EXPECT_FRESH_EINVAL(saga_engine_register(F.e, NULL));
	EXPECT_FRESH_EINVAL(saga_engine_add_breaker(F.e, NULL, &bc));
	EXPECT_FRESH_EINVAL(saga_engine_add_listener(F.e, NULL, NULL));
	EXPECT_FRESH_EINVAL(saga_start(F.e, NULL, NULL, "order", NULL, NULL));
	EXPECT_FRESH_EINVAL(saga_start_batch(F.e, NULL, NULL, &req, 1));
	EXPECT_FRESH_EINVAL(saga_run_due_start(F.e, NULL, NULL, NULL, &req, 1));
	EXPECT_FRESH_EINVAL(saga_next_due(F.e, NULL));
	EXPECT_FRESH_EINVAL(saga_complete(F.e, NULL, SAGA_STEP_OK, NULL));
	EXPECT_FRESH_EINVAL(saga_get(F.e, NULL, 1));
	EXPECT_FRESH_EINVAL(saga_get_context(F.e, NULL, 1));
	EXPECT_FRESH_EINVAL(saga_find(F.e, &id, NULL));
	EXPECT_FRESH_EINVAL(saga_history(F.e, 1, NULL, NULL));
	EXPECT_FRESH_EINVAL(saga_list(F.e, 0, NULL, NULL));
	EXPECT_FRESH_EINVAL(saga_list(F.e, SAGA_STATE_COUNT, count_listed, &n));
	EXPECT_FRESH_EINVAL(saga_counts(F.e, NULL));
	EXPECT_FRESH_EINVAL(saga_engine_stats(F.e, NULL));
	EXPECT_FRESH_EINVAL(saga_purge(F.e, NULL, SAGA_STUCK, 0));
}
END_TEST

/* A call that succeeds leaves the message of the last failed call alone,
 * even when something it did on the side ran out of memory: here the ready
 * queue, which a start only fills for the instances that do not fit in
 * memory (the next scan finds them instead). */
static int refuse_ready_queue;

static void *picky_malloc(size_t n, void *user)
{
	(void)user;
	return refuse_ready_queue && n == 256 * sizeof(int64_t) ? NULL : malloc(n);
}

static void *picky_realloc(void *ptr, size_t n, void *user)
{
	(void)user;
	return realloc(ptr, n);
}

static void picky_free(void *ptr, void *user)
{
	(void)user;
	free(ptr);
}

static void reopen_picky(unsigned int max_in_flight)
{
	saga_engine_close(F.e);
	saga_options o = SAGA_OPTIONS_INIT;
	o.path = F.path;
	o.clock = fake_clock_make(&F.clock);
	o.max_in_flight = max_in_flight;
	o.allocator.malloc_fn = picky_malloc;
	o.allocator.realloc_fn = picky_realloc;
	o.allocator.free_fn = picky_free;
	char err[256];
	ck_assert_msg(saga_engine_open(&F.e, &o, err, sizeof(err)) == SAGA_OK, "open: %s", err);
	register_def(make_def(1));
}

START_TEST(success_keeps_the_last_message)
{
	reopen_picky(1);
	saga_instance_info info;
	ck_assert_int_eq(saga_get(F.e, &info, 99999), SAGA_ENOTFOUND);
	saga_start_request reqs[2] = { { "order", NULL, NULL }, { "order", NULL, NULL } };
	int64_t ids[2];
	refuse_ready_queue = 1;
	ck_assert_int_eq(saga_start_batch(F.e, ids, NULL, reqs, 2), SAGA_OK);
	refuse_ready_queue = 0;
	ck_assert_msg(strstr(saga_engine_errmsg(F.e), "99999") != NULL, "message: '%s'",
	              saga_engine_errmsg(F.e));
	run();
	ck_assert_int_eq(info_of(ids[0]).state, SAGA_COMPLETED);
	ck_assert_int_eq(info_of(ids[1]).state, SAGA_COMPLETED);
}
END_TEST

/* An instance that a command makes due now is run even when the ready queue
 * cannot take it: the next round scans for it. */
START_TEST(command_runs_despite_a_full_ready_queue)
{
	F.scripts[2].action[0] = SAGA_STEP_FAIL;
	F.scripts[2].naction = 1;
	F.scripts[1].comp[0] = SAGA_STEP_FAIL;
	F.scripts[1].ncomp = 1;
	int64_t id = start(NULL);
	run();
	ck_assert_int_eq(info_of(id).state, SAGA_STUCK);
	F.scripts[1].comp[0] = SAGA_STEP_OK;
	reopen_picky(0);
	run(); /* the recovery scan: nothing unfinished but the STUCK one */
	refuse_ready_queue = 1;
	ck_assert_int_eq(saga_operator_retry(F.e, id), SAGA_OK);
	refuse_ready_queue = 0;
	run();
	ck_assert_int_eq(info_of(id).state, SAGA_COMPENSATED);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("engine");
	TCase *tc = tcase_create("engine");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, happy_path);
	tcase_add_loop_test(tc, permanent_failure_each_step, 0, NSTEPS);
	tcase_add_test(tc, transient_then_success);
	tcase_add_test(tc, retries_exhausted_compensates_step);
	tcase_add_test(tc, async_completion);
	tcase_add_test(tc, async_late_completion);
	tcase_add_test(tc, sync_timeout_is_late);
	tcase_add_test(tc, instance_deadline);
	tcase_add_test(tc, pivot_timeout_goes_stuck);
	tcase_add_test(tc, retriable_retries_until_success);
	tcase_add_test(tc, cancel_before_and_after_pivot);
	tcase_add_test(tc, idempotent_start);
	tcase_add_test(tc, keyed_batch_start);
	tcase_add_test(tc, stuck_and_operator_retry);
	tcase_add_test(tc, stuck_and_operator_skip);
	tcase_add_test(tc, reopen_resumes);
	tcase_add_test(tc, list_and_counts);
	tcase_add_test(tc, breaker_parks_instance);
	tcase_add_test(tc, breaker_opens_mid_run);
	tcase_add_test(tc, breaker_ignores_business_refusals);
	tcase_add_test(tc, history_names_from_snapshot);
	tcase_add_test(tc, damaged_version_is_corrupt);
	tcase_add_test(tc, store_errors);
	tcase_add_test(tc, purge_finished);
	tcase_add_test(tc, engine_stats);
	tcase_add_test(tc, purge_counts_from_the_finish);
	tcase_add_test(tc, run_due_start_shares_the_commit);
	tcase_add_test(tc, workers_many_instances);
	tcase_add_test(tc, register_while_instances_loaded);
	tcase_add_test(tc, einval_replaces_stale_message);
	tcase_add_test(tc, success_keeps_the_last_message);
	tcase_add_test(tc, command_runs_despite_a_full_ready_queue);
	tcase_add_test(tc, concurrent_registration);
	tcase_add_test(tc, long_round_keeps_the_lease);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
