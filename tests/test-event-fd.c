/* saga_engine_fd: the descriptor a caller-driven engine makes readable when
 * it has work (a completion or a start from another thread, a timer due),
 * and not otherwise. Uses threads (suite "threads").
 * SPDX-License-Identifier: MIT */
#include "test-common.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

static struct {
	char dir[256];
	char path[300];
	fake_clock clock;
	saga_engine *e;
	int fd;
	char key[128]; /* of the last step that answered PENDING */
} F;

/* "pending": asynchronous; "retry": the first attempt fails (a timer of
 * 1000 ms with the fake clock, 20 ms with the system's). */
static saga_step_result act(saga_step_ctx *ctx, void *user)
{
	(void)user;
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(saga_step_context(ctx), "mode");
	const char *mode = cJSON_IsString(m) ? m->valuestring : "ok";
	if (strcmp(mode, "pending") == 0) {
		snprintf(F.key, sizeof(F.key), "%s", saga_step_key(ctx));
		return SAGA_STEP_PENDING;
	}
	if (strcmp(mode, "retry") == 0 && saga_step_attempt(ctx) == 1)
		return SAGA_STEP_RETRY;
	return SAGA_STEP_OK;
}

static void open_engine(bool fake, uint64_t retry_ms)
{
	tmpdir_make(F.dir, sizeof(F.dir));
	test_store_name(F.path, sizeof(F.path), F.dir, "s.db");
	saga_options o = SAGA_OPTIONS_INIT;
	o.path = F.path;
	o.durability = SAGA_DURABILITY_NORMAL;
	F.clock.wall = 1700000000000ull;
	F.clock.mono = 1000;
	if (fake)
		o.clock = fake_clock_make(&F.clock);
	char err[256];
	ck_assert_msg(saga_engine_open(&F.e, &o, err, sizeof(err)) == SAGA_OK, "open: %s", err);
	saga_definition *d;
	ck_assert_int_eq(saga_definition_new(&d, "p", 1), SAGA_OK);
	saga_step_spec s = { "s", SAGA_STEP_RETRIABLE, act, NULL, NULL };
	ck_assert_int_eq(saga_definition_add_step(d, &s), SAGA_OK);
	saga_retry_policy p = { 3, 0, SAGA_BACKOFF_CONSTANT, retry_ms, 0, 2.0, SAGA_JITTER_NONE };
	ck_assert_int_eq(saga_definition_set_retry(d, "s", &p), SAGA_OK);
	ck_assert_int_eq(saga_engine_register(F.e, d), SAGA_OK);
	saga_definition_free(d);
	ck_assert_int_eq(saga_engine_fd(F.e, &F.fd), SAGA_OK);
	ck_assert_int_ge(F.fd, 0);
}

static void close_engine(void)
{
	saga_engine_close(F.e);
	test_store_drop(F.path);
	tmpdir_remove(F.dir);
}

/* Is the descriptor readable within timeout_ms? */
static bool readable(int timeout_ms)
{
	struct pollfd p = { F.fd, POLLIN, 0 };
	int n = poll(&p, 1, timeout_ms);
	ck_assert_int_ge(n, 0);
	return n == 1 && (p.revents & POLLIN);
}

static int64_t start_mode(const char *mode)
{
	cJSON *in = cJSON_CreateObject();
	cJSON_AddStringToObject(in, "mode", mode);
	int64_t id = 0;
	ck_assert_int_eq(saga_start(F.e, &id, NULL, "p", NULL, in), SAGA_OK);
	cJSON_Delete(in);
	return id;
}

static saga_state state_of(int64_t id)
{
	saga_instance_info info;
	ck_assert_int_eq(saga_get(F.e, &info, id), SAGA_OK);
	return info.state;
}

/* Runs until idle; instance id is then in `state`, and the descriptor
 * not readable. */
static void run_expect(int64_t id, saga_state state)
{
	ck_assert_int_eq(saga_run_until_idle(F.e), SAGA_OK);
	ck_assert_int_eq(state_of(id), state);
	ck_assert(!readable(0));
}

START_TEST(flags_and_first_round)
{
	open_engine(true, 1000);
	int fl = fcntl(F.fd, F_GETFL), fdfl = fcntl(F.fd, F_GETFD);
	ck_assert(fl & O_NONBLOCK);
	ck_assert(fdfl & FD_CLOEXEC);
	int again = -1;
	ck_assert_int_eq(saga_engine_fd(F.e, &again), SAGA_OK);
	ck_assert_int_eq(again, F.fd);
	/* Readable at first, so a loop runs its first round; then, with
	 * nothing to do, not. */
	ck_assert(readable(0));
	ck_assert_int_eq(saga_run_due(F.e, NULL), SAGA_OK);
	ck_assert(!readable(0));
	close_engine();
}
END_TEST

static void *complete_thread(void *arg)
{
	(void)arg;
	ck_assert_int_eq(saga_complete(F.e, F.key, SAGA_STEP_OK, NULL), SAGA_OK);
	return NULL;
}

static void *start_thread(void *arg)
{
	*(int64_t *)arg = start_mode("ok");
	return NULL;
}

/* A completion, then a start, from another thread make it readable; after
 * the rounds, it is not. */
START_TEST(readable_on_work_from_another_thread)
{
	open_engine(true, 1000);
	int64_t id = start_mode("pending");
	run_expect(id, SAGA_WAITING);
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, complete_thread, NULL), 0);
	ck_assert(readable(60000));
	pthread_join(t, NULL);
	run_expect(id, SAGA_COMPLETED);

	int64_t id2 = 0;
	ck_assert_int_eq(pthread_create(&t, NULL, start_thread, &id2), 0);
	ck_assert(readable(60000));
	pthread_join(t, NULL);
	run_expect(id2, SAGA_COMPLETED);
	close_engine();
}
END_TEST

static void *start_at_thread(void *arg)
{
	int64_t id = 0;
	ck_assert_int_eq(saga_start_at(F.e, &id, NULL, "p", NULL, NULL, F.clock.wall + 500),
	                 SAGA_OK);
	*(int64_t *)arg = id;
	return NULL;
}

/* A start scheduled from another thread makes it readable: the loop sleeps
 * with the timeout it computed before, and must recompute it from
 * saga_next_due, which now gives the new, earlier timer. */
START_TEST(readable_on_a_scheduled_start)
{
	open_engine(true, 1000);
	ck_assert_int_eq(saga_run_due(F.e, NULL), SAGA_OK);
	ck_assert(!readable(0));
	int64_t id = 0;
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, start_at_thread, &id), 0);
	ck_assert_msg(readable(10000), "a scheduled start left the descriptor quiet");
	pthread_join(t, NULL);
	ck_assert_int_eq(saga_run_due(F.e, NULL), SAGA_OK);
	ck_assert(!readable(0));
	uint64_t due = 0;
	ck_assert_int_eq(saga_next_due(F.e, &due), SAGA_OK);
	ck_assert_uint_eq(due, F.clock.wall + 500);
	fake_clock_advance(&F.clock, 500);
	ck_assert_int_eq(saga_next_due(F.e, &due), SAGA_OK);
	ck_assert(readable(0));
	run_expect(id, SAGA_COMPLETED);
	close_engine();
}
END_TEST

/* With the fake clock: a retry timer in the future leaves it unreadable;
 * once the clock passes it, saga_next_due says so and it is readable. */
START_TEST(readable_when_a_timer_falls_due)
{
	open_engine(true, 1000);
	int64_t id = start_mode("retry");
	run_expect(id, SAGA_WAITING);
	uint64_t due = 0;
	ck_assert_int_eq(saga_next_due(F.e, &due), SAGA_OK);
	ck_assert_uint_eq(due, F.clock.wall + 1000);
	ck_assert(!readable(0));
	fake_clock_advance(&F.clock, 999);
	ck_assert_int_eq(saga_next_due(F.e, &due), SAGA_OK);
	ck_assert(!readable(0));
	fake_clock_advance(&F.clock, 1);
	ck_assert_int_eq(saga_next_due(F.e, &due), SAGA_OK);
	ck_assert_uint_eq(due, F.clock.wall);
	ck_assert(readable(0));
	ck_assert_int_eq(saga_run_due(F.e, NULL), SAGA_OK);
	ck_assert_int_eq(state_of(id), SAGA_COMPLETED);
	ck_assert(!readable(0));
	close_engine();
}
END_TEST

/* The loop of docs/getting-started.md with the system clock: poll with the
 * timeout saga_next_due gives until the descriptor is readable, then run. */
START_TEST(poll_loop_with_the_system_clock)
{
	open_engine(false, 20);
	int64_t id = start_mode("retry");
	ck_assert_int_eq(saga_run_until_idle(F.e), SAGA_OK);
	ck_assert_int_eq(state_of(id), SAGA_WAITING);
	int rounds = 0;
	while (state_of(id) != SAGA_COMPLETED) {
		ck_assert_int_lt(++rounds, 10000);
		uint64_t due = 0;
		ck_assert_int_eq(saga_next_due(F.e, &due), SAGA_OK);
		struct timeval tv;
		gettimeofday(&tv, NULL);
		uint64_t now = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
		int timeout = due == 0 ? -1 : due <= now ? 0 : (int)(due - now);
		if (readable(timeout))
			ck_assert_int_eq(saga_run_due(F.e, NULL), SAGA_OK);
	}
	ck_assert(!readable(0));
	close_engine();
}
END_TEST

START_TEST(refused)
{
	int fd = 7;
	ck_assert_int_eq(saga_engine_fd(NULL, &fd), SAGA_EINVAL);
	open_engine(true, 1000);
	ck_assert_int_eq(saga_engine_fd(F.e, NULL), SAGA_EINVAL);
	ck_assert_str_ne(saga_engine_errmsg(F.e), "no error");
	close_engine();
	tmpdir_make(F.dir, sizeof(F.dir));
	test_store_name(F.path, sizeof(F.path), F.dir, "w.db");
	saga_options o = SAGA_OPTIONS_INIT;
	o.path = F.path;
	o.workers = 1;
	ck_assert_int_eq(saga_engine_open(&F.e, &o, NULL, 0), SAGA_OK);
	ck_assert_int_eq(saga_engine_fd(F.e, &fd), SAGA_ESTATE);
	ck_assert_int_eq(fd, -1);
	close_engine();
}
END_TEST

int main(void)
{
	Suite *s = suite_create("event-fd");
	TCase *tc = tcase_create("event-fd");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, flags_and_first_round);
	tcase_add_test(tc, readable_on_work_from_another_thread);
	tcase_add_test(tc, readable_when_a_timer_falls_due);
	tcase_add_test(tc, readable_on_a_scheduled_start);
	tcase_add_test(tc, poll_loop_with_the_system_clock);
	tcase_add_test(tc, refused);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
