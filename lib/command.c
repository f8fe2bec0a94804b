/* Commands on one instance: the completion of an async step
 * (saga_complete), cancel, and the operator verbs on a STUCK instance
 * (retry, skip, resume).
 *
 * A command is carried out at once when the instance is at rest here: in
 * this process's memory between attempts, parked by this process, or
 * owned by nobody (the caller takes it). Otherwise (an attempt of it runs,
 * or another process owns it) the command is written to the store, in the
 * same transaction that checked, and the owner carries it out in a later
 * round, once the instance is at rest (apply_queued): durable, so a crash
 * of the owner loses nothing. SPDX-License-Identifier: MIT */
#include "engine_int.h"

#include <string.h>

/* Where a command finds its instance. */
enum where {
	AT_REST, /* in memory here, between attempts, or loaded for the command (temp) */
	QUEUE,   /* running here, or owned by another process: write the command */
};

/* Loads an instance for a command; its definition must be registered. */
static int load_temp(saga_engine *e, inst **out, int64_t id, const char *uid)
{
	int rc = load_inst(e, out, id, uid);
	if (rc == SAGA_OK && !*out)
		rc = set_err(e, SAGA_ENOTFOUND, "the instance's definition is not registered");
	return rc;
}

/* Takes an instance loaded for a command when nobody owns it and it is
 * unfinished or STUCK: the command will change it (in the open
 * transaction). */
static int take_unowned(saga_engine *e, inst *in)
{
	saga_row *r = &in->row;
	if (r->owner != 0 || (ended(r->state) && r->state != SAGA_STUCK))
		return SAGA_OK;
	bool claimed = false;
	int rc = e->st->claim_one(e->store, r->id, &claimed);
	if (rc)
		return store_err(e, rc);
	if (claimed) {
		r->owner = e->st->epoch(e->store);
		r->fence++;
		r->recoveries += r->inflight;
	}
	return SAGA_OK;
}

/* Finds the instance, in memory or loaded for the command (*temp), inside
 * the open transaction. */
static int get_inst(saga_engine *e, inst **out, bool *temp, enum where *where, int64_t id,
                    const char *uid)
{
	*out = find_loaded(e, id, uid);
	*temp = false;
	if (*out) {
		*where = (*out)->stage == STAGE_PROCESS && !(*out)->lost ? AT_REST : QUEUE;
		return SAGA_OK;
	}
	*temp = true;
	int rc = load_temp(e, out, id, uid);
	if (rc)
		return rc;
	int64_t me = e->st->epoch(e->store);
	if ((*out)->row.owner != 0 && (*out)->row.owner != me) {
		/* Owned elsewhere: unless that owner is gone (then its instances
		 * are back in the pool, and this one is read again). */
		int64_t reaped = 0;
		if ((rc = e->st->reap(e->store, &reaped, &e->peers)))
			return store_err(e, rc);
		if (reaped) {
			int64_t rid = (*out)->row.id;
			free_inst(e, *out);
			*out = NULL;
			if ((rc = load_temp(e, out, rid, NULL)))
				return rc;
		}
	}
	*where = (*out)->row.owner == 0 || (*out)->row.owner == me ? AT_REST : QUEUE;
	return SAGA_OK;
}

/* Frees the instance if the command loaded it for itself; returns rc. */
static int release_temp(saga_engine *e, inst *in, bool temp, int rc)
{
	if (temp)
		free_inst(e, in);
	return rc;
}

/* After a command's changes: a temporary instance this process now holds
 * is queued to run (due now) or left to the timer scan, and freed. */
static void after_command(saga_engine *e, inst *in, bool temp, int rc)
{
	if (rc == SAGA_OK && temp && in->row.owner == e->st->epoch(e->store) &&
	    !ended(in->row.state) && in->row.due_at) {
		if (in->row.due_at <= now_wall(e))
			push_ready(e, in->row.id);
		else if (e->next_timer == 0 || in->row.due_at < e->next_timer)
			e->next_timer = in->row.due_at;
	}
	release_temp(e, in, temp, rc);
	work_arrived(e);
}

/* Writes and commits a command's changes (history rows included: the row
 * keeps the history's next seq). */
static int finish_command(saga_engine *e, inst *in, bool temp, int rc)
{
	if (rc == SAGA_OK)
		rc = put_instance(e, in);
	if (rc == SAGA_OK)
		rc = commit_txn(e);
	if (rc) {
		if (temp)
			abort_txn(e);
		else
			discard_round(e);
	}
	after_command(e, in, temp, rc);
	return rc;
}

/* Writes the command for the owner (or for this process's next round, when
 * an attempt of it runs here), and commits. */
static int queue_command(saga_engine *e, inst *in, bool temp, const store_command *c)
{
	int rc = e->st->put_command(e->store, c);
	rc = rc ? store_err(e, rc) : commit_txn(e);
	if (rc)
		abort_txn(e);
	else
		e->look_now = true;
	release_temp(e, in, temp, rc);
	work_arrived(e);
	return rc;
}

/* Splits "<uid>/<step>/<phase>". */
static int parse_key(const char *key, char uid[SAGA_UID_LEN + 1], char step[SAGA_NAME_MAX + 1],
                     int *phase)
{
	const char *a = strchr(key, '/');
	const char *b = a ? strrchr(key, '/') : NULL;
	if (!a || b == a || a - key != SAGA_UID_LEN || b - a - 1 > SAGA_NAME_MAX || b - a - 1 < 1)
		return SAGA_EINVAL;
	memcpy(uid, key, SAGA_UID_LEN);
	uid[SAGA_UID_LEN] = '\0';
	memcpy(step, a + 1, (size_t)(b - a - 1));
	step[b - a - 1] = '\0';
	if (strcmp(b + 1, "action") == 0)
		*phase = SAGA_PHASE_ACTION;
	else if (strcmp(b + 1, "compensation") == 0)
		*phase = SAGA_PHASE_COMPENSATION;
	else
		return SAGA_EINVAL;
	return SAGA_OK;
}

/* The verdict on a completion of a step that no longer waits: late when
 * its last attempt timed out, else a duplicate. */
static int past_verdict(saga_engine *e, int64_t id, int idx, int phase, int *verdict)
{
	int last = 0;
	int rc = e->st->last_outcome(e->store, id, idx, phase, &last);
	if (rc)
		return store_err(e, rc);
	*verdict = last == SAGA_OUTCOME_TIMEOUT ? SAGA_ELATE : SAGA_EDUPLICATE;
	return SAGA_OK;
}

/* The outcome a completion gives. */
static saga_outcome completion_outcome(int result)
{
	return result == SAGA_STEP_OK     ? SAGA_OUTCOME_OK
	       : result == SAGA_STEP_FAIL ? SAGA_OUTCOME_FAIL
	                                  : SAGA_OUTCOME_RETRY;
}

/* Carries out a completion of (idx, phase) on an instance at rest, in the
 * open transaction; *verdict is SAGA_OK, SAGA_ELATE or SAGA_EDUPLICATE (the
 * history says which). `output` is taken. */
static int do_complete(saga_engine *e, inst *in, int idx, int phase, int result, cJSON *output,
                       bool early, int *verdict)
{
	saga_row *r = &in->row;
	*verdict = SAGA_OK;
	uint64_t now = now_wall(e);
	int rc;
	if (r->pending && r->step == idx && r->phase == phase) {
		if (!(r->attempt_deadline && now >= r->attempt_deadline)) {
			rc = early ? record_attempt(e, in, SAGA_EVENT_EARLY_COMPLETION,
			                            SAGA_OUTCOME_NONE,
			                            "completion before the action answered")
			           : SAGA_OK;
			if (rc == SAGA_OK)
				rc = apply_outcome(e, in, completion_outcome(result), output,
				                   "completed asynchronously");
			cJSON_Delete(output);
			return rc;
		}
		/* The timeout passed and the timer has not fired yet. */
		cJSON_Delete(output);
		rc = apply_outcome(e, in, SAGA_OUTCOME_TIMEOUT, NULL, "async step timed out");
		if (rc == SAGA_OK)
			rc = record(e, in, SAGA_EVENT_LATE, idx, phase, r->attempt,
			            SAGA_OUTCOME_NONE, "completion after the timeout; ignored");
		*verdict = SAGA_ELATE;
		return rc;
	}
	cJSON_Delete(output);
	if ((rc = past_verdict(e, r->id, idx, phase, verdict)))
		return rc;
	bool late = *verdict == SAGA_ELATE;
	return record(e, in, late ? SAGA_EVENT_LATE : SAGA_EVENT_DUPLICATE, idx, phase, r->attempt,
	              SAGA_OUTCOME_NONE,
	              late ? "completion after the timeout; ignored"
	                   : "second completion; ignored");
}

/* The caller's answer for a completion's verdict. */
static int verdict_err(saga_engine *e, int verdict, const char *key)
{
	if (verdict == SAGA_ELATE)
		return set_err(e, SAGA_ELATE, "completion of '%s' after its timeout; ignored", key);
	if (verdict == SAGA_EDUPLICATE)
		return set_err(e, SAGA_EDUPLICATE, "'%s' was already completed; ignored", key);
	return SAGA_OK;
}

/* Writes a completion for the owner to carry out (the instance runs an
 * attempt here, or another process owns it); *verdict is what is known of
 * it now: a completion already waits, or the step no longer waits (the
 * owner records which when it carries it out). `output` is borrowed. */
static int queue_completion(saga_engine *e, inst *in, bool temp, int idx, int phase, int result,
                            const cJSON *output, int *verdict)
{
	const saga_row *r = &in->row;
	*verdict = SAGA_OK;
	char *text = output ? cJSON_PrintUnformatted(output) : NULL;
	if (output && !text)
		return release_temp(e, in, temp, set_err(e, SAGA_ENOMEM, "out of memory"));
	/* Early: the attempt of that step has not answered yet (here or in
	 * the process that owns it). */
	bool early = !temp || (r->inflight && r->step == idx && r->phase == phase);
	bool current = r->step == idx && r->phase == phase && (r->inflight || r->pending);
	store_command c = { 0,    r->id,      early ? CMD_COMPLETE_EARLY : CMD_COMPLETE,
		            idx,  phase,      result,
		            text, now_wall(e) };
	int64_t before = 0;
	int rc = e->st->count_commands(e->store, &c, &before);
	if (rc)
		rc = store_err(e, rc);
	else if (!current)
		rc = past_verdict(e, r->id, idx, phase, verdict);
	else if (before)
		*verdict = SAGA_EDUPLICATE;
	rc = rc ? release_temp(e, in, temp, rc) : queue_command(e, in, temp, &c);
	cJSON_free(text);
	return rc;
}

int saga_complete(saga_engine *e, const char *key, saga_step_result result, cJSON *output)
{
	if (!e || !key ||
	    (result != SAGA_STEP_OK && result != SAGA_STEP_FAIL && result != SAGA_STEP_RETRY)) {
		cJSON_Delete(output);
		return e ? set_err(e, SAGA_EINVAL,
		                   "complete: a key and OK, FAIL or RETRY are needed")
		         : SAGA_EINVAL;
	}
	char uid[SAGA_UID_LEN + 1], step[SAGA_NAME_MAX + 1];
	int phase;
	if (parse_key(key, uid, step, &phase)) {
		cJSON_Delete(output);
		return set_err(e, SAGA_EINVAL, "'%s' is not a step key", key);
	}
	if (output && !cJSON_IsObject(output)) {
		cJSON_Delete(output);
		return set_err(e, SAGA_EINVAL, "complete: output must be a JSON object");
	}
	pthread_mutex_lock(&e->mu);
	inst *in = NULL;
	bool temp = false;
	enum where where = AT_REST;
	int rc = ensure_txn(e);
	if (rc == SAGA_OK)
		rc = get_inst(e, &in, &temp, &where, 0, uid);
	if (rc == SAGA_OK && temp)
		rc = take_unowned(e, in);
	if (rc) {
		if (in)
			release_temp(e, in, temp, rc);
		abort_txn(e);
		goto out;
	}
	saga_row *r = &in->row;
	int idx = saga_definition_step_index(in->rd->def, step);
	if (idx < 0) {
		rc = release_temp(
		        e, in, temp,
		        set_err(e, SAGA_ENOTFOUND, "no step '%s' in '%s'", step, r->def_name));
		abort_txn(e);
		goto out;
	}
	int verdict = SAGA_OK;
	if (where == QUEUE) {
		/* The action has not answered yet, or another process owns the
		 * instance: its owner completes it once the instance is at rest. */
		rc = queue_completion(e, in, temp, idx, phase, (int)result, output, &verdict);
		if (rc)
			abort_txn(e);
	} else {
		rc = do_complete(e, in, idx, phase, (int)result, output, false, &verdict);
		output = NULL;
		rc = finish_command(e, in, temp, rc);
	}
	if (rc == SAGA_OK)
		rc = verdict_err(e, verdict, key);
out:
	cJSON_Delete(output);
	unlock_and_deliver(e);
	return rc;
}

/* Why instance `in` refuses command verb, with the engine's message set; or
 * SAGA_OK. */
static int refusal(saga_engine *e, const inst *in, int verb)
{
	const saga_row *r = &in->row;
	long long id = (long long)r->id;
	if (verb == CMD_CANCEL) {
		if (ended(r->state))
			return set_err(e, SAGA_ESTATE, "instance %lld has ended (%s)", id,
			               saga_state_name((saga_state)r->state));
		if (past_no_return(in))
			return set_err(e, SAGA_ESTATE,
			               "instance %lld is past its pivot (point "
			               "of no return): it can only go forward",
			               id);
		if (r->phase == SAGA_PHASE_COMPENSATION)
			return set_err(e, SAGA_ESTATE, "instance %lld is already compensating", id);
		return SAGA_OK;
	}
	if (r->state != SAGA_STUCK)
		return set_err(e, SAGA_ESTATE, "instance %lld is not STUCK (%s)", id,
		               saga_state_name((saga_state)r->state));
	if (verb == CMD_RESUME && r->phase == SAGA_PHASE_COMPENSATION && r->comp_done_any)
		return set_err(e, SAGA_ESTATE,
		               "instance %lld: a compensation has completed; "
		               "it cannot resume forward",
		               id);
	return SAGA_OK;
}

/* The detail of an OPERATOR event: what was done, then the admin request's
 * note (actor, reason, request id) when there is one. */
static const char *op_detail(char *buf, size_t size, const char *what, const char *note)
{
	if (!note)
		return what;
	saga_fmt(buf, size, "%s %s", what, note);
	return buf;
}

/* The longest note an admin request carries (the reason is cut to fit). */
#define NOTE_MAX 1024

/* Cancels an instance at rest that may be cancelled. */
static int do_cancel(saga_engine *e, inst *in, const char *note)
{
	char buf[NOTE_MAX + 64];
	int rc = record(e, in, SAGA_EVENT_OPERATOR, -1, in->row.phase, 0, SAGA_OUTCOME_NONE,
	                op_detail(buf, sizeof(buf), "cancel", note));
	/* An async step still pending is uncertain: it is compensated. */
	return rc ? rc : start_compensation(e, in, SAGA_REASON_CANCEL, false);
}

/* The operator verbs on a STUCK instance: retry the step, skip it, or
 * resume forward from a rollback. */
static int do_operator(saga_engine *e, inst *in, int verb, const char *note)
{
	saga_row *r = &in->row;
	int acted_on = r->step, acted_phase = r->phase;
	r->attempt = 0;
	r->prev_delay = 0;
	r->attempt_deadline = 0;
	r->recoveries = 0;
	r->due_at = now_wall(e);
	r->error[0] = '\0';
	if (verb == CMD_SKIP) {
		if (r->phase == SAGA_PHASE_ACTION) {
			r->step++;
		} else {
			r->step--;
			r->comp_done_any = true;
		}
	} else if (verb == CMD_RESUME && r->phase == SAGA_PHASE_COMPENSATION) {
		r->phase = SAGA_PHASE_ACTION;
		r->reason = SAGA_REASON_NONE;
		r->step = r->fwd_started > 0 ? r->fwd_started - 1 : 0;
	}
	r->state = r->phase == SAGA_PHASE_ACTION ? SAGA_RUNNING : SAGA_COMPENSATING;
	char buf[NOTE_MAX + 64];
	int rc = record(e, in, SAGA_EVENT_OPERATOR, acted_on, acted_phase, 0, SAGA_OUTCOME_NONE,
	                op_detail(buf, sizeof(buf),
	                          verb == CMD_RETRY  ? "operator: retry"
	                          : verb == CMD_SKIP ? "operator: skip"
	                                             : "operator: resume forward",
	                          note));
	return rc ? rc : record_state(e, in, "resumed by an operator");
}

static int do_verb(saga_engine *e, inst *in, int verb, const char *note)
{
	return verb == CMD_CANCEL ? do_cancel(e, in, note) : do_operator(e, in, verb, note);
}

/* Cancel and the operator verbs: find the instance (in memory, or loaded
 * for the command), check that it accepts the command, and carry it out or
 * write it for its owner. */
static int command(saga_engine *e, int64_t id, int verb, const char *note, bool *queued)
{
	if (!e)
		return SAGA_EINVAL;
	*queued = false;
	pthread_mutex_lock(&e->mu);
	inst *in = NULL;
	bool temp = false;
	enum where where = AT_REST;
	int rc = ensure_txn(e);
	if (rc == SAGA_OK)
		rc = get_inst(e, &in, &temp, &where, id, NULL);
	/* Refused on what the store says now; the owner checks again when it
	 * carries the command out. */
	if (rc == SAGA_OK)
		rc = refusal(e, in, verb);
	if (rc == SAGA_OK && where == QUEUE) {
		store_command c = { 0, in->row.id, verb, -1, 0, 0, note, now_wall(e) };
		rc = queue_command(e, in, temp, &c);
		*queued = rc == SAGA_OK;
	} else if (rc == SAGA_OK) {
		/* Nobody's: this process takes it to carry the command out. */
		rc = temp ? take_unowned(e, in) : SAGA_OK;
		rc = finish_command(e, in, temp, rc ? rc : do_verb(e, in, verb, note));
	} else {
		if (in)
			release_temp(e, in, temp, rc);
		abort_txn(e);
	}
	unlock_and_deliver(e);
	return rc;
}

int saga_cancel(saga_engine *e, int64_t id)
{
	bool queued;
	return command(e, id, CMD_CANCEL, NULL, &queued);
}

int saga_operator_retry(saga_engine *e, int64_t id)
{
	bool queued;
	return command(e, id, CMD_RETRY, NULL, &queued);
}

int saga_operator_skip(saga_engine *e, int64_t id)
{
	bool queued;
	return command(e, id, CMD_SKIP, NULL, &queued);
}

int saga_operator_resume(saga_engine *e, int64_t id)
{
	bool queued;
	return command(e, id, CMD_RESUME, NULL, &queued);
}

int admin_command(saga_engine *e, int64_t id, int verb, const char *note, bool *queued)
{
	if (note && strlen(note) > NOTE_MAX)
		return set_err(e, SAGA_EINVAL, "the actor and reason are longer than %d bytes",
		               NOTE_MAX);
	/* A refusal is known from the row as stored: it writes nothing (not
	 * even the owner registration a write transaction begins with). */
	pthread_mutex_lock(&e->mu);
	inst *in = NULL;
	int rc = load_temp(e, &in, id, NULL);
	if (rc == SAGA_OK)
		rc = release_temp(e, in, true, refusal(e, in, verb));
	pthread_mutex_unlock(&e->mu);
	return rc ? rc : command(e, id, verb, note, queued);
}

/* ------------------------------------------------------------------------ */
/* Commands written for this process, carried out in its rounds */

void drop_cmds(saga_engine *e)
{
	for (size_t i = 0; i < e->ncmds; i++)
		saga_free(&e->alloc, e->cmds[i].output);
	saga_free(&e->alloc, e->cmds);
	e->cmds = NULL;
	e->ncmds = 0;
}

static int keep_cmd(const store_command *c, void *user)
{
	saga_engine *e = user;
	queued_cmd *q = saga_realloc(&e->alloc, e->cmds, (e->ncmds + 1) * sizeof(*q));
	if (!q) {
		e->look_now = true; /* read them again at the next round */
		return 1;
	}
	e->cmds = q;
	q = &e->cmds[e->ncmds];
	q->c = *c;
	q->c.output = NULL; /* the copy below, owned */
	q->output = NULL;
	if (c->output && !(q->output = saga_strdup(&e->alloc, c->output))) {
		e->look_now = true;
		return 1;
	}
	e->ncmds++;
	if (!find_loaded(e, c->instance, NULL))
		push_ready(e, c->instance);
	return 0;
}

/* Reads the commands written for instances this process holds (all of
 * them again: the list is rebuilt), queueing those not in memory. */
int take_commands(saga_engine *e)
{
	drop_cmds(e);
	int rc = e->st->commands(e->store, keep_cmd, e);
	if (rc)
		return store_err(e, rc);
	return SAGA_OK;
}

/* Carries out, in the open transaction, the commands waiting for an
 * instance that is at rest: between attempts, its last answer recorded. A
 * command the instance refuses now is recorded as refused. */
int apply_queued(saga_engine *e, inst *in)
{
	for (size_t i = 0; i < e->ncmds;) {
		queued_cmd *q = &e->cmds[i];
		const store_command *c = &q->c;
		if (c->instance != in->row.id) {
			i++;
			continue;
		}
		int rc;
		if (c->verb == CMD_COMPLETE || c->verb == CMD_COMPLETE_EARLY) {
			cJSON *out = q->output ? cJSON_Parse(q->output) : NULL;
			if (q->output && !out)
				return set_err(e, SAGA_ENOMEM, "out of memory");
			int verdict;
			rc = do_complete(e, in, c->step, c->phase, c->result, out,
			                 c->verb == CMD_COMPLETE_EARLY, &verdict);
		} else if (refusal(e, in, c->verb)) {
			char msg[NOTE_MAX + 320];
			if (q->output)
				saga_fmt(msg, sizeof(msg), "refused: %s %s", saga_engine_errmsg(e),
				         q->output);
			else
				saga_fmt(msg, sizeof(msg), "refused: %s", saga_engine_errmsg(e));
			rc = record(e, in, SAGA_EVENT_OPERATOR, -1, in->row.phase, 0,
			            SAGA_OUTCOME_NONE, msg);
		} else {
			rc = do_verb(e, in, c->verb, q->output);
		}
		if (rc == SAGA_OK && (rc = e->st->delete_command(e->store, c->id)))
			rc = store_err(e, rc);
		if (rc)
			return rc;
		saga_free(&e->alloc, q->output);
		memmove(q, q + 1, (e->ncmds - i - 1) * sizeof(*q)); /* in their order */
		e->ncmds--;
	}
	return SAGA_OK;
}
