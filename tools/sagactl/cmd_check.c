/* sagactl check: the store's consistency, read through the admin API. Every
 * instance against its history (a CREATED event first, events in order,
 * the last state the history recorded is the instance's), its definition
 * (a stored snapshot, a step inside it) and its owner (an ended instance
 * belongs to nobody; a held one to a live owner, else a note: the next
 * engine to look reaps it). SPDX-License-Identifier: MIT */
#include "sagactl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct check {
	saga_admin *a;
	const cli *c;
	cJSON *defs;   /* "name@version" -> number of steps */
	cJSON *live;   /* "epoch" -> true */
	cJSON *issues; /* [{instance, problem, severity}] */
	long instances, events, problems, notes;
};

static void issue(struct check *k, int64_t id, bool problem, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static void issue(struct check *k, int64_t id, bool problem, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "instance", (double)id);
	cJSON_AddStringToObject(o, "severity", problem ? "problem" : "note");
	cJSON_AddStringToObject(o, "message", msg);
	cJSON_AddItemToArray(k->issues, o);
	if (problem)
		k->problems++;
	else
		k->notes++;
}

static int def_steps(const char *def, int version, const char *snapshot, void *user)
{
	struct check *k = user;
	char key[96];
	snprintf(key, sizeof(key), "%s@%d", def, version);
	cJSON *snap = cJSON_Parse(snapshot);
	int n = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(snap, "steps"));
	cJSON_AddNumberToObject(k->defs, key, snap ? n : -1);
	cJSON_Delete(snap);
	return 0;
}

static int live_owner(const saga_admin_owner *o, void *user)
{
	struct check *k = user;
	char key[24];
	snprintf(key, sizeof(key), "%lld", (long long)o->epoch);
	cJSON_AddBoolToObject(k->live, key, o->state == 0);
	return 0;
}

/* What the history of one instance says. */
struct trail {
	long n;
	int64_t last_seq;
	bool created_first, ordered;
	int state; /* the last state recorded: CREATED, then STATE events */
};

static int trail_event(const saga_event *ev, void *user)
{
	struct trail *t = user;
	if (t->n == 0)
		t->created_first = ev->type == SAGA_EVENT_CREATED;
	if (t->n > 0 && ev->seq <= t->last_seq)
		t->ordered = false;
	t->last_seq = ev->seq;
	if (ev->type == SAGA_EVENT_CREATED || ev->type == SAGA_EVENT_STATE)
		t->state = (int)ev->state;
	t->n++;
	return 0;
}

static int check_one(const saga_admin_instance *in, void *user)
{
	struct check *k = user;
	const saga_instance_info *i = &in->info;
	k->instances++;
	char key[96];
	snprintf(key, sizeof(key), "%s@%d", i->definition, i->version);
	const cJSON *nsteps = cJSON_GetObjectItemCaseSensitive(k->defs, key);
	if (!nsteps)
		issue(k, i->id, true, "its definition %s is not in the store", key);
	else if (nsteps->valueint < 0)
		issue(k, i->id, true, "the snapshot of its definition %s is damaged", key);
	else if (i->step < -1 || i->step > nsteps->valueint)
		issue(k, i->id, true, "step %d is outside %s (%d steps)", i->step, key,
		      nsteps->valueint);
	bool ended = i->state == SAGA_COMPLETED || i->state == SAGA_COMPENSATED ||
	             i->state == SAGA_STUCK;
	if (ended && in->owner != 0)
		issue(k, i->id, true, "it has ended (%s) but owner %lld holds it",
		      saga_state_name(i->state), (long long)in->owner);
	if (!ended && in->owner != 0) {
		char ep[24];
		snprintf(ep, sizeof(ep), "%lld", (long long)in->owner);
		if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(k->live, ep)))
			issue(k, i->id, false,
			      "held by owner %lld, which is not live: the next engine that "
			      "looks hands it back to the pool",
			      (long long)in->owner);
	}
	struct trail t = { 0, 0, false, true, -1 };
	int rc = saga_admin_history(k->a, i->id, trail_event, &t);
	if (rc)
		return admin_fail(k->a, rc, "history");
	k->events += t.n;
	if (t.n == 0)
		issue(k, i->id, true, "it has no history");
	else if (!t.created_first)
		issue(k, i->id, true, "its history does not begin with CREATED");
	if (!t.ordered)
		issue(k, i->id, true, "its history is out of order");
	if (t.n > 0 && t.state != (int)i->state)
		issue(k, i->id, true, "it is %s but its history last recorded %s",
		      saga_state_name(i->state),
		      t.state >= 0 ? saga_state_name((saga_state)t.state) : "no state");
	return EXIT_OK;
}

int cmd_check(saga_admin *a, const cli *c)
{
	opt opts[] = { { NULL, false, NULL } };
	int code = no_operands(c, opts);
	if (code)
		return code;
	struct check k = {
		a, c, cJSON_CreateObject(), cJSON_CreateObject(), cJSON_CreateArray(), 0, 0, 0, 0
	};
	int rc = saga_admin_definitions(a, def_steps, &k);
	if (rc == SAGA_OK)
		rc = saga_admin_owners(a, 1, live_owner, &k);
	if (rc) {
		code = admin_fail(a, rc, "check");
		goto out;
	}
	saga_admin_instance page[128];
	int64_t after = 0;
	for (;;) {
		size_t n = 0;
		if ((rc = saga_admin_list(a, page, &n, 128, NULL, after))) {
			code = admin_fail(a, rc, "check");
			goto out;
		}
		for (size_t i = 0; i < n && !code; i++)
			code = check_one(&page[i], &k);
		if (code)
			goto out;
		if (n < 128)
			break;
		after = page[n - 1].info.id;
	}
	if (c->output != OUT_TEXT) {
		cJSON *doc = json_doc("check");
		cJSON_AddNumberToObject(doc, "instances", (double)k.instances);
		cJSON_AddNumberToObject(doc, "events", (double)k.events);
		cJSON_AddNumberToObject(doc, "problems", (double)k.problems);
		cJSON_AddNumberToObject(doc, "notes", (double)k.notes);
		cJSON_AddItemToObject(doc, "issues", k.issues);
		k.issues = NULL;
		emit_json(c, doc, "issues");
	} else {
		const cJSON *o;
		cJSON_ArrayForEach(o, k.issues)
		{
			printf("instance %lld: %s: %s\n",
			       (long long)cJSON_GetObjectItemCaseSensitive(o, "instance")
			               ->valuedouble,
			       cJSON_GetObjectItemCaseSensitive(o, "severity")->valuestring,
			       cJSON_GetObjectItemCaseSensitive(o, "message")->valuestring);
		}
		printf("%ld instances, %ld events checked: %ld problems, %ld notes\n", k.instances,
		       k.events, k.problems, k.notes);
	}
	code = k.problems ? EXIT_FAIL : EXIT_OK;
out:
	cJSON_Delete(k.defs);
	cJSON_Delete(k.live);
	cJSON_Delete(k.issues);
	return code;
}
