/* Metrics and structured logs: counters and histograms checked against
 * known runs on a real store (a fake clock makes every duration known), the
 * store gauges, label escaping of odd names, the OpenMetrics rules (with a
 * checker shown to catch broken variants), the JSON lines of the record
 * hook, and options version 3 still accepted.
 *
 * Run as `test-metrics promtool`, it passes the Prometheus output through
 * `promtool check metrics` (and shows promtool refuses broken variants);
 * it exits 77 (skipped) when promtool is not installed.
 * SPDX-License-Identifier: MIT */
#include "faultvfs.h"
#include "test-common.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define T0 1700000000000ull /* 2023-11-14T22:13:20Z */

static fake_clock CLK;

static const char *mode_of(saga_step_ctx *ctx)
{
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(saga_step_context(ctx), "mode");
	return cJSON_IsString(m) ? m->valuestring : "ok";
}

/* reserve takes 30 ms of the fake clock; its compensation fails in "stuck". */
static saga_step_result reserve_do(saga_step_ctx *ctx, void *user)
{
	(void)ctx;
	(void)user;
	fake_clock_advance(&CLK, 30);
	return SAGA_STEP_OK;
}

static saga_step_result reserve_undo(saga_step_ctx *ctx, void *user)
{
	(void)user;
	return strcmp(mode_of(ctx), "stuck") == 0 ? SAGA_STEP_FAIL : SAGA_STEP_OK;
}

/* pay fails in "fail" and "stuck", and asks for a retry once in "retry". */
static saga_step_result pay_do(saga_step_ctx *ctx, void *user)
{
	(void)user;
	const char *m = mode_of(ctx);
	if (strcmp(m, "fail") == 0 || strcmp(m, "stuck") == 0) {
		saga_step_set_error(ctx, "card declined");
		return SAGA_STEP_FAIL;
	}
	if (strcmp(m, "retry") == 0 && saga_step_attempt(ctx) == 1)
		return SAGA_STEP_RETRY;
	return SAGA_STEP_OK;
}

static saga_step_result pay_undo(saga_step_ctx *ctx, void *user)
{
	(void)ctx;
	(void)user;
	return SAGA_STEP_OK;
}

/* What the hooks saw. */
#define MAX_LINES 256
static struct {
	char *json[MAX_LINES];
	int njson;
	int nplain;
	char last_plain[640];
} L;

static void record_hook(const saga_log_record *r, void *user)
{
	(void)user;
	size_t n = saga_log_format_json(r, NULL, 0);
	ck_assert_uint_gt(n, 0);
	char *line = malloc(n + 1);
	ck_assert_ptr_nonnull(line);
	ck_assert_uint_eq(saga_log_format_json(r, line, n + 1), n);
	if (L.njson < MAX_LINES)
		L.json[L.njson++] = line;
	else
		free(line);
}

static void plain_hook(saga_log_level level, const char *msg, void *user)
{
	(void)level;
	(void)user;
	L.nplain++;
	snprintf(L.last_plain, sizeof(L.last_plain), "%s", msg);
}

static void never_called(const saga_log_record *r, void *user)
{
	(void)r;
	(void)user;
	ck_abort_msg("a version 3 caller's record hook was read");
}

static struct {
	char dir[256];
	char path[300];
	saga_engine *e;
} F;

static void add_shop(const char *name, const char *step1, const char *step2)
{
	saga_definition *d;
	ck_assert_int_eq(saga_definition_new(&d, name, 1), SAGA_OK);
	saga_step_spec a = { step1, SAGA_STEP_COMPENSATABLE, reserve_do, reserve_undo, NULL };
	saga_step_spec b = { step2, SAGA_STEP_COMPENSATABLE, pay_do, pay_undo, NULL };
	ck_assert_int_eq(saga_definition_add_step(d, &a), SAGA_OK);
	ck_assert_int_eq(saga_definition_add_step(d, &b), SAGA_OK);
	saga_retry_policy p = { 3, 0, SAGA_BACKOFF_CONSTANT, 1000, 0, 2.0, SAGA_JITTER_NONE };
	ck_assert_int_eq(saga_definition_set_retry(d, NULL, &p), SAGA_OK);
	saga_retry_policy cp = { 1, 0, SAGA_BACKOFF_CONSTANT, 1000, 0, 2.0, SAGA_JITTER_NONE };
	ck_assert_int_eq(saga_definition_set_compensation_retry(d, NULL, &cp), SAGA_OK);
	ck_assert_int_eq(saga_engine_register(F.e, d), SAGA_OK);
	saga_definition_free(d);
}

static void open_engine_v(unsigned int version)
{
	tmpdir_make(F.dir, sizeof(F.dir));
	snprintf(F.path, sizeof(F.path), "%s/s.db", F.dir);
	CLK.wall = CLK.mono = T0;
	saga_options o = SAGA_OPTIONS_INIT;
	o.version = version;
	o.path = F.path;
	o.durability = SAGA_DURABILITY_NORMAL;
	o.clock = fake_clock_make(&CLK);
	o.log = plain_hook;
	o.log_level = SAGA_LOG_DEBUG;
	o.log_record = version >= 4 ? record_hook : never_called;
	char err[256];
	ck_assert_msg(saga_engine_open(&F.e, &o, err, sizeof(err)) == SAGA_OK, "open: %s", err);
	add_shop("shop", "reserve", "pay");
}

static void open_engine(void)
{
	open_engine_v(SAGA_OPTIONS_VERSION);
}

static void close_engine(void)
{
	saga_engine_close(F.e);
	F.e = NULL;
	tmpdir_remove(F.dir);
	for (int i = 0; i < L.njson; i++)
		free(L.json[i]);
	memset(&L, 0, sizeof(L));
}

static int64_t start_mode(const char *def, const char *mode, const char *bkey)
{
	cJSON *in = cJSON_CreateObject();
	cJSON_AddStringToObject(in, "mode", mode);
	int64_t id = 0;
	ck_assert_int_eq(saga_start(F.e, &id, NULL, def, bkey, in), SAGA_OK);
	cJSON_Delete(in);
	return id;
}

/* Runs until nothing is left but what waits on timers, moving the clock a
 * second at a time (the retry delay) a few times. */
static void drive(void)
{
	for (int i = 0; i < 5; i++) {
		ck_assert_int_eq(saga_run_until_idle(F.e), SAGA_OK);
		fake_clock_advance(&CLK, 1000);
	}
}

/* 10 instances: 5 succeed, 2 succeed after a retry, 2 fail and roll back,
 * 1 fails and its rollback fails (STUCK). */
static void known_run(void)
{
	static const char *const modes[] = { "ok",    "ok", "retry", "fail", "ok",
		                             "stuck", "ok", "retry", "fail", "ok" };
	for (size_t i = 0; i < 10; i++)
		start_mode("shop", modes[i], NULL);
	drive();
}

/* The text written by saga_metrics_write. */
typedef struct text {
	char *s;
	size_t len;
	int calls;
	int stop; /* answer this to the writer */
} text;

static int collect(const char *data, size_t len, void *user)
{
	text *t = user;
	char *s = realloc(t->s, t->len + len + 1);
	ck_assert_ptr_nonnull(s);
	memcpy(s + t->len, data, len);
	t->len += len;
	s[t->len] = '\0';
	t->s = s;
	t->calls++;
	return t->stop;
}

static text metrics(unsigned int flags, saga_metrics_format fmt)
{
	text t = { NULL, 0, 0, 0 };
	int rc = saga_metrics_write(F.e, flags, fmt, collect, &t);
	ck_assert_msg(rc == SAGA_OK, "metrics: %s", saga_engine_errmsg(F.e));
	ck_assert_ptr_nonnull(t.s);
	return t;
}

/* The value of the sample written exactly as `series` (name and labels),
 * as its text; fails when there is none. */
static const char *value_of(const text *t, const char *series)
{
	static char v[64];
	size_t n = strlen(series);
	for (const char *p = t->s; p && *p;) {
		const char *eol = strchr(p, '\n');
		if (strncmp(p, series, n) == 0 && p[n] == ' ') {
			size_t k = (size_t)(eol - p) - n - 1;
			ck_assert_uint_lt(k, sizeof(v));
			memcpy(v, p + n + 1, k);
			v[k] = '\0';
			return v;
		}
		p = eol ? eol + 1 : NULL;
	}
	ck_abort_msg("no sample %s in:\n%s", series, t->s);
	return NULL;
}

#define CK_SAMPLE(t, series, want) ck_assert_str_eq(value_of(&(t), series), want)

START_TEST(counters_of_a_known_run)
{
	open_engine();
	known_run();
	int64_t counts[SAGA_STATE_COUNT];
	ck_assert_int_eq(saga_counts(F.e, counts), SAGA_OK);
	ck_assert_int_eq(counts[SAGA_COMPLETED], 7);
	ck_assert_int_eq(counts[SAGA_COMPENSATED], 2);
	ck_assert_int_eq(counts[SAGA_STUCK], 1);

	text t = metrics(SAGA_METRICS_PROCESS, SAGA_METRICS_PROMETHEUS);
	const char *d = "definition=\"shop\",version=\"1\"";
	char s[512];
#define SERIES(...) (snprintf(s, sizeof(s), __VA_ARGS__), s)
	CK_SAMPLE(t, SERIES("saga_instances_started_total{%s}", d), "10");
	CK_SAMPLE(t,
	          SERIES("saga_instances_ended_total{%s,state=\"completed\",reason=\"none\"}", d),
	          "7");
	CK_SAMPLE(t,
	          SERIES("saga_instances_ended_total{%s,state=\"compensated\",reason=\"failure\"}",
	                 d),
	          "2");
	CK_SAMPLE(t, SERIES("saga_instances_ended_total{%s,state=\"stuck\",reason=\"failure\"}", d),
	          "1");
	CK_SAMPLE(
	        t,
	        SERIES("saga_instances_ended_total{%s,state=\"compensated\",reason=\"cancel\"}", d),
	        "0");
	const char *ra = "step=\"reserve\",phase=\"action\"";
	const char *rc = "step=\"reserve\",phase=\"compensation\"";
	const char *pa = "step=\"pay\",phase=\"action\"";
	CK_SAMPLE(t, SERIES("saga_attempts_total{%s,%s,outcome=\"ok\"}", d, ra), "10");
	CK_SAMPLE(t, SERIES("saga_attempts_total{%s,%s,outcome=\"ok\"}", d, pa), "7");
	CK_SAMPLE(t, SERIES("saga_attempts_total{%s,%s,outcome=\"retry\"}", d, pa), "2");
	CK_SAMPLE(t, SERIES("saga_attempts_total{%s,%s,outcome=\"fail\"}", d, pa), "3");
	CK_SAMPLE(t, SERIES("saga_attempts_total{%s,%s,outcome=\"timeout\"}", d, pa), "0");
	CK_SAMPLE(t, SERIES("saga_attempts_total{%s,%s,outcome=\"ok\"}", d, rc), "2");
	CK_SAMPLE(t, SERIES("saga_attempts_total{%s,%s,outcome=\"fail\"}", d, rc), "1");
	/* reserve takes 30 ms each time: all ten in the 0.05 bucket. */
	CK_SAMPLE(t, SERIES("saga_attempt_duration_seconds_bucket{%s,%s,le=\"0.025\"}", d, ra),
	          "0");
	CK_SAMPLE(t, SERIES("saga_attempt_duration_seconds_bucket{%s,%s,le=\"0.05\"}", d, ra),
	          "10");
	CK_SAMPLE(t, SERIES("saga_attempt_duration_seconds_bucket{%s,%s,le=\"+Inf\"}", d, ra),
	          "10");
	CK_SAMPLE(t, SERIES("saga_attempt_duration_seconds_count{%s,%s}", d, ra), "10");
	CK_SAMPLE(t, SERIES("saga_attempt_duration_seconds_sum{%s,%s}", d, ra), "0.300");
	CK_SAMPLE(t, SERIES("saga_attempt_duration_seconds_sum{%s,%s}", d, pa), "0.000");
	/* The two retried ones took one retry delay (1 s) more than the
	 * others, all within the first second otherwise. */
	CK_SAMPLE(t, SERIES("saga_instance_duration_seconds_count{%s,state=\"completed\"}", d),
	          "7");
	CK_SAMPLE(t,
	          SERIES("saga_instance_duration_seconds_bucket{%s,state=\"completed\",le=\"1.0\"}",
	                 d),
	          "5");
	CK_SAMPLE(t,
	          SERIES("saga_instance_duration_seconds_bucket{%s,state=\"completed\",le=\"2.5\"}",
	                 d),
	          "7");
	/* Commits: every one counted once in the histogram. */
	saga_stats st;
	ck_assert_int_eq(saga_engine_stats(F.e, &st), SAGA_OK);
	char commits[32];
	snprintf(commits, sizeof(commits), "%llu", (unsigned long long)st.commits);
	CK_SAMPLE(t, "saga_store_commits_total", commits);
	CK_SAMPLE(t, "saga_store_transitions_per_commit_count", commits);
	snprintf(commits, sizeof(commits), "%llu", (unsigned long long)st.history_rows);
	CK_SAMPLE(t, "saga_store_transitions_per_commit_sum", commits);
	CK_SAMPLE(t, "saga_store_errors_total{code=\"busy\"}", "0");
	CK_SAMPLE(t, "saga_instances_loaded", "0");
	/* Process only: no store gauge. */
	ck_assert_ptr_null(strstr(t.s, "saga_store_instances"));
	ck_assert_ptr_null(strstr(t.s, "# EOF"));
	free(t.s);
	close_engine();
#undef SERIES
}
END_TEST

START_TEST(store_gauges)
{
	open_engine();
	known_run();
	/* One more, left waiting on its retry timer, and a clock 100 s on. */
	int64_t id = start_mode("shop", "retry", NULL);
	ck_assert_int_eq(saga_run_until_idle(F.e), SAGA_OK);
	saga_instance_info info;
	ck_assert_int_eq(saga_get(F.e, &info, id), SAGA_OK);
	ck_assert_int_eq(info.state, SAGA_WAITING);
	fake_clock_advance(&CLK, 100000);

	text t = metrics(SAGA_METRICS_STORE, SAGA_METRICS_PROMETHEUS);
	ck_assert_ptr_null(strstr(t.s, "saga_attempts_total"));
	const char *d = "definition=\"shop\",version=\"1\"";
	char s[256];
#define SERIES(...) (snprintf(s, sizeof(s), __VA_ARGS__), s)
	CK_SAMPLE(t, SERIES("saga_store_instances{%s,state=\"completed\"}", d), "7");
	CK_SAMPLE(t, SERIES("saga_store_instances{%s,state=\"compensated\"}", d), "2");
	CK_SAMPLE(t, SERIES("saga_store_instances{%s,state=\"stuck\"}", d), "1");
	CK_SAMPLE(t, SERIES("saga_store_instances{%s,state=\"waiting\"}", d), "1");
	CK_SAMPLE(t, "saga_store_instances_by_state{state=\"completed\"}", "7");
	CK_SAMPLE(t, "saga_store_instances_by_state{state=\"running\"}", "0");
	CK_SAMPLE(t, SERIES("saga_store_stuck_instances{%s,reason=\"failure\"}", d), "1");
	CK_SAMPLE(t, "saga_store_overdue_instances", "1");
	uint64_t age = CLK.wall - info.due_ms;
	char want[32];
	snprintf(want, sizeof(want), "%llu.%03llu", (unsigned long long)(age / 1000),
	         (unsigned long long)(age % 1000));
	CK_SAMPLE(t, "saga_store_oldest_due_age_seconds", want);
	free(t.s);

	/* Due 30 s ago: due, not yet overdue. */
	CLK.wall = info.due_ms + 30000;
	t = metrics(SAGA_METRICS_STORE, SAGA_METRICS_PROMETHEUS);
	CK_SAMPLE(t, "saga_store_overdue_instances", "0");
	CK_SAMPLE(t, "saga_store_oldest_due_age_seconds", "30.000");
	free(t.s);
	/* Not due yet. */
	CLK.wall = info.due_ms - 1;
	t = metrics(SAGA_METRICS_STORE, SAGA_METRICS_PROMETHEUS);
	CK_SAMPLE(t, "saga_store_oldest_due_age_seconds", "0.000");
	free(t.s);
	close_engine();
#undef SERIES
}
END_TEST

static saga_step_result plain_do(saga_step_ctx *ctx, void *user)
{
	(void)user;
	return strcmp(saga_step_name(ctx), "b") == 0 && strcmp(mode_of(ctx), "fail") == 0
	               ? SAGA_STEP_FAIL
	               : SAGA_STEP_OK;
}

/* A scraper thread renders the metrics over and over while worker threads
 * run the instances (for ThreadSanitizer); the counts come out exact. */
static void *scrape(void *arg)
{
	atomic_int *stop = arg;
	while (!atomic_load(stop)) {
		text t = { NULL, 0, 0, 0 };
		ck_assert_int_eq(saga_metrics_write(F.e, SAGA_METRICS_PROCESS | SAGA_METRICS_STORE,
		                                    SAGA_METRICS_OPENMETRICS, collect, &t),
		                 SAGA_OK);
		free(t.s);
	}
	return NULL;
}

START_TEST(counts_with_workers_and_a_scraper)
{
	tmpdir_make(F.dir, sizeof(F.dir));
	snprintf(F.path, sizeof(F.path), "%s/s.db", F.dir);
	saga_options o = SAGA_OPTIONS_INIT;
	o.path = F.path;
	o.durability = SAGA_DURABILITY_NORMAL;
	o.workers = 3;
	char err[256];
	ck_assert_msg(saga_engine_open(&F.e, &o, err, sizeof(err)) == SAGA_OK, "open: %s", err);
	saga_definition *d;
	ck_assert_int_eq(saga_definition_new(&d, "w", 1), SAGA_OK);
	saga_step_spec a = { "a", SAGA_STEP_COMPENSATABLE, plain_do, pay_undo, NULL };
	saga_step_spec b = { "b", SAGA_STEP_COMPENSATABLE, plain_do, pay_undo, NULL };
	ck_assert_int_eq(saga_definition_add_step(d, &a), SAGA_OK);
	ck_assert_int_eq(saga_definition_add_step(d, &b), SAGA_OK);
	ck_assert_int_eq(saga_engine_register(F.e, d), SAGA_OK);
	saga_definition_free(d);
	atomic_int stop = 0;
	pthread_t th;
	ck_assert_int_eq(pthread_create(&th, NULL, scrape, &stop), 0);
	for (int i = 0; i < 40; i++) {
		cJSON *in = cJSON_CreateObject();
		cJSON_AddStringToObject(in, "mode", i % 4 == 0 ? "fail" : "ok");
		int64_t id;
		ck_assert_int_eq(saga_start(F.e, &id, NULL, "w", NULL, in), SAGA_OK);
		cJSON_Delete(in);
	}
	ck_assert_int_eq(saga_wait_idle(F.e, 60000), SAGA_OK);
	atomic_store(&stop, 1);
	pthread_join(th, NULL);
	text t = metrics(SAGA_METRICS_PROCESS, SAGA_METRICS_PROMETHEUS);
	const char *dv = "definition=\"w\",version=\"1\"";
	char s[256];
	snprintf(s, sizeof(s), "saga_instances_started_total{%s}", dv);
	CK_SAMPLE(t, s, "40");
	snprintf(s, sizeof(s), "saga_instances_ended_total{%s,state=\"completed\",reason=\"none\"}",
	         dv);
	CK_SAMPLE(t, s, "30");
	snprintf(s, sizeof(s),
	         "saga_instances_ended_total{%s,state=\"compensated\",reason=\"failure\"}", dv);
	CK_SAMPLE(t, s, "10");
	snprintf(s, sizeof(s),
	         "saga_attempts_total{%s,step=\"a\",phase=\"compensation\",outcome=\"ok\"}", dv);
	CK_SAMPLE(t, s, "10");
	snprintf(s, sizeof(s),
	         "saga_attempt_duration_seconds_count{%s,step=\"a\",phase=\"action\"}", dv);
	CK_SAMPLE(t, s, "40");
	free(t.s);
	close_engine();
}
END_TEST

/* Attempt ends in the history of instance `id`, by step and outcome. */
static int count_ends(const saga_event *ev, void *user)
{
	int(*n)[8] = user;
	if (ev->type == SAGA_EVENT_ATTEMPT_END && ev->phase == SAGA_PHASE_ACTION)
		n[ev->step][ev->outcome]++;
	return 0;
}

/* A round whose commit fails counts nothing: the metrics match the history
 * (what is durable), and the failed call is counted as a store error. */
START_TEST(a_failed_commit_counts_nothing)
{
	ck_assert_int_eq(faultvfs_register(1), SQLITE_OK);
	open_engine();
	int64_t id = start_mode("shop", "ok", NULL);
	unsigned ran = 0;
	ck_assert_int_eq(saga_run_due(F.e, &ran), SAGA_OK); /* reserve invoked */
	ck_assert_uint_eq(ran, 1);
	faultvfs_arm(FAULTVFS_WRITE, 1, SQLITE_IOERR_WRITE, false);
	ck_assert_int_ne(saga_run_due(F.e, &ran), SAGA_OK); /* its answer is not committed */
	ck_assert_int_eq(faultvfs_injected(), 1);
	faultvfs_disarm();
	drive();
	saga_instance_info info;
	ck_assert_int_eq(saga_get(F.e, &info, id), SAGA_OK);
	ck_assert_int_eq(info.state, SAGA_COMPLETED);

	int n[2][8] = { { 0 } };
	ck_assert_int_eq(saga_history(F.e, id, count_ends, n), SAGA_OK);
	text t = metrics(SAGA_METRICS_PROCESS, SAGA_METRICS_PROMETHEUS);
	const char *d = "definition=\"shop\",version=\"1\"";
	static const struct {
		int outcome;
		const char *label;
	} oc[] = { { SAGA_OUTCOME_OK, "ok" }, { SAGA_OUTCOME_NONE, "interrupted" } };
	for (int step = 0; step < 2; step++)
		for (size_t k = 0; k < 2; k++) {
			char s[256], want[16];
			snprintf(s, sizeof(s),
			         "saga_attempts_total{%s,step=\"%s\",phase=\"action\",outcome=\"%"
			         "s\"}",
			         d, step ? "pay" : "reserve", oc[k].label);
			snprintf(want, sizeof(want), "%d", n[step][oc[k].outcome]);
			CK_SAMPLE(t, s, want);
		}
	ck_assert_int_eq(n[0][SAGA_OUTCOME_OK], 1);
	CK_SAMPLE(t, "saga_store_errors_total{code=\"io\"}", "1");
	free(t.s);
	close_engine();
	faultvfs_restore_default();
}
END_TEST

/* An admin handle, running no saga, writes the same store gauges. */
START_TEST(admin_writes_the_store_gauges)
{
	open_engine();
	known_run();
	text t = metrics(SAGA_METRICS_STORE, SAGA_METRICS_OPENMETRICS);
	saga_admin *a;
	char err[256];
	ck_assert_msg(saga_admin_open(&a, F.path, SAGA_ADMIN_READ_ONLY, err, sizeof(err)) ==
	                      SAGA_OK,
	              "%s", err);
	text u = { NULL, 0, 0, 0 };
	ck_assert_int_eq(saga_admin_metrics_write(a, SAGA_METRICS_OPENMETRICS, collect, &u),
	                 SAGA_OK);
	ck_assert_str_eq(u.s, t.s);
	ck_assert_int_eq(saga_admin_metrics_write(a, (saga_metrics_format)9, collect, &u),
	                 SAGA_EINVAL);
	ck_assert_ptr_nonnull(strstr(saga_admin_errmsg(a), "format"));
	saga_admin_close(a);
	free(t.s);
	free(u.s);
	close_engine();
}
END_TEST

/* Label values with a quote, a backslash and a newline are escaped. */
START_TEST(odd_names_are_escaped)
{
	open_engine();
	add_shop("we\"ird\\def\nx", "st\"ep\\1", "pay");
	start_mode("we\"ird\\def\nx", "ok", NULL);
	drive();
	text t = metrics(SAGA_METRICS_PROCESS | SAGA_METRICS_STORE, SAGA_METRICS_PROMETHEUS);
	CK_SAMPLE(t,
	          "saga_attempts_total{definition=\"we\\\"ird\\\\def\\nx\",version=\"1\","
	          "step=\"st\\\"ep\\\\1\",phase=\"action\",outcome=\"ok\"}",
	          "1");
	CK_SAMPLE(t,
	          "saga_store_instances{definition=\"we\\\"ird\\\\def\\nx\",version=\"1\","
	          "state=\"completed\"}",
	          "1");
	free(t.s);
	close_engine();
}
END_TEST

static char *replace(const char *s, const char *from, const char *to)
{
	const char *at = strstr(s, from);
	ck_assert_ptr_nonnull(at);
	char *r = malloc(strlen(s) + strlen(to) + 1);
	sprintf(r, "%.*s%s%s", (int)(at - s), s, to, at + strlen(from));
	return r;
}

/* ---- OpenMetrics rules ---- */

/* The family a sample belongs to and the suffixes its type allows. */
static bool suffix_ok(const char *type, const char *suffix)
{
	if (strcmp(type, "counter") == 0)
		return strcmp(suffix, "_total") == 0 || strcmp(suffix, "_created") == 0;
	if (strcmp(type, "histogram") == 0)
		return strcmp(suffix, "_bucket") == 0 || strcmp(suffix, "_count") == 0 ||
		       strcmp(suffix, "_sum") == 0 || strcmp(suffix, "_created") == 0;
	if (strcmp(type, "info") == 0)
		return strcmp(suffix, "_info") == 0;
	return suffix[0] == '\0'; /* gauge, unknown */
}

/* Checks the OpenMetrics 1.0 rules the text could break: "# EOF" last and
 * only there; no empty line; a counter family's name without _total and its
 * samples with it; each sample in the family declared before it, with a
 * suffix its type allows; a UNIT the family name ends with; no family
 * declared twice. Returns NULL or what is wrong. */
static const char *om_check(const char *s)
{
	static char why[256];
	char fam[256] = "", type[32] = "";
	char seen[64][128];
	size_t nseen = 0;
	size_t len = strlen(s);
	if (len < 6 || strcmp(s + len - 6, "# EOF\n") != 0)
		return "does not end with # EOF";
	for (const char *p = s; *p;) {
		const char *eol = strchr(p, '\n');
		if (!eol)
			return "a line without its newline";
		size_t n = (size_t)(eol - p);
		char line[1024];
		if (n >= sizeof(line))
			return "a line too long for the checker";
		memcpy(line, p, n);
		line[n] = '\0';
		p = eol + 1;
		if (n == 0)
			return "an empty line";
		if (strcmp(line, "# EOF") == 0) {
			if (*p)
				return "# EOF before the end";
			continue;
		}
		char name[256], word[64];
		if (sscanf(line, "# TYPE %255s %63s", name, word) == 2) {
			if (strcmp(word, "counter") == 0 && strlen(name) > 6 &&
			    strcmp(name + strlen(name) - 6, "_total") == 0)
				return "a counter family named with _total";
			for (size_t i = 0; i < nseen; i++)
				if (strcmp(seen[i], name) == 0)
					return "a family declared twice";
			if (nseen < 64)
				snprintf(seen[nseen++], sizeof(seen[0]), "%s", name);
			snprintf(fam, sizeof(fam), "%s", name);
			snprintf(type, sizeof(type), "%s", word);
			continue;
		}
		if (sscanf(line, "# UNIT %255s %63s", name, word) == 2) {
			size_t fl = strlen(name), ul = strlen(word);
			if (strcmp(name, fam) != 0 || fl <= ul + 1 ||
			    strcmp(name + fl - ul, word) != 0 || name[fl - ul - 1] != '_')
				return "a UNIT the family name does not end with";
			continue;
		}
		if (line[0] == '#') {
			if (strncmp(line, "# HELP ", 7) != 0)
				return "an unknown # line";
			continue;
		}
		size_t k = strcspn(line, "{ ");
		size_t fl = strlen(fam);
		if (!fl || k < fl || strncmp(line, fam, fl) != 0) {
			snprintf(why, sizeof(why), "a sample outside its family: %.200s", line);
			return why;
		}
		char suffix[64];
		snprintf(suffix, sizeof(suffix), "%.*s", (int)(k - fl), line + fl);
		if (!suffix_ok(type, suffix)) {
			snprintf(why, sizeof(why), "suffix '%s' in a %s family: %.160s", suffix,
			         type, line);
			return why;
		}
	}
	return NULL;
}

/* The OpenMetrics text turned into the 0.0.4 one: no # EOF or # UNIT, and
 * the counter and info families named as their samples. */
static char *om_to_prom(const char *s)
{
	char *out = calloc(1, strlen(s) * 2 + 1);
	ck_assert_ptr_nonnull(out);
	char *o = out;
	char fam_type[32] = "";
	for (const char *p = s; *p;) {
		const char *eol = strchr(p, '\n');
		size_t n = (size_t)(eol - p) + 1;
		char line[1024];
		snprintf(line, sizeof(line), "%.*s", (int)n, p);
		p += n;
		if (strncmp(line, "# EOF", 5) == 0 || strncmp(line, "# UNIT ", 7) == 0)
			continue;
		char name[256], rest[768];
		if (sscanf(line, "# TYPE %255s %31s", name, fam_type) == 2) {
			if (strcmp(fam_type, "counter") == 0)
				o += sprintf(o, "# TYPE %s_total counter\n", name);
			else if (strcmp(fam_type, "info") == 0)
				o += sprintf(o, "# TYPE %s_info gauge\n", name);
			else
				o += sprintf(o, "%s", line);
			continue;
		}
		if (sscanf(line, "# HELP %255s %767[^\n]", name, rest) == 2) {
			/* HELP comes before TYPE: peek at the TYPE line. */
			char t[32] = "";
			sscanf(p, "# TYPE %*s %31s", t);
			o += sprintf(o, "# HELP %s%s %s\n", name,
			             strcmp(t, "counter") == 0 ? "_total"
			             : strcmp(t, "info") == 0  ? "_info"
			                                       : "",
			             rest);
			continue;
		}
		o += sprintf(o, "%s", line);
	}
	return out;
}

START_TEST(openmetrics_rules)
{
	open_engine();
	ck_assert_int_eq(saga_engine_add_breaker(F.e, "card",
	                                         &(saga_breaker_config)SAGA_BREAKER_CONFIG_INIT),
	                 SAGA_OK);
	known_run();
	unsigned all = SAGA_METRICS_PROCESS | SAGA_METRICS_STORE;
	text om = metrics(all, SAGA_METRICS_OPENMETRICS);
	text prom = metrics(all, SAGA_METRICS_PROMETHEUS);
	const char *why = om_check(om.s);
	ck_assert_msg(why == NULL, "%s", why);
	ck_assert_ptr_nonnull(strstr(om.s, "# UNIT saga_attempt_duration_seconds seconds\n"));
	ck_assert_ptr_nonnull(strstr(om.s, "# TYPE saga_instances_started counter\n"));
	ck_assert_ptr_nonnull(strstr(om.s, "# TYPE saga_build info\n"));
	/* The same samples as the 0.0.4 text. */
	char *back = om_to_prom(om.s);
	ck_assert_str_eq(back, prom.s);
	free(back);

	/* The checker catches broken variants. */
	ck_assert_ptr_nonnull(om_check(prom.s)); /* 0.0.4: _total families, no # EOF */
	char *v = strdup(om.s);
	v[strlen(v) - 6] = '\0'; /* no # EOF */
	ck_assert_ptr_nonnull(om_check(v));
	free(v);
	v = replace(om.s, "saga_attempts_total{", "saga_attempts{"); /* a counter without _total */
	ck_assert_ptr_nonnull(om_check(v));
	free(v);
	v = replace(om.s, "# UNIT saga_attempt_duration_seconds seconds",
	            "# UNIT saga_attempt_duration_seconds bytes");
	ck_assert_ptr_nonnull(om_check(v));
	free(v);
	free(om.s);
	free(prom.s);
	close_engine();
}
END_TEST

START_TEST(bad_arguments_and_a_writer_that_stops)
{
	open_engine();
	text t = { NULL, 0, 0, 1 };
	ck_assert_int_eq(
	        saga_metrics_write(F.e, SAGA_METRICS_PROCESS, SAGA_METRICS_PROMETHEUS, collect, &t),
	        SAGA_ERROR);
	ck_assert_ptr_nonnull(strstr(saga_engine_errmsg(F.e), "stopped"));
	free(t.s);
	ck_assert_int_eq(saga_metrics_write(F.e, 0, SAGA_METRICS_PROMETHEUS, collect, &t),
	                 SAGA_EINVAL);
	ck_assert_int_eq(saga_metrics_write(F.e, 4, SAGA_METRICS_PROMETHEUS, collect, &t),
	                 SAGA_EINVAL);
	ck_assert_int_eq(saga_metrics_write(F.e, 1, (saga_metrics_format)7, collect, &t),
	                 SAGA_EINVAL);
	ck_assert_int_eq(saga_metrics_write(F.e, 1, SAGA_METRICS_PROMETHEUS, NULL, &t),
	                 SAGA_EINVAL);
	ck_assert_int_eq(saga_metrics_write(NULL, 1, SAGA_METRICS_PROMETHEUS, collect, &t),
	                 SAGA_EINVAL);
	ck_assert_ptr_null(saga_metrics_content_type((saga_metrics_format)7));
	ck_assert_str_eq(saga_metrics_content_type(SAGA_METRICS_PROMETHEUS),
	                 "text/plain; version=0.0.4; charset=utf-8");
	close_engine();
}
END_TEST

/* ---- structured logs ---- */

static cJSON *find_line(const char *event, int64_t instance)
{
	for (int i = 0; i < L.njson; i++) {
		size_t n = strlen(L.json[i]);
		ck_assert_msg(n && L.json[i][n - 1] == '\n' && !memchr(L.json[i], '\n', n - 1),
		              "not one line: %s", L.json[i]);
		cJSON *j = cJSON_Parse(L.json[i]);
		ck_assert_msg(j != NULL, "not JSON: %s", L.json[i]);
		const cJSON *ev = cJSON_GetObjectItemCaseSensitive(j, "event");
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "saga.instance.id");
		if (cJSON_IsString(ev) && strcmp(ev->valuestring, event) == 0 &&
		    (!instance || (cJSON_IsNumber(id) && (int64_t)id->valuedouble == instance)))
			return j;
		cJSON_Delete(j);
	}
	ck_abort_msg("no %s line for %lld", event, (long long)instance);
	return NULL;
}

static const char *str_field(const cJSON *j, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
	ck_assert_msg(cJSON_IsString(v), "no string %s", key);
	return v->valuestring;
}

static double num_field(const cJSON *j, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
	ck_assert_msg(cJSON_IsNumber(v), "no number %s", key);
	return v->valuedouble;
}

START_TEST(json_lines_of_the_record_hook)
{
	open_engine();
	int64_t stuck = start_mode("shop", "stuck", "order-7");
	drive();
	saga_instance_info info;
	ck_assert_int_eq(saga_get(F.e, &info, stuck), SAGA_OK);
	ck_assert_int_eq(info.state, SAGA_STUCK);

	cJSON *j = find_line("instance.stuck", stuck);
	ck_assert_str_eq(str_field(j, "level"), "warn");
	ck_assert_str_eq(str_field(j, "saga.instance.uid"), info.uid);
	ck_assert_str_eq(str_field(j, "saga.definition.name"), "shop");
	ck_assert_int_eq((int)num_field(j, "saga.definition.version"), 1);
	ck_assert_str_eq(str_field(j, "saga.business_key"), "order-7");
	ck_assert_ptr_nonnull(strstr(str_field(j, "msg"), "stuck"));
	ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(j, "saga.step.name"));
	const char *ts = str_field(j, "ts");
	ck_assert_int_eq((int)strlen(ts), 24);
	ck_assert_int_eq(strncmp(ts, "2023-11-14T22:13:2", 18), 0);
	ck_assert_int_eq(ts[23], 'Z');
	cJSON_Delete(j);

	j = find_line("attempt.failed", stuck);
	ck_assert_str_eq(str_field(j, "level"), "info");
	ck_assert_str_eq(str_field(j, "saga.step.name"), "pay");
	ck_assert_int_eq((int)num_field(j, "saga.step.index"), 1);
	ck_assert_str_eq(str_field(j, "saga.step.phase"), "action");
	ck_assert_int_eq((int)num_field(j, "saga.attempt"), 1);
	char key[128];
	snprintf(key, sizeof(key), "%s/pay/action", info.uid);
	ck_assert_str_eq(str_field(j, "saga.key"), key);
	ck_assert_ptr_nonnull(strstr(str_field(j, "msg"), "card declined"));
	cJSON_Delete(j);

	/* The string hook got the same lines, the instance named. */
	ck_assert_int_eq(L.nplain, L.njson);
	ck_assert_int_eq(strncmp(L.last_plain, "instance ", 9), 0);
	close_engine();
}
END_TEST

START_TEST(json_format_escapes_and_cuts)
{
	saga_log_record r = { .level = SAGA_LOG_ERROR,
		              .at_ms = T0 + 7,
		              .event = "store.busy",
		              .message = "q\"b\\n\n\x01 \xff\xc3\xa9",
		              .step = -1,
		              .code = SAGA_EBUSY };
	char buf[512];
	size_t n = saga_log_format_json(&r, buf, sizeof(buf));
	ck_assert_uint_eq(n, strlen(buf));
	ck_assert_int_eq(buf[n - 1], '\n');
	cJSON *j = cJSON_Parse(buf);
	ck_assert_msg(j != NULL, "not JSON: %s", buf);
	ck_assert_str_eq(str_field(j, "ts"), "2023-11-14T22:13:20.007Z");
	ck_assert_str_eq(str_field(j, "level"), "error");
	ck_assert_str_eq(str_field(j, "msg"), "q\"b\\n\n\x01 \xef\xbf\xbd\xc3\xa9");
	ck_assert_str_eq(str_field(j, "error.code"), "SAGA_EBUSY");
	ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(j, "saga.instance.id"));
	ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(j, "saga.step.index"));
	cJSON_Delete(j);
	/* Cut to the buffer, counting the whole line (snprintf's rule). */
	char small[10];
	ck_assert_uint_eq(saga_log_format_json(&r, small, sizeof(small)), n);
	ck_assert_uint_eq(strlen(small), sizeof(small) - 1);
	ck_assert_int_eq(strncmp(small, buf, sizeof(small) - 1), 0);
	ck_assert_uint_eq(saga_log_format_json(&r, NULL, 0), n);
	ck_assert_uint_eq(saga_log_format_json(NULL, buf, sizeof(buf)), 0);
}
END_TEST

/* The ready hook writes the same line to a FILE. */
START_TEST(json_file_hook)
{
	saga_log_record r = {
		.level = SAGA_LOG_WARN, .at_ms = T0, .event = "e", .message = "m", .step = -1
	};
	char *mem = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&mem, &size);
	ck_assert_ptr_nonnull(f);
	saga_log_json_file(&r, f);
	saga_log_json_file(&r, f);
	fclose(f);
	char line[256];
	size_t n = saga_log_format_json(&r, line, sizeof(line));
	ck_assert_uint_eq(size, 2 * n);
	ck_assert_int_eq(memcmp(mem, line, n), 0);
	free(mem);
}
END_TEST

/* A version 3 caller's struct is shorter: the record hook is not read. */
START_TEST(options_version_3_still_accepted)
{
	open_engine_v(3);
	start_mode("shop", "stuck", NULL);
	drive();
	ck_assert_int_gt(L.nplain, 0);
	ck_assert_int_eq(L.njson, 0);
	close_engine();
}
END_TEST

/* ---- promtool ---- */

/* Runs `promtool ARGS...` with `input` on its stdin; its exit status. */
static int promtool(const char *input, const char *arg1, const char *arg2)
{
	int fds[2];
	ck_assert_int_eq(pipe(fds), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(fds[0], 0);
		close(fds[0]);
		close(fds[1]);
		execlp("promtool", "promtool", arg1, arg2, (char *)NULL);
		_exit(127);
	}
	close(fds[0]);
	size_t len = strlen(input);
	for (size_t off = 0; off < len;) {
		ssize_t w = write(fds[1], input + off, len - off);
		ck_assert_int_gt(w, 0);
		off += (size_t)w;
	}
	close(fds[1]);
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	return WEXITSTATUS(status);
}

START_TEST(promtool_accepts_the_text_format)
{
	open_engine();
	ck_assert_int_eq(saga_engine_add_breaker(F.e, "card",
	                                         &(saga_breaker_config)SAGA_BREAKER_CONFIG_INIT),
	                 SAGA_OK);
	add_shop("we\"ird\\def\nx", "st\"ep\\1", "pay");
	start_mode("we\"ird\\def\nx", "ok", NULL);
	known_run();
	text t = metrics(SAGA_METRICS_PROCESS | SAGA_METRICS_STORE, SAGA_METRICS_PROMETHEUS);
	ck_assert_int_eq(promtool(t.s, "check", "metrics"), 0);
	/* The OpenMetrics output, as the text format promtool reads. */
	text om = metrics(SAGA_METRICS_PROCESS | SAGA_METRICS_STORE, SAGA_METRICS_OPENMETRICS);
	char *back = om_to_prom(om.s);
	ck_assert_int_eq(promtool(back, "check", "metrics"), 0);
	free(back);
	free(om.s);

	/* promtool refuses broken variants: an unescaped quote, a counter
	 * without _total, a unit not in base units. */
	char *v = replace(t.s, "we\\\"ird", "we\"ird");
	ck_assert_int_ne(promtool(v, "check", "metrics"), 0);
	free(v);
	v = replace(t.s, "# TYPE saga_store_commits_total counter",
	            "# TYPE saga_store_commits counter");
	char *v2 = replace(v, "# HELP saga_store_commits_total", "# HELP saga_store_commits");
	char *v3 = replace(v2, "saga_store_commits_total ", "saga_store_commits ");
	ck_assert_int_ne(promtool(v3, "check", "metrics"), 0);
	free(v);
	free(v2);
	free(v3);
	free(t.s);
	close_engine();
}
END_TEST

static bool have_promtool(void)
{
	const char *path = getenv("PATH");
	if (!path)
		return false;
	char *copy = strdup(path);
	bool found = false;
	for (char *save, *dir = strtok_r(copy, ":", &save); dir && !found;
	     dir = strtok_r(NULL, ":", &save)) {
		char full[4096];
		snprintf(full, sizeof(full), "%s/promtool", dir);
		found = access(full, X_OK) == 0;
	}
	free(copy);
	return found;
}

int main(int argc, char **argv)
{
	Suite *s = suite_create("metrics");
	TCase *tc = tcase_create("metrics");
	tcase_set_timeout(tc, 60);
	if (argc > 1 && strcmp(argv[1], "promtool") == 0) {
		if (!have_promtool()) {
			fprintf(stderr, "promtool is not installed: skipped\n");
			return 77;
		}
		tcase_add_test(tc, promtool_accepts_the_text_format);
	} else {
		tcase_add_test(tc, counters_of_a_known_run);
		tcase_add_test(tc, store_gauges);
		tcase_add_test(tc, admin_writes_the_store_gauges);
		tcase_add_test(tc, counts_with_workers_and_a_scraper);
		tcase_add_test(tc, a_failed_commit_counts_nothing);
		tcase_add_test(tc, odd_names_are_escaped);
		tcase_add_test(tc, openmetrics_rules);
		tcase_add_test(tc, bad_arguments_and_a_writer_that_stops);
		tcase_add_test(tc, json_lines_of_the_record_hook);
		tcase_add_test(tc, json_format_escapes_and_cuts);
		tcase_add_test(tc, json_file_hook);
		tcase_add_test(tc, options_version_3_still_accepted);
	}
	suite_add_tcase(s, tc);
	return run_suite(s);
}
