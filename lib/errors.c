/* Error texts, enum names, and the engine's message and log: the per-thread
 * message of the last failed call (set_err, saga_engine_errmsg) and the log
 * hooks (log_at, log_inst: a string, and a saga_log_record). SPDX-License-Identifier: MIT */
#include "engine_int.h"

#include <stdio.h>

const char *saga_strerror(int code)
{
	switch (code) {
	case SAGA_OK:
		return "success";
	case SAGA_ERROR:
		return "unspecified error";
	case SAGA_ENOMEM:
		return "out of memory";
	case SAGA_EINVAL:
		return "invalid argument";
	case SAGA_ENOTFOUND:
		return "not found";
	case SAGA_EEXISTS:
		return "already exists";
	case SAGA_ESTATE:
		return "not allowed in the current state";
	case SAGA_ESTORE:
		return "store error";
	case SAGA_EBUSY:
		return "store is busy";
	case SAGA_ECORRUPT:
		return "store is corrupt or not a libsaga store";
	case SAGA_EFULL:
		return "disk is full";
	case SAGA_EIO:
		return "I/O error";
	case SAGA_EVERSION:
		return "store was written by a newer libsaga";
	case SAGA_ECONFLICT:
		return "definition differs from the stored one of the same version";
	case SAGA_EOPEN:
		return "circuit breaker is open";
	case SAGA_EDUPLICATE:
		return "duplicate completion ignored";
	case SAGA_ELATE:
		return "late completion ignored";
	case SAGA_ECONFIG:
		return "policy configuration refused";
	case SAGA_ECLOSED:
		return "engine is closing";
	case SAGA_EFENCED:
		return "ownership lost to another process";
	default:
		return "unknown error code";
	}
}

const char *saga_version(void)
{
	return SAGA_VERSION_STRING;
}

const char *saga_state_name(saga_state s)
{
	switch (s) {
	case SAGA_RUNNING:
		return "RUNNING";
	case SAGA_WAITING:
		return "WAITING";
	case SAGA_COMPENSATING:
		return "COMPENSATING";
	case SAGA_COMPLETED:
		return "COMPLETED";
	case SAGA_COMPENSATED:
		return "COMPENSATED";
	case SAGA_STUCK:
		return "STUCK";
	}
	return "UNKNOWN";
}

const char *saga_event_type_name(saga_event_type t)
{
	switch (t) {
	case SAGA_EVENT_CREATED:
		return "created";
	case SAGA_EVENT_STATE:
		return "state";
	case SAGA_EVENT_ATTEMPT_START:
		return "attempt-start";
	case SAGA_EVENT_ATTEMPT_END:
		return "attempt-end";
	case SAGA_EVENT_LATE:
		return "late";
	case SAGA_EVENT_DUPLICATE:
		return "duplicate";
	case SAGA_EVENT_BREAKER_REFUSED:
		return "breaker-refused";
	case SAGA_EVENT_OPERATOR:
		return "operator";
	case SAGA_EVENT_EARLY_COMPLETION:
		return "early-completion";
	}
	return "unknown";
}

const char *saga_outcome_name(saga_outcome o)
{
	switch (o) {
	case SAGA_OUTCOME_NONE:
		return "";
	case SAGA_OUTCOME_OK:
		return "OK";
	case SAGA_OUTCOME_FAIL:
		return "FAIL";
	case SAGA_OUTCOME_RETRY:
		return "RETRY";
	case SAGA_OUTCOME_PENDING:
		return "PENDING";
	case SAGA_OUTCOME_TIMEOUT:
		return "TIMEOUT";
	}
	return "UNKNOWN";
}

const char *saga_reason_name(saga_reason r)
{
	switch (r) {
	case SAGA_REASON_NONE:
		return "";
	case SAGA_REASON_FAILURE:
		return "failure";
	case SAGA_REASON_TIMEOUT:
		return "timeout";
	case SAGA_REASON_CANCEL:
		return "cancel";
	case SAGA_REASON_CRASH_LOOP:
		return "crash loop";
	}
	return "unknown";
}

/* The message of the last failed call, per thread: a thread reads the
 * message of its own call, whatever other threads do meanwhile. */
static _Thread_local struct {
	const saga_engine *engine;
	char text[512];
} last_error;

int set_err(saga_engine *e, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(last_error.text, sizeof(last_error.text), fmt, ap);
	last_error.engine = e;
	va_end(ap);
	return code;
}

/* An argument error: SAGA_EINVAL, with a message saying what is wrong, so
 * that saga_engine_errmsg never describes an older failure. e may be NULL. */
int bad_args(saga_engine *e, const char *what)
{
	return e ? set_err(e, SAGA_EINVAL, "invalid arguments: %s", what) : SAGA_EINVAL;
}

/* Copies the store's message after a failed store call. */
int store_err(saga_engine *e, int code)
{
	mx_store_error(e, code);
	if (code == SAGA_ENOMEM)
		return set_err(e, code, "out of memory");
	return set_err(e, code, "%s", e->st->errmsg(e->store));
}

/* Delivers a record to the hooks: the string hook gets its message, with
 * the instance named first when there is one. */
static void deliver_log(saga_engine *e, const saga_log_record *r)
{
	if (e->log_record)
		e->log_record(r, e->log_record_user);
	if (!e->log)
		return;
	if (!r->instance) {
		e->log(r->level, r->message, e->log_user);
		return;
	}
	char line[640];
	if (r->step_name)
		snprintf(line, sizeof(line), "instance %lld (%s) step '%s' %s: %s",
		         (long long)r->instance, r->definition, r->step_name,
		         r->phase == SAGA_PHASE_ACTION ? "action" : "compensation", r->message);
	else
		snprintf(line, sizeof(line), "instance %lld (%s): %s", (long long)r->instance,
		         r->definition, r->message);
	e->log(r->level, line, e->log_user);
}

/* Formats the message into r and delivers r. */
static void deliver_fmt(saga_engine *e, saga_log_record *r, const char *fmt, va_list ap)
{
	char buf[512];
	vsnprintf(buf, sizeof(buf), fmt, ap);
	r->message = buf;
	r->at_ms = now_wall(e);
	deliver_log(e, r);
}

void log_at(saga_engine *e, saga_log_level lvl, const char *event, const char *fmt, ...)
{
	if (!log_on(e, lvl))
		return;
	saga_log_record r = { .level = lvl, .event = event, .step = -1 };
	va_list ap;
	va_start(ap, fmt);
	deliver_fmt(e, &r, fmt, ap);
	va_end(ap);
}

void log_inst(saga_engine *e, saga_log_level lvl, const char *event, const inst *in, int step,
              int phase, uint32_t attempt, int code, const char *fmt, ...)
{
	if (!log_on(e, lvl))
		return;
	saga_log_record r = { .level = lvl,
		              .event = event,
		              .instance = in->row.id,
		              .uid = in->row.uid,
		              .definition = in->row.def_name,
		              .version = in->row.def_version,
		              .step = -1,
		              .business_key = in->row.has_bkey ? in->row.bkey : NULL,
		              .code = code };
	char key[SAGA_STEP_KEY_MAX + 1];
	if (step >= 0 && in->rd && (size_t)step < in->rd->def->nsteps) {
		r.step = step;
		r.step_name = in->rd->names[step];
		r.phase = phase;
		r.attempt = attempt;
		snprintf(key, sizeof(key), "%s/%s/%s", in->row.uid, r.step_name, phase_word(phase));
		r.key = key;
	}
	va_list ap;
	va_start(ap, fmt);
	deliver_fmt(e, &r, fmt, ap);
	va_end(ap);
}

const char *saga_engine_errmsg(const saga_engine *e)
{
	if (!e)
		return "engine is NULL";
	return last_error.engine == e ? last_error.text : "no error";
}
