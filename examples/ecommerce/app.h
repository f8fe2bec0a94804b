/*
 * The `ecommerce` binary's own pieces: the "order" saga definition over the
 * five services (saga_steps.c), the libsaga wiring (app.c) and the
 * rendering (output.c) that the commands share.
 * SPDX-License-Identifier: MIT
 */
#ifndef ECOMMERCE_APP_H
#define ECOMMERCE_APP_H

#include <cjson/cJSON.h>

#include "cli.h"
#include "services.h"

#define ECOM_SAGA_NAME    "order"
#define ECOM_SAGA_VERSION 1

/* Step names, as the policy file and the history call them. */
#define STEP_CREATE_ORDER "create_order"
#define STEP_RESERVE      "reserve_inventory"
#define STEP_CHARGE       "charge_payment"
#define STEP_SCHEDULE     "schedule_shipping"
#define STEP_SHIP_GOODS   "ship_goods"
#define STEP_HAND_OVER    "hand_to_carrier"
#define STEP_NOTIFY       "send_confirmation"
#define STEP_CONFIRM      "confirm_order"

/* The services and the engine a run works with. The step callbacks get a
 * pointer to it as their `user`; every member is borrowed by them. */
typedef struct ecom_app {
	char dir[4096];
	order_svc *order;
	inventory_svc *inventory;
	payment_svc *payment;
	shipping_svc *shipping;
	notification_svc *notification;
	ecom_faults *faults;
	saga_engine *engine;
} ecom_app;

/* Builds the "order" definition (steps only; policies come from the JSON
 * file). The callbacks use `app`, which must outlive the engine's use of
 * the definition. */
int ecom_saga_definition(saga_definition **out, ecom_app *app);

/* Maps a service answer to a step result (and sets the step's error):
 * ECOM_OK -> OK, ECOM_REFUSED -> FAIL, everything else -> RETRY. */
saga_step_result ecom_step_result(saga_step_ctx *ctx, int rc, const char *msg);

/* Opening the services and the engine, and driving it (app.c, whose head
 * comment gives the order). */

/* How app_open_engine opens the engine. */
typedef struct engine_cfg {
	unsigned int workers;
	unsigned int max_in_flight;
	uint64_t seed;
	int with_saga; /* 1: register the definition with its policies;
	                         2: without them (queries that only need step names) */
} engine_cfg;

void path_in(char *buf, size_t size, const char *dir, const char *file);
int data_present(const char *dir);
int store_present(const char *dir);
int data_ready(const char *dir, const char *cmd);
void app_close(ecom_app *app);
int app_open_services(ecom_app *app, const char *cmd);
/* Opens app->dir/saga.db as app->engine and, with cfg->with_saga,
 * registers the "order" saga. Exit code (EXIT_USAGE for a bad policy
 * file). */
int app_open_engine(ecom_app *app, const globals *g, const engine_cfg *cfg, const char *cmd);
/* What a command that runs sagas does before it writes anything: reads the
 * fault variables of the environment into app->faults (which must be set),
 * checks that --data names a seeded directory and that the policy file is
 * valid, then opens the services. Exit code (EXIT_USAGE, with a message,
 * for bad input). The engine is opened after, with app_open_engine. */
int app_open(ecom_app *app, const globals *g, const char *cmd);
int is_final(saga_state s);
int is_unfinished(saga_state s);
int drive(saga_engine *e, int (*done)(saga_engine *, void *), void *user, uint64_t wait_ms);

/* Text and JSON rendering (output.c). */

/* Prints j on stdout and frees it (takes ownership; NULL prints nothing). */
void print_json(cJSON *j);
/* Prints the engine's metrics (flags as saga_metrics_write) on stdout in the
 * Prometheus text format; the exit code, after a message on failure. */
int print_metrics(saga_engine *e, unsigned int flags, const char *cmd);
/* Cents as "12.34". */
void money(char *buf, size_t size, int64_t cents);
/* The order of a saga's business key; 0 when there is none. */
int64_t order_of_key(ecom_app *app, const char *key);
/* An order (with its shipment) as JSON, owned by the caller; JSON null for
 * none. */
cJSON *order_json(ecom_app *app, int64_t order_id);
void print_order_text(ecom_app *app, int64_t order_id);
/* A saga instance as JSON, owned by the caller. */
cJSON *saga_json(const saga_instance_info *in);
void print_saga_text(const saga_instance_info *in);
/* The saga and its order, as text (after the line `what`, may be NULL) or
 * JSON; the exit code says whether the saga completed. */
int print_outcome(ecom_app *app, globals *g, const saga_instance_info *in, int created,
                  const char *what);

/* A saga's history, for saga_history(): printed, or into arr. */
typedef struct hist {
	cJSON *arr; /* json mode */
	int json;
} hist;
int history_line(const saga_event *ev, void *user);

#endif
