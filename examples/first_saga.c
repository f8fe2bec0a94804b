/* A first saga: book a trip in three steps. Built by meson so it cannot rot;
 * docs/getting-started.md walks through it. SPDX-License-Identifier: MIT */
#include <saga.h>
#include <cjson/cJSON.h>
#include <stdio.h>

static saga_step_result book_hotel(saga_step_ctx *ctx, void *user)
{
	printf("book hotel   (key %s)\n", saga_step_key(ctx));
	saga_step_put(ctx, "hotel", cJSON_CreateString("H-42"));
	return SAGA_STEP_OK;
}

static saga_step_result cancel_hotel(saga_step_ctx *ctx, void *user)
{
	printf("cancel hotel (key %s)\n", saga_step_key(ctx));
	return SAGA_STEP_OK;
}

static saga_step_result charge_card(saga_step_ctx *ctx, void *user)
{
	printf("charge card, attempt %u\n", (unsigned)saga_step_attempt(ctx));
	return SAGA_STEP_OK; /* the pivot: after it, only forward */
}

static saga_step_result send_email(saga_step_ctx *ctx, void *user)
{
	printf("send email\n");
	return SAGA_STEP_OK;
}

int main(int argc, char **argv)
{
	saga_options opts = SAGA_OPTIONS_INIT;
	opts.path = argc > 1 ? argv[1] : "first-saga.db";
	saga_engine *engine;
	char err[256];
	if (saga_engine_open(&engine, &opts, err, sizeof(err)) != SAGA_OK) {
		fprintf(stderr, "open: %s\n", err);
		return 1;
	}
	saga_definition *def;
	saga_definition_new(&def, "trip", 1);
	saga_step_spec steps[] = {
		{ "hotel", SAGA_STEP_COMPENSATABLE, book_hotel, cancel_hotel, NULL },
		{ "payment", SAGA_STEP_PIVOT, charge_card, NULL, NULL },
		{ "email", SAGA_STEP_RETRIABLE, send_email, NULL, NULL },
	};
	for (size_t i = 0; i < 3; i++)
		saga_definition_add_step(def, &steps[i]);
	int rc = saga_engine_register(engine, def);
	saga_definition_free(def);
	int64_t id;
	if (rc == SAGA_OK)
		rc = saga_start(engine, &id, NULL, "trip", NULL, NULL);
	if (rc == SAGA_OK)
		rc = saga_run_until_idle(engine); /* also resumes unfinished sagas */
	saga_instance_info info;
	if (rc == SAGA_OK && (rc = saga_get(engine, &info, id)) == SAGA_OK)
		printf("saga %lld: %s\n", (long long)id, saga_state_name(info.state));
	if (rc != SAGA_OK)
		fprintf(stderr, "error: %s\n", saga_engine_errmsg(engine));
	saga_engine_close(engine);
	return rc == SAGA_OK ? 0 : 1;
}
