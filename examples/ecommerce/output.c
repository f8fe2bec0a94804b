/* Rendering for the commands: an order and its saga as text or JSON, a
 * saga's history, a command's outcome. SPDX-License-Identifier: MIT */
#include "app.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

void print_json(cJSON *j)
{
	char *s = cJSON_Print(j);
	if (s) {
		fputs(s, stdout);
		fputc('\n', stdout);
		free(s);
	}
	cJSON_Delete(j);
}

/* ---------------------------------------------------------------------- */
/* Order and saga presentation                                            */
/* ---------------------------------------------------------------------- */

static int write_stdout(const char *data, size_t len, void *user)
{
	(void)user;
	return fwrite(data, 1, len, stdout) == len ? 0 : -1;
}

int print_metrics(saga_engine *e, unsigned int flags, const char *cmd)
{
	if (saga_metrics_write(e, flags, SAGA_METRICS_PROMETHEUS, write_stdout, NULL) != SAGA_OK) {
		errorf("%s: metrics: %s", cmd, saga_engine_errmsg(e));
		return EXIT_FAIL;
	}
	return fflush(stdout) == 0 ? EXIT_OK : EXIT_FAIL;
}

void money(char *buf, size_t size, int64_t cents)
{
	const char *sign = cents < 0 ? "-" : "";
	uint64_t v = cents < 0 ? (uint64_t)(-(cents + 1)) + 1u : (uint64_t)cents;
	snprintf(buf, size, "%s%" PRIu64 ".%02" PRIu64, sign, v / 100u, v % 100u);
}

/* The order that belongs to a saga's business key; 0 if there is none. */
int64_t order_of_key(ecom_app *app, const char *key)
{
	int64_t id = 0;
	if (key && *key && order_find_by_ref(app->order, key, &id) == 0)
		return id;
	return 0;
}

cJSON *order_json(ecom_app *app, int64_t order_id)
{
	ecom_order_info oi;
	if (order_id <= 0 || order_get(app->order, order_id, &oi) != 0)
		return cJSON_CreateNull();
	cJSON *j = cJSON_CreateObject();
	cJSON_AddNumberToObject(j, "id", (double)oi.id);
	cJSON_AddStringToObject(j, "ref", oi.ref);
	cJSON_AddStringToObject(j, "customer", oi.customer);
	cJSON_AddStringToObject(j, "status", ecom_order_status_name(oi.status));
	cJSON_AddStringToObject(j, "reason", oi.reason);
	cJSON_AddNumberToObject(j, "total", (double)oi.total);
	cJSON_AddStringToObject(j, "currency", oi.currency);
	cJSON_AddNumberToObject(j, "items", (double)oi.nitems);
	cJSON_AddNumberToObject(j, "quantity", (double)oi.quantity);
	cJSON_AddStringToObject(j, "address", oi.address);
	cJSON_AddStringToObject(
	        j, "payment",
	        ecom_payment_method_name(oi.payment) ? ecom_payment_method_name(oi.payment) : "?");
	cJSON_AddStringToObject(j, "shipping",
	                        ecom_shipping_method_name(oi.shipping)
	                                ? ecom_shipping_method_name(oi.shipping)
	                                : "?");
	ecom_shipment sh;
	if (shipping_get(app->shipping, oi.id, &sh) == 0) {
		cJSON *s = cJSON_AddObjectToObject(j, "shipment");
		cJSON_AddStringToObject(s, "carrier", sh.carrier);
		cJSON_AddStringToObject(s, "tracking", sh.tracking);
		cJSON_AddStringToObject(s, "delivery_date", sh.delivery_date);
		cJSON_AddStringToObject(s, "status",
		                        ecom_shipment_status_name(sh.status)
		                                ? ecom_shipment_status_name(sh.status)
		                                : "?");
	}
	return j;
}

void print_order_text(ecom_app *app, int64_t order_id)
{
	ecom_order_info oi;
	if (order_id <= 0 || order_get(app->order, order_id, &oi) != 0) {
		printf("order:   none (the saga ended before the order was created)\n");
		return;
	}
	char total[32];
	money(total, sizeof total, oi.total);
	printf("order:   %" PRId64 " %s (customer %s, %zu item%s, %" PRId64
	       " unit%s, %s %s, %s, %s)\n",
	       oi.id, ecom_order_status_name(oi.status), oi.customer, oi.nitems,
	       oi.nitems == 1 ? "" : "s", oi.quantity, oi.quantity == 1 ? "" : "s", total,
	       oi.currency,
	       ecom_payment_method_name(oi.payment) ? ecom_payment_method_name(oi.payment) : "?",
	       ecom_shipping_method_name(oi.shipping) ? ecom_shipping_method_name(oi.shipping)
	                                              : "?");
	if (oi.reason[0])
		printf("reason:  %s\n", oi.reason);
	ecom_shipment sh;
	if (shipping_get(app->shipping, oi.id, &sh) == 0)
		printf("ship:    %s %s, delivery %s (%s)\n", sh.carrier, sh.tracking,
		       sh.delivery_date,
		       ecom_shipment_status_name(sh.status) ? ecom_shipment_status_name(sh.status)
		                                            : "?");
}

cJSON *saga_json(const saga_instance_info *in)
{
	cJSON *j = cJSON_CreateObject();
	cJSON_AddNumberToObject(j, "id", (double)in->id);
	cJSON_AddStringToObject(j, "key", in->business_key);
	cJSON_AddStringToObject(j, "state", saga_state_name(in->state));
	cJSON_AddStringToObject(j, "reason", saga_reason_name(in->reason));
	cJSON_AddStringToObject(j, "error", in->error);
	cJSON_AddNumberToObject(j, "step", in->step);
	cJSON_AddBoolToObject(j, "pivot_done", in->pivot_done);
	return j;
}

void print_saga_text(const saga_instance_info *in)
{
	printf("saga:    %" PRId64 " %s", in->id, saga_state_name(in->state));
	if (in->reason != SAGA_REASON_NONE)
		printf(" (%s)", saga_reason_name(in->reason));
	printf(", key %s\n", in->business_key);
	if (in->error[0] && in->state != SAGA_COMPLETED)
		printf("error:   %s\n", in->error);
}

int print_outcome(ecom_app *app, globals *g, const saga_instance_info *in, int created,
                  const char *what)
{
	int64_t oid = order_of_key(app, in->business_key);
	if (g->json) {
		cJSON *j = cJSON_CreateObject();
		cJSON_AddStringToObject(j, "key", in->business_key);
		cJSON_AddBoolToObject(j, "created", created);
		cJSON_AddItemToObject(j, "saga", saga_json(in));
		cJSON_AddItemToObject(j, "order", order_json(app, oid));
		print_json(j);
	} else {
		if (what)
			printf("%s\n", what);
		print_saga_text(in);
		print_order_text(app, oid);
	}
	return in->state == SAGA_COMPLETED ? EXIT_OK : EXIT_FAIL;
}

int history_line(const saga_event *ev, void *user)
{
	hist *h = user;
	time_t secs = (time_t)(ev->at_ms / 1000u);
	struct tm tm;
	gmtime_r(&secs, &tm);
	char when[32];
	strftime(when, sizeof when, "%H:%M:%S", &tm);
	if (h->json) {
		cJSON *e = cJSON_CreateObject();
		cJSON_AddNumberToObject(e, "seq", (double)ev->seq);
		cJSON_AddNumberToObject(e, "at_ms", (double)ev->at_ms);
		cJSON_AddStringToObject(e, "type", saga_event_type_name(ev->type));
		cJSON_AddStringToObject(e, "state", saga_state_name(ev->state));
		if (ev->step_name) {
			cJSON_AddStringToObject(e, "step", ev->step_name);
			cJSON_AddStringToObject(e, "phase",
			                        ev->phase == SAGA_PHASE_ACTION ? "action"
			                                                       : "compensation");
			cJSON_AddNumberToObject(e, "attempt", ev->attempt);
		}
		if (ev->outcome != SAGA_OUTCOME_NONE)
			cJSON_AddStringToObject(e, "outcome", saga_outcome_name(ev->outcome));
		cJSON_AddStringToObject(e, "detail", ev->detail);
		cJSON_AddItemToArray(h->arr, e);
		return 0;
	}
	printf("  %3" PRId64 " %s.%03u %-15s %-12s", ev->seq, when, (unsigned)(ev->at_ms % 1000u),
	       saga_event_type_name(ev->type), saga_state_name(ev->state));
	if (ev->step_name)
		printf(" %s/%s #%u", ev->step_name,
		       ev->phase == SAGA_PHASE_ACTION ? "action" : "compensation", ev->attempt);
	if (ev->outcome != SAGA_OUTCOME_NONE)
		printf(" %s", saga_outcome_name(ev->outcome));
	if (ev->detail[0])
		printf(" (%s)", ev->detail);
	printf("\n");
	return 0;
}
