/* sagactl's read commands: list, count, show, history, stuck, definitions,
 * owners, check. Each reads the store through the admin API, in short read
 * transactions, so engines on the store are never held up.
 * SPDX-License-Identifier: MIT */
#include "sagactl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- shared with the write commands ---- */

int resolve(saga_admin *a, const char *ref, saga_admin_instance *out)
{
	size_t n = strspn(ref, "0123456789");
	int64_t id = n > 0 && n < 19 && ref[n] == '\0' ? strtoll(ref, NULL, 10) : 0;
	int rc = id > 0 ? saga_admin_get(a, out, id, NULL) : saga_admin_get(a, out, 0, ref);
	return rc ? admin_fail(a, rc, ref) : EXIT_OK;
}

/* Sets one filter member from its option name (without "--"). */
static int set_filter(saga_admin_filter *f, const char *key, const char *val, char *defname,
                      size_t defsize)
{
	uint64_t t;
	if (strcmp(key, "state") == 0) {
		if (!parse_state(val, &f->state))
			return fail(EXIT_USAGE, "'%s' is not a state", val);
	} else if (strcmp(key, "definition") == 0) {
		const char *at = strchr(val, '@');
		size_t len = at ? (size_t)(at - val) : strlen(val);
		if (len == 0 || len >= defsize)
			return fail(EXIT_USAGE, "'%s' is not a definition name", val);
		memcpy(defname, val, len);
		defname[len] = '\0';
		f->definition = defname;
		if (at && (f->definition_version = atoi(at + 1)) < 1)
			return fail(EXIT_USAGE, "'%s': the version is a number from 1", val);
	} else if (strcmp(key, "key") == 0) {
		f->key_prefix = val;
	} else if (strcmp(key, "error") == 0) {
		f->error_text = val;
	} else if (strcmp(key, "owner") == 0) {
		char *end;
		f->owner = strtoll(val, &end, 10);
		if (*end || f->owner < 0)
			return fail(EXIT_USAGE, "owner '%s' is an epoch (0: nobody)", val);
	} else if (strcmp(key, "since") == 0 || strcmp(key, "until") == 0 ||
	           strcmp(key, "updated-since") == 0 || strcmp(key, "updated-until") == 0) {
		if (!parse_time(val, &t))
			return fail(EXIT_USAGE, "%s: '%s' is not a time", key, val);
		uint64_t *dst = strcmp(key, "since") == 0   ? &f->created_from_ms
		                : strcmp(key, "until") == 0 ? &f->created_to_ms
		                : key[8] == 's'             ? &f->updated_from_ms
		                                            : &f->updated_to_ms;
		*dst = t;
	} else {
		return fail(EXIT_USAGE,
		            "unknown filter '%s' (state, definition, key, since, until, "
		            "updated-since, updated-until, error, owner)",
		            key);
	}
	return EXIT_OK;
}

static const char *const filter_keys[] = { "state",         "definition", "key",
	                                   "since",         "until",      "updated-since",
	                                   "updated-until", "error",      "owner" };
#define NFILTER_KEYS (sizeof(filter_keys) / sizeof(filter_keys[0]))

int filter_from_opts(const opt *opts, saga_admin_filter *f, char *defname, size_t defsize)
{
	for (size_t i = 0; i < NFILTER_KEYS; i++) {
		char name[32];
		snprintf(name, sizeof(name), "--%s", filter_keys[i]);
		const char *v = opt_val(opts, name);
		int code = v ? set_filter(f, filter_keys[i], v, defname, defsize) : EXIT_OK;
		if (code)
			return code;
	}
	return EXIT_OK;
}

int parse_filter(char *spec, saga_admin_filter *f, char *defname, size_t defsize)
{
	char *save = NULL;
	for (char *kv = strtok_r(spec, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(kv, '=');
		if (!eq)
			return fail(EXIT_USAGE, "filter '%s' is not key=value", kv);
		*eq = '\0';
		int code = set_filter(f, kv, eq + 1, defname, defsize);
		if (code)
			return code;
	}
	return EXIT_OK;
}

const char *stuck_hint(const saga_admin_instance *in)
{
	if (in->info.phase == SAGA_PHASE_COMPENSATION)
		return in->compensated_any
		               ? "retry (run the compensation again) | skip (mark it undone by "
		                 "hand)"
		               : "retry (run the compensation again) | skip (mark it undone by "
		                 "hand) | resume (run forward again from the failed step)";
	return "retry (run the step again) | skip (mark it done by hand)";
}

/* The verbs that apply, in a word each (the table's column). */
static const char *verbs_short(const saga_admin_instance *in)
{
	return in->info.phase == SAGA_PHASE_COMPENSATION && !in->compensated_any
	               ? "retry, skip, resume"
	               : "retry, skip";
}

static const char *cause_of(const saga_admin_instance *in)
{
	if (in->info.reason == SAGA_REASON_CRASH_LOOP)
		return "crash loop (its process died in the attempt, again and again)";
	if (in->info.phase == SAGA_PHASE_COMPENSATION)
		return "compensation failed";
	return "step failed past the point of no return";
}

/* ---- list ---- */

#define LIST_OPTIONS                                                                        \
	{ "--state", true, NULL }, { "--definition", true, NULL }, { "--key", true, NULL }, \
	        { "--since", true, NULL }, { "--until", true, NULL },                       \
	        { "--updated-since", true, NULL }, { "--updated-until", true, NULL },       \
	        { "--error", true, NULL },                                                  \
	{                                                                                   \
		"--owner", true, NULL                                                       \
	}

/* Calls fn for every instance the filter selects, up to limit (0 = all),
 * after `after`; *last receives the last id seen. */
typedef int (*inst_fn)(const saga_admin_instance *in, void *user);
static int each_instance(saga_admin *a, const saga_admin_filter *f, int64_t after, long limit,
                         inst_fn fn, void *user, int64_t *last, long *seen)
{
	enum { PAGE = 128 };
	saga_admin_instance *page = malloc(PAGE * sizeof(*page));
	if (!page)
		return fail(EXIT_FAIL, "out of memory");
	*seen = 0;
	int code = EXIT_OK;
	for (;;) {
		size_t n = 0, cap = PAGE;
		if (limit > 0 && (size_t)(limit - *seen) < cap)
			cap = (size_t)(limit - *seen);
		if (cap == 0)
			break;
		int rc = saga_admin_list(a, page, &n, cap, f, after);
		if (rc) {
			code = admin_fail(a, rc, "list");
			break;
		}
		for (size_t i = 0; i < n && !code; i++)
			code = fn(&page[i], user);
		*seen += (long)n;
		if (n)
			after = page[n - 1].info.id;
		if (code || n < cap)
			break;
	}
	if (last)
		*last = after;
	free(page);
	return code;
}

struct listing {
	view v;
	bool stuck;
};

static int list_one(const saga_admin_instance *in, void *user)
{
	struct listing *l = user;
	const saga_instance_info *i = &in->info;
	if (l->v.arr) {
		cJSON *o = instance_json(in);
		if (l->stuck) {
			cJSON_AddStringToObject(o, "cause", cause_of(in));
			cJSON_AddStringToObject(o, "verbs", stuck_hint(in));
		}
		cJSON_AddItemToArray(l->v.arr, o);
		return EXIT_OK;
	}
	char id[24], upd[40], step[96], owner[24], def[80];
	fmt_time(upd, sizeof(upd), i->updated_ms);
	snprintf(step, sizeof(step), "%s/%s", in->step_name[0] ? in->step_name : "-",
	         i->phase == SAGA_PHASE_ACTION ? "action" : "compensation");
	snprintf(def, sizeof(def), "%s@%d", i->definition, i->version);
	if (l->stuck)
		table_add(l->v.t, fmt_int(id, i->id), i->business_key, def, cause_of(in), step,
		          i->error, verbs_short(in));
	else
		table_add(l->v.t, fmt_int(id, i->id), saga_state_name(i->state), def,
		          i->business_key, step, fmt_int(owner, in->owner), upd, i->error);
	return EXIT_OK;
}

static int run_listing(saga_admin *a, const cli *c, const saga_admin_filter *f, int64_t after,
                       long limit, bool stuck)
{
	static const char *const heads[] = { "ID",   "STATE", "DEFINITION", "KEY",
		                             "STEP", "OWNER", "UPDATED",    "ERROR" };
	static const char *const sheads[] = { "ID",   "KEY",   "DEFINITION", "CAUSE",
		                              "STEP", "ERROR", "VERBS" };
	struct listing l;
	l.stuck = stuck;
	view_begin(&l.v, c, stuck ? "stuck" : "instances", "instances", stuck ? 7 : 8,
	           stuck ? sheads : heads);
	int64_t last = 0;
	long seen = 0;
	int code = each_instance(a, f, after, limit, list_one, &l, &last, &seen);
	bool more = limit > 0 && seen == limit;
	if (l.v.doc && more)
		cJSON_AddNumberToObject(l.v.doc, "next_after", (double)last);
	else if (l.v.doc)
		cJSON_AddNullToObject(l.v.doc, "next_after");
	code = view_end(&l.v, code, stuck ? 5 : 7, stuck ? "no STUCK instance" : "no instance");
	if (code == EXIT_OK && c->output == OUT_TEXT && more)
		printf("(more: --after %lld)\n", (long long)last);
	return code;
}

int cmd_list(saga_admin *a, const cli *c)
{
	opt opts[] = { LIST_OPTIONS,
		       { "--limit", true, NULL },
		       { "--after", true, NULL },
		       { NULL, false, NULL } };
	int code = no_operands(c, opts);
	saga_admin_filter f = SAGA_ADMIN_FILTER_INIT;
	char def[SAGA_NAME_MAX + 1];
	if (code || (code = filter_from_opts(opts, &f, def, sizeof(def))))
		return code;
	long limit = 100;
	int64_t after = 0;
	const char *v;
	if ((v = opt_val(opts, "--limit")) && (limit = atol(v)) < 1)
		return fail(EXIT_USAGE, "--limit is a number from 1");
	if ((v = opt_val(opts, "--after")) && (after = atoll(v)) < 0)
		return fail(EXIT_USAGE, "--after is an instance id");
	return run_listing(a, c, &f, after, limit, false);
}

int cmd_stuck(saga_admin *a, const cli *c)
{
	opt opts[] = { { "--definition", true, NULL }, { NULL, false, NULL } };
	int code = no_operands(c, opts);
	saga_admin_filter f = SAGA_ADMIN_FILTER_INIT;
	char def[SAGA_NAME_MAX + 1];
	if (code || (code = filter_from_opts(opts, &f, def, sizeof(def))))
		return code;
	f.state = SAGA_STUCK;
	return run_listing(a, c, &f, 0, 0, true);
}

/* ---- count ---- */

static int count_row(const char *def, int version, saga_state state, int64_t n, void *user)
{
	view *v = user;
	if (v->arr) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "definition", def);
		cJSON_AddNumberToObject(o, "version", version);
		cJSON_AddStringToObject(o, "state", saga_state_name(state));
		cJSON_AddNumberToObject(o, "count", (double)n);
		cJSON_AddItemToArray(v->arr, o);
	} else {
		char ver[24], cnt[24];
		table_add(v->t, def, fmt_int(ver, version), saga_state_name(state),
		          fmt_int(cnt, n));
	}
	return 0;
}

int cmd_count(saga_admin *a, const cli *c)
{
	opt opts[] = { { "--group-by", true, NULL }, { NULL, false, NULL } };
	int code = no_operands(c, opts);
	if (code)
		return code;
	const char *g = opt_val(opts, "--group-by");
	if (g && strcmp(g, "state") != 0 && strcmp(g, "definition") != 0)
		return fail(EXIT_USAGE, "--group-by is state or definition, not '%s'", g);
	view v;
	if (g && strcmp(g, "definition") == 0) {
		static const char *const heads[] = { "DEFINITION", "VERSION", "STATE", "COUNT" };
		view_begin(&v, c, "counts", "counts", 4, heads);
		int rc = saga_admin_counts_by_definition(a, count_row, &v);
		return view_end(&v, rc ? admin_fail(a, rc, "count") : EXIT_OK, -1, NULL);
	}
	int64_t counts[SAGA_STATE_COUNT], total = 0;
	int rc = saga_admin_counts(a, counts);
	if (rc)
		return admin_fail(a, rc, "count");
	static const char *const heads[] = { "STATE", "COUNT" };
	view_begin(&v, c, "counts", "counts", 2, heads);
	char n[24];
	for (int i = 0; i < SAGA_STATE_COUNT; i++) {
		const char *name = saga_state_name((saga_state)i);
		total += counts[i];
		if (!v.arr) {
			table_add(v.t, name, fmt_int(n, counts[i]));
			continue;
		}
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "state", name);
		cJSON_AddNumberToObject(o, "count", (double)counts[i]);
		cJSON_AddItemToArray(v.arr, o);
	}
	if (!v.arr)
		table_add(v.t, "total", fmt_int(n, total));
	return view_end(&v, EXIT_OK, -1, NULL);
}

/* ---- show ---- */

int cmd_show(saga_admin *a, const cli *c)
{
	opt opts[] = { { "--context", false, NULL }, { NULL, false, NULL } };
	const char *ref;
	saga_admin_instance in;
	int code = instance_operand(c, opts, &ref);
	if (code || (code = resolve(a, ref, &in)))
		return code;
	cJSON *ctx = NULL;
	if (opt_val(opts, "--context")) {
		int rc = saga_admin_context(a, &ctx, in.info.id);
		if (rc)
			return admin_fail(a, rc, "context");
	}
	if (c->output != OUT_TEXT) {
		cJSON *doc = json_doc("instance");
		cJSON_AddItemToObject(doc, "instance", instance_json(&in));
		if (ctx)
			cJSON_AddItemToObject(doc, "context", ctx);
		emit_json(c, doc, NULL);
		return EXIT_OK;
	}
	const saga_instance_info *i = &in.info;
	char t1[40], t2[40], t3[40], t4[40];
	fmt_time(t1, sizeof(t1), i->created_ms);
	fmt_time(t2, sizeof(t2), i->updated_ms);
	fmt_time(t3, sizeof(t3), i->due_ms);
	fmt_time(t4, sizeof(t4), i->deadline_ms);
	printf("instance     %lld\n"
	       "uid          %s\n"
	       "definition   %s@%d\n"
	       "key          %s\n"
	       "state        %s%s%s\n"
	       "step         %d %s (%s), attempt %u%s%s\n"
	       "pivot done   %s\n"
	       "created      %s\n"
	       "updated      %s\n"
	       "due          %s\n"
	       "deadline     %s\n"
	       "owner        %lld%s, fence %lld, recoveries %u\n"
	       "error        %s\n",
	       (long long)i->id, i->uid, i->definition, i->version,
	       i->business_key[0] ? i->business_key : "-", saga_state_name(i->state),
	       i->reason ? " reason " : "", i->reason ? saga_reason_name(i->reason) : "", i->step,
	       in.step_name[0] ? in.step_name : "-",
	       i->phase == SAGA_PHASE_ACTION ? "action" : "compensation", (unsigned)i->attempt,
	       in.inflight ? ", in flight" : "", in.pending ? ", awaiting its completion" : "",
	       i->pivot_done ? "yes" : "no", t1, t2, t3, t4, (long long)in.owner,
	       in.owner ? "" : " (nobody)", (long long)in.fence, (unsigned)in.recoveries,
	       i->error[0] ? i->error : "-");
	if (i->state == SAGA_STUCK)
		printf("verbs        %s\n", stuck_hint(&in));
	if (ctx) {
		char *s = cJSON_Print(ctx);
		printf("context      %s\n", s ? s : "?");
		cJSON_free(s);
		cJSON_Delete(ctx);
	}
	return EXIT_OK;
}

/* ---- history ---- */

struct hist {
	const cli *c;
	int64_t after; /* print events with a higher seq */
	cJSON *arr;    /* json: collected */
	bool stream;   /* print each as it comes */
};

static int hist_event(const saga_event *ev, void *user)
{
	struct hist *h = user;
	if (ev->seq <= h->after)
		return 0;
	h->after = ev->seq;
	if (h->arr) {
		cJSON_AddItemToArray(h->arr, event_json(ev));
	} else if (h->c->output != OUT_TEXT) {
		cJSON *o = event_json(ev);
		cJSON_AddNumberToObject(o, "format", SAGACTL_FORMAT);
		cJSON_AddStringToObject(o, "kind", "event");
		char *s = cJSON_PrintUnformatted(o);
		if (s)
			printf("%s\n", s);
		cJSON_free(s);
		cJSON_Delete(o);
	} else {
		print_event(ev);
	}
	return 0;
}

int cmd_history(saga_admin *a, const cli *c)
{
	opt opts[] = { { "--follow", false, NULL },
		       { "--interval", true, NULL },
		       { NULL, false, NULL } };
	const char *ref;
	int code = instance_operand(c, opts, &ref);
	if (code)
		return code;
	uint64_t interval = 200;
	const char *v = opt_val(opts, "--interval");
	if (v && (!parse_duration(v, &interval) || interval == 0))
		return fail(EXIT_USAGE, "--interval is a duration (e.g. 500ms)");
	bool follow = opt_val(opts, "--follow") != NULL;
	saga_admin_instance in;
	if ((code = resolve(a, ref, &in)))
		return code;
	struct hist h = { c, 0, NULL, follow || c->output != OUT_JSON };
	cJSON *doc = NULL;
	if (c->output == OUT_JSON && !follow) {
		doc = json_doc("history");
		cJSON_AddNumberToObject(doc, "instance", (double)in.info.id);
		h.arr = cJSON_AddArrayToObject(doc, "events");
	}
	for (;;) {
		int rc = saga_admin_history(a, in.info.id, hist_event, &h);
		if (rc) {
			cJSON_Delete(doc);
			return admin_fail(a, rc, "history");
		}
		fflush(stdout);
		if (!follow)
			break;
		if ((rc = saga_admin_get(a, &in, in.info.id, NULL)))
			return admin_fail(a, rc, "history");
		if (in.info.state == SAGA_COMPLETED || in.info.state == SAGA_COMPENSATED) {
			/* the events of the last commit */
			if ((rc = saga_admin_history(a, in.info.id, hist_event, &h)))
				return admin_fail(a, rc, "history");
			break;
		}
		struct timespec ts = { (time_t)(interval / 1000),
			               (long)(interval % 1000) * 1000000L };
		nanosleep(&ts, NULL);
	}
	if (doc)
		emit_json(c, doc, "events");
	return EXIT_OK;
}

/* ---- definitions and owners ---- */

struct defs {
	view v;
	cJSON *counts; /* "name@version" -> {state: n} */
	char served[4096];
};

static int def_count(const char *def, int version, saga_state state, int64_t n, void *user)
{
	struct defs *d = user;
	char key[96];
	snprintf(key, sizeof(key), "%s@%d", def, version);
	cJSON *o = cJSON_GetObjectItemCaseSensitive(d->counts, key);
	if (!o)
		o = cJSON_AddObjectToObject(d->counts, key);
	cJSON_AddNumberToObject(o, saga_state_name(state), (double)n);
	return 0;
}

static int owner_served(const saga_admin_owner *o, void *user)
{
	struct defs *d = user;
	size_t len = strlen(d->served);
	snprintf(d->served + len, sizeof(d->served) - len, " %s ", o->served);
	return 0;
}

static int def_row(const char *def, int version, const char *snapshot, void *user)
{
	struct defs *d = user;
	char key[96], word[100];
	snprintf(key, sizeof(key), "%s@%d", def, version);
	snprintf(word, sizeof(word), " %s ", key);
	bool served = strstr(d->served, word) != NULL;
	const cJSON *cnt = cJSON_GetObjectItemCaseSensitive(d->counts, key);
	int64_t total = 0, unfinished = 0;
	const cJSON *e;
	cJSON_ArrayForEach(e, cnt)
	{
		int st;
		total += (int64_t)e->valuedouble;
		if (parse_state(e->string, &st) && (st < SAGA_COMPLETED))
			unfinished += (int64_t)e->valuedouble;
	}
	cJSON *snap = cJSON_Parse(snapshot);
	char steps[1024] = "";
	const cJSON *s;
	cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(snap, "steps"))
	{
		const cJSON *n = cJSON_GetObjectItemCaseSensitive(s, "name");
		const cJSON *k = cJSON_GetObjectItemCaseSensitive(s, "kind");
		size_t len = strlen(steps);
		snprintf(steps + len, sizeof(steps) - len, "%s%s:%s", len ? " " : "",
		         cJSON_IsString(n) ? n->valuestring : "?",
		         cJSON_IsString(k) ? k->valuestring : "?");
	}
	if (d->v.arr) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "definition", def);
		cJSON_AddNumberToObject(o, "version", version);
		cJSON_AddItemToObject(o, "snapshot", snap ? snap : cJSON_CreateNull());
		snap = NULL;
		cJSON_AddItemToObject(o, "instances",
		                      cnt ? cJSON_Duplicate(cnt, 1) : cJSON_CreateObject());
		cJSON_AddBoolToObject(o, "served", served);
		cJSON_AddItemToArray(d->v.arr, o);
	} else {
		char v[24], tot[64];
		snprintf(tot, sizeof(tot), "%lld (%lld unfinished)", (long long)total,
		         (long long)unfinished);
		table_add(d->v.t, def, fmt_int(v, version), steps, tot,
		          served       ? "yes"
		          : unfinished ? "NO (unfinished instances wait)"
		                       : "no");
	}
	cJSON_Delete(snap);
	return 0;
}

int cmd_definitions(saga_admin *a, const cli *c)
{
	opt opts[] = { { NULL, false, NULL } };
	int code = no_operands(c, opts);
	if (code)
		return code;
	static const char *const heads[] = { "DEFINITION", "VERSION", "STEPS", "INSTANCES",
		                             "SERVED" };
	struct defs d;
	d.counts = cJSON_CreateObject();
	d.served[0] = '\0';
	view_begin(&d.v, c, "definitions", "definitions", 5, heads);
	int rc = saga_admin_counts_by_definition(a, def_count, &d);
	if (rc == SAGA_OK)
		rc = saga_admin_owners(a, 0, owner_served, &d);
	if (rc == SAGA_OK)
		rc = saga_admin_definitions(a, def_row, &d);
	cJSON_Delete(d.counts);
	return view_end(&d.v, rc ? admin_fail(a, rc, "definitions") : EXIT_OK, 2, NULL);
}

static const char *owner_state(int s)
{
	return s == 0 ? "live" : s == 1 ? "dead" : "retired";
}

static int owner_row(const saga_admin_owner *o, void *user)
{
	view *w = user;
	if (w->arr) {
		cJSON *j = cJSON_CreateObject();
		cJSON_AddNumberToObject(j, "epoch", (double)o->epoch);
		cJSON_AddStringToObject(j, "state", owner_state(o->state));
		cJSON_AddStringToObject(j, "host", o->host);
		cJSON_AddNumberToObject(j, "pid", (double)o->pid);
		cJSON_AddNumberToObject(j, "age_ms", (double)o->age_ms);
		cJSON_AddNumberToObject(j, "lease_left_ms", (double)o->lease_left_ms);
		cJSON_AddStringToObject(j, "serves", o->served);
		cJSON_AddNumberToObject(j, "instances", (double)o->instances);
		cJSON_AddItemToArray(w->arr, j);
		return 0;
	}
	char ep[24], pid[24], age[32], lease[32], n[24];
	snprintf(age, sizeof(age), "%.1fs", (double)o->age_ms / 1000.0);
	snprintf(lease, sizeof(lease), "%.1fs", (double)o->lease_left_ms / 1000.0);
	table_add(w->t, fmt_int(ep, o->epoch), owner_state(o->state), o->host, fmt_int(pid, o->pid),
	          age, lease, fmt_int(n, o->instances), o->served);
	return 0;
}

int cmd_owners(saga_admin *a, const cli *c)
{
	opt opts[] = { { "--all", false, NULL }, { NULL, false, NULL } };
	int code = no_operands(c, opts);
	if (code)
		return code;
	static const char *const heads[] = { "EPOCH", "STATE", "HOST",      "PID",
		                             "AGE",   "LEASE", "INSTANCES", "SERVES" };
	view w;
	view_begin(&w, c, "owners", "owners", 8, heads);
	int rc = saga_admin_owners(a, opt_val(opts, "--all") != NULL, owner_row, &w);
	return view_end(&w, rc ? admin_fail(a, rc, "owners") : EXIT_OK, -1, "no live owner");
}
