/*
 * The `ecommerce` binary's own pieces: the "order" saga definition over the
 * five services (saga_steps.c) and what the commands share (main.c).
 * SPDX-License-Identifier: MIT
 */
#ifndef ECOMMERCE_APP_H
#define ECOMMERCE_APP_H

#include "services.h"

#define ECOM_SAGA_NAME "order"
#define ECOM_SAGA_VERSION 1

/* Step names, as the policy file and the history call them. */
#define STEP_CREATE_ORDER "create_order"
#define STEP_RESERVE "reserve_inventory"
#define STEP_CHARGE "charge_payment"
#define STEP_SCHEDULE "schedule_shipping"
#define STEP_SHIP_GOODS "ship_goods"
#define STEP_HAND_OVER "hand_to_carrier"
#define STEP_NOTIFY "send_confirmation"
#define STEP_CONFIRM "confirm_order"

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

#endif
