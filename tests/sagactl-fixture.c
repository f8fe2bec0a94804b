/* A store for sagactl's tests, made by real runs with real callbacks.
 *
 *   sagactl-fixture make STORE
 *     runs "order" v1 (reserve: compensatable, charge: pivot, ship:
 *     retriable) to the end for: ok-1..ok-3 (COMPLETED), declined-1 (charge
 *     fails: COMPENSATED), stuck-comp-1 and stuck-comp-2 (charge fails and
 *     the reserve's compensation keeps failing: STUCK compensating) and
 *     stuck-ship-1 (the carrier keeps refusing: STUCK forward, past the
 *     pivot).
 *   sagactl-fixture serve STORE
 *     an engine with workers on the store whose services now all work: it
 *     takes what the pool offers (instances an operator retried), and
 *     starts live-1, whose reserve answers PENDING so that this process
 *     owns it, waiting; prints "ready ID" and runs until SIGTERM.
 * SPDX-License-Identifier: MIT */
#include <saga.h>

#include <cjson/cJSON.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static bool healed;

static bool flag(saga_step_ctx *ctx, const char *name)
{
	return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(saga_step_context(ctx), name));
}

static saga_step_result reserve(saga_step_ctx *ctx, void *user)
{
	return flag(ctx, "async") ? SAGA_STEP_PENDING : SAGA_STEP_OK;
}

static saga_step_result unreserve(saga_step_ctx *ctx, void *user)
{
	if (flag(ctx, "comp_fails") && !healed) {
		saga_step_set_error(ctx, "warehouse unreachable");
		return SAGA_STEP_RETRY;
	}
	return SAGA_STEP_OK;
}

static saga_step_result charge(saga_step_ctx *ctx, void *user)
{
	if (flag(ctx, "decline")) {
		saga_step_set_error(ctx, "card declined");
		return SAGA_STEP_FAIL;
	}
	return SAGA_STEP_OK;
}

static saga_step_result ship(saga_step_ctx *ctx, void *user)
{
	if (flag(ctx, "ship_down") && !healed) {
		saga_step_set_error(ctx, "carrier down");
		return SAGA_STEP_RETRY;
	}
	return SAGA_STEP_OK;
}

static int define(saga_engine *e)
{
	saga_definition *d;
	int rc = saga_definition_new(&d, "order", 1);
	if (rc)
		return rc;
	saga_step_spec steps[] = {
		{ "reserve", SAGA_STEP_COMPENSATABLE, reserve, unreserve, NULL },
		{ "charge", SAGA_STEP_PIVOT, charge, NULL, NULL },
		{ "ship", SAGA_STEP_RETRIABLE, ship, NULL, NULL },
	};
	for (size_t i = 0; i < 3 && rc == SAGA_OK; i++)
		rc = saga_definition_add_step(d, &steps[i]);
	saga_retry_policy p = { 2, 0, SAGA_BACKOFF_CONSTANT, 1, 1, 1.0, SAGA_JITTER_NONE };
	if (rc == SAGA_OK)
		rc = saga_definition_set_retry(d, NULL, &p);
	/* A retriable step retries without end by default: not this one. */
	if (rc == SAGA_OK)
		rc = saga_definition_set_retry(d, "ship", &p);
	if (rc == SAGA_OK)
		rc = saga_definition_set_compensation_retry(d, NULL, &p);
	if (rc == SAGA_OK)
		rc = saga_engine_register(e, d);
	saga_definition_free(d);
	return rc;
}

static int start(saga_engine *e, int64_t *id, const char *key, const char *input)
{
	cJSON *in = cJSON_Parse(input);
	int rc = in ? saga_start(e, id, NULL, "order", key, in) : SAGA_ENOMEM;
	cJSON_Delete(in);
	return rc;
}

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

int main(int argc, char **argv)
{
	if (argc != 3 || (strcmp(argv[1], "make") != 0 && strcmp(argv[1], "serve") != 0)) {
		fprintf(stderr, "usage: sagactl-fixture make|serve STORE\n");
		return 2;
	}
	bool serve = strcmp(argv[1], "serve") == 0;
	healed = serve;
	saga_options o = SAGA_OPTIONS_INIT;
	o.path = argv[2];
	o.workers = serve ? 2 : 0;
	o.lease_ms = 2000;
	saga_engine *e;
	char err[256];
	int rc = saga_engine_open(&e, &o, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "open: %s\n", err);
		return 1;
	}
	rc = define(e);
	int64_t id = 0;
	if (!serve) {
		static const char *const runs[][2] = {
			{ "ok-1", "{}" },
			{ "ok-2", "{}" },
			{ "ok-3", "{}" },
			{ "declined-1", "{\"decline\":true}" },
			{ "stuck-comp-1", "{\"decline\":true,\"comp_fails\":true}" },
			{ "stuck-comp-2", "{\"decline\":true,\"comp_fails\":true}" },
			{ "stuck-ship-1", "{\"ship_down\":true}" },
		};
		for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]) && rc == SAGA_OK; i++)
			rc = start(e, &id, runs[i][0], runs[i][1]);
		/* The retries are 1 ms apart: run until every instance has ended. */
		for (int round = 0; rc == SAGA_OK && round < 2000; round++) {
			int64_t counts[SAGA_STATE_COUNT];
			if ((rc = saga_run_until_idle(e)) || (rc = saga_counts(e, counts)))
				break;
			if (counts[SAGA_RUNNING] + counts[SAGA_WAITING] +
			            counts[SAGA_COMPENSATING] ==
			    0)
				break;
			usleep(2000);
		}
	} else {
		signal(SIGTERM, on_term);
		if (rc == SAGA_OK)
			rc = start(e, &id, "live-1", "{\"async\":true}");
		if (rc == SAGA_OK) {
			printf("ready %lld\n", (long long)id);
			fflush(stdout);
		}
		while (rc == SAGA_OK && !stop)
			usleep(10000);
	}
	if (rc)
		fprintf(stderr, "sagactl-fixture: %s\n", saga_engine_errmsg(e));
	saga_engine_close(e);
	return rc ? 1 : 0;
}
