/* Fuzz target: the e-commerce order input (examples/ecommerce).
 *
 * The bytes are parsed with cJSON_ParseWithLength, read with
 * ecom_order_from_json and checked with ecom_order_validate (for a known
 * and an unknown customer, with a full and with tiny message buffers).
 * Beyond "no crash, no leak" it checks:
 *  - the answers are the documented ones, and messages are terminated;
 *  - a valid order survives ecom_order_to_json -> text -> parse ->
 *    ecom_order_from_json unchanged, and is still valid (the round trip
 *    the `ecommerce` program relies on when it stores an order in a saga's
 *    context).
 *
 * SPDX-License-Identifier: MIT */
#include "fuzz.h"

#include "services.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static bool same_str(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

static void check_msg(const char *msg, size_t size)
{
	FUZZ_ASSERT(memchr(msg, '\0', size) != NULL, "message not terminated");
}

/* The order read back from its own JSON equals the original. */
static void round_trip(const ecom_order *o)
{
	char msg[ECOM_MSG_MAX];
	cJSON *j = ecom_order_to_json(o), *back;
	char *text;
	ecom_order o2;
	int rc;

	if (j == NULL)
		return; /* out of memory */
	text = cJSON_PrintUnformatted(j);
	cJSON_Delete(j);
	if (text == NULL)
		return;
	back = cJSON_Parse(text);
	cJSON_free(text);
	FUZZ_ASSERT(back != NULL, "ecom_order_to_json printed text cJSON cannot parse");
	rc = ecom_order_from_json(&o2, back, msg, sizeof(msg));
	FUZZ_ASSERT(rc == 0, "an order's own JSON is refused by ecom_order_from_json");
	FUZZ_ASSERT(same_str(o->ref, o2.ref) && same_str(o->customer, o2.customer) &&
	                    same_str(o->address, o2.address) && o->total == o2.total &&
	                    o->payment == o2.payment && o->shipping == o2.shipping &&
	                    o->nitems == o2.nitems,
	            "the order changed in a JSON round trip");
	/* A NULL currency means "USD" and is written as such. */
	FUZZ_ASSERT(same_str(o->currency ? o->currency : "USD", o2.currency),
	            "the currency changed in a JSON round trip");
	for (size_t i = 0; i < o->nitems; i++)
		FUZZ_ASSERT(same_str(o->items[i].sku, o2.items[i].sku) &&
		                    o->items[i].quantity == o2.items[i].quantity &&
		                    o->items[i].unit_price == o2.items[i].unit_price,
		            "an item changed in a JSON round trip");
	FUZZ_ASSERT(ecom_order_validate(&o2, 1, msg, sizeof(msg)) == 0,
	            "a valid order is refused after a JSON round trip");
	ecom_order_clear(&o2);
	cJSON_Delete(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char msg[ECOM_MSG_MAX], tiny[4];
	cJSON *json = cJSON_ParseWithLength((const char *)data, size);
	ecom_order o;
	int rc, valid;

	if (json == NULL)
		return 0;
	memset(msg, 0x5a, sizeof(msg));
	rc = ecom_order_from_json(&o, json, msg, sizeof(msg));
	check_msg(msg, sizeof(msg));
	FUZZ_ASSERT(rc == 0 || rc == ECOM_REFUSED || rc == SAGA_ENOMEM,
	            "ecom_order_from_json returned an undocumented code");
	if (rc == ECOM_REFUSED)
		FUZZ_ASSERT(msg[0] != '\0', "a refusal without a reason");
	if (rc != 0) {
		FUZZ_ASSERT(o.items == NULL && o.nitems == 0, "items left behind after a refusal");
		cJSON_Delete(json);
		return 0;
	}
	FUZZ_ASSERT((o.items == NULL) == (o.nitems == 0), "items and nitems disagree");

	memset(msg, 0x5a, sizeof(msg));
	valid = ecom_order_validate(&o, 1, msg, sizeof(msg));
	check_msg(msg, sizeof(msg));
	FUZZ_ASSERT(valid == 0 || valid == ECOM_REFUSED,
	            "ecom_order_validate returned an undocumented code");
	FUZZ_ASSERT(valid == 0 ? msg[0] == '\0' : msg[0] != '\0',
	            "the message does not match the answer");
	/* The same checks with tiny buffers: truncated, still terminated. */
	memset(tiny, 0x5a, sizeof(tiny));
	FUZZ_ASSERT(ecom_order_validate(&o, 1, tiny, sizeof(tiny)) == valid,
	            "the answer depends on the message buffer");
	check_msg(tiny, sizeof(tiny));
	FUZZ_ASSERT(ecom_order_validate(&o, 1, NULL, 0) == valid,
	            "the answer depends on the message buffer");
	/* An unknown customer is always refused. */
	FUZZ_ASSERT(ecom_order_validate(&o, 0, msg, sizeof(msg)) == ECOM_REFUSED,
	            "an order of an unknown customer is accepted");
	check_msg(msg, sizeof(msg));

	if (valid == 0) {
		int64_t sum = 0, quantity = 0;

		/* What validate promises, checked independently. */
		FUZZ_ASSERT(o.nitems >= 1 && o.nitems <= ECOM_MAX_ITEMS, "item count out of range");
		for (size_t i = 0; i < o.nitems; i++) {
			FUZZ_ASSERT(o.items[i].quantity > 0 && o.items[i].unit_price > 0 &&
			                    o.items[i].unit_price <= ECOM_MAX_AMOUNT,
			            "an item out of range is accepted");
			quantity += o.items[i].quantity;
			sum += o.items[i].quantity * o.items[i].unit_price;
		}
		FUZZ_ASSERT(quantity <= ECOM_MAX_QUANTITY, "too many pieces accepted");
		FUZZ_ASSERT(o.total == sum && o.total <= ECOM_MAX_AMOUNT,
		            "a wrong total is accepted");
		FUZZ_ASSERT(ecom_payment_method_name(o.payment) != NULL &&
		                    ecom_shipping_method_name(o.shipping) != NULL,
		            "an unknown method is accepted");
		round_trip(&o);
	}
	ecom_order_clear(&o);
	cJSON_Delete(json);
	return 0;
}
