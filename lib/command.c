/* Commands on one running instance: the completion of an async step
 * (saga_complete), cancel, and the operator verbs on a STUCK instance
 * (retry, skip, resume). SPDX-License-Identifier: MIT */
#include "engine_int.h"

#include <string.h>

/* Finds a loaded instance by id, or loads it into a temporary. *temp tells
 * whether the caller must commit and free it. */
static int get_inst(saga_engine *e, inst **out, bool *temp, int64_t id, const char *uid)
{
	for (size_t i = 0; i < e->nloaded; i++) {
		inst *in = e->loaded[i];
		if (uid ? strcmp(in->row.uid, uid) == 0 : in->row.id == id) {
			*out = in;
			*temp = false;
			return SAGA_OK;
		}
	}
	*temp = true;
	int rc = load_inst(e, out, id, uid);
	if (rc == SAGA_OK && !*out)
		rc = set_err(e, SAGA_ENOTFOUND, "the instance's definition is not registered");
	return rc;
}

/* Frees the instance if the command loaded it for itself; returns rc. */
static int release_temp(saga_engine *e, inst *in, bool temp, int rc)
{
	if (temp)
		free_inst(e, in);
	return rc;
}

/* Writes and commits a command's changes; a temporary instance is queued to
 * run and freed. */
static int finish_command(saga_engine *e, inst *in, bool temp, bool changed, int rc)
{
	if (rc == SAGA_OK && changed)
		rc = put_instance(e, in);
	if (rc == SAGA_OK)
		rc = commit_txn(e);
	if (rc) {
		if (temp)
			abort_txn(e);
		else
			discard_round(e);
	} else if (temp && changed && in->row.due_at) {
		/* Due now: queue it; due later: the timer scan will find it. */
		if (in->row.due_at <= now_wall(e))
			push_ready(e, in->row.id);
		else if (e->next_timer == 0 || in->row.due_at < e->next_timer)
			e->next_timer = in->row.due_at;
	}
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
	int rc = get_inst(e, &in, &temp, 0, uid);
	if (rc)
		goto out;
	saga_row *r = &in->row;
	int idx = saga_definition_step_index(in->rd->def, step);
	if (idx < 0) {
		rc = release_temp(
		        e, in, temp,
		        set_err(e, SAGA_ENOTFOUND, "no step '%s' in '%s'", step, r->def_name));
		goto out;
	}
	uint64_t now = now_wall(e);
	bool current = r->pending && r->step == idx && r->phase == phase &&
	               (temp || in->stage == STAGE_PROCESS);
	if (current && !(r->attempt_deadline && now >= r->attempt_deadline)) {
		saga_outcome oc = result == SAGA_STEP_OK     ? SAGA_OUTCOME_OK
		                  : result == SAGA_STEP_FAIL ? SAGA_OUTCOME_FAIL
		                                             : SAGA_OUTCOME_RETRY;
		rc = apply_outcome(e, in, oc, output, "completed asynchronously");
		rc = finish_command(e, in, temp, true, rc);
		goto out;
	}
	if (current) {
		/* The timeout passed and the timer has not fired yet. */
		rc = apply_outcome(e, in, SAGA_OUTCOME_TIMEOUT, NULL, "async step timed out");
		if (rc == SAGA_OK)
			rc = record(e, in, SAGA_EVENT_LATE, idx, phase, r->attempt,
			            SAGA_OUTCOME_NONE, "completion after the timeout; ignored");
		rc = finish_command(e, in, temp, true, rc);
		if (rc == SAGA_OK)
			rc = set_err(e, SAGA_ELATE, "completion of '%s' after its timeout; ignored",
			             key);
		goto out;
	}
	if (!temp && in->stage != STAGE_PROCESS && r->inflight && r->step == idx &&
	    r->phase == phase && !in->has_early) {
		/* The action has not answered yet: keep the completion for when it
		 * answers PENDING. It is recorded now; if the process dies before
		 * the answer, the step is invoked again with the same key. */
		rc = record_attempt(e, in, SAGA_EVENT_EARLY_COMPLETION, SAGA_OUTCOME_NONE,
		                    "completion before the action answered");
		if ((rc = end_txn(e, rc)) == SAGA_OK) {
			in->has_early = true;
			in->early = result;
			in->early_output = output;
			output = NULL;
		}
		goto out;
	}
	int last = 0;
	if ((rc = store_last_outcome(e->store, r->id, idx, phase, &last))) {
		rc = release_temp(e, in, temp, store_err(e, rc));
		goto out;
	}
	bool late = last == SAGA_OUTCOME_TIMEOUT;
	rc = record(e, in, late ? SAGA_EVENT_LATE : SAGA_EVENT_DUPLICATE, idx, phase, r->attempt,
	            SAGA_OUTCOME_NONE,
	            late ? "completion after the timeout; ignored" : "second completion; ignored");
	rc = finish_command(e, in, temp, false, rc);
	if (rc == SAGA_OK)
		rc = late ? set_err(e, SAGA_ELATE, "completion of '%s' after its timeout; ignored",
		                    key)
		          : set_err(e, SAGA_EDUPLICATE, "'%s' was already completed; ignored", key);
out:
	/* apply_outcome moved the members it kept; the container is ours. */
	cJSON_Delete(output);
	unlock_and_deliver(e);
	return rc;
}

enum op { OP_RETRY, OP_SKIP, OP_RESUME, OP_CANCEL };

/* Why instance `in` refuses command op, with the engine's message set; or
 * SAGA_OK. */
static int refusal(saga_engine *e, const inst *in, enum op op)
{
	const saga_row *r = &in->row;
	long long id = (long long)r->id;
	if (op == OP_CANCEL) {
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
	if (op == OP_RESUME && r->phase == SAGA_PHASE_COMPENSATION && r->comp_done_any)
		return set_err(e, SAGA_ESTATE,
		               "instance %lld: a compensation has completed; "
		               "it cannot resume forward",
		               id);
	return SAGA_OK;
}

/* Cancels an instance that may be cancelled. */
static int cancel(saga_engine *e, inst *in, bool temp)
{
	saga_row *r = &in->row;
	int rc;
	if (!temp && in->stage != STAGE_PROCESS) {
		/* An attempt is running: compensation starts after its answer. */
		in->cancel_req = true;
		rc = record(e, in, SAGA_EVENT_OPERATOR, -1, r->phase, 0, SAGA_OUTCOME_NONE,
		            "cancel requested");
		if ((rc = end_txn(e, rc)))
			in->cancel_req = false;
		return rc;
	}
	if ((rc = record(e, in, SAGA_EVENT_OPERATOR, -1, r->phase, 0, SAGA_OUTCOME_NONE,
	                 "cancel")) == SAGA_OK) {
		/* An async step still pending is uncertain: it is compensated. */
		rc = start_compensation(e, in, SAGA_REASON_CANCEL, false);
	}
	return finish_command(e, in, temp, true, rc);
}

/* The operator verbs on a STUCK instance: retry the step, skip it, or
 * resume forward from a rollback. */
static int operator_cmd(saga_engine *e, inst *in, bool temp, enum op op)
{
	static const char *const names[] = { "operator: retry", "operator: skip",
		                             "operator: resume forward" };
	saga_row *r = &in->row;
	int acted_on = r->step, acted_phase = r->phase;
	r->attempt = 0;
	r->prev_delay = 0;
	r->attempt_deadline = 0;
	r->due_at = now_wall(e);
	r->error[0] = '\0';
	if (op == OP_SKIP) {
		if (r->phase == SAGA_PHASE_ACTION) {
			r->step++;
		} else {
			r->step--;
			r->comp_done_any = true;
		}
	} else if (op == OP_RESUME && r->phase == SAGA_PHASE_COMPENSATION) {
		r->phase = SAGA_PHASE_ACTION;
		r->reason = SAGA_REASON_NONE;
		r->step = r->fwd_started > 0 ? r->fwd_started - 1 : 0;
	}
	r->state = r->phase == SAGA_PHASE_ACTION ? SAGA_RUNNING : SAGA_COMPENSATING;
	int rc = record(e, in, SAGA_EVENT_OPERATOR, acted_on, acted_phase, 0, SAGA_OUTCOME_NONE,
	                names[op]);
	if (rc == SAGA_OK)
		rc = record_state(e, in, "resumed by an operator");
	return finish_command(e, in, temp, true, rc);
}

/* Cancel and the operator verbs: find the instance (in memory, or loaded
 * for the command), check that it accepts the command, and carry it out. */
static int command(saga_engine *e, int64_t id, enum op op)
{
	if (!e)
		return SAGA_EINVAL;
	pthread_mutex_lock(&e->mu);
	inst *in = NULL;
	bool temp = false;
	int rc = get_inst(e, &in, &temp, id, NULL);
	if (rc == SAGA_OK)
		rc = refusal(e, in, op);
	if (rc == SAGA_OK)
		rc = op == OP_CANCEL ? cancel(e, in, temp) : operator_cmd(e, in, temp, op);
	else if (in)
		release_temp(e, in, temp, rc);
	unlock_and_deliver(e);
	return rc;
}

int saga_cancel(saga_engine *e, int64_t id)
{
	return command(e, id, OP_CANCEL);
}

int saga_operator_retry(saga_engine *e, int64_t id)
{
	return command(e, id, OP_RETRY);
}

int saga_operator_skip(saga_engine *e, int64_t id)
{
	return command(e, id, OP_SKIP);
}

int saga_operator_resume(saga_engine *e, int64_t id)
{
	return command(e, id, OP_RESUME);
}
