/* The step context: what a step callback can read and write
 * (saga_step_*). SPDX-License-Identifier: MIT */
#include "engine_int.h"

int64_t saga_step_instance(const saga_step_ctx *c)
{
	return c ? c->in->row.id : 0;
}

const char *saga_step_name(const saga_step_ctx *c)
{
	return c ? c->sd->name : NULL;
}

saga_phase saga_step_phase(const saga_step_ctx *c)
{
	return c ? c->phase : SAGA_PHASE_ACTION;
}

uint32_t saga_step_attempt(const saga_step_ctx *c)
{
	return c ? c->in->row.attempt : 0;
}

const char *saga_step_key(const saga_step_ctx *c)
{
	return c ? c->key : NULL;
}

const char *saga_step_action_key(const saga_step_ctx *c)
{
	return c ? c->action_key : NULL;
}

const cJSON *saga_step_context(const saga_step_ctx *c)
{
	return c ? c->in->context : NULL;
}

int saga_step_put(saga_step_ctx *c, const char *key, cJSON *value)
{
	if (!c || !key || !*key || !value) {
		cJSON_Delete(value);
		return SAGA_EINVAL;
	}
	if (!c->puts && !(c->puts = cJSON_CreateObject())) {
		cJSON_Delete(value);
		return SAGA_ENOMEM;
	}
	if (cJSON_GetObjectItemCaseSensitive(c->puts, key)) {
		if (!cJSON_ReplaceItemInObjectCaseSensitive(c->puts, key, value)) {
			cJSON_Delete(value);
			return SAGA_ENOMEM;
		}
		return SAGA_OK;
	}
	if (!cJSON_AddItemToObject(c->puts, key, value)) {
		cJSON_Delete(value);
		return SAGA_ENOMEM;
	}
	return SAGA_OK;
}

uint64_t saga_step_deadline(const saga_step_ctx *c)
{
	return c ? c->deadline : 0;
}

void saga_step_set_error(saga_step_ctx *c, const char *message)
{
	if (c && message)
		saga_fmt(c->err, sizeof(c->err), "%s", message);
}

const char *saga_step_business_key(const saga_step_ctx *c)
{
	return c && c->in->row.has_bkey ? c->in->row.bkey : NULL;
}

int64_t saga_step_fence(const saga_step_ctx *c)
{
	return c ? c->in->row.fence : 0;
}
