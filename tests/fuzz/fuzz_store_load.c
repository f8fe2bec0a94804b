/* Fuzz target: loading stored contexts and histories.
 *
 * A store file is hostile input too: it may be damaged, edited by hand, or
 * written by a buggy older version. This target writes the fuzz input into
 * a real store, with its own SQLite connection, as one instance row and its
 * history, then opens an engine on that store (which recovers the instance)
 * and runs a small program of API calls against it. Whatever is stored,
 * every call must answer a documented code: never crash, leak or hang.
 *
 * One store per process; the rows are replaced for every input. The engine
 * is reopened for every input, so that no state carries over from one
 * input to the next (an engine that stayed open would not rescan the rows
 * it did not write) and a crash replays from its input alone.
 *
 * Input: lines separated by '\n' (text, so seeds can be written by hand):
 *   1. "OPS SCRIPT": OPS is one letter per API call (see run_op); SCRIPT is
 *      one letter per step callback invocation, saying how it answers
 *      (see step_fn). Empty: OPS "GCHRGCHLN".
 *   2. the instance row, tokens separated by blanks, in this order:
 *        def_name def_version state phase step attempt inflight pending
 *        pivot_done reason fwd_started comp_done_any due_at deadline_at
 *        attempt_deadline step_since prev_delay created_at updated_at
 *      A token is an integer (strtoll), "@N" for the fake clock's start
 *      plus N, "'text" for a text value, or "null"; def_name is text
 *      unless given as "null" or "'text". Missing tokens: "fuzz", 1, then 0.
 *   3. the stored context (any bytes; normally a JSON object)
 *   4. the error text
 *   5. the business key ("-" or empty: none)
 *   6. the uid (empty: a valid 32-hex-digit one)
 *   7+. history rows: "type state step phase attempt outcome at detail..."
 *
 * SPDX-License-Identifier: MIT */
#include "fuzz.h"

#include "saga.h"

#include <cjson/cJSON.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CLOCK_START 1000000000000ULL /* 2001-09-09, in ms */
#define DEFAULT_UID "00112233445566778899aabbccddeeff"
#define MAX_OPS     48
#define MAX_HISTORY 64
#define INSTANCE_ID 1

/* ---- process-wide state ------------------------------------------------ */

static char tmp_dir[256];
static char store_path[300];
static sqlite3 *db; /* the target's own connection to the store */
static sqlite3_stmt *insert_instance, *insert_history;
static saga_definition *def_v1, *def_v2;

static struct {
	uint64_t wall, mono;
} fake;

static uint64_t fake_wall(void *user)
{
	(void)user;
	return fake.wall;
}

static uint64_t fake_mono(void *user)
{
	(void)user;
	return fake.mono;
}

static void advance_clock(uint64_t ms)
{
	fake.wall += ms;
	fake.mono += ms;
}

/* What the step callbacks answer, one letter per invocation. */
static struct {
	const char *s;
	size_t len, pos;
	unsigned int calls;
} script;

/* ---- step callbacks ---------------------------------------------------- */

/* o: OK; u: OK and puts a value; e: OK with an empty key put (refused);
 * f: FAIL; r: RETRY; p: PENDING; x: an invalid answer; l: OK after the
 * clock moved 10 minutes (late); anything else or none left: OK. */
static saga_step_result step_fn(saga_step_ctx *ctx, void *user)
{
	const cJSON *c = saga_step_context(ctx);
	char ch = script.pos < script.len ? script.s[script.pos++] : 'o';

	(void)user;
	script.calls++;
	FUZZ_ASSERT(cJSON_IsObject(c), "a step sees a context that is not an object");
	FUZZ_ASSERT(saga_step_name(ctx) != NULL && saga_step_key(ctx) != NULL &&
	                    saga_step_action_key(ctx) != NULL,
	            "a step context without names");
	FUZZ_ASSERT(saga_step_attempt(ctx) >= 1, "an attempt numbered 0");
	FUZZ_ASSERT(saga_step_instance(ctx) > 0, "a step of no instance");
	switch (ch) {
	case 'u': {
		cJSON *copy = cJSON_Duplicate(c, 1);

		/* Replaces or adds a member, sometimes one the context has. */
		saga_step_put(ctx,
		              c->child != NULL && c->child->string != NULL ? c->child->string
		                                                           : "echo",
		              copy != NULL ? copy : cJSON_CreateNull());
		saga_step_put(ctx, "n", cJSON_CreateNumber(script.calls));
		return SAGA_STEP_OK;
	}
	case 'e':
		FUZZ_ASSERT(saga_step_put(ctx, "", cJSON_CreateTrue()) == SAGA_EINVAL,
		            "saga_step_put accepted an empty key");
		return SAGA_STEP_OK;
	case 'f':
		saga_step_set_error(ctx, "fuzz: failed");
		return SAGA_STEP_FAIL;
	case 'r':
		saga_step_set_error(ctx, "fuzz: try again");
		return SAGA_STEP_RETRY;
	case 'p':
		return SAGA_STEP_PENDING;
	case 'x':
		return (saga_step_result)7;
	case 'l':
		advance_clock(600000);
		return SAGA_STEP_OK;
	default:
		return SAGA_STEP_OK;
	}
}

/* ---- setup ------------------------------------------------------------- */

static void die(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_store_load: %s: %s\n", what, detail ? detail : "");
	abort();
}

static saga_definition *make_def(int version)
{
	saga_definition *d = NULL;

	if (saga_definition_new(&d, "fuzz", version) != 0)
		die("definition", "new");
	if (version == 1) {
		/* Two compensatable steps (one behind a breaker), a pivot, a
		 * retriable step; a timeout on the first. */
		static const saga_step_spec steps[] = {
			{ "a", SAGA_STEP_COMPENSATABLE, step_fn, step_fn, NULL },
			{ "b", SAGA_STEP_COMPENSATABLE, step_fn, step_fn, NULL },
			{ "p", SAGA_STEP_PIVOT, step_fn, NULL, NULL },
			{ "r", SAGA_STEP_RETRIABLE, step_fn, NULL, NULL },
		};
		for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++)
			if (saga_definition_add_step(d, &steps[i]) != 0)
				die("definition", "add step");
		if (saga_definition_set_timeout(d, "a", 500, 0) != 0 ||
		    saga_definition_set_breaker(d, "b", "bk") != 0)
			die("definition", "policies");
	} else {
		/* One retriable step, immediate retries, a deadline. */
		static const saga_step_spec only = { "only", SAGA_STEP_RETRIABLE, step_fn, NULL,
			                             NULL };
		static const saga_retry_policy retry = { 2, 0,   SAGA_BACKOFF_CONSTANT, 0,
			                                 0, 2.0, SAGA_JITTER_NONE };
		if (saga_definition_add_step(d, &only) != 0 ||
		    saga_definition_set_retry(d, NULL, &retry) != 0 ||
		    saga_definition_set_deadline(d, 3600000, 600000) != 0)
			die("definition", "policies");
	}
	return d;
}

static saga_engine *engine_open(void)
{
	saga_options o = SAGA_OPTIONS_INIT;
	saga_breaker_config bc = SAGA_BREAKER_CONFIG_INIT;
	saga_engine *e = NULL;
	char msg[256];
	int rc;

	o.path = store_path;
	o.durability = SAGA_DURABILITY_NORMAL;
	o.seed = 1;
	o.max_in_flight = 4;
	o.busy_timeout_ms = 1000;
	o.clock.wall_ms = fake_wall;
	o.clock.mono_ms = fake_mono;
	if ((rc = saga_engine_open(&e, &o, msg, sizeof(msg))) != 0)
		die("open", msg);
	bc.window_size = 2;
	bc.minimum_calls = 1;
	bc.open_wait_ms = 1000;
	bc.half_open_calls = 1;
	if (saga_engine_register(e, def_v1) != 0 || saga_engine_register(e, def_v2) != 0 ||
	    saga_engine_add_breaker(e, "bk", &bc) != 0)
		die("register", saga_engine_errmsg(e));
	return e;
}

static void cleanup(void)
{
	char p[320];

	sqlite3_finalize(insert_instance);
	sqlite3_finalize(insert_history);
	sqlite3_close(db);
	saga_definition_free(def_v1);
	saga_definition_free(def_v2);
	if (tmp_dir[0] == '\0')
		return;
	unlink(store_path);
	snprintf(p, sizeof(p), "%s-wal", store_path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", store_path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-lock", store_path);
	unlink(p);
	rmdir(tmp_dir);
}

static void setup(void)
{
	const char *base = getenv("TMPDIR");

	snprintf(tmp_dir, sizeof(tmp_dir), "%s/saga-fuzz-XXXXXX",
	         base != NULL && *base != '\0' ? base : "/tmp");
	if (mkdtemp(tmp_dir) == NULL)
		die("mkdtemp", tmp_dir);
	snprintf(store_path, sizeof(store_path), "%s/store.db", tmp_dir);
	atexit(cleanup);
	def_v1 = make_def(1);
	def_v2 = make_def(2);
	/* The engine creates the schema; then the target's own connection. */
	saga_engine_close(engine_open());
	if (sqlite3_open(store_path, &db) != SQLITE_OK ||
	    sqlite3_exec(db, "PRAGMA synchronous=OFF", NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_busy_timeout(db, 1000) != SQLITE_OK ||
	    sqlite3_prepare_v2(
	            db,
	            "INSERT INTO instances(id, uid, def_name, def_version, business_key,"
	            " state, phase, step, attempt, inflight, pending, pivot_done, reason,"
	            " fwd_started, comp_done_any, due_at, deadline_at, attempt_deadline,"
	            " step_since, prev_delay, created_at, updated_at, error, context,"
	            " finished_at)"
	            " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14,"
	            " ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24,"
	            " CASE WHEN ?6 >= 3 THEN ?22 ELSE 0 END)",
	            -1, &insert_instance, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db,
	                       "INSERT INTO history(instance, type, state, step, phase, attempt,"
	                       " outcome, at, detail, seq)"
	                       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
	                       -1, &insert_history, NULL) != SQLITE_OK)
		die("sqlite", db != NULL ? sqlite3_errmsg(db) : "open");
}

/* ---- reading the input ------------------------------------------------- */

typedef struct span {
	const char *p;
	size_t n;
} span;

/* Cuts the next line off *in. */
static span next_line(span *in)
{
	span line = *in;
	const char *nl = in->n ? memchr(in->p, '\n', in->n) : NULL;

	if (nl != NULL) {
		line.n = (size_t)(nl - in->p);
		in->p = nl + 1;
		in->n -= line.n + 1;
	} else {
		in->p += in->n;
		in->n = 0;
	}
	return line;
}

/* Cuts the next blank-separated token off *in (n = 0 when none is left). */
static span next_token(span *in)
{
	span t;

	while (in->n && (*in->p == ' ' || *in->p == '\t' || *in->p == '\r')) {
		in->p++;
		in->n--;
	}
	t.p = in->p;
	t.n = 0;
	while (t.n < in->n && t.p[t.n] != ' ' && t.p[t.n] != '\t' && t.p[t.n] != '\r')
		t.n++;
	in->p += t.n;
	in->n -= t.n;
	return t;
}

static long long to_int(span t)
{
	char buf[32];
	size_t n = t.n < sizeof(buf) - 1 ? t.n : sizeof(buf) - 1;

	memcpy(buf, t.p, n);
	buf[n] = '\0';
	return strtoll(buf, NULL, 10);
}

/* Binds one token (see the header comment); `dflt` when there is none. */
static int bind_token(sqlite3_stmt *st, int i, span t, long long dflt)
{
	if (t.n == 0)
		return sqlite3_bind_int64(st, i, dflt);
	if (t.p[0] == '\'')
		return sqlite3_bind_text(st, i, t.p + 1, (int)(t.n - 1), SQLITE_TRANSIENT);
	if (t.n == 4 && memcmp(t.p, "null", 4) == 0)
		return sqlite3_bind_null(st, i);
	if (t.p[0] == '@') {
		span rest = { t.p + 1, t.n - 1 };

		return sqlite3_bind_int64(st, i,
		                          (sqlite3_int64)(CLOCK_START + (uint64_t)to_int(rest)));
	}
	return sqlite3_bind_int64(st, i, to_int(t));
}

static int bind_text(sqlite3_stmt *st, int i, span t)
{
	return sqlite3_bind_text(st, i, t.p, (int)t.n, SQLITE_TRANSIENT);
}

/* Writes one row the input describes. Only the values may be refused (a
 * NULL in a NOT NULL column): any other error means this target no longer
 * matches the store's schema, and would fuzz an empty store. */
static void step_row(sqlite3_stmt *st, const char *what)
{
	int rc = sqlite3_step(st);
	if (rc != SQLITE_DONE && (rc & 0xff) != SQLITE_CONSTRAINT)
		die(what, sqlite3_errmsg(db));
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
}

/* Replaces the store's rows with the ones the input describes. */
static void write_rows(span *in)
{
	span fields = next_line(in), ctx = next_line(in), err = next_line(in);
	span bkey = next_line(in), uid = next_line(in), tok;
	sqlite3_stmt *st = insert_instance;

	if (sqlite3_exec(db, "BEGIN; DELETE FROM history; DELETE FROM instances;", NULL, NULL,
	                 NULL) != SQLITE_OK)
		die("reset", sqlite3_errmsg(db));
	sqlite3_bind_int64(st, 1, INSTANCE_ID);
	if (uid.n)
		bind_text(st, 2, uid);
	else
		sqlite3_bind_text(st, 2, DEFAULT_UID, -1, SQLITE_STATIC);
	tok = next_token(&fields);
	if (tok.n == 0)
		sqlite3_bind_text(st, 3, "fuzz", -1, SQLITE_STATIC);
	else if (tok.p[0] == '\'' || (tok.n == 4 && memcmp(tok.p, "null", 4) == 0))
		bind_token(st, 3, tok, 0);
	else
		bind_text(st, 3, tok); /* a name is text unless marked otherwise */
	bind_token(st, 4, next_token(&fields), 1);
	if (bkey.n == 0 || (bkey.n == 1 && bkey.p[0] == '-'))
		sqlite3_bind_null(st, 5);
	else
		bind_text(st, 5, bkey);
	for (int i = 6; i <= 22; i++)
		bind_token(st, i, next_token(&fields), 0);
	bind_text(st, 23, err);
	bind_text(st, 24, ctx);
	/* A row the schema refuses (a NULL in a NOT NULL column) is no
	 * instance at all: the calls then run on an empty store. */
	step_row(st, "insert instance");

	st = insert_history;
	for (int n = 0; n < MAX_HISTORY && in->n; n++) {
		span h = next_line(in), rest;

		sqlite3_bind_int64(st, 1, INSTANCE_ID);
		for (int i = 2; i <= 8; i++)
			bind_token(st, i, next_token(&h), 0);
		rest = h;
		while (rest.n && *rest.p == ' ') {
			rest.p++;
			rest.n--;
		}
		bind_text(st, 9, rest);
		sqlite3_bind_int(st, 10, n + 1);
		step_row(st, "insert history");
	}
	/* The instance's history counter follows its rows, as the store keeps it. */
	if (sqlite3_exec(db,
	                 "UPDATE instances SET next_seq = (SELECT coalesce(max(seq), 0) + 1"
	                 " FROM history WHERE history.instance = instances.id); COMMIT",
	                 NULL, NULL, NULL) != SQLITE_OK)
		die("commit", sqlite3_errmsg(db));
}

/* ---- the calls --------------------------------------------------------- */

/* FUZZ_VERBOSE=1 in the environment traces the calls (to triage a crash). */
static int verbose = -1;
/* Some call of this input answered SAGA_ECORRUPT: the engine refused the
 * row, and may leave it where it is. */
static bool saw_corrupt;

static void check_rc(saga_engine *e, int rc, const char *call)
{
	if (verbose < 0)
		verbose = getenv("FUZZ_VERBOSE") != NULL;
	if (verbose)
		fprintf(stderr, "  %s -> %d (%s)\n", call, rc, saga_engine_errmsg(e));
	if (rc == SAGA_ECORRUPT)
		saw_corrupt = true;
	if (rc <= 0 && rc >= SAGA_ECLOSED && saga_engine_errmsg(e) != NULL)
		return;
	fprintf(stderr, "%s returned %d\n", call, rc);
	fuzz_fail(__FILE__, __LINE__, "an undocumented return code");
}

static bool terminated(const char *s, size_t size)
{
	return memchr(s, '\0', size) != NULL;
}

static void check_info(const saga_instance_info *info)
{
	FUZZ_ASSERT(terminated(info->uid, sizeof(info->uid)) &&
	                    terminated(info->definition, sizeof(info->definition)) &&
	                    terminated(info->business_key, sizeof(info->business_key)) &&
	                    terminated(info->error, sizeof(info->error)),
	            "an instance's strings are not terminated");
	FUZZ_ASSERT((int)info->state >= 0 && (int)info->state < SAGA_STATE_COUNT,
	            "an instance in a state that does not exist");
	FUZZ_ASSERT(info->phase == SAGA_PHASE_ACTION || info->phase == SAGA_PHASE_COMPENSATION,
	            "an instance in a phase that does not exist");
}

static int on_event(const saga_event *ev, void *user)
{
	(void)user;
	FUZZ_ASSERT(ev->instance == INSTANCE_ID, "an event of another instance");
	FUZZ_ASSERT(ev->detail != NULL, "an event with a NULL detail");
	FUZZ_ASSERT(ev->step_name == NULL || strlen(ev->step_name) <= SAGA_NAME_MAX,
	            "an event with a bad step name");
	(void)saga_event_type_name(ev->type);
	(void)saga_state_name(ev->state);
	(void)saga_outcome_name(ev->outcome);
	return 0;
}

static int on_instance(const saga_instance_info *info, void *user)
{
	(void)user;
	check_info(info);
	return 0;
}

/* The key of the instance's current step, for saga_complete. */
static void current_key(saga_engine *e, char *key, size_t size)
{
	static const char *const v1[] = { "a", "b", "p", "r" };
	saga_instance_info info;
	const char *step = "a";

	if (saga_get(e, &info, INSTANCE_ID) != 0) {
		snprintf(key, size, "%s/a/action", DEFAULT_UID);
		return;
	}
	if (info.version == 2)
		step = "only";
	else if (info.step >= 0 && info.step < 4)
		step = v1[info.step];
	snprintf(key, size, "%s/%s/%s", info.uid, step,
	         info.phase == SAGA_PHASE_COMPENSATION ? "compensation" : "action");
}

/* 1 when the row's state and due_at hold integers, as the engine writes
 * them. A text value reads as 0 in C but matches nothing in the engine's
 * SQL scans, so such a row is never recovered (noted, not checked). */
static bool row_typed(void)
{
	sqlite3_stmt *st = NULL;
	bool typed = false;

	if (sqlite3_prepare_v2(db,
	                       "SELECT typeof(state) = 'integer' AND typeof(due_at) = 'integer'"
	                       " FROM instances WHERE id = ?1",
	                       -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_bind_int64(st, 1, INSTANCE_ID) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
		typed = sqlite3_column_int(st, 0) != 0;
	sqlite3_finalize(st);
	return typed;
}

/* After saga_run_until_idle answered 0, nothing of a registered definition
 * may be left due now (unless the engine found the row corrupt). */
static void check_idle(saga_engine *e)
{
	saga_instance_info info;

	if (saw_corrupt || saga_get(e, &info, INSTANCE_ID) != 0 ||
	    strcmp(info.definition, "fuzz") != 0 || (info.version != 1 && info.version != 2) ||
	    !row_typed())
		return;
	FUZZ_ASSERT(info.state != SAGA_RUNNING && info.state != SAGA_COMPENSATING,
	            "saga_run_until_idle left a running instance behind");
	FUZZ_ASSERT(info.state != SAGA_WAITING || info.due_ms == 0 || info.due_ms > fake.wall,
	            "saga_run_until_idle left a due instance behind");
}

static void run_op(saga_engine **ep, char op, span bkey, span ctx)
{
	saga_engine *e = *ep;
	saga_instance_info info;
	char key[160], name[SAGA_KEY_MAX + 1];
	cJSON *json = NULL;
	int64_t id = 0, counts[SAGA_STATE_COUNT];
	uint64_t due = 0;
	unsigned int ran = 0;
	int rc, created = 0;
	size_t n = bkey.n < SAGA_KEY_MAX ? bkey.n : SAGA_KEY_MAX;

	if (n)
		memcpy(name, bkey.p, n);
	name[n] = '\0';
	switch (op) {
	case 'R':
		rc = saga_run_until_idle(e);
		check_rc(e, rc, "saga_run_until_idle");
		if (rc == 0)
			check_idle(e);
		break;
	case 'D':
		check_rc(e, saga_run_due(e, &ran), "saga_run_due");
		break;
	case 'G':
		memset(&info, 0x5a, sizeof(info));
		rc = saga_get(e, &info, INSTANCE_ID);
		check_rc(e, rc, "saga_get");
		if (rc == 0)
			check_info(&info);
		if (rc == 0 && verbose)
			fprintf(stderr,
			        "  instance: %s v%d state %d phase %d step %d attempt %u "
			        "due %llu\n",
			        info.definition, info.version, (int)info.state, (int)info.phase,
			        info.step, info.attempt, (unsigned long long)info.due_ms);
		break;
	case 'C':
		rc = saga_get_context(e, &json, INSTANCE_ID);
		check_rc(e, rc, "saga_get_context");
		FUZZ_ASSERT(rc == 0 ? json != NULL : json == NULL, "context and answer disagree");
		cJSON_Delete(json);
		break;
	case 'H':
		check_rc(e, saga_history(e, INSTANCE_ID, on_event, NULL), "saga_history");
		break;
	case 'L':
		check_rc(e, saga_list(e, -1, on_instance, NULL), "saga_list");
		check_rc(e, saga_list(e, SAGA_WAITING, on_instance, NULL), "saga_list");
		break;
	case 'N':
		check_rc(e, saga_counts(e, counts), "saga_counts");
		break;
	case 'W':
		check_rc(e, saga_next_due(e, &due), "saga_next_due");
		break;
	case 'X':
		check_rc(e, saga_cancel(e, INSTANCE_ID), "saga_cancel");
		break;
	case 'Y':
		check_rc(e, saga_operator_retry(e, INSTANCE_ID), "saga_operator_retry");
		break;
	case 'S':
		check_rc(e, saga_operator_skip(e, INSTANCE_ID), "saga_operator_skip");
		break;
	case 'M':
		check_rc(e, saga_operator_resume(e, INSTANCE_ID), "saga_operator_resume");
		break;
	case 'K':
	case 'F':
	case 'Q':
		current_key(e, key, sizeof(key));
		json = op == 'K' ? cJSON_CreateObject() : NULL;
		if (json != NULL)
			cJSON_AddNumberToObject(json, "paid", 1);
		check_rc(e,
		         saga_complete(e, key,
		                       op == 'K'   ? SAGA_STEP_OK
		                       : op == 'F' ? SAGA_STEP_FAIL
		                                   : SAGA_STEP_RETRY,
		                       json),
		         "saga_complete");
		break;
	case 'k':
		/* A well-formed key of a step the definition does not have. */
		snprintf(key, sizeof(key), "%s/zz/action", DEFAULT_UID);
		check_rc(e, saga_complete(e, key, SAGA_STEP_OK, NULL), "saga_complete");
		break;
	case 'B':
		json = ctx.n ? cJSON_ParseWithLength(ctx.p, ctx.n) : NULL;
		if (json != NULL && !cJSON_IsObject(json)) {
			cJSON_Delete(json);
			json = NULL;
		}
		check_rc(e, saga_start(e, &id, &created, "fuzz", name[0] ? name : NULL, json),
		         "saga_start");
		cJSON_Delete(json);
		break;
	case 'Z':
		check_rc(e, saga_find(e, &id, name), "saga_find");
		break;
	case 'T':
		advance_clock(600000);
		break;
	case 't':
		advance_clock(100);
		break;
	case 'O':
		saga_engine_close(e);
		*ep = engine_open();
		break;
	default:
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	span in = { (const char *)data, size }, head, ops, rows, tmp;
	span ctx, bkey;
	saga_engine *e;

	if (db == NULL)
		setup();
	fake.wall = CLOCK_START;
	fake.mono = CLOCK_START;
	head = next_line(&in);
	ops = next_token(&head);
	tmp = next_token(&head);
	script.s = tmp.p;
	script.len = tmp.n;
	script.pos = 0;
	script.calls = 0;
	saw_corrupt = false;
	if (ops.n == 0) {
		ops.p = "GCHRGCHLN";
		ops.n = strlen(ops.p);
	}

	/* The context and business key are also used by 'B'. */
	rows = in;
	tmp = in;
	next_line(&tmp);
	ctx = next_line(&tmp);
	next_line(&tmp);
	bkey = next_line(&tmp);
	if (bkey.n == 1 && bkey.p[0] == '-')
		bkey.n = 0;
	write_rows(&rows);

	e = engine_open();
	for (size_t i = 0; i < ops.n && i < MAX_OPS; i++)
		run_op(&e, ops.p[i], bkey, ctx);
	saga_engine_close(e);
	return 0;
}
