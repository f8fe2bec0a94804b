/* Listings that scale: keyset paging with filters, saga_list calling back
 * without the engine lock, and removing listeners, also while events are
 * delivered on other threads. SPDX-License-Identifier: MIT */
#include "test-common.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct fixture {
	char dir[256];
	char path[300];
	fake_clock clock;
	saga_engine *e;
} fixture;

static fixture F;

static saga_step_result ok_step(saga_step_ctx *ctx, void *user)
{
	(void)ctx;
	(void)user;
	return SAGA_STEP_OK;
}

static void register_one(saga_engine *e, const char *name, int version)
{
	saga_definition *d;
	ck_assert_int_eq(saga_definition_new(&d, name, version), SAGA_OK);
	saga_step_spec s = { "only", SAGA_STEP_COMPENSATABLE, ok_step, ok_step, NULL };
	ck_assert_int_eq(saga_definition_add_step(d, &s), SAGA_OK);
	ck_assert_msg(saga_engine_register(e, d) == SAGA_OK, "register: %s", saga_engine_errmsg(e));
	saga_definition_free(d);
}

static void open_engine(unsigned int workers, bool fake)
{
	saga_options o = SAGA_OPTIONS_INIT;
	o.path = F.path;
	o.durability = SAGA_DURABILITY_NORMAL;
	o.workers = workers;
	if (fake)
		o.clock = fake_clock_make(&F.clock);
	char err[256];
	ck_assert_msg(saga_engine_open(&F.e, &o, err, sizeof(err)) == SAGA_OK, "open: %s", err);
}

static void setup(void)
{
	memset(&F, 0, sizeof(F));
	tmpdir_make(F.dir, sizeof(F.dir));
	test_store_name(F.path, sizeof(F.path), F.dir, "saga.db");
	F.clock.wall = 1700000000000ull;
	F.clock.mono = 1000;
}

static void teardown(void)
{
	saga_engine_close(F.e);
	F.e = NULL;
	test_store_drop(F.path);
	tmpdir_remove(F.dir);
}

static int64_t start(const char *def)
{
	int64_t id = 0;
	ck_assert_msg(saga_start(F.e, &id, NULL, def, NULL, NULL) == SAGA_OK, "start: %s",
	              saga_engine_errmsg(F.e));
	return id;
}

/* ---- paging over many instances, with the engine in use meanwhile ---- */

/* 100,000 instances, the scale the listing must handle; under
 * ThreadSanitizer (10 to 20 times slower) 10,000, so that the race check of
 * the same code stays within CI's time: the scale is checked by the normal
 * and ASan builds. On PostgreSQL 10,000 too: there every saga_counts of the
 * busy thread reads all the rows on the server while holding the engine's
 * lock, and the 100,000 saga_get calls of the listing wait behind them
 * (more than 600 s); the scale is the SQLite store's check. */
#if defined(__SANITIZE_THREAD__)
#define MANY_MAX 10000
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MANY_MAX 10000
#endif
#endif
#ifndef MANY_MAX
#define MANY_MAX 100000
#endif
#define MANY  (test_store_is_pg() ? 10000 : MANY_MAX)
#define BATCH 1000

typedef struct lister {
	unsigned char *seen; /* per id: times seen */
	int64_t last;
	int64_t count;
	bool ordered;
	bool get_ok;
} lister;

/* saga_list's callback: calls the engine it lists. */
static int on_listed(const saga_instance_info *info, void *user)
{
	lister *l = user;
	if (info->id <= l->last)
		l->ordered = false;
	l->last = info->id;
	if (info->id <= MANY)
		l->seen[info->id]++;
	l->count++;
	saga_instance_info again;
	if (saga_get(F.e, &again, info->id) != SAGA_OK || again.id != info->id)
		l->get_ok = false;
	return 0;
}

static atomic_bool stop_busy;

/* Another thread keeps calling into the engine while it is listed. */
static void *busy_caller(void *arg)
{
	(void)arg;
	int64_t counts[SAGA_STATE_COUNT];
	int64_t n = 0;
	while (!atomic_load(&stop_busy)) {
		saga_instance_info info;
		ck_assert_int_eq(saga_get(F.e, &info, 1 + n % MANY), SAGA_OK);
		ck_assert_int_eq(saga_counts(F.e, counts), SAGA_OK);
		if (n++ % 64 == 0) {
			int64_t id;
			ck_assert_int_eq(saga_start(F.e, &id, NULL, "other", NULL, NULL), SAGA_OK);
			ck_assert_int_gt(id, MANY);
		}
	}
	return NULL;
}

START_TEST(paging_many_without_the_lock)
{
	open_engine(0, true);
	register_one(F.e, "bulk", 1);
	register_one(F.e, "other", 1);
	saga_start_request reqs[BATCH];
	int64_t ids[BATCH];
	for (int i = 0; i < BATCH; i++)
		reqs[i] = (saga_start_request){ "bulk", NULL, NULL };
	for (int b = 0; b < MANY / BATCH; b++)
		ck_assert_int_eq(saga_start_batch(F.e, ids, NULL, reqs, BATCH), SAGA_OK);
	ck_assert_int_eq(ids[BATCH - 1], MANY);

	atomic_store(&stop_busy, false);
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, busy_caller, NULL), 0);

	/* saga_list: its callback calls saga_get on the same engine. */
	lister l = { calloc(MANY + 1, 1), 0, 0, true, true };
	ck_assert_ptr_nonnull(l.seen);
	ck_assert_int_eq(saga_list(F.e, -1, on_listed, &l), SAGA_OK);
	ck_assert(l.ordered);
	ck_assert(l.get_ok);
	for (int64_t id = 1; id <= MANY; id++)
		ck_assert_msg(l.seen[id] == 1, "id %lld seen %d times", (long long)id, l.seen[id]);

	/* saga_list_page by hand, a page of 997 at a time, by definition. */
	memset(l.seen, 0, MANY + 1);
	saga_instance_info *page = calloc(997, sizeof(*page));
	ck_assert_ptr_nonnull(page);
	saga_list_filter f = SAGA_LIST_FILTER_INIT;
	f.definition = "bulk";
	int64_t after = 0, total = 0;
	for (;;) {
		size_t n = 99;
		ck_assert_int_eq(saga_list_page(F.e, page, &n, 997, &f, after), SAGA_OK);
		for (size_t i = 0; i < n; i++) {
			ck_assert_int_gt(page[i].id, after);
			ck_assert_str_eq(page[i].definition, "bulk");
			after = page[i].id;
			l.seen[page[i].id]++;
			saga_instance_info info;
			ck_assert_int_eq(saga_get(F.e, &info, page[i].id), SAGA_OK);
		}
		total += (int64_t)n;
		if (n < 997)
			break;
	}
	atomic_store(&stop_busy, true);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(total, MANY);
	for (int64_t id = 1; id <= MANY; id++)
		ck_assert_int_eq(l.seen[id], 1);
	free(page);
	free(l.seen);
}
END_TEST

/* ---- filters ---- */

static size_t count_matching(const saga_list_filter *f)
{
	saga_instance_info page[3];
	size_t total = 0, n;
	int64_t after = 0;
	do {
		ck_assert_msg(saga_list_page(F.e, page, &n, 3, f, after) == SAGA_OK, "page: %s",
		              saga_engine_errmsg(F.e));
		total += n;
		if (n)
			after = page[n - 1].id;
	} while (n == 3);
	return total;
}

START_TEST(filters_narrow)
{
	open_engine(0, true);
	register_one(F.e, "alpha", 1);
	uint64_t t0 = F.clock.wall;
	int64_t a1 = start("alpha"); /* t0 */
	(void)a1;
	register_one(F.e, "alpha", 2);
	register_one(F.e, "beta", 1);
	fake_clock_advance(&F.clock, 1000);
	start("alpha"); /* t0 + 1000, version 2 */
	start("beta");
	fake_clock_advance(&F.clock, 1000);
	start("beta"); /* t0 + 2000 */
	/* Everything runs to COMPLETED at t0 + 5000 but the last one started. */
	fake_clock_advance(&F.clock, 3000);
	ck_assert_int_eq(saga_run_until_idle(F.e), SAGA_OK);
	int64_t late = start("alpha"); /* t0 + 5000, RUNNING, version 2 */

	saga_list_filter f = SAGA_LIST_FILTER_INIT;
	ck_assert_uint_eq(count_matching(&f), 5);
	ck_assert_uint_eq(count_matching(NULL), 5);

	f.state = SAGA_COMPLETED;
	ck_assert_uint_eq(count_matching(&f), 4);
	f.state = SAGA_RUNNING;
	ck_assert_uint_eq(count_matching(&f), 1);
	saga_instance_info one;
	size_t n = 0;
	ck_assert_int_eq(saga_list_page(F.e, &one, &n, 1, &f, 0), SAGA_OK);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(one.id, late);
	f.state = SAGA_STUCK;
	ck_assert_uint_eq(count_matching(&f), 0);

	f = (saga_list_filter)SAGA_LIST_FILTER_INIT;
	f.definition = "alpha";
	ck_assert_uint_eq(count_matching(&f), 3);
	f.definition_version = 2;
	ck_assert_uint_eq(count_matching(&f), 2);
	f.state = SAGA_COMPLETED;
	ck_assert_uint_eq(count_matching(&f), 1);
	f.definition = "gamma";
	ck_assert_uint_eq(count_matching(&f), 0);

	f = (saga_list_filter)SAGA_LIST_FILTER_INIT;
	f.created_from_ms = t0 + 1000;
	ck_assert_uint_eq(count_matching(&f), 4);
	f.created_to_ms = t0 + 2000; /* [t0 + 1000, t0 + 2000) */
	ck_assert_uint_eq(count_matching(&f), 2);
	f.created_from_ms = 0;
	f.created_to_ms = t0 + 1;
	ck_assert_uint_eq(count_matching(&f), 1);

	f = (saga_list_filter)SAGA_LIST_FILTER_INIT;
	f.updated_from_ms = t0 + 5000;
	ck_assert_uint_eq(count_matching(&f), 5);
	f.updated_from_ms = 0;
	f.updated_to_ms = t0 + 5000;
	ck_assert_uint_eq(count_matching(&f), 0);
	f.updated_to_ms = t0 + 5001;
	f.definition = "beta";
	ck_assert_uint_eq(count_matching(&f), 2);

	/* The cursor: after the last id, nothing. */
	ck_assert_int_eq(saga_list_page(F.e, &one, &n, 1, NULL, late), SAGA_OK);
	ck_assert_uint_eq(n, 0);

	/* Bad arguments. */
	saga_instance_info page[2];
	f = (saga_list_filter)SAGA_LIST_FILTER_INIT;
	ck_assert_int_eq(saga_list_page(F.e, page, &n, 0, &f, 0), SAGA_EINVAL);
	ck_assert_int_eq(saga_list_page(F.e, NULL, &n, 2, &f, 0), SAGA_EINVAL);
	ck_assert_int_eq(saga_list_page(F.e, page, NULL, 2, &f, 0), SAGA_EINVAL);
	ck_assert_int_eq(saga_list_page(NULL, page, &n, 2, &f, 0), SAGA_EINVAL);
	ck_assert_int_eq(saga_list_page(F.e, page, &n, 2, &f, -1), SAGA_EINVAL);
	f.version = 99;
	ck_assert_int_eq(saga_list_page(F.e, page, &n, 2, &f, 0), SAGA_EINVAL);
	ck_assert_ptr_nonnull(strstr(saga_engine_errmsg(F.e), "version"));
	f = (saga_list_filter)SAGA_LIST_FILTER_INIT;
	f.state = SAGA_STATE_COUNT;
	ck_assert_int_eq(saga_list_page(F.e, page, &n, 2, &f, 0), SAGA_EINVAL);
	f.state = -2;
	ck_assert_int_eq(saga_list_page(F.e, page, &n, 2, &f, 0), SAGA_EINVAL);
	f = (saga_list_filter)SAGA_LIST_FILTER_INIT;
	f.created_from_ms = 10;
	f.created_to_ms = 10;
	ck_assert_int_eq(saga_list_page(F.e, page, &n, 2, &f, 0), SAGA_EINVAL);
	ck_assert_ptr_nonnull(strstr(saga_engine_errmsg(F.e), "created"));
	f = (saga_list_filter)SAGA_LIST_FILTER_INIT;
	f.definition = "";
	ck_assert_int_eq(saga_list_page(F.e, page, &n, 2, &f, 0), SAGA_EINVAL);
	f.definition = NULL;
	f.definition_version = -1;
	ck_assert_int_eq(saga_list_page(F.e, page, &n, 2, &f, 0), SAGA_EINVAL);
	ck_assert_int_eq(n, 0);
}
END_TEST

/* saga_list keeps its contract: by state, oldest first, stops on nonzero. */
static int stop_after_two(const saga_instance_info *info, void *user)
{
	(void)info;
	return ++*(int *)user == 2;
}

START_TEST(list_stops_and_filters_by_state)
{
	open_engine(0, true);
	register_one(F.e, "alpha", 1);
	for (int i = 0; i < 300; i++)
		start("alpha");
	int seen = 0;
	ck_assert_int_eq(saga_list(F.e, SAGA_RUNNING, stop_after_two, &seen), SAGA_OK);
	ck_assert_int_eq(seen, 2);
	lister l = { calloc(301, 1), 0, 0, true, true };
	ck_assert_int_eq(saga_list(F.e, SAGA_RUNNING, on_listed, &l), SAGA_OK);
	ck_assert_int_eq(l.count, 300);
	ck_assert(l.ordered);
	l.count = 0;
	ck_assert_int_eq(saga_list(F.e, SAGA_COMPLETED, on_listed, &l), SAGA_OK);
	ck_assert_int_eq(l.count, 0);
	ck_assert_int_eq(saga_list(F.e, SAGA_STATE_COUNT, on_listed, &l), SAGA_EINVAL);
	free(l.seen);
}
END_TEST

/* ---- listeners ---- */

static atomic_int heard_a, heard_b;

static void listen_a(const saga_event *ev, void *user)
{
	(void)ev;
	(void)user;
	atomic_fetch_add(&heard_a, 1);
}

static void listen_b(const saga_event *ev, void *user)
{
	(void)ev;
	(void)user;
	atomic_fetch_add(&heard_b, 1);
}

/* Removes itself on its first event. */
static void listen_once(const saga_event *ev, void *user)
{
	(void)ev;
	atomic_fetch_add(&heard_a, 1);
	ck_assert_int_eq(saga_engine_remove_listener(F.e, listen_once, user), SAGA_OK);
}

START_TEST(listener_removal_stops_delivery)
{
	open_engine(0, true);
	register_one(F.e, "alpha", 1);
	atomic_store(&heard_a, 0);
	atomic_store(&heard_b, 0);
	int ua, ub;
	ck_assert_int_eq(saga_engine_add_listener(F.e, listen_a, &ua), SAGA_OK);
	ck_assert_int_eq(saga_engine_add_listener(F.e, listen_b, &ub), SAGA_OK);
	start("alpha");
	ck_assert_int_eq(saga_run_until_idle(F.e), SAGA_OK);
	int a = atomic_load(&heard_a), b = atomic_load(&heard_b);
	ck_assert_int_gt(a, 0);
	ck_assert_int_eq(a, b);

	/* Same function, other user data: not that listener. */
	ck_assert_int_eq(saga_engine_remove_listener(F.e, listen_a, &ub), SAGA_ENOTFOUND);
	ck_assert_int_eq(saga_engine_remove_listener(F.e, listen_a, &ua), SAGA_OK);
	ck_assert_int_eq(saga_engine_remove_listener(F.e, listen_a, &ua), SAGA_ENOTFOUND);
	ck_assert_ptr_nonnull(strstr(saga_engine_errmsg(F.e), "listener"));
	ck_assert_int_eq(saga_engine_remove_listener(F.e, NULL, &ua), SAGA_EINVAL);
	ck_assert_int_eq(saga_engine_remove_listener(NULL, listen_a, &ua), SAGA_EINVAL);
	start("alpha");
	ck_assert_int_eq(saga_run_until_idle(F.e), SAGA_OK);
	ck_assert_int_eq(atomic_load(&heard_a), a);
	ck_assert_int_eq(atomic_load(&heard_b), 2 * b);

	/* A listener that removes itself hears one event, even of a batch. */
	atomic_store(&heard_a, 0);
	ck_assert_int_eq(saga_engine_add_listener(F.e, listen_once, NULL), SAGA_OK);
	saga_start_request reqs[3] = { { "alpha", NULL, NULL },
		                       { "alpha", NULL, NULL },
		                       { "alpha", NULL, NULL } };
	int64_t ids[3];
	ck_assert_int_eq(saga_start_batch(F.e, ids, NULL, reqs, 3), SAGA_OK);
	ck_assert_int_eq(saga_run_until_idle(F.e), SAGA_OK);
	ck_assert_int_eq(atomic_load(&heard_a), 1);

	/* Removed in the middle of the list, the others stay. */
	ck_assert_int_eq(saga_engine_add_listener(F.e, listen_a, &ua), SAGA_OK);
	ck_assert_int_eq(saga_engine_add_listener(F.e, listen_a, &ub), SAGA_OK);
	ck_assert_int_eq(saga_engine_remove_listener(F.e, listen_a, &ua), SAGA_OK);
	atomic_store(&heard_a, 0);
	atomic_store(&heard_b, 0);
	start("alpha");
	ck_assert_int_eq(saga_run_until_idle(F.e), SAGA_OK);
	ck_assert_int_gt(atomic_load(&heard_a), 0);
	ck_assert_int_eq(atomic_load(&heard_a), atomic_load(&heard_b));
}
END_TEST

/* Listeners added and removed on one thread while workers and starters
 * deliver events on others: no crash, no race (ThreadSanitizer), and after
 * the last removal no event committed later reaches them. */
static void *starter(void *arg)
{
	(void)arg;
	for (int i = 0; i < 300; i++) {
		int64_t id;
		ck_assert_int_eq(saga_start(F.e, &id, NULL, "alpha", NULL, NULL), SAGA_OK);
	}
	return NULL;
}

START_TEST(listener_removal_while_delivering)
{
	open_engine(2, false);
	register_one(F.e, "alpha", 1);
	atomic_store(&heard_a, 0);
	atomic_store(&heard_b, 0);
	ck_assert_int_eq(saga_engine_add_listener(F.e, listen_b, NULL), SAGA_OK);
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, starter, NULL), 0);
	int users[8];
	for (int round = 0; round < 400; round++) {
		int *u = &users[round % 8];
		ck_assert_int_eq(saga_engine_add_listener(F.e, listen_a, u), SAGA_OK);
		ck_assert_int_eq(saga_engine_remove_listener(F.e, listen_a, u), SAGA_OK);
	}
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_join(t[i], NULL), 0);
	ck_assert_int_eq(saga_wait_idle(F.e, 60000), SAGA_OK);
	int a = atomic_load(&heard_a);
	int64_t id = start("alpha");
	ck_assert_int_eq(saga_wait_idle(F.e, 60000), SAGA_OK);
	saga_instance_info info;
	ck_assert_int_eq(saga_get(F.e, &info, id), SAGA_OK);
	ck_assert_int_eq(info.state, SAGA_COMPLETED);
	ck_assert_int_eq(atomic_load(&heard_a), a);
	ck_assert_int_gt(atomic_load(&heard_b), 600);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("query");
	TCase *tc = tcase_create("paging");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, paging_many_without_the_lock);
	tcase_add_test(tc, filters_narrow);
	tcase_add_test(tc, list_stops_and_filters_by_state);
	suite_add_tcase(s, tc);
	tc = tcase_create("listeners");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, listener_removal_stops_delivery);
	tcase_add_test(tc, listener_removal_while_delivering);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
