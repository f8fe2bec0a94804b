/* Definition validation: every invalid shape is refused with a message that
 * names the problem. SPDX-License-Identifier: MIT */
#include "test-common.h"

#include <string.h>

static saga_step_result noop(saga_step_ctx *ctx, void *user)
{
	(void)ctx;
	(void)user;
	return SAGA_STEP_OK;
}

typedef struct shape {
	const char *name;
	saga_step_kind kind;
	int has_action;
	int has_comp;
} shape;

/* Builds a definition of the given steps and validates it. */
static int check(const shape *steps, int n, char *msg, size_t size)
{
	saga_definition *d;
	ck_assert_int_eq(saga_definition_new(&d, "def", 1), SAGA_OK);
	for (int i = 0; i < n; i++) {
		saga_step_spec s = { steps[i].name, steps[i].kind,
			             steps[i].has_action ? noop : NULL,
			             steps[i].has_comp ? noop : NULL, NULL };
		ck_assert_int_eq(saga_definition_add_step(d, &s), SAGA_OK);
	}
	int rc = saga_definition_validate(d, msg, size);
	saga_definition_free(d);
	return rc;
}

#define C SAGA_STEP_COMPENSATABLE
#define P SAGA_STEP_PIVOT
#define R SAGA_STEP_RETRIABLE

START_TEST(valid_shapes)
{
	char msg[256];
	shape all[] = { { "a", C, 1, 1 }, { "b", C, 1, 1 }, { "p", P, 1, 0 }, { "r", R, 1, 0 } };
	ck_assert_int_eq(check(all, 4, msg, sizeof(msg)), SAGA_OK);
	shape only_c[] = { { "a", C, 1, 1 } };
	ck_assert_int_eq(check(only_c, 1, msg, sizeof(msg)), SAGA_OK);
	shape only_r[] = { { "r", R, 1, 0 }, { "s", R, 1, 0 } };
	ck_assert_int_eq(check(only_r, 2, msg, sizeof(msg)), SAGA_OK);
	shape pivot_only[] = { { "p", P, 1, 0 } };
	ck_assert_int_eq(check(pivot_only, 1, msg, sizeof(msg)), SAGA_OK);
}
END_TEST

static void refused(const shape *steps, int n, const char *needle)
{
	char msg[256] = "";
	ck_assert_int_eq(check(steps, n, msg, sizeof(msg)), SAGA_EINVAL);
	ck_assert_msg(strstr(msg, needle) != NULL, "message '%s' lacks '%s'", msg, needle);
}

START_TEST(invalid_shapes)
{
	refused(NULL, 0, "no steps");
	shape after_pivot[] = { { "p", P, 1, 0 }, { "late", C, 1, 1 } };
	refused(after_pivot, 2, "'late'");
	shape two_pivots[] = { { "p", P, 1, 0 }, { "q", P, 1, 0 } };
	refused(two_pivots, 2, "'q'");
	shape pivot_after_r[] = { { "r", R, 1, 0 }, { "p", P, 1, 0 } };
	refused(pivot_after_r, 2, "'p'");
	shape c_after_r[] = { { "r", R, 1, 0 }, { "c", C, 1, 1 } };
	refused(c_after_r, 2, "'c'");
	shape dup[] = { { "a", C, 1, 1 }, { "a", C, 1, 1 } };
	refused(dup, 2, "duplicate");
	shape empty[] = { { "", C, 1, 1 } };
	refused(empty, 1, "name");
	shape slash[] = { { "a/b", C, 1, 1 } };
	refused(slash, 1, "'/'");
	shape no_action[] = { { "a", C, 0, 1 } };
	refused(no_action, 1, "action is missing");
	shape no_comp[] = { { "a", C, 1, 0 } };
	refused(no_comp, 1, "needs a compensation");
	shape pivot_comp[] = { { "p", P, 1, 1 } };
	refused(pivot_comp, 1, "no compensation");
	shape retriable_comp[] = { { "r", R, 1, 1 } };
	refused(retriable_comp, 1, "no compensation");
	shape bad_kind[] = { { "x", (saga_step_kind)7, 1, 0 } };
	refused(bad_kind, 1, "unknown kind");
	char longname[80];
	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	shape too_long[] = { { longname, C, 1, 1 } };
	refused(too_long, 1, "name");
}
END_TEST

START_TEST(arguments_and_setters)
{
	saga_definition *d = (saga_definition *)1;
	ck_assert_int_eq(saga_definition_new(&d, "", 1), SAGA_EINVAL);
	ck_assert_ptr_null(d);
	ck_assert_int_eq(saga_definition_new(&d, "x", 0), SAGA_EINVAL);
	ck_assert_int_eq(saga_definition_new(&d, "x", 1), SAGA_OK);
	ck_assert_int_eq(saga_definition_add_step(d, NULL), SAGA_EINVAL);
	saga_step_spec s = { "a", C, noop, noop, NULL };
	ck_assert_int_eq(saga_definition_add_step(d, &s), SAGA_OK);
	ck_assert_uint_eq(saga_definition_step_count(d), 1);
	ck_assert_int_eq(saga_definition_step_index(d, "a"), 0);
	ck_assert_int_eq(saga_definition_step_index(d, "b"), SAGA_ENOTFOUND);
	saga_retry_policy p = SAGA_RETRY_POLICY_INIT;
	ck_assert_int_eq(saga_definition_set_retry(d, "b", &p), SAGA_ENOTFOUND);
	ck_assert_int_eq(saga_definition_set_retry(d, "a", &p), SAGA_OK);
	p.cap_ms = 1;
	p.base_ms = 10;
	ck_assert_int_eq(saga_definition_set_retry(d, "a", &p), SAGA_EINVAL);
	ck_assert_int_eq(saga_definition_set_timeout(d, NULL, 100, 200), SAGA_OK);
	ck_assert_int_eq(saga_definition_set_breaker(d, "a", "svc"), SAGA_OK);
	ck_assert_int_eq(saga_definition_set_breaker(d, "a", NULL), SAGA_OK);
	ck_assert_int_eq(saga_definition_set_deadline(d, 100, 100), SAGA_EINVAL);
	ck_assert_int_eq(saga_definition_set_deadline(d, 100, 10), SAGA_OK);
	saga_definition_free(d);
	saga_definition_free(NULL);
	ck_assert_str_eq(saga_strerror(SAGA_ECONFLICT),
	                 "definition differs from the stored one of the same version");
	ck_assert_str_eq(saga_strerror(12345), "unknown error code");
	ck_assert_str_eq(saga_version(), SAGA_VERSION_STRING);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("definition");
	TCase *tc = tcase_create("definition");
	tcase_add_test(tc, valid_shapes);
	tcase_add_test(tc, invalid_shapes);
	tcase_add_test(tc, arguments_and_setters);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
