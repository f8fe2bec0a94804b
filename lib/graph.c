/* The graph model of a definition and an instance's executed path: built
 * from a definition's snapshot (graph_new), a registered definition's
 * policies (graph_add_policies) and a history (graph_add_path); drawn by
 * graph_render.c. saga_graph_write ties them together.
 * SPDX-License-Identifier: MIT */
#include "graph_int.h"

#include <cjson/cJSON.h>
#include <string.h>

static const char *const kind_names[] = { "compensatable", "pivot", "retriable" };

/* The length of the valid UTF-8 sequence at s, or 0 if it is not one. */
static size_t utf8_seq(const unsigned char *s)
{
	unsigned char c = s[0];
	if (c < 0x80)
		return 1;
	size_t n;
	unsigned char lo = 0x80, hi = 0xBF;
	if (c >= 0xC2 && c <= 0xDF)
		n = 2;
	else if (c >= 0xE0 && c <= 0xEF) {
		n = 3;
		lo = c == 0xE0 ? 0xA0 : 0x80;
		hi = c == 0xED ? 0x9F : 0xBF;
	} else if (c >= 0xF0 && c <= 0xF4) {
		n = 4;
		lo = c == 0xF0 ? 0x90 : 0x80;
		hi = c == 0xF4 ? 0x8F : 0xBF;
	} else
		return 0;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xBF)
			return 0;
	return n;
}

/* A copy of s in which each byte that begins no valid UTF-8 sequence is
 * U+FFFD. */
static char *utf8_dup(const saga_alloc *a, const char *s)
{
	size_t len = strlen(s);
	char *out = saga_malloc(a, len * 3 + 1);
	if (!out)
		return NULL;
	const unsigned char *p = (const unsigned char *)s;
	char *o = out;
	while (*p) {
		size_t n = utf8_seq(p);
		if (n) {
			memcpy(o, p, n);
			o += n;
			p += n;
		} else {
			memcpy(o, "\xEF\xBF\xBD", 3);
			o += 3;
			p++;
		}
	}
	*o = '\0';
	return out;
}

/* Appends `line` to the owned text *dst, one line each. */
static int append_line(const saga_alloc *a, char **dst, const char *line)
{
	char *clean = utf8_dup(a, line);
	if (!clean)
		return SAGA_ENOMEM;
	size_t old = *dst ? strlen(*dst) : 0, add = strlen(clean);
	char *t = saga_realloc(a, *dst, old + add + 2);
	if (!t) {
		saga_free(a, clean);
		return SAGA_ENOMEM;
	}
	if (old)
		t[old++] = '\n';
	memcpy(t + old, clean, add + 1);
	saga_free(a, clean);
	*dst = t;
	return SAGA_OK;
}

static int set_text(const saga_alloc *a, char **dst, const char *text)
{
	char *t = utf8_dup(a, text);
	if (!t)
		return SAGA_ENOMEM;
	saga_free(a, *dst);
	*dst = t;
	return SAGA_OK;
}

void graph_free(saga_graph *g)
{
	if (!g)
		return;
	const saga_alloc *a = &g->alloc;
	for (size_t i = 0; i < g->nsteps; i++) {
		saga_free(a, g->steps[i].name);
		saga_free(a, g->steps[i].breaker);
		saga_free(a, g->steps[i].error);
		saga_free(a, g->steps[i].operator_notes);
	}
	saga_free(a, g->steps);
	saga_free(a, g->name);
	saga_free(a, g->rollback_detail);
	saga_free(a, g->operator_notes);
	saga_free(a, g);
}

static int bad(char *msg, size_t size, const char *what)
{
	saga_fmt(msg, size, "graph: %s", what);
	return SAGA_EINVAL;
}

static int kind_of(const char *name)
{
	for (int k = 0; k < 3; k++)
		if (strcmp(name, kind_names[k]) == 0)
			return k;
	return -1;
}

/* The steps of the snapshot's "steps" array. */
static int read_steps(saga_graph *g, const cJSON *steps, char *msg, size_t size)
{
	int n = cJSON_GetArraySize(steps);
	if (!cJSON_IsArray(steps) || n < 1)
		return bad(msg, size, "the snapshot has no \"steps\" array of at least one step");
	g->steps = saga_calloc(&g->alloc, (size_t)n, sizeof(*g->steps));
	if (!g->steps)
		return SAGA_ENOMEM;
	g->no_return = (size_t)n;
	const cJSON *st;
	cJSON_ArrayForEach(st, steps)
	{
		const cJSON *nm = cJSON_GetObjectItemCaseSensitive(st, "name");
		const cJSON *kd = cJSON_GetObjectItemCaseSensitive(st, "kind");
		int kind = cJSON_IsString(kd) ? kind_of(kd->valuestring) : -1;
		if (!cJSON_IsString(nm) || !nm->valuestring[0] || kind < 0) {
			saga_fmt(msg, size,
			         "graph: step %zu of the snapshot needs a \"name\" and a "
			         "\"kind\" (compensatable, pivot or retriable)",
			         g->nsteps);
			return SAGA_EINVAL;
		}
		graph_step *s = &g->steps[g->nsteps++];
		s->kind = (saga_step_kind)kind;
		if (!(s->name = utf8_dup(&g->alloc, nm->valuestring)))
			return SAGA_ENOMEM;
		if (kind != SAGA_STEP_COMPENSATABLE && g->no_return == (size_t)n)
			g->no_return = g->nsteps - 1;
	}
	return SAGA_OK;
}

/* cJSON_Parse answers NULL both for text that is not JSON and when an
 * allocation fails: a second parse, and a probe, tell them apart. */
static int parse_snapshot(cJSON **doc, const char *snapshot, char *msg, size_t size)
{
	if ((*doc = cJSON_Parse(snapshot)) || (*doc = cJSON_Parse(snapshot)))
		return SAGA_OK;
	cJSON *probe = cJSON_CreateObject();
	if (!probe) {
		saga_fmt(msg, size, "graph: out of memory");
		return SAGA_ENOMEM;
	}
	cJSON_Delete(probe);
	return bad(msg, size, "the snapshot is not JSON");
}

int graph_new(saga_graph **out, const char *snapshot, const saga_alloc *a, char *msg, size_t size)
{
	*out = NULL;
	if (!snapshot)
		return bad(msg, size, "no snapshot");
	cJSON *doc;
	int rc = parse_snapshot(&doc, snapshot, msg, size);
	if (rc)
		return rc;
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(doc, "name");
	const cJSON *version = cJSON_GetObjectItemCaseSensitive(doc, "version");
	if (!cJSON_IsObject(doc) || !cJSON_IsString(name) || !name->valuestring[0] ||
	    !cJSON_IsNumber(version) || version->valuedouble < 1 ||
	    version->valuedouble > 2147483647.0) {
		cJSON_Delete(doc);
		return bad(msg, size,
		           "the snapshot is not a definition's (it needs \"name\", "
		           "\"version\" and \"steps\")");
	}
	saga_graph *g = saga_calloc(a, 1, sizeof(*g));
	rc = SAGA_ENOMEM;
	if (!g)
		goto out;
	g->alloc = *a;
	g->version = version->valueint;
	g->current = -1;
	if (!(g->name = utf8_dup(a, name->valuestring)))
		goto out;
	rc = read_steps(g, cJSON_GetObjectItemCaseSensitive(doc, "steps"), msg, size);
out:
	cJSON_Delete(doc);
	if (rc == SAGA_ENOMEM)
		saga_fmt(msg, size, "graph: out of memory");
	if (rc) {
		graph_free(g);
		return rc;
	}
	*out = g;
	return SAGA_OK;
}

int graph_add_policies(saga_graph *g, const saga_definition *d, char *msg, size_t size)
{
	if (d->nsteps != g->nsteps)
		return bad(msg, size, "the definition's steps differ from its snapshot's");
	for (size_t i = 0; i < d->nsteps; i++) {
		graph_step *s = &g->steps[i];
		if (d->steps[i].kind != s->kind)
			return bad(msg, size, "the definition's steps differ from its snapshot's");
		s->retry = *saga_def_retry(d, i);
		s->comp_retry = *saga_def_comp_retry(d, i);
		s->timeout_ms = saga_def_timeout(d, i, SAGA_PHASE_ACTION);
		s->comp_timeout_ms = saga_def_timeout(d, i, SAGA_PHASE_COMPENSATION);
		const char *br = saga_def_breaker(d, i);
		if (br && set_text(&g->alloc, &s->breaker, br)) {
			saga_fmt(msg, size, "graph: out of memory");
			return SAGA_ENOMEM;
		}
	}
	g->deadline_ms = d->deadline_ms;
	g->comp_reserve_ms = d->comp_reserve_ms;
	g->has_policies = true;
	return SAGA_OK;
}

/* Checks one event against the definition. */
static int check_event(const saga_graph *g, const saga_event *ev, size_t k, char *msg, size_t size)
{
	char *clean = NULL;
	if (ev->instance != g->instance) {
		saga_fmt(msg, size, "graph: event %zu is of instance %lld, not %lld", k,
		         (long long)ev->instance, (long long)g->instance);
		return SAGA_EINVAL;
	}
	if (ev->step < -1 || (ev->step >= 0 && (size_t)ev->step >= g->nsteps) ||
	    (ev->phase != SAGA_PHASE_ACTION && ev->phase != SAGA_PHASE_COMPENSATION) ||
	    (int)ev->state < 0 || (int)ev->state >= SAGA_STATE_COUNT) {
		saga_fmt(msg, size,
		         "graph: event %zu (step %d) does not fit the definition '%s' "
		         "version %d of %zu steps",
		         k, ev->step, g->name, g->version, g->nsteps);
		return SAGA_EINVAL;
	}
	if (ev->step >= 0 && ev->step_name) {
		if (!(clean = utf8_dup(&g->alloc, ev->step_name)))
			return SAGA_ENOMEM;
		bool same = strcmp(clean, g->steps[ev->step].name) == 0;
		saga_free(&g->alloc, clean);
		if (!same) {
			saga_fmt(msg, size,
			         "graph: event %zu names step %d '%s'; the definition "
			         "'%s' version %d calls it '%s'",
			         k, ev->step, ev->step_name, g->name, g->version,
			         g->steps[ev->step].name);
			return SAGA_EINVAL;
		}
	}
	return SAGA_OK;
}

/* Applies one event to the path. *last_fwd is the step of the last
 * forward attempt, *prev_phase the phase of the event before. */
static int apply_event(saga_graph *g, const saga_event *ev, int *last_fwd, int *prev_phase)
{
	const saga_alloc *a = &g->alloc;
	int p = ev->phase == SAGA_PHASE_COMPENSATION;
	graph_step *s = ev->step >= 0 ? &g->steps[ev->step] : NULL;
	const char *detail = ev->detail ? ev->detail : "";
	bool attempt_event =
	        s && (ev->type == SAGA_EVENT_ATTEMPT_START || ev->type == SAGA_EVENT_ATTEMPT_END ||
	              ev->type == SAGA_EVENT_BREAKER_REFUSED);
	if (attempt_event) {
		g->current = ev->step;
		g->current_phase = p;
		if (!p)
			*last_fwd = ev->step;
	}
	if (p && !*prev_phase) {
		if (*last_fwd >= 0)
			g->steps[*last_fwd].rollback_began = true;
		if (set_text(a, &g->rollback_detail, detail))
			return SAGA_ENOMEM;
	}
	*prev_phase = p;
	g->state = ev->state;
	switch (ev->type) {
	case SAGA_EVENT_ATTEMPT_START:
		if (s)
			s->attempts[p]++;
		break;
	case SAGA_EVENT_ATTEMPT_END:
		if (!s)
			break;
		s->last[p] = ev->outcome;
		if (ev->outcome != SAGA_OUTCOME_OK && ev->outcome != SAGA_OUTCOME_PENDING &&
		    detail[0] && set_text(a, &s->error, detail))
			return SAGA_ENOMEM;
		break;
	case SAGA_EVENT_BREAKER_REFUSED:
		if (s)
			s->refusals++;
		break;
	case SAGA_EVENT_OPERATOR:
		return append_line(a, s ? &s->operator_notes : &g->operator_notes, detail);
	default:
		break;
	}
	return SAGA_OK;
}

int graph_add_path(saga_graph *g, const saga_event *events, size_t n, char *msg, size_t size)
{
	if (n == 0)
		return SAGA_OK;
	if (!events)
		return bad(msg, size, "nevents is not 0 but events is NULL");
	g->has_path = true;
	g->instance = events[0].instance;
	g->nevents = n;
	int last_fwd = -1, prev_phase = 0;
	for (size_t k = 0; k < n; k++) {
		int rc = check_event(g, &events[k], k, msg, size);
		if (rc == SAGA_OK)
			rc = apply_event(g, &events[k], &last_fwd, &prev_phase);
		if (rc == SAGA_ENOMEM)
			saga_fmt(msg, size, "graph: out of memory");
		if (rc)
			return rc;
	}
	return SAGA_OK;
}

static bool is_final(saga_state s)
{
	return s == SAGA_COMPLETED || s == SAGA_COMPENSATED || s == SAGA_STUCK;
}

graph_status graph_step_status(const saga_graph *g, size_t i)
{
	const graph_step *s = &g->steps[i];
	bool here = g->current == (int)i, final = is_final(g->state);
	if (!g->has_path)
		return GS_NOT_RUN;
	if (here && g->state == SAGA_STUCK)
		return GS_STUCK;
	if (s->attempts[1] > 0) {
		if (s->last[1] == SAGA_OUTCOME_OK)
			return GS_COMPENSATED;
		return here && !final ? GS_ACTIVE : GS_COMP_FAILED;
	}
	if (s->attempts[0] == 0 && s->refusals == 0)
		return GS_NOT_RUN;
	if (s->last[0] == SAGA_OUTCOME_OK)
		return GS_OK;
	return here && !final ? GS_ACTIVE : GS_FAILED;
}

const char *graph_status_name(graph_status s)
{
	static const char *const names[] = { "not_run", "ok",          "active",
		                             "failed",  "compensated", "compensation_failed",
		                             "stuck" };
	return names[s];
}

bool graph_has_undo_edge(const saga_graph *g, size_t i)
{
	return i < g->nsteps && i <= g->no_return && g->steps[i].kind != SAGA_STEP_RETRIABLE;
}

static bool reached(const graph_step *s)
{
	return s->attempts[0] > 0 || s->refusals > 0;
}

bool graph_forward_taken(const saga_graph *g, size_t i)
{
	if (!g->has_path)
		return false;
	return i < g->nsteps ? reached(&g->steps[i]) : g->state == SAGA_COMPLETED;
}

bool graph_undo_taken(const saga_graph *g, size_t i)
{
	if (!g->has_path || !reached(&g->steps[i]))
		return false;
	return i > 0 ? g->steps[i - 1].attempts[1] > 0 : g->state == SAGA_COMPENSATED;
}

int saga_graph_format_parse(saga_graph_format *out, const char *name)
{
	static const char *const names[] = { "dot", "mermaid", "json" };
	if (!out || !name)
		return SAGA_EINVAL;
	for (int f = 0; f < 3; f++) {
		if (strcmp(name, names[f]) == 0) {
			*out = (saga_graph_format)f;
			return SAGA_OK;
		}
	}
	return SAGA_EINVAL;
}

int saga_graph_write(const char *snapshot, const saga_event *events, size_t nevents,
                     saga_graph_format format, char *errmsg, size_t errmsg_size,
                     saga_write_fn write, void *user)
{
	if (!write)
		return bad(errmsg, errmsg_size, "no write function");
	saga_graph *g = NULL;
	int rc = graph_new(&g, snapshot, &saga_default_alloc, errmsg, errmsg_size);
	if (rc == SAGA_OK)
		rc = graph_add_path(g, events, nevents, errmsg, errmsg_size);
	if (rc == SAGA_OK)
		rc = graph_render(g, format, write, user, errmsg, errmsg_size);
	graph_free(g);
	return rc;
}
