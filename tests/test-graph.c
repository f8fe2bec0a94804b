/* Diagrams (saga_graph_write, saga_engine_graph) of a definition and of the
 * executed paths of instances made by real runs of an engine on a real
 * store: COMPLETED, COMPENSATED, STUCK, and STUCK then skipped by an
 * operator. Mermaid and JSON are compared with golden files in
 * tests/golden/ (SAGA_GOLDEN_UPDATE=1 rewrites them); every DOT text is
 * given to Graphviz (`dot -Tsvg`), run as a child process, in the suite run
 * with the argument "dot" (exit 77 when dot is missing).
 * SPDX-License-Identifier: MIT */
#include "test-common.h"

#include <cjson/cJSON.h>
#include <regex.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- output captured from a saga_write_fn ---- */

typedef struct text {
	char *p;
	size_t n;
	int calls;
} text;

static int collect(const char *data, size_t len, void *user)
{
	text *t = user;
	t->p = realloc(t->p, t->n + len + 1);
	ck_assert_ptr_nonnull(t->p);
	memcpy(t->p + t->n, data, len);
	t->n += len;
	t->p[t->n] = '\0';
	t->calls++;
	return 0;
}

static int refuse(const char *data, size_t len, void *user)
{
	(void)data;
	(void)len;
	(void)user;
	return 5;
}

/* ---- the saga run: its steps read what to do from the input ---- */

static int input_int(saga_step_ctx *ctx, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(saga_step_context(ctx), key);
	return cJSON_IsNumber(v) ? v->valueint : 0;
}

static saga_step_result ok(saga_step_ctx *ctx, void *user)
{
	(void)ctx;
	(void)user;
	return SAGA_STEP_OK;
}

/* Answers RETRY for the first "charge_retries" attempts, then FAIL if
 * "charge_fails", else OK. */
static saga_step_result charge(saga_step_ctx *ctx, void *user)
{
	(void)user;
	if (saga_step_attempt(ctx) <= (uint32_t)input_int(ctx, "charge_retries")) {
		saga_step_set_error(ctx, "gateway busy");
		return SAGA_STEP_RETRY;
	}
	if (input_int(ctx, "charge_fails")) {
		saga_step_set_error(ctx, "card declined");
		return SAGA_STEP_FAIL;
	}
	return SAGA_STEP_OK;
}

static saga_step_result undo_reserve(saga_step_ctx *ctx, void *user)
{
	(void)user;
	if (input_int(ctx, "undo_fails")) {
		saga_step_set_error(ctx, "warehouse offline");
		return SAGA_STEP_RETRY;
	}
	return SAGA_STEP_OK;
}

#define ORDER_STEPS                                   \
	{                                             \
		"reserve", "charge", "ship", "notify" \
	}

/* Registers definition `name` of four steps named names[]: two
 * compensatable, a pivot, a retriable one; with policies on the second. */
static void register_def(saga_engine *e, const char *name, const char *const names[4])
{
	saga_definition *d;
	ck_assert_int_eq(saga_definition_new(&d, name, 1), SAGA_OK);
	saga_step_spec specs[4] = {
		{ names[0], SAGA_STEP_COMPENSATABLE, ok, undo_reserve, NULL },
		{ names[1], SAGA_STEP_COMPENSATABLE, charge, ok, NULL },
		{ names[2], SAGA_STEP_PIVOT, ok, NULL, NULL },
		{ names[3], SAGA_STEP_RETRIABLE, ok, NULL, NULL },
	};
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(saga_definition_add_step(d, &specs[i]), SAGA_OK);
	saga_retry_policy three = { 3, 0, SAGA_BACKOFF_CONSTANT, 10, 0, 2.0, SAGA_JITTER_NONE };
	saga_retry_policy two = {
		2, 0, SAGA_BACKOFF_EXPONENTIAL, 100, 1000, 2.0, SAGA_JITTER_FULL
	};
	ck_assert_int_eq(saga_definition_set_retry(d, names[1], &three), SAGA_OK);
	ck_assert_int_eq(saga_definition_set_compensation_retry(d, NULL, &two), SAGA_OK);
	ck_assert_int_eq(saga_definition_set_timeout(d, names[2], 5000, 0), SAGA_OK);
	ck_assert_int_eq(saga_definition_set_breaker(d, names[1], "payments"), SAGA_OK);
	ck_assert_int_eq(saga_definition_set_deadline(d, 60000, 10000), SAGA_OK);
	ck_assert_int_eq(saga_engine_register(e, d), SAGA_OK);
	saga_definition_free(d);
}

typedef struct run {
	char dir[256];
	char path[300];
	fake_clock fc;
	saga_engine *e;
	int64_t completed, compensated, stuck, skipped;
} run;

static void open_engine(run *r, const char *name, const char *const names[4])
{
	saga_options o = SAGA_OPTIONS_INIT;
	o.path = r->path;
	o.clock = fake_clock_make(&r->fc);
	char err[256];
	ck_assert_int_eq(saga_engine_open(&r->e, &o, err, sizeof(err)), SAGA_OK);
	if (!name)
		return;
	saga_breaker_config bc = SAGA_BREAKER_CONFIG_INIT;
	ck_assert_int_eq(saga_engine_add_breaker(r->e, "payments", &bc), SAGA_OK);
	register_def(r->e, name, names);
}

/* Starts one instance with `input` and runs it until it ends. */
static int64_t run_one(run *r, const char *def, const char *input, saga_state want)
{
	cJSON *in = cJSON_Parse(input);
	int64_t id;
	ck_assert_int_eq(saga_start(r->e, &id, NULL, def, NULL, in), SAGA_OK);
	cJSON_Delete(in);
	saga_instance_info info;
	for (int i = 0; i < 100; i++) {
		ck_assert_int_eq(saga_run_until_idle(r->e), SAGA_OK);
		ck_assert_int_eq(saga_get(r->e, &info, id), SAGA_OK);
		if (info.state >= SAGA_COMPLETED)
			break;
		fake_clock_advance(&r->fc, 2000);
	}
	ck_assert_int_eq(info.state, want);
	return id;
}

/* The four instances of definition "order". */
static void make_runs(run *r)
{
	static const char *const names[4] = ORDER_STEPS;
	memset(r, 0, sizeof(*r));
	r->fc.wall = 1700000000000;
	r->fc.mono = 1000;
	tmpdir_make(r->dir, sizeof(r->dir));
	snprintf(r->path, sizeof(r->path), "%s/store.db", r->dir);
	open_engine(r, "order", names);
	r->completed = run_one(r, "order", "{\"charge_retries\": 1}", SAGA_COMPLETED);
	r->compensated = run_one(r, "order", "{\"charge_retries\": 1, \"charge_fails\": 1}",
	                         SAGA_COMPENSATED);
	r->stuck = run_one(r, "order", "{\"charge_fails\": 1, \"undo_fails\": 1}", SAGA_STUCK);
	r->skipped = run_one(r, "order", "{\"charge_fails\": 1, \"undo_fails\": 1}", SAGA_STUCK);
	ck_assert_int_eq(saga_operator_skip(r->e, r->skipped), SAGA_OK);
	ck_assert_int_eq(saga_run_until_idle(r->e), SAGA_OK);
	saga_instance_info info;
	ck_assert_int_eq(saga_get(r->e, &info, r->skipped), SAGA_OK);
	ck_assert_int_eq(info.state, SAGA_COMPENSATED);
}

static void end_runs(run *r)
{
	saga_engine_close(r->e);
	tmpdir_remove(r->dir);
}

/* The engine's drawing of instance id (0: of the definition). */
static char *draw(run *r, int64_t id, saga_graph_format f)
{
	text t = { 0 };
	int rc = saga_engine_graph(r->e, "order", 1, id, f, collect, &t);
	ck_assert_msg(rc == SAGA_OK, "graph: %s", saga_engine_errmsg(r->e));
	ck_assert_int_eq(t.calls, 1);
	return t.p;
}

/* The snapshot the store keeps, read with SQLite itself. */
static char *stored_snapshot(const char *path, const char *name)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_prepare_v2(db,
	                                    "SELECT snapshot FROM definitions "
	                                    "WHERE name = ?1 AND version = 1",
	                                    -1, &st, NULL),
	                 SQLITE_OK);
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	char *s = strdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	sqlite3_close(db);
	return s;
}

/* ---- golden files ---- */

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *p = malloc((size_t)n + 1);
	ck_assert_ptr_nonnull(p);
	ck_assert_uint_eq(fread(p, 1, (size_t)n, f), (size_t)n);
	p[n] = '\0';
	fclose(f);
	return p;
}

/* Whether `got` is the golden file's text; with SAGA_GOLDEN_UPDATE=1 the
 * file is rewritten instead. */
static int golden_matches(const char *name, const char *got)
{
	const char *dir = getenv("SAGA_GOLDEN_DIR");
	ck_assert_msg(dir != NULL, "SAGA_GOLDEN_DIR is not set");
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	const char *upd = getenv("SAGA_GOLDEN_UPDATE");
	if (upd && strcmp(upd, "1") == 0) {
		FILE *f = fopen(path, "wb");
		ck_assert_ptr_nonnull(f);
		fputs(got, f);
		fclose(f);
		return 1;
	}
	char *want = read_file(path);
	int same = want && strcmp(want, got) == 0;
	free(want);
	return same;
}

static void golden(const char *name, const char *got)
{
	ck_assert_msg(golden_matches(name, got),
	              "%s differs from tests/golden/%s (SAGA_GOLDEN_UPDATE=1 rewrites "
	              "it); got:\n%s",
	              name, name, got);
}

/* ---- a small Mermaid checker: the subset the renderer writes ---- */

static const char *const mermaid_lines[] = {
	"^flowchart LR$",
	"^ +[a-z_0-9]+(\\[|\\{|\\[\\[|\\(\\(|\\(\\(\\()\"([^\"<>]|<br/>)*\"(\\]|\\}|\\]\\]|\\)\\)|"
	"\\)\\)\\))$",
	"^ +subgraph [a-z_]+ \\[\"[^\"<>]*\"\\]$",
	"^ +end$",
	"^ +[a-z_0-9]+ (-->|-\\.->\\|undo\\|) [a-z_0-9]+$",
	"^ +classDef [a-z_]+ [a-z]+:#[0-9a-f]{6}(,[a-z]+:#[0-9a-f]{6})*$",
	"^ +class [a-z_0-9]+ [a-z_]+$",
	"^ +linkStyle [0-9]+(,[0-9]+)* stroke:#[0-9a-f]{6},stroke-width:3px$",
};

/* NULL when every line of `m` is of the subset, else the first line that
 * is not (static). */
static const char *mermaid_bad_line(const char *m)
{
	static char line[4096];
	size_t nre = sizeof(mermaid_lines) / sizeof(mermaid_lines[0]);
	regex_t re[sizeof(mermaid_lines) / sizeof(mermaid_lines[0])];
	for (size_t i = 0; i < nre; i++)
		ck_assert_int_eq(regcomp(&re[i], mermaid_lines[i], REG_EXTENDED | REG_NOSUB), 0);
	const char *bad = NULL;
	while (*m && !bad) {
		const char *nl = strchr(m, '\n');
		ck_assert_ptr_nonnull(nl);
		size_t n =
		        (size_t)(nl - m) < sizeof(line) - 1 ? (size_t)(nl - m) : sizeof(line) - 1;
		memcpy(line, m, n);
		line[n] = '\0';
		size_t i = 0;
		while (i < nre && regexec(&re[i], line, 0, NULL, 0) != 0)
			i++;
		if (i == nre)
			bad = line;
		m = nl + 1;
	}
	for (size_t i = 0; i < nre; i++)
		regfree(&re[i]);
	return bad;
}

static void mermaid_ok(const char *m)
{
	const char *bad = mermaid_bad_line(m);
	ck_assert_msg(bad == NULL, "not of the Mermaid subset: '%s'", bad);
}

/* ---- the JSON form, read back ---- */

static const cJSON *json_step(const cJSON *doc, int i)
{
	const cJSON *n;
	cJSON_ArrayForEach(n, cJSON_GetObjectItemCaseSensitive(doc, "nodes"))
	{
		const cJSON *s = cJSON_GetObjectItemCaseSensitive(n, "step");
		if (cJSON_IsNumber(s) && s->valueint == i)
			return n;
	}
	ck_abort_msg("no node for step %d", i);
	return NULL;
}

static const char *path_str(const cJSON *doc, int i, const char *key)
{
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(json_step(doc, i), "path");
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(p, key);
	return cJSON_IsString(v) ? v->valuestring : "";
}

static int path_num(const cJSON *doc, int i, const char *key)
{
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(json_step(doc, i), "path");
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(p, key);
	ck_assert_msg(cJSON_IsNumber(v) || cJSON_IsBool(v), "no %s for step %d", key, i);
	return cJSON_IsNumber(v) ? v->valueint : cJSON_IsTrue(v);
}

static const char *instance_state(const cJSON *doc)
{
	const cJSON *in = cJSON_GetObjectItemCaseSensitive(doc, "instance");
	return cJSON_GetObjectItemCaseSensitive(in, "state")->valuestring;
}

/* Draws instance id (0: the definition) in Mermaid and JSON, compares both
 * with their golden files "<name>.mmd" and "<name>.json", checks the
 * Mermaid subset, and returns the JSON parsed (cJSON_Delete). */
static cJSON *drawn(run *r, int64_t id, const char *name)
{
	char file[128];
	char *m = draw(r, id, SAGA_GRAPH_MERMAID), *j = draw(r, id, SAGA_GRAPH_JSON);
	snprintf(file, sizeof(file), "%s.mmd", name);
	golden(file, m);
	snprintf(file, sizeof(file), "%s.json", name);
	golden(file, j);
	mermaid_ok(m);
	cJSON *doc = cJSON_Parse(j);
	ck_assert_ptr_nonnull(doc);
	free(m);
	free(j);
	return doc;
}

/* ---- the suite without Graphviz ---- */

START_TEST(definition_golden)
{
	run r;
	make_runs(&r);
	cJSON *doc = drawn(&r, 0, "order-definition");
	ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(doc, "format_version")->valueint,
	                 SAGA_GRAPH_JSON_VERSION);
	ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(doc, "point_of_no_return")->valueint, 2);
	ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(json_step(doc, 2), "kind")->valuestring,
	                 "pivot");
	cJSON_Delete(doc);
	end_runs(&r);
}
END_TEST

/* The stored snapshot alone (what sagactl has) draws the same steps
 * without their policies; through saga_graph_write and through an engine
 * that has not registered the definition alike. */
START_TEST(snapshot_golden)
{
	run r;
	make_runs(&r);
	saga_engine_close(r.e);
	char *snap = stored_snapshot(r.path, "order");
	text m = { 0 }, j = { 0 }, viaengine = { 0 };
	char err[256];
	ck_assert_int_eq(
	        saga_graph_write(snap, NULL, 0, SAGA_GRAPH_MERMAID, err, sizeof(err), collect, &m),
	        SAGA_OK);
	ck_assert_int_eq(
	        saga_graph_write(snap, NULL, 0, SAGA_GRAPH_JSON, err, sizeof(err), collect, &j),
	        SAGA_OK);
	golden("order-snapshot.mmd", m.p);
	golden("order-snapshot.json", j.p);
	ck_assert_ptr_null(strstr(j.p, "\"policies\""));
	open_engine(&r, NULL, NULL);
	ck_assert_int_eq(
	        saga_engine_graph(r.e, "order", 1, 0, SAGA_GRAPH_MERMAID, collect, &viaengine),
	        SAGA_OK);
	ck_assert_str_eq(viaengine.p, m.p);
	free(snap);
	free(m.p);
	free(j.p);
	free(viaengine.p);
	end_runs(&r);
}
END_TEST

START_TEST(completed_path)
{
	run r;
	make_runs(&r);
	cJSON *doc = drawn(&r, r.completed, "order-completed");
	ck_assert_str_eq(instance_state(doc), "COMPLETED");
	for (int i = 0; i < 4; i++)
		ck_assert_str_eq(path_str(doc, i, "status"), "ok");
	ck_assert_int_eq(path_num(doc, 1, "attempts"), 2);
	ck_assert_int_eq(path_num(doc, 0, "attempts"), 1);
	cJSON_Delete(doc);
	end_runs(&r);
}
END_TEST

START_TEST(compensated_path)
{
	run r;
	make_runs(&r);
	cJSON *doc = drawn(&r, r.compensated, "order-compensated");
	ck_assert_str_eq(instance_state(doc), "COMPENSATED");
	ck_assert_str_eq(path_str(doc, 0, "status"), "compensated");
	ck_assert_str_eq(path_str(doc, 1, "status"), "failed");
	ck_assert_str_eq(path_str(doc, 1, "error"), "card declined");
	ck_assert_int_eq(path_num(doc, 1, "attempts"), 2);
	ck_assert_int_eq(path_num(doc, 1, "rollback_began"), 1);
	ck_assert_int_eq(path_num(doc, 0, "rollback_began"), 0);
	ck_assert_str_eq(path_str(doc, 2, "status"), "not_run");
	cJSON_Delete(doc);
	end_runs(&r);
}
END_TEST

START_TEST(stuck_path)
{
	run r;
	make_runs(&r);
	cJSON *doc = drawn(&r, r.stuck, "order-stuck");
	ck_assert_str_eq(instance_state(doc), "STUCK");
	ck_assert_str_eq(path_str(doc, 0, "status"), "stuck");
	ck_assert_int_eq(path_num(doc, 0, "compensation_attempts"), 2);
	ck_assert_str_eq(path_str(doc, 0, "error"), "warehouse offline");
	ck_assert_int_eq(path_num(doc, 1, "rollback_began"), 1);
	cJSON_Delete(doc);
	end_runs(&r);
}
END_TEST

START_TEST(operator_path)
{
	run r;
	make_runs(&r);
	cJSON *doc = drawn(&r, r.skipped, "order-skipped");
	ck_assert_str_eq(instance_state(doc), "COMPENSATED");
	ck_assert_str_eq(path_str(doc, 0, "status"), "compensation_failed");
	const cJSON *ops = cJSON_GetObjectItemCaseSensitive(
	        cJSON_GetObjectItemCaseSensitive(json_step(doc, 0), "path"), "operator");
	ck_assert_int_eq(cJSON_GetArraySize(ops), 1);
	ck_assert_str_eq(cJSON_GetArrayItem(ops, 0)->valuestring, "operator: skip");
	cJSON_Delete(doc);
	end_runs(&r);
}
END_TEST

/* Step and definition names of every awkward kind. */
static const char *const odd_names[4] = {
	"say \"hi\" & `go` #1",
	"a<b>c &lt; d\\n",
	"two\nlines; {x} [y] |z|",
	"ünïcødé ✓ 日本 bad\xff",
};
#define ODD_DEF "odd \"saga\" <x>"

static void make_odd(run *r)
{
	memset(r, 0, sizeof(*r));
	r->fc.wall = 1700000000000;
	tmpdir_make(r->dir, sizeof(r->dir));
	snprintf(r->path, sizeof(r->path), "%s/store.db", r->dir);
	open_engine(r, ODD_DEF, odd_names);
	r->compensated = run_one(r, ODD_DEF, "{\"charge_fails\": 1}", SAGA_COMPENSATED);
}

static char *draw_odd(run *r, saga_graph_format f)
{
	text t = { 0 };
	ck_assert_int_eq(saga_engine_graph(r->e, NULL, 0, r->compensated, f, collect, &t), SAGA_OK);
	return t.p;
}

START_TEST(odd_names_escaped)
{
	run r;
	make_odd(&r);
	char *m = draw_odd(&r, SAGA_GRAPH_MERMAID), *j = draw_odd(&r, SAGA_GRAPH_JSON);
	golden("odd-names.mmd", m);
	golden("odd-names.json", j);
	mermaid_ok(m);
	/* JSON gives the names back as they were, bad bytes as U+FFFD. */
	cJSON *doc = cJSON_Parse(j);
	ck_assert_ptr_nonnull(doc);
	for (int i = 0; i < 3; i++)
		ck_assert_str_eq(
		        cJSON_GetObjectItemCaseSensitive(json_step(doc, i), "name")->valuestring,
		        odd_names[i]);
	ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(json_step(doc, 3), "name")->valuestring,
	                 "ünïcødé ✓ 日本 bad\xef\xbf\xbd");
	ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(
	                         cJSON_GetObjectItemCaseSensitive(doc, "definition"), "name")
	                         ->valuestring,
	                 ODD_DEF);
	cJSON_Delete(doc);
	free(m);
	free(j);
	end_runs(&r);
}
END_TEST

START_TEST(bad_input)
{
	static const char snap[] =
	        "{\"name\":\"d\",\"version\":1,\"steps\":[{\"name\":\"a\","
	        "\"kind\":\"compensatable\"},{\"name\":\"b\",\"kind\":\"pivot\"}]}";
	text t = { 0 };
	char err[256];
	static const char *const bad_snaps[] = {
		"not json {",
		"[1, 2]",
		"{\"name\":\"d\",\"version\":1}",
		"{\"name\":\"d\",\"version\":0,\"steps\":[{\"name\":\"a\",\"kind\":\"pivot\"}]}",
		"{\"name\":\"d\",\"version\":1,\"steps\":[]}",
		"{\"name\":\"d\",\"version\":1,\"steps\":[{\"name\":\"a\",\"kind\":\"magic\"}]}",
		"{\"name\":\"d\",\"version\":1,\"steps\":[{\"kind\":\"pivot\"}]}",
	};
	for (size_t i = 0; i < sizeof(bad_snaps) / sizeof(bad_snaps[0]); i++) {
		err[0] = '\0';
		ck_assert_int_eq(saga_graph_write(bad_snaps[i], NULL, 0, SAGA_GRAPH_DOT, err,
		                                  sizeof(err), collect, &t),
		                 SAGA_EINVAL);
		ck_assert_msg(strncmp(err, "graph: ", 7) == 0, "no message for %s", bad_snaps[i]);
	}
	ck_assert_int_eq(saga_graph_write("not json", NULL, 0, SAGA_GRAPH_DOT, err, sizeof(err),
	                                  collect, &t),
	                 SAGA_EINVAL);
	ck_assert_str_eq(err, "graph: the snapshot is not JSON");
	ck_assert_int_eq(
	        saga_graph_write(NULL, NULL, 0, SAGA_GRAPH_DOT, err, sizeof(err), collect, &t),
	        SAGA_EINVAL);
	ck_assert_int_eq(
	        saga_graph_write(snap, NULL, 0, SAGA_GRAPH_DOT, err, sizeof(err), NULL, &t),
	        SAGA_EINVAL);
	ck_assert_int_eq(saga_graph_write(snap, NULL, 0, (saga_graph_format)7, err, sizeof(err),
	                                  collect, &t),
	                 SAGA_EINVAL);
	ck_assert_str_eq(err, "graph: unknown format 7");
	ck_assert_int_eq(saga_graph_write(snap, NULL, 2, SAGA_GRAPH_DOT, NULL, 0, collect, &t),
	                 SAGA_EINVAL);
	/* Events that do not fit: two instances, a step the definition lacks,
	 * a step of another name. */
	saga_event ev[2] = {
		{ 1, 1, 0, SAGA_EVENT_CREATED, SAGA_RUNNING, -1, NULL, 0, 0, 0, "", 1 },
		{ 2, 2, 0, SAGA_EVENT_ATTEMPT_START, SAGA_RUNNING, 0, "a", 0, 1, 0, "", 1 },
	};
	ck_assert_int_eq(
	        saga_graph_write(snap, ev, 2, SAGA_GRAPH_JSON, err, sizeof(err), collect, &t),
	        SAGA_EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "instance 2"));
	ev[1].instance = 1;
	ev[1].step = 2;
	ck_assert_int_eq(
	        saga_graph_write(snap, ev, 2, SAGA_GRAPH_JSON, err, sizeof(err), collect, &t),
	        SAGA_EINVAL);
	ev[1].step = 1;
	ck_assert_int_eq(
	        saga_graph_write(snap, ev, 2, SAGA_GRAPH_JSON, err, sizeof(err), collect, &t),
	        SAGA_EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "calls it 'b'"));
	ck_assert_int_eq(t.calls, 0); /* nothing was written by a failed call */
	/* A write function that stops. */
	ck_assert_int_eq(
	        saga_graph_write(snap, NULL, 0, SAGA_GRAPH_MERMAID, err, sizeof(err), refuse, NULL),
	        SAGA_EIO);
	ck_assert_str_eq(err, "graph: the write function stopped (it returned 5)");
	/* Format names. */
	saga_graph_format f;
	ck_assert_int_eq(saga_graph_format_parse(&f, "mermaid"), SAGA_OK);
	ck_assert_int_eq(f, SAGA_GRAPH_MERMAID);
	ck_assert_int_eq(saga_graph_format_parse(&f, "svg"), SAGA_EINVAL);
	ck_assert_int_eq(saga_graph_format_parse(&f, NULL), SAGA_EINVAL);
}
END_TEST

START_TEST(engine_bad_input)
{
	run r;
	make_runs(&r);
	text t = { 0 };
	ck_assert_int_eq(saga_engine_graph(r.e, NULL, 0, 999, SAGA_GRAPH_DOT, collect, &t),
	                 SAGA_ENOTFOUND);
	ck_assert_str_eq(saga_engine_errmsg(r.e), "no instance 999");
	ck_assert_int_eq(saga_engine_graph(r.e, "order", 2, 0, SAGA_GRAPH_DOT, collect, &t),
	                 SAGA_ENOTFOUND);
	ck_assert_str_eq(saga_engine_errmsg(r.e),
	                 "graph: no definition 'order' version 2 in the store");
	ck_assert_int_eq(saga_engine_graph(r.e, NULL, 0, 0, SAGA_GRAPH_DOT, collect, &t),
	                 SAGA_EINVAL);
	ck_assert_int_eq(saga_engine_graph(r.e, "order", 1, 0, SAGA_GRAPH_DOT, NULL, &t),
	                 SAGA_EINVAL);
	ck_assert_int_eq(
	        saga_engine_graph(r.e, "order", 1, r.stuck, (saga_graph_format)-1, collect, &t),
	        SAGA_EINVAL);
	ck_assert_str_eq(saga_engine_errmsg(r.e), "graph: unknown format -1");
	ck_assert_int_eq(saga_engine_graph(NULL, "order", 1, 0, SAGA_GRAPH_DOT, collect, &t),
	                 SAGA_EINVAL);
	ck_assert_int_eq(t.calls, 0);
	end_runs(&r);
}
END_TEST

/* The golden check fails on a text that differs by one byte, or is cut
 * short: a broken renderer would not pass unseen. */
START_TEST(golden_mismatch_fails)
{
	const char *upd = getenv("SAGA_GOLDEN_UPDATE");
	if (upd && strcmp(upd, "1") == 0)
		return;
	run r;
	make_runs(&r);
	char *m = draw(&r, r.stuck, SAGA_GRAPH_MERMAID);
	ck_assert(golden_matches("order-stuck.mmd", m));
	char *p = strstr(m, "class s0 stuck");
	ck_assert_ptr_nonnull(p);
	memcpy(p, "class s0 ok   ", 14);
	ck_assert(!golden_matches("order-stuck.mmd", m));
	m[strlen(m) - 2] = '\0';
	ck_assert(!golden_matches("order-stuck.mmd", m));
	ck_assert(!golden_matches("order-stuck.json", m));
	free(m);
	end_runs(&r);
}
END_TEST

/* The Mermaid checker refuses what an unescaped name would make. */
START_TEST(mermaid_checker_catches)
{
	ck_assert_ptr_null(mermaid_bad_line("flowchart LR\n    s0[\"a #quot;b#quot;<br/>c\"]\n"));
	ck_assert_ptr_nonnull(mermaid_bad_line("flowchart LR\n    s0[\"a \"b\" c\"]\n"));
	ck_assert_ptr_nonnull(mermaid_bad_line("flowchart LR\n    s0[\"a <b> c\"]\n"));
	ck_assert_ptr_nonnull(mermaid_bad_line("flowchart LR\n    s0[\"two\nlines\"]\n"));
}
END_TEST

/* ---- allocation failures ---- */

/* The engine's allocator and cJSON's: the Nth allocation from when it is
 * armed fails (sticky: and every one after); live counts what is held. */
static struct {
	long armed_at, count, live;
	int sticky;
} oom;

static int oom_fails(void)
{
	oom.count++;
	return oom.armed_at && (oom.sticky ? oom.count >= oom.armed_at : oom.count == oom.armed_at);
}

static void *oom_malloc(size_t n, void *user)
{
	(void)user;
	void *p = oom_fails() ? NULL : malloc(n);
	oom.live += p != NULL;
	return p;
}

static void *oom_realloc(void *p, size_t n, void *user)
{
	(void)user;
	void *q = oom_fails() ? NULL : realloc(p, n);
	oom.live += q && !p;
	return q;
}

static void oom_free(void *p, void *user)
{
	(void)user;
	oom.live -= p != NULL;
	free(p);
}

static void *oom_cjson_malloc(size_t n)
{
	return oom_malloc(n, NULL);
}

static void oom_cjson_free(void *p)
{
	oom_free(p, NULL);
}

/* Every allocation of saga_engine_graph failed in turn, once and for good:
 * SAGA_ENOMEM with its message, nothing written, nothing leaked. */
START_TEST(allocation_failures)
{
	static const char *const names[4] = ORDER_STEPS;
	run r;
	make_runs(&r);
	saga_engine_close(r.e);
	cJSON_Hooks hooks = { oom_cjson_malloc, oom_cjson_free };
	cJSON_InitHooks(&hooks);
	saga_options o = SAGA_OPTIONS_INIT;
	o.path = r.path;
	o.clock = fake_clock_make(&r.fc);
	o.allocator = (saga_allocator){ oom_malloc, oom_realloc, oom_free, NULL };
	char err[256];
	ck_assert_int_eq(saga_engine_open(&r.e, &o, err, sizeof(err)), SAGA_OK);
	saga_breaker_config bc = SAGA_BREAKER_CONFIG_INIT;
	ck_assert_int_eq(saga_engine_add_breaker(r.e, "payments", &bc), SAGA_OK);
	register_def(r.e, "order", names);
	long failed = 0;
	for (int sticky = 0; sticky < 2; sticky++) {
		for (int f = SAGA_GRAPH_DOT; f <= SAGA_GRAPH_JSON; f++) {
			for (long n = 1;; n++) {
				text t = { 0 };
				long live = oom.live;
				oom.count = 0;
				oom.sticky = sticky;
				oom.armed_at = n;
				int rc = saga_engine_graph(r.e, NULL, 0, r.stuck,
				                           (saga_graph_format)f, collect, &t);
				oom.armed_at = 0;
				ck_assert_int_eq(oom.live, live);
				if (rc == SAGA_OK) {
					ck_assert_int_eq(t.calls, 1);
					free(t.p);
					if (oom.count < n)
						break;
					continue;
				}
				failed++;
				ck_assert_msg(rc == SAGA_ENOMEM, "N=%ld %s format %d: %s (%s)", n,
				              sticky ? "sticky" : "once", f, saga_strerror(rc),
				              saga_engine_errmsg(r.e));
				ck_assert_msg(strstr(saga_engine_errmsg(r.e), "out of memory"),
				              "N=%ld: message '%s'", n, saga_engine_errmsg(r.e));
				ck_assert_int_eq(t.calls, 0);
			}
		}
	}
	ck_assert_int_gt(failed, 30);
	saga_engine_close(r.e);
	tmpdir_remove(r.dir);
}
END_TEST

/* ---- the suite with Graphviz ---- */

/* Runs `dot -Tsvg` on `src`; returns its exit status, and its output and
 * error output (malloc'd) in *svg and *errs. */
static int run_dot(const char *dir, const char *src, char **svg, char **errs)
{
	char in[512], out[512], err[512];
	snprintf(in, sizeof(in), "%s/g.dot", dir);
	snprintf(out, sizeof(out), "%s/g.svg", dir);
	snprintf(err, sizeof(err), "%s/g.err", dir);
	FILE *f = fopen(in, "wb");
	ck_assert_ptr_nonnull(f);
	fputs(src, f);
	fclose(f);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (!freopen(err, "wb", stderr))
			_exit(126);
		execlp("dot", "dot", "-Tsvg", "-o", out, in, (char *)NULL);
		_exit(127);
	}
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	*svg = read_file(out);
	*errs = read_file(err);
	unlink(out);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void dot_accepts(const char *dir, const char *src, const char *const *want)
{
	char *svg = NULL, *errs = NULL;
	int st = run_dot(dir, src, &svg, &errs);
	ck_assert_msg(st == 0 && errs && !errs[0], "dot refused (exit %d: %s):\n%s", st,
	              errs ? errs : "", src);
	ck_assert_ptr_nonnull(svg);
	ck_assert_ptr_nonnull(strstr(svg, "</svg>"));
	for (; want && *want; want++)
		ck_assert_msg(strstr(svg, *want), "the SVG lacks '%s'", *want);
	free(svg);
	free(errs);
}

START_TEST(every_dot_accepted)
{
	run r;
	make_runs(&r);
	static const char *const def_text[] = { "reserve", "past the point of no return",
		                                "breaker: payments", NULL };
	static const char *const stuck_text[] = { "STUCK", "warehouse offline",
		                                  "rollback began here", NULL };
	static const char *const skip_text[] = { "operator: skip", NULL };
	int64_t ids[] = { 0, r.completed, r.compensated, r.stuck, r.skipped };
	const char *const *wants[] = { def_text, NULL, NULL, stuck_text, skip_text };
	for (int i = 0; i < 5; i++) {
		char *d = draw(&r, ids[i], SAGA_GRAPH_DOT);
		dot_accepts(r.dir, d, wants[i]);
		if (i == 0)
			ck_assert_ptr_nonnull(strstr(d, "shape=diamond"));
		free(d);
	}
	char *snap = stored_snapshot(r.path, "order");
	text t = { 0 };
	ck_assert_int_eq(saga_graph_write(snap, NULL, 0, SAGA_GRAPH_DOT, NULL, 0, collect, &t),
	                 SAGA_OK);
	dot_accepts(r.dir, t.p, NULL);
	free(t.p);
	free(snap);
	end_runs(&r);
}
END_TEST

START_TEST(odd_names_dot)
{
	run r;
	make_odd(&r);
	char *d = draw_odd(&r, SAGA_GRAPH_DOT);
	/* As SVG writes them: XML-escaped, the text of each line intact. */
	static const char *const want[] = {
		"say &quot;hi&quot; &amp; `go` #1",
		"a&lt;b&gt;c &amp;lt; d\\n",
		">two<",
		"lines; {x} [y] |z|",
		"ünïcødé ✓ 日本 bad\xef\xbf\xbd",
		"odd &quot;saga&quot; &lt;x&gt;",
		NULL,
	};
	dot_accepts(r.dir, d, want);
	free(d);
	end_runs(&r);
}
END_TEST

/* The Graphviz check refuses a DOT text whose quote was not escaped. */
START_TEST(dot_checker_catches)
{
	char dir[256], *svg = NULL, *errs = NULL;
	tmpdir_make(dir, sizeof(dir));
	ck_assert_int_ne(
	        run_dot(dir, "digraph saga {\n\ts0 [label=\"say \"hi\"\"];\n}\n", &svg, &errs), 0);
	free(svg);
	free(errs);
	tmpdir_remove(dir);
}
END_TEST

static int have_dot(void)
{
	pid_t pid = fork();
	if (pid == 0) {
		if (!freopen("/dev/null", "wb", stderr))
			_exit(126);
		execlp("dot", "dot", "-V", (char *)NULL);
		_exit(127);
	}
	int status;
	return pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
	       WEXITSTATUS(status) == 0;
}

int main(int argc, char **argv)
{
	Suite *s = suite_create("graph");
	TCase *tc = tcase_create("graph");
	tcase_set_timeout(tc, 60);
	if (argc > 1 && strcmp(argv[1], "dot") == 0) {
		if (!have_dot())
			return 77;
		tcase_add_test(tc, every_dot_accepted);
		tcase_add_test(tc, odd_names_dot);
		tcase_add_test(tc, dot_checker_catches);
	} else {
		tcase_add_test(tc, definition_golden);
		tcase_add_test(tc, snapshot_golden);
		tcase_add_test(tc, completed_path);
		tcase_add_test(tc, compensated_path);
		tcase_add_test(tc, stuck_path);
		tcase_add_test(tc, operator_path);
		tcase_add_test(tc, odd_names_escaped);
		tcase_add_test(tc, bad_input);
		tcase_add_test(tc, engine_bad_input);
		tcase_add_test(tc, golden_mismatch_fails);
		tcase_add_test(tc, mermaid_checker_catches);
		tcase_add_test(tc, allocation_failures);
	}
	suite_add_tcase(s, tc);
	return run_suite(s);
}
