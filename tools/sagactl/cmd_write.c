/* sagactl's write commands: the verbs on one instance (retry, skip,
 * resume, cancel), batch, and purge. Every one needs a reason; the actor
 * defaults to the user's name. A verb on an instance no process owns is
 * applied at once; on one another process owns it is queued for that owner
 * (--wait waits for it to be applied). SPDX-License-Identifier: MIT */
#include "sagactl.h"

#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static bool verb_of(const char *name, saga_admin_verb *v)
{
	static const char *const names[] = { "retry", "skip", "resume", "cancel" };
	for (int i = 0; i < 4; i++)
		if (strcmp(name, names[i]) == 0) {
			*v = (saga_admin_verb)i;
			return true;
		}
	return false;
}

static const char *default_actor(void)
{
	const char *u = getenv("USER");
	if (u && *u)
		return u;
	struct passwd *pw = getpwuid(getuid());
	return pw && pw->pw_name ? pw->pw_name : "unknown";
}

/* The actor, the reason and the wait, common to every write. */
struct who {
	const char *actor, *reason;
	uint64_t wait_ms;
	bool wait;
};

static int get_who(const cli *c, const opt *opts, struct who *w)
{
	w->reason = opt_val(opts, "--reason");
	w->actor = opt_val(opts, "--actor");
	if (!w->reason || !*w->reason)
		return fail(EXIT_USAGE, "%s: --reason is required (it is recorded with the actor)",
		            c->cmd);
	if (!w->actor)
		w->actor = default_actor();
	const char *v = opt_val(opts, "--wait");
	w->wait = v != NULL;
	w->wait_ms = 0;
	if (v && !parse_duration(v, &w->wait_ms))
		return fail(EXIT_USAGE, "--wait is a duration (e.g. 10s)");
	return EXIT_OK;
}

/* One request, and its outcome: "applied", "queued", "refused" or
 * "failed"; *code the exit code. */
struct done {
	const char *status;
	char request[SAGA_ADMIN_REQUEST_LEN + 1];
	char message[512];
	int code;
};

static void request_one(saga_admin *a, int64_t id, saga_admin_verb verb, const struct who *w,
                        struct done *d)
{
	int queued = 0;
	int rc = saga_admin_request(a, d->request, &queued, id, verb, w->actor, w->reason);
	d->message[0] = '\0';
	if (rc) {
		d->status = rc == SAGA_ESTATE ? "refused" : "failed";
		d->code = exit_of(rc);
		snprintf(d->message, sizeof(d->message), "%s", saga_admin_errmsg(a));
		return;
	}
	d->status = queued ? "queued" : "applied";
	d->code = EXIT_OK;
	if (!queued || !w->wait)
		return;
	rc = saga_admin_wait(a, id, d->request, w->wait_ms);
	d->status = rc == SAGA_OK       ? "applied"
	            : rc == SAGA_EBUSY  ? "queued"
	            : rc == SAGA_ESTATE ? "refused"
	                                : "failed";
	d->code = exit_of(rc);
	if (rc)
		snprintf(d->message, sizeof(d->message), "%s", saga_admin_errmsg(a));
}

static cJSON *done_json(int64_t id, const char *verb, const struct who *w, const struct done *d)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "instance", (double)id);
	cJSON_AddStringToObject(o, "verb", verb);
	cJSON_AddStringToObject(o, "status", d->status);
	if (d->request[0])
		cJSON_AddStringToObject(o, "request", d->request);
	else
		cJSON_AddNullToObject(o, "request");
	cJSON_AddStringToObject(o, "actor", w->actor);
	cJSON_AddStringToObject(o, "reason", w->reason);
	if (d->message[0])
		cJSON_AddStringToObject(o, "message", d->message);
	return o;
}

#define WHO_OPTIONS                                            \
	{ "--reason", true, NULL }, { "--actor", true, NULL }, \
	{                                                      \
		"--wait", true, NULL                           \
	}

int cmd_verb(saga_admin *a, const cli *c)
{
	opt opts[] = { WHO_OPTIONS, { NULL, false, NULL } };
	const char *ref;
	struct who w;
	saga_admin_verb verb = SAGA_ADMIN_RETRY;
	verb_of(c->cmd, &verb);
	saga_admin_instance in;
	int code = instance_operand(c, opts, &ref);
	if (code || (code = get_who(c, opts, &w)) || (code = resolve(a, ref, &in)))
		return code;
	struct done d;
	request_one(a, in.info.id, verb, &w, &d);
	if (c->output != OUT_TEXT) {
		cJSON *doc = json_doc("request");
		cJSON_AddItemToObject(doc, "result", done_json(in.info.id, c->cmd, &w, &d));
		emit_json(c, doc, NULL);
		if (d.code)
			fail(d.code, "%s %lld: %s", c->cmd, (long long)in.info.id, d.message);
		return d.code;
	}
	if (d.code && strcmp(d.status, "queued") != 0)
		return fail(d.code, "%s %lld: %s", c->cmd, (long long)in.info.id, d.message);
	if (strcmp(d.status, "applied") == 0)
		printf("%s %lld: applied (request %s, by %s: %s)\n", c->cmd, (long long)in.info.id,
		       d.request, w.actor, w.reason);
	else
		printf("%s %lld: queued for owner %lld, which applies it in its next round "
		       "(request %s)\n",
		       c->cmd, (long long)in.info.id, (long long)in.owner, d.request);
	if (d.code)
		return fail(d.code, "%s", d.message);
	return EXIT_OK;
}

int cmd_purge(saga_admin *a, const cli *c)
{
	opt opts[] = { { "--older-than", true, NULL },
		       { "--state", true, NULL },
		       { "--reason", true, NULL },
		       { "--actor", true, NULL },
		       { NULL, false, NULL } };
	const char *ops[1];
	int nops;
	struct who w;
	int code = get_opts(c, opts, ops, 0, &nops);
	if (code || (code = get_who(c, opts, &w)))
		return code;
	const char *v = opt_val(opts, "--older-than");
	uint64_t older;
	if (!v || !parse_duration(v, &older))
		return fail(EXIT_USAGE, "purge: --older-than D is required (e.g. 30d)");
	int state = -1;
	if ((v = opt_val(opts, "--state")) &&
	    (!parse_state(v, &state) || (state != SAGA_COMPLETED && state != SAGA_COMPENSATED)))
		return fail(EXIT_USAGE, "purge: --state is completed or compensated");
	int64_t purged = 0;
	int rc = saga_admin_purge(a, &purged, state, older);
	if (rc)
		return admin_fail(a, rc, "purge");
	if (c->output != OUT_TEXT) {
		cJSON *doc = json_doc("purge");
		cJSON_AddNumberToObject(doc, "purged", (double)purged);
		cJSON_AddStringToObject(doc, "state",
		                        state < 0 ? "any" : saga_state_name((saga_state)state));
		cJSON_AddNumberToObject(doc, "older_than_ms", (double)older);
		cJSON_AddStringToObject(doc, "actor", w.actor);
		cJSON_AddStringToObject(doc, "reason", w.reason);
		emit_json(c, doc, NULL);
	} else {
		printf("purged %lld instances (%s, ended more than %s ago), by %s: %s\n",
		       (long long)purged,
		       state < 0 ? "COMPLETED and COMPENSATED" : saga_state_name((saga_state)state),
		       opt_val(opts, "--older-than"), w.actor, w.reason);
	}
	return EXIT_OK;
}

/* The ids a batch acts on, read whole before it acts. */
struct ids {
	int64_t *v;
	char (*keys)[SAGA_KEY_MAX + 1];
	int *states;
	size_t n, cap;
};

static int add_match(struct ids *l, const saga_admin_instance *in)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		int64_t *v = realloc(l->v, cap * sizeof(*v));
		if (v)
			l->v = v;
		char(*k)[SAGA_KEY_MAX + 1] = realloc(l->keys, cap * sizeof(*k));
		if (k)
			l->keys = k;
		int *s = realloc(l->states, cap * sizeof(*s));
		if (s)
			l->states = s;
		if (!v || !k || !s)
			return fail(EXIT_FAIL, "out of memory");
		l->cap = cap;
	}
	l->v[l->n] = in->info.id;
	snprintf(l->keys[l->n], sizeof(l->keys[0]), "%s", in->info.business_key);
	l->states[l->n] = (int)in->info.state;
	l->n++;
	return EXIT_OK;
}

static void nap(uint64_t ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

int cmd_batch(saga_admin *a, const cli *c)
{
	opt opts[] = { WHO_OPTIONS,
		       { "--filter", true, NULL },
		       { "--dry-run", false, NULL },
		       { "--yes", false, NULL },
		       { "--rps", true, NULL },
		       { NULL, false, NULL } };
	const char *ops[1];
	int nops;
	struct who w;
	int code = get_opts(c, opts, ops, 1, &nops);
	if (code || (code = get_who(c, opts, &w)))
		return code;
	saga_admin_verb verb;
	if (nops != 1 || !verb_of(ops[0], &verb))
		return fail(EXIT_USAGE, "batch: the verb is retry, skip, resume or cancel");
	const char *spec = opt_val(opts, "--filter");
	if (!spec)
		return fail(EXIT_USAGE, "batch: --filter is required (e.g. state=STUCK)");
	bool dry = opt_val(opts, "--dry-run") != NULL, yes = opt_val(opts, "--yes") != NULL;
	if (dry == yes)
		return fail(EXIT_USAGE, "batch: --dry-run to list what it would act on, or --yes "
		                        "to act");
	double rps = 0;
	const char *v = opt_val(opts, "--rps");
	if (v && (rps = atof(v)) <= 0)
		return fail(EXIT_USAGE, "--rps is a number above 0");
	saga_admin_filter f = SAGA_ADMIN_FILTER_INIT;
	char def[SAGA_NAME_MAX + 1];
	struct ids l = { NULL, NULL, NULL, 0, 0 };
	char *cut = strdup(spec); /* the filter points into it */
	if (!cut)
		return fail(EXIT_FAIL, "out of memory");
	if ((code = parse_filter(cut, &f, def, sizeof(def))))
		goto out;
	saga_admin_instance page[128];
	int64_t after = 0;
	for (;;) {
		size_t n = 0;
		int rc = saga_admin_list(a, page, &n, 128, &f, after);
		if (rc) {
			code = admin_fail(a, rc, "batch");
			goto out;
		}
		for (size_t i = 0; i < n && !code; i++)
			code = add_match(&l, &page[i]);
		if (code || n < 128)
			break;
		after = page[n - 1].info.id;
	}
	if (code)
		goto out;
	cJSON *doc = c->output != OUT_TEXT ? json_doc("batch") : NULL;
	cJSON *arr = NULL;
	if (doc) {
		cJSON_AddStringToObject(doc, "verb", ops[0]);
		cJSON_AddNumberToObject(doc, "matched", (double)l.n);
		cJSON_AddBoolToObject(doc, "dry_run", dry);
		arr = cJSON_AddArrayToObject(doc, "results");
	} else {
		printf("%s: %zu instances match %s\n", ops[0], l.n, spec);
	}
	size_t ok = 0, failed = 0;
	for (size_t i = 0; i < l.n; i++) {
		if (dry) {
			if (arr) {
				cJSON *o = cJSON_CreateObject();
				cJSON_AddNumberToObject(o, "instance", (double)l.v[i]);
				cJSON_AddStringToObject(o, "state",
				                        saga_state_name((saga_state)l.states[i]));
				cJSON_AddStringToObject(o, "status", "would act");
				cJSON_AddItemToArray(arr, o);
			} else {
				printf("  would %s %lld (%s%s%s)\n", ops[0], (long long)l.v[i],
				       saga_state_name((saga_state)l.states[i]),
				       l.keys[i][0] ? ", " : "", l.keys[i]);
			}
			continue;
		}
		struct done d;
		request_one(a, l.v[i], verb, &w, &d);
		if (d.code && strcmp(d.status, "queued") != 0)
			failed++;
		else
			ok++;
		if (arr)
			cJSON_AddItemToArray(arr, done_json(l.v[i], ops[0], &w, &d));
		else
			printf("  %s %lld: %s%s%s\n", ops[0], (long long)l.v[i], d.status,
			       d.message[0] ? ": " : "", d.message);
		if (rps > 0 && i + 1 < l.n)
			nap((uint64_t)(1000.0 / rps));
	}
	if (doc) {
		cJSON_AddNumberToObject(doc, "done", (double)ok);
		cJSON_AddNumberToObject(doc, "failed", (double)failed);
		emit_json(c, doc, "results");
	} else if (!dry) {
		printf("%zu done, %zu failed (by %s: %s)\n", ok, failed, w.actor, w.reason);
	}
	code = failed ? EXIT_FAIL : EXIT_OK;
out:
	free(cut);
	free(l.v);
	free(l.keys);
	free(l.states);
	return code;
}
