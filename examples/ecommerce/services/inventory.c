/* The inventory service: products, all-or-none reservations, shipping out.
 *
 * Quantities (see ecom_product): `stock` is on hand and includes `reserved`;
 * `shipped` has left. available = stock - reserved, and the checker holds
 * initial = available + reserved + shipped, i.e. initial = stock + shipped.
 * The CHECK constraints make a negative or over-reserved row impossible to
 * write; the operations test availability in their UPDATE's WHERE clause so
 * the constraints never have to fire.
 * SPDX-License-Identifier: MIT */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "svc_db.h"

struct inventory_svc {
	svc_db s;
};
_Static_assert(offsetof(struct inventory_svc, s) == 0, "svc_db_new: the svc_db comes first");

static const char schema[] =
        "CREATE TABLE IF NOT EXISTS products("
        " sku TEXT PRIMARY KEY,"
        " name TEXT NOT NULL,"
        " price INTEGER NOT NULL CHECK (price > 0),"
        " initial INTEGER NOT NULL CHECK (initial >= 0),"
        " stock INTEGER NOT NULL,"
        " reserved INTEGER NOT NULL DEFAULT 0,"
        " shipped INTEGER NOT NULL DEFAULT 0,"
        " CHECK (stock >= 0 AND reserved >= 0 AND shipped >= 0 AND reserved <= stock));"
        "CREATE TABLE IF NOT EXISTS reservations("
        " key TEXT PRIMARY KEY," /* the reserve step's idempotency key */
        " order_id INTEGER NOT NULL,"
        " status TEXT NOT NULL CHECK (status IN ('ACTIVE','RELEASED','SHIPPED')),"
        " created_at INTEGER NOT NULL,"
        " updated_at INTEGER NOT NULL);"
        "CREATE INDEX IF NOT EXISTS reservations_order ON reservations(order_id);"
        "CREATE TABLE IF NOT EXISTS reservation_items("
        " key TEXT NOT NULL REFERENCES reservations(key),"
        " line INTEGER NOT NULL,"
        " sku TEXT NOT NULL,"
        " quantity INTEGER NOT NULL CHECK (quantity > 0),"
        " PRIMARY KEY (key, line));";

int inventory_open(inventory_svc **out, const char *dir, char *msg, size_t msg_size)
{
	if (!out)
		return SAGA_EINVAL;
	svc_db *s;
	int rc = svc_db_new(&s, sizeof(inventory_svc), ECOM_INVENTORY, dir, schema, msg, msg_size);
	*out = (inventory_svc *)s; /* its first member */
	return rc;
}

void inventory_close(inventory_svc *v)
{
	svc_db_delete(v ? &v->s : NULL);
}

void inventory_set_faults(inventory_svc *v, ecom_faults *faults)
{
	if (v)
		v->s.faults = faults;
}

int inventory_add_products(inventory_svc *v, const ecom_product *p, size_t n, char *msg,
                           size_t msg_size)
{
	svc_msg(msg, msg_size, "%s", "");
	if (!v || (!p && n))
		return SAGA_EINVAL;
	int rc = svc_begin(&v->s, msg, msg_size);
	if (rc != 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		if (!p[i].sku[0] || !p[i].name[0] || p[i].price <= 0 ||
		    p[i].price > ECOM_MAX_AMOUNT || p[i].stock < 0 || p[i].stock > 1000000000) {
			svc_msg(msg, msg_size,
			        "product %zu: needs a sku, a name, a price in 1..%lld "
			        "and a stock in 0..1e9",
			        i + 1, ECOM_MAX_AMOUNT);
			return svc_rollback(&v->s, ECOM_REFUSED);
		}
		int64_t one;
		rc = svc_int(&v->s, &one, "SELECT 1 FROM products WHERE sku = ?", "t", p[i].sku);
		if (rc == 0) {
			svc_msg(msg, msg_size, "product %s exists", p[i].sku);
			return svc_rollback(&v->s, ECOM_REFUSED);
		}
		if (rc != SAGA_ENOTFOUND)
			return svc_fail(&v->s, rc, msg, msg_size);
		rc = svc_exec(
		        &v->s, NULL,
		        "INSERT INTO products(sku, name, price, initial, stock, reserved, shipped)"
		        " VALUES (?1, ?2, ?3, ?4, ?4, 0, 0)",
		        "ttii", p[i].sku, p[i].name, p[i].price, p[i].stock);
		if (rc != 0)
			return svc_fail(&v->s, rc, msg, msg_size);
	}
	return svc_commit(&v->s, NULL, msg, msg_size);
}

static void read_product(sqlite3_stmt *st, ecom_product *p)
{
	svc_col_text(st, 0, p->sku, sizeof p->sku);
	svc_col_text(st, 1, p->name, sizeof p->name);
	p->price = sqlite3_column_int64(st, 2);
	p->initial = sqlite3_column_int64(st, 3);
	p->stock = sqlite3_column_int64(st, 4);
	p->reserved = sqlite3_column_int64(st, 5);
	p->shipped = sqlite3_column_int64(st, 6);
}

#define PRODUCT_COLUMNS "sku, name, price, initial, stock, reserved, shipped"

int inventory_get_product(inventory_svc *v, const char *sku, ecom_product *out)
{
	if (!v || !sku || !out)
		return SAGA_EINVAL;
	sqlite3_stmt *st;
	svc_lock(&v->s);
	int rc = svc_prepare(&v->s, &st, "SELECT " PRODUCT_COLUMNS " FROM products WHERE sku = ?",
	                     "t", sku);
	if (rc == 0) {
		rc = svc_step(st);
		if (rc == 1) {
			read_product(st, out);
			rc = 0;
		} else if (rc == 0) {
			rc = SAGA_ENOTFOUND;
		}
		sqlite3_finalize(st);
	}
	svc_unlock(&v->s);
	return rc;
}

int inventory_list_products(inventory_svc *v, ecom_product_fn fn, void *user)
{
	if (!v || !fn)
		return SAGA_EINVAL;
	sqlite3_stmt *st;
	svc_lock(&v->s);
	int rc = svc_prepare(&v->s, &st, "SELECT " PRODUCT_COLUMNS " FROM products ORDER BY sku",
	                     NULL);
	while (rc == 0 && (rc = svc_step(st)) == 1) {
		ecom_product p;
		read_product(st, &p);
		rc = 0;
		if (fn(&p, user))
			break;
	}
	sqlite3_finalize(st);
	svc_unlock(&v->s);
	return rc;
}

int inventory_check_items(inventory_svc *v, const ecom_item *items, size_t n, char *msg,
                          size_t msg_size)
{
	svc_msg(msg, msg_size, "%s", "");
	if (!v || (!items && n))
		return SAGA_EINVAL;
	int rc = 0;
	svc_lock(&v->s);
	for (size_t i = 0; i < n && rc == 0; i++) {
		int64_t price;
		rc = svc_int(&v->s, &price, "SELECT price FROM products WHERE sku = ?", "t",
		             items[i].sku ? items[i].sku : "");
		if (rc == SAGA_ENOTFOUND) {
			svc_msg(msg, msg_size, "item %zu: unknown product \"%.*s\"", i + 1,
			        ECOM_ID_MAX, items[i].sku ? items[i].sku : "");
			rc = ECOM_REFUSED;
		} else if (rc == 0 && price != items[i].unit_price) {
			svc_msg(msg, msg_size,
			        "item %zu (%s): unit price %" PRId64 " differs from the "
			        "catalogue price %" PRId64,
			        i + 1, items[i].sku, items[i].unit_price, price);
			rc = ECOM_REFUSED;
		}
	}
	svc_unlock(&v->s);
	return rc;
}

int inventory_reserve(inventory_svc *v, const char *key, int64_t order_id, const ecom_item *items,
                      size_t n, char *msg, size_t msg_size)
{
	svc_msg(msg, msg_size, "%s", "");
	if (!v || !key || !*key || (!items && n))
		return SAGA_EINVAL;
	saga_guard_verdict verdict;
	int rc = svc_guard_begin(&v->s, "reserve", saga_guard_action, key, &verdict, msg, msg_size);
	if (rc != 0)
		return rc;
	if (verdict == SAGA_GUARD_DONE)
		return svc_rollback(&v->s, ECOM_OK);
	if (verdict == SAGA_GUARD_REFUSED)
		return svc_refuse(&v->s, msg, msg_size,
		                  "reservation %s was released before it arrived: refused", key);
	if (n == 0 || n > ECOM_MAX_ITEMS) {
		svc_msg(msg, msg_size, "a reservation holds 1..%d items, not %zu", ECOM_MAX_ITEMS,
		        n);
		return svc_rollback(&v->s, ECOM_REFUSED);
	}

	int64_t now = (int64_t)svc_now_ms();
	rc = svc_exec(&v->s, NULL,
	              "INSERT INTO reservations(key, order_id, status, created_at, updated_at)"
	              " VALUES (?1, ?2, 'ACTIVE', ?3, ?3)",
	              "tii", key, order_id, now);
	if (rc != 0)
		return svc_fail(&v->s, rc, msg, msg_size);
	/* Item by item; the first one missing rolls back everything taken. */
	for (size_t i = 0; i < n; i++) {
		const char *sku = items[i].sku ? items[i].sku : "";
		int64_t q = items[i].quantity;
		if (q <= 0) {
			svc_msg(msg, msg_size,
			        "item %zu (%s): quantity %" PRId64 " is not positive", i + 1, sku,
			        q);
			return svc_rollback(&v->s, ECOM_REFUSED);
		}
		int changes = 0;
		rc = svc_exec(&v->s, &changes,
		              "UPDATE products SET reserved = reserved + ?1"
		              " WHERE sku = ?2 AND stock - reserved >= ?1",
		              "it", q, sku);
		if (rc != 0)
			return svc_fail(&v->s, rc, msg, msg_size);
		if (changes == 0) {
			int64_t available;
			rc = svc_int(&v->s, &available,
			             "SELECT stock - reserved FROM products WHERE sku = ?", "t",
			             sku);
			if (rc == SAGA_ENOTFOUND)
				svc_msg(msg, msg_size, "item %zu: unknown product \"%.*s\"", i + 1,
				        ECOM_ID_MAX, sku);
			else if (rc == 0)
				svc_msg(msg, msg_size,
				        "out of stock: %s: %" PRId64 " wanted, %" PRId64
				        " available",
				        sku, q, available);
			else
				return svc_fail(&v->s, rc, msg, msg_size);
			return svc_rollback(&v->s, ECOM_REFUSED);
		}
		rc = svc_exec(&v->s, NULL,
		              "INSERT INTO reservation_items(key, line, sku, quantity)"
		              " VALUES (?, ?, ?, ?)",
		              "titi", key, (int64_t)i + 1, sku, q);
		if (rc != 0)
			return svc_fail(&v->s, rc, msg, msg_size);
	}
	return svc_commit(&v->s, "reserve", msg, msg_size);
}

int inventory_release(inventory_svc *v, const char *action_key, char *msg, size_t msg_size)
{
	svc_msg(msg, msg_size, "%s", "");
	if (!v || !action_key || !*action_key)
		return SAGA_EINVAL;
	saga_guard_verdict verdict;
	int rc = svc_guard_begin(&v->s, "release", saga_guard_compensation, action_key, &verdict,
	                         msg, msg_size);
	if (rc != 0)
		return rc;
	if (verdict == SAGA_GUARD_DONE)
		return svc_rollback(&v->s, ECOM_OK);
	if (verdict == SAGA_GUARD_EMPTY)
		return svc_commit(&v->s, "release", msg, msg_size);

	sqlite3_stmt *st;
	rc = svc_prepare(&v->s, &st, "SELECT status FROM reservations WHERE key = ?", "t",
	                 action_key);
	if (rc != 0)
		return svc_fail(&v->s, rc, msg, msg_size);
	char status[16] = "";
	rc = svc_step(st);
	if (rc == 1)
		svc_col_text(st, 0, status, sizeof status);
	sqlite3_finalize(st);
	if (rc < 0)
		return svc_fail(&v->s, rc, msg, msg_size);
	if (rc == 0) /* the guard saw the action, yet there is no reservation */
		return svc_fail(&v->s, SAGA_ECORRUPT, msg, msg_size);
	if (strcmp(status, "SHIPPED") == 0) {
		svc_msg(msg, msg_size, "reservation %s has shipped: cannot release", action_key);
		return svc_rollback(&v->s, ECOM_REFUSED);
	}
	if (strcmp(status, "ACTIVE") == 0) {
		rc = svc_exec(&v->s, NULL,
		              "UPDATE products SET reserved = reserved - t.q"
		              " FROM (SELECT sku, sum(quantity) AS q FROM reservation_items"
		              "       WHERE key = ?1 GROUP BY sku) AS t"
		              " WHERE products.sku = t.sku",
		              "t", action_key);
		if (rc == 0)
			rc = svc_exec(&v->s, NULL,
			              "UPDATE reservations SET status = 'RELEASED', updated_at = ?"
			              " WHERE key = ?",
			              "it", (int64_t)svc_now_ms(), action_key);
		if (rc != 0)
			return svc_fail(&v->s, rc, msg, msg_size);
	}
	return svc_commit(&v->s, "release", msg, msg_size);
}

int inventory_ship(inventory_svc *v, const char *key, int64_t order_id, char *msg, size_t msg_size)
{
	svc_msg(msg, msg_size, "%s", "");
	if (!v || !key || !*key)
		return SAGA_EINVAL;
	saga_guard_verdict verdict;
	int rc = svc_guard_begin(&v->s, "ship", saga_guard_action, key, &verdict, msg, msg_size);
	if (rc != 0)
		return rc;
	if (verdict == SAGA_GUARD_DONE)
		return svc_rollback(&v->s, ECOM_OK);
	if (verdict == SAGA_GUARD_REFUSED)
		return svc_refuse(&v->s, msg, msg_size, "shipping out %s was compensated: refused",
		                  key);

	int changes = 0;
	rc = svc_exec(&v->s, NULL,
	              "UPDATE products SET stock = stock - t.q, reserved = reserved - t.q,"
	              " shipped = shipped + t.q"
	              " FROM (SELECT ri.sku AS sku, sum(ri.quantity) AS q"
	              "       FROM reservation_items ri JOIN reservations r ON r.key = ri.key"
	              "       WHERE r.order_id = ?1 AND r.status = 'ACTIVE' GROUP BY ri.sku) AS t"
	              " WHERE products.sku = t.sku",
	              "i", order_id);
	if (rc == 0)
		rc = svc_exec(&v->s, &changes,
		              "UPDATE reservations SET status = 'SHIPPED', updated_at = ?"
		              " WHERE order_id = ? AND status = 'ACTIVE'",
		              "ii", (int64_t)svc_now_ms(), order_id);
	if (rc != 0)
		return svc_fail(&v->s, rc, msg, msg_size);
	if (changes == 0) {
		int64_t shipped;
		rc = svc_int(&v->s, &shipped,
		             "SELECT count(*) FROM reservations"
		             " WHERE order_id = ? AND status = 'SHIPPED'",
		             "i", order_id);
		if (rc != 0)
			return svc_fail(&v->s, rc, msg, msg_size);
		if (shipped == 0) {
			svc_msg(msg, msg_size, "order %" PRId64 " holds no reservation to ship",
			        order_id);
			return svc_rollback(&v->s, ECOM_REFUSED);
		}
		/* Shipped before under another key: the outcome holds. */
	}
	return svc_commit(&v->s, "ship", msg, msg_size);
}
