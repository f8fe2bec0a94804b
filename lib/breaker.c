/*
 * Circuit breakers.
 *
 * One mutex guards all of a breaker's state. Transitions are collected under
 * the lock and the listener is called after it is released, once per
 * transition. Time is read only from the monotonic clock. Lazy transitions
 * (OPEN -> HALF_OPEN when the wait is over, HALF_OPEN -> OPEN when the
 * half-open limit passed) are made by whichever call notices them first:
 * acquire, record or snapshot.
 *
 * Every transition increments the generation. A permit carries the
 * generation it was issued in; a result recorded for an older generation is
 * ignored, which is how a late result of a hung probe changes nothing.
 *
 * The breaker takes no allocator: it uses malloc/free.
 *
 * SPDX-License-Identifier: MIT
 */
#include "internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Upper bounds that keep the memory of one breaker small and bounded. */
#define MAX_COUNT_WINDOW (1u << 20)
#define MAX_BUCKETS      1000u
#define MAX_TRIALS       1000000u

/* At most two transitions per call (OPEN -> HALF_OPEN -> OPEN). */
#define MAX_PENDING 4

#define SLOT_FAILURE 1u
#define SLOT_SLOW    2u

typedef struct bucket {
	uint64_t epoch; /* now / bucket_ms of the calls it holds; UINT64_MAX = empty */
	uint64_t calls;
	uint64_t failures;
	uint64_t slow;
} bucket;

typedef struct transition {
	saga_breaker_state from;
	saga_breaker_state to;
	uint64_t generation;
} transition;

typedef struct pending {
	transition t[MAX_PENDING];
	int n;
	saga_breaker_listener_fn fn;
	void *user;
} pending;

struct saga_breaker {
	pthread_mutex_t mu;
	char *name;
	saga_breaker_config cfg;
	saga_clock clock;

	saga_breaker_state state;
	uint64_t generation;

	/* COUNT window: a ring of per-call flags and running totals. */
	unsigned char *ring;
	uint64_t ring_pos;
	uint64_t ring_used;
	uint64_t calls, failures, slow;

	/* TIME window: buckets of bucket_ms each, addressed by epoch. */
	bucket *buckets;
	uint64_t bucket_ms;

	/* OPEN */
	uint64_t open_until;
	uint64_t cur_wait;

	/* HALF_OPEN */
	uint64_t half_open_since;
	uint32_t trials_admitted; /* permits handed out in this half-open period */
	uint32_t trials_in_flight;
	uint32_t trial_done;
	uint32_t trial_failures;
	uint32_t trial_slow;

	saga_breaker_listener_fn listener;
	void *listener_user;

	/* Since it was made: successful, failed, ignored, not permitted. */
	uint64_t totals[4];
};

static uint64_t now_ms(const saga_breaker *b)
{
	return b->clock.mono_ms(b->clock.user);
}

static int config_ok(const saga_breaker_config *c)
{
	if (c->version != SAGA_BREAKER_CONFIG_VERSION)
		return 0;
	/* Written so that NaN fails. */
	if (!(c->failure_rate_threshold > 0.0 && c->failure_rate_threshold <= 100.0))
		return 0;
	if (!(c->slow_call_rate_threshold > 0.0 && c->slow_call_rate_threshold <= 100.0))
		return 0;
	if (c->window_size < 1 || c->minimum_calls < 1)
		return 0;
	if (c->half_open_calls < 1 || c->half_open_calls > MAX_TRIALS)
		return 0;
	switch (c->window) {
	case SAGA_WINDOW_COUNT:
		if (c->window_size > MAX_COUNT_WINDOW)
			return 0;
		break;
	case SAGA_WINDOW_TIME:
		if (c->buckets < 1 || c->buckets > MAX_BUCKETS)
			return 0;
		/* Every bucket covers the same whole number of milliseconds. */
		if (c->window_size < c->buckets || c->window_size % c->buckets != 0)
			return 0;
		break;
	default:
		return 0;
	}
	return 1;
}

static void window_reset(saga_breaker *b)
{
	b->ring_pos = 0;
	b->ring_used = 0;
	b->calls = b->failures = b->slow = 0;
	if (b->buckets != NULL) {
		for (uint32_t i = 0; i < b->cfg.buckets; i++) {
			b->buckets[i].epoch = UINT64_MAX;
			b->buckets[i].calls = 0;
			b->buckets[i].failures = 0;
			b->buckets[i].slow = 0;
		}
	}
}

/* Totals of the TIME window as of `now`: buckets older than the window are
 * skipped, however long ago the last call was. */
static void time_totals(const saga_breaker *b, uint64_t now, uint64_t *calls, uint64_t *failures,
                        uint64_t *slow)
{
	uint64_t epoch = now / b->bucket_ms;
	uint64_t oldest = epoch >= b->cfg.buckets - 1 ? epoch - (b->cfg.buckets - 1) : 0;

	*calls = *failures = *slow = 0;
	for (uint32_t i = 0; i < b->cfg.buckets; i++) {
		const bucket *k = &b->buckets[i];

		if (k->epoch == UINT64_MAX || k->epoch < oldest || k->epoch > epoch)
			continue;
		*calls += k->calls;
		*failures += k->failures;
		*slow += k->slow;
	}
}

static void window_totals(const saga_breaker *b, uint64_t now, uint64_t *calls, uint64_t *failures,
                          uint64_t *slow)
{
	if (b->cfg.window == SAGA_WINDOW_TIME) {
		time_totals(b, now, calls, failures, slow);
	} else {
		*calls = b->calls;
		*failures = b->failures;
		*slow = b->slow;
	}
}

static void window_add(saga_breaker *b, uint64_t now, int failed, int slow)
{
	if (b->cfg.window == SAGA_WINDOW_TIME) {
		uint64_t epoch = now / b->bucket_ms;
		bucket *k = &b->buckets[epoch % b->cfg.buckets];

		if (k->epoch != epoch) {
			k->epoch = epoch;
			k->calls = k->failures = k->slow = 0;
		}
		k->calls++;
		k->failures += failed ? 1 : 0;
		k->slow += slow ? 1 : 0;
		return;
	}
	if (b->ring_used == b->cfg.window_size) {
		unsigned char old = b->ring[b->ring_pos];

		b->calls--;
		if (old & SLOT_FAILURE)
			b->failures--;
		if (old & SLOT_SLOW)
			b->slow--;
	} else {
		b->ring_used++;
	}
	b->ring[b->ring_pos] =
	        (unsigned char)((failed ? SLOT_FAILURE : 0) | (slow ? SLOT_SLOW : 0));
	b->ring_pos = (b->ring_pos + 1) % b->cfg.window_size;
	b->calls++;
	b->failures += failed ? 1 : 0;
	b->slow += slow ? 1 : 0;
}

static double rate(uint64_t part, uint64_t whole)
{
	return whole == 0 ? 0.0 : (double)part * 100.0 / (double)whole;
}

static int slow_enabled(const saga_breaker *b)
{
	return b->cfg.slow_call_ms != 0;
}

/* Whether the given counts cross a threshold. */
static int over_threshold(const saga_breaker *b, uint64_t calls, uint64_t failures, uint64_t slow)
{
	if (calls == 0)
		return 0;
	if (rate(failures, calls) >= b->cfg.failure_rate_threshold)
		return 1;
	return slow_enabled(b) && rate(slow, calls) >= b->cfg.slow_call_rate_threshold;
}

static void transition_to(saga_breaker *b, saga_breaker_state to, uint64_t now, pending *p)
{
	saga_breaker_state from = b->state;

	b->state = to;
	b->generation++;
	b->trials_admitted = b->trials_in_flight = 0;
	b->trial_done = b->trial_failures = b->trial_slow = 0;

	switch (to) {
	case SAGA_BREAKER_OPEN:
		if (from == SAGA_BREAKER_HALF_OPEN &&
		    b->cfg.open_wait_max_ms > b->cfg.open_wait_ms) {
			/* A failed probe: the wait doubles, up to the maximum. */
			uint64_t w = b->cur_wait > UINT64_MAX / 2 ? UINT64_MAX : b->cur_wait * 2;

			b->cur_wait = w < b->cfg.open_wait_max_ms ? w : b->cfg.open_wait_max_ms;
		} else {
			b->cur_wait = b->cfg.open_wait_ms;
		}
		b->open_until = now > UINT64_MAX - b->cur_wait ? UINT64_MAX : now + b->cur_wait;
		break;
	case SAGA_BREAKER_HALF_OPEN:
		b->half_open_since = now;
		break;
	case SAGA_BREAKER_CLOSED:
		/* A fresh window, and the next opening waits the base time again. */
		window_reset(b);
		b->cur_wait = b->cfg.open_wait_ms;
		break;
	default:
		break;
	}

	if (p->n < MAX_PENDING) {
		p->t[p->n].from = from;
		p->t[p->n].to = to;
		p->t[p->n].generation = b->generation;
		p->n++;
	}
	p->fn = b->listener;
	p->user = b->listener_user;
}

/* Time-driven transitions, applied by whoever looks first. */
static void apply_time(saga_breaker *b, uint64_t now, pending *p)
{
	if (b->state == SAGA_BREAKER_OPEN && now >= b->open_until)
		transition_to(b, SAGA_BREAKER_HALF_OPEN, now, p);
	if (b->state == SAGA_BREAKER_HALF_OPEN && b->cfg.half_open_max_ms != 0 &&
	    now - b->half_open_since > b->cfg.half_open_max_ms)
		transition_to(b, SAGA_BREAKER_OPEN, now, p);
}

static void unlock_and_notify(saga_breaker *b, pending *p)
{
	pthread_mutex_unlock(&b->mu);
	if (p->fn == NULL)
		return;
	for (int i = 0; i < p->n; i++)
		p->fn(b->name, p->t[i].from, p->t[i].to, p->t[i].generation, p->user);
}

int saga_breaker_new(saga_breaker **out, const char *name, const saga_breaker_config *config,
                     const saga_clock *clock)
{
	saga_breaker *b;
	size_t name_len;

	if (out == NULL)
		return SAGA_EINVAL;
	*out = NULL;
	if (name == NULL || config == NULL || !config_ok(config))
		return SAGA_EINVAL;
	name_len = strlen(name);
	if (name_len == 0 || name_len > SAGA_NAME_MAX)
		return SAGA_EINVAL;

	b = calloc(1, sizeof(*b));
	if (b == NULL)
		return SAGA_ENOMEM;
	b->name = malloc(name_len + 1);
	if (b->name == NULL)
		goto nomem;
	memcpy(b->name, name, name_len + 1);
	b->cfg = *config;
	saga_clock_resolve(&b->clock, clock);

	if (config->window == SAGA_WINDOW_TIME) {
		b->buckets = calloc(config->buckets, sizeof(*b->buckets));
		if (b->buckets == NULL)
			goto nomem;
		b->bucket_ms = config->window_size / config->buckets;
	} else {
		b->ring = calloc((size_t)config->window_size, 1);
		if (b->ring == NULL)
			goto nomem;
		/* No decision could ever be made with a minimum above the window. */
		if (b->cfg.minimum_calls > config->window_size)
			b->cfg.minimum_calls = (uint32_t)config->window_size;
	}
	if (pthread_mutex_init(&b->mu, NULL) != 0) {
		free(b->buckets);
		free(b->ring);
		free(b->name);
		free(b);
		return SAGA_ERROR;
	}
	b->state = SAGA_BREAKER_CLOSED;
	b->cur_wait = config->open_wait_ms;
	window_reset(b);
	*out = b;
	return SAGA_OK;

nomem:
	free(b->buckets);
	free(b->ring);
	free(b->name);
	free(b);
	return SAGA_ENOMEM;
}

void saga_breaker_free(saga_breaker *b)
{
	if (b == NULL)
		return;
	pthread_mutex_destroy(&b->mu);
	free(b->buckets);
	free(b->ring);
	free(b->name);
	free(b);
}

const char *saga_breaker_name(const saga_breaker *b)
{
	return b != NULL ? b->name : NULL;
}

int saga_breaker_acquire(saga_breaker *b, saga_breaker_permit *permit, uint64_t *retry_after_ms)
{
	pending p = { .n = 0 };
	uint64_t now;
	int rc = SAGA_OK;
	uint64_t after = 0;

	if (b == NULL || permit == NULL)
		return SAGA_EINVAL;
	pthread_mutex_lock(&b->mu);
	now = now_ms(b);
	apply_time(b, now, &p);

	permit->generation = b->generation;
	permit->started_ms = now;
	permit->trial = 0;
	switch (b->state) {
	case SAGA_BREAKER_CLOSED:
	case SAGA_BREAKER_DISABLED:
		break;
	case SAGA_BREAKER_OPEN:
		rc = SAGA_EOPEN;
		after = b->open_until - now;
		break;
	case SAGA_BREAKER_HALF_OPEN:
		if (b->trials_admitted < b->cfg.half_open_calls) {
			b->trials_admitted++;
			b->trials_in_flight++;
			permit->trial = 1;
		} else {
			/* Only a trial slot is missing: it frees up when a probe ends. */
			rc = SAGA_EOPEN;
			after = 0;
		}
		break;
	case SAGA_BREAKER_FORCED_OPEN:
	default:
		/* No end is known; suggest polling at the configured wait. */
		rc = SAGA_EOPEN;
		after = b->cfg.open_wait_ms;
		break;
	}
	if (rc != SAGA_OK) {
		memset(permit, 0, sizeof(*permit));
		b->totals[3]++;
	}
	unlock_and_notify(b, &p);
	if (retry_after_ms != NULL)
		*retry_after_ms = after;
	return rc;
}

static void record_closed(saga_breaker *b, uint64_t now, int failed, int slow, pending *p)
{
	uint64_t calls, failures, slow_calls;

	window_add(b, now, failed, slow);
	window_totals(b, now, &calls, &failures, &slow_calls);
	if (calls >= b->cfg.minimum_calls && over_threshold(b, calls, failures, slow_calls))
		transition_to(b, SAGA_BREAKER_OPEN, now, p);
}

static void record_trial(saga_breaker *b, uint64_t now, saga_call_outcome outcome, int slow,
                         pending *p)
{
	if (b->trials_in_flight > 0)
		b->trials_in_flight--;
	if (outcome == SAGA_CALL_IGNORED) {
		/* The permit is given back: another probe may take its place. */
		if (b->trials_admitted > 0)
			b->trials_admitted--;
		return;
	}
	b->trial_done++;
	if (outcome == SAGA_CALL_FAILURE)
		b->trial_failures++;
	if (slow)
		b->trial_slow++;
	if (b->trial_done < b->cfg.half_open_calls)
		return;
	if (over_threshold(b, b->trial_done, b->trial_failures, b->trial_slow))
		transition_to(b, SAGA_BREAKER_OPEN, now, p);
	else
		transition_to(b, SAGA_BREAKER_CLOSED, now, p);
}

int saga_breaker_record(saga_breaker *b, const saga_breaker_permit *permit,
                        saga_call_outcome outcome)
{
	pending p = { .n = 0 };
	uint64_t now;

	if (b == NULL || permit == NULL)
		return SAGA_EINVAL;
	if (outcome != SAGA_CALL_SUCCESS && outcome != SAGA_CALL_FAILURE &&
	    outcome != SAGA_CALL_IGNORED)
		return SAGA_EINVAL;
	pthread_mutex_lock(&b->mu);
	now = now_ms(b);
	/* A hung probe may have outlived the half-open limit: reopen first, so
	 * its own result below is from an older generation. */
	apply_time(b, now, &p);

	b->totals[outcome == SAGA_CALL_SUCCESS ? 0 : outcome == SAGA_CALL_FAILURE ? 1 : 2]++;
	if (permit->generation == b->generation) {
		int slow = slow_enabled(b) && now >= permit->started_ms &&
		           now - permit->started_ms >= b->cfg.slow_call_ms;

		if (b->state == SAGA_BREAKER_CLOSED && outcome != SAGA_CALL_IGNORED)
			record_closed(b, now, outcome == SAGA_CALL_FAILURE, slow, &p);
		else if (b->state == SAGA_BREAKER_HALF_OPEN && permit->trial)
			record_trial(b, now, outcome, slow, &p);
		/* DISABLED counts nothing; OPEN hands out no permits. */
	}
	unlock_and_notify(b, &p);
	return SAGA_OK;
}

int saga_breaker_force(saga_breaker *b, saga_breaker_state state)
{
	pending p = { .n = 0 };
	uint64_t now;

	if (b == NULL)
		return SAGA_EINVAL;
	if (state != SAGA_BREAKER_CLOSED && state != SAGA_BREAKER_DISABLED &&
	    state != SAGA_BREAKER_FORCED_OPEN)
		return SAGA_EINVAL;
	pthread_mutex_lock(&b->mu);
	now = now_ms(b);
	if (b->state != state) {
		transition_to(b, state, now, &p);
		if (state != SAGA_BREAKER_CLOSED) {
			window_reset(b);
			b->cur_wait = b->cfg.open_wait_ms;
		}
	} else if (state == SAGA_BREAKER_CLOSED) {
		/* Already closed: only the counts are reset, no transition. */
		window_reset(b);
		b->cur_wait = b->cfg.open_wait_ms;
	}
	unlock_and_notify(b, &p);
	return SAGA_OK;
}

int saga_breaker_get_snapshot(saga_breaker_snapshot *out, saga_breaker *b)
{
	pending p = { .n = 0 };
	uint64_t now;

	if (out == NULL || b == NULL)
		return SAGA_EINVAL;
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&b->mu);
	now = now_ms(b);
	apply_time(b, now, &p);
	out->state = b->state;
	out->generation = b->generation;
	if (b->state == SAGA_BREAKER_HALF_OPEN) {
		out->calls = b->trial_done;
		out->failures = b->trial_failures;
		out->slow_calls = b->trial_slow;
	} else {
		window_totals(b, now, &out->calls, &out->failures, &out->slow_calls);
	}
	out->failure_rate = rate(out->failures, out->calls);
	out->slow_call_rate = rate(out->slow_calls, out->calls);
	out->trial_calls_in_flight = b->trials_in_flight;
	out->open_until_ms = b->state == SAGA_BREAKER_OPEN ? b->open_until : 0;
	out->current_open_wait_ms = b->cur_wait;
	unlock_and_notify(b, &p);
	return SAGA_OK;
}

int saga_breaker_set_listener(saga_breaker *b, saga_breaker_listener_fn fn, void *user)
{
	if (b == NULL)
		return SAGA_EINVAL;
	pthread_mutex_lock(&b->mu);
	b->listener = fn;
	b->listener_user = user;
	pthread_mutex_unlock(&b->mu);
	return SAGA_OK;
}

const char *saga_breaker_state_name(saga_breaker_state state)
{
	switch (state) {
	case SAGA_BREAKER_CLOSED:
		return "CLOSED";
	case SAGA_BREAKER_OPEN:
		return "OPEN";
	case SAGA_BREAKER_HALF_OPEN:
		return "HALF_OPEN";
	case SAGA_BREAKER_DISABLED:
		return "DISABLED";
	case SAGA_BREAKER_FORCED_OPEN:
		return "FORCED_OPEN";
	}
	return "UNKNOWN";
}

void breaker_totals(saga_breaker *b, uint64_t out[4])
{
	pthread_mutex_lock(&b->mu);
	memcpy(out, b->totals, sizeof(b->totals));
	pthread_mutex_unlock(&b->mu);
}
