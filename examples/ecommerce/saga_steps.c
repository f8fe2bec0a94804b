/* The "order" saga: its steps and what each one asks of the services.
 *
 *   create_order       compensatable  order_create        / order_cancel (+ a cancellation message)
 *   reserve_inventory  compensatable  inventory_reserve   / inventory_release
 *   charge_payment     compensatable  payment_charge      / payment_refund
 *   schedule_shipping  PIVOT          shipping_schedule
 *   ship_goods         retriable      inventory_ship      (reserved -> shipped)
 *   hand_to_carrier    retriable      shipping_commit     (the shipment can no longer be cancelled)
 *   send_confirmation  retriable      notification_send
 *   confirm_order      retriable      order_confirm
 *
 * The goods leave the warehouse only after the pivot, so a rolled-back order
 * never has shipped goods and stock is conserved (initial = available +
 * reserved + shipped) whatever fails.
 * SPDX-License-Identifier: MIT
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "app.h"

saga_step_result ecom_step_result(saga_step_ctx *ctx, int rc, const char *msg)
{
	if (rc == ECOM_OK)
		return SAGA_STEP_OK;
	if (rc == ECOM_REFUSED) {
		saga_step_set_error(ctx, msg && *msg ? msg : "refused");
		return SAGA_STEP_FAIL;
	}
	/* ECOM_TRANSIENT, SAGA_EBUSY, or the service's store failing: from the
	 * saga's point of view all of these may succeed on another attempt with
	 * the same key. */
	char buf[ECOM_MSG_MAX + 64];
	if (msg && *msg)
		snprintf(buf, sizeof buf, "%s", msg);
	else
		snprintf(buf, sizeof buf, "%s",
		         rc == ECOM_TRANSIENT ? "transient failure" : saga_strerror(rc));
	saga_step_set_error(ctx, buf);
	return SAGA_STEP_RETRY;
}

/* The order as the saga's context holds it; release with ecom_order_clear. */
static saga_step_result ctx_order(saga_step_ctx *ctx, ecom_order *o)
{
	char msg[ECOM_MSG_MAX];
	int rc = ecom_order_from_json(o, saga_step_context(ctx), msg, sizeof msg);
	if (rc == SAGA_ENOMEM) {
		saga_step_set_error(ctx, "out of memory");
		return SAGA_STEP_RETRY;
	}
	if (rc != 0) {
		saga_step_set_error(ctx, msg);
		return SAGA_STEP_FAIL;
	}
	return SAGA_STEP_OK;
}

/* The order id written by create_order; 0 if missing. */
static int64_t ctx_order_id(saga_step_ctx *ctx)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(saga_step_context(ctx), "order_id");
	return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : 0;
}

static saga_step_result no_order_id(saga_step_ctx *ctx)
{
	saga_step_set_error(ctx, "the saga context holds no order_id");
	return SAGA_STEP_FAIL;
}

/* The order id and the order (release with ecom_order_clear) for a step
 * after create_order: SAGA_STEP_OK, or the step's answer when the context
 * lacks either. */
static saga_step_result ctx_order_and_id(saga_step_ctx *ctx, int64_t *id, ecom_order *o)
{
	*id = ctx_order_id(ctx);
	if (*id <= 0)
		return no_order_id(ctx);
	return ctx_order(ctx, o);
}

/* ---- create_order ---- */

static saga_step_result create_order(saga_step_ctx *ctx, void *user)
{
	ecom_app *app = user;
	ecom_order o;
	saga_step_result r = ctx_order(ctx, &o);
	if (r != SAGA_STEP_OK)
		return r;
	char msg[ECOM_MSG_MAX];
	int64_t id = 0;
	int rc = order_create(app->order, saga_step_key(ctx), &o, &id, msg, sizeof msg);
	ecom_order_clear(&o);
	r = ecom_step_result(ctx, rc, msg);
	if (r == SAGA_STEP_OK)
		saga_step_put(ctx, "order_id", cJSON_CreateNumber((double)id));
	return r;
}

/* Why the saga rolls back: the last action attempt that did not succeed. */
typedef struct why {
	char text[ECOM_TEXT_MAX];
} why;

static int last_failure(const saga_event *ev, void *user)
{
	why *w = user;
	if (ev->type == SAGA_EVENT_ATTEMPT_END && ev->phase == SAGA_PHASE_ACTION &&
	    ev->outcome != SAGA_OUTCOME_OK && ev->outcome != SAGA_OUTCOME_NONE &&
	    ev->outcome != SAGA_OUTCOME_PENDING)
		snprintf(w->text, sizeof w->text, "%s: %.200s",
		         ev->step_name ? ev->step_name : "step",
		         ev->detail[0] ? ev->detail : saga_outcome_name(ev->outcome));
	return 0;
}

/* The order becomes CANCELLED when the customer cancelled the saga, FAILED
 * otherwise (with the failure that rolled it back), and the customer gets a
 * cancellation message. */
static saga_step_result cancel_order(saga_step_ctx *ctx, void *user)
{
	ecom_app *app = user;
	saga_instance_info info;
	memset(&info, 0, sizeof info);
	int rc = saga_get(app->engine, &info, saga_step_instance(ctx));
	if (rc != SAGA_OK)
		return ecom_step_result(ctx, rc, "cannot read the saga's reason");
	int failed = info.reason != SAGA_REASON_CANCEL;
	why w = { "" };
	if (failed && saga_history(app->engine, info.id, last_failure, &w) != SAGA_OK)
		w.text[0] = '\0';
	char reason[ECOM_TEXT_MAX];
	if (!failed)
		snprintf(reason, sizeof reason, "cancelled by the customer");
	else if (info.reason == SAGA_REASON_TIMEOUT)
		snprintf(reason, sizeof reason, "timed out%s%.200s", w.text[0] ? ": " : "", w.text);
	else
		snprintf(reason, sizeof reason, "%s", w.text[0] ? w.text : "failed");
	char msg[ECOM_MSG_MAX];
	rc = order_cancel(app->order, saga_step_action_key(ctx), failed, reason, msg, sizeof msg);
	if (rc != ECOM_OK)
		return ecom_step_result(ctx, rc, msg);
	int64_t id = ctx_order_id(ctx);
	if (id <= 0) /* create_order's outcome was unknown: no order to write about */
		return SAGA_STEP_OK;
	const cJSON *ch = cJSON_GetObjectItemCaseSensitive(saga_step_context(ctx), "channel");
	int channel = cJSON_IsString(ch) ? ecom_channel_parse(ch->valuestring) : -1;
	rc = notification_send(app->notification, saga_step_key(ctx), id,
	                       channel < 0 ? ECOM_CHANNEL_EMAIL : channel,
	                       ECOM_MESSAGE_CANCELLATION, NULL, msg, sizeof msg);
	/* A compensation must not give up on a refusal: there is nothing else
	 * to undo, the order is already ended. */
	return rc == ECOM_REFUSED ? SAGA_STEP_OK : ecom_step_result(ctx, rc, msg);
}

/* ---- reserve_inventory ---- */

static saga_step_result reserve_inventory(saga_step_ctx *ctx, void *user)
{
	ecom_app *app = user;
	int64_t id;
	ecom_order o;
	saga_step_result r = ctx_order_and_id(ctx, &id, &o);
	if (r != SAGA_STEP_OK)
		return r;
	char msg[ECOM_MSG_MAX];
	int rc = inventory_reserve(app->inventory, saga_step_key(ctx), id, o.items, o.nitems, msg,
	                           sizeof msg);
	ecom_order_clear(&o);
	return ecom_step_result(ctx, rc, msg);
}

static saga_step_result release_inventory(saga_step_ctx *ctx, void *user)
{
	ecom_app *app = user;
	char msg[ECOM_MSG_MAX];
	int rc = inventory_release(app->inventory, saga_step_action_key(ctx), msg, sizeof msg);
	return ecom_step_result(ctx, rc, msg);
}

/* ---- charge_payment ---- */

static saga_step_result charge_payment(saga_step_ctx *ctx, void *user)
{
	ecom_app *app = user;
	int64_t id;
	ecom_order o;
	saga_step_result r = ctx_order_and_id(ctx, &id, &o);
	if (r != SAGA_STEP_OK)
		return r;
	char msg[ECOM_MSG_MAX];
	int64_t charge = 0;
	int rc = payment_charge(app->payment, saga_step_key(ctx), id, o.customer, o.total, o.total,
	                        &charge, msg, sizeof msg);
	ecom_order_clear(&o);
	r = ecom_step_result(ctx, rc, msg);
	if (r == SAGA_STEP_OK)
		saga_step_put(ctx, "charge_id", cJSON_CreateNumber((double)charge));
	return r;
}

static saga_step_result refund_payment(saga_step_ctx *ctx, void *user)
{
	ecom_app *app = user;
	char msg[ECOM_MSG_MAX];
	int rc = payment_refund(app->payment, saga_step_action_key(ctx), msg, sizeof msg);
	return ecom_step_result(ctx, rc, msg);
}

/* ---- schedule_shipping: the pivot ---- */

static saga_step_result schedule_shipping(saga_step_ctx *ctx, void *user)
{
	ecom_app *app = user;
	int64_t id;
	ecom_order o;
	saga_step_result r = ctx_order_and_id(ctx, &id, &o);
	if (r != SAGA_STEP_OK)
		return r;
	char msg[ECOM_MSG_MAX];
	ecom_shipment sh;
	memset(&sh, 0, sizeof sh);
	int rc = shipping_schedule(app->shipping, saga_step_key(ctx), id, o.shipping, o.address,
	                           &sh, msg, sizeof msg);
	ecom_order_clear(&o);
	r = ecom_step_result(ctx, rc, msg);
	if (r == SAGA_STEP_OK) {
		saga_step_put(ctx, "carrier", cJSON_CreateString(sh.carrier));
		saga_step_put(ctx, "tracking", cJSON_CreateString(sh.tracking));
		saga_step_put(ctx, "delivery_date", cJSON_CreateString(sh.delivery_date));
	}
	return r;
}

/* ---- after the pivot: retried until they succeed ---- */

static saga_step_result ship_goods(saga_step_ctx *ctx, void *user)
{
	ecom_app *app = user;
	int64_t id = ctx_order_id(ctx);
	if (id <= 0)
		return no_order_id(ctx);
	char msg[ECOM_MSG_MAX];
	int rc = inventory_ship(app->inventory, saga_step_key(ctx), id, msg, sizeof msg);
	return ecom_step_result(ctx, rc, msg);
}

static saga_step_result hand_to_carrier(saga_step_ctx *ctx, void *user)
{
	ecom_app *app = user;
	int64_t id = ctx_order_id(ctx);
	if (id <= 0)
		return no_order_id(ctx);
	char msg[ECOM_MSG_MAX];
	int rc = shipping_commit(app->shipping, saga_step_key(ctx), id, msg, sizeof msg);
	return ecom_step_result(ctx, rc, msg);
}

static saga_step_result send_confirmation(saga_step_ctx *ctx, void *user)
{
	ecom_app *app = user;
	int64_t id = ctx_order_id(ctx);
	if (id <= 0)
		return no_order_id(ctx);
	const cJSON *ch = cJSON_GetObjectItemCaseSensitive(saga_step_context(ctx), "channel");
	int channel = cJSON_IsString(ch) ? ecom_channel_parse(ch->valuestring) : -1;
	char msg[ECOM_MSG_MAX];
	int rc = notification_send(app->notification, saga_step_key(ctx), id,
	                           channel < 0 ? ECOM_CHANNEL_EMAIL : channel,
	                           ECOM_MESSAGE_CONFIRMATION, NULL, msg, sizeof msg);
	return ecom_step_result(ctx, rc, msg);
}

static saga_step_result confirm_order(saga_step_ctx *ctx, void *user)
{
	ecom_app *app = user;
	int64_t id = ctx_order_id(ctx);
	if (id <= 0)
		return no_order_id(ctx);
	char msg[ECOM_MSG_MAX];
	int rc = order_confirm(app->order, saga_step_key(ctx), id, msg, sizeof msg);
	return ecom_step_result(ctx, rc, msg);
}

int ecom_saga_definition(saga_definition **out, ecom_app *app)
{
	const saga_step_spec steps[] = {
		{ STEP_CREATE_ORDER, SAGA_STEP_COMPENSATABLE, create_order, cancel_order, app },
		{ STEP_RESERVE, SAGA_STEP_COMPENSATABLE, reserve_inventory, release_inventory,
		  app },
		{ STEP_CHARGE, SAGA_STEP_COMPENSATABLE, charge_payment, refund_payment, app },
		{ STEP_SCHEDULE, SAGA_STEP_PIVOT, schedule_shipping, NULL, app },
		{ STEP_SHIP_GOODS, SAGA_STEP_RETRIABLE, ship_goods, NULL, app },
		{ STEP_HAND_OVER, SAGA_STEP_RETRIABLE, hand_to_carrier, NULL, app },
		{ STEP_NOTIFY, SAGA_STEP_RETRIABLE, send_confirmation, NULL, app },
		{ STEP_CONFIRM, SAGA_STEP_RETRIABLE, confirm_order, NULL, app },
	};
	saga_definition *def = NULL;
	*out = NULL;
	int rc = saga_definition_new(&def, ECOM_SAGA_NAME, ECOM_SAGA_VERSION);
	for (size_t i = 0; rc == SAGA_OK && i < sizeof steps / sizeof steps[0]; i++)
		rc = saga_definition_add_step(def, &steps[i]);
	if (rc != SAGA_OK) {
		saga_definition_free(def);
		return rc;
	}
	*out = def;
	return SAGA_OK;
}
