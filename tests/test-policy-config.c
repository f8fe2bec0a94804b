/* Policy configuration from JSON (docs/policies.md). SPDX-License-Identifier: MIT */
#include "test-common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "saga.h"

static saga_step_result noop(saga_step_ctx *ctx, void *user)
{
	(void)ctx;
	(void)user;
	return SAGA_STEP_OK;
}

static char dir[256];
static saga_engine *engine;
static saga_definition *def;

static void setup(void)
{
	saga_options o = SAGA_OPTIONS_INIT;
	char path[320], msg[256];
	saga_step_spec reserve = { "reserve", SAGA_STEP_COMPENSATABLE, noop, noop, NULL };
	saga_step_spec pay = { "pay", SAGA_STEP_PIVOT, noop, NULL, NULL };
	saga_step_spec ship = { "ship", SAGA_STEP_RETRIABLE, noop, NULL, NULL };

	tmpdir_make(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/store.db", dir);
	o.path = path;
	ck_assert_int_eq(saga_engine_open(&engine, &o, msg, sizeof(msg)), 0);
	ck_assert_int_eq(saga_definition_new(&def, "order", 1), 0);
	ck_assert_int_eq(saga_definition_add_step(def, &reserve), 0);
	ck_assert_int_eq(saga_definition_add_step(def, &pay), 0);
	ck_assert_int_eq(saga_definition_add_step(def, &ship), 0);
}

static void teardown(void)
{
	saga_definition_free(def);
	saga_engine_close(engine);
	tmpdir_remove(dir);
	def = NULL;
	engine = NULL;
}

/* Everything the document can change in a definition, to compare. */
typedef struct policies {
	saga_retry_policy retry[3], comp_retry[3];
	uint64_t timeout[3], comp_timeout[3];
	char breaker[3][SAGA_NAME_MAX + 1];
	uint64_t deadline, reserve;
	saga_step_policy defaults;
} policies;

static void take(policies *p)
{
	memset(p, 0, sizeof(*p));
	for (size_t i = 0; i < 3; i++) {
		const char *b = saga_def_breaker(def, i);

		p->retry[i] = *saga_def_retry(def, i);
		p->comp_retry[i] = *saga_def_comp_retry(def, i);
		p->timeout[i] = saga_def_timeout(def, i, SAGA_PHASE_ACTION);
		p->comp_timeout[i] = saga_def_timeout(def, i, SAGA_PHASE_COMPENSATION);
		snprintf(p->breaker[i], sizeof(p->breaker[i]), "%s", b ? b : "");
	}
	p->deadline = def->deadline_ms;
	p->reserve = def->comp_reserve_ms;
	p->defaults = def->defaults;
	p->defaults.breaker = NULL;
}

/* Field by field: the structs have padding that memcmp would read. */
static void same_retry(const saga_retry_policy *a, const saga_retry_policy *b)
{
	ck_assert_uint_eq(a->max_attempts, b->max_attempts);
	ck_assert_uint_eq(a->max_duration_ms, b->max_duration_ms);
	ck_assert_int_eq(a->backoff, b->backoff);
	ck_assert_uint_eq(a->base_ms, b->base_ms);
	ck_assert_uint_eq(a->cap_ms, b->cap_ms);
	ck_assert(a->multiplier == b->multiplier);
	ck_assert_int_eq(a->jitter, b->jitter);
}

static void same_policy(const saga_step_policy *a, const saga_step_policy *b)
{
	ck_assert_int_eq(a->has_retry, b->has_retry);
	same_retry(&a->retry, &b->retry);
	ck_assert_int_eq(a->has_comp_retry, b->has_comp_retry);
	same_retry(&a->comp_retry, &b->comp_retry);
	ck_assert_int_eq(a->has_timeout, b->has_timeout);
	ck_assert_uint_eq(a->timeout_ms, b->timeout_ms);
	ck_assert_uint_eq(a->comp_timeout_ms, b->comp_timeout_ms);
	ck_assert_ptr_eq(a->breaker, b->breaker);
}

static void same(const policies *a, const policies *b)
{
	for (int i = 0; i < 3; i++) {
		same_retry(&a->retry[i], &b->retry[i]);
		same_retry(&a->comp_retry[i], &b->comp_retry[i]);
	}
	ck_assert_int_eq(memcmp(a->timeout, b->timeout, sizeof(a->timeout)), 0);
	ck_assert_int_eq(memcmp(a->comp_timeout, b->comp_timeout, sizeof(a->comp_timeout)), 0);
	for (int i = 0; i < 3; i++)
		ck_assert_str_eq(a->breaker[i], b->breaker[i]);
	ck_assert_uint_eq(a->deadline, b->deadline);
	ck_assert_uint_eq(a->reserve, b->reserve);
	same_policy(&a->defaults, &b->defaults);
}

/* A policy already set, so that "nothing changed" is not just "all default". */
static void preset(void)
{
	saga_retry_policy r = SAGA_RETRY_POLICY_INIT;

	r.max_attempts = 9;
	ck_assert_int_eq(saga_definition_set_retry(def, "pay", &r), 0);
	ck_assert_int_eq(saga_definition_set_timeout(def, "reserve", 111, 222), 0);
	ck_assert_int_eq(saga_definition_set_deadline(def, 60000, 10000), 0);
}

static const char valid_doc[] =
        "{\n"
        "  \"defaults\": {\n"
        "    \"retry\": {\"max_attempts\": 5, \"backoff\": \"exponential\", \"base_ms\": 200,\n"
        "              \"cap_ms\": 5000, \"multiplier\": 3, \"jitter\": \"equal\"},\n"
        "    \"compensation_retry\": {\"max_attempts\": 0, \"jitter\": \"decorrelated\"},\n"
        "    \"timeout_ms\": 3000,\n"
        "    \"compensation_timeout_ms\": 4000\n"
        "  },\n"
        "  \"steps\": {\n"
        "    \"pay\": {\n"
        "      \"retry\": {\"max_attempts\": 2, \"max_duration_ms\": 250, \"backoff\": "
        "\"constant\",\n"
        "                \"base_ms\": 50, \"jitter\": \"none\"},\n"
        "      \"timeout_ms\": 1500,\n"
        "      \"breaker\": \"payments\"\n"
        "    },\n"
        "    \"ship\": {\"compensation_timeout_ms\": 7, \"breaker\": \"shipping\"}\n"
        "  },\n"
        "  \"breakers\": {\n"
        "    \"payments\": {\"window\": \"time\", \"window_size\": 10000, \"buckets\": 10,\n"
        "                 \"failure_rate_threshold\": 50, \"slow_call_rate_threshold\": 80,\n"
        "                 \"slow_call_ms\": 2000, \"minimum_calls\": 5, \"open_wait_ms\": 1000,\n"
        "                 \"open_wait_max_ms\": 8000, \"half_open_calls\": 3,\n"
        "                 \"half_open_max_ms\": 5000},\n"
        "    \"shipping\": {}\n"
        "  },\n"
        "  \"saga\": {\"deadline_ms\": 120000, \"compensation_reserve_ms\": 30000}\n"
        "}\n";

START_TEST(valid_document_is_applied)
{
	saga_config_error err;
	const saga_retry_policy *r;
	saga_breaker *b;
	saga_breaker_snapshot s;

	preset();
	ck_assert_int_eq(saga_policies_apply(engine, def, valid_doc, strlen(valid_doc), &err), 0);
	ck_assert_str_eq(err.key, "");

	/* defaults, seen by "reserve" (which keeps its own timeout) */
	r = saga_def_retry(def, 0);
	ck_assert_uint_eq(r->max_attempts, 5);
	ck_assert_int_eq(r->backoff, SAGA_BACKOFF_EXPONENTIAL);
	ck_assert_uint_eq(r->base_ms, 200);
	ck_assert_uint_eq(r->cap_ms, 5000);
	ck_assert_double_eq(r->multiplier, 3.0);
	ck_assert_int_eq(r->jitter, SAGA_JITTER_EQUAL);
	r = saga_def_comp_retry(def, 0);
	ck_assert_uint_eq(r->max_attempts, 0);
	ck_assert_int_eq(r->jitter, SAGA_JITTER_DECORRELATED);
	ck_assert_uint_eq(r->base_ms, 100); /* missing keys: SAGA_RETRY_POLICY_INIT */
	ck_assert_uint_eq(r->cap_ms, 10000);
	ck_assert_uint_eq(saga_def_timeout(def, 0, SAGA_PHASE_ACTION), 111);
	ck_assert_uint_eq(saga_def_timeout(def, 0, SAGA_PHASE_COMPENSATION), 222);
	ck_assert_ptr_null(saga_def_breaker(def, 0));

	/* pay */
	r = saga_def_retry(def, 1);
	ck_assert_uint_eq(r->max_attempts, 2);
	ck_assert_uint_eq(r->max_duration_ms, 250);
	ck_assert_int_eq(r->backoff, SAGA_BACKOFF_CONSTANT);
	ck_assert_uint_eq(r->base_ms, 50);
	ck_assert_int_eq(r->jitter, SAGA_JITTER_NONE);
	ck_assert_uint_eq(saga_def_timeout(def, 1, SAGA_PHASE_ACTION), 1500);
	ck_assert_uint_eq(saga_def_timeout(def, 1, SAGA_PHASE_COMPENSATION), 4000);
	ck_assert_str_eq(saga_def_breaker(def, 1), "payments");

	/* ship: only the compensation timeout given, the action one inherited */
	/* ship is retriable: the definition-wide retry default does not apply;
	 * it retries until it succeeds (max_attempts 0) unless set per step. */
	ck_assert_uint_eq(saga_def_retry(def, 2)->max_attempts, 0);
	ck_assert_uint_eq(saga_def_timeout(def, 2, SAGA_PHASE_ACTION), 3000);
	ck_assert_uint_eq(saga_def_timeout(def, 2, SAGA_PHASE_COMPENSATION), 7);
	ck_assert_str_eq(saga_def_breaker(def, 2), "shipping");

	ck_assert_uint_eq(def->deadline_ms, 120000);
	ck_assert_uint_eq(def->comp_reserve_ms, 30000);

	/* the breakers exist on the engine and behave as configured */
	b = saga_engine_breaker(engine, "payments");
	ck_assert_ptr_nonnull(b);
	ck_assert_int_eq(saga_breaker_get_snapshot(&s, b), 0);
	ck_assert_int_eq(s.state, SAGA_BREAKER_CLOSED);
	ck_assert_uint_eq(s.current_open_wait_ms, 1000);
	ck_assert_ptr_nonnull(saga_engine_breaker(engine, "shipping"));
	ck_assert_int_eq(saga_breaker_get_snapshot(&s, saga_engine_breaker(engine, "shipping")), 0);
	ck_assert_uint_eq(s.current_open_wait_ms, 60000); /* SAGA_BREAKER_CONFIG_INIT */

	/* the definition still registers */
	ck_assert_int_eq(saga_engine_register(engine, def), 0);
}
END_TEST

START_TEST(empty_and_partial_documents)
{
	policies before, after;
	saga_config_error err;
	const char *doc = "{\"steps\": {\"ship\": {\"breaker\": null}}}";

	preset();
	take(&before);
	ck_assert_int_eq(saga_policies_apply(NULL, def, "{}", 2, &err), 0);
	ck_assert_int_eq(saga_policies_apply(NULL, def, " {} \n", 5, NULL), 0);
	/* a terminating NUL counted in len is fine */
	ck_assert_int_eq(saga_policies_apply(NULL, def, "{}", 3, NULL), 0);
	ck_assert_int_eq(saga_policies_apply(NULL, def, "{\"breakers\": {}}", 16, NULL), 0);
	take(&after);
	same(&before, &after);

	/* without an engine, a step may name a breaker the engine will have */
	ck_assert_int_eq(saga_definition_set_breaker(def, "ship", "later"), 0);
	ck_assert_int_eq(saga_policies_apply(NULL, def, doc, strlen(doc), &err), 0);
	ck_assert_ptr_null(saga_def_breaker(def, 2));
	doc = "{\"steps\": {\"ship\": {\"breaker\": \"later\"}}, \"saga\": {\"deadline_ms\": 0}}";
	ck_assert_int_eq(saga_policies_apply(NULL, def, doc, strlen(doc), &err), 0);
	ck_assert_str_eq(saga_def_breaker(def, 2), "later");
	ck_assert_uint_eq(def->deadline_ms, 0);
	ck_assert_uint_eq(def->comp_reserve_ms, 0);
}
END_TEST

/* Applies `doc` and checks that it is refused as expected, with nothing
 * changed in the definition and no breaker created. */
static void refused(const char *doc, int code, const char *key, int line, int column)
{
	policies before, after;
	saga_config_error err;
	int rc;

	preset();
	take(&before);
	memset(&err, 0x5a, sizeof(err));
	rc = saga_policies_apply(engine, def, doc, strlen(doc), &err);
	ck_assert_msg(rc == code, "rc %d, wanted %d (%s: %s)", rc, code, err.key, err.message);
	ck_assert_str_eq(err.key, key);
	ck_assert_msg(err.line == line && err.column == column, "%s at %d:%d, wanted %d:%d (%s)",
	              key, err.line, err.column, line, column, err.message);
	ck_assert_uint_gt(strlen(err.message), 0);
	take(&after);
	same(&before, &after);
	ck_assert_ptr_null(saga_engine_breaker(engine, "payments"));
}

START_TEST(unknown_keys)
{
	refused("{\"defualts\": {}}", SAGA_ECONFIG, "defualts", 1, 2);
	refused("{\n  \"defaults\": {\n    \"retries\": {}\n  }\n}", SAGA_ECONFIG,
	        "defaults.retries", 3, 5);
	refused("{\"steps\": {\"pay\": {\"retry\": {\"max_attempts\": 2, \"delay\": 5}}}}",
	        SAGA_ECONFIG, "steps.pay.retry.delay", 1, 49);
	refused("{\"defaults\": {\"breaker\": \"payments\"}}", SAGA_ECONFIG, "defaults.breaker", 1,
	        15);
	refused("{\"breakers\": {\"payments\": {\"windows\": \"count\"}}}", SAGA_ECONFIG,
	        "breakers.payments.windows", 1, 28);
	refused("{\"saga\": {\"deadline\": 5}}", SAGA_ECONFIG, "saga.deadline", 1, 11);
}
END_TEST

START_TEST(wrong_types)
{
	refused("{\n\t\"steps\": {\n\t\t\"pay\": {\n\t\t\t\"retry\": {\n\t\t\t\t\"max_attempts\": "
	        "\"3\"\n"
	        "\t\t\t}\n\t\t}\n\t}\n}",
	        SAGA_ECONFIG, "steps.pay.retry.max_attempts", 5, 5);
	refused("[]", SAGA_ECONFIG, "", 1, 1);
	refused("  {\"steps\": []}", SAGA_ECONFIG, "steps", 1, 4);
	refused("{\"steps\": {\"pay\": 5}}", SAGA_ECONFIG, "steps.pay", 1, 12);
	refused("{\"defaults\": {\"timeout_ms\": true}}", SAGA_ECONFIG, "defaults.timeout_ms", 1,
	        15);
	refused("{\"steps\": {\"pay\": {\"breaker\": 7}}}", SAGA_ECONFIG, "steps.pay.breaker", 1,
	        20);
	refused("{\"steps\": {\"pay\": {\"retry\": {\"jitter\": 1}}}}", SAGA_ECONFIG,
	        "steps.pay.retry.jitter", 1, 30);
	refused("{\"breakers\": {\"payments\": {\"failure_rate_threshold\": \"50%\"}}}",
	        SAGA_ECONFIG, "breakers.payments.failure_rate_threshold", 1, 28);
}
END_TEST

START_TEST(out_of_range_values)
{
	refused("{\"defaults\": {\"timeout_ms\": -5}}", SAGA_ECONFIG, "defaults.timeout_ms", 1, 15);
	refused("{\"defaults\": {\"retry\": {\"base_ms\": 1.5}}}", SAGA_ECONFIG,
	        "defaults.retry.base_ms", 1, 25);
	refused("{\"defaults\": {\"retry\": {\"max_attempts\": 4294967296}}}", SAGA_ECONFIG,
	        "defaults.retry.max_attempts", 1, 25);
	refused("{\"defaults\": {\"retry\": {\"base_ms\": 1e300}}}", SAGA_ECONFIG,
	        "defaults.retry.base_ms", 1, 25);
	refused("{\"defaults\": {\"retry\": {\"multiplier\": 0.5}}}", SAGA_ECONFIG,
	        "defaults.retry.multiplier", 1, 25);
	refused("{\"defaults\": {\"retry\": {\"base_ms\": 500, \"cap_ms\": 100}}}", SAGA_ECONFIG,
	        "defaults.retry", 1, 15);
	refused("{\"breakers\": {\"payments\": {\"failure_rate_threshold\": 0}}}", SAGA_ECONFIG,
	        "breakers.payments.failure_rate_threshold", 1, 28);
	refused("{\"breakers\": {\"payments\": {\"slow_call_rate_threshold\": 100.5}}}",
	        SAGA_ECONFIG, "breakers.payments.slow_call_rate_threshold", 1, 28);
	refused("{\"breakers\": {\"payments\": {\"minimum_calls\": 0}}}", SAGA_ECONFIG,
	        "breakers.payments.minimum_calls", 1, 28);
	refused("{\"breakers\": {\"payments\": {\"half_open_calls\": 0}}}", SAGA_ECONFIG,
	        "breakers.payments.half_open_calls", 1, 28);
	refused("{\"breakers\": {\"payments\": {\"window\": \"time\", \"window_size\": 1000, "
	        "\"buckets\": 3}}}",
	        SAGA_ECONFIG, "breakers.payments", 1, 15);
	refused("{\"breakers\": {\"payments\": {\"window_size\": 100000000}}}", SAGA_ECONFIG,
	        "breakers.payments", 1, 15);
	refused("{\"saga\": {\"deadline_ms\": 1000, \"compensation_reserve_ms\": 1000}}",
	        SAGA_ECONFIG, "saga", 1, 2);
	refused("{\"saga\": {\"deadline_ms\": 0, \"compensation_reserve_ms\": 5}}", SAGA_ECONFIG,
	        "saga", 1, 2);
	/* the reserve is checked against the deadline already set (60 s) */
	refused("{\"saga\": {\"compensation_reserve_ms\": 70000}}", SAGA_ECONFIG, "saga", 1, 2);
}
END_TEST

START_TEST(unknown_names)
{
	refused("{\"steps\": {\n  \"pay\": {},\n  \"refund\": {}\n}}", SAGA_ECONFIG, "steps.refund",
	        3, 3);
	refused("{\"steps\": {\"pay\": {\"retry\": {\"jitter\": \"fuzzy\"}}}}", SAGA_ECONFIG,
	        "steps.pay.retry.jitter", 1, 30);
	refused("{\"steps\": {\"pay\": {\"retry\": {\"backoff\": \"quadratic\"}}}}", SAGA_ECONFIG,
	        "steps.pay.retry.backoff", 1, 30);
	refused("{\"breakers\": {\"payments\": {\"window\": \"sliding\"}}}", SAGA_ECONFIG,
	        "breakers.payments.window", 1, 28);
	/* a breaker neither in the document nor on the engine */
	refused("{\"steps\": {\"pay\": {\"breaker\": \"nosuch\"}}}", SAGA_ECONFIG,
	        "steps.pay.breaker", 1, 20);
	refused("{\"steps\": {\"pay\": {\"breaker\": \"\"}}}", SAGA_ECONFIG, "steps.pay.breaker", 1,
	        20);
}
END_TEST

START_TEST(syntax_errors)
{
	/* the position of the error, and no key */
	refused("{\n  \"defaults\": {\n    \"timeout_ms\": 5\n    \"retry\": {}\n  }\n}",
	        SAGA_ECONFIG, "", 4, 5);
	refused("{\"steps\": {} } extra", SAGA_ECONFIG, "", 1, 16);
	refused("", SAGA_ECONFIG, "", 1, 1);
	refused("{\"steps\": ", SAGA_ECONFIG, "", 1, 10);
}
END_TEST

START_TEST(duplicate_and_escaped_keys)
{
	refused("{\"saga\": {}, \"saga\": {\"deadline_ms\": 5}}", SAGA_ECONFIG, "saga", 1, 14);
	/* the second "timeout_ms" is the one named, by position */
	refused("{\"defaults\": {\"timeout_ms\": 1,\n \"timeout_ms\": 2}}", SAGA_ECONFIG,
	        "defaults.timeout_ms", 2, 2);
	/* "st\u0065ps" is "steps": the scanner walks by position, not by spelling */
	refused("{\"st\\u0065ps\": {\"pay\": {\"retry\": {\"jitter\": \"x\"}}}}", SAGA_ECONFIG,
	        "steps.pay.retry.jitter", 1, 35);
	/* a key with a quote and a brace in it, before the faulty one */
	refused("{\"defaults\": {\"retry\": {}}, \"weird\\\"{\": 1}", SAGA_ECONFIG, "weird\"{", 1,
	        29);
}
END_TEST

START_TEST(nothing_half_applied)
{
	/* valid breakers, defaults and a valid step come before the faulty key */
	refused("{\"breakers\": {\"payments\": {}},\n"
	        " \"defaults\": {\"timeout_ms\": 10, \"retry\": {\"max_attempts\": 1}},\n"
	        " \"steps\": {\"pay\": {\"breaker\": \"payments\", \"timeout_ms\": 20},\n"
	        "           \"ship\": {\"timeout_ms\": -1}},\n"
	        " \"saga\": {\"deadline_ms\": 100}}",
	        SAGA_ECONFIG, "steps.ship.timeout_ms", 4, 21);
	/* the faulty part is last in the document */
	refused("{\"breakers\": {\"payments\": {}},\n"
	        " \"steps\": {\"pay\": {\"timeout_ms\": 20}},\n"
	        " \"saga\": {\"deadline_ms\": 100, \"compensation_reserve_ms\": 200}}",
	        SAGA_ECONFIG, "saga", 3, 2);
}
END_TEST

START_TEST(breakers_need_an_engine)
{
	policies before, after;
	saga_config_error err;
	const char *doc = "{\"breakers\": {\"payments\": {}}, \"defaults\": {\"timeout_ms\": 1}}";

	preset();
	take(&before);
	ck_assert_int_eq(saga_policies_apply(NULL, def, doc, strlen(doc), &err), SAGA_EINVAL);
	ck_assert_str_eq(err.key, "breakers");
	ck_assert_int_eq(err.line, 1);
	ck_assert_int_eq(err.column, 2);
	take(&after);
	same(&before, &after);
	ck_assert_int_eq(saga_policies_apply(engine, def, NULL, 0, &err), SAGA_EINVAL);
	/* a document with breakers only may be applied without a definition */
	ck_assert_int_eq(
	        saga_policies_apply(engine, NULL, "{\"breakers\": {\"payments\": {}}}", 31, &err),
	        0);
	ck_assert_ptr_nonnull(saga_engine_breaker(engine, "payments"));
	ck_assert_int_eq(saga_policies_apply(engine, NULL, doc, strlen(doc), &err), SAGA_EINVAL);
	ck_assert_str_eq(err.key, "defaults");
}
END_TEST

START_TEST(existing_breaker_is_refused)
{
	saga_breaker_config c = SAGA_BREAKER_CONFIG_INIT;
	policies before, after;
	saga_config_error err;
	const char *doc = "{\"steps\": {\"pay\": {\"timeout_ms\": 9}},\n"
	                  " \"breakers\": {\"pay\": {\"minimum_calls\": 3}}}";
	const char *ref = "{\"steps\": {\"pay\": {\"breaker\": \"pay\"}}}";

	ck_assert_int_eq(saga_engine_add_breaker(engine, "pay", &c), 0);
	preset();
	take(&before);
	ck_assert_int_eq(saga_policies_apply(engine, def, doc, strlen(doc), &err), SAGA_ECONFIG);
	ck_assert_str_eq(err.key, "breakers.pay");
	ck_assert_int_eq(err.line, 2);
	ck_assert_int_eq(err.column, 15);
	take(&after);
	same(&before, &after);
	/* referring to it without redefining it is fine */
	ck_assert_int_eq(saga_policies_apply(engine, def, ref, strlen(ref), &err), 0);
	ck_assert_str_eq(saga_def_breaker(def, 1), "pay");
}
END_TEST

START_TEST(apply_file)
{
	char path[320];
	FILE *f;
	saga_config_error err;

	snprintf(path, sizeof(path), "%s/policies.json", dir);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(valid_doc, f);
	fclose(f);
	ck_assert_int_eq(saga_policies_apply_file(engine, def, path, &err), 0);
	ck_assert_uint_eq(saga_def_timeout(def, 1, SAGA_PHASE_ACTION), 1500);
	ck_assert_ptr_nonnull(saga_engine_breaker(engine, "payments"));

	snprintf(path, sizeof(path), "%s/missing.json", dir);
	ck_assert_int_eq(saga_policies_apply_file(engine, def, path, &err), SAGA_EIO);
	ck_assert_uint_gt(strlen(err.message), 0);
	ck_assert_int_eq(saga_policies_apply_file(engine, def, NULL, &err), SAGA_EINVAL);

	/* errors in a file carry positions too */
	snprintf(path, sizeof(path), "%s/bad.json", dir);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs("{\n  \"steps\": {\n    \"pay\": {\"timeout_ms\": \"soon\"}\n  }\n}\n", f);
	fclose(f);
	ck_assert_int_eq(saga_policies_apply_file(engine, def, path, &err), SAGA_ECONFIG);
	ck_assert_str_eq(err.key, "steps.pay.timeout_ms");
	ck_assert_int_eq(err.line, 3);
	ck_assert_int_eq(err.column, 13);
}
END_TEST

/* No byte of a document is silently dropped: a NUL with text after it, a
 * NUL inside the document, or a NUL anywhere in a file is refused. */
START_TEST(nul_bytes_are_refused)
{
	policies before, after;
	saga_config_error err;
	static const char nul_then_garbage[] = "{}\0{\"garbage\": 1}";
	static const char nul_then_blank[] = "{}\0 ";
	static const char nul_inside[] = "{\"steps\": {\"pay\": {\"timeout_ms\": 15\0000}}}";

	preset();
	take(&before);
	ck_assert_int_eq(saga_policies_apply(NULL, def, nul_then_garbage,
	                                     sizeof(nul_then_garbage) - 1, &err),
	                 SAGA_ECONFIG);
	ck_assert_int_eq(err.line, 1);
	ck_assert_int_eq(err.column, 3);
	ck_assert_ptr_nonnull(strstr(err.message, "NUL"));
	ck_assert_int_eq(
	        saga_policies_apply(NULL, def, nul_then_blank, sizeof(nul_then_blank) - 1, &err),
	        SAGA_ECONFIG);
	ck_assert_int_eq(saga_policies_apply(NULL, def, nul_inside, sizeof(nul_inside) - 1, &err),
	                 SAGA_ECONFIG);
	take(&after);
	same(&before, &after);

	/* In a file, even one NUL at its end is a byte that is not JSON. */
	char path[320];
	snprintf(path, sizeof(path), "%s/nul.json", dir);
	static const char *const files[] = { "{}\0{\"garbage\": 1}\n", "{}\n\0" };
	static const size_t sizes[] = { 18, 4 };
	for (int i = 0; i < 2; i++) {
		FILE *f = fopen(path, "wb");
		ck_assert_ptr_nonnull(f);
		ck_assert_uint_eq(fwrite(files[i], 1, sizes[i], f), sizes[i]);
		fclose(f);
		ck_assert_int_eq(saga_policies_apply_file(NULL, def, path, &err), SAGA_ECONFIG);
		ck_assert_ptr_nonnull(strstr(err.message, "NUL"));
	}
	take(&after);
	same(&before, &after);
}
END_TEST

static long budget;

static void *failing_malloc(size_t n, void *user)
{
	(void)user;
	return budget-- > 0 ? malloc(n) : NULL;
}

static void *failing_realloc(void *p, size_t n, void *user)
{
	(void)user;
	return budget-- > 0 ? realloc(p, n) : NULL;
}

static void plain_free(void *p, void *user)
{
	(void)user;
	free(p);
}

START_TEST(allocation_failures_change_nothing)
{
	/* every allocation made with the definition's allocator fails in turn:
	 * each run answers SAGA_ENOMEM with nothing changed, until one succeeds */
	static const char doc[] =
	        "{\"defaults\": {\"retry\": {\"max_attempts\": 4}, \"timeout_ms\": 10},\n"
	        " \"steps\": {\"pay\": {\"breaker\": \"b1\", \"timeout_ms\": 5},\n"
	        "           \"ship\": {\"breaker\": \"b2\"}},\n"
	        " \"saga\": {\"deadline_ms\": 9000, \"compensation_reserve_ms\": 1000}}";
	const saga_alloc failing = { failing_malloc, failing_realloc, plain_free, NULL };
	policies before, after;
	int rc = SAGA_ENOMEM;
	long n;

	preset();
	ck_assert_int_eq(saga_definition_set_breaker(def, "reserve", "b0"), 0);
	take(&before);
	for (n = 0; n < 1000; n++) {
		def->alloc = failing;
		budget = n;
		saga_config_error err;

		rc = saga_policies_apply(NULL, def, doc, strlen(doc), &err);
		def->alloc = saga_default_alloc;
		if (rc == 0)
			break;
		ck_assert_msg(rc == SAGA_ENOMEM, "budget %ld: %d %s: %s", n, rc, err.key,
		              err.message);
		take(&after);
		same(&before, &after);
	}
	ck_assert_int_eq(rc, 0);
	ck_assert_int_gt(n, 3);
	ck_assert_str_eq(saga_def_breaker(def, 0), "b0");
	ck_assert_str_eq(saga_def_breaker(def, 1), "b1");
	ck_assert_str_eq(saga_def_breaker(def, 2), "b2");
	ck_assert_uint_eq(saga_def_timeout(def, 1, SAGA_PHASE_ACTION), 5);
	ck_assert_uint_eq(def->deadline_ms, 9000);
}
END_TEST

static Suite *config_suite(void)
{
	Suite *s = suite_create("policy-config");
	TCase *tc = tcase_create("policy-config");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, valid_document_is_applied);
	tcase_add_test(tc, empty_and_partial_documents);
	tcase_add_test(tc, unknown_keys);
	tcase_add_test(tc, wrong_types);
	tcase_add_test(tc, out_of_range_values);
	tcase_add_test(tc, unknown_names);
	tcase_add_test(tc, syntax_errors);
	tcase_add_test(tc, duplicate_and_escaped_keys);
	tcase_add_test(tc, nothing_half_applied);
	tcase_add_test(tc, breakers_need_an_engine);
	tcase_add_test(tc, existing_breaker_is_refused);
	tcase_add_test(tc, apply_file);
	tcase_add_test(tc, nul_bytes_are_refused);
	tcase_add_test(tc, allocation_failures_change_nothing);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return run_suite(config_suite());
}
