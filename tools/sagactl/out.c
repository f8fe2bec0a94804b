/* sagactl's output and the small parsers: error messages and exit codes,
 * times and durations, aligned text tables, JSON documents.
 * SPDX-License-Identifier: MIT */
#define _GNU_SOURCE /* timegm */
#include "sagactl.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

int fail(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("sagactl: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	return code;
}

int exit_of(int rc)
{
	switch (rc) {
	case SAGA_OK:
		return EXIT_OK;
	case SAGA_EINVAL:
		return EXIT_USAGE;
	case SAGA_ENOTFOUND:
		return EXIT_NOTFOUND;
	case SAGA_ESTATE:
		return EXIT_STATE;
	case SAGA_EBUSY:
		return EXIT_BUSY;
	case SAGA_ECORRUPT:
	case SAGA_EVERSION:
		return EXIT_STORE;
	default:
		return EXIT_FAIL;
	}
}

int admin_fail(saga_admin *a, int rc, const char *what)
{
	return fail(exit_of(rc), "%s: %s", what, saga_admin_errmsg(a));
}

static uint64_t now_ms(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

void fmt_time(char *buf, size_t size, uint64_t ms)
{
	if (ms == 0) {
		snprintf(buf, size, "-");
		return;
	}
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	char s[32];
	strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, size, "%s.%03uZ", s, (unsigned)(ms % 1000));
}

bool parse_duration(const char *s, uint64_t *ms)
{
	char *end;
	if (!isdigit((unsigned char)*s))
		return false;
	unsigned long long v = strtoull(s, &end, 10);
	static const struct {
		const char *unit;
		uint64_t ms;
	} units[] = { { "ms", 1 },    { "s", 1000 },    { "", 1000 },
		      { "m", 60000 }, { "h", 3600000 }, { "d", 86400000 } };
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (strcmp(end, units[i].unit) == 0) {
			if (v > UINT64_MAX / units[i].ms)
				return false;
			*ms = v * units[i].ms;
			return true;
		}
	return false;
}

bool parse_time(const char *s, uint64_t *ms)
{
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!end)
		end = strptime(s, "%Y-%m-%d", &tm);
	if (end && (*end == '\0' || strcmp(end, "Z") == 0)) {
		time_t t = timegm(&tm);
		if (t < 0)
			return false;
		*ms = (uint64_t)t * 1000u;
		return true;
	}
	size_t n = strspn(s, "0123456789");
	if (n > 0 && s[n] == '\0' && n >= 10) {
		*ms = strtoull(s, NULL, 10);
		return true;
	}
	uint64_t ago;
	if (!parse_duration(s, &ago) || n == strlen(s))
		return false;
	uint64_t now = now_ms();
	*ms = ago < now ? now - ago : 1;
	return true;
}

bool parse_state(const char *s, int *state)
{
	for (int i = 0; i < SAGA_STATE_COUNT; i++)
		if (strcasecmp(s, saga_state_name((saga_state)i)) == 0) {
			*state = i;
			return true;
		}
	return false;
}

/* ---- tables ---- */

struct table {
	int ncols;
	const char *const *heads;
	char **cells; /* rows * ncols, owned */
	size_t rows, cap;
};

table *table_new(int ncols, const char *const *heads)
{
	table *t = calloc(1, sizeof(*t));
	if (t) {
		t->ncols = ncols;
		t->heads = heads;
	}
	return t;
}

void table_add(table *t, ...)
{
	if (!t)
		return;
	if (t->rows == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 16;
		char **cells = realloc(t->cells, cap * (size_t)t->ncols * sizeof(char *));
		if (!cells)
			return;
		t->cells = cells;
		t->cap = cap;
	}
	va_list ap;
	va_start(ap, t);
	for (int i = 0; i < t->ncols; i++) {
		const char *s = va_arg(ap, const char *);
		t->cells[t->rows * (size_t)t->ncols + (size_t)i] = strdup(s && *s ? s : "-");
	}
	va_end(ap);
	t->rows++;
}

/* Prints s padded to w (the last column unpadded), cut to `cut` bytes when
 * cut > 0. */
static void cell(const char *s, int w, bool last, int cut)
{
	if (!s)
		s = "-";
	int len = (int)strlen(s);
	if (cut > 3 && len > cut)
		printf("%.*s...", cut - 3, s);
	else
		printf("%s", s);
	if (!last)
		printf("%*s", w - (cut > 3 && len > cut ? cut : len) + 2, "");
}

void table_print(table *t, bool tty, int cut_col)
{
	if (!t)
		return;
	int w[16] = { 0 };
	for (int c = 0; c < t->ncols && c < 16; c++) {
		w[c] = (int)strlen(t->heads[c]);
		for (size_t r = 0; r < t->rows; r++) {
			const char *s = t->cells[r * (size_t)t->ncols + (size_t)c];
			int len = s ? (int)strlen(s) : 1;
			if (len > w[c])
				w[c] = len;
		}
	}
	/* On a terminal one column (the error) is cut to 48 bytes. */
	int cut = tty && cut_col >= 0 ? 48 : 0;
	if (cut && cut_col < 16 && w[cut_col] > cut)
		w[cut_col] = cut;
	for (int c = 0; c < t->ncols; c++)
		cell(t->heads[c], w[c], c == t->ncols - 1, 0);
	printf("\n");
	for (size_t r = 0; r < t->rows; r++) {
		for (int c = 0; c < t->ncols; c++)
			cell(t->cells[r * (size_t)t->ncols + (size_t)c], w[c], c == t->ncols - 1,
			     c == cut_col ? cut : 0);
		printf("\n");
	}
}

void table_free(table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->rows * (size_t)t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t);
}

/* ---- JSON ---- */

cJSON *json_doc(const char *kind)
{
	cJSON *d = cJSON_CreateObject();
	cJSON_AddNumberToObject(d, "format", SAGACTL_FORMAT);
	cJSON_AddStringToObject(d, "kind", kind);
	return d;
}

static void print_json(const cJSON *j)
{
	char *s = cJSON_PrintUnformatted(j);
	if (s) {
		printf("%s\n", s);
		cJSON_free(s);
	}
}

void emit_json(const cli *c, cJSON *doc, const char *array_key)
{
	if (c->output == OUT_JSONL && array_key) {
		const cJSON *arr = cJSON_GetObjectItemCaseSensitive(doc, array_key);
		const cJSON *kind = cJSON_GetObjectItemCaseSensitive(doc, "kind");
		cJSON *el;
		cJSON_ArrayForEach(el, arr)
		{
			cJSON *line = cJSON_Duplicate(el, 1);
			if (!line)
				continue;
			cJSON_AddNumberToObject(line, "format", SAGACTL_FORMAT);
			/* each line is one of the document's things: "instances"
			 * gives lines of kind "instance" */
			if (cJSON_IsString(kind)) {
				char k[32];
				snprintf(k, sizeof(k), "%s", kind->valuestring);
				size_t n = strlen(k);
				if (n > 1 && k[n - 1] == 's')
					k[n - 1] = '\0';
				cJSON_AddStringToObject(line, "kind", k);
			}
			print_json(line);
			cJSON_Delete(line);
		}
	} else {
		print_json(doc);
	}
	cJSON_Delete(doc);
}

static void add_time(cJSON *o, const char *key, uint64_t ms)
{
	if (ms == 0) {
		cJSON_AddNullToObject(o, key);
		return;
	}
	char buf[40];
	fmt_time(buf, sizeof(buf), ms);
	cJSON_AddStringToObject(o, key, buf);
}

cJSON *instance_json(const saga_admin_instance *in)
{
	const saga_instance_info *i = &in->info;
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "id", (double)i->id);
	cJSON_AddStringToObject(o, "uid", i->uid);
	cJSON_AddStringToObject(o, "definition", i->definition);
	cJSON_AddNumberToObject(o, "version", i->version);
	if (i->business_key[0])
		cJSON_AddStringToObject(o, "business_key", i->business_key);
	else
		cJSON_AddNullToObject(o, "business_key");
	cJSON_AddStringToObject(o, "state", saga_state_name(i->state));
	cJSON_AddStringToObject(o, "reason", saga_reason_name(i->reason));
	cJSON_AddStringToObject(o, "phase",
	                        i->phase == SAGA_PHASE_ACTION ? "action" : "compensation");
	cJSON_AddNumberToObject(o, "step", i->step);
	if (in->step_name[0])
		cJSON_AddStringToObject(o, "step_name", in->step_name);
	else
		cJSON_AddNullToObject(o, "step_name");
	cJSON_AddNumberToObject(o, "attempt", i->attempt);
	cJSON_AddBoolToObject(o, "pivot_done", i->pivot_done);
	add_time(o, "created", i->created_ms);
	add_time(o, "updated", i->updated_ms);
	add_time(o, "due", i->due_ms);
	add_time(o, "deadline", i->deadline_ms);
	cJSON_AddNumberToObject(o, "owner", (double)in->owner);
	cJSON_AddNumberToObject(o, "fence", (double)in->fence);
	cJSON_AddBoolToObject(o, "inflight", in->inflight);
	cJSON_AddBoolToObject(o, "pending", in->pending);
	cJSON_AddNumberToObject(o, "recoveries", in->recoveries);
	cJSON_AddStringToObject(o, "error", i->error);
	return o;
}

static const char *phase_name(saga_phase p)
{
	return p == SAGA_PHASE_ACTION ? "action" : "compensation";
}

cJSON *event_json(const saga_event *ev)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "instance", (double)ev->instance);
	cJSON_AddNumberToObject(o, "seq", (double)ev->seq);
	add_time(o, "at", ev->at_ms);
	cJSON_AddStringToObject(o, "type", saga_event_type_name(ev->type));
	cJSON_AddStringToObject(o, "state", saga_state_name(ev->state));
	if (ev->step >= 0) {
		cJSON_AddNumberToObject(o, "step", ev->step);
		if (ev->step_name)
			cJSON_AddStringToObject(o, "step_name", ev->step_name);
		else
			cJSON_AddNullToObject(o, "step_name");
	} else {
		cJSON_AddNullToObject(o, "step");
		cJSON_AddNullToObject(o, "step_name");
	}
	cJSON_AddStringToObject(o, "phase", phase_name(ev->phase));
	cJSON_AddNumberToObject(o, "attempt", ev->attempt);
	cJSON_AddStringToObject(o, "outcome", saga_outcome_name(ev->outcome));
	cJSON_AddStringToObject(o, "detail", ev->detail);
	cJSON_AddNumberToObject(o, "fence", (double)ev->fence);
	/* An operator's request carries its actor, reason and id as JSON after
	 * the verb: given apart as well. */
	const char *brace = ev->type == SAGA_EVENT_OPERATOR ? strchr(ev->detail, '{') : NULL;
	cJSON *note = brace ? cJSON_Parse(brace) : NULL;
	if (note)
		cJSON_AddItemToObject(o, "request", note);
	return o;
}

void print_event(const saga_event *ev)
{
	char at[40];
	fmt_time(at, sizeof(at), ev->at_ms);
	printf("%4lld  %s  %-16s %-12s", (long long)ev->seq, at, saga_event_type_name(ev->type),
	       saga_state_name(ev->state));
	if (ev->step >= 0)
		printf(" %s/%s", ev->step_name ? ev->step_name : "?", phase_name(ev->phase));
	if (ev->attempt)
		printf(" #%u", (unsigned)ev->attempt);
	if (ev->outcome != SAGA_OUTCOME_NONE)
		printf(" %s", saga_outcome_name(ev->outcome));
	if (ev->detail[0])
		printf("  %s", ev->detail);
	printf("\n");
}

size_t table_rows(const table *t)
{
	return t ? t->rows : 0;
}

void view_begin(view *v, const cli *c, const char *kind, const char *key, int ncols,
                const char *const *heads)
{
	memset(v, 0, sizeof(*v));
	v->c = c;
	v->key = key;
	if (c->output == OUT_TEXT) {
		v->t = table_new(ncols, heads);
	} else {
		v->doc = json_doc(kind);
		v->arr = cJSON_AddArrayToObject(v->doc, key);
	}
}

int view_end(view *v, int code, int cut_col, const char *empty)
{
	if (code == EXIT_OK && v->doc) {
		emit_json(v->c, v->doc, v->key);
		v->doc = NULL;
	} else if (code == EXIT_OK && empty && table_rows(v->t) == 0) {
		printf("%s\n", empty);
	} else if (code == EXIT_OK) {
		table_print(v->t, v->c->tty, cut_col);
	}
	cJSON_Delete(v->doc);
	table_free(v->t);
	return code;
}

const char *fmt_int(char *buf, long long v)
{
	snprintf(buf, 24, "%lld", v);
	return buf;
}
