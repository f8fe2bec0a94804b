/*
 * Retry policies: when the next attempt may start.
 *
 * Every computation saturates at UINT64_MAX instead of wrapping, and the
 * exponential term is computed in double precision with an explicit range
 * check before it is converted back, so attempt 10,000 (or 4 billion) gives
 * a capped delay, never undefined behaviour.
 *
 * SPDX-License-Identifier: MIT
 */
#include "internal.h"

/* 2^64 as a double: every finite double below it converts to uint64_t. */
#define TWO_POW_64 18446744073709551616.0

uint64_t saga_random_next(uint64_t *rng)
{
	uint64_t z;

	if (rng == NULL)
		return 0;
	/* splitmix64 (Steele, Lea, Flood 2014; public domain reference by Vigna). */
	z = (*rng += UINT64_C(0x9E3779B97F4A7C15));
	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t sat_mul(uint64_t a, uint64_t b)
{
	if (a != 0 && b > UINT64_MAX / a)
		return UINT64_MAX;
	return a * b;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* m^k by squaring: O(log k) multiplications. Overflow goes to +inf, which
 * is well defined for doubles and caught by the caller's range check. */
static double pow_u32(double m, uint32_t k)
{
	double r = 1.0;

	while (k != 0) {
		if (k & 1u)
			r *= m;
		k >>= 1;
		if (k != 0)
			m *= m;
	}
	return r;
}

/* A uniformly distributed value in [lo, hi] (lo <= hi). The modulo bias is
 * at most span/2^64, far below anything a retry delay could notice. */
static uint64_t uniform(uint64_t *rng, uint64_t lo, uint64_t hi)
{
	uint64_t r = saga_random_next(rng);
	uint64_t span = hi - lo;

	if (span == UINT64_MAX)
		return r;
	return lo + r % (span + 1);
}

/* The un-jittered delay before retry number n (n = 1 for the first retry). */
static uint64_t backoff_delay(const saga_retry_policy *p, uint32_t n)
{
	switch (p->backoff) {
	case SAGA_BACKOFF_CONSTANT:
		return p->base_ms;
	case SAGA_BACKOFF_LINEAR:
		return sat_mul(p->base_ms, n);
	case SAGA_BACKOFF_EXPONENTIAL:
	default: {
		double m = p->multiplier;
		double v;

		/* NaN fails every comparison, so it is treated as 2 as well. */
		if (!(m >= 1.0))
			m = 2.0;
		if (p->base_ms == 0)
			return 0; /* avoids 0 * inf = NaN */
		v = (double)p->base_ms * pow_u32(m, n - 1);
		if (!(v < TWO_POW_64))
			return UINT64_MAX;
		return (uint64_t)v;
	}
	}
}

int saga_retry_next(uint64_t *delay_ms, const saga_retry_policy *policy, uint32_t attempts_done,
                    uint64_t elapsed_ms, uint64_t prev_delay_ms, uint64_t *rng)
{
	uint64_t t, d;

	if (delay_ms == NULL || policy == NULL || rng == NULL)
		return SAGA_EINVAL;
	*delay_ms = 0;
	/* attempts_done counts the attempts made; "next" needs at least one. */
	if (attempts_done == 0)
		return SAGA_EINVAL;
	if (policy->max_attempts != 0 && attempts_done >= policy->max_attempts)
		return 0;

	t = backoff_delay(policy, attempts_done);
	if (policy->cap_ms != 0)
		t = min_u64(t, policy->cap_ms);

	switch (policy->jitter) {
	case SAGA_JITTER_NONE:
		d = t;
		break;
	case SAGA_JITTER_FULL:
		d = uniform(rng, 0, t);
		break;
	case SAGA_JITTER_EQUAL:
		d = uniform(rng, t / 2, t);
		break;
	case SAGA_JITTER_DECORRELATED: {
		uint64_t prev = prev_delay_ms != 0 ? prev_delay_ms : policy->base_ms;
		uint64_t hi = sat_mul(prev, 3);

		if (policy->cap_ms != 0)
			hi = min_u64(hi, policy->cap_ms);
		if (hi < policy->base_ms)
			hi = policy->base_ms;
		d = uniform(rng, policy->base_ms, hi);
		break;
	}
	default:
		return SAGA_EINVAL;
	}
	/* The cap also holds after jitter (decorrelated starts from base, which
	 * may itself exceed a small cap). */
	if (policy->cap_ms != 0)
		d = min_u64(d, policy->cap_ms);

	/* No attempt may start past the total-duration limit. */
	if (policy->max_duration_ms != 0 && sat_add(elapsed_ms, d) > policy->max_duration_ms)
		return 0;

	*delay_ms = d;
	return 1;
}
