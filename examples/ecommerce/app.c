/*
 * How a program wires libsaga, which is what a reader of this example came
 * for. A command does it in this order:
 *
 *   1. app_open: check the input (fault variables, a seeded data directory,
 *      the policy file, tried on a scratch engine), then open the five
 *      services. Nothing is written before this succeeds.
 *   2. app_open_engine: saga_engine_open on DIR/saga.db (or the store
 *      --store names: another file, or a PostgreSQL URI) with a deferred
 *      start, then the "order" definition (its steps in saga_steps.c) with
 *      the retries, timeouts and breakers of the policy file
 *      (saga_policies_apply_file), saga_engine_register, and only then
 *      saga_engine_start: nothing runs before the saga is registered.
 *   3. saga_start (in the command), then drive(): saga_run_until_idle, and
 *      sleep until saga_next_due, until the command has what it waits for.
 *      `run` lets the engine's worker threads drive instead (cmd_run.c).
 *   4. app_close: the engine first (closing hands its unfinished sagas
 *      back to the store, where another process's engine takes them at
 *      once), then the services.
 *
 * Several commands may run at once on one data directory: each engine is
 * an owner of the store, runs what it starts, and takes over the sagas of
 * an engine that closed or died.
 * SPDX-License-Identifier: MIT
 */
#include "app.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef ECOM_POLICIES_DEFAULT
#define ECOM_POLICIES_DEFAULT "policies.json"
#endif

/* ---------------------------------------------------------------------- */
/* The data directory                                                     */
/* ---------------------------------------------------------------------- */

void path_in(char *buf, size_t size, const char *dir, const char *file)
{
	snprintf(buf, size, "%s/%s", dir, file);
}

/* 1 when the directory was seeded (holds order.db). */
int data_present(const char *dir)
{
	char p[4200];
	path_in(p, sizeof p, dir, "order.db");
	return file_exists(p);
}

/* The first service file missing from a seeded directory, or NULL: opening
 * a service creates its file, and a command must not do that. */
static const char *data_missing(const char *dir)
{
	static char name[32];
	for (int i = 0; i < ECOM_SERVICE_COUNT; i++) {
		char p[4200];
		snprintf(name, sizeof name, "%s.db", ecom_service_name(i));
		path_in(p, sizeof p, dir, name);
		if (!file_exists(p))
			return name;
	}
	return NULL;
}

/* The saga store's name: --store, or DIR/saga.db. */
static const char *store_name(const globals *g, const char *dir, char *buf, size_t size)
{
	if (g->store)
		return g->store;
	path_in(buf, size, dir, "saga.db");
	return buf;
}

/* 1 when there is a saga store to open: DIR/saga.db exists, or --store
 * names one (a named store is opened as it is, and made if need be). */
int store_present(const globals *g, const char *dir)
{
	char p[4200];
	return g->store || file_exists(store_name(g, dir, p, sizeof p));
}

/* Exit code after checking that `dir` is a seeded data directory (message
 * printed otherwise); nothing is opened. */
int data_ready(const char *dir, const char *cmd)
{
	if (!data_present(dir)) {
		errorf("%s: no data in %s (run `%s --data %s seed` first)", cmd, dir, prog, dir);
		return EXIT_USAGE;
	}
	const char *missing = data_missing(dir);
	if (missing) {
		errorf("%s: %s is not a complete data directory: %s is missing", cmd, dir, missing);
		return EXIT_USAGE;
	}
	return EXIT_OK;
}

/* ---------------------------------------------------------------------- */
/* The services (step 1, after the checks below)                          */
/* ---------------------------------------------------------------------- */

/* Opens the five services of a seeded directory. Exit code on failure. */
int app_open_services(ecom_app *app, const char *cmd)
{
	int ex = data_ready(app->dir, cmd);
	if (ex != EXIT_OK)
		return ex;
	char msg[ECOM_MSG_MAX] = "";
	int rc = order_open(&app->order, app->dir, msg, sizeof msg);
	if (rc == 0)
		rc = inventory_open(&app->inventory, app->dir, msg, sizeof msg);
	if (rc == 0)
		rc = payment_open(&app->payment, app->dir, msg, sizeof msg);
	if (rc == 0)
		rc = shipping_open(&app->shipping, app->dir, msg, sizeof msg);
	if (rc == 0)
		rc = notification_open(&app->notification, app->dir, msg, sizeof msg);
	if (rc != 0) {
		errorf("%s: cannot open the services in %s: %s", cmd, app->dir,
		       msg[0] ? msg : saga_strerror(rc));
		return EXIT_FAIL;
	}
	if (app->faults) {
		order_set_faults(app->order, app->faults);
		inventory_set_faults(app->inventory, app->faults);
		payment_set_faults(app->payment, app->faults);
		shipping_set_faults(app->shipping, app->faults);
		notification_set_faults(app->notification, app->faults);
	}
	return EXIT_OK;
}

/* ---------------------------------------------------------------------- */
/* The engine, with the saga and its policies (step 2)                    */
/* ---------------------------------------------------------------------- */

static void engine_log(saga_log_level level, const char *msg, void *user)
{
	(void)user;
	if (level >= SAGA_LOG_WARN)
		fprintf(stderr, "%s: engine: %s\n", prog, msg);
}

static const char *policies_path(const globals *g, const char *dir, char *buf, size_t size)
{
	if (g->policies)
		return g->policies;
	const char *env = getenv("ECOMMERCE_POLICIES");
	if (env && *env)
		return env;
	path_in(buf, size, dir, "policies.json");
	if (file_exists(buf))
		return buf;
	return ECOM_POLICIES_DEFAULT;
}

/* Starts an engine opened with deferred_start: its workers, and recovery. */
static int start_engine(saga_engine *e, const char *cmd)
{
	if (saga_engine_start(e) != SAGA_OK) {
		errorf("%s: cannot start the engine: %s", cmd, saga_engine_errmsg(e));
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

/* Opens the store `path` into *out; with cfg->with_saga, registers the
 * "order" saga with the policy file (found from app->dir). Exit code on
 * failure (EXIT_USAGE for a bad policy file). */
static int open_engine(saga_engine **out, ecom_app *app, const char *path, const globals *g,
                       const engine_cfg *cfg, const char *cmd)
{
	saga_options o = SAGA_OPTIONS_INIT;
	o.path = path;
	o.workers = cfg->workers;
	o.max_in_flight = cfg->max_in_flight;
	o.seed = cfg->seed;
	o.log = engine_log;
	o.log_level = SAGA_LOG_WARN;
	/* Nothing runs before saga_engine_start below: the saga and its
	 * breakers are registered first, so a restart finds every unfinished
	 * instance's definition already there. */
	o.deferred_start = 1;
	char err[512] = "";
	int rc = saga_engine_open(out, &o, err, sizeof err);
	if (rc != SAGA_OK) {
		/* Several processes share a store: busy means a process of an
		 * older libsaga holds it for itself, or another process has been
		 * stuck in its own open (stopped?) past the busy timeout; the
		 * engine's message says which. */
		if (rc == SAGA_EBUSY)
			errorf("%s: %s cannot be shared now: %s", cmd, path, err);
		else
			errorf("%s: cannot open %s: %s", cmd, path, err);
		return EXIT_FAIL;
	}
	if (!cfg->with_saga)
		return start_engine(*out, cmd);
	saga_definition *def = NULL;
	rc = ecom_saga_definition(&def, app);
	if (rc != SAGA_OK) {
		errorf("%s: cannot build the saga definition: %s", cmd, saga_strerror(rc));
		return EXIT_FAIL;
	}
	char pbuf[4200];
	const char *pp = policies_path(g, app->dir, pbuf, sizeof pbuf);
	saga_config_error ce;
	memset(&ce, 0, sizeof ce);
	rc = cfg->with_saga == 1 ? saga_policies_apply_file(*out, def, pp, &ce) : SAGA_OK;
	if (rc != SAGA_OK) {
		if (rc == SAGA_EIO)
			errorf("%s: cannot read the policy file %s (give one with --policies FILE)",
			       cmd, pp);
		else
			errorf("%s: policy file %s:%d:%d: %s%s%s", cmd, pp, ce.line, ce.column,
			       ce.key, ce.key[0] ? ": " : "", ce.message);
		saga_definition_free(def);
		return EXIT_USAGE;
	}
	rc = saga_engine_register(*out, def);
	saga_definition_free(def);
	if (rc != SAGA_OK) {
		errorf("%s: cannot register the saga: %s", cmd, saga_engine_errmsg(*out));
		return EXIT_FAIL;
	}
	return start_engine(*out, cmd);
}

int app_open_engine(ecom_app *app, const globals *g, const engine_cfg *cfg, const char *cmd)
{
	char p[4200];
	return open_engine(&app->engine, app, store_name(g, app->dir, p, sizeof p), g, cfg, cmd);
}

/* ---------------------------------------------------------------------- */
/* Checked before anything is written (step 1)                            */
/* ---------------------------------------------------------------------- */

/* Removes the files of a scratch directory, then the directory. */
static void remove_scratch(const char *dir)
{
	DIR *d = opendir(dir);
	if (d) {
		struct dirent *de;
		while ((de = readdir(d)) != NULL) {
			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			char p[4200 + 256];
			path_in(p, sizeof p, dir, de->d_name);
			unlink(p);
		}
		closedir(d);
	}
	rmdir(dir);
}

/* The policy file is checked before anything in the data directory is
 * opened for writing: applying it needs an engine (its breakers live on
 * one), and opening the real store would create it, or with workers start
 * resuming sagas. So it is applied to a scratch engine in a private
 * temporary directory, removed after. Exit code (EXIT_USAGE, with the
 * message, for a bad file). */
static int check_policies(ecom_app *app, const globals *g, const char *cmd)
{
	const char *tmp = getenv("TMPDIR");
	if (!tmp || !*tmp)
		tmp = "/tmp";
	char scratch[4200];
	int n = snprintf(scratch, sizeof scratch, "%s/ecommerce-policies.XXXXXX", tmp);
	if (n < 0 || (size_t)n >= sizeof scratch || !mkdtemp(scratch)) {
		errorf("%s: cannot check the policy file: no scratch directory in %s: %s", cmd, tmp,
		       n < 0 || (size_t)n >= sizeof scratch ? "path too long" : strerror(errno));
		return EXIT_FAIL;
	}
	saga_engine *e = NULL;
	engine_cfg ec = { 0, 0, 0, 1 };
	char path[4300];
	path_in(path, sizeof path, scratch, "saga.db");
	int ex = open_engine(&e, app, path, g, &ec, cmd);
	saga_engine_close(e);
	remove_scratch(scratch);
	return ex;
}

int app_open(ecom_app *app, const globals *g, const char *cmd)
{
	snprintf(app->dir, sizeof app->dir, "%s", g->data);
	char msg[ECOM_MSG_MAX];
	if (ecom_faults_from_env(app->faults, msg, sizeof msg) != 0) {
		errorf("%s: %s", cmd, msg);
		return EXIT_USAGE;
	}
	int ex = data_ready(app->dir, cmd);
	if (ex == EXIT_OK)
		ex = check_policies(app, g, cmd);
	if (ex == EXIT_OK)
		ex = app_open_services(app, cmd);
	return ex;
}

/* ---------------------------------------------------------------------- */
/* Driving the engine (step 3)                                            */
/* ---------------------------------------------------------------------- */

int is_final(saga_state s)
{
	return s == SAGA_COMPLETED || s == SAGA_COMPENSATED || s == SAGA_STUCK;
}

int is_unfinished(saga_state s)
{
	return s == SAGA_RUNNING || s == SAGA_WAITING || s == SAGA_COMPENSATING;
}

/* Caller-driven execution in real time: runs what is due, then sleeps until
 * the next timer, until done(user) says so or wait_ms passes. Returns 0,
 * SAGA_EBUSY on the time limit, or an engine error. */
int drive(saga_engine *e, int (*done)(saga_engine *, void *), void *user, uint64_t wait_ms)
{
	uint64_t end = wall_ms() + wait_ms;
	for (;;) {
		int rc = saga_run_until_idle(e);
		if (rc != SAGA_OK)
			return rc;
		int d = done(e, user);
		if (d < 0)
			return d;
		if (d)
			return SAGA_OK;
		uint64_t now = wall_ms();
		if (now >= end)
			return SAGA_EBUSY;
		uint64_t due = 0;
		if ((rc = saga_next_due(e, &due)) != SAGA_OK)
			return rc;
		uint64_t until = due && due < end ? due : end;
		uint64_t nap = until > now ? until - now : 0;
		if (nap > 200)
			nap = 200;
		if (!due && nap < 20)
			nap = 20;
		if (nap)
			sleep_ms(nap);
	}
}

/* ---------------------------------------------------------------------- */
/* Closing (step 4)                                                       */
/* ---------------------------------------------------------------------- */

void app_close(ecom_app *app)
{
	saga_engine_close(app->engine);
	app->engine = NULL;
	notification_close(app->notification);
	shipping_close(app->shipping);
	payment_close(app->payment);
	inventory_close(app->inventory);
	order_close(app->order);
	app->notification = NULL;
	app->shipping = NULL;
	app->payment = NULL;
	app->inventory = NULL;
	app->order = NULL;
	ecom_faults_free(app->faults);
	app->faults = NULL;
}
