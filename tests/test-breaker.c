/* Circuit breakers (SEMANTICS.md, "Resilience policies": Circuit breaker).
 * SPDX-License-Identifier: MIT */
#include "test-common.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "saga.h"

/* ---- helpers ------------------------------------------------------------ */

#define MAX_EVENTS 64

typedef struct recorder {
	int n;
	saga_breaker_state from[MAX_EVENTS];
	saga_breaker_state to[MAX_EVENTS];
	uint64_t gen[MAX_EVENTS];
	saga_breaker *breaker; /* when set, the listener reads a snapshot */
} recorder;

static void on_transition(const char *name, saga_breaker_state from, saga_breaker_state to,
                          uint64_t generation, void *user)
{
	recorder *r = user;

	ck_assert_str_eq(name, "b");
	if (r->n < MAX_EVENTS) {
		r->from[r->n] = from;
		r->to[r->n] = to;
		r->gen[r->n] = generation;
	}
	r->n++;
	if (r->breaker != NULL) {
		/* Deadlocks (and the test times out) if the lock were still held. */
		saga_breaker_snapshot s;

		ck_assert_int_eq(saga_breaker_get_snapshot(&s, r->breaker), 0);
		ck_assert_uint_ge(s.generation, generation);
	}
}

static saga_breaker_config count_config(uint64_t size, double threshold, uint32_t min)
{
	saga_breaker_config c = SAGA_BREAKER_CONFIG_INIT;

	c.window = SAGA_WINDOW_COUNT;
	c.window_size = size;
	c.failure_rate_threshold = threshold;
	c.minimum_calls = min;
	c.open_wait_ms = 1000;
	c.half_open_calls = 3;
	return c;
}

static saga_breaker *make(const saga_breaker_config *c, fake_clock *fc, saga_clock *clk,
                          recorder *rec)
{
	saga_breaker *b = NULL;

	*clk = fake_clock_make(fc);
	ck_assert_int_eq(saga_breaker_new(&b, "b", c, clk), 0);
	ck_assert_ptr_nonnull(b);
	if (rec != NULL) {
		memset(rec, 0, sizeof(*rec));
		ck_assert_int_eq(saga_breaker_set_listener(b, on_transition, rec), 0);
	}
	return b;
}

/* One call that lasts `ms` milliseconds of the fake clock. */
static int call(saga_breaker *b, fake_clock *fc, uint64_t ms, saga_call_outcome outcome)
{
	saga_breaker_permit p;
	int rc = saga_breaker_acquire(b, &p, NULL);

	if (rc != 0)
		return rc;
	fake_clock_advance(fc, ms);
	ck_assert_int_eq(saga_breaker_record(b, &p, outcome), 0);
	return 0;
}

static saga_breaker_state state_of(saga_breaker *b)
{
	saga_breaker_snapshot s;

	ck_assert_int_eq(saga_breaker_get_snapshot(&s, b), 0);
	return s.state;
}

static void open_it(saga_breaker *b, fake_clock *fc)
{
	while (state_of(b) == SAGA_BREAKER_CLOSED)
		ck_assert_int_eq(call(b, fc, 0, SAGA_CALL_FAILURE), 0);
	ck_assert_int_eq(state_of(b), SAGA_BREAKER_OPEN);
}

/* ---- windows ------------------------------------------------------------ */

START_TEST(count_window_opens_at_60_percent)
{
	/* window 10, 50 %, minimum 5: 4 calls with 3 failures stay CLOSED; a 5th
	 * (a success) opens it: 3/5 = 60 %. */
	fake_clock fc = { 1000, 5000 };
	saga_clock clk;
	recorder rec;
	saga_breaker_config c = count_config(10, 50.0, 5);
	saga_breaker *b = make(&c, &fc, &clk, &rec);
	saga_breaker_snapshot s;

	ck_assert_int_eq(call(b, &fc, 1, SAGA_CALL_FAILURE), 0);
	ck_assert_int_eq(call(b, &fc, 1, SAGA_CALL_FAILURE), 0);
	ck_assert_int_eq(call(b, &fc, 1, SAGA_CALL_SUCCESS), 0);
	ck_assert_int_eq(call(b, &fc, 1, SAGA_CALL_FAILURE), 0);
	ck_assert_int_eq(saga_breaker_get_snapshot(&s, b), 0);
	ck_assert_int_eq(s.state, SAGA_BREAKER_CLOSED);
	ck_assert_uint_eq(s.calls, 4);
	ck_assert_uint_eq(s.failures, 3);
	ck_assert_double_eq_tol(s.failure_rate, 75.0, 1e-9);
	ck_assert_int_eq(rec.n, 0);

	ck_assert_int_eq(call(b, &fc, 1, SAGA_CALL_SUCCESS), 0);
	ck_assert_int_eq(saga_breaker_get_snapshot(&s, b), 0);
	ck_assert_int_eq(s.state, SAGA_BREAKER_OPEN);
	ck_assert_double_eq_tol(s.failure_rate, 60.0, 1e-9);
	ck_assert_int_eq(rec.n, 1);
	ck_assert_int_eq(rec.from[0], SAGA_BREAKER_CLOSED);
	ck_assert_int_eq(rec.to[0], SAGA_BREAKER_OPEN);
	ck_assert_uint_eq(rec.gen[0], s.generation);
	saga_breaker_free(b);
}
END_TEST

START_TEST(count_window_forgets_old_calls)
{
	/* 5 failures then 10 successes in a count-10 window: failure rate 0 */
	fake_clock fc = { 0, 0 };
	saga_clock clk;
	saga_breaker_config c = count_config(10, 60.0, 10);
	saga_breaker *b = make(&c, &fc, &clk, NULL);
	saga_breaker_snapshot s;

	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(call(b, &fc, 1, SAGA_CALL_FAILURE), 0);
	for (int i = 0; i < 10; i++)
		ck_assert_int_eq(call(b, &fc, 1, SAGA_CALL_SUCCESS), 0);
	ck_assert_int_eq(saga_breaker_get_snapshot(&s, b), 0);
	ck_assert_int_eq(s.state, SAGA_BREAKER_CLOSED);
	ck_assert_uint_eq(s.calls, 10);
	ck_assert_uint_eq(s.failures, 0);
	ck_assert_double_eq(s.failure_rate, 0.0);
	saga_breaker_free(b);
}
END_TEST

START_TEST(time_window_expires_by_time)
{
	/* 10 s in 10 buckets: failures at 0.5 s count at 9.9 s, are gone at
	 * 10.6 s; after an hour idle one success sees 0 failures. */
	fake_clock fc = { 1700000000000u, 0 };
	saga_clock clk;
	saga_breaker_config c = count_config(10000, 50.0, 100);
	saga_breaker *b;
	saga_breaker_snapshot s;

	c.window = SAGA_WINDOW_TIME;
	c.buckets = 10;
	b = make(&c, &fc, &clk, NULL);

	fake_clock_advance(&fc, 500);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(call(b, &fc, 0, SAGA_CALL_FAILURE), 0);
	fake_clock_advance(&fc, 9400); /* t = 9.9 s */
	ck_assert_int_eq(call(b, &fc, 0, SAGA_CALL_SUCCESS), 0);
	ck_assert_int_eq(saga_breaker_get_snapshot(&s, b), 0);
	ck_assert_uint_eq(s.failures, 3);
	ck_assert_uint_eq(s.calls, 4);

	fake_clock_advance(&fc, 700); /* t = 10.6 s */
	ck_assert_int_eq(saga_breaker_get_snapshot(&s, b), 0);
	ck_assert_uint_eq(s.failures, 0);
	ck_assert_uint_eq(s.calls, 1); /* the success at 9.9 s */

	fake_clock_advance(&fc, 3600u * 1000u);
	ck_assert_int_eq(call(b, &fc, 0, SAGA_CALL_SUCCESS), 0);
	ck_assert_int_eq(saga_breaker_get_snapshot(&s, b), 0);
	ck_assert_uint_eq(s.failures, 0);
	ck_assert_uint_eq(s.calls, 1);
	ck_assert_int_eq(s.state, SAGA_BREAKER_CLOSED);
	saga_breaker_free(b);
}
END_TEST

START_TEST(time_window_opens)
{
	fake_clock fc = { 0, 0 };
	saga_clock clk;
	saga_breaker_config c = count_config(1000, 50.0, 4);
	saga_breaker *b;

	c.window = SAGA_WINDOW_TIME;
	c.buckets = 4;
	b = make(&c, &fc, &clk, NULL);
	/* failures spread over the window add up */
	ck_assert_int_eq(call(b, &fc, 0, SAGA_CALL_SUCCESS), 0);
	fake_clock_advance(&fc, 300);
	ck_assert_int_eq(call(b, &fc, 0, SAGA_CALL_FAILURE), 0);
	fake_clock_advance(&fc, 300);
	ck_assert_int_eq(call(b, &fc, 0, SAGA_CALL_SUCCESS), 0);
	ck_assert_int_eq(state_of(b), SAGA_BREAKER_CLOSED);
	fake_clock_advance(&fc, 300);
	ck_assert_int_eq(call(b, &fc, 0, SAGA_CALL_FAILURE), 0);
	ck_assert_int_eq(state_of(b), SAGA_BREAKER_OPEN);
	saga_breaker_free(b);
}
END_TEST

START_TEST(slow_calls_open_with_no_failure)
{
	/* slow threshold 100 ms at 50 %: 5 calls of 10 ms and 5 of 150 ms open
	 * it with a failure rate of 0 */
	fake_clock fc = { 0, 0 };
	saga_clock clk;
	recorder rec;
	saga_breaker_config c = count_config(10, 50.0, 10);
	saga_breaker *b;
	saga_breaker_snapshot s;

	c.slow_call_ms = 100;
	c.slow_call_rate_threshold = 50.0;
	b = make(&c, &fc, &clk, &rec);
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(call(b, &fc, 10, SAGA_CALL_SUCCESS), 0);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(call(b, &fc, 150, SAGA_CALL_SUCCESS), 0);
	ck_assert_int_eq(saga_breaker_get_snapshot(&s, b), 0);
	ck_assert_int_eq(s.state, SAGA_BREAKER_CLOSED);
	ck_assert_uint_eq(s.slow_calls, 4);
	ck_assert_int_eq(call(b, &fc, 150, SAGA_CALL_SUCCESS), 0);
	ck_assert_int_eq(saga_breaker_get_snapshot(&s, b), 0);
	ck_assert_int_eq(s.state, SAGA_BREAKER_OPEN);
	ck_assert_double_eq(s.failure_rate, 0.0);
	ck_assert_double_eq_tol(s.slow_call_rate, 50.0, 1e-9);
	ck_assert_uint_eq(s.failures, 0);
	ck_assert_int_eq(rec.n, 1);

	/* slow_call_ms 0 turns slow calls off */
	saga_breaker_free(b);
	c.slow_call_ms = 0;
	b = make(&c, &fc, &clk, NULL);
	for (int i = 0; i < 10; i++)
		ck_assert_int_eq(call(b, &fc, 100000, SAGA_CALL_SUCCESS), 0);
	ck_assert_int_eq(saga_breaker_get_snapshot(&s, b), 0);
	ck_assert_int_eq(s.state, SAGA_BREAKER_CLOSED);
	ck_assert_uint_eq(s.slow_calls, 0);
	saga_breaker_free(b);
}
END_TEST

START_TEST(ignored_outcome_counts_nothing)
{
	fake_clock fc = { 0, 0 };
	saga_clock clk;
	saga_breaker_config c = count_config(10, 50.0, 1);
	saga_breaker *b = make(&c, &fc, &clk, NULL);
	saga_breaker_snapshot s;

	for (int i = 0; i < 20; i++)
		ck_assert_int_eq(call(b, &fc, 1, SAGA_CALL_IGNORED), 0);
	ck_assert_int_eq(saga_breaker_get_snapshot(&s, b), 0);
	ck_assert_uint_eq(s.calls, 0);
	ck_assert_int_eq(s.state, SAGA_BREAKER_CLOSED);
	saga_breaker_free(b);
}
END_TEST

/* ---- open wait ---------------------------------------------------------- */

START_TEST(open_wait_one_second)
{
	/* a call at +999 ms is refused with "retry after 1 ms"; at +1000 ms the
	 * breaker is HALF_OPEN */
	fake_clock fc = { 0, 100 };
	saga_clock clk;
	recorder rec;
	saga_breaker_config c = count_config(10, 50.0, 1);
	saga_breaker *b = make(&c, &fc, &clk, &rec);
	saga_breaker_permit p;
	saga_breaker_snapshot s;
	uint64_t after = 12345;

	open_it(b, &fc);
	ck_assert_int_eq(saga_breaker_get_snapshot(&s, b), 0);
	ck_assert_uint_eq(s.open_until_ms, fc.mono + 1000);
	ck_assert_uint_eq(s.current_open_wait_ms, 1000);
	ck_assert_int_eq(saga_breaker_acquire(b, &p, &after), SAGA_EOPEN);
	ck_assert_uint_eq(after, 1000);
	fake_clock_advance(&fc, 999);
	ck_assert_int_eq(saga_breaker_acquire(b, &p, &after), SAGA_EOPEN);
	ck_assert_uint_eq(after, 1);
	ck_assert_int_eq(saga_breaker_acquire(b, &p, NULL), SAGA_EOPEN);
	ck_assert_int_eq(state_of(b), SAGA_BREAKER_OPEN);
	fake_clock_advance(&fc, 1);
	ck_assert_int_eq(state_of(b), SAGA_BREAKER_HALF_OPEN);
	ck_assert_int_eq(saga_breaker_acquire(b, &p, &after), 0);
	ck_assert_int_eq(rec.n, 2);
	ck_assert_int_eq(rec.from[1], SAGA_BREAKER_OPEN);
	ck_assert_int_eq(rec.to[1], SAGA_BREAKER_HALF_OPEN);
	saga_breaker_free(b);
}
END_TEST

START_TEST(exponential_open_wait)
{
	/* 1, 2, 4, 8, 8 s (cap 8), back to 1 s after it closes */
	fake_clock fc = { 0, 0 };
	saga_clock clk;
	saga_breaker_config c = count_config(10, 50.0, 1);
	saga_breaker *b;
	saga_breaker_snapshot s;
	static const uint64_t waits[] = { 1000, 2000, 4000, 8000, 8000 };
	saga_breaker_permit p;

	c.open_wait_max_ms = 8000;
	c.half_open_calls = 1;
	b = make(&c, &fc, &clk, NULL);
	open_it(b, &fc);
	for (int i = 0; i < 5; i++) {
		ck_assert_int_eq(saga_breaker_get_snapshot(&s, b), 0);
		ck_assert_int_eq(s.state, SAGA_BREAKER_OPEN);
		ck_assert_uint_eq(s.current_open_wait_ms, waits[i]);
		ck_assert_uint_eq(s.open_until_ms, fc.mono + waits[i]);
		fake_clock_advance(&fc, waits[i] - 1);
		ck_assert_int_eq(saga_breaker_acquire(b, &p, NULL), SAGA_EOPEN);
		fake_clock_advance(&fc, 1);
		ck_assert_int_eq(saga_breaker_acquire(b, &p, NULL), 0);
		if (i < 4)
			ck_assert_int_eq(saga_breaker_record(b, &p, SAGA_CALL_FAILURE), 0);
		else
			ck_assert_int_eq(saga_breaker_record(b, &p, SAGA_CALL_SUCCESS), 0);
	}
	ck_assert_int_eq(state_of(b), SAGA_BREAKER_CLOSED);
	open_it(b, &fc);
	ck_assert_int_eq(saga_breaker_get_snapshot(&s, b), 0);
	ck_assert_uint_eq(s.current_open_wait_ms, 1000);
	ck_assert_uint_eq(s.open_until_ms, fc.mono + 1000);
	saga_breaker_free(b);
}
END_TEST

/* ---- half-open ---------------------------------------------------------- */

static saga_breaker *half_open(fake_clock *fc, saga_clock *clk, recorder *rec,
                               uint64_t half_open_max)
{
	saga_breaker_config c = count_config(10, 50.0, 1);
	saga_breaker *b;

	c.half_open_max_ms = half_open_max;
	b = make(&c, fc, clk, rec);
	open_it(b, fc);
	fake_clock_advance(fc, 1000);
	ck_assert_int_eq(state_of(b), SAGA_BREAKER_HALF_OPEN);
	return b;
}

START_TEST(half_open_three_trials_then_closed)
{
	/* a 4th concurrent call is refused; 2 successes + 1 failure at 50 % close */
	fake_clock fc = { 0, 0 };
	saga_clock clk;
	recorder rec;
	saga_breaker *b = half_open(&fc, &clk, &rec, 0);
	saga_breaker_permit p[4];
	saga_breaker_snapshot s;
	uint64_t after = 99;

	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(saga_breaker_acquire(b, &p[i], NULL), 0);
	ck_assert_int_eq(saga_breaker_acquire(b, &p[3], &after), SAGA_EOPEN);
	ck_assert_uint_eq(after, 0);
	ck_assert_int_eq(saga_breaker_get_snapshot(&s, b), 0);
	ck_assert_uint_eq(s.trial_calls_in_flight, 3);
	ck_assert_int_eq(saga_breaker_record(b, &p[0], SAGA_CALL_SUCCESS), 0);
	ck_assert_int_eq(saga_breaker_record(b, &p[1], SAGA_CALL_FAILURE), 0);
	/* a slot is not freed by a finished trial: the sample is 3 calls */
	ck_assert_int_eq(saga_breaker_acquire(b, &p[3], &after), SAGA_EOPEN);
	ck_assert_int_eq(state_of(b), SAGA_BREAKER_HALF_OPEN);
	ck_assert_int_eq(saga_breaker_record(b, &p[2], SAGA_CALL_SUCCESS), 0);
	ck_assert_int_eq(saga_breaker_get_snapshot(&s, b), 0);
	ck_assert_int_eq(s.state, SAGA_BREAKER_CLOSED);
	ck_assert_uint_eq(s.calls, 0); /* a fresh window */
	ck_assert_int_eq(rec.n, 3);
	ck_assert_int_eq(rec.from[2], SAGA_BREAKER_HALF_OPEN);
	ck_assert_int_eq(rec.to[2], SAGA_BREAKER_CLOSED);
	saga_breaker_free(b);
}
END_TEST

START_TEST(half_open_two_failures_reopen)
{
	/* 1 success + 2 failures at 50 % -> OPEN */
	fake_clock fc = { 0, 0 };
	saga_clock clk;
	recorder rec;
	saga_breaker *b = half_open(&fc, &clk, &rec, 0);
	saga_breaker_permit p[3];

	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(saga_breaker_acquire(b, &p[i], NULL), 0);
	ck_assert_int_eq(saga_breaker_record(b, &p[0], SAGA_CALL_FAILURE), 0);
	ck_assert_int_eq(saga_breaker_record(b, &p[1], SAGA_CALL_SUCCESS), 0);
	ck_assert_int_eq(saga_breaker_record(b, &p[2], SAGA_CALL_FAILURE), 0);
	ck_assert_int_eq(state_of(b), SAGA_BREAKER_OPEN);
	ck_assert_int_eq(rec.n, 3);
	ck_assert_int_eq(rec.to[2], SAGA_BREAKER_OPEN);
	saga_breaker_free(b);
}
END_TEST

START_TEST(half_open_ignored_gives_slot_back)
{
	fake_clock fc = { 0, 0 };
	saga_clock clk;
	saga_breaker *b = half_open(&fc, &clk, NULL, 0);
	saga_breaker_permit p[4];

	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(saga_breaker_acquire(b, &p[i], NULL), 0);
	ck_assert_int_eq(saga_breaker_record(b, &p[0], SAGA_CALL_IGNORED), 0);
	ck_assert_int_eq(saga_breaker_acquire(b, &p[3], NULL), 0);
	ck_assert_int_eq(saga_breaker_acquire(b, &p[0], NULL), SAGA_EOPEN);
	saga_breaker_free(b);
}
END_TEST

START_TEST(hanging_probe_reopens_and_is_ignored)
{
	/* a probe that hangs past the half-open limit reopens the breaker and its
	 * late result is ignored */
	fake_clock fc = { 0, 0 };
	saga_clock clk;
	recorder rec;
	saga_breaker *b = half_open(&fc, &clk, &rec, 5000);
	saga_breaker_permit p;
	saga_breaker_snapshot before, after;

	ck_assert_int_eq(saga_breaker_acquire(b, &p, NULL), 0);
	ck_assert_int_eq(rec.n, 2);
	fake_clock_advance(&fc, 5000);
	ck_assert_int_eq(state_of(b), SAGA_BREAKER_HALF_OPEN); /* at the limit, not past */
	fake_clock_advance(&fc, 1);
	ck_assert_int_eq(saga_breaker_get_snapshot(&before, b), 0);
	ck_assert_int_eq(before.state, SAGA_BREAKER_OPEN);
	ck_assert_int_eq(rec.n, 3);
	ck_assert_int_eq(rec.from[2], SAGA_BREAKER_HALF_OPEN);
	ck_assert_int_eq(rec.to[2], SAGA_BREAKER_OPEN);

	fake_clock_advance(&fc, 10);
	ck_assert_int_eq(saga_breaker_record(b, &p, SAGA_CALL_SUCCESS), 0);
	ck_assert_int_eq(saga_breaker_get_snapshot(&after, b), 0);
	ck_assert_int_eq(after.state, SAGA_BREAKER_OPEN);
	ck_assert_uint_eq(after.generation, before.generation);
	ck_assert_uint_eq(after.open_until_ms, before.open_until_ms);
	ck_assert_int_eq(rec.n, 3);
	saga_breaker_free(b);
}
END_TEST

START_TEST(hanging_probe_noticed_by_record)
{
	/* nobody looked in between: the late record itself notices the limit */
	fake_clock fc = { 0, 0 };
	saga_clock clk;
	recorder rec;
	saga_breaker *b = half_open(&fc, &clk, &rec, 5000);
	saga_breaker_permit p;

	ck_assert_int_eq(saga_breaker_acquire(b, &p, NULL), 0);
	fake_clock_advance(&fc, 6000);
	ck_assert_int_eq(saga_breaker_record(b, &p, SAGA_CALL_SUCCESS), 0);
	ck_assert_int_eq(state_of(b), SAGA_BREAKER_OPEN);
	ck_assert_int_eq(rec.n, 3);
	ck_assert_int_eq(rec.to[2], SAGA_BREAKER_OPEN);
	saga_breaker_free(b);
}
END_TEST

/* ---- generations, clocks, forced states ----------------------------------- */

START_TEST(old_generation_permit_changes_nothing)
{
	fake_clock fc = { 0, 0 };
	saga_clock clk;
	recorder rec;
	saga_breaker_config c = count_config(10, 50.0, 5);
	saga_breaker *b = make(&c, &fc, &clk, &rec);
	saga_breaker_permit p[10];
	saga_breaker_snapshot s1, s2;

	for (int i = 0; i < 10; i++)
		ck_assert_int_eq(saga_breaker_acquire(b, &p[i], NULL), 0);
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(saga_breaker_record(b, &p[i], SAGA_CALL_FAILURE), 0);
	ck_assert_int_eq(saga_breaker_get_snapshot(&s1, b), 0);
	ck_assert_int_eq(s1.state, SAGA_BREAKER_OPEN);
	ck_assert_int_eq(rec.n, 1);
	/* the other five were taken before the transition */
	for (int i = 5; i < 10; i++)
		ck_assert_int_eq(saga_breaker_record(b, &p[i],
		                                     i % 2 ? SAGA_CALL_FAILURE : SAGA_CALL_SUCCESS),
		                 0);
	ck_assert_int_eq(saga_breaker_get_snapshot(&s2, b), 0);
	ck_assert_int_eq(rec.n, 1);
	ck_assert_uint_eq(s2.generation, s1.generation);
	ck_assert_uint_eq(s2.calls, s1.calls);
	ck_assert_uint_eq(s2.failures, s1.failures);

	/* a trial permit of an earlier half-open period is ignored too */
	fake_clock_advance(&fc, 1000);
	{
		saga_breaker_permit t[3], old;

		for (int i = 0; i < 3; i++)
			ck_assert_int_eq(saga_breaker_acquire(b, &t[i], NULL), 0);
		old = t[0];
		for (int i = 0; i < 3; i++)
			ck_assert_int_eq(saga_breaker_record(b, &t[i], SAGA_CALL_FAILURE), 0);
		ck_assert_int_eq(state_of(b), SAGA_BREAKER_OPEN);
		fake_clock_advance(&fc, 1000);
		ck_assert_int_eq(saga_breaker_acquire(b, &t[0], NULL), 0);
		ck_assert_int_eq(saga_breaker_get_snapshot(&s1, b), 0);
		ck_assert_int_eq(saga_breaker_record(b, &old, SAGA_CALL_SUCCESS), 0);
		ck_assert_int_eq(saga_breaker_record(b, &old, SAGA_CALL_SUCCESS), 0);
		ck_assert_int_eq(saga_breaker_get_snapshot(&s2, b), 0);
		ck_assert_int_eq(s2.state, SAGA_BREAKER_HALF_OPEN);
		ck_assert_uint_eq(s2.calls, 0);
		ck_assert_uint_eq(s2.generation, s1.generation);
	}
	saga_breaker_free(b);
}
END_TEST

START_TEST(wall_clock_change_changes_nothing)
{
	/* moving the wall clock back an hour changes nothing */
	fake_clock fc = { 1700000000000u, 50 };
	saga_clock clk;
	saga_breaker_config c = count_config(10, 50.0, 1);
	saga_breaker *b;
	saga_breaker_permit p;
	saga_breaker_snapshot s;
	uint64_t after;

	c.window = SAGA_WINDOW_TIME;
	c.window_size = 10000;
	c.buckets = 10;
	b = make(&c, &fc, &clk, NULL);
	open_it(b, &fc);
	fc.wall -= 3600u * 1000u;
	fc.mono += 999;
	ck_assert_int_eq(saga_breaker_acquire(b, &p, &after), SAGA_EOPEN);
	ck_assert_uint_eq(after, 1);
	fc.wall += 7200u * 1000u;
	ck_assert_int_eq(saga_breaker_acquire(b, &p, &after), SAGA_EOPEN);
	ck_assert_uint_eq(after, 1);
	fc.mono += 1;
	ck_assert_int_eq(saga_breaker_acquire(b, &p, NULL), 0);
	ck_assert_int_eq(saga_breaker_record(b, &p, SAGA_CALL_SUCCESS), 0);
	ck_assert_int_eq(saga_breaker_get_snapshot(&s, b), 0);
	ck_assert_int_eq(s.state, SAGA_BREAKER_HALF_OPEN);
	/* and in CLOSED: a wall jump does not age the time window */
	saga_breaker_free(b);
	c.minimum_calls = 100;
	b = make(&c, &fc, &clk, NULL);
	ck_assert_int_eq(call(b, &fc, 0, SAGA_CALL_FAILURE), 0);
	fc.wall -= 3600u * 1000u;
	ck_assert_int_eq(saga_breaker_get_snapshot(&s, b), 0);
	ck_assert_uint_eq(s.failures, 1);
	fc.wall += 2 * 3600u * 1000u;
	ck_assert_int_eq(saga_breaker_get_snapshot(&s, b), 0);
	ck_assert_uint_eq(s.failures, 1);
	saga_breaker_free(b);
}
END_TEST

START_TEST(forced_states)
{
	fake_clock fc = { 0, 0 };
	saga_clock clk;
	recorder rec;
	saga_breaker_config c = count_config(10, 50.0, 1);
	saga_breaker *b = make(&c, &fc, &clk, &rec);
	saga_breaker_permit p;
	saga_breaker_snapshot s;
	uint64_t after;

	ck_assert_int_eq(saga_breaker_force(b, SAGA_BREAKER_DISABLED), 0);
	ck_assert_int_eq(rec.n, 1);
	for (int i = 0; i < 50; i++)
		ck_assert_int_eq(call(b, &fc, 1, SAGA_CALL_FAILURE), 0);
	ck_assert_int_eq(saga_breaker_get_snapshot(&s, b), 0);
	ck_assert_int_eq(s.state, SAGA_BREAKER_DISABLED);
	ck_assert_uint_eq(s.calls, 0);
	/* forcing the same state again is no transition */
	ck_assert_int_eq(saga_breaker_force(b, SAGA_BREAKER_DISABLED), 0);
	ck_assert_int_eq(rec.n, 1);

	ck_assert_int_eq(saga_breaker_force(b, SAGA_BREAKER_FORCED_OPEN), 0);
	ck_assert_int_eq(rec.n, 2);
	fake_clock_advance(&fc, 1000000);
	ck_assert_int_eq(saga_breaker_acquire(b, &p, &after), SAGA_EOPEN);
	ck_assert_uint_gt(after, 0);
	ck_assert_int_eq(state_of(b), SAGA_BREAKER_FORCED_OPEN);

	ck_assert_int_eq(saga_breaker_force(b, SAGA_BREAKER_CLOSED), 0);
	ck_assert_int_eq(rec.n, 3);
	ck_assert_int_eq(rec.from[2], SAGA_BREAKER_FORCED_OPEN);
	ck_assert_int_eq(rec.to[2], SAGA_BREAKER_CLOSED);
	ck_assert_int_eq(call(b, &fc, 1, SAGA_CALL_SUCCESS), 0);

	/* CLOSED from OPEN resets the counts */
	open_it(b, &fc);
	ck_assert_int_eq(saga_breaker_force(b, SAGA_BREAKER_CLOSED), 0);
	ck_assert_int_eq(saga_breaker_get_snapshot(&s, b), 0);
	ck_assert_int_eq(s.state, SAGA_BREAKER_CLOSED);
	ck_assert_uint_eq(s.calls, 0);

	ck_assert_int_eq(saga_breaker_force(b, SAGA_BREAKER_OPEN), SAGA_EINVAL);
	ck_assert_int_eq(saga_breaker_force(b, SAGA_BREAKER_HALF_OPEN), SAGA_EINVAL);
	ck_assert_int_eq(saga_breaker_force(NULL, SAGA_BREAKER_CLOSED), SAGA_EINVAL);
	saga_breaker_free(b);
}
END_TEST

START_TEST(listener_runs_outside_the_lock)
{
	fake_clock fc = { 0, 0 };
	saga_clock clk;
	recorder rec;
	saga_breaker_config c = count_config(10, 50.0, 1);
	saga_breaker *b = make(&c, &fc, &clk, &rec);

	rec.breaker = b;
	open_it(b, &fc);
	fake_clock_advance(&fc, 1000);
	ck_assert_int_eq(state_of(b), SAGA_BREAKER_HALF_OPEN);
	ck_assert_int_eq(rec.n, 2);
	/* removing the listener */
	ck_assert_int_eq(saga_breaker_set_listener(b, NULL, NULL), 0);
	ck_assert_int_eq(saga_breaker_force(b, SAGA_BREAKER_CLOSED), 0);
	ck_assert_int_eq(rec.n, 2);
	saga_breaker_free(b);
}
END_TEST

START_TEST(config_is_validated)
{
	saga_breaker_config good = count_config(10, 50.0, 5), c;
	saga_breaker *b = (saga_breaker *)&good;

	ck_assert_int_eq(saga_breaker_new(&b, "b", &good, NULL), 0);
	ck_assert_str_eq(saga_breaker_name(b), "b");
	saga_breaker_free(b);
	saga_breaker_free(NULL);

#define REFUSED(mutation)                                                           \
	do {                                                                        \
		c = good;                                                           \
		mutation;                                                           \
		b = (saga_breaker *)&good;                                          \
		ck_assert_int_eq(saga_breaker_new(&b, "b", &c, NULL), SAGA_EINVAL); \
		ck_assert_ptr_null(b);                                              \
	} while (0)

	REFUSED(c.version = 2);
	REFUSED(c.failure_rate_threshold = 0.0);
	REFUSED(c.failure_rate_threshold = 100.5);
	REFUSED(c.failure_rate_threshold = NAN);
	REFUSED(c.slow_call_rate_threshold = -1.0);
	REFUSED(c.slow_call_rate_threshold = 101.0);
	REFUSED(c.window_size = 0);
	REFUSED(c.minimum_calls = 0);
	REFUSED(c.half_open_calls = 0);
	REFUSED(c.window = (saga_window_kind)7);
	REFUSED((c.window = SAGA_WINDOW_TIME, c.window_size = 10000, c.buckets = 0));
	REFUSED((c.window = SAGA_WINDOW_TIME, c.window_size = 10000, c.buckets = 3));
	REFUSED((c.window = SAGA_WINDOW_TIME, c.window_size = 5, c.buckets = 10));
#undef REFUSED

	ck_assert_int_eq(saga_breaker_new(&b, NULL, &good, NULL), SAGA_EINVAL);
	ck_assert_int_eq(saga_breaker_new(&b, "", &good, NULL), SAGA_EINVAL);
	ck_assert_int_eq(saga_breaker_new(&b, "b", NULL, NULL), SAGA_EINVAL);
	ck_assert_int_eq(saga_breaker_new(NULL, "b", &good, NULL), SAGA_EINVAL);

	/* thresholds of exactly 100 and a time window of 10 s / 10 are fine */
	c = good;
	c.failure_rate_threshold = 100.0;
	c.window = SAGA_WINDOW_TIME;
	c.window_size = 10000;
	c.buckets = 10;
	ck_assert_int_eq(saga_breaker_new(&b, "b", &c, NULL), 0);
	saga_breaker_free(b);
	/* the system clock works too */
	{
		saga_breaker_config d = SAGA_BREAKER_CONFIG_INIT;
		saga_breaker_permit p;

		ck_assert_int_eq(saga_breaker_new(&b, "sys", &d, NULL), 0);
		ck_assert_int_eq(saga_breaker_acquire(b, &p, NULL), 0);
		ck_assert_int_eq(saga_breaker_record(b, &p, SAGA_CALL_SUCCESS), 0);
		ck_assert_int_eq(saga_breaker_record(b, &p, (saga_call_outcome)9), SAGA_EINVAL);
		saga_breaker_free(b);
	}
}
END_TEST

START_TEST(state_names)
{
	ck_assert_str_eq(saga_breaker_state_name(SAGA_BREAKER_CLOSED), "CLOSED");
	ck_assert_str_eq(saga_breaker_state_name(SAGA_BREAKER_OPEN), "OPEN");
	ck_assert_str_eq(saga_breaker_state_name(SAGA_BREAKER_HALF_OPEN), "HALF_OPEN");
	ck_assert_str_eq(saga_breaker_state_name(SAGA_BREAKER_DISABLED), "DISABLED");
	ck_assert_str_eq(saga_breaker_state_name(SAGA_BREAKER_FORCED_OPEN), "FORCED_OPEN");
	ck_assert_ptr_nonnull(saga_breaker_state_name((saga_breaker_state)42));
}
END_TEST

/* ---- threads -------------------------------------------------------------- */

#define THREADS    16
#define ITERATIONS 3000
#define MAX_GEN    200000

typedef struct shared {
	saga_breaker *b;
	_Atomic uint64_t now;
	atomic_int events;
	atomic_int seen[MAX_GEN]; /* events per generation */
	atomic_int to_state[MAX_GEN];
	atomic_int from_state[MAX_GEN];
	atomic_int admitted[MAX_GEN]; /* trial permits per generation */
	atomic_int overflow;
	pthread_barrier_t start;
} shared;

static uint64_t atomic_mono(void *user)
{
	return atomic_load(&((shared *)user)->now);
}

static void count_event(const char *name, saga_breaker_state from, saga_breaker_state to,
                        uint64_t generation, void *user)
{
	shared *sh = user;

	(void)name;
	atomic_fetch_add(&sh->events, 1);
	if (generation < MAX_GEN) {
		atomic_fetch_add(&sh->seen[generation], 1);
		atomic_store(&sh->to_state[generation], (int)to);
		atomic_store(&sh->from_state[generation], (int)from);
	} else {
		atomic_fetch_add(&sh->overflow, 1);
	}
}

static void *hammer(void *arg)
{
	shared *sh = arg;
	uint64_t rng = (uint64_t)(uintptr_t)&rng;

	pthread_barrier_wait(&sh->start);
	for (int i = 0; i < ITERATIONS; i++) {
		saga_breaker_permit p;
		uint64_t r = saga_random_next(&rng);

		if (saga_breaker_acquire(sh->b, &p, NULL) != 0) {
			if (r % 4 == 0)
				atomic_fetch_add(&sh->now, 1);
			continue;
		}
		if (p.trial && p.generation < MAX_GEN)
			atomic_fetch_add(&sh->admitted[p.generation], 1);
		if (r % 8 == 0)
			atomic_fetch_add(&sh->now, 1);
		ck_assert_int_eq(
		        saga_breaker_record(sh->b, &p,
		                            (r >> 8) % 2 ? SAGA_CALL_FAILURE : SAGA_CALL_SUCCESS),
		        0);
	}
	return NULL;
}

START_TEST(threads_hammer_half_open)
{
	/* half-open admissions never exceed the trial count, and each transition
	 * fires exactly one event */
	static shared sh;
	saga_clock clk = { NULL, atomic_mono, &sh };
	saga_breaker_config c = count_config(4, 50.0, 4);
	saga_breaker_snapshot s;
	pthread_t t[THREADS];

	memset(&sh, 0, sizeof(sh));
	c.open_wait_ms = 2;
	c.half_open_calls = 3;
	c.half_open_max_ms = 3;
	ck_assert_int_eq(saga_breaker_new(&sh.b, "hammer", &c, &clk), 0);
	ck_assert_int_eq(saga_breaker_set_listener(sh.b, count_event, &sh), 0);
	ck_assert_int_eq(pthread_barrier_init(&sh.start, NULL, THREADS), 0);
	for (int i = 0; i < THREADS; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, hammer, &sh), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&sh.start);

	ck_assert_int_eq(saga_breaker_get_snapshot(&s, sh.b), 0);
	ck_assert_int_eq(atomic_load(&sh.overflow), 0);
	ck_assert_uint_lt(s.generation, MAX_GEN);
	ck_assert_uint_gt(s.generation, 10); /* it did go round the states */
	ck_assert_int_eq(atomic_load(&sh.events), (int)s.generation);
	for (uint64_t g = 1; g <= s.generation; g++) {
		ck_assert_int_eq(atomic_load(&sh.seen[g]), 1);
		if (g > 1)
			ck_assert_int_eq(atomic_load(&sh.from_state[g]),
			                 atomic_load(&sh.to_state[g - 1]));
	}
	for (uint64_t g = 0; g <= s.generation; g++)
		ck_assert_int_le(atomic_load(&sh.admitted[g]), 3);
	saga_breaker_free(sh.b);
}
END_TEST

typedef struct race {
	saga_breaker *b;
	pthread_barrier_t start;
	atomic_int admitted;
} race;

static void *race_once(void *arg)
{
	race *r = arg;
	saga_breaker_permit p;

	pthread_barrier_wait(&r->start);
	if (saga_breaker_acquire(r->b, &p, NULL) == 0)
		atomic_fetch_add(&r->admitted, 1);
	return NULL;
}

START_TEST(threads_race_for_trial_slots)
{
	/* 16 threads at once on a HALF_OPEN breaker: exactly 3 get in, and the
	 * OPEN -> HALF_OPEN transition they all notice fires once */
	static race r;
	static shared clock_sh;
	saga_clock clk = { NULL, atomic_mono, &clock_sh };
	saga_breaker_config c = count_config(10, 50.0, 1);
	pthread_t t[THREADS];
	saga_breaker_permit p;

	memset(&r, 0, sizeof(r));
	memset(&clock_sh, 0, sizeof(clock_sh));
	ck_assert_int_eq(saga_breaker_new(&r.b, "race", &c, &clk), 0);
	ck_assert_int_eq(saga_breaker_set_listener(r.b, count_event, &clock_sh), 0);
	ck_assert_int_eq(saga_breaker_acquire(r.b, &p, NULL), 0);
	ck_assert_int_eq(saga_breaker_record(r.b, &p, SAGA_CALL_FAILURE), 0);
	atomic_store(&clock_sh.now, 1000);
	ck_assert_int_eq(pthread_barrier_init(&r.start, NULL, THREADS), 0);
	for (int i = 0; i < THREADS; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, race_once, &r), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&r.start);
	ck_assert_int_eq(atomic_load(&r.admitted), 3);
	ck_assert_int_eq(atomic_load(&clock_sh.events), 2);
	ck_assert_int_eq(atomic_load(&clock_sh.seen[2]), 1);
	ck_assert_int_eq(atomic_load(&clock_sh.to_state[2]), SAGA_BREAKER_HALF_OPEN);
	saga_breaker_free(r.b);
}
END_TEST

static Suite *breaker_suite(void)
{
	Suite *s = suite_create("breaker");
	TCase *tc = tcase_create("breaker");
	TCase *th = tcase_create("threads");

	tcase_add_test(tc, count_window_opens_at_60_percent);
	tcase_add_test(tc, count_window_forgets_old_calls);
	tcase_add_test(tc, time_window_expires_by_time);
	tcase_add_test(tc, time_window_opens);
	tcase_add_test(tc, slow_calls_open_with_no_failure);
	tcase_add_test(tc, ignored_outcome_counts_nothing);
	tcase_add_test(tc, open_wait_one_second);
	tcase_add_test(tc, exponential_open_wait);
	tcase_add_test(tc, half_open_three_trials_then_closed);
	tcase_add_test(tc, half_open_two_failures_reopen);
	tcase_add_test(tc, half_open_ignored_gives_slot_back);
	tcase_add_test(tc, hanging_probe_reopens_and_is_ignored);
	tcase_add_test(tc, hanging_probe_noticed_by_record);
	tcase_add_test(tc, old_generation_permit_changes_nothing);
	tcase_add_test(tc, wall_clock_change_changes_nothing);
	tcase_add_test(tc, forced_states);
	tcase_add_test(tc, listener_runs_outside_the_lock);
	tcase_add_test(tc, config_is_validated);
	tcase_add_test(tc, state_names);
	suite_add_tcase(s, tc);
	tcase_set_timeout(th, 50);
	tcase_add_test(th, threads_hammer_half_open);
	tcase_add_test(th, threads_race_for_trial_slots);
	suite_add_tcase(s, th);
	return s;
}

int main(void)
{
	return run_suite(breaker_suite());
}
