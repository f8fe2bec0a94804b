/* The admin API (lib/admin.c) in C: listings whose row filters span many
 * store pages, lookups, and requests refused before anything is written.
 * sagactl's end-to-end test (test-sagactl.sh) covers the rest, with real
 * processes. SPDX-License-Identifier: MIT */
#include "test-common.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static char dir[256], path[512];

static saga_step_result ok_step(saga_step_ctx *ctx, void *user)
{
	return SAGA_STEP_OK;
}

#define N 300

/* A store with N COMPLETED instances, keyed a-000, b-001, a-002, ... */
static void setup(void)
{
	tmpdir_make(dir, sizeof(dir));
	test_store_name(path, sizeof(path), dir, "store.db");
	saga_options o = SAGA_OPTIONS_INIT;
	o.path = path;
	saga_engine *e;
	char err[256];
	ck_assert_int_eq(saga_engine_open(&e, &o, err, sizeof(err)), SAGA_OK);
	saga_definition *d;
	ck_assert_int_eq(saga_definition_new(&d, "d", 1), SAGA_OK);
	saga_step_spec s = { "only", SAGA_STEP_COMPENSATABLE, ok_step, ok_step, NULL };
	ck_assert_int_eq(saga_definition_add_step(d, &s), SAGA_OK);
	ck_assert_int_eq(saga_engine_register(e, d), SAGA_OK);
	saga_definition_free(d);
	static char keys[N][16];
	saga_start_request reqs[N];
	int64_t ids[N];
	for (int i = 0; i < N; i++) {
		snprintf(keys[i], sizeof(keys[i]), "%c-%03d", i % 2 ? 'b' : 'a', i);
		reqs[i] = (saga_start_request){ "d", keys[i], NULL };
	}
	ck_assert_int_eq(saga_start_batch(e, ids, NULL, reqs, N), SAGA_OK);
	ck_assert_int_eq(saga_run_until_idle(e), SAGA_OK);
	saga_engine_close(e);
}

static void teardown(void)
{
	test_store_drop(path);
	tmpdir_remove(dir);
}

static saga_admin *open_admin(unsigned flags)
{
	saga_admin *a = NULL;
	char err[256] = "";
	int rc = saga_admin_open(&a, path, flags, err, sizeof(err));
	ck_assert_msg(rc == SAGA_OK, "%s", err);
	return a;
}

/* Every page of a listing whose filter the rows are checked against, small
 * pages over many store pages: each match once, in id order. */
START_TEST(row_filters_span_store_pages)
{
	saga_admin *a = open_admin(SAGA_ADMIN_READ_ONLY);
	saga_admin_filter f = SAGA_ADMIN_FILTER_INIT;
	f.key_prefix = "b-";
	saga_admin_instance page[7];
	int64_t after = 0, last = 0;
	int total = 0;
	for (;;) {
		size_t n = 0;
		ck_assert_int_eq(saga_admin_list(a, page, &n, 7, &f, after), SAGA_OK);
		for (size_t i = 0; i < n; i++) {
			ck_assert_int_gt(page[i].info.id, last);
			last = page[i].info.id;
			ck_assert(strncmp(page[i].info.business_key, "b-", 2) == 0);
			ck_assert_int_eq(page[i].info.state, SAGA_COMPLETED);
			ck_assert_str_eq(page[i].step_name, "");
			total++;
		}
		if (n < 7)
			break;
		after = page[n - 1].info.id;
	}
	ck_assert_int_eq(total, N / 2);

	/* a filter nothing matches reads every row and returns none */
	f.key_prefix = NULL;
	f.error_text = "no such error";
	size_t n = 1;
	ck_assert_int_eq(saga_admin_list(a, page, &n, 7, &f, 0), SAGA_OK);
	ck_assert_int_eq(n, 0);
	/* owner 0: every ended instance */
	saga_admin_filter g = SAGA_ADMIN_FILTER_INIT;
	g.owner = 0;
	saga_admin_instance big[N + 1];
	ck_assert_int_eq(saga_admin_list(a, big, &n, N + 1, &g, 0), SAGA_OK);
	ck_assert_int_eq(n, N);
	g.owner = 1;
	ck_assert_int_eq(saga_admin_list(a, big, &n, N + 1, &g, 0), SAGA_OK);
	ck_assert_int_eq(n, 0);
	g.owner = -2;
	ck_assert_int_eq(saga_admin_list(a, big, &n, N + 1, &g, 0), SAGA_EINVAL);
	ck_assert(strstr(saga_admin_errmsg(a), "owner") != NULL);
	saga_admin_close(a);
}
END_TEST

START_TEST(get_by_id_uid_and_key)
{
	saga_admin *a = open_admin(SAGA_ADMIN_READ_ONLY);
	saga_admin_instance x, y, z;
	ck_assert_int_eq(saga_admin_get(a, &x, 0, "b-001"), SAGA_OK);
	ck_assert_int_eq(saga_admin_get(a, &y, 0, x.info.uid), SAGA_OK);
	ck_assert_int_eq(saga_admin_get(a, &z, x.info.id, NULL), SAGA_OK);
	ck_assert(x.info.id == y.info.id && y.info.id == z.info.id);
	ck_assert_int_eq(saga_admin_get(a, &x, 0, "c-001"), SAGA_ENOTFOUND);
	ck_assert(strstr(saga_admin_errmsg(a), "c-001") != NULL);
	ck_assert_int_eq(saga_admin_get(a, &x, 999999, NULL), SAGA_ENOTFOUND);
	cJSON *ctx = NULL;
	ck_assert_int_eq(saga_admin_context(a, &ctx, z.info.id), SAGA_OK);
	ck_assert(cJSON_IsObject(ctx));
	cJSON_Delete(ctx);
	saga_admin_close(a);
}
END_TEST

static int count_owner(const saga_admin_owner *o, void *user)
{
	(*(int *)user)++;
	return 0;
}

/* Refused requests write nothing: no owner is registered for them. */
START_TEST(refused_requests_write_nothing)
{
	saga_admin *a = open_admin(0);
	int before = 0, after = 0;
	ck_assert_int_eq(saga_admin_owners(a, 1, count_owner, &before), SAGA_OK);
	char req[SAGA_ADMIN_REQUEST_LEN + 1];
	int queued = 7;
	ck_assert_int_eq(saga_admin_request(a, req, &queued, 1, SAGA_ADMIN_RETRY, "me", "why"),
	                 SAGA_ESTATE);
	ck_assert(strstr(saga_admin_errmsg(a), "not STUCK") != NULL);
	ck_assert(queued == 0 && req[0] == '\0');
	ck_assert_int_eq(saga_admin_request(a, req, NULL, 1, SAGA_ADMIN_CANCEL, "me", "why"),
	                 SAGA_ESTATE);
	ck_assert_int_eq(saga_admin_request(a, req, NULL, 1, SAGA_ADMIN_RETRY, "", "why"),
	                 SAGA_EINVAL);
	ck_assert_int_eq(saga_admin_request(a, req, NULL, 1, SAGA_ADMIN_RETRY, "me", NULL),
	                 SAGA_EINVAL);
	ck_assert_int_eq(saga_admin_request(a, req, NULL, 1, (saga_admin_verb)9, "me", "why"),
	                 SAGA_EINVAL);
	ck_assert_int_eq(saga_admin_request(a, req, NULL, 999999, SAGA_ADMIN_RETRY, "me", "why"),
	                 SAGA_ENOTFOUND);
	ck_assert_int_eq(saga_admin_owners(a, 1, count_owner, &after), SAGA_OK);
	ck_assert_int_eq(after, before);
	saga_admin_close(a);

	a = open_admin(SAGA_ADMIN_READ_ONLY);
	ck_assert_int_eq(saga_admin_request(a, req, NULL, 1, SAGA_ADMIN_RETRY, "me", "why"),
	                 SAGA_ESTATE);
	ck_assert(strstr(saga_admin_errmsg(a), "read-only") != NULL);
	int64_t purged = 5;
	ck_assert_int_eq(saga_admin_purge(a, &purged, -1, 0), SAGA_ESTATE);
	ck_assert_int_eq(purged, 0);
	saga_admin_close(a);
}
END_TEST

static saga_step_result pending_step(saga_step_ctx *ctx, void *user)
{
	return SAGA_STEP_PENDING;
}

static int live_owners(const saga_admin_owner *o, void *user)
{
	*(int *)user += o->state == 0;
	return 0;
}

/* A request for an instance another engine owns is queued for it, and the
 * handle leaves no live owner of its own behind; the owner applies it. */
START_TEST(queued_request_leaves_no_owner)
{
	saga_options o = SAGA_OPTIONS_INIT;
	o.path = path;
	saga_engine *e;
	char err[256];
	ck_assert_int_eq(saga_engine_open(&e, &o, err, sizeof(err)), SAGA_OK);
	saga_definition *d;
	ck_assert_int_eq(saga_definition_new(&d, "async", 1), SAGA_OK);
	saga_step_spec s = { "wait", SAGA_STEP_COMPENSATABLE, pending_step, ok_step, NULL };
	ck_assert_int_eq(saga_definition_add_step(d, &s), SAGA_OK);
	ck_assert_int_eq(saga_engine_register(e, d), SAGA_OK);
	saga_definition_free(d);
	int64_t id;
	ck_assert_int_eq(saga_start(e, &id, NULL, "async", NULL, NULL), SAGA_OK);
	ck_assert_int_eq(saga_run_until_idle(e), SAGA_OK);

	saga_admin *a = open_admin(0);
	char req[SAGA_ADMIN_REQUEST_LEN + 1];
	int queued = 0, live = 0;
	ck_assert_int_eq(saga_admin_request(a, req, &queued, id, SAGA_ADMIN_CANCEL, "me", "test"),
	                 SAGA_OK);
	ck_assert_int_eq(queued, 1);
	ck_assert_int_eq(strlen(req), SAGA_ADMIN_REQUEST_LEN);
	ck_assert_int_eq(saga_admin_owners(a, 0, live_owners, &live), SAGA_OK);
	ck_assert_int_eq(live, 1);
	ck_assert_int_eq(saga_admin_wait(a, id, req, 0), SAGA_EBUSY);
	ck_assert_int_eq(saga_run_until_idle(e), SAGA_OK);
	ck_assert_int_eq(saga_admin_wait(a, id, req, 0), SAGA_OK);
	saga_admin_instance in;
	ck_assert_int_eq(saga_admin_get(a, &in, id, NULL), SAGA_OK);
	ck_assert_int_eq(in.info.state, SAGA_COMPENSATED);
	saga_admin_close(a);
	saga_engine_close(e);
}
END_TEST

START_TEST(missing_store_is_not_made)
{
	char missing[600], err[256] = "";
	snprintf(missing, sizeof(missing), "%s/none.db", dir);
	saga_admin *a = (saga_admin *)1;
	ck_assert_int_eq(saga_admin_open(&a, missing, 0, err, sizeof(err)), SAGA_ENOTFOUND);
	ck_assert_ptr_null(a);
	ck_assert(strstr(err, "none.db") != NULL);
	struct stat st;
	ck_assert_int_ne(stat(missing, &st), 0);
	/* Named "sqlite:PATH": the same store, and the same refusal. */
	char named[sizeof(missing) + sizeof("sqlite:")];
	snprintf(named, sizeof(named), "sqlite:%s", missing);
	ck_assert_int_eq(saga_admin_open(&a, named, 0, err, sizeof(err)), SAGA_ENOTFOUND);
	ck_assert_int_ne(stat(missing, &st), 0);
	if (!test_store_is_pg()) {
		snprintf(named, sizeof(named), "sqlite:%s", path);
		ck_assert_int_eq(saga_admin_open(&a, named, 0, err, sizeof(err)), SAGA_OK);
		saga_admin_close(a);
	}
	ck_assert_int_eq(saga_admin_open(&a, path, 4, err, sizeof(err)), SAGA_EINVAL);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("admin");
	TCase *tc = tcase_create("admin");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, row_filters_span_store_pages);
	tcase_add_test(tc, get_by_id_uid_and_key);
	tcase_add_test(tc, refused_requests_write_nothing);
	tcase_add_test(tc, queued_request_leaves_no_owner);
	tcase_add_test(tc, missing_store_is_not_made);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
