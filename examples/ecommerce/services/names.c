/* Names of the example's enumerations, both ways. SPDX-License-Identifier: MIT */
#include <string.h>

#include "services.h"

static const char *const services[] = { "order", "inventory", "payment", "shipping",
	                                "notification" };
static const char *const payments[] = { "CREDIT_CARD", "DEBIT_CARD", "PAYPAL", "BANK_TRANSFER" };
static const char *const shippings[] = { "STANDARD", "EXPRESS", "OVERNIGHT", "TWO_DAY",
	                                 "INTERNATIONAL" };
static const int shipping_days[] = { 5, 3, 1, 2, 10 };
static const char *const order_statuses[] = { "PENDING", "CONFIRMED", "CANCELLED", "FAILED" };
static const char *const shipment_statuses[] = { "SCHEDULED", "COMMITTED", "CANCELLED" };
static const char *const channels[] = { "email", "sms", "push" };
static const char *const kinds[] = { "CONFIRMATION", "CANCELLATION" };

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

static const char *name_of(const char *const *names, int n, int v)
{
	return v >= 0 && v < n ? names[v] : NULL;
}

static int parse(const char *const *names, int n, const char *s)
{
	for (int i = 0; s && i < n; i++)
		if (strcmp(names[i], s) == 0)
			return i;
	return -1;
}

const char *ecom_service_name(int v)
{
	return name_of(services, COUNT(services), v);
}
const char *ecom_payment_method_name(int v)
{
	return name_of(payments, COUNT(payments), v);
}
const char *ecom_shipping_method_name(int v)
{
	return name_of(shippings, COUNT(shippings), v);
}
const char *ecom_order_status_name(int v)
{
	return name_of(order_statuses, COUNT(order_statuses), v);
}
const char *ecom_shipment_status_name(int v)
{
	return name_of(shipment_statuses, COUNT(shipment_statuses), v);
}
const char *ecom_channel_name(int v)
{
	return name_of(channels, COUNT(channels), v);
}
const char *ecom_message_kind_name(int v)
{
	return name_of(kinds, COUNT(kinds), v);
}

int ecom_service_parse(const char *s)
{
	return parse(services, COUNT(services), s);
}
int ecom_payment_method_parse(const char *s)
{
	return parse(payments, COUNT(payments), s);
}
int ecom_shipping_method_parse(const char *s)
{
	return parse(shippings, COUNT(shippings), s);
}
int ecom_order_status_parse(const char *s)
{
	return parse(order_statuses, COUNT(order_statuses), s);
}
int ecom_channel_parse(const char *s)
{
	return parse(channels, COUNT(channels), s);
}

int ecom_shipping_days(int method)
{
	return method >= 0 && method < COUNT(shipping_days) ? shipping_days[method] : -1;
}
