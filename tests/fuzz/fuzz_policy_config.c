/* Fuzz target: the policy configuration parser (saga_policies_apply).
 *
 * Every input is applied as a policy document to a fresh four-step
 * definition, twice: once with no engine (breakers refused), once with an
 * engine opened lazily on a temporary store, so "breakers" sections and
 * references to existing breakers are parsed and applied too. Beyond "no
 * crash, no leak" the target checks the documented contract:
 *  - the answer is 0, SAGA_ECONFIG, SAGA_EINVAL or SAGA_ENOMEM;
 *  - on error the definition is unchanged ("checked before anything
 *    changes"), and err->key / err->message are terminated strings;
 *  - a NUL byte anywhere but as the last byte (a counted terminator) is
 *    refused: nothing after it is dropped silently;
 *  - a document accepted without an engine, applied again to its result,
 *    is accepted and changes nothing (applying is idempotent).
 * A successful apply with an engine creates breakers, which would make the
 * next input behave differently, so the engine is reopened after one.
 *
 * SPDX-License-Identifier: MIT */
#include "fuzz.h"

#include "internal.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static saga_step_result step_ok(saga_step_ctx *ctx, void *user)
{
	(void)ctx;
	(void)user;
	return SAGA_STEP_OK;
}

static saga_definition *make_definition(void)
{
	static const saga_step_spec steps[] = {
		{ "reserve", SAGA_STEP_COMPENSATABLE, step_ok, step_ok, NULL },
		{ "pay", SAGA_STEP_COMPENSATABLE, step_ok, step_ok, NULL },
		{ "ship", SAGA_STEP_PIVOT, step_ok, NULL, NULL },
		{ "notify", SAGA_STEP_RETRIABLE, step_ok, NULL, NULL },
	};
	static const saga_retry_policy notify_retry = { 0, 60000, SAGA_BACKOFF_LINEAR, 50,
		                                        0, 2.0,   SAGA_JITTER_NONE };
	saga_definition *def = NULL;

	if (saga_definition_new(&def, "order", 1) != 0)
		return NULL;
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		if (saga_definition_add_step(def, &steps[i]) != 0) {
			saga_definition_free(def);
			return NULL;
		}
	}
	/* Some policies already set, so that "keeps the value in effect"
	 * paths (one timeout given, a reserve without a deadline) are taken. */
	if (saga_definition_set_timeout(def, NULL, 1000, 5000) != 0 ||
	    saga_definition_set_timeout(def, "ship", 0, 7000) != 0 ||
	    saga_definition_set_retry(def, "notify", &notify_retry) != 0 ||
	    saga_definition_set_breaker(def, "pay", "existing") != 0 ||
	    saga_definition_set_deadline(def, 60000, 10000) != 0) {
		saga_definition_free(def);
		return NULL;
	}
	return def;
}

/* ---- comparing definitions' policies ---------------------------------- */

static bool same_retry(const saga_retry_policy *a, const saga_retry_policy *b)
{
	return a->max_attempts == b->max_attempts && a->max_duration_ms == b->max_duration_ms &&
	       a->backoff == b->backoff && a->base_ms == b->base_ms && a->cap_ms == b->cap_ms &&
	       a->multiplier == b->multiplier && a->jitter == b->jitter;
}

static bool same_policy(const saga_step_policy *a, const saga_step_policy *b)
{
	if (a->has_retry != b->has_retry || (a->has_retry && !same_retry(&a->retry, &b->retry)))
		return false;
	if (a->has_comp_retry != b->has_comp_retry ||
	    (a->has_comp_retry && !same_retry(&a->comp_retry, &b->comp_retry)))
		return false;
	if (a->has_timeout != b->has_timeout ||
	    (a->has_timeout &&
	     (a->timeout_ms != b->timeout_ms || a->comp_timeout_ms != b->comp_timeout_ms)))
		return false;
	if ((a->breaker == NULL) != (b->breaker == NULL))
		return false;
	return a->breaker == NULL || strcmp(a->breaker, b->breaker) == 0;
}

static bool same_policies(const saga_definition *a, const saga_definition *b)
{
	if (a->nsteps != b->nsteps || a->deadline_ms != b->deadline_ms ||
	    a->comp_reserve_ms != b->comp_reserve_ms || !same_policy(&a->defaults, &b->defaults))
		return false;
	for (size_t i = 0; i < a->nsteps; i++)
		if (strcmp(a->steps[i].name, b->steps[i].name) != 0 ||
		    !same_policy(&a->steps[i].policy, &b->steps[i].policy))
			return false;
	return true;
}

static void check_error(int rc, const saga_config_error *err)
{
	FUZZ_ASSERT(rc == 0 || rc == SAGA_ECONFIG || rc == SAGA_EINVAL || rc == SAGA_ENOMEM,
	            "saga_policies_apply returned an undocumented code");
	FUZZ_ASSERT(memchr(err->key, '\0', sizeof(err->key)) != NULL, "err.key not terminated");
	FUZZ_ASSERT(memchr(err->message, '\0', sizeof(err->message)) != NULL,
	            "err.message not terminated");
	FUZZ_ASSERT(err->line >= 0 && err->column >= 0, "negative error position");
	if (rc == 0)
		FUZZ_ASSERT(err->key[0] == '\0' && err->message[0] == '\0' && err->line == 0,
		            "an error is reported on success");
	else if (rc == SAGA_ECONFIG)
		FUZZ_ASSERT(err->message[0] != '\0', "SAGA_ECONFIG without a message");
}

/* ---- the engine (for "breakers") -------------------------------------- */

static char tmp_dir[256];
static char store_path[300];
static saga_engine *engine;

static void engine_close(void)
{
	saga_engine_close(engine);
	engine = NULL;
}

static void cleanup(void)
{
	char p[320];

	engine_close();
	if (tmp_dir[0] == '\0')
		return;
	unlink(store_path);
	snprintf(p, sizeof(p), "%s-wal", store_path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", store_path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-lock", store_path);
	unlink(p);
	rmdir(tmp_dir);
}

static saga_engine *engine_get(void)
{
	saga_options o = SAGA_OPTIONS_INIT;
	saga_breaker_config bc = SAGA_BREAKER_CONFIG_INIT;
	char msg[256];

	if (engine != NULL)
		return engine;
	if (tmp_dir[0] == '\0') {
		const char *base = getenv("TMPDIR");

		snprintf(tmp_dir, sizeof(tmp_dir), "%s/saga-fuzz-XXXXXX",
		         base != NULL && *base != '\0' ? base : "/tmp");
		if (mkdtemp(tmp_dir) == NULL) {
			perror("mkdtemp");
			abort();
		}
		snprintf(store_path, sizeof(store_path), "%s/store.db", tmp_dir);
		atexit(cleanup);
	}
	o.path = store_path;
	o.durability = SAGA_DURABILITY_NORMAL;
	o.seed = 1;
	if (saga_engine_open(&engine, &o, msg, sizeof(msg)) != 0) {
		fprintf(stderr, "fuzz_policy_config: cannot open the engine: %s\n", msg);
		abort();
	}
	/* A breaker the documents can refer to, or try to redefine. */
	if (saga_engine_add_breaker(engine, "existing", &bc) != 0)
		abort();
	return engine;
}

/* ---- the target ------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *json = (const char *)data;
	saga_definition *def, *before;
	saga_config_error err;
	int rc;

	/* 1. No engine: "breakers" is refused, the rest is applied. */
	def = make_definition();
	before = make_definition();
	if (def == NULL || before == NULL)
		abort();
	memset(&err, 0x5a, sizeof(err));
	rc = saga_policies_apply(NULL, def, json, size, &err);
	check_error(rc, &err);
	/* No byte is dropped silently: a NUL anywhere but as the counted
	 * terminator (the last byte) refuses the document. */
	const char *nul = size > 0 ? memchr(json, '\0', size) : NULL;
	FUZZ_ASSERT(nul == NULL || nul == json + size - 1 || rc != 0,
	            "a document with a NUL byte before its end was accepted");
	if (rc != 0) {
		FUZZ_ASSERT(same_policies(def, before),
		            "a refused document changed the definition");
	} else {
		saga_definition *once = NULL;

		if (saga_definition_clone(&once, def, &def->alloc) != 0)
			abort();
		rc = saga_policies_apply(NULL, def, json, size, &err);
		check_error(rc, &err);
		FUZZ_ASSERT(rc == 0, "a document accepted once is refused the second time");
		FUZZ_ASSERT(same_policies(def, once),
		            "applying a document twice is not idempotent");
		saga_definition_free(once);
	}
	/* With no definition: only "breakers" may be given, and needs an engine. */
	rc = saga_policies_apply(NULL, NULL, json, size, &err);
	check_error(rc, &err);
	saga_definition_free(def);

	/* 2. With an engine. */
	def = make_definition();
	if (def == NULL)
		abort();
	rc = saga_policies_apply(engine_get(), def, json, size, &err);
	check_error(rc, &err);
	if (rc != 0) {
		FUZZ_ASSERT(same_policies(def, before),
		            "a refused document changed the definition");
	} else {
		/* Breakers attached to steps exist on the engine now. */
		for (size_t i = 0; i < def->nsteps; i++) {
			const char *b = def->steps[i].policy.breaker;

			FUZZ_ASSERT(b == NULL || saga_engine_breaker(engine, b) != NULL,
			            "a step refers to a breaker the engine does not have");
		}
		/* Those breakers would change how the next input is checked. */
		engine_close();
	}
	saga_definition_free(def);
	saga_definition_free(before);
	return 0;
}
