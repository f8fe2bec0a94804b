/* sagactl graph: a drawing of a stored definition, or of the path one
 * instance took through it (saga_graph_write, from the stored snapshot and
 * the instance's history: no application code). SPDX-License-Identifier: MIT */
#include "sagactl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int to_file(const char *data, size_t len, void *user)
{
	return fwrite(data, 1, len, user) == len ? 0 : 1;
}

/* The snapshot of (name, version), or of its highest version when version
 * is 0. */
struct find_def {
	const char *name;
	int version;
	int found;
	char *snapshot;
};

static int pick_def(const char *def, int version, const char *snapshot, void *user)
{
	struct find_def *f = user;
	if (strcmp(def, f->name) != 0 || (f->version && version != f->version) ||
	    version < f->found)
		return 0;
	char *copy = strdup(snapshot);
	if (!copy)
		return 1;
	free(f->snapshot);
	f->snapshot = copy;
	f->found = version;
	return 0;
}

/* One instance's events, copied (the history's strings are borrowed). */
struct events {
	saga_event *v;
	size_t n, cap;
	bool oom;
};

static int keep_event(const saga_event *ev, void *user)
{
	struct events *l = user;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		saga_event *v = realloc(l->v, cap * sizeof(*v));
		if (!v) {
			l->oom = true;
			return 1;
		}
		l->v = v;
		l->cap = cap;
	}
	saga_event *e = &l->v[l->n];
	*e = *ev;
	e->detail = strdup(ev->detail);
	e->step_name = ev->step_name ? strdup(ev->step_name) : NULL;
	if (!e->detail || (ev->step_name && !e->step_name)) {
		free((char *)e->detail);
		free((char *)e->step_name);
		l->oom = true;
		return 1;
	}
	l->n++;
	return 0;
}

static void free_events(struct events *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free((char *)l->v[i].detail);
		free((char *)l->v[i].step_name);
	}
	free(l->v);
}

int cmd_graph(saga_admin *a, const cli *c)
{
	opt opts[] = { { "--instance", true, NULL },
		       { "--format", true, NULL },
		       { NULL, false, NULL } };
	const char *ops[1];
	int nops;
	int code = get_opts(c, opts, ops, 1, &nops);
	if (code)
		return code;
	const char *ref = opt_val(opts, "--instance");
	if ((nops == 1) == (ref != NULL))
		return fail(EXIT_USAGE, "graph: a definition (NAME[@VERSION]) or --instance ID");
	saga_graph_format fmt = SAGA_GRAPH_DOT;
	const char *f = opt_val(opts, "--format");
	if (f && saga_graph_format_parse(&fmt, f) != SAGA_OK)
		return fail(EXIT_USAGE, "graph: --format is dot, mermaid or json, not '%s'", f);
	char name[SAGA_NAME_MAX + 1];
	struct find_def d = { name, 0, 0, NULL };
	struct events ev = { NULL, 0, 0, false };
	if (ref) {
		saga_admin_instance in;
		if ((code = resolve(a, ref, &in)))
			return code;
		snprintf(name, sizeof(name), "%s", in.info.definition);
		d.version = in.info.version;
		int rc = saga_admin_history(a, in.info.id, keep_event, &ev);
		if (rc || ev.oom) {
			free_events(&ev);
			return rc ? admin_fail(a, rc, "graph") : fail(EXIT_FAIL, "out of memory");
		}
	} else {
		const char *at = strchr(ops[0], '@');
		size_t len = at ? (size_t)(at - ops[0]) : strlen(ops[0]);
		if (len == 0 || len > SAGA_NAME_MAX || (at && (d.version = atoi(at + 1)) < 1))
			return fail(EXIT_USAGE, "graph: '%s' is not NAME or NAME@VERSION", ops[0]);
		memcpy(name, ops[0], len);
		name[len] = '\0';
	}
	int rc = saga_admin_definitions(a, pick_def, &d);
	if (rc)
		code = admin_fail(a, rc, "graph");
	else if (!d.snapshot && d.found == 0)
		code = d.version
		               ? fail(EXIT_NOTFOUND, "graph: no definition %s@%d in the store",
		                      name, d.version)
		               : fail(EXIT_NOTFOUND, "graph: no definition %s in the store", name);
	else if (!d.snapshot)
		code = fail(EXIT_FAIL, "out of memory");
	if (code == EXIT_OK) {
		char err[256] = "";
		rc = saga_graph_write(d.snapshot, ev.v, ev.n, fmt, err, sizeof(err), to_file,
		                      stdout);
		if (rc)
			code = fail(exit_of(rc) == EXIT_USAGE ? EXIT_FAIL : exit_of(rc),
			            "graph: %s", err);
	}
	free(d.snapshot);
	free_events(&ev);
	return code;
}
