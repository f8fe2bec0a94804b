/* A cancel, or an early completion (saga_complete before the async action
 * answered PENDING), given while an attempt runs, survives a crash of the
 * process that runs it: the command is a row in the store, and whoever
 * recovers the instance carries it out once the attempt answers.
 *
 * A child process starts an instance whose step "b" blocks on a pipe the
 * parent never writes. While b blocks, the command is given, from another
 * thread of the child or from the parent through its own engine on the same
 * store, and returns SAGA_OK; then the child is SIGKILLed, b still blocked.
 * The parent opens the store again and runs: the attempt is recorded as
 * interrupted, b is invoked again with the same key, and the command is
 * carried out after its answer. Cancel: b answers OK, the instance ends
 * COMPENSATED (reason cancel) with one OPERATOR "cancel". Completion: b
 * answers PENDING again, and the stored completion completes it: the
 * instance goes on to COMPLETED with no further saga_complete, with the
 * completion's output in the context, and one EARLY_COMPLETION (when given
 * by the owner's own process; see the known gap below). In a second test
 * the recovery is killed too, at each of its events in turn, before a last
 * recovery: the command is still carried out once.
 * SPDX-License-Identifier: MIT */
#include "test-common.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define NSTEPS 4
static const char *const names[NSTEPS] = { "a", "b", "p", "r" };

enum verb { V_CANCEL, V_COMPLETE };
enum origin { O_THREAD, O_PROCESS };
static const char *const verb_names[] = { "cancel", "complete" };
static const char *const origin_names[] = { "another thread", "another process" };

/* The participant. Each action call appends "<step> <key> <paid>" to
 * calls_path (one write(2), O_APPEND: the line survives the caller's
 * death); paid is what the call finds under "paid" in the context, -1 if
 * nothing. In the first child, b then writes its key to notify_fd and
 * blocks reading gate_fd; in the processes after it, it answers at once. */
static char calls_path[320];
static int notify_fd = -1;
static int gate_fd = -1;
static bool b_pending; /* b answers PENDING (async) */

static saga_step_result step(saga_step_ctx *ctx, void *user)
{
	(void)user;
	const char *n = saga_step_name(ctx);
	if (saga_step_phase(ctx) == SAGA_PHASE_COMPENSATION)
		return SAGA_STEP_OK;
	const cJSON *paid = cJSON_GetObjectItemCaseSensitive(saga_step_context(ctx), "paid");
	char line[260];
	int len = snprintf(line, sizeof(line), "%s %s %d\n", n, saga_step_key(ctx),
	                   cJSON_IsNumber(paid) ? paid->valueint : -1);
	int fd = open(calls_path, O_WRONLY | O_APPEND | O_CREAT, 0600);
	if (fd < 0 || write(fd, line, (size_t)len) != len)
		_exit(9);
	close(fd);
	if (strcmp(n, "b") != 0)
		return SAGA_STEP_OK;
	if (notify_fd >= 0) {
		len = snprintf(line, sizeof(line), "%s\n", saga_step_key(ctx));
		if (write(notify_fd, line, (size_t)len) != len)
			_exit(10);
	}
	if (gate_fd >= 0) {
		char c;
		/* Nothing is ever written: this returns only if the parent dies. */
		if (read(gate_fd, &c, 1) != 0)
			_exit(11);
		_exit(12);
	}
	return b_pending ? SAGA_STEP_PENDING : SAGA_STEP_OK;
}

/* Opens the store with the definition "qc": a and b compensatable, p the
 * pivot, r retriable. NULL on failure (the child cannot use ck_assert). */
static saga_engine *open_store(const char *path, unsigned workers)
{
	saga_options o = SAGA_OPTIONS_INIT;
	o.path = path;
	o.durability = SAGA_DURABILITY_NORMAL;
	o.workers = workers;
	saga_engine *e;
	if (saga_engine_open(&e, &o, NULL, 0) != SAGA_OK)
		return NULL;
	saga_definition *d;
	if (saga_definition_new(&d, "qc", 1) != SAGA_OK) {
		saga_engine_close(e);
		return NULL;
	}
	int rc = SAGA_OK;
	for (int i = 0; i < NSTEPS && rc == SAGA_OK; i++) {
		saga_step_spec s = { names[i],
			             i < 2    ? SAGA_STEP_COMPENSATABLE
			             : i == 2 ? SAGA_STEP_PIVOT
			                      : SAGA_STEP_RETRIABLE,
			             step, i < 2 ? step : NULL, NULL };
		rc = saga_definition_add_step(d, &s);
	}
	if (rc == SAGA_OK)
		rc = saga_engine_register(e, d);
	saga_definition_free(d);
	if (rc == SAGA_OK)
		rc = saga_engine_add_listener(e, kill_at_event, NULL);
	if (rc) {
		saga_engine_close(e);
		return NULL;
	}
	return e;
}

static int give(saga_engine *e, enum verb v, int64_t id, const char *key)
{
	if (v == V_CANCEL)
		return saga_cancel(e, id);
	cJSON *out = cJSON_CreateObject();
	if (!out || !cJSON_AddNumberToObject(out, "paid", 42)) {
		cJSON_Delete(out);
		return SAGA_ENOMEM;
	}
	return saga_complete(e, key, SAGA_STEP_OK, out);
}

/* Reads one line (without its '\n'); false at end of file. */
static bool read_line(int fd, char *buf, size_t size)
{
	size_t n = 0;
	char c;
	while (read(fd, &c, 1) == 1) {
		if (c == '\n') {
			buf[n] = '\0';
			return true;
		}
		if (n + 1 < size)
			buf[n++] = c;
	}
	return false;
}

/* The child's commander, on another thread: waits for b's key, gives the
 * command, and tells the parent "<rc> <key>". */
typedef struct commander {
	saga_engine *e;
	enum verb verb;
	int64_t id;
	int from_b;    /* read end of b's notify pipe */
	int to_parent; /* write end */
} commander;

static void *commander_main(void *arg)
{
	commander *c = arg;
	char key[200], line[260];
	if (!read_line(c->from_b, key, sizeof(key)))
		_exit(13);
	int rc = give(c->e, c->verb, c->id, key);
	int len = snprintf(line, sizeof(line), "%d %s\n", rc, key);
	if (write(c->to_parent, line, (size_t)len) != len)
		_exit(14);
	return NULL;
}

/* The child: starts the instance and runs it until b blocks; then waits to
 * be killed. Caller-driven (the commander is a thread of its own; the main
 * thread blocks inside b) or with a worker (the main thread commands). */
static void child_main(const char *path, enum verb v, enum origin o, unsigned workers,
                       int to_parent, int gate)
{
	gate_fd = gate;
	b_pending = v == V_COMPLETE;
	commander c = { NULL, v, 0, -1, to_parent };
	/* Set before the start: with a worker, b may run at once. */
	if (o == O_PROCESS) {
		notify_fd = to_parent;
	} else {
		int p[2];
		if (pipe(p))
			_exit(22);
		notify_fd = p[1];
		c.from_b = p[0];
	}
	saga_engine *e = open_store(path, workers);
	if (!e)
		_exit(20);
	c.e = e;
	if (saga_start(e, &c.id, NULL, "qc", "order-1", NULL) != SAGA_OK)
		_exit(21);
	if (workers) {
		if (o == O_THREAD)
			commander_main(&c);
		for (;;)
			pause();
	}
	pthread_t t;
	if (o == O_THREAD && pthread_create(&t, NULL, commander_main, &c))
		_exit(23);
	saga_run_until_idle(e); /* blocks in b */
	_exit(24);
}

typedef struct tally {
	int starts[NSTEPS][2];
	int ok[NSTEPS][2];
	int interrupted[NSTEPS];
	int async_done[NSTEPS];
	int cancels, operator_events, early;
} tally;

static int count(const saga_event *ev, void *user)
{
	tally *t = user;
	if (ev->type == SAGA_EVENT_ATTEMPT_START && ev->step >= 0)
		t->starts[ev->step][ev->phase]++;
	if (ev->type == SAGA_EVENT_ATTEMPT_END && ev->step >= 0) {
		if (ev->outcome == SAGA_OUTCOME_OK)
			t->ok[ev->step][ev->phase]++;
		if (ev->phase == SAGA_PHASE_ACTION && strncmp(ev->detail, "interrupted", 11) == 0)
			t->interrupted[ev->step]++;
		if (ev->outcome == SAGA_OUTCOME_OK &&
		    strcmp(ev->detail, "completed asynchronously") == 0)
			t->async_done[ev->step]++;
	}
	if (ev->type == SAGA_EVENT_OPERATOR) {
		t->operator_events++;
		if (strcmp(ev->detail, "cancel") == 0)
			t->cancels++;
	}
	if (ev->type == SAGA_EVENT_EARLY_COMPLETION && ev->step == 1 &&
	    ev->phase == SAGA_PHASE_ACTION)
		t->early++;
	return 0;
}

/* Rows in the store's commands table, read on a connection of its own. */
static int64_t command_rows(const char *path)
{
	return test_store_int(path, "SELECT count(*) FROM commands");
}

/* The calls the participant logged. */
typedef struct calls {
	int n[NSTEPS];
	int other_key; /* calls of b whose key is not the first child's */
	int unpaid;    /* calls of p or r without the completion's output */
} calls;

static void read_calls(calls *c, const char *key)
{
	memset(c, 0, sizeof(*c));
	FILE *f = fopen(calls_path, "r");
	ck_assert_ptr_nonnull(f);
	char name[8], k[260];
	int paid;
	while (fscanf(f, "%7s %259s %d", name, k, &paid) == 3) {
		for (int s = 0; s < NSTEPS; s++)
			if (strcmp(name, names[s]) == 0)
				c->n[s]++;
		if (strcmp(name, "b") == 0 && strcmp(k, key) != 0)
			c->other_key++;
		if ((strcmp(name, "p") == 0 || strcmp(name, "r") == 0) && paid != 42)
			c->unpaid++;
	}
	fclose(f);
}

/* A case: bit 0 of i the verb, bit 1 where the command comes from, bit 2
 * whether the child runs with a worker thread. */
typedef struct scenario {
	enum verb verb;
	enum origin origin;
	unsigned workers;
	const char *what, *from;
	char dir[256], path[300];
	char key[260]; /* b's key in the first child */
} scenario;

static void scenario_init(scenario *sc, int i)
{
	sc->verb = (enum verb)(i & 1);
	sc->origin = (enum origin)((i >> 1) & 1);
	sc->workers = (i >> 2) & 1;
	sc->what = verb_names[sc->verb];
	sc->from = origin_names[sc->origin];
	tmpdir_make(sc->dir, sizeof(sc->dir));
	test_store_name(sc->path, sizeof(sc->path), sc->dir, "s.db");
	snprintf(calls_path, sizeof(calls_path), "%s/calls", sc->dir);
	b_pending = sc->verb == V_COMPLETE;
	kill_at_event_arm(0);
}

/* The first child: b blocks, the command is given and returns 0, the child
 * is SIGKILLed with b still blocked. */
static void command_then_kill(scenario *sc)
{
	int up[2], gate[2];
	ck_assert_int_eq(pipe(up), 0);
	ck_assert_int_eq(pipe(gate), 0);
	fflush(stdout);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(up[0]);
		close(gate[1]);
		child_main(sc->path, sc->verb, sc->origin, sc->workers, up[1], gate[0]);
	}
	close(up[1]);
	close(gate[0]);

	char line[260];
	int rc = -1;
	ck_assert_msg(read_line(up[0], line, sizeof(line)), "%s from %s: the child died early",
	              sc->what, sc->from);
	if (sc->origin == O_THREAD) {
		ck_assert_int_eq(sscanf(line, "%d %259s", &rc, sc->key), 2);
	} else {
		/* b blocks in the child: the command from this process's engine. */
		snprintf(sc->key, sizeof(sc->key), "%s", line);
		saga_engine *e = open_store(sc->path, 0);
		ck_assert_msg(e != NULL, "%s from %s: open beside the child", sc->what, sc->from);
		int64_t id;
		ck_assert_int_eq(saga_find(e, &id, "order-1"), SAGA_OK);
		rc = give(e, sc->verb, id, sc->key);
		saga_engine_close(e);
	}
	ck_assert_msg(rc == SAGA_OK, "%s from %s while b ran: %d", sc->what, sc->from, rc);
	/* b has not returned (its gate is closed): the command is only in the
	 * store. */
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
	              "%s from %s: the child ended otherwise (status %d)", sc->what, sc->from,
	              status);
	close(up[0]);
	close(gate[1]);
	ck_assert_msg(command_rows(sc->path) == 1, "%s from %s: the command is not in the store",
	              sc->what, sc->from);
}

/* A recovery in a child killed at its n-th event; false when it finished
 * first. */
static bool recovery_killed_at(const scenario *sc, long n)
{
	test_store_owners_dead(sc->path);
	fflush(stdout);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		kill_at_event_arm(n);
		saga_engine *e = open_store(sc->path, 0);
		if (!e)
			_exit(30);
		int rc = saga_run_until_idle(e);
		saga_engine_close(e);
		_exit(rc == SAGA_OK ? 0 : 31);
	}
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	bool killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
	ck_assert_msg(killed || (WIFEXITED(status) && WEXITSTATUS(status) == 0),
	              "%s from %s, recovery killed at %ld: status %d", sc->what, sc->from, n,
	              status);
	return killed;
}

/* The last recovery, here, and the contract. `once`: nothing died but the
 * first child. */
static void recover_and_check(const scenario *sc, bool once)
{
	test_store_owners_dead(sc->path);
	saga_engine *e = open_store(sc->path, 0);
	ck_assert_ptr_nonnull(e);
	ck_assert_int_eq(saga_run_until_idle(e), SAGA_OK);
	int64_t id;
	ck_assert_int_eq(saga_find(e, &id, "order-1"), SAGA_OK);
	saga_instance_info info;
	ck_assert_int_eq(saga_get(e, &info, id), SAGA_OK);
	tally t;
	memset(&t, 0, sizeof(t));
	ck_assert_int_eq(saga_history(e, id, count, &t), SAGA_OK);
	saga_engine_close(e);
	calls c;
	read_calls(&c, sc->key);
	const char *mode = sc->workers ? "a worker" : "caller-driven";

	/* The attempt that died is counted interrupted (and so is every
	 * other start of b without an answer); b ran again with the same key
	 * (once, when only the first child died). */
	int starts = t.starts[1][SAGA_PHASE_ACTION];
	ck_assert_int_eq(c.other_key, 0);
	ck_assert_int_ge(c.n[1], 2);
	ck_assert_int_le(c.n[1], starts);
	ck_assert_int_eq(t.interrupted[1], starts - 1);
	if (once)
		ck_assert_int_eq(starts, 2);
	if (sc->verb == V_CANCEL) {
		ck_assert_msg(info.state == SAGA_COMPENSATED && info.reason == SAGA_REASON_CANCEL,
		              "cancel from %s, %s: %s", sc->from, mode,
		              saga_state_name(info.state));
		ck_assert_int_eq(t.cancels, 1);
		ck_assert_int_eq(t.operator_events, 1);
		ck_assert_int_eq(t.ok[1][SAGA_PHASE_ACTION], 1);
		ck_assert_int_eq(t.ok[1][SAGA_PHASE_COMPENSATION], 1);
		ck_assert_int_eq(t.ok[0][SAGA_PHASE_COMPENSATION], 1);
		ck_assert_int_eq(t.starts[2][SAGA_PHASE_ACTION], 0);
		ck_assert_int_eq(c.n[2], 0);
	} else {
		ck_assert_msg(info.state == SAGA_COMPLETED, "complete from %s, %s: %s", sc->from,
		              mode, saga_state_name(info.state));
		/* From this process or another: the completion came before the
		 * attempt answered. */
		ck_assert_int_eq(t.early, 1);
		ck_assert_int_eq(t.async_done[1], 1);
		for (int s = 0; s < NSTEPS; s++)
			ck_assert_msg(t.ok[s][SAGA_PHASE_ACTION] == 1, "step %s: %d outcomes",
			              names[s], t.ok[s][SAGA_PHASE_ACTION]);
		ck_assert_int_eq(
		        t.ok[0][SAGA_PHASE_COMPENSATION] + t.ok[1][SAGA_PHASE_COMPENSATION], 0);
		ck_assert_int_eq(t.operator_events, 0);
		/* The completion's output reached the steps after b. */
		ck_assert_int_ge(c.n[2], 1);
		ck_assert_int_eq(c.unpaid, 0);
	}
	ck_assert_int_eq(command_rows(sc->path), 0); /* carried out, then gone */
}

START_TEST(command_survives_kill)
{
	scenario sc;
	scenario_init(&sc, _i);
	command_then_kill(&sc);
	recover_and_check(&sc, true);
	test_store_drop(sc.path);
	tmpdir_remove(sc.dir);
}
END_TEST

/* The same, and the recovery is killed too, at each of its events in turn
 * (listeners run after the event's commit): the command is carried out
 * once whichever transaction the second death follows. */
START_TEST(recovery_killed_too)
{
	long n = 1;
	for (;; n++) {
		scenario sc;
		scenario_init(&sc, _i);
		command_then_kill(&sc);
		bool killed = recovery_killed_at(&sc, n);
		recover_and_check(&sc, false);
		test_store_drop(sc.path);
		tmpdir_remove(sc.dir);
		if (!killed)
			break;
	}
	printf("%s from %s, %s: recovery killed at %ld points, each recovered\n",
	       verb_names[_i & 1], origin_names[(_i >> 1) & 1],
	       (_i >> 2) & 1 ? "a worker" : "caller-driven", n - 1);
	ck_assert_int_ge(n - 1, 4);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("queued-commands");
	TCase *tc = tcase_create("kill");
	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, command_survives_kill, 0, 8);
	tcase_add_loop_test(tc, recovery_killed_too, 0, 8);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
