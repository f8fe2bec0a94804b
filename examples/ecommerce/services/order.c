/* The order service: customers, orders and their items; validation; the
 * order as JSON. SPDX-License-Identifier: MIT */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "svc_db.h"

struct order_svc {
	svc_db s;
};
_Static_assert(offsetof(struct order_svc, s) == 0, "svc_db_new: the svc_db comes first");

static const char schema[] =
        "CREATE TABLE IF NOT EXISTS customers("
        " id TEXT PRIMARY KEY,"
        " name TEXT NOT NULL,"
        " credit_limit INTEGER NOT NULL CHECK (credit_limit >= 0));"
        "CREATE TABLE IF NOT EXISTS orders("
        " id INTEGER PRIMARY KEY,"
        " key TEXT NOT NULL UNIQUE," /* the create step's idempotency key */
        " ref TEXT,"                 /* the business key of its saga */
        " customer TEXT NOT NULL,"
        " total INTEGER NOT NULL," /* cents */
        " currency TEXT NOT NULL,"
        " address TEXT NOT NULL,"
        " payment TEXT NOT NULL,"
        " shipping TEXT NOT NULL,"
        " status TEXT NOT NULL CHECK (status IN ('PENDING','CONFIRMED','CANCELLED','FAILED')),"
        " reason TEXT NOT NULL DEFAULT '',"
        " created_at INTEGER NOT NULL,"
        " updated_at INTEGER NOT NULL);"
        "CREATE INDEX IF NOT EXISTS orders_ref ON orders(ref);"
        "CREATE TABLE IF NOT EXISTS order_items("
        " order_id INTEGER NOT NULL REFERENCES orders(id),"
        " line INTEGER NOT NULL,"
        " sku TEXT NOT NULL,"
        " quantity INTEGER NOT NULL CHECK (quantity > 0),"
        " unit_price INTEGER NOT NULL CHECK (unit_price > 0),"
        " PRIMARY KEY (order_id, line));";

/* ---- validation (pure) ---- */

static int blank(const char *s)
{
	if (!s)
		return 1;
	for (; *s; s++)
		if (!isspace((unsigned char)*s))
			return 0;
	return 1;
}

static int valid_currency(const char *c)
{
	return strlen(c) == 3 && isupper((unsigned char)c[0]) && isupper((unsigned char)c[1]) &&
	       isupper((unsigned char)c[2]);
}

int ecom_order_validate(const ecom_order *o, int customer_known, char *msg, size_t msg_size)
{
	svc_msg(msg, msg_size, "%s", "");
	if (!o)
		return SAGA_EINVAL;
#define REFUSE(...)                                  \
	do {                                         \
		svc_msg(msg, msg_size, __VA_ARGS__); \
		return ECOM_REFUSED;                 \
	} while (0)
	if (o->ref && strlen(o->ref) >= ECOM_KEY_MAX)
		REFUSE("order reference too long (at most %d bytes)", ECOM_KEY_MAX - 1);
	if (blank(o->customer))
		REFUSE("no customer");
	if (strlen(o->customer) >= ECOM_ID_MAX || !customer_known)
		REFUSE("unknown customer \"%.*s\"", ECOM_ID_MAX, o->customer);
	if (o->nitems == 0 || !o->items)
		REFUSE("no items");
	if (o->nitems > ECOM_MAX_ITEMS)
		REFUSE("%zu items (at most %d)", o->nitems, ECOM_MAX_ITEMS);

	int64_t quantity = 0, sum = 0;
	for (size_t i = 0; i < o->nitems; i++) {
		const ecom_item *it = &o->items[i];
		if (blank(it->sku))
			REFUSE("item %zu: no product", i + 1);
		if (strlen(it->sku) >= ECOM_ID_MAX)
			REFUSE("item %zu: product id too long (at most %d bytes)", i + 1,
			       ECOM_ID_MAX - 1);
		if (it->quantity <= 0)
			REFUSE("item %zu (%s): quantity %" PRId64 " is not positive", i + 1,
			       it->sku, it->quantity);
		if (it->quantity > ECOM_MAX_QUANTITY)
			REFUSE("item %zu (%s): quantity %" PRId64 " is more than %d", i + 1,
			       it->sku, it->quantity, ECOM_MAX_QUANTITY);
		if (it->unit_price <= 0)
			REFUSE("item %zu (%s): unit price %" PRId64 " is not positive", i + 1,
			       it->sku, it->unit_price);
		if (it->unit_price > ECOM_MAX_AMOUNT)
			REFUSE("item %zu (%s): unit price %" PRId64 " is more than %lld", i + 1,
			       it->sku, it->unit_price, ECOM_MAX_AMOUNT);
		/* Bounded by the checks above: at most 50 * 100 * 1e8, no overflow. */
		quantity += it->quantity;
		sum += it->quantity * it->unit_price;
	}
	if (quantity > ECOM_MAX_QUANTITY)
		REFUSE("total quantity %" PRId64 " is more than %d", quantity, ECOM_MAX_QUANTITY);
	if (o->total <= 0)
		REFUSE("total %" PRId64 " is not positive", o->total);
	if (o->total > ECOM_MAX_AMOUNT)
		REFUSE("total %" PRId64 " is more than %lld", o->total, ECOM_MAX_AMOUNT);
	if (o->total != sum)
		REFUSE("total %" PRId64 " does not equal the sum of the items %" PRId64, o->total,
		       sum);
	if (o->currency && !valid_currency(o->currency))
		REFUSE("currency \"%.8s\" is not three upper-case letters", o->currency);
	if (blank(o->address))
		REFUSE("no shipping address");
	if (strlen(o->address) >= ECOM_TEXT_MAX)
		REFUSE("shipping address too long (at most %d bytes)", ECOM_TEXT_MAX - 1);
	if (!ecom_payment_method_name(o->payment))
		REFUSE("unknown payment method (expected CREDIT_CARD, DEBIT_CARD, PAYPAL or "
		       "BANK_TRANSFER)");
	if (!ecom_shipping_method_name(o->shipping))
		REFUSE("unknown shipping method (expected STANDARD, EXPRESS, OVERNIGHT, TWO_DAY or "
		       "INTERNATIONAL)");
#undef REFUSE
	return 0;
}

/* ---- JSON ---- */

cJSON *ecom_order_to_json(const ecom_order *o)
{
	if (!o)
		return NULL;
	cJSON *j = cJSON_CreateObject();
	cJSON *items = cJSON_CreateArray();
	int ok = j && items;
	if (ok && o->ref)
		ok = cJSON_AddStringToObject(j, "ref", o->ref) != NULL;
	if (ok && o->customer)
		ok = cJSON_AddStringToObject(j, "customer", o->customer) != NULL;
	for (size_t i = 0; ok && i < o->nitems; i++) {
		cJSON *it = cJSON_CreateObject();
		ok = it && cJSON_AddItemToArray(items, it);
		if (!ok) {
			cJSON_Delete(it);
			break;
		}
		ok = (!o->items[i].sku || cJSON_AddStringToObject(it, "sku", o->items[i].sku)) &&
		     cJSON_AddNumberToObject(it, "quantity", (double)o->items[i].quantity) &&
		     cJSON_AddNumberToObject(it, "unit_price", (double)o->items[i].unit_price);
	}
	if (ok) {
		ok = cJSON_AddItemToObject(j, "items", items);
		if (ok)
			items = NULL;
	}
	const char *pay = ecom_payment_method_name(o->payment);
	const char *ship = ecom_shipping_method_name(o->shipping);
	ok = ok && cJSON_AddNumberToObject(j, "total", (double)o->total) &&
	     cJSON_AddStringToObject(j, "currency", o->currency ? o->currency : "USD") &&
	     (!o->address || cJSON_AddStringToObject(j, "address", o->address)) &&
	     (!pay || cJSON_AddStringToObject(j, "payment", pay)) &&
	     (!ship || cJSON_AddStringToObject(j, "shipping", ship));
	cJSON_Delete(items);
	if (!ok) {
		cJSON_Delete(j);
		return NULL;
	}
	return j;
}

/* An integral JSON number that fits exactly in a double. */
static int json_int(const cJSON *v, int64_t *out)
{
	if (!cJSON_IsNumber(v))
		return -1;
	double d = v->valuedouble;
	if (!isfinite(d) || d != floor(d) || fabs(d) > 9007199254740992.0)
		return -1;
	*out = (int64_t)d;
	return 0;
}

/* A member that must be a string when present: 0 and *out (NULL when
 * absent), or -1. */
static int json_str(const cJSON *obj, const char *name, const char **out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
	*out = NULL;
	if (!v || cJSON_IsNull(v))
		return 0;
	if (!cJSON_IsString(v))
		return -1;
	*out = v->valuestring;
	return 0;
}

int ecom_order_from_json(ecom_order *out, const cJSON *j, char *msg, size_t msg_size)
{
	svc_msg(msg, msg_size, "%s", "");
	if (!out || !j)
		return SAGA_EINVAL;
	memset(out, 0, sizeof *out);
	out->payment = -1;
	out->shipping = -1;
	if (!cJSON_IsObject(j)) {
		svc_msg(msg, msg_size, "an order must be a JSON object");
		return ECOM_REFUSED;
	}
	const char *pay = NULL, *ship = NULL;
	static const char *const names[] = { "ref",     "customer", "currency",
		                             "address", "payment",  "shipping" };
	const char **fields[] = { &out->ref,     &out->customer, &out->currency,
		                  &out->address, &pay,           &ship };
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		if (json_str(j, names[i], fields[i]) != 0) {
			svc_msg(msg, msg_size, "\"%s\" must be a string", names[i]);
			return ECOM_REFUSED;
		}
	}
	if (pay)
		out->payment = ecom_payment_method_parse(pay);
	if (ship)
		out->shipping = ecom_shipping_method_parse(ship);
	const cJSON *total = cJSON_GetObjectItemCaseSensitive(j, "total");
	if (total && json_int(total, &out->total) != 0) {
		svc_msg(msg, msg_size, "\"total\" must be a whole number of cents");
		return ECOM_REFUSED;
	}

	const cJSON *items = cJSON_GetObjectItemCaseSensitive(j, "items");
	if (!items || cJSON_IsNull(items))
		return 0;
	if (!cJSON_IsArray(items)) {
		svc_msg(msg, msg_size, "\"items\" must be an array");
		return ECOM_REFUSED;
	}
	int n = cJSON_GetArraySize(items);
	if (n == 0)
		return 0;
	if (n > ECOM_MAX_ITEMS * 100) { /* refused later anyway; bounds the allocation */
		svc_msg(msg, msg_size, "%d items (at most %d)", n, ECOM_MAX_ITEMS);
		return ECOM_REFUSED;
	}
	ecom_item *arr = calloc((size_t)n, sizeof *arr);
	if (!arr)
		return SAGA_ENOMEM;
	int i = 0;
	const cJSON *it;
	cJSON_ArrayForEach(it, items)
	{
		const cJSON *sku = cJSON_GetObjectItemCaseSensitive(it, "sku");
		if (!cJSON_IsObject(it) || !cJSON_IsString(sku) ||
		    json_int(cJSON_GetObjectItemCaseSensitive(it, "quantity"), &arr[i].quantity) ||
		    json_int(cJSON_GetObjectItemCaseSensitive(it, "unit_price"),
		             &arr[i].unit_price)) {
			svc_msg(msg, msg_size,
			        "item %d: expected {\"sku\": string, \"quantity\": "
			        "integer, \"unit_price\": integer}",
			        i + 1);
			free(arr);
			return ECOM_REFUSED;
		}
		arr[i].sku = sku->valuestring;
		i++;
	}
	out->items = arr;
	out->nitems = (size_t)n;
	return 0;
}

void ecom_order_clear(ecom_order *o)
{
	if (!o)
		return;
	free((void *)o->items);
	o->items = NULL;
	o->nitems = 0;
}

/* ---- the service ---- */

int order_open(order_svc **out, const char *dir, char *msg, size_t msg_size)
{
	if (!out)
		return SAGA_EINVAL;
	svc_db *s;
	int rc = svc_db_new(&s, sizeof(order_svc), ECOM_ORDER, dir, schema, msg, msg_size);
	*out = (order_svc *)s; /* its first member */
	return rc;
}

void order_close(order_svc *o)
{
	svc_db_delete(o ? &o->s : NULL);
}

void order_set_faults(order_svc *o, ecom_faults *faults)
{
	if (o)
		o->s.faults = faults;
}

int order_add_customers(order_svc *o, const ecom_customer *c, size_t n, char *msg, size_t msg_size)
{
	svc_msg(msg, msg_size, "%s", "");
	if (!o || (!c && n))
		return SAGA_EINVAL;
	int rc = svc_begin(&o->s, msg, msg_size);
	if (rc != 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		if (blank(c[i].id) || blank(c[i].name) || c[i].credit_limit < 0 ||
		    c[i].credit_limit > ECOM_MAX_AMOUNT * 100) {
			svc_msg(msg, msg_size,
			        "customer %zu: needs an id, a name and a credit limit "
			        "in 0..%lld",
			        i + 1, ECOM_MAX_AMOUNT * 100);
			return svc_rollback(&o->s, ECOM_REFUSED);
		}
		int64_t one;
		rc = svc_int(&o->s, &one, "SELECT 1 FROM customers WHERE id = ?", "t", c[i].id);
		if (rc == 0) {
			svc_msg(msg, msg_size, "customer %s exists", c[i].id);
			return svc_rollback(&o->s, ECOM_REFUSED);
		}
		if (rc != SAGA_ENOTFOUND)
			return svc_fail(&o->s, rc, msg, msg_size);
		rc = svc_exec(&o->s, NULL,
		              "INSERT INTO customers(id, name, credit_limit) VALUES (?, ?, ?)",
		              "tti", c[i].id, c[i].name, c[i].credit_limit);
		if (rc != 0)
			return svc_fail(&o->s, rc, msg, msg_size);
	}
	return svc_commit(&o->s, NULL, msg, msg_size);
}

int order_customer_exists(order_svc *o, const char *customer)
{
	if (!o || !customer)
		return SAGA_EINVAL;
	int64_t one;
	svc_lock(&o->s);
	int rc = svc_int(&o->s, &one, "SELECT 1 FROM customers WHERE id = ?", "t", customer);
	svc_unlock(&o->s);
	if (rc == SAGA_ENOTFOUND)
		return 0;
	return rc == 0 ? 1 : rc;
}

int order_list_customers(order_svc *o, ecom_customer_fn fn, void *user)
{
	if (!o || !fn)
		return SAGA_EINVAL;
	sqlite3_stmt *st;
	svc_lock(&o->s);
	int rc = svc_prepare(&o->s, &st, "SELECT id, name, credit_limit FROM customers ORDER BY id",
	                     NULL);
	while (rc == 0 && (rc = svc_step(st)) == 1) {
		ecom_customer c;
		svc_col_text(st, 0, c.id, sizeof c.id);
		svc_col_text(st, 1, c.name, sizeof c.name);
		c.credit_limit = sqlite3_column_int64(st, 2);
		rc = 0;
		if (fn(&c, user))
			break;
	}
	sqlite3_finalize(st);
	svc_unlock(&o->s);
	return rc;
}

int order_create(order_svc *o, const char *key, const ecom_order *order, int64_t *order_id,
                 char *msg, size_t msg_size)
{
	svc_msg(msg, msg_size, "%s", "");
	if (!o || !key || !*key || strlen(key) >= ECOM_KEY_MAX || !order)
		return SAGA_EINVAL;
	saga_guard_verdict v;
	int rc = svc_guard_begin(&o->s, "create", saga_guard_action, key, &v, msg, msg_size);
	if (rc != 0)
		return rc;
	int64_t id = 0;
	if (v == SAGA_GUARD_DONE) {
		rc = svc_int(&o->s, &id, "SELECT id FROM orders WHERE key = ?", "t", key);
		if (rc != 0)
			return svc_fail(&o->s, rc == SAGA_ENOTFOUND ? SAGA_ECORRUPT : rc, msg,
			                msg_size);
		if (order_id)
			*order_id = id;
		return svc_rollback(&o->s, ECOM_OK);
	}
	if (v == SAGA_GUARD_REFUSED)
		return svc_refuse(&o->s, msg, msg_size,
		                  "order %s was cancelled before it arrived: refused", key);

	int64_t one;
	rc = svc_int(&o->s, &one, "SELECT 1 FROM customers WHERE id = ?", "t",
	             order->customer ? order->customer : "");
	if (rc != 0 && rc != SAGA_ENOTFOUND)
		return svc_fail(&o->s, rc, msg, msg_size);
	if (ecom_order_validate(order, rc == 0, msg, msg_size) != 0)
		return svc_rollback(&o->s, ECOM_REFUSED);

	int64_t now = (int64_t)svc_now_ms();
	rc = svc_exec(&o->s, NULL,
	              "INSERT INTO orders(key, ref, customer, total, currency, address, payment,"
	              " shipping, status, created_at, updated_at)"
	              " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'PENDING', ?, ?)",
	              "tttitttt"
	              "ii",
	              key, order->ref, order->customer, order->total,
	              order->currency ? order->currency : "USD", order->address,
	              ecom_payment_method_name(order->payment),
	              ecom_shipping_method_name(order->shipping), now, now);
	if (rc != 0)
		return svc_fail(&o->s, rc, msg, msg_size);
	id = sqlite3_last_insert_rowid(o->s.db);
	for (size_t i = 0; i < order->nitems; i++) {
		const ecom_item *it = &order->items[i];
		rc = svc_exec(&o->s, NULL,
		              "INSERT INTO order_items(order_id, line, sku, quantity, unit_price)"
		              " VALUES (?, ?, ?, ?, ?)",
		              "iitii", id, (int64_t)i + 1, it->sku, it->quantity, it->unit_price);
		if (rc != 0)
			return svc_fail(&o->s, rc, msg, msg_size);
	}
	rc = svc_commit(&o->s, "create", msg, msg_size);
	if (rc == 0 && order_id)
		*order_id = id;
	return rc;
}

int order_cancel(order_svc *o, const char *action_key, int failed, const char *reason, char *msg,
                 size_t msg_size)
{
	svc_msg(msg, msg_size, "%s", "");
	if (!o || !action_key || !*action_key)
		return SAGA_EINVAL;
	saga_guard_verdict v;
	int rc = svc_guard_begin(&o->s, "cancel", saga_guard_compensation, action_key, &v, msg,
	                         msg_size);
	if (rc != 0)
		return rc;
	if (v == SAGA_GUARD_DONE)
		return svc_rollback(&o->s, ECOM_OK);
	if (v == SAGA_GUARD_EMPTY) /* nothing was created; the guard row is the record */
		return svc_commit(&o->s, "cancel", msg, msg_size);

	int changes = 0;
	rc = svc_exec(&o->s, &changes,
	              "UPDATE orders SET status = ?, reason = ?, updated_at = ?"
	              " WHERE key = ? AND status = 'PENDING'",
	              "ttit", failed ? "FAILED" : "CANCELLED", reason ? reason : "",
	              (int64_t)svc_now_ms(), action_key);
	if (rc != 0)
		return svc_fail(&o->s, rc, msg, msg_size);
	if (changes == 0) {
		/* The guard saw the action, so the order exists: it is past PENDING. */
		svc_msg(msg, msg_size, "order %s is no longer PENDING: cannot cancel", action_key);
		return svc_rollback(&o->s, ECOM_REFUSED);
	}
	return svc_commit(&o->s, "cancel", msg, msg_size);
}

int order_confirm(order_svc *o, const char *key, int64_t order_id, char *msg, size_t msg_size)
{
	svc_msg(msg, msg_size, "%s", "");
	if (!o || !key || !*key)
		return SAGA_EINVAL;
	saga_guard_verdict v;
	int rc = svc_guard_begin(&o->s, "confirm", saga_guard_action, key, &v, msg, msg_size);
	if (rc != 0)
		return rc;
	if (v == SAGA_GUARD_DONE)
		return svc_rollback(&o->s, ECOM_OK);
	if (v == SAGA_GUARD_REFUSED)
		return svc_refuse(&o->s, msg, msg_size, "confirmation %s was compensated: refused",
		                  key);
	int changes = 0;
	rc = svc_exec(&o->s, &changes,
	              "UPDATE orders SET status = 'CONFIRMED', updated_at = ?"
	              " WHERE id = ? AND status = 'PENDING'",
	              "ii", (int64_t)svc_now_ms(), order_id);
	if (rc != 0)
		return svc_fail(&o->s, rc, msg, msg_size);
	if (changes == 0) {
		sqlite3_stmt *st;
		rc = svc_prepare(&o->s, &st, "SELECT status FROM orders WHERE id = ?", "i",
		                 order_id);
		if (rc != 0)
			return svc_fail(&o->s, rc, msg, msg_size);
		char status[16] = "";
		rc = svc_step(st);
		if (rc == 1)
			svc_col_text(st, 0, status, sizeof status);
		sqlite3_finalize(st);
		if (rc < 0)
			return svc_fail(&o->s, rc, msg, msg_size);
		if (rc == 0 || strcmp(status, "CONFIRMED") != 0) {
			if (rc == 0)
				svc_msg(msg, msg_size, "no order %" PRId64, order_id);
			else
				svc_msg(msg, msg_size, "order %" PRId64 " is %s: cannot confirm",
				        order_id, status);
			return svc_rollback(&o->s, ECOM_REFUSED);
		}
		/* Already confirmed under another key: the outcome holds. */
	}
	return svc_commit(&o->s, "confirm", msg, msg_size);
}

int order_get(order_svc *o, int64_t order_id, ecom_order_info *out)
{
	if (!o || !out)
		return SAGA_EINVAL;
	memset(out, 0, sizeof *out);
	sqlite3_stmt *st;
	svc_lock(&o->s);
	int rc = svc_prepare(
	        &o->s, &st,
	        "SELECT id, key, ref, customer, total, currency, address, payment, shipping,"
	        " status, reason, created_at, updated_at,"
	        " (SELECT count(*) FROM order_items WHERE order_id = orders.id),"
	        " (SELECT coalesce(sum(quantity), 0) FROM order_items WHERE order_id = orders.id)"
	        " FROM orders WHERE id = ?",
	        "i", order_id);
	if (rc == 0) {
		rc = svc_step(st);
		if (rc == 1) {
			char buf[32];
			out->id = sqlite3_column_int64(st, 0);
			svc_col_text(st, 1, out->key, sizeof out->key);
			svc_col_text(st, 2, out->ref, sizeof out->ref);
			svc_col_text(st, 3, out->customer, sizeof out->customer);
			out->total = sqlite3_column_int64(st, 4);
			svc_col_text(st, 5, out->currency, sizeof out->currency);
			svc_col_text(st, 6, out->address, sizeof out->address);
			svc_col_text(st, 7, buf, sizeof buf);
			out->payment = ecom_payment_method_parse(buf);
			svc_col_text(st, 8, buf, sizeof buf);
			out->shipping = ecom_shipping_method_parse(buf);
			svc_col_text(st, 9, buf, sizeof buf);
			out->status = ecom_order_status_parse(buf);
			svc_col_text(st, 10, out->reason, sizeof out->reason);
			out->created_ms = (uint64_t)sqlite3_column_int64(st, 11);
			out->updated_ms = (uint64_t)sqlite3_column_int64(st, 12);
			out->nitems = (size_t)sqlite3_column_int64(st, 13);
			out->quantity = sqlite3_column_int64(st, 14);
			rc = 0;
		} else if (rc == 0) {
			rc = SAGA_ENOTFOUND;
		}
		sqlite3_finalize(st);
	}
	svc_unlock(&o->s);
	return rc;
}

static int find_one(order_svc *o, const char *sql, const char *text, int64_t *order_id)
{
	if (!o || !text || !order_id)
		return SAGA_EINVAL;
	svc_lock(&o->s);
	int rc = svc_int(&o->s, order_id, sql, "t", text);
	svc_unlock(&o->s);
	return rc;
}

int order_find_by_ref(order_svc *o, const char *ref, int64_t *order_id)
{
	return find_one(o, "SELECT id FROM orders WHERE ref = ? ORDER BY id LIMIT 1", ref,
	                order_id);
}

int order_find_by_key(order_svc *o, const char *key, int64_t *order_id)
{
	return find_one(o, "SELECT id FROM orders WHERE key = ?", key, order_id);
}

int order_count_by_status(order_svc *o, int64_t counts[ECOM_ORDER_STATUS_COUNT])
{
	if (!o || !counts)
		return SAGA_EINVAL;
	for (int i = 0; i < ECOM_ORDER_STATUS_COUNT; i++)
		counts[i] = 0;
	sqlite3_stmt *st;
	svc_lock(&o->s);
	int rc = svc_prepare(&o->s, &st, "SELECT status, count(*) FROM orders GROUP BY status",
	                     NULL);
	while (rc == 0 && (rc = svc_step(st)) == 1) {
		char status[16];
		svc_col_text(st, 0, status, sizeof status);
		int s = ecom_order_status_parse(status);
		if (s >= 0)
			counts[s] = sqlite3_column_int64(st, 1);
		rc = 0;
	}
	sqlite3_finalize(st);
	svc_unlock(&o->s);
	return rc;
}
