/*
 * Policy configuration from a JSON document (format in docs/policies.md).
 *
 * The whole document is parsed and checked into local structures first.
 * The policies are then set on a private copy of the definition, through
 * the public setters, so that anything those setters refuse is also caught
 * before the caller's definition changes. The engine's breakers are created
 * next, and last the copy's policies are swapped into the definition, a step
 * that cannot fail. So on every error the definition is untouched.
 *
 * cJSON keeps no positions, so errors are located by a small scanner that
 * walks the (already valid) text along the same path of member indices the
 * checker followed; duplicate keys and escaped keys are found exactly.
 *
 * Near 1,000 lines, over the tree's ~800-line mark: it is one concern, the
 * document's format, checked member by member. The position scanner
 * (skip_*, locate, line_col, about 200 lines) is the part that could become
 * a json_pos.c of its own if another document format needs it.
 *
 * SPDX-License-Identifier: MIT
 */
#include "internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define MAX_DEPTH 8
/* Integers above 2^53 are not exact in a double, which is what cJSON keeps. */
#define MAX_EXACT 9007199254740992.0

typedef struct pathseg {
	const char *name;
	int index; /* position among the members of its object */
} pathseg;

typedef struct cfg_ctx {
	const char *text;
	size_t len;
	saga_config_error *err;
	pathseg path[MAX_DEPTH];
	int depth;
} cfg_ctx;

/* Where a value came from, to report errors found while applying. */
typedef struct where {
	pathseg path[MAX_DEPTH];
	int depth;
} where;

typedef struct pol_spec {
	bool has_retry;
	saga_retry_policy retry;
	where retry_at;
	bool has_comp_retry;
	saga_retry_policy comp_retry;
	where comp_retry_at;
	bool has_timeout;
	uint64_t timeout;
	bool has_comp_timeout;
	uint64_t comp_timeout;
	where timeout_at;
	int breaker_mode;    /* 0: untouched, 1: attach `breaker`, 2: detach */
	const char *breaker; /* borrowed from the cJSON tree */
	where breaker_at;
} pol_spec;

typedef struct step_spec {
	const char *name; /* borrowed from the cJSON tree */
	int index;
	pol_spec pol;
	where at;
} step_spec;

typedef struct breaker_spec {
	const char *name;
	saga_breaker_config cfg;
	where at;
} breaker_spec;

typedef struct doc_spec {
	bool has_defaults;
	pol_spec defaults;
	where defaults_at;
	step_spec *steps;
	size_t nsteps;
	breaker_spec *breakers;
	size_t nbreakers;
	bool has_deadline;
	uint64_t deadline;
	bool has_reserve;
	uint64_t reserve;
	where saga_at;
} doc_spec;

/* ---- positions ---------------------------------------------------------- */

static size_t skip_ws(const char *s, size_t len, size_t pos)
{
	while (pos < len && (unsigned char)s[pos] <= 32 && s[pos] != '\0')
		pos++;
	return pos;
}

static size_t skip_string(const char *s, size_t len, size_t pos)
{
	pos++; /* the opening quote */
	while (pos < len && s[pos] != '"') {
		if (s[pos] == '\\')
			pos++;
		pos++;
	}
	return pos < len ? pos + 1 : len;
}

static size_t skip_value(const char *s, size_t len, size_t pos)
{
	int depth = 0;

	if (pos >= len)
		return len;
	if (s[pos] == '"')
		return skip_string(s, len, pos);
	if (s[pos] != '{' && s[pos] != '[') {
		while (pos < len && s[pos] != ',' && s[pos] != '}' && s[pos] != ']' &&
		       (unsigned char)s[pos] > 32)
			pos++;
		return pos;
	}
	while (pos < len) {
		char ch = s[pos];

		if (ch == '"') {
			pos = skip_string(s, len, pos);
			continue;
		}
		if (ch == '{' || ch == '[')
			depth++;
		else if ((ch == '}' || ch == ']') && --depth == 0)
			return pos + 1;
		pos++;
	}
	return len;
}

static size_t skip_bom(const char *s, size_t len)
{
	if (len >= 3 && (unsigned char)s[0] == 0xEF && (unsigned char)s[1] == 0xBB &&
	    (unsigned char)s[2] == 0xBF)
		return 3;
	return 0;
}

/* Byte offset of the key named by path[0..depth-1] (of the root value when
 * depth is 0), or (size_t)-1 when the walk goes astray. */
static size_t locate(const char *s, size_t len, const pathseg *path, int depth)
{
	size_t pos = skip_ws(s, len, skip_bom(s, len));

	for (int d = 0; d < depth; d++) {
		int i = 0;

		if (pos >= len || s[pos] != '{')
			return (size_t)-1;
		pos++;
		for (;;) {
			size_t key_pos;

			pos = skip_ws(s, len, pos);
			if (pos >= len || s[pos] != '"')
				return (size_t)-1;
			key_pos = pos;
			pos = skip_ws(s, len, skip_string(s, len, pos));
			if (pos >= len || s[pos] != ':')
				return (size_t)-1;
			pos = skip_ws(s, len, pos + 1);
			if (i == path[d].index) {
				if (d == depth - 1)
					return key_pos;
				break; /* descend into this member's value */
			}
			pos = skip_ws(s, len, skip_value(s, len, pos));
			if (pos >= len || s[pos] != ',')
				return (size_t)-1;
			pos++;
			i++;
		}
	}
	return pos;
}

static void line_col(const char *s, size_t len, size_t off, int *line, int *col)
{
	int l = 1, c = 1;

	if (off > len) {
		*line = *col = 0;
		return;
	}
	for (size_t i = 0; i < off; i++) {
		if (s[i] == '\n') {
			l++;
			c = 1;
		} else {
			c++;
		}
	}
	*line = l;
	*col = c;
}

/* ---- errors ------------------------------------------------------------- */

static void key_path(char *buf, size_t size, const pathseg *path, int depth)
{
	size_t n = 0;

	buf[0] = '\0';
	for (int d = 0; d < depth; d++) {
		const char *part = path[d].name != NULL ? path[d].name : "?";
		size_t plen = strlen(part);

		if (d > 0 && n + 1 < size)
			buf[n++] = '.';
		if (n + plen >= size)
			plen = size - 1 - n;
		memcpy(buf + n, part, plen);
		n += plen;
		buf[n] = '\0';
	}
}

static int fail_at(cfg_ctx *c, const pathseg *path, int depth, int code, const char *fmt, ...)
        __attribute__((format(printf, 5, 6)));

static int fail_at(cfg_ctx *c, const pathseg *path, int depth, int code, const char *fmt, ...)
{
	va_list ap;
	size_t off;

	if (c->err == NULL)
		return code;
	key_path(c->err->key, sizeof(c->err->key), path, depth);
	off = locate(c->text, c->len, path, depth);
	line_col(c->text, c->len, off, &c->err->line, &c->err->column);
	va_start(ap, fmt);
	if (vsnprintf(c->err->message, sizeof(c->err->message), fmt, ap) < 0)
		c->err->message[0] = '\0';
	va_end(ap);
	return code;
}

#define FAIL(c, ...) fail_at((c), (c)->path, (c)->depth, SAGA_ECONFIG, __VA_ARGS__)

static void push(cfg_ctx *c, const cJSON *item, int index)
{
	/* The deepest document path is 5 keys; MAX_DEPTH leaves room. */
	if (c->depth < MAX_DEPTH) {
		c->path[c->depth].name = item->string;
		c->path[c->depth].index = index;
	}
	c->depth++;
}

static void pop(cfg_ctx *c)
{
	c->depth--;
}

static void here(const cfg_ctx *c, where *w)
{
	w->depth = c->depth < MAX_DEPTH ? c->depth : MAX_DEPTH;
	memcpy(w->path, c->path, sizeof(w->path));
}

static int fail_where(cfg_ctx *c, const where *w, int code, const char *fmt, const char *arg)
{
	return fail_at(c, w->path, w->depth, code, fmt, arg);
}

/* ---- value checks ------------------------------------------------------- */

static int want_object(cfg_ctx *c, const cJSON *item)
{
	const cJSON *a, *b;
	int i = 0;

	if (!cJSON_IsObject(item))
		return FAIL(c, "must be an object");
	for (a = item->child; a != NULL; a = a->next, i++) {
		for (b = item->child; b != a; b = b->next) {
			if (strcmp(a->string, b->string) == 0) {
				int rc;

				push(c, a, i);
				rc = FAIL(c, "duplicate key \"%s\"", a->string);
				pop(c);
				return rc;
			}
		}
	}
	return 0;
}

static int want_uint(cfg_ctx *c, const cJSON *item, uint64_t min, uint64_t max, uint64_t *out)
{
	double v;

	if (!cJSON_IsNumber(item))
		return FAIL(c, "must be an integer");
	v = item->valuedouble;
	if (v < 0)
		return FAIL(c, "must not be negative");
	if (!(v <= MAX_EXACT) || (double)(uint64_t)v != v)
		return FAIL(c, v > MAX_EXACT ? "is too large" : "must be an integer");
	if ((uint64_t)v < min)
		return FAIL(c, "must be at least %llu", (unsigned long long)min);
	if ((uint64_t)v > max)
		return FAIL(c, "must be at most %llu", (unsigned long long)max);
	*out = (uint64_t)v;
	return 0;
}

static int want_u32(cfg_ctx *c, const cJSON *item, uint32_t min, uint32_t *out)
{
	uint64_t v;
	int rc = want_uint(c, item, min, UINT32_MAX, &v);

	if (rc == 0)
		*out = (uint32_t)v;
	return rc;
}

static int want_percent(cfg_ctx *c, const cJSON *item, double *out)
{
	if (!cJSON_IsNumber(item))
		return FAIL(c, "must be a number (a percentage)");
	if (!(item->valuedouble > 0.0 && item->valuedouble <= 100.0))
		return FAIL(c, "must be a percentage in (0, 100]");
	*out = item->valuedouble;
	return 0;
}

static int want_enum(cfg_ctx *c, const cJSON *item, const char *const *names, int count,
                     const char *expected, int *out)
{
	if (!cJSON_IsString(item))
		return FAIL(c, "must be a string: one of %s", expected);
	for (int i = 0; i < count; i++) {
		if (strcmp(item->valuestring, names[i]) == 0) {
			*out = i;
			return 0;
		}
	}
	return FAIL(c, "unknown value \"%.64s\"; expected one of %s", item->valuestring, expected);
}

static int want_name(cfg_ctx *c, const cJSON *item, const char *what)
{
	size_t n;

	if (!cJSON_IsString(item))
		return FAIL(c, "must be a string (a %s name)", what);
	n = strlen(item->valuestring);
	if (n == 0 || n > SAGA_NAME_MAX)
		return FAIL(c, "a %s name has 1 to %d bytes", what, SAGA_NAME_MAX);
	return 0;
}

static int key_name_ok(cfg_ctx *c, const char *what)
{
	size_t n = strlen(c->path[c->depth - 1].name);

	if (n == 0 || n > SAGA_NAME_MAX)
		return FAIL(c, "a %s name has 1 to %d bytes", what, SAGA_NAME_MAX);
	return 0;
}

/* ---- document sections -------------------------------------------------- */

static const char *const backoff_names[] = { "constant", "linear", "exponential" };
static const char *const jitter_names[] = { "none", "full", "equal", "decorrelated" };
static const char *const window_names[] = { "count", "time" };

static int parse_retry(cfg_ctx *c, const cJSON *obj, saga_retry_policy *out)
{
	saga_retry_policy p = SAGA_RETRY_POLICY_INIT;
	const cJSON *it;
	int rc, i = 0;

	if ((rc = want_object(c, obj)) != 0)
		return rc;
	for (it = obj->child; it != NULL; it = it->next, i++) {
		const char *k = it->string;
		int e = 0;

		push(c, it, i);
		if (strcmp(k, "max_attempts") == 0) {
			rc = want_u32(c, it, 0, &p.max_attempts);
		} else if (strcmp(k, "max_duration_ms") == 0) {
			rc = want_uint(c, it, 0, UINT64_MAX, &p.max_duration_ms);
		} else if (strcmp(k, "backoff") == 0) {
			rc = want_enum(c, it, backoff_names, 3,
			               "\"constant\", \"linear\", \"exponential\"", &e);
			p.backoff = (saga_backoff)e;
		} else if (strcmp(k, "base_ms") == 0) {
			rc = want_uint(c, it, 0, UINT64_MAX, &p.base_ms);
		} else if (strcmp(k, "cap_ms") == 0) {
			rc = want_uint(c, it, 0, UINT64_MAX, &p.cap_ms);
		} else if (strcmp(k, "multiplier") == 0) {
			if (!cJSON_IsNumber(it))
				rc = FAIL(c, "must be a number");
			else if (!(it->valuedouble >= 1.0 && it->valuedouble <= 1000.0))
				rc = FAIL(c, "must be a number from 1 to 1000");
			else
				p.multiplier = it->valuedouble;
		} else if (strcmp(k, "jitter") == 0) {
			rc = want_enum(c, it, jitter_names, 4,
			               "\"none\", \"full\", \"equal\", \"decorrelated\"", &e);
			p.jitter = (saga_jitter)e;
		} else {
			rc = FAIL(c, "unknown key \"%s\" in a retry policy", k);
		}
		pop(c);
		if (rc != 0)
			return rc;
	}
	if (p.cap_ms != 0 && p.cap_ms < p.base_ms)
		return FAIL(c, "cap_ms (%llu) is below base_ms (%llu)",
		            (unsigned long long)p.cap_ms, (unsigned long long)p.base_ms);
	*out = p;
	return 0;
}

/* "defaults" or one member of "steps". */
static int parse_policies(cfg_ctx *c, const cJSON *obj, bool is_step, pol_spec *out)
{
	const cJSON *it;
	int rc, i = 0;

	memset(out, 0, sizeof(*out));
	if ((rc = want_object(c, obj)) != 0)
		return rc;
	for (it = obj->child; it != NULL; it = it->next, i++) {
		const char *k = it->string;

		push(c, it, i);
		if (strcmp(k, "retry") == 0) {
			here(c, &out->retry_at);
			rc = parse_retry(c, it, &out->retry);
			out->has_retry = true;
		} else if (strcmp(k, "compensation_retry") == 0) {
			here(c, &out->comp_retry_at);
			rc = parse_retry(c, it, &out->comp_retry);
			out->has_comp_retry = true;
		} else if (strcmp(k, "timeout_ms") == 0) {
			here(c, &out->timeout_at);
			rc = want_uint(c, it, 0, UINT64_MAX, &out->timeout);
			out->has_timeout = true;
		} else if (strcmp(k, "compensation_timeout_ms") == 0) {
			if (!out->has_timeout)
				here(c, &out->timeout_at);
			rc = want_uint(c, it, 0, UINT64_MAX, &out->comp_timeout);
			out->has_comp_timeout = true;
		} else if (is_step && strcmp(k, "breaker") == 0) {
			here(c, &out->breaker_at);
			if (cJSON_IsNull(it)) {
				out->breaker_mode = 2;
			} else {
				rc = want_name(c, it, "breaker");
				out->breaker = it->valuestring;
				out->breaker_mode = 1;
			}
		} else {
			rc = FAIL(c, "unknown key \"%s\" in %s", k,
			          is_step ? "a step's policies" : "\"defaults\"");
		}
		pop(c);
		if (rc != 0)
			return rc;
	}
	return 0;
}

static int parse_breaker(cfg_ctx *c, const cJSON *obj, saga_breaker_config *out)
{
	saga_breaker_config cfg = SAGA_BREAKER_CONFIG_INIT;
	const cJSON *it;
	int rc, i = 0;

	if ((rc = want_object(c, obj)) != 0)
		return rc;
	for (it = obj->child; it != NULL; it = it->next, i++) {
		const char *k = it->string;
		int e = 0;

		push(c, it, i);
		if (strcmp(k, "window") == 0) {
			rc = want_enum(c, it, window_names, 2, "\"count\", \"time\"", &e);
			cfg.window = (saga_window_kind)e;
		} else if (strcmp(k, "window_size") == 0) {
			rc = want_uint(c, it, 1, UINT64_MAX, &cfg.window_size);
		} else if (strcmp(k, "buckets") == 0) {
			rc = want_u32(c, it, 1, &cfg.buckets);
		} else if (strcmp(k, "failure_rate_threshold") == 0) {
			rc = want_percent(c, it, &cfg.failure_rate_threshold);
		} else if (strcmp(k, "slow_call_rate_threshold") == 0) {
			rc = want_percent(c, it, &cfg.slow_call_rate_threshold);
		} else if (strcmp(k, "slow_call_ms") == 0) {
			rc = want_uint(c, it, 0, UINT64_MAX, &cfg.slow_call_ms);
		} else if (strcmp(k, "minimum_calls") == 0) {
			rc = want_u32(c, it, 1, &cfg.minimum_calls);
		} else if (strcmp(k, "open_wait_ms") == 0) {
			rc = want_uint(c, it, 0, UINT64_MAX, &cfg.open_wait_ms);
		} else if (strcmp(k, "open_wait_max_ms") == 0) {
			rc = want_uint(c, it, 0, UINT64_MAX, &cfg.open_wait_max_ms);
		} else if (strcmp(k, "half_open_calls") == 0) {
			rc = want_u32(c, it, 1, &cfg.half_open_calls);
		} else if (strcmp(k, "half_open_max_ms") == 0) {
			rc = want_uint(c, it, 0, UINT64_MAX, &cfg.half_open_max_ms);
		} else {
			rc = FAIL(c, "unknown key \"%s\" in a breaker", k);
		}
		pop(c);
		if (rc != 0)
			return rc;
	}
	if (cfg.window == SAGA_WINDOW_TIME &&
	    (cfg.window_size < cfg.buckets || cfg.window_size % cfg.buckets != 0))
		return FAIL(c,
		            "a time window's window_size (%llu ms) must be a multiple of "
		            "buckets (%u)",
		            (unsigned long long)cfg.window_size, cfg.buckets);
	if (cfg.open_wait_max_ms != 0 && cfg.open_wait_max_ms < cfg.open_wait_ms)
		return FAIL(c, "open_wait_max_ms is below open_wait_ms");
	{
		/* The breaker's own checks decide, so that nothing it would refuse
		 * gets through to the apply phase. */
		saga_breaker *probe = NULL;

		rc = saga_breaker_new(&probe, c->path[c->depth - 1].name, &cfg, NULL);
		saga_breaker_free(probe);
		if (rc == SAGA_ENOMEM)
			return rc;
		if (rc != 0)
			return FAIL(c, "invalid breaker configuration (a limit is exceeded; "
			               "see docs/policies.md)");
	}
	*out = cfg;
	return 0;
}

static int parse_saga(cfg_ctx *c, const cJSON *obj, doc_spec *doc)
{
	const cJSON *it;
	int rc, i = 0;

	if ((rc = want_object(c, obj)) != 0)
		return rc;
	here(c, &doc->saga_at);
	for (it = obj->child; it != NULL; it = it->next, i++) {
		push(c, it, i);
		if (strcmp(it->string, "deadline_ms") == 0) {
			rc = want_uint(c, it, 0, UINT64_MAX, &doc->deadline);
			doc->has_deadline = true;
		} else if (strcmp(it->string, "compensation_reserve_ms") == 0) {
			rc = want_uint(c, it, 0, UINT64_MAX, &doc->reserve);
			doc->has_reserve = true;
		} else {
			rc = FAIL(c, "unknown key \"%s\" in \"saga\"", it->string);
		}
		pop(c);
		if (rc != 0)
			return rc;
	}
	return 0;
}

static int count_members(const cJSON *obj)
{
	int n = 0;

	for (const cJSON *it = obj->child; it != NULL; it = it->next)
		n++;
	return n;
}

static const breaker_spec *doc_breaker(const doc_spec *doc, const char *name)
{
	for (size_t i = 0; i < doc->nbreakers; i++)
		if (strcmp(doc->breakers[i].name, name) == 0)
			return &doc->breakers[i];
	return NULL;
}

/* Parses and checks the whole document into *doc (arrays allocated with a). */
static int parse_doc(cfg_ctx *c, const cJSON *root, saga_engine *engine, const saga_definition *def,
                     const saga_alloc *a, doc_spec *doc)
{
	const cJSON *it, *sec[4] = { NULL, NULL, NULL, NULL };
	int idx[4] = { 0, 0, 0, 0 };
	static const char *const sections[4] = { "breakers", "defaults", "steps", "saga" };
	int rc, i = 0;

	if ((rc = want_object(c, root)) != 0)
		return rc;
	for (it = root->child; it != NULL; it = it->next, i++) {
		int s;

		for (s = 0; s < 4; s++)
			if (strcmp(it->string, sections[s]) == 0)
				break;
		if (s == 4) {
			push(c, it, i);
			rc = FAIL(c,
			          "unknown key \"%s\"; expected \"defaults\", \"steps\", "
			          "\"breakers\" or \"saga\"",
			          it->string);
			pop(c);
			return rc;
		}
		sec[s] = it;
		idx[s] = i;
	}

	if (def == NULL) {
		for (int s = 1; s < 4; s++) {
			if (sec[s] != NULL) {
				push(c, sec[s], idx[s]);
				rc = fail_at(c, c->path, c->depth, SAGA_EINVAL,
				             "this section needs a definition");
				pop(c);
				return rc;
			}
		}
	}

	/* Breakers first: steps may refer to them. */
	if (sec[0] != NULL) {
		push(c, sec[0], idx[0]);
		if ((rc = want_object(c, sec[0])) != 0)
			return rc;
		if (engine == NULL && sec[0]->child != NULL)
			return fail_at(c, c->path, c->depth, SAGA_EINVAL,
			               "breakers need an engine (engine is NULL)");
		doc->breakers =
		        saga_calloc(a, (size_t)count_members(sec[0]) + 1, sizeof(*doc->breakers));
		if (doc->breakers == NULL)
			return SAGA_ENOMEM;
		i = 0;
		for (it = sec[0]->child; it != NULL; it = it->next, i++) {
			breaker_spec *bs = &doc->breakers[doc->nbreakers];

			push(c, it, i);
			if ((rc = key_name_ok(c, "breaker")) != 0)
				return rc;
			if ((rc = parse_breaker(c, it, &bs->cfg)) != 0)
				return rc;
			if (saga_engine_breaker(engine, it->string) != NULL)
				return FAIL(c,
				            "the engine already has a breaker \"%s\"; breakers "
				            "are created once and cannot be redefined",
				            it->string);
			bs->name = it->string;
			here(c, &bs->at);
			doc->nbreakers++;
			pop(c);
		}
		pop(c);
	}

	if (sec[1] != NULL) {
		push(c, sec[1], idx[1]);
		here(c, &doc->defaults_at);
		if ((rc = parse_policies(c, sec[1], false, &doc->defaults)) != 0)
			return rc;
		doc->has_defaults = true;
		pop(c);
	}

	if (sec[2] != NULL) {
		push(c, sec[2], idx[2]);
		if ((rc = want_object(c, sec[2])) != 0)
			return rc;
		doc->steps = saga_calloc(a, (size_t)count_members(sec[2]) + 1, sizeof(*doc->steps));
		if (doc->steps == NULL)
			return SAGA_ENOMEM;
		i = 0;
		for (it = sec[2]->child; it != NULL; it = it->next, i++) {
			step_spec *ss = &doc->steps[doc->nsteps];

			push(c, it, i);
			ss->index = saga_definition_step_index(def, it->string);
			if (ss->index < 0)
				return FAIL(c, "the definition \"%s\" has no step \"%s\"",
				            def->name != NULL ? def->name : "", it->string);
			ss->name = it->string;
			here(c, &ss->at);
			if ((rc = parse_policies(c, it, true, &ss->pol)) != 0)
				return rc;
			if (ss->pol.breaker_mode == 1 && engine != NULL &&
			    doc_breaker(doc, ss->pol.breaker) == NULL &&
			    saga_engine_breaker(engine, ss->pol.breaker) == NULL)
				return fail_where(
				        c, &ss->pol.breaker_at, SAGA_ECONFIG,
				        "no breaker \"%s\" in the document or on the engine",
				        ss->pol.breaker);
			doc->nsteps++;
			pop(c);
		}
		pop(c);
	}

	if (sec[3] != NULL) {
		uint64_t deadline, reserve;

		push(c, sec[3], idx[3]);
		if ((rc = parse_saga(c, sec[3], doc)) != 0)
			return rc;
		deadline = doc->has_deadline ? doc->deadline : def->deadline_ms;
		reserve = doc->has_reserve ? doc->reserve : def->comp_reserve_ms;
		/* With no deadline the setter drops the reserve; one given
		 * explicitly then is a mistake. */
		if ((deadline == 0 && doc->has_reserve && reserve != 0) ||
		    (deadline != 0 && reserve >= deadline))
			return FAIL(c,
			            "compensation_reserve_ms (%llu) must be below deadline_ms "
			            "(%llu)",
			            (unsigned long long)reserve, (unsigned long long)deadline);
		pop(c);
	}
	return 0;
}

/* ---- applying ----------------------------------------------------------- */

/* Turns a setter's refusal into an error naming where the value came from. */
static int setter_failed(cfg_ctx *c, const where *w, int rc)
{
	if (rc == SAGA_ENOMEM)
		return rc;
	return fail_where(c, w, SAGA_ECONFIG, "refused by the definition: %s", saga_strerror(rc));
}

static int apply_policies(cfg_ctx *c, saga_definition *d, const char *step, int index,
                          const pol_spec *p)
{
	int rc;

	if (p->has_retry && (rc = saga_definition_set_retry(d, step, &p->retry)) != 0)
		return setter_failed(c, &p->retry_at, rc);
	if (p->has_comp_retry &&
	    (rc = saga_definition_set_compensation_retry(d, step, &p->comp_retry)) != 0)
		return setter_failed(c, &p->comp_retry_at, rc);
	if (p->has_timeout || p->has_comp_timeout) {
		/* The setter takes both; the one not given keeps its value. */
		const saga_step_policy *cur = index < 0 ? &d->defaults : &d->steps[index].policy;
		uint64_t action = 0, comp = 0;

		if (cur->has_timeout) {
			action = cur->timeout_ms;
			comp = cur->comp_timeout_ms;
		} else if (index >= 0 && d->defaults.has_timeout) {
			action = d->defaults.timeout_ms;
			comp = d->defaults.comp_timeout_ms;
		}
		if (p->has_timeout)
			action = p->timeout;
		if (p->has_comp_timeout)
			comp = p->comp_timeout;
		if ((rc = saga_definition_set_timeout(d, step, action, comp)) != 0)
			return setter_failed(c, &p->timeout_at, rc);
	}
	if (p->breaker_mode != 0 &&
	    (rc = saga_definition_set_breaker(d, step, p->breaker_mode == 1 ? p->breaker : NULL)) !=
	            0)
		return setter_failed(c, &p->breaker_at, rc);
	return 0;
}

static int apply_to_copy(cfg_ctx *c, saga_definition *copy, const doc_spec *doc)
{
	int rc;

	if (doc->has_defaults && (rc = apply_policies(c, copy, NULL, -1, &doc->defaults)) != 0)
		return rc;
	for (size_t i = 0; i < doc->nsteps; i++) {
		const step_spec *s = &doc->steps[i];

		if ((rc = apply_policies(c, copy, s->name, s->index, &s->pol)) != 0)
			return rc;
	}
	if (doc->has_deadline || doc->has_reserve) {
		uint64_t deadline = doc->has_deadline ? doc->deadline : copy->deadline_ms;
		uint64_t reserve = doc->has_reserve ? doc->reserve : copy->comp_reserve_ms;

		if ((rc = saga_definition_set_deadline(copy, deadline, reserve)) != 0)
			return setter_failed(c, &doc->saga_at, rc);
	}
	return 0;
}

/* Moves the copy's policies into def; the copy is left with the old ones. */
static void swap_policies(saga_definition *def, saga_definition *copy)
{
	saga_step_policy tmp;
	uint64_t t;

	for (size_t i = 0; i < def->nsteps && i < copy->nsteps; i++) {
		tmp = def->steps[i].policy;
		def->steps[i].policy = copy->steps[i].policy;
		copy->steps[i].policy = tmp;
	}
	tmp = def->defaults;
	def->defaults = copy->defaults;
	copy->defaults = tmp;
	t = def->deadline_ms;
	def->deadline_ms = copy->deadline_ms;
	copy->deadline_ms = t;
	t = def->comp_reserve_ms;
	def->comp_reserve_ms = copy->comp_reserve_ms;
	copy->comp_reserve_ms = t;
}

/* A NUL byte at offset off: SAGA_ECONFIG, its position in err. */
static int refuse_nul(const char *text, size_t len, size_t off, saga_config_error *err)
{
	if (err != NULL) {
		line_col(text, len, off, &err->line, &err->column);
		saga_fmt(err->message, sizeof(err->message), "%s",
		         "a NUL byte in the document (nothing may follow the JSON but blanks)");
	}
	return SAGA_ECONFIG;
}

int saga_policies_apply(saga_engine *engine, saga_definition *def, const char *json, size_t len,
                        saga_config_error *err)
{
	const saga_alloc *a = def != NULL ? &def->alloc : &saga_default_alloc;
	cfg_ctx c;
	doc_spec doc;
	cJSON *root;
	const char *end = NULL;
	saga_definition *copy = NULL;
	int rc;

	if (err != NULL)
		memset(err, 0, sizeof(*err));
	if (json == NULL)
		return SAGA_EINVAL;
	memset(&c, 0, sizeof(c));
	memset(&doc, 0, sizeof(doc));
	c.text = json;
	c.len = len;
	c.err = err;

	/* Every byte is part of the document: a NUL anywhere but as a string's
	 * terminator counted in len (the last byte) would end the text early
	 * for cJSON or for a C string made from it, and silently drop what
	 * follows. */
	const char *nul = memchr(json, '\0', len);
	if (nul != NULL && nul != json + len - 1)
		return refuse_nul(json, len, (size_t)(nul - json), err);

	root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
	if (root == NULL) {
		if (err != NULL) {
			size_t off = end != NULL && end >= json ? (size_t)(end - json) : 0;

			line_col(json, len, off > len ? len : off, &err->line, &err->column);
			saga_fmt(err->message, sizeof(err->message), "%s",
			         len == 0 ? "the document is empty" : "JSON syntax error");
		}
		return SAGA_ECONFIG;
	}
	if (end != NULL && end >= json) {
		/* cJSON stops after the first value: anything but blanks (or the
		 * terminating NUL, the last byte) after it is an error too. */
		size_t off = skip_ws(json, len, (size_t)(end - json));

		if (off < len && !(json[off] == '\0' && off == len - 1)) {
			cJSON_Delete(root);
			if (err != NULL) {
				line_col(json, len, off, &err->line, &err->column);
				saga_fmt(err->message, sizeof(err->message), "%s",
				         "unexpected text after the document");
			}
			return SAGA_ECONFIG;
		}
	}

	rc = parse_doc(&c, root, engine, def, a, &doc);
	if (rc != 0)
		goto out;

	if (def != NULL) {
		rc = saga_definition_clone(&copy, def, &def->alloc);
		if (rc != 0)
			goto out;
		rc = apply_to_copy(&c, copy, &doc);
		if (rc != 0)
			goto out;
	}
	for (size_t i = 0; i < doc.nbreakers; i++) {
		rc = saga_engine_add_breaker(engine, doc.breakers[i].name, &doc.breakers[i].cfg);
		if (rc == SAGA_ENOMEM)
			goto out;
		if (rc != 0) {
			/* Only a concurrent caller adding the same name gets here. */
			rc = fail_where(&c, &doc.breakers[i].at, SAGA_ECONFIG,
			                "the engine refused the breaker: %s", saga_strerror(rc));
			goto out;
		}
	}
	if (copy != NULL)
		swap_policies(def, copy);

out:
	saga_definition_free(copy);
	saga_free(a, doc.steps);
	saga_free(a, doc.breakers);
	cJSON_Delete(root);
	return rc;
}

int saga_policies_apply_file(saga_engine *engine, saga_definition *def, const char *path,
                             saga_config_error *err)
{
	const saga_alloc *a = def != NULL ? &def->alloc : &saga_default_alloc;
	FILE *f;
	char *buf = NULL;
	size_t len = 0, cap = 0;
	int rc;

	if (err != NULL)
		memset(err, 0, sizeof(*err));
	if (path == NULL)
		return SAGA_EINVAL;
	f = fopen(path, "rb");
	if (f == NULL) {
		if (err != NULL)
			saga_fmt(err->message, sizeof(err->message), "cannot open %s: %s", path,
			         errno == ENOENT ? "no such file" : "open failed");
		return SAGA_EIO;
	}
	for (;;) {
		size_t n;

		if (len == cap) {
			size_t ncap = cap == 0 ? 4096 : cap * 2;
			char *nbuf;

			if (ncap > ((size_t)64 << 20)) {
				/* A policy file is small; refuse something absurd. */
				fclose(f);
				saga_free(a, buf);
				if (err != NULL)
					saga_fmt(err->message, sizeof(err->message),
					         "%s is too large", path);
				return SAGA_ECONFIG;
			}
			nbuf = saga_realloc(a, buf, ncap);
			if (nbuf == NULL) {
				fclose(f);
				saga_free(a, buf);
				return SAGA_ENOMEM;
			}
			buf = nbuf;
			cap = ncap;
		}
		n = fread(buf + len, 1, cap - len, f);
		len += n;
		if (n == 0)
			break;
	}
	if (ferror(f)) {
		fclose(f);
		saga_free(a, buf);
		if (err != NULL)
			saga_fmt(err->message, sizeof(err->message), "cannot read %s", path);
		return SAGA_EIO;
	}
	fclose(f);
	/* The whole file is the document: unlike a string passed in, a file
	 * has no terminator, so any NUL byte in it is refused. */
	const char *nul = len > 0 ? memchr(buf, '\0', len) : NULL;
	if (nul != NULL)
		rc = refuse_nul(buf, len, (size_t)(nul - buf), err);
	else
		rc = saga_policies_apply(engine, def, buf, len, err);
	saga_free(a, buf);
	return rc;
}
