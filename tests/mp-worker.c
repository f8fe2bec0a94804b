/* One process of the multi-process tests (test-multiproc.c): an engine on a
 * shared store, running the saga "order" whose callbacks record into a
 * participant ledger, a second SQLite file shared by every worker.
 *
 *   mp-worker --store S --ledger L --id I [--ids M] [--sagas N] [--threads T]
 *             [--lease MS] [--margin MS] [--step-ms MS] [--pace-ms MS]
 *             [--durability full|normal] [--until-final]
 *
 * The store S is a SQLite file or a PostgreSQL store name; durability is
 * NORMAL unless --durability full (what a server restart needs).
 *
 * It starts N sagas for each worker id I .. I+M-1, business keys "w<id>-<k>"
 * (a restarted worker finds its earlier ones: nothing is started twice), a
 * new one every --pace-ms, then
 * runs until SIGTERM, or with --until-final until no instance in the store is
 * unfinished. --threads 0 drives the engine from the main thread
 * (saga_run_due), so that no store transaction is open while a callback runs.
 *
 * The saga: reserve, charge (compensatable), confirm (pivot; fails for good
 * when the input says "fail"), notify (retriable; answers RETRY on its first
 * attempt when the input says "retry"). Sagas k % 3 == 0 fail, k % 4 == 1
 * retry.
 *
 * The ledger (WAL, every write a BEGIN IMMEDIATE transaction):
 *   calls(seq, kind 0 enter / 1 exit, enter_seq, pid, uid, step, phase,
 *         attempt, fence, verdict, at_ms): an enter row as a callback begins,
 *         an exit row (enter_seq names its enter) as it answers; two calls of
 *         one instance overlap when their [enter seq, exit seq] intersect.
 *   effects(key, n): effects applied per idempotency key (saga_step_key),
 *         counted only when the fenced participant guard says PROCEED.
 *   saga_guard, saga_guard_fence: the guard's own tables.
 *
 * MP_STOP="<step>:<action|compensation>" in the environment: the first
 * callback of that step and phase in this process stops the process
 * (SIGSTOP) right after its enter row is committed, before the guard.
 *
 * Exit status: 0 done; 2 usage; 3 ledger failure; 4 engine failure.
 * SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mp-time.h"
#include "saga.h"

static sqlite3 *ledger;
static pthread_mutex_t ledger_mu = PTHREAD_MUTEX_INITIALIZER;
static char stop_step[SAGA_NAME_MAX + 1];
static int stop_phase = -1;
static atomic_bool stopped_once;
static unsigned step_ms = 5;
static volatile sig_atomic_t quit;

static void on_term(int sig)
{
	(void)sig;
	quit = 1;
}

/* The ledger is the test's evidence: any failure ends the process. */
static void ledger_die(const char *what)
{
	fprintf(stderr, "mp-worker %d: ledger %s: %s\n", (int)getpid(), what,
	        ledger ? sqlite3_errmsg(ledger) : "not open");
	_exit(3);
}

static void ledger_exec(const char *sql)
{
	if (sqlite3_exec(ledger, sql, NULL, NULL, NULL) != SQLITE_OK)
		ledger_die(sql);
}

/* Inserts a calls row; returns its seq. */
static int64_t ledger_call(int kind, int64_t enter_seq, saga_step_ctx *ctx, int verdict)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(ledger,
	                       "INSERT INTO calls(kind, enter_seq, pid, uid, step, phase, attempt,"
	                       " fence, verdict, at_ms) VALUES (?,?,?,?,?,?,?,?,?,?)",
	                       -1, &st, NULL) != SQLITE_OK)
		ledger_die("prepare call");
	/* The uid is the key's first part, before "/". */
	const char *key = saga_step_key(ctx);
	const char *slash = strchr(key, '/');
	int ok = sqlite3_bind_int(st, 1, kind) == SQLITE_OK &&
	         (enter_seq ? sqlite3_bind_int64(st, 2, enter_seq) : sqlite3_bind_null(st, 2)) ==
	                 SQLITE_OK &&
	         sqlite3_bind_int(st, 3, (int)getpid()) == SQLITE_OK &&
	         sqlite3_bind_text(st, 4, key, slash ? (int)(slash - key) : -1, SQLITE_TRANSIENT) ==
	                 SQLITE_OK &&
	         sqlite3_bind_text(st, 5, saga_step_name(ctx), -1, SQLITE_TRANSIENT) == SQLITE_OK &&
	         sqlite3_bind_int(st, 6, (int)saga_step_phase(ctx)) == SQLITE_OK &&
	         sqlite3_bind_int64(st, 7, saga_step_attempt(ctx)) == SQLITE_OK &&
	         sqlite3_bind_int64(st, 8, saga_step_fence(ctx)) == SQLITE_OK &&
	         sqlite3_bind_int(st, 9, verdict) == SQLITE_OK &&
	         sqlite3_bind_int64(st, 10, wall_ms()) == SQLITE_OK;
	if (!ok || sqlite3_step(st) != SQLITE_DONE)
		ledger_die("insert call");
	sqlite3_finalize(st);
	return sqlite3_last_insert_rowid(ledger);
}

static void ledger_effect(const char *key)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(ledger,
	                       "INSERT INTO effects(key, n) VALUES (?, 1)"
	                       " ON CONFLICT(key) DO UPDATE SET n = n + 1",
	                       -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_DONE)
		ledger_die("count effect");
	sqlite3_finalize(st);
}

static bool input_says(saga_step_ctx *ctx, const char *flag)
{
	return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(saga_step_context(ctx), flag));
}

/* Every action and compensation of "order". */
static saga_step_result participant(saga_step_ctx *ctx, void *user)
{
	(void)user;
	saga_phase phase = saga_step_phase(ctx);
	const char *name = saga_step_name(ctx);

	pthread_mutex_lock(&ledger_mu);
	ledger_exec("BEGIN IMMEDIATE");
	int64_t enter = ledger_call(0, 0, ctx, -1);
	ledger_exec("COMMIT");
	/* Stopped holding the mutex: no other thread of this process is inside
	 * a ledger transaction, so the other processes are not blocked on it. */
	if ((int)phase == stop_phase && strcmp(name, stop_step) == 0 &&
	    !atomic_exchange(&stopped_once, true))
		raise(SIGSTOP);
	pthread_mutex_unlock(&ledger_mu);

	nap_ms(step_ms);

	bool fail = phase == SAGA_PHASE_ACTION && strcmp(name, "confirm") == 0 &&
	            input_says(ctx, "fail");
	bool retry = phase == SAGA_PHASE_ACTION && strcmp(name, "notify") == 0 &&
	             input_says(ctx, "retry") && saga_step_attempt(ctx) == 1;
	int verdict = -1;
	pthread_mutex_lock(&ledger_mu);
	ledger_exec("BEGIN IMMEDIATE");
	if (!fail && !retry) {
		saga_guard_verdict v;
		const char *akey = saga_step_action_key(ctx);
		int64_t fence = saga_step_fence(ctx);
		int rc = phase == SAGA_PHASE_ACTION
		                 ? saga_guard_action_fenced(ledger, akey, fence, &v)
		                 : saga_guard_compensation_fenced(ledger, akey, fence, &v);
		if (rc != SAGA_OK)
			ledger_die(saga_strerror(rc));
		if (v == SAGA_GUARD_PROCEED)
			ledger_effect(saga_step_key(ctx));
		verdict = (int)v;
	}
	ledger_call(1, enter, ctx, verdict);
	ledger_exec("COMMIT");
	pthread_mutex_unlock(&ledger_mu);

	if (fail)
		return SAGA_STEP_FAIL;
	if (retry)
		return SAGA_STEP_RETRY;
	switch ((saga_guard_verdict)verdict) {
	case SAGA_GUARD_REFUSED:
		return SAGA_STEP_FAIL;
	case SAGA_GUARD_STALE:
		return SAGA_STEP_RETRY; /* discarded: the instance is owned elsewhere */
	default:
		return SAGA_STEP_OK;
	}
}

static void ledger_open(const char *path)
{
	if (sqlite3_open_v2(path, &ledger, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
	    SQLITE_OK)
		ledger_die("open");
	sqlite3_busy_timeout(ledger, 60000);
	/* Changing the journal mode does not wait on the busy handler. */
	for (int tries = 0;; tries++) {
		int rc = sqlite3_exec(ledger, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
		if (rc == SQLITE_OK)
			break;
		if (rc != SQLITE_BUSY || tries == 3000)
			ledger_die("journal mode");
		nap_ms(10);
	}
	ledger_exec("BEGIN IMMEDIATE");
	ledger_exec("CREATE TABLE IF NOT EXISTS calls(seq INTEGER PRIMARY KEY AUTOINCREMENT,"
	            " kind INTEGER NOT NULL, enter_seq INTEGER, pid INTEGER NOT NULL,"
	            " uid TEXT NOT NULL, step TEXT NOT NULL, phase INTEGER NOT NULL,"
	            " attempt INTEGER NOT NULL, fence INTEGER NOT NULL, verdict INTEGER NOT NULL,"
	            " at_ms INTEGER NOT NULL)");
	ledger_exec("CREATE TABLE IF NOT EXISTS effects(key TEXT PRIMARY KEY, n INTEGER NOT NULL)");
	if (saga_guard_init(ledger) != SAGA_OK)
		ledger_die("guard init");
	ledger_exec("COMMIT");
}

static int define(saga_engine *engine)
{
	static const struct {
		const char *name;
		saga_step_kind kind;
	} steps[] = {
		{ "reserve", SAGA_STEP_COMPENSATABLE },
		{ "charge", SAGA_STEP_COMPENSATABLE },
		{ "confirm", SAGA_STEP_PIVOT },
		{ "notify", SAGA_STEP_RETRIABLE },
	};
	saga_definition *def = NULL;
	int rc = saga_definition_new(&def, "order", 1);
	for (size_t i = 0; rc == SAGA_OK && i < sizeof steps / sizeof steps[0]; i++) {
		saga_step_spec spec = { steps[i].name, steps[i].kind, participant,
			                steps[i].kind == SAGA_STEP_COMPENSATABLE ? participant
			                                                         : NULL,
			                NULL };
		rc = saga_definition_add_step(def, &spec);
	}
	/* Retries never run out: every answer but the pivot's FAIL is transient. */
	saga_retry_policy policy = {
		0, 0, SAGA_BACKOFF_EXPONENTIAL, 20, 200, 2.0, SAGA_JITTER_FULL
	};
	if (rc == SAGA_OK)
		rc = saga_definition_set_retry(def, NULL, &policy);
	if (rc == SAGA_OK)
		rc = saga_definition_set_retry(def, "notify", &policy);
	if (rc == SAGA_OK)
		rc = saga_definition_set_compensation_retry(def, NULL, &policy);
	if (rc == SAGA_OK)
		rc = saga_engine_register(engine, def);
	saga_definition_free(def);
	return rc;
}

static bool transient(int rc)
{
	return rc == SAGA_EIO || rc == SAGA_EBUSY || rc == SAGA_EFENCED;
}

/* Starts what is not started yet, one every pace_ms (so that new work keeps
 * coming while the test kills processes). */
static int start_sagas(saga_engine *engine, int first_id, int nids, int nsagas, unsigned pace_ms)
{
	for (int id = first_id; id < first_id + nids; id++) {
		for (int k = 0; k < nsagas && !quit; k++) {
			char bkey[64];
			snprintf(bkey, sizeof bkey, "w%d-%d", id, k);
			cJSON *input = cJSON_CreateObject();
			if (!input || !cJSON_AddBoolToObject(input, "fail", k % 3 == 0) ||
			    !cJSON_AddBoolToObject(input, "retry", k % 4 == 1)) {
				cJSON_Delete(input);
				return SAGA_ENOMEM;
			}
			int64_t sid = 0;
			int created = 0;
			int rc = saga_start(engine, &sid, &created, "order", bkey, input);
			/* The store out of reach for a while (a server restarting),
			 * or the lease lost (a pause past it: the engine registers
			 * again), fails the call, not the engine: start it again,
			 * for up to a minute; its business key keeps it from
			 * starting twice. */
			for (int tries = 0; transient(rc) && tries < 600 && !quit; tries++) {
				nap_ms(100);
				rc = saga_start(engine, &sid, &created, "order", bkey, input);
			}
			cJSON_Delete(input);
			if (rc != SAGA_OK)
				return rc;
			if (created && pace_ms)
				nap_ms(pace_ms);
		}
	}
	return SAGA_OK;
}

static int count_one(const saga_instance_info *info, void *user)
{
	(void)info;
	(*(int *)user)++;
	return 1; /* one is enough */
}

static bool all_ended(saga_engine *engine)
{
	int n = 0;
	for (int state = SAGA_RUNNING; state <= SAGA_COMPENSATING && n == 0; state++)
		if (saga_list(engine, state, count_one, &n) != SAGA_OK)
			return false;
	return n == 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: mp-worker --store S --ledger L --id I [--ids M] [--sagas N]"
	                " [--threads T] [--lease MS] [--margin MS] [--step-ms MS] [--pace-ms MS]"
	                " [--durability full|normal] [--until-final]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *store = NULL, *ledger_path = NULL;
	int id = -1, nids = 1, nsagas = 0, threads = 4, until_final = 0;
	unsigned lease = 0, margin = 0, pace_ms = 0;
	saga_durability durability = SAGA_DURABILITY_NORMAL;
	static const struct option opts[] = {
		{ "store", required_argument, NULL, 's' },
		{ "ledger", required_argument, NULL, 'l' },
		{ "id", required_argument, NULL, 'i' },
		{ "ids", required_argument, NULL, 'm' },
		{ "sagas", required_argument, NULL, 'n' },
		{ "threads", required_argument, NULL, 't' },
		{ "lease", required_argument, NULL, 'L' },
		{ "margin", required_argument, NULL, 'M' },
		{ "step-ms", required_argument, NULL, 'S' },
		{ "until-final", no_argument, NULL, 'f' },
		{ "pace-ms", required_argument, NULL, 'P' },
		{ "durability", required_argument, NULL, 'D' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			store = optarg;
			break;
		case 'l':
			ledger_path = optarg;
			break;
		case 'i':
			id = atoi(optarg);
			break;
		case 'm':
			nids = atoi(optarg);
			break;
		case 'n':
			nsagas = atoi(optarg);
			break;
		case 't':
			threads = atoi(optarg);
			break;
		case 'L':
			lease = (unsigned)atoi(optarg);
			break;
		case 'M':
			margin = (unsigned)atoi(optarg);
			break;
		case 'S':
			step_ms = (unsigned)atoi(optarg);
			break;
		case 'f':
			until_final = 1;
			break;
		case 'P':
			pace_ms = (unsigned)atoi(optarg);
			break;
		case 'D':
			if (strcmp(optarg, "full") != 0 && strcmp(optarg, "normal") != 0)
				usage();
			durability = strcmp(optarg, "full") == 0 ? SAGA_DURABILITY_FULL
			                                         : SAGA_DURABILITY_NORMAL;
			break;
		default:
			usage();
		}
	}
	if (!store || !ledger_path || id < 0 || nids < 1 || nsagas < 0 || threads < 0)
		usage();
	const char *stop = getenv("MP_STOP");
	if (stop && *stop) {
		const char *colon = strchr(stop, ':');
		if (!colon || (size_t)(colon - stop) > SAGA_NAME_MAX)
			usage();
		memcpy(stop_step, stop, (size_t)(colon - stop));
		stop_phase = strcmp(colon + 1, "compensation") == 0 ? SAGA_PHASE_COMPENSATION
		                                                    : SAGA_PHASE_ACTION;
	}

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_term;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	/* The test starts workers with SIGTERM blocked (see spawn). */
	sigset_t term;
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	sigprocmask(SIG_UNBLOCK, &term, NULL);

	ledger_open(ledger_path);

	saga_options o = SAGA_OPTIONS_INIT;
	o.path = store;
	o.durability = durability; /* NORMAL survives a process crash */
	o.workers = (unsigned)threads;
	o.deferred_start = 1;
	o.lease_ms = lease;
	o.lease_margin_ms = margin;
	o.busy_timeout_ms = 30000;
	saga_engine *engine = NULL;
	char err[256];
	int rc = saga_engine_open(&engine, &o, err, sizeof err);
	if (rc != SAGA_OK) {
		fprintf(stderr, "mp-worker %d: open: %s: %s\n", (int)getpid(), saga_strerror(rc),
		        err);
		return 4;
	}
	if ((rc = define(engine)) != SAGA_OK || (rc = saga_engine_start(engine)) != SAGA_OK ||
	    (rc = start_sagas(engine, id, nids, nsagas, pace_ms)) != SAGA_OK) {
		fprintf(stderr, "mp-worker %d: setup: %s: %s\n", (int)getpid(), saga_strerror(rc),
		        saga_engine_errmsg(engine));
		saga_engine_close(engine);
		return 4;
	}

	int failures = 0;
	while (!quit) {
		unsigned ran = 0;
		if (threads == 0) {
			rc = saga_run_due(engine, &ran);
			/* Ownership lost (a pause past the lease) is survivable:
			 * the engine registers again. */
			if (rc != SAGA_OK && rc != SAGA_EFENCED) {
				fprintf(stderr, "mp-worker %d: round: %s: %s\n", (int)getpid(),
				        saga_strerror(rc), saga_engine_errmsg(engine));
				if (++failures > 100)
					break;
			}
		}
		if (until_final && all_ended(engine))
			break;
		if (ran == 0)
			nap_ms(threads == 0 ? 10 : 50);
	}
	saga_engine_close(engine);
	sqlite3_close(ledger);
	return failures > 100 ? 4 : 0;
}
