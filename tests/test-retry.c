/* Retry policies (SEMANTICS.md, "Resilience policies": Retry). SPDX-License-Identifier: MIT */
#include "test-common.h"

#include <math.h>
#include <stdint.h>

#include "saga.h"

#define SEEDS 2000

static saga_retry_policy policy(saga_backoff backoff, uint64_t base, uint64_t cap,
                                saga_jitter jitter)
{
	saga_retry_policy p = SAGA_RETRY_POLICY_INIT;

	p.max_attempts = 0;
	p.backoff = backoff;
	p.base_ms = base;
	p.cap_ms = cap;
	p.jitter = jitter;
	return p;
}

START_TEST(splitmix64_reference_values)
{
	/* The published splitmix64 sequence for seed 0. */
	uint64_t rng = 0;

	ck_assert_uint_eq(saga_random_next(&rng), UINT64_C(0xE220A8397B1DCDAF));
	ck_assert_uint_eq(saga_random_next(&rng), UINT64_C(0x6E789E6AA1B965F4));
	ck_assert_uint_eq(saga_random_next(&rng), UINT64_C(0x06C45D188009454F));
	ck_assert_uint_eq(saga_random_next(NULL), 0);
}
END_TEST

START_TEST(max_three_attempts_give_two_delays)
{
	saga_retry_policy p = policy(SAGA_BACKOFF_CONSTANT, 100, 0, SAGA_JITTER_NONE);
	uint64_t rng = 1, delay = 0, elapsed = 0, prev = 0;
	uint32_t calls = 1, delays = 0;

	p.max_attempts = 3;
	for (;;) {
		int rc = saga_retry_next(&delay, &p, calls, elapsed, prev, &rng);

		ck_assert_int_ge(rc, 0);
		if (rc == 0)
			break;
		ck_assert_uint_eq(delay, 100);
		delays++;
		elapsed += delay;
		prev = delay;
		calls++;
		ck_assert_uint_le(calls, 10);
	}
	ck_assert_uint_eq(calls, 3);
	ck_assert_uint_eq(delays, 2);
}
END_TEST

START_TEST(unlimited_attempts)
{
	saga_retry_policy p = policy(SAGA_BACKOFF_CONSTANT, 5, 0, SAGA_JITTER_NONE);
	uint64_t rng = 0, delay;

	ck_assert_int_eq(saga_retry_next(&delay, &p, 1000000, 0, 0, &rng), 1);
	ck_assert_int_eq(saga_retry_next(&delay, &p, UINT32_MAX, 0, 0, &rng), 1);
	ck_assert_uint_eq(delay, 5);
}
END_TEST

START_TEST(total_duration_limit_250ms)
{
	saga_retry_policy p = policy(SAGA_BACKOFF_CONSTANT, 100, 0, SAGA_JITTER_NONE);
	uint64_t rng = 7, delay = 0;

	p.max_duration_ms = 250;
	/* first attempt at 0, retries at 100 and 200; one at 300 would be past 250 */
	ck_assert_int_eq(saga_retry_next(&delay, &p, 1, 0, 0, &rng), 1);
	ck_assert_uint_eq(delay, 100);
	ck_assert_int_eq(saga_retry_next(&delay, &p, 2, 100, 100, &rng), 1);
	ck_assert_uint_eq(delay, 100);
	ck_assert_int_eq(saga_retry_next(&delay, &p, 3, 200, 100, &rng), 0);
	/* attempts that took time: 160 + 100 would start at 260 */
	ck_assert_int_eq(saga_retry_next(&delay, &p, 2, 160, 100, &rng), 0);
	/* starting exactly at the limit is allowed; past it is not */
	ck_assert_int_eq(saga_retry_next(&delay, &p, 2, 150, 100, &rng), 1);
	ck_assert_int_eq(saga_retry_next(&delay, &p, 2, 151, 100, &rng), 0);
	ck_assert_int_eq(saga_retry_next(&delay, &p, 2, UINT64_MAX, 100, &rng), 0);

	/* with jitter: over many seeds, no scheduled start is past 250 */
	p = policy(SAGA_BACKOFF_EXPONENTIAL, 100, 1000, SAGA_JITTER_FULL);
	p.max_duration_ms = 250;
	for (uint64_t seed = 0; seed < SEEDS; seed++) {
		uint64_t elapsed = 0, prev = 0;
		uint32_t n = 1;

		rng = seed;
		while (saga_retry_next(&delay, &p, n, elapsed, prev, &rng) == 1) {
			elapsed += delay;
			prev = delay;
			n++;
			ck_assert_uint_le(elapsed, 250);
			elapsed += 3; /* the attempt itself takes a little time */
		}
	}
}
END_TEST

START_TEST(backoff_shapes)
{
	saga_retry_policy p = policy(SAGA_BACKOFF_CONSTANT, 100, 0, SAGA_JITTER_NONE);
	uint64_t rng = 0, d;
	static const uint64_t lin[] = { 100, 200, 300, 400 };
	static const uint64_t expo[] = { 100, 200, 400, 800, 1600 };
	static const uint64_t capped[] = { 100, 200, 250, 250 };
	static const uint64_t triple[] = { 100, 300, 900 };

	for (uint32_t n = 1; n <= 4; n++) {
		ck_assert_int_eq(saga_retry_next(&d, &p, n, 0, 0, &rng), 1);
		ck_assert_uint_eq(d, 100);
	}
	p.backoff = SAGA_BACKOFF_LINEAR;
	for (uint32_t n = 1; n <= 4; n++) {
		ck_assert_int_eq(saga_retry_next(&d, &p, n, 0, 0, &rng), 1);
		ck_assert_uint_eq(d, lin[n - 1]);
	}
	p.backoff = SAGA_BACKOFF_EXPONENTIAL;
	for (uint32_t n = 1; n <= 5; n++) {
		ck_assert_int_eq(saga_retry_next(&d, &p, n, 0, 0, &rng), 1);
		ck_assert_uint_eq(d, expo[n - 1]);
	}
	p.cap_ms = 250;
	for (uint32_t n = 1; n <= 4; n++) {
		ck_assert_int_eq(saga_retry_next(&d, &p, n, 0, 0, &rng), 1);
		ck_assert_uint_eq(d, capped[n - 1]);
	}
	p.cap_ms = 0;
	/* multipliers below 1 (and NaN) are treated as 2 */
	p.multiplier = 0.5;
	for (uint32_t n = 1; n <= 5; n++) {
		ck_assert_int_eq(saga_retry_next(&d, &p, n, 0, 0, &rng), 1);
		ck_assert_uint_eq(d, expo[n - 1]);
	}
	p.multiplier = NAN;
	ck_assert_int_eq(saga_retry_next(&d, &p, 3, 0, 0, &rng), 1);
	ck_assert_uint_eq(d, 400);
	p.multiplier = 3.0;
	for (uint32_t n = 1; n <= 3; n++) {
		ck_assert_int_eq(saga_retry_next(&d, &p, n, 0, 0, &rng), 1);
		ck_assert_uint_eq(d, triple[n - 1]);
	}
	p.multiplier = 1.0;
	ck_assert_int_eq(saga_retry_next(&d, &p, 50, 0, 0, &rng), 1);
	ck_assert_uint_eq(d, 100);
}
END_TEST

START_TEST(full_jitter_bounds)
{
	/* base 100 ms, cap 1 s: delay n in [0, min(1000, 100 * 2^n)] */
	saga_retry_policy p = policy(SAGA_BACKOFF_EXPONENTIAL, 100, 1000, SAGA_JITTER_FULL);

	for (uint32_t n = 0; n < 12; n++) {
		uint64_t bound = 100u << n, lo = UINT64_MAX, hi = 0;

		if (bound > 1000)
			bound = 1000;
		for (uint64_t seed = 0; seed < SEEDS; seed++) {
			uint64_t rng = seed * 7919 + n, d;

			ck_assert_int_eq(saga_retry_next(&d, &p, n + 1, 0, 0, &rng), 1);
			ck_assert_uint_le(d, bound);
			lo = d < lo ? d : lo;
			hi = d > hi ? d : hi;
		}
		/* the whole range is used, not a corner of it */
		ck_assert_uint_le(lo, bound / 10);
		ck_assert_uint_ge(hi, bound - bound / 10);
	}
}
END_TEST

START_TEST(equal_jitter_bounds)
{
	saga_retry_policy p = policy(SAGA_BACKOFF_EXPONENTIAL, 100, 1000, SAGA_JITTER_EQUAL);

	for (uint32_t n = 0; n < 12; n++) {
		uint64_t t = 100u << n, lo = UINT64_MAX, hi = 0;

		if (t > 1000)
			t = 1000;
		for (uint64_t seed = 0; seed < SEEDS; seed++) {
			uint64_t rng = seed ^ 0xABCDEFu, d;

			ck_assert_int_eq(saga_retry_next(&d, &p, n + 1, 0, 0, &rng), 1);
			ck_assert_uint_ge(d, t / 2);
			ck_assert_uint_le(d, t);
			lo = d < lo ? d : lo;
			hi = d > hi ? d : hi;
		}
		ck_assert_uint_le(lo, t / 2 + t / 20);
		ck_assert_uint_ge(hi, t - t / 20);
	}
}
END_TEST

START_TEST(decorrelated_jitter_bounds)
{
	/* uniform in [base, min(cap, 3 * previous)], previous 0 meaning base */
	saga_retry_policy p = policy(SAGA_BACKOFF_EXPONENTIAL, 100, 1000, SAGA_JITTER_DECORRELATED);
	uint64_t max_seen = 0;

	for (uint64_t seed = 0; seed < SEEDS; seed++) {
		uint64_t rng = seed, prev = 0, d;

		for (uint32_t n = 1; n <= 20; n++) {
			uint64_t hi = 3 * (prev ? prev : 100);

			if (hi > 1000)
				hi = 1000;
			ck_assert_int_eq(saga_retry_next(&d, &p, n, 0, prev, &rng), 1);
			ck_assert_uint_ge(d, 100);
			ck_assert_uint_le(d, hi);
			max_seen = d > max_seen ? d : max_seen;
			prev = d;
		}
	}
	ck_assert_uint_ge(max_seen, 950);

	/* the first retry: [100, 300] */
	for (uint64_t seed = 0; seed < SEEDS; seed++) {
		uint64_t rng = seed, d;

		ck_assert_int_eq(saga_retry_next(&d, &p, 1, 0, 0, &rng), 1);
		ck_assert_uint_ge(d, 100);
		ck_assert_uint_le(d, 300);
	}
	/* a cap below base still caps */
	p.cap_ms = 50;
	{
		uint64_t rng = 3, d;

		ck_assert_int_eq(saga_retry_next(&d, &p, 4, 0, 10, &rng), 1);
		ck_assert_uint_eq(d, 50);
	}
}
END_TEST

START_TEST(jitter_is_deterministic_per_seed)
{
	saga_retry_policy p = policy(SAGA_BACKOFF_EXPONENTIAL, 100, 10000, SAGA_JITTER_FULL);
	uint64_t a = 42, b = 42, da, db;

	for (uint32_t n = 1; n < 10; n++) {
		ck_assert_int_eq(saga_retry_next(&da, &p, n, 0, 0, &a), 1);
		ck_assert_int_eq(saga_retry_next(&db, &p, n, 0, 0, &b), 1);
		ck_assert_uint_eq(da, db);
	}
	ck_assert_uint_eq(a, b);
}
END_TEST

START_TEST(attempt_10000_does_not_overflow)
{
	uint64_t rng = 99, d;
	saga_retry_policy p = policy(SAGA_BACKOFF_EXPONENTIAL, 100, 0, SAGA_JITTER_NONE);

	/* no cap: saturates at the largest delay */
	ck_assert_int_eq(saga_retry_next(&d, &p, 10000, 0, 0, &rng), 1);
	ck_assert_uint_eq(d, UINT64_MAX);
	ck_assert_int_eq(saga_retry_next(&d, &p, UINT32_MAX, 0, 0, &rng), 1);
	ck_assert_uint_eq(d, UINT64_MAX);
	/* with a cap: the cap */
	p.cap_ms = 1000;
	for (saga_jitter j = SAGA_JITTER_NONE; j <= SAGA_JITTER_DECORRELATED; j++) {
		p.jitter = j;
		for (int i = 0; i < 100; i++) {
			ck_assert_int_eq(saga_retry_next(&d, &p, 10000, 0, UINT64_MAX, &rng), 1);
			ck_assert_uint_le(d, 1000);
		}
	}
	p.jitter = SAGA_JITTER_NONE;
	ck_assert_int_eq(saga_retry_next(&d, &p, 10000, 0, 0, &rng), 1);
	ck_assert_uint_eq(d, 1000);
	/* a huge multiplier and base */
	p.cap_ms = 0;
	p.multiplier = 1e300;
	p.base_ms = UINT64_MAX;
	ck_assert_int_eq(saga_retry_next(&d, &p, 10000, 0, 0, &rng), 1);
	ck_assert_uint_eq(d, UINT64_MAX);
	/* linear saturates too */
	p = policy(SAGA_BACKOFF_LINEAR, UINT64_MAX / 2, 0, SAGA_JITTER_FULL);
	ck_assert_int_eq(saga_retry_next(&d, &p, 10000, 0, 0, &rng), 1);
	p.jitter = SAGA_JITTER_EQUAL;
	ck_assert_int_eq(saga_retry_next(&d, &p, 10000, 0, 0, &rng), 1);
	ck_assert_uint_ge(d, UINT64_MAX / 2);
	/* decorrelated with a huge previous delay */
	p.jitter = SAGA_JITTER_DECORRELATED;
	ck_assert_int_eq(saga_retry_next(&d, &p, 10000, 0, UINT64_MAX, &rng), 1);
	/* the duration limit with a saturated sum */
	p.max_duration_ms = UINT64_MAX - 1;
	ck_assert_int_eq(saga_retry_next(&d, &p, 10000, UINT64_MAX - 5, 0, &rng), 0);
	/* base 0 stays 0 whatever the attempt */
	p = policy(SAGA_BACKOFF_EXPONENTIAL, 0, 0, SAGA_JITTER_FULL);
	p.multiplier = 1e300;
	ck_assert_int_eq(saga_retry_next(&d, &p, 10000, 0, 0, &rng), 1);
	ck_assert_uint_eq(d, 0);
}
END_TEST

START_TEST(bad_arguments)
{
	saga_retry_policy p = SAGA_RETRY_POLICY_INIT;
	uint64_t rng = 0, d = 5;

	ck_assert_int_eq(saga_retry_next(NULL, &p, 1, 0, 0, &rng), SAGA_EINVAL);
	ck_assert_int_eq(saga_retry_next(&d, NULL, 1, 0, 0, &rng), SAGA_EINVAL);
	ck_assert_int_eq(saga_retry_next(&d, &p, 1, 0, 0, NULL), SAGA_EINVAL);
	ck_assert_int_eq(saga_retry_next(&d, &p, 0, 0, 0, &rng), SAGA_EINVAL);
	p.jitter = (saga_jitter)17;
	ck_assert_int_eq(saga_retry_next(&d, &p, 1, 0, 0, &rng), SAGA_EINVAL);
}
END_TEST

START_TEST(default_policy)
{
	/* SAGA_RETRY_POLICY_INIT: 3 attempts, 100 ms .. 10 s, full jitter */
	saga_retry_policy p = SAGA_RETRY_POLICY_INIT;
	uint64_t rng = 5, d;

	ck_assert_int_eq(saga_retry_next(&d, &p, 1, 0, 0, &rng), 1);
	ck_assert_uint_le(d, 100);
	ck_assert_int_eq(saga_retry_next(&d, &p, 2, 0, 0, &rng), 1);
	ck_assert_uint_le(d, 200);
	ck_assert_int_eq(saga_retry_next(&d, &p, 3, 0, 0, &rng), 0);
}
END_TEST

static Suite *retry_suite(void)
{
	Suite *s = suite_create("retry");
	TCase *tc = tcase_create("retry");

	tcase_add_test(tc, splitmix64_reference_values);
	tcase_add_test(tc, max_three_attempts_give_two_delays);
	tcase_add_test(tc, unlimited_attempts);
	tcase_add_test(tc, total_duration_limit_250ms);
	tcase_add_test(tc, backoff_shapes);
	tcase_add_test(tc, full_jitter_bounds);
	tcase_add_test(tc, equal_jitter_bounds);
	tcase_add_test(tc, decorrelated_jitter_bounds);
	tcase_add_test(tc, jitter_is_deterministic_per_seed);
	tcase_add_test(tc, attempt_10000_does_not_overflow);
	tcase_add_test(tc, bad_arguments);
	tcase_add_test(tc, default_policy);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return run_suite(retry_suite());
}
