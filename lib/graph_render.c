/* Drawing the graph model (graph_int.h) as Graphviz DOT, a Mermaid
 * flowchart or JSON. DOT and Mermaid share the text of each node
 * (step_label); each format escapes it its own way (dot_escape,
 * mermaid_escape); the JSON form is made with cJSON, which escapes for it.
 * SPDX-License-Identifier: MIT */
#include "graph_int.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- a growing text buffer; an allocation failure is kept, not lost ---- */

typedef struct sbuf {
	const saga_alloc *a;
	char *p;
	size_t len, cap;
	bool oom;
} sbuf;

static void put_n(sbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *t = saga_realloc(b->a, b->p, cap);
		if (!t) {
			b->oom = true;
			return;
		}
		b->p = t;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void put(sbuf *b, const char *s)
{
	put_n(b, s, strlen(s));
}

static void putf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(sbuf *b, const char *fmt, ...)
{
	char tmp[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n > 0)
		put_n(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* ---- the text of a node, shared by DOT and Mermaid ---- */

static const char *const kind_names[] = { "compensatable", "pivot", "retriable" };

static void put_duration(sbuf *b, uint64_t ms)
{
	if (ms >= 1000 && ms % 1000 == 0)
		putf(b, "%" PRIu64 " s", ms / 1000);
	else
		putf(b, "%" PRIu64 " ms", ms);
}

static void put_retry(sbuf *b, const char *what, const saga_retry_policy *p)
{
	static const char *const backoffs[] = { "constant", "linear", "exponential" };
	static const char *const jitters[] = { "", ", full jitter", ", equal jitter",
		                               ", decorrelated jitter" };
	if (p->max_attempts)
		putf(b, "\n%s: %" PRIu32 " attempts, ", what, p->max_attempts);
	else
		putf(b, "\n%s: unlimited, ", what);
	put(b, p->backoff <= SAGA_BACKOFF_EXPONENTIAL ? backoffs[p->backoff] : "?");
	put(b, " ");
	put_duration(b, p->base_ms);
	if (p->cap_ms) {
		put(b, " to ");
		put_duration(b, p->cap_ms);
	}
	put(b, p->jitter <= SAGA_JITTER_DECORRELATED ? jitters[p->jitter] : "");
	if (p->max_duration_ms) {
		put(b, ", within ");
		put_duration(b, p->max_duration_ms);
	}
}

static const char *status_text(graph_status s)
{
	static const char *const texts[] = { "not run", "ok",          "in progress",
		                             "failed",  "compensated", "compensation failed",
		                             "STUCK" };
	return texts[s];
}

static const char *plural(uint32_t n)
{
	return n == 1 ? "" : "s";
}

/* The lines of step i's node, separated by '\n', unescaped. */
static void step_label(sbuf *b, const saga_graph *g, size_t i)
{
	const graph_step *s = &g->steps[i];
	put(b, s->name);
	put(b, "\n");
	put(b, kind_names[s->kind]);
	if (g->has_policies) {
		put_retry(b, "retry", &s->retry);
		if (s->kind == SAGA_STEP_COMPENSATABLE)
			put_retry(b, "undo retry", &s->comp_retry);
		if (s->timeout_ms) {
			put(b, "\ntimeout: ");
			put_duration(b, s->timeout_ms);
		}
		if (s->kind == SAGA_STEP_COMPENSATABLE && s->comp_timeout_ms) {
			put(b, "\nundo timeout: ");
			put_duration(b, s->comp_timeout_ms);
		}
		if (s->breaker) {
			put(b, "\nbreaker: ");
			put(b, s->breaker);
		}
	}
	graph_status st = graph_step_status(g, i);
	if (st == GS_NOT_RUN)
		return;
	putf(b, "\n%s, %" PRIu32 " attempt%s", status_text(st), s->attempts[0],
	     plural(s->attempts[0]));
	if (s->attempts[1])
		putf(b, "\nundo: %" PRIu32 " attempt%s", s->attempts[1], plural(s->attempts[1]));
	if (s->refusals)
		putf(b, "\nrefused by its breaker: %" PRIu32, s->refusals);
	if (s->error && st != GS_OK && st != GS_COMPENSATED) {
		put(b, "\nerror: ");
		put(b, s->error);
	}
	if (s->rollback_began)
		put(b, "\nrollback began here");
	if (s->operator_notes) {
		put(b, "\n");
		put(b, s->operator_notes);
	}
}

/* The title: the definition, and the instance drawn. */
static void title(sbuf *b, const saga_graph *g)
{
	putf(b, "%s", g->name);
	putf(b, " version %d", g->version);
	if (g->has_policies && g->deadline_ms) {
		put(b, "\ndeadline: ");
		put_duration(b, g->deadline_ms);
		if (g->comp_reserve_ms) {
			put(b, " (");
			put_duration(b, g->comp_reserve_ms);
			put(b, " kept for compensation)");
		}
	}
	if (!g->has_path)
		return;
	putf(b, "\ninstance %lld: %s", (long long)g->instance, saga_state_name(g->state));
	if (g->rollback_detail) {
		put(b, "\nrollback: ");
		put(b, g->rollback_detail);
	}
	if (g->operator_notes) {
		put(b, "\n");
		put(b, g->operator_notes);
	}
}

/* Writes the raw text of `lbl` into b, each byte that has one replaced
 * by its entry in subst (the format's escapes), other control characters
 * by spaces; `lbl` is emptied for the next label. */
static void take_label(sbuf *b, sbuf *lbl, const char *const subst[128])
{
	for (const char *s = lbl->p ? lbl->p : ""; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c < 128 && subst[c])
			put(b, subst[c]);
		else if (c < 0x20 || c == 0x7f)
			put(b, " ");
		else
			put_n(b, s, 1);
	}
	lbl->len = 0;
	if (lbl->p)
		lbl->p[0] = '\0';
}

/* ---- shared look ---- */

static const char *const fills[] = {
	[GS_NOT_RUN] = "#f5f5f5", [GS_OK] = "#c8e6c9",          [GS_ACTIVE] = "#fff59d",
	[GS_FAILED] = "#ef9a9a",  [GS_COMPENSATED] = "#bbdefb", [GS_COMP_FAILED] = "#ef9a9a",
	[GS_STUCK] = "#ffb74d",
};
static const char *const strokes[] = {
	[GS_NOT_RUN] = "#9e9e9e", [GS_OK] = "#2e7d32",          [GS_ACTIVE] = "#f9a825",
	[GS_FAILED] = "#c62828",  [GS_COMPENSATED] = "#1565c0", [GS_COMP_FAILED] = "#c62828",
	[GS_STUCK] = "#e65100",
};
#define FORWARD_COLOUR "#2e7d32"
#define UNDO_COLOUR    "#1565c0"
#define IDLE_COLOUR    "#9e9e9e"

/* The end node an instance reached, if any: 1 completed, 2 compensated. */
static int end_reached(const saga_graph *g)
{
	if (!g->has_path)
		return 0;
	return g->state == SAGA_COMPLETED ? 1 : g->state == SAGA_COMPENSATED ? 2 : 0;
}

/* The ends of the forward edge into step i (i = nsteps: into "completed")
 * and of the compensation edge out of step i. */
static void forward_ends(char from[32], char to[32], const saga_graph *g, size_t i)
{
	if (i)
		saga_fmt(from, 32, "s%zu", i - 1);
	else
		saga_fmt(from, 32, "n_start");
	if (i < g->nsteps)
		saga_fmt(to, 32, "s%zu", i);
	else
		saga_fmt(to, 32, "n_completed");
}

static void undo_ends(char from[32], char to[32], size_t i)
{
	saga_fmt(from, 32, "s%zu", i);
	if (i)
		saga_fmt(to, 32, "s%zu", i - 1);
	else
		saga_fmt(to, 32, "n_compensated");
}

/* ---- Graphviz DOT ---- */

/* Inside a DOT "quoted string": the quote and the backslash are escaped,
 * '&' too (Graphviz reads HTML entities in labels), '\n' is DOT's centred
 * line break. */
static const char *const dot_subst[128] = {
	['"'] = "\\\"",
	['\\'] = "\\\\",
	['&'] = "&amp;",
	['\n'] = "\\n",
};

/* A label="..." attribute from the raw text of `lbl`. */
static void dot_label(sbuf *b, sbuf *lbl)
{
	put(b, "label=\"");
	take_label(b, lbl, dot_subst);
	put(b, "\"");
}

static void dot_step(sbuf *b, sbuf *lbl, const saga_graph *g, size_t i, const char *indent)
{
	static const char *const shapes[] = { "shape=box", "shape=diamond",
		                              "shape=box, peripheries=2" };
	graph_status st = graph_step_status(g, i);
	putf(b, "%ss%zu [%s, ", indent, i, shapes[g->steps[i].kind]);
	if (g->has_path)
		putf(b, "fillcolor=\"%s\", color=\"%s\", ", fills[st], strokes[st]);
	step_label(lbl, g, i);
	dot_label(b, lbl);
	put(b, "];\n");
}

static void dot_edge(sbuf *b, const saga_graph *g, const char *from, const char *to, bool undo,
                     bool taken)
{
	putf(b, "\t%s -> %s", from, to);
	if (undo)
		put(b, " [style=dashed, constraint=false, label=\"undo\"");
	else
		put(b, " [");
	if (g->has_path)
		putf(b, "%scolor=\"%s\"%s", undo ? ", " : "",
		     taken ? (undo ? UNDO_COLOUR : FORWARD_COLOUR) : IDLE_COLOUR,
		     taken ? ", penwidth=2.5" : "");
	else if (undo)
		put(b, ", color=\"" UNDO_COLOUR "\"");
	put(b, "];\n");
}

static void render_dot(sbuf *b, sbuf *lbl, const saga_graph *g)
{
	int end = end_reached(g);
	put(b, "digraph saga {\n\tgraph [rankdir=LR, fontname=\"Helvetica\", labelloc=t, ");
	title(lbl, g);
	dot_label(b, lbl);
	put(b, "];\n\tnode [fontname=\"Helvetica\", fontsize=10, style=filled, "
	       "fillcolor=\"white\"];\n\tedge [fontname=\"Helvetica\", fontsize=9];\n");
	putf(b, "\tn_start [shape=circle, label=\"start\"%s];\n",
	     g->has_path ? ", fillcolor=\"" FORWARD_COLOUR "\", fontcolor=\"white\"" : "");
	for (size_t i = 0; i < g->nsteps; i++) {
		if (i == g->no_return)
			put(b, "\tsubgraph cluster_no_return {\n\t\tlabel=\"past the point of no "
			       "return: forward only\";\n\t\tstyle=dashed;\n");
		dot_step(b, lbl, g, i, i >= g->no_return ? "\t\t" : "\t");
	}
	if (g->no_return < g->nsteps)
		put(b, "\t}\n");
	putf(b, "\tn_completed [shape=doublecircle, label=\"completed\"%s];\n",
	     end == 1 ? ", fillcolor=\"" FORWARD_COLOUR "\", fontcolor=\"white\"" : "");
	if (graph_has_undo_edge(g, 0))
		putf(b, "\tn_compensated [shape=doublecircle, label=\"compensated\"%s];\n",
		     end == 2 ? ", fillcolor=\"" UNDO_COLOUR "\", fontcolor=\"white\"" : "");
	char from[32], to[32];
	for (size_t i = 0; i <= g->nsteps; i++) {
		forward_ends(from, to, g, i);
		dot_edge(b, g, from, to, false, graph_forward_taken(g, i));
	}
	for (size_t i = g->nsteps; i-- > 0;) {
		if (!graph_has_undo_edge(g, i))
			continue;
		undo_ends(from, to, i);
		dot_edge(b, g, from, to, true, graph_undo_taken(g, i));
	}
	put(b, "}\n");
}

/* ---- Mermaid ---- */

/* Inside a Mermaid "quoted label": the characters Mermaid would read as
 * markup become its entity codes (#quot; and the numeric #35;), '\n'
 * becomes <br/>. */
static const char *const mermaid_subst[128] = {
	['"'] = "#quot;", ['#'] = "#35;", ['<'] = "#lt;",   ['>'] = "#gt;",
	['&'] = "#amp;",  ['`'] = "#96;", ['\n'] = "<br/>",
};

/* `open` "label" `close`, from the raw text of `lbl`. */
static void mermaid_label(sbuf *b, sbuf *lbl, const char *open, const char *close)
{
	putf(b, "%s\"", open);
	take_label(b, lbl, mermaid_subst);
	putf(b, "\"%s\n", close);
}

static void render_mermaid(sbuf *b, sbuf *lbl, const saga_graph *g)
{
	static const char *const opens[] = { "[", "{", "[[" }, *const closes[] = { "]", "}", "]]" };
	int end = end_reached(g);
	put(b, "flowchart LR\n");
	title(lbl, g);
	put(b, "    n_title");
	mermaid_label(b, lbl, "[", "]");
	put(b, "    n_start((\"start\"))\n");
	for (size_t i = 0; i < g->nsteps; i++) {
		if (i == g->no_return)
			put(b, "    subgraph no_return [\"past the point of no return: forward "
			       "only\"]\n");
		putf(b, "%ss%zu", i >= g->no_return ? "        " : "    ", i);
		step_label(lbl, g, i);
		mermaid_label(b, lbl, opens[g->steps[i].kind], closes[g->steps[i].kind]);
	}
	if (g->no_return < g->nsteps)
		put(b, "    end\n");
	put(b, "    n_completed(((\"completed\")))\n");
	bool compensated = graph_has_undo_edge(g, 0);
	if (compensated)
		put(b, "    n_compensated(((\"compensated\")))\n");
	/* Edges, counted for linkStyle: forward ones first, then undo. */
	sbuf fwd_taken = { .a = b->a }, undo_taken = { .a = b->a };
	size_t edge = 0;
	char from[32], to[32];
	for (size_t i = 0; i <= g->nsteps; i++, edge++) {
		forward_ends(from, to, g, i);
		putf(b, "    %s --> %s\n", from, to);
		if (graph_forward_taken(g, i))
			putf(&fwd_taken, "%s%zu", fwd_taken.len ? "," : "", edge);
	}
	for (size_t i = g->nsteps; i-- > 0;) {
		if (!graph_has_undo_edge(g, i))
			continue;
		undo_ends(from, to, i);
		putf(b, "    %s -.->|undo| %s\n", from, to);
		if (graph_undo_taken(g, i))
			putf(&undo_taken, "%s%zu", undo_taken.len ? "," : "", edge);
		edge++;
	}
	put(b, "    classDef title fill:#ffffff,stroke:#ffffff\n    class n_title title\n");
	if (g->has_path) {
		for (int st = GS_NOT_RUN; st <= GS_STUCK; st++)
			putf(b, "    classDef %s fill:%s,stroke:%s\n", graph_status_name(st),
			     fills[st], strokes[st]);
		for (size_t i = 0; i < g->nsteps; i++)
			putf(b, "    class s%zu %s\n", i,
			     graph_status_name(graph_step_status(g, i)));
		put(b, "    classDef reached fill:" FORWARD_COLOUR ",color:#ffffff\n");
		put(b, "    class n_start reached\n");
		if (end)
			putf(b, "    class %s reached\n",
			     end == 1 ? "n_completed" : "n_compensated");
		if (fwd_taken.len)
			putf(b, "    linkStyle %s stroke:" FORWARD_COLOUR ",stroke-width:3px\n",
			     fwd_taken.p);
		if (undo_taken.len)
			putf(b, "    linkStyle %s stroke:" UNDO_COLOUR ",stroke-width:3px\n",
			     undo_taken.p);
	}
	b->oom |= fwd_taken.oom || undo_taken.oom;
	saga_free(b->a, fwd_taken.p);
	saga_free(b->a, undo_taken.p);
}

/* ---- JSON ---- */

static cJSON *retry_json(const saga_retry_policy *p)
{
	static const char *const backoffs[] = { "constant", "linear", "exponential" };
	static const char *const jitters[] = { "none", "full", "equal", "decorrelated" };
	cJSON *o = cJSON_CreateObject();
	if (!o || !cJSON_AddNumberToObject(o, "max_attempts", p->max_attempts) ||
	    !cJSON_AddNumberToObject(o, "max_duration_ms", (double)p->max_duration_ms) ||
	    !cJSON_AddStringToObject(o, "backoff",
	                             p->backoff <= SAGA_BACKOFF_EXPONENTIAL ? backoffs[p->backoff]
	                                                                    : "?") ||
	    !cJSON_AddNumberToObject(o, "base_ms", (double)p->base_ms) ||
	    !cJSON_AddNumberToObject(o, "cap_ms", (double)p->cap_ms) ||
	    !cJSON_AddNumberToObject(o, "multiplier", p->multiplier) ||
	    !cJSON_AddStringToObject(o, "jitter",
	                             p->jitter <= SAGA_JITTER_DECORRELATED ? jitters[p->jitter]
	                                                                   : "?")) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

/* Adds `text` (lines) as an array of strings; an empty one for NULL. */
static bool add_lines(cJSON *o, const char *key, const char *text, const saga_alloc *a)
{
	cJSON *arr = cJSON_AddArrayToObject(o, key);
	if (!arr)
		return false;
	while (text && *text) {
		const char *nl = strchr(text, '\n');
		size_t n = nl ? (size_t)(nl - text) : strlen(text);
		char *line = saga_malloc(a, n + 1);
		if (!line)
			return false;
		memcpy(line, text, n);
		line[n] = '\0';
		cJSON *s = cJSON_CreateString(line);
		saga_free(a, line);
		if (!s)
			return false;
		cJSON_AddItemToArray(arr, s);
		text += n + (nl ? 1 : 0);
	}
	return true;
}

/* Adds a retry policy under `key`; cJSON_AddItemToObject can fail (it
 * copies the key), and then the policy is not the object's to free. */
static bool add_retry(cJSON *o, const char *key, const saga_retry_policy *policy)
{
	cJSON *r = retry_json(policy);
	if (r && cJSON_AddItemToObject(o, key, r))
		return true;
	cJSON_Delete(r);
	return false;
}

static bool policies_json(cJSON *node, const saga_graph *g, const graph_step *s)
{
	if (!g->has_policies)
		return true;
	cJSON *p = cJSON_AddObjectToObject(node, "policies");
	return p && add_retry(p, "retry", &s->retry) &&
	       (s->kind != SAGA_STEP_COMPENSATABLE ||
	        add_retry(p, "compensation_retry", &s->comp_retry)) &&
	       cJSON_AddNumberToObject(p, "timeout_ms", (double)s->timeout_ms) &&
	       cJSON_AddNumberToObject(p, "compensation_timeout_ms", (double)s->comp_timeout_ms) &&
	       (s->breaker ? cJSON_AddStringToObject(p, "breaker", s->breaker) != NULL
	                   : cJSON_AddNullToObject(p, "breaker") != NULL);
}

static bool path_json(cJSON *node, const saga_graph *g, size_t i)
{
	const graph_step *s = &g->steps[i];
	if (!g->has_path)
		return true;
	cJSON *p = cJSON_AddObjectToObject(node, "path");
	return p &&
	       cJSON_AddStringToObject(p, "status", graph_status_name(graph_step_status(g, i))) &&
	       cJSON_AddNumberToObject(p, "attempts", s->attempts[0]) &&
	       cJSON_AddNumberToObject(p, "compensation_attempts", s->attempts[1]) &&
	       cJSON_AddNumberToObject(p, "breaker_refusals", s->refusals) &&
	       cJSON_AddBoolToObject(p, "rollback_began", s->rollback_began) &&
	       (s->error ? cJSON_AddStringToObject(p, "error", s->error) != NULL
	                 : cJSON_AddNullToObject(p, "error") != NULL) &&
	       add_lines(p, "operator", s->operator_notes, &g->alloc);
}

static bool node_json(cJSON *nodes, const char *id, const char *type)
{
	cJSON *n = cJSON_CreateObject();
	if (!n)
		return false;
	cJSON_AddItemToArray(nodes, n);
	return cJSON_AddStringToObject(n, "id", id) && cJSON_AddStringToObject(n, "type", type);
}

static bool edge_json(cJSON *edges, const saga_graph *g, const char *from, const char *to,
                      bool undo, bool taken)
{
	cJSON *e = cJSON_CreateObject();
	if (!e)
		return false;
	cJSON_AddItemToArray(edges, e);
	return cJSON_AddStringToObject(e, "from", from) && cJSON_AddStringToObject(e, "to", to) &&
	       cJSON_AddStringToObject(e, "type", undo ? "compensation" : "forward") &&
	       (!g->has_path || cJSON_AddBoolToObject(e, "taken", taken));
}

static bool steps_json(cJSON *nodes, const saga_graph *g)
{
	char id[32];
	if (!node_json(nodes, "n_start", "start"))
		return false;
	for (size_t i = 0; i < g->nsteps; i++) {
		saga_fmt(id, sizeof(id), "s%zu", i);
		if (!node_json(nodes, id, "step"))
			return false;
		cJSON *n = cJSON_GetArrayItem(nodes, cJSON_GetArraySize(nodes) - 1);
		if (!cJSON_AddNumberToObject(n, "step", (double)i) ||
		    !cJSON_AddStringToObject(n, "name", g->steps[i].name) ||
		    !cJSON_AddStringToObject(n, "kind", kind_names[g->steps[i].kind]) ||
		    !policies_json(n, g, &g->steps[i]) || !path_json(n, g, i))
			return false;
	}
	return node_json(nodes, "n_completed", "completed") &&
	       (!graph_has_undo_edge(g, 0) || node_json(nodes, "n_compensated", "compensated"));
}

static bool edges_json(cJSON *edges, const saga_graph *g)
{
	char from[32], to[32];
	for (size_t i = 0; i <= g->nsteps; i++) {
		forward_ends(from, to, g, i);
		if (!edge_json(edges, g, from, to, false, graph_forward_taken(g, i)))
			return false;
	}
	for (size_t i = g->nsteps; i-- > 0;) {
		if (!graph_has_undo_edge(g, i))
			continue;
		undo_ends(from, to, i);
		if (!edge_json(edges, g, from, to, true, graph_undo_taken(g, i)))
			return false;
	}
	return true;
}

static bool instance_json(cJSON *root, const saga_graph *g)
{
	if (!g->has_path)
		return cJSON_AddNullToObject(root, "instance") != NULL;
	cJSON *in = cJSON_AddObjectToObject(root, "instance");
	return in && cJSON_AddNumberToObject(in, "id", (double)g->instance) &&
	       cJSON_AddStringToObject(in, "state", saga_state_name(g->state)) &&
	       cJSON_AddNumberToObject(in, "events", (double)g->nevents) &&
	       (g->current >= 0 ? cJSON_AddNumberToObject(in, "current_step", g->current) != NULL
	                        : cJSON_AddNullToObject(in, "current_step") != NULL) &&
	       (g->rollback_detail
	                ? cJSON_AddStringToObject(in, "rollback", g->rollback_detail) != NULL
	                : cJSON_AddNullToObject(in, "rollback") != NULL) &&
	       add_lines(in, "operator", g->operator_notes, &g->alloc);
}

static void render_json(sbuf *b, const saga_graph *g)
{
	cJSON *root = cJSON_CreateObject(), *def, *nodes, *edges;
	char *text = NULL;
	bool ok = root && cJSON_AddStringToObject(root, "format", "libsaga-graph") &&
	          cJSON_AddNumberToObject(root, "format_version", SAGA_GRAPH_JSON_VERSION) &&
	          (def = cJSON_AddObjectToObject(root, "definition")) &&
	          cJSON_AddStringToObject(def, "name", g->name) &&
	          cJSON_AddNumberToObject(def, "version", g->version) &&
	          (!g->has_policies ||
	           (cJSON_AddNumberToObject(def, "deadline_ms", (double)g->deadline_ms) &&
	            cJSON_AddNumberToObject(def, "compensation_reserve_ms",
	                                    (double)g->comp_reserve_ms))) &&
	          (g->no_return < g->nsteps
	                   ? cJSON_AddNumberToObject(root, "point_of_no_return",
	                                             (double)g->no_return) != NULL
	                   : cJSON_AddNullToObject(root, "point_of_no_return") != NULL) &&
	          (nodes = cJSON_AddArrayToObject(root, "nodes")) && steps_json(nodes, g) &&
	          (edges = cJSON_AddArrayToObject(root, "edges")) && edges_json(edges, g) &&
	          instance_json(root, g) && (text = cJSON_Print(root));
	if (ok) {
		put(b, text);
		put(b, "\n");
	} else
		b->oom = true;
	cJSON_free(text);
	cJSON_Delete(root);
}

int graph_render(const saga_graph *g, saga_graph_format fmt, saga_write_fn write, void *user,
                 char *msg, size_t size)
{
	sbuf b = { .a = &g->alloc }, lbl = { .a = &g->alloc };
	switch (fmt) {
	case SAGA_GRAPH_DOT:
		render_dot(&b, &lbl, g);
		break;
	case SAGA_GRAPH_MERMAID:
		render_mermaid(&b, &lbl, g);
		break;
	case SAGA_GRAPH_JSON:
		render_json(&b, g);
		break;
	default:
		saga_fmt(msg, size, "graph: unknown format %d", (int)fmt);
		return SAGA_EINVAL;
	}
	int rc = SAGA_OK;
	if (b.oom || lbl.oom) {
		saga_fmt(msg, size, "graph: out of memory");
		rc = SAGA_ENOMEM;
	} else {
		int w = write(b.p, b.len, user);
		if (w) {
			saga_fmt(msg, size, "graph: the write function stopped (it returned %d)",
			         w);
			rc = SAGA_EIO;
		}
	}
	saga_free(&g->alloc, b.p);
	saga_free(&g->alloc, lbl.p);
	return rc;
}
