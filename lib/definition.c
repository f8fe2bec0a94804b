/* Saga definitions: building, validating, policies, snapshots.
 * SPDX-License-Identifier: MIT */
#include "internal.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

/* The defaults used when neither the step nor the definition sets one:
 * action retry SAGA_RETRY_POLICY_INIT (retriable steps: unlimited attempts,
 * exponential 100 ms .. 60 s, full jitter, and the definition-wide default
 * does not apply to them); compensation retry: 20 attempts, exponential
 * 100 ms .. 60 s with full jitter. */
static const saga_retry_policy default_retry = SAGA_RETRY_POLICY_INIT;
static const saga_retry_policy default_comp_retry = { 20,    0,   SAGA_BACKOFF_EXPONENTIAL, 100,
	                                              60000, 2.0, SAGA_JITTER_FULL };

static bool name_ok(const char *name)
{
	size_t n = name ? strlen(name) : 0;
	return n >= 1 && n <= SAGA_NAME_MAX;
}

int saga_definition_new(saga_definition **out, const char *name, int version)
{
	if (!out)
		return SAGA_EINVAL;
	*out = NULL;
	if (!name_ok(name) || version < 1)
		return SAGA_EINVAL;
	const saga_alloc *a = &saga_default_alloc;
	saga_definition *d = saga_calloc(a, 1, sizeof(*d));
	if (!d)
		return SAGA_ENOMEM;
	d->alloc = *a;
	d->name = saga_strdup(a, name);
	if (!d->name) {
		saga_free(a, d);
		return SAGA_ENOMEM;
	}
	d->version = version;
	*out = d;
	return SAGA_OK;
}

static void policy_clear(const saga_alloc *a, saga_step_policy *p)
{
	saga_free(a, p->breaker);
	p->breaker = NULL;
}

void saga_definition_free(saga_definition *d)
{
	if (!d)
		return;
	saga_alloc a = d->alloc;
	for (size_t i = 0; i < d->nsteps; i++) {
		saga_free(&a, d->steps[i].name);
		policy_clear(&a, &d->steps[i].policy);
	}
	policy_clear(&a, &d->defaults);
	saga_free(&a, d->steps);
	saga_free(&a, d->name);
	saga_free(&a, d);
}

int saga_definition_add_step(saga_definition *d, const saga_step_spec *spec)
{
	if (!d || !spec || !spec->name)
		return SAGA_EINVAL;
	if (d->nsteps == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 8;
		saga_step_def *s = saga_realloc(&d->alloc, d->steps, cap * sizeof(*s));
		if (!s)
			return SAGA_ENOMEM;
		d->steps = s;
		d->cap = cap;
	}
	saga_step_def *st = &d->steps[d->nsteps];
	memset(st, 0, sizeof(*st));
	st->name = saga_strdup(&d->alloc, spec->name);
	if (!st->name)
		return SAGA_ENOMEM;
	st->kind = spec->kind;
	st->action = spec->action;
	st->compensation = spec->compensation;
	st->user = spec->user;
	d->nsteps++;
	return SAGA_OK;
}

int saga_definition_validate(const saga_definition *d, char *msg, size_t size)
{
	if (!d) {
		saga_fmt(msg, size, "definition is NULL");
		return SAGA_EINVAL;
	}
	if (d->nsteps == 0) {
		saga_fmt(msg, size, "definition '%s' has no steps", d->name);
		return SAGA_EINVAL;
	}
	int rank = 0; /* 0 compensatable, 1 pivot seen, 2 retriable seen */
	for (size_t i = 0; i < d->nsteps; i++) {
		const saga_step_def *s = &d->steps[i];
		if (!name_ok(s->name)) {
			saga_fmt(msg, size, "step %zu: name must be 1 to %d bytes", i,
			         SAGA_NAME_MAX);
			return SAGA_EINVAL;
		}
		if (strchr(s->name, '/')) {
			saga_fmt(msg, size, "step '%s': name must not contain '/'", s->name);
			return SAGA_EINVAL;
		}
		for (size_t j = 0; j < i; j++) {
			if (strcmp(d->steps[j].name, s->name) == 0) {
				saga_fmt(msg, size, "step '%s': duplicate name (steps %zu and %zu)",
				         s->name, j, i);
				return SAGA_EINVAL;
			}
		}
		if (!s->action) {
			saga_fmt(msg, size, "step '%s': action is missing", s->name);
			return SAGA_EINVAL;
		}
		switch (s->kind) {
		case SAGA_STEP_COMPENSATABLE:
			if (!s->compensation) {
				saga_fmt(msg, size,
				         "step '%s': a compensatable step needs a compensation",
				         s->name);
				return SAGA_EINVAL;
			}
			if (rank > 0) {
				saga_fmt(msg, size,
				         "step '%s': a compensatable step cannot follow the %s",
				         s->name, rank == 1 ? "pivot" : "retriable steps");
				return SAGA_EINVAL;
			}
			break;
		case SAGA_STEP_PIVOT:
			if (rank > 0) {
				saga_fmt(msg, size, "step '%s': %s", s->name,
				         rank == 1 ? "a definition has at most one pivot"
				                   : "the pivot cannot follow a retriable step");
				return SAGA_EINVAL;
			}
			rank = 1;
			break;
		case SAGA_STEP_RETRIABLE:
			rank = 2;
			break;
		default:
			saga_fmt(msg, size, "step '%s': unknown kind %d", s->name, (int)s->kind);
			return SAGA_EINVAL;
		}
		if (s->kind != SAGA_STEP_COMPENSATABLE && s->compensation) {
			saga_fmt(msg, size, "step '%s': a %s step has no compensation", s->name,
			         s->kind == SAGA_STEP_PIVOT ? "pivot" : "retriable");
			return SAGA_EINVAL;
		}
	}
	saga_fmt(msg, size, "ok");
	return SAGA_OK;
}

size_t saga_definition_step_count(const saga_definition *d)
{
	return d ? d->nsteps : 0;
}

int saga_definition_step_index(const saga_definition *d, const char *step)
{
	if (!d || !step)
		return SAGA_EINVAL;
	for (size_t i = 0; i < d->nsteps; i++)
		if (strcmp(d->steps[i].name, step) == 0)
			return (int)i;
	return SAGA_ENOTFOUND;
}

/* The policy a setter writes: the step's, or the defaults for step NULL. */
static int target(saga_step_policy **out, saga_definition *d, const char *step)
{
	if (!d)
		return SAGA_EINVAL;
	if (!step) {
		*out = &d->defaults;
		return SAGA_OK;
	}
	int i = saga_definition_step_index(d, step);
	if (i < 0)
		return i;
	*out = &d->steps[i].policy;
	return SAGA_OK;
}

static bool retry_ok(const saga_retry_policy *p)
{
	return p && p->backoff <= SAGA_BACKOFF_EXPONENTIAL &&
	       p->jitter <= SAGA_JITTER_DECORRELATED && (p->cap_ms == 0 || p->cap_ms >= p->base_ms);
}

int saga_definition_set_retry(saga_definition *d, const char *step, const saga_retry_policy *p)
{
	saga_step_policy *t;
	int rc = target(&t, d, step);
	if (rc)
		return rc;
	if (!retry_ok(p))
		return SAGA_EINVAL;
	t->retry = *p;
	t->has_retry = true;
	return SAGA_OK;
}

int saga_definition_set_compensation_retry(saga_definition *d, const char *step,
                                           const saga_retry_policy *p)
{
	saga_step_policy *t;
	int rc = target(&t, d, step);
	if (rc)
		return rc;
	if (!retry_ok(p))
		return SAGA_EINVAL;
	t->comp_retry = *p;
	t->has_comp_retry = true;
	return SAGA_OK;
}

int saga_definition_set_timeout(saga_definition *d, const char *step, uint64_t action_ms,
                                uint64_t comp_ms)
{
	saga_step_policy *t;
	int rc = target(&t, d, step);
	if (rc)
		return rc;
	t->timeout_ms = action_ms;
	t->comp_timeout_ms = comp_ms;
	t->has_timeout = true;
	return SAGA_OK;
}

int saga_definition_set_breaker(saga_definition *d, const char *step, const char *breaker)
{
	saga_step_policy *t;
	int rc = target(&t, d, step);
	if (rc)
		return rc;
	char *copy = NULL;
	if (breaker) {
		if (!name_ok(breaker))
			return SAGA_EINVAL;
		copy = saga_strdup(&d->alloc, breaker);
		if (!copy)
			return SAGA_ENOMEM;
	}
	saga_free(&d->alloc, t->breaker);
	t->breaker = copy;
	return SAGA_OK;
}

int saga_definition_set_deadline(saga_definition *d, uint64_t deadline_ms, uint64_t reserve_ms)
{
	if (!d || (deadline_ms && reserve_ms >= deadline_ms))
		return SAGA_EINVAL;
	d->deadline_ms = deadline_ms;
	d->comp_reserve_ms = deadline_ms ? reserve_ms : 0;
	return SAGA_OK;
}

static int policy_copy(saga_step_policy *dst, const saga_step_policy *src, const saga_alloc *a)
{
	*dst = *src;
	dst->breaker = NULL;
	if (src->breaker && !(dst->breaker = saga_strdup(a, src->breaker)))
		return SAGA_ENOMEM;
	return SAGA_OK;
}

int saga_definition_clone(saga_definition **out, const saga_definition *src, const saga_alloc *a)
{
	*out = NULL;
	saga_definition *d = saga_calloc(a, 1, sizeof(*d));
	if (!d)
		return SAGA_ENOMEM;
	d->alloc = *a;
	d->version = src->version;
	d->deadline_ms = src->deadline_ms;
	d->comp_reserve_ms = src->comp_reserve_ms;
	if (!(d->name = saga_strdup(a, src->name)))
		goto nomem;
	if (policy_copy(&d->defaults, &src->defaults, a))
		goto nomem;
	d->steps = saga_calloc(a, src->nsteps, sizeof(*d->steps));
	if (!d->steps)
		goto nomem;
	d->cap = src->nsteps;
	for (size_t i = 0; i < src->nsteps; i++) {
		saga_step_def *s = &d->steps[i];
		*s = src->steps[i];
		s->name = NULL;
		s->policy.breaker = NULL;
		d->nsteps = i + 1;
		if (!(s->name = saga_strdup(a, src->steps[i].name)))
			goto nomem;
		if (policy_copy(&s->policy, &src->steps[i].policy, a))
			goto nomem;
	}
	*out = d;
	return SAGA_OK;
nomem:
	saga_definition_free(d);
	return SAGA_ENOMEM;
}

/* Past the pivot a step retries until it succeeds or an operator acts. */
static const saga_retry_policy retriable_retry = { 0,     0,   SAGA_BACKOFF_EXPONENTIAL, 100,
	                                           60000, 2.0, SAGA_JITTER_FULL };

const saga_retry_policy *saga_def_retry(const saga_definition *d, size_t i)
{
	if (d->steps[i].policy.has_retry)
		return &d->steps[i].policy.retry;
	if (d->steps[i].kind == SAGA_STEP_RETRIABLE)
		return &retriable_retry;
	if (d->defaults.has_retry)
		return &d->defaults.retry;
	return &default_retry;
}

const saga_retry_policy *saga_def_comp_retry(const saga_definition *d, size_t i)
{
	if (d->steps[i].policy.has_comp_retry)
		return &d->steps[i].policy.comp_retry;
	if (d->defaults.has_comp_retry)
		return &d->defaults.comp_retry;
	return &default_comp_retry;
}

uint64_t saga_def_timeout(const saga_definition *d, size_t i, saga_phase phase)
{
	const saga_step_policy *p =
	        d->steps[i].policy.has_timeout ? &d->steps[i].policy : &d->defaults;
	return phase == SAGA_PHASE_ACTION ? p->timeout_ms : p->comp_timeout_ms;
}

const char *saga_def_breaker(const saga_definition *d, size_t i)
{
	return d->steps[i].policy.breaker ? d->steps[i].policy.breaker : d->defaults.breaker;
}

int saga_def_no_return(const saga_definition *d)
{
	for (size_t i = 0; i < d->nsteps; i++)
		if (d->steps[i].kind != SAGA_STEP_COMPENSATABLE)
			return (int)i;
	return (int)d->nsteps;
}

char *saga_definition_snapshot(const saga_definition *d)
{
	static const char *const kinds[] = { "compensatable", "pivot", "retriable" };
	cJSON *root = cJSON_CreateObject();
	cJSON *steps = NULL;
	char *text = NULL;
	if (!root)
		return NULL;
	if (!cJSON_AddStringToObject(root, "name", d->name) ||
	    !cJSON_AddNumberToObject(root, "version", d->version) ||
	    !(steps = cJSON_AddArrayToObject(root, "steps")))
		goto out;
	for (size_t i = 0; i < d->nsteps; i++) {
		cJSON *s = cJSON_CreateObject();
		if (!s)
			goto out;
		cJSON_AddItemToArray(steps, s);
		if (!cJSON_AddStringToObject(s, "name", d->steps[i].name) ||
		    !cJSON_AddStringToObject(s, "kind", kinds[d->steps[i].kind]))
			goto out;
	}
	text = cJSON_PrintUnformatted(root);
out:
	cJSON_Delete(root);
	return text;
}

int saga_definition_from_snapshot(saga_definition **out, const char *snapshot)
{
	static const char *const kinds[] = { "compensatable", "pivot", "retriable" };
	*out = NULL;
	cJSON *doc = cJSON_Parse(snapshot);
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(doc, "name");
	const cJSON *version = cJSON_GetObjectItemCaseSensitive(doc, "version");
	const cJSON *steps = cJSON_GetObjectItemCaseSensitive(doc, "steps");
	saga_definition *d = NULL;
	int rc = SAGA_ECORRUPT;
	if (!doc && !cJSON_GetErrorPtr())
		rc = SAGA_ENOMEM;
	if (!cJSON_IsString(name) || !cJSON_IsNumber(version) || !cJSON_IsArray(steps) ||
	    (rc = saga_definition_new(&d, name->valuestring, version->valueint)))
		goto out;
	const cJSON *st;
	cJSON_ArrayForEach(st, steps)
	{
		const cJSON *sn = cJSON_GetObjectItemCaseSensitive(st, "name");
		const cJSON *sk = cJSON_GetObjectItemCaseSensitive(st, "kind");
		saga_step_spec spec = { 0 };
		rc = SAGA_ECORRUPT;
		for (int k = 0; k < 3 && cJSON_IsString(sk); k++)
			if (strcmp(sk->valuestring, kinds[k]) == 0) {
				spec.kind = (saga_step_kind)k;
				rc = SAGA_OK;
			}
		if (rc || !cJSON_IsString(sn))
			goto fail;
		spec.name = sn->valuestring;
		if ((rc = saga_definition_add_step(d, &spec)))
			goto fail;
	}
	*out = d;
	goto out;
fail:
	if (rc == SAGA_EINVAL || rc == SAGA_OK)
		rc = SAGA_ECORRUPT;
	saga_definition_free(d);
out:
	cJSON_Delete(doc);
	return rc;
}
