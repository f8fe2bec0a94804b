/* The JSON-lines form of a log record (saga_log_format_json) and a ready
 * record hook that writes it to a FILE (saga_log_json_file). Uses only the
 * public API. SPDX-License-Identifier: MIT */
#include "saga.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Appends to buf[0 .. size) what fits, counting the whole length (the
 * snprintf rule), always NUL-terminated when size > 0. */
typedef struct jbuf {
	char *buf;
	size_t size;
	size_t len;
} jbuf;

static void jput(jbuf *j, const char *s, size_t n)
{
	if (j->len < j->size) {
		size_t room = j->size - 1 - j->len;
		size_t k = n < room ? n : room;
		memcpy(j->buf + j->len, s, k);
		j->buf[j->len + k] = '\0';
	}
	j->len += n;
}

static void jputs(jbuf *j, const char *s)
{
	jput(j, s, strlen(s));
}

static void jputf(jbuf *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void jputf(jbuf *j, const char *fmt, ...)
{
	char tmp[64];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n > 0)
		jput(j, tmp, (size_t)n);
}

/* The length of the valid UTF-8 sequence at s (1..4), or 0. */
static size_t utf8_len(const unsigned char *s)
{
	if (s[0] < 0x80)
		return 1;
	size_t n;
	unsigned min;
	unsigned cp;
	if ((s[0] & 0xe0) == 0xc0) {
		n = 2, min = 0x80, cp = s[0] & 0x1f;
	} else if ((s[0] & 0xf0) == 0xe0) {
		n = 3, min = 0x800, cp = s[0] & 0x0f;
	} else if ((s[0] & 0xf8) == 0xf0) {
		n = 4, min = 0x10000, cp = s[0] & 0x07;
	} else {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

static void jstr(jbuf *j, const char *s)
{
	jputs(j, "\"");
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		if (*p == '"' || *p == '\\') {
			char esc[2] = { '\\', (char)*p };
			jput(j, esc, 2);
			p++;
		} else if (*p == '\n') {
			jputs(j, "\\n");
			p++;
		} else if (*p == '\t') {
			jputs(j, "\\t");
			p++;
		} else if (*p == '\r') {
			jputs(j, "\\r");
			p++;
		} else if (*p < 0x20 || *p == 0x7f) {
			jputf(j, "\\u%04x", *p);
			p++;
		} else {
			size_t n = utf8_len(p);
			if (n) {
				jput(j, (const char *)p, n);
				p += n;
			} else {
				jputs(j, "\xef\xbf\xbd"); /* U+FFFD */
				p++;
			}
		}
	}
	jputs(j, "\"");
}

static void jkey_str(jbuf *j, const char *key, const char *value)
{
	jputs(j, ",\"");
	jputs(j, key);
	jputs(j, "\":");
	jstr(j, value);
}

static void jkey_int(jbuf *j, const char *key, long long value)
{
	jputs(j, ",\"");
	jputs(j, key);
	jputf(j, "\":%lld", value);
}

static const char *level_word(saga_log_level l)
{
	switch (l) {
	case SAGA_LOG_DEBUG:
		return "debug";
	case SAGA_LOG_INFO:
		return "info";
	case SAGA_LOG_WARN:
		return "warn";
	case SAGA_LOG_ERROR:
		return "error";
	}
	return "unknown";
}

static const char *code_name(int code)
{
	static const char *const names[] = {
		"SAGA_OK",        "SAGA_ERROR",     "SAGA_ENOMEM",  "SAGA_EINVAL",
		"SAGA_ENOTFOUND", "SAGA_EEXISTS",   "SAGA_ESTATE",  "SAGA_ESTORE",
		"SAGA_EBUSY",     "SAGA_ECORRUPT",  "SAGA_EFULL",   "SAGA_EIO",
		"SAGA_EVERSION",  "SAGA_ECONFLICT", "SAGA_EOPEN",   "SAGA_EDUPLICATE",
		"SAGA_ELATE",     "SAGA_ECONFIG",   "SAGA_ECLOSED", "SAGA_EFENCED",
	};
	if (code <= 0 && -code < (int)(sizeof(names) / sizeof(names[0])))
		return names[-code];
	return "SAGA_UNKNOWN";
}

size_t saga_log_format_json(const saga_log_record *r, char *buf, size_t size)
{
	if (!r)
		return 0;
	jbuf j = { buf, size, 0 };
	if (buf && size)
		buf[0] = '\0';
	else
		j.size = 0;
	time_t secs = (time_t)(r->at_ms / 1000);
	struct tm tm;
	char ts[40] = "1970-01-01T00:00:00";
	if (gmtime_r(&secs, &tm))
		strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	jputs(&j, "{\"ts\":\"");
	jputs(&j, ts);
	jputf(&j, ".%03uZ\"", (unsigned)(r->at_ms % 1000));
	jkey_str(&j, "level", level_word(r->level));
	jkey_str(&j, "event", r->event ? r->event : "");
	jkey_str(&j, "msg", r->message ? r->message : "");
	if (r->instance)
		jkey_int(&j, "saga.instance.id", (long long)r->instance);
	if (r->uid)
		jkey_str(&j, "saga.instance.uid", r->uid);
	if (r->definition) {
		jkey_str(&j, "saga.definition.name", r->definition);
		jkey_int(&j, "saga.definition.version", r->version);
	}
	if (r->step >= 0) {
		if (r->step_name)
			jkey_str(&j, "saga.step.name", r->step_name);
		jkey_int(&j, "saga.step.index", r->step);
		jkey_str(&j, "saga.step.phase",
		         r->phase == SAGA_PHASE_ACTION ? "action" : "compensation");
		jkey_int(&j, "saga.attempt", (long long)r->attempt);
	}
	if (r->key)
		jkey_str(&j, "saga.key", r->key);
	if (r->business_key)
		jkey_str(&j, "saga.business_key", r->business_key);
	if (r->code)
		jkey_str(&j, "error.code", code_name(r->code));
	jputs(&j, "}\n");
	return j.len;
}

void saga_log_json_file(const saga_log_record *r, void *user)
{
	FILE *f = user;
	if (!r || !f)
		return;
	char line[2048];
	size_t n = saga_log_format_json(r, line, sizeof(line));
	if (n < sizeof(line)) {
		fwrite(line, 1, n, f);
	} else {
		char *big = malloc(n + 1);
		if (!big)
			return; /* the line is lost; nothing else to do in a log hook */
		saga_log_format_json(r, big, n + 1);
		fwrite(big, 1, n, f);
		free(big);
	}
	fflush(f);
}
