/* Crash points around the commands that change an instance from outside:
 * operator retry, skip and resume, cancel, and an async completion. For
 * each command and each durable transition that follows it, a child process
 * gives the command, runs, and is killed with SIGKILL at that transition;
 * the parent reopens the store, recovers, and checks the contract: the
 * instance ends where the command leads, every started step has exactly one
 * final outcome per phase, and the command is recorded exactly once.
 * SAGA_DURABILITY_NORMAL: it survives a process crash, which is what SIGKILL
 * tests. SPDX-License-Identifier: MIT */
#include "test-common.h"

#include <cjson/cJSON.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define NSTEPS 4
static const char *const names[NSTEPS] = { "a", "b", "p", "r" };

enum command { CMD_RETRY, CMD_SKIP, CMD_RESUME, CMD_CANCEL, CMD_COMPLETE };
static const char *const command_names[] = { "retry", "skip", "resume", "cancel", "complete" };

/* What the participant answers: set before each phase of a run. */
static bool comp_b_fails; /* b's compensation fails: the instance goes STUCK */
static bool p_fails;      /* the pivot refuses: compensation starts */
static bool b_pending;    /* b answers PENDING (async) */
static char pending_key[160];

static saga_step_result step(saga_step_ctx *ctx, void *user)
{
	const char *n = saga_step_name(ctx);
	if (saga_step_phase(ctx) == SAGA_PHASE_COMPENSATION)
		return strcmp(n, "b") == 0 && comp_b_fails ? SAGA_STEP_FAIL : SAGA_STEP_OK;
	if (strcmp(n, "p") == 0 && p_fails)
		return SAGA_STEP_FAIL;
	if (strcmp(n, "b") == 0 && b_pending) {
		snprintf(pending_key, sizeof(pending_key), "%s", saga_step_key(ctx));
		return SAGA_STEP_PENDING;
	}
	return SAGA_STEP_OK;
}

static saga_engine *open_store(const char *path)
{
	saga_options o = SAGA_OPTIONS_INIT;
	o.path = path;
	o.durability = SAGA_DURABILITY_NORMAL;
	saga_engine *e;
	char err[256];
	ck_assert_msg(saga_engine_open(&e, &o, err, sizeof(err)) == SAGA_OK, "open: %s", err);
	saga_definition *d;
	ck_assert_int_eq(saga_definition_new(&d, "cmd", 1), SAGA_OK);
	for (int i = 0; i < NSTEPS; i++) {
		saga_step_spec s = { names[i],
			             i < 2    ? SAGA_STEP_COMPENSATABLE
			             : i == 2 ? SAGA_STEP_PIVOT
			                      : SAGA_STEP_RETRIABLE,
			             step, i < 2 ? step : NULL, NULL };
		ck_assert_int_eq(saga_definition_add_step(d, &s), SAGA_OK);
	}
	/* One compensation attempt: a FAIL goes STUCK at once. */
	saga_retry_policy one = { 1, 0, SAGA_BACKOFF_CONSTANT, 1, 0, 2.0, SAGA_JITTER_NONE };
	ck_assert_int_eq(saga_definition_set_compensation_retry(d, NULL, &one), SAGA_OK);
	ck_assert_int_eq(saga_engine_register(e, d), SAGA_OK);
	saga_definition_free(d);
	ck_assert_int_eq(saga_engine_add_listener(e, kill_at_event, NULL), SAGA_OK);
	return e;
}

/* Brings a fresh instance to where the command applies. */
static int64_t prepare(const char *path, enum command cmd)
{
	saga_engine *e = open_store(path);
	comp_b_fails = cmd == CMD_RETRY || cmd == CMD_SKIP || cmd == CMD_RESUME;
	p_fails = cmd != CMD_CANCEL && cmd != CMD_COMPLETE;
	b_pending = cmd == CMD_CANCEL || cmd == CMD_COMPLETE;
	int64_t id;
	ck_assert_int_eq(saga_start(e, &id, NULL, "cmd", "order-1", NULL), SAGA_OK);
	ck_assert_int_eq(saga_run_until_idle(e), SAGA_OK);
	saga_instance_info info;
	ck_assert_int_eq(saga_get(e, &info, id), SAGA_OK);
	ck_assert_int_eq(info.state, b_pending ? SAGA_WAITING : SAGA_STUCK);
	saga_engine_close(e);
	return id;
}

static int give(saga_engine *e, enum command cmd, int64_t id)
{
	switch (cmd) {
	case CMD_RETRY:
		return saga_operator_retry(e, id);
	case CMD_SKIP:
		return saga_operator_skip(e, id);
	case CMD_RESUME:
		return saga_operator_resume(e, id);
	case CMD_CANCEL:
		return saga_cancel(e, id);
	case CMD_COMPLETE:
		return saga_complete(e, pending_key, SAGA_STEP_OK, NULL);
	}
	return SAGA_EINVAL;
}

typedef struct tally {
	int ok[NSTEPS][2];
	int commands;
} tally;

static int count(const saga_event *ev, void *user)
{
	tally *t = user;
	if (ev->type == SAGA_EVENT_ATTEMPT_END && ev->outcome == SAGA_OUTCOME_OK && ev->step >= 0)
		t->ok[ev->step][ev->phase]++;
	if (ev->type == SAGA_EVENT_OPERATOR)
		t->commands++;
	return 0;
}

/* One command, killed at its n-th event afterwards. Returns false once the
 * child finished without reaching the n-th event. */
static bool crash_once(enum command cmd, long n)
{
	char dir[256], path[300];
	tmpdir_make(dir, sizeof(dir));
	test_store_name(path, sizeof(path), dir, "s.db");
	kill_at_event_arm(0);
	int64_t id = prepare(path, cmd);
	/* After the command the participant behaves: the operator fixed it. */
	comp_b_fails = false;
	if (cmd == CMD_RESUME)
		p_fails = false;
	b_pending = false;
	fflush(stdout);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		kill_at_event_arm(n);
		saga_engine *e = open_store(path);
		int rc = give(e, cmd, id);
		if (rc == SAGA_OK)
			rc = saga_run_until_idle(e);
		saga_engine_close(e);
		_exit(rc == SAGA_OK ? 0 : 3);
	}
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	bool killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
	ck_assert_msg(killed || (WIFEXITED(status) && WEXITSTATUS(status) == 0),
	              "%s, kill at %ld: the child failed (status %d)", command_names[cmd], n,
	              status);
	/* Recover and check. */
	kill_at_event_arm(0);
	test_store_owners_dead(path);
	saga_engine *e = open_store(path);
	ck_assert_int_eq(saga_run_until_idle(e), SAGA_OK);
	saga_instance_info info;
	ck_assert_int_eq(saga_get(e, &info, id), SAGA_OK);
	tally t;
	memset(&t, 0, sizeof(t));
	ck_assert_int_eq(saga_history(e, id, count, &t), SAGA_OK);
	const char *c = command_names[cmd];
	switch (cmd) {
	case CMD_RETRY: /* b's compensation again, then a's */
	case CMD_SKIP:  /* b marked compensated, then a's */
		ck_assert_msg(info.state == SAGA_COMPENSATED, "%s@%ld: %s", c, n,
		              saga_state_name(info.state));
		ck_assert_int_eq(t.ok[1][1], cmd == CMD_RETRY ? 1 : 0);
		ck_assert_int_eq(t.ok[0][1], 1);
		break;
	case CMD_RESUME: /* forward again from the pivot, which now succeeds */
	case CMD_COMPLETE:
		ck_assert_msg(info.state == SAGA_COMPLETED, "%s@%ld: %s", c, n,
		              saga_state_name(info.state));
		for (int s = 0; s < NSTEPS; s++)
			ck_assert_msg(t.ok[s][0] == 1, "%s@%ld: step %s has %d outcomes", c, n,
			              names[s], t.ok[s][0]);
		ck_assert_int_eq(t.ok[0][1] + t.ok[1][1], 0);
		break;
	case CMD_CANCEL: /* the pending b is uncertain: both compensated */
		ck_assert_msg(info.state == SAGA_COMPENSATED && info.reason == SAGA_REASON_CANCEL,
		              "%s@%ld: %s", c, n, saga_state_name(info.state));
		ck_assert_int_eq(t.ok[1][1], 1);
		ck_assert_int_eq(t.ok[0][1], 1);
		ck_assert_int_eq(t.ok[2][0], 0);
		break;
	}
	/* Every command is durable before its first event: recorded once. */
	ck_assert_int_eq(t.commands, cmd == CMD_COMPLETE ? 0 : 1);
	saga_engine_close(e);
	test_store_drop(path);
	tmpdir_remove(dir);
	return killed;
}

START_TEST(command_crash_points)
{
	enum command cmd = (enum command)_i;
	long n = 1;
	while (crash_once(cmd, n))
		n++;
	printf("crash[%s]: %ld crash points after the command, each recovered\n",
	       command_names[cmd], n - 1);
	ck_assert_int_ge(n - 1, 3);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("crash-commands");
	TCase *tc = tcase_create("commands");
	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, command_crash_points, CMD_RETRY, CMD_COMPLETE + 1);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
