/* The consistency checker: the five databases attached to one in-memory
 * connection that writes nothing (query_only; attached read-write, without
 * creating, so that the last connection to close removes the -wal and
 * -shm files as usual), and each rule a query whose rows are violations.
 * ecommerce_check is for a directory at rest (after `recover`): an order
 * still PENDING is reported. ecommerce_check_live can run while sagas go
 * on: it pins each file's snapshot in an order that keeps the files'
 * relations true, and checks across files only the orders whose sagas had
 * ended before it began.
 * SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "svc_db.h"

/* Schema names of the attached databases, by ecom_service. */
static const char *const attach_sql[ECOM_SERVICE_COUNT] = {
	"ATTACH ? AS o", "ATTACH ? AS i", "ATTACH ? AS p", "ATTACH ? AS s", "ATTACH ? AS n",
};

#define ENDED "('CANCELLED','FAILED')"

/* Each rule: a name and a query whose rows (one text column) describe one
 * violation each. */
static const struct rule {
	const char *name;
	int with_sagas; /* needs the saga facts */
	const char *sql;
} rules[] = {
	/* ---- inventory ---- */
	{ "stock-not-conserved", 0,
	  "SELECT printf('product %s: initial %d <> available %d + reserved %d + shipped %d',"
	  " sku, initial, stock - reserved, reserved, shipped)"
	  " FROM i.products WHERE initial <> stock + shipped ORDER BY sku" },
	{ "negative-stock", 0,
	  "SELECT printf('product %s: stock %d, reserved %d, shipped %d', sku, stock, reserved,"
	  " shipped) FROM i.products WHERE stock < 0 OR reserved < 0 OR shipped < 0 ORDER BY sku" },
	{ "over-reserved", 0,
	  "SELECT printf('product %s: reserved %d > stock %d', sku, reserved, stock)"
	  " FROM i.products WHERE reserved > stock ORDER BY sku" },
	{ "reserved-mismatch", 0,
	  "SELECT printf('product %s: reserved %d but active reservations hold %d', p.sku,"
	  " p.reserved, coalesce(r.q, 0))"
	  " FROM i.products p LEFT JOIN (SELECT x.sku AS sku, sum(x.quantity) AS q"
	  "   FROM i.reservation_items x JOIN i.reservations r ON r.key = x.key"
	  "   WHERE r.status = 'ACTIVE' GROUP BY x.sku) r ON r.sku = p.sku"
	  " WHERE p.reserved <> coalesce(r.q, 0) ORDER BY p.sku" },
	{ "shipped-mismatch", 0,
	  "SELECT printf('product %s: shipped %d but shipped reservations hold %d', p.sku,"
	  " p.shipped, coalesce(r.q, 0))"
	  " FROM i.products p LEFT JOIN (SELECT x.sku AS sku, sum(x.quantity) AS q"
	  "   FROM i.reservation_items x JOIN i.reservations r ON r.key = x.key"
	  "   WHERE r.status = 'SHIPPED' GROUP BY x.sku) r ON r.sku = p.sku"
	  " WHERE p.shipped <> coalesce(r.q, 0) ORDER BY p.sku" },
	{ "reservation-unknown-product", 0,
	  "SELECT printf('reservation %s holds unknown product %s', x.key, x.sku)"
	  " FROM i.reservation_items x WHERE x.sku NOT IN (SELECT sku FROM i.products)" },

	/* ---- orders ---- */
	{ "order-total-mismatch", 0,
	  "SELECT printf('order %d: total %d <> sum of its items %d', o.id, o.total,"
	  " coalesce(sum(x.quantity * x.unit_price), 0))"
	  " FROM o.orders o LEFT JOIN o.order_items x ON x.order_id = o.id GROUP BY o.id"
	  " HAVING o.total <> coalesce(sum(x.quantity * x.unit_price), 0) ORDER BY o.id" },
	{ "order-pending", 0,
	  "SELECT printf('order %d (%s) is still PENDING', id, key)"
	  " FROM checked_orders WHERE status = 'PENDING' ORDER BY id" },

	/* ---- confirmed orders ---- */
	{ "confirmed-order-charge", 0,
	  "SELECT printf('order %d is CONFIRMED with %d charge(s) of %d, refunded %d; total %d',"
	  " o.id, count(c.id), coalesce(sum(c.amount), 0), coalesce(sum(c.refunded), 0), o.total)"
	  " FROM checked_orders o LEFT JOIN p.charges c ON c.order_id = o.id"
	  " WHERE o.status = 'CONFIRMED' GROUP BY o.id"
	  " HAVING count(c.id) <> 1 OR sum(c.amount) <> o.total OR sum(c.refunded) <> 0"
	  " ORDER BY o.id" },
	{ "confirmed-order-no-shipment", 0,
	  "SELECT printf('order %d is CONFIRMED with no scheduled or committed shipment', o.id)"
	  " FROM checked_orders o WHERE o.status = 'CONFIRMED' AND NOT EXISTS (SELECT 1 FROM"
	  " s.shipments s WHERE s.order_id = o.id AND s.status IN ('SCHEDULED','COMMITTED'))"
	  " ORDER BY o.id" },
	{ "confirmed-order-no-confirmation", 0,
	  "SELECT printf('order %d is CONFIRMED with no confirmation message', o.id)"
	  " FROM checked_orders o WHERE o.status = 'CONFIRMED' AND NOT EXISTS (SELECT 1 FROM"
	  " n.messages m WHERE m.order_id = o.id AND m.kind = 'CONFIRMATION') ORDER BY o.id" },
	{ "confirmed-order-no-reservation", 0,
	  "SELECT printf('order %d is CONFIRMED with no active or shipped reservation', o.id)"
	  " FROM checked_orders o WHERE o.status = 'CONFIRMED' AND NOT EXISTS (SELECT 1 FROM"
	  " i.reservations r WHERE r.order_id = o.id AND r.status IN ('ACTIVE','SHIPPED'))"
	  " ORDER BY o.id" },
	{ "reservation-items-mismatch", 0,
	  "WITH oi AS (SELECT order_id, sku, sum(quantity) AS q FROM o.order_items"
	  "            GROUP BY order_id, sku),"
	  " ri AS (SELECT r.order_id AS order_id, x.sku AS sku, sum(x.quantity) AS q"
	  "        FROM i.reservations r JOIN i.reservation_items x ON x.key = r.key"
	  "        WHERE r.status <> 'RELEASED' GROUP BY r.order_id, x.sku)"
	  " SELECT printf('order %d: %s ordered %d, reserved %d', oi.order_id, oi.sku, oi.q,"
	  "  coalesce(ri.q, 0))"
	  " FROM oi LEFT JOIN ri ON ri.order_id = oi.order_id AND ri.sku = oi.sku"
	  " WHERE oi.order_id IN (SELECT order_id FROM ri) AND coalesce(ri.q, 0) <> oi.q"
	  " UNION ALL"
	  " SELECT printf('order %d: %s ordered 0, reserved %d', ri.order_id, ri.sku, ri.q)"
	  " FROM ri LEFT JOIN oi ON oi.order_id = ri.order_id AND oi.sku = ri.sku"
	  " WHERE oi.q IS NULL" },

	/* ---- cancelled and failed orders ---- */
	{ "ended-order-holds-reservation", 0,
	  "SELECT printf('order %d is %s and holds reservation %s', o.id, o.status, r.key)"
	  " FROM checked_orders o JOIN i.reservations r ON r.order_id = o.id"
	  " WHERE o.status IN " ENDED " AND r.status = 'ACTIVE' ORDER BY o.id" },
	{ "ended-order-shipped", 0,
	  "SELECT printf('order %d is %s but its reservation %s has shipped', o.id, o.status,"
	  " r.key) FROM checked_orders o JOIN i.reservations r ON r.order_id = o.id"
	  " WHERE o.status IN " ENDED " AND r.status = 'SHIPPED' ORDER BY o.id" },
	{ "ended-order-active-shipment", 0,
	  "SELECT printf('order %d is %s with shipment %s %s', o.id, o.status, s.key, s.status)"
	  " FROM checked_orders o JOIN s.shipments s ON s.order_id = o.id"
	  " WHERE o.status IN " ENDED " AND s.status IN ('SCHEDULED','COMMITTED')"
	  " ORDER BY o.id" },
	{ "ended-order-net-charge", 0,
	  "SELECT printf('order %d is %s with a net charge of %d', o.id, o.status,"
	  " sum(c.amount - c.refunded))"
	  " FROM checked_orders o JOIN p.charges c ON c.order_id = o.id"
	  " WHERE o.status IN " ENDED " GROUP BY o.id HAVING sum(c.amount - c.refunded) <> 0"
	  " ORDER BY o.id" },

	/* ---- payment ---- */
	{ "refund-exceeds-charge", 0,
	  "SELECT printf('charge %s: refunded %d of %d', key, refunded, amount)"
	  " FROM p.charges WHERE refunded > amount OR refunded < 0 ORDER BY id" },
	{ "refund-records-mismatch", 0,
	  "SELECT printf('charge %s: refunded %d but its refunds sum to %d', c.key, c.refunded,"
	  " coalesce((SELECT sum(amount) FROM p.refunds r WHERE r.charge_id = c.id), 0))"
	  " FROM p.charges c WHERE c.refunded <>"
	  " coalesce((SELECT sum(amount) FROM p.refunds r WHERE r.charge_id = c.id), 0)"
	  " ORDER BY c.id" },
	{ "order-charged-twice", 0,
	  "SELECT printf('order %d has %d charges', order_id, count(*)) FROM p.charges"
	  " GROUP BY order_id HAVING count(*) > 1 ORDER BY order_id" },
	{ "charge-amount-mismatch", 0,
	  "SELECT printf('charge %s of %d for order %d whose total is %d', c.key, c.amount,"
	  " o.id, o.total) FROM p.charges c JOIN o.orders o ON o.id = c.order_id"
	  " WHERE c.amount <> o.total ORDER BY c.id" },
	{ "account-balance-mismatch", 0,
	  "SELECT printf('account %s: balance used %d but its charges hold %d', a.customer,"
	  " a.balance_used, coalesce(h.held, 0))"
	  " FROM p.accounts a LEFT JOIN (SELECT customer, sum(amount - refunded) AS held"
	  "   FROM p.charges GROUP BY customer) h ON h.customer = a.customer"
	  " WHERE a.balance_used <> coalesce(h.held, 0) ORDER BY a.customer" },
	{ "credit-limit-exceeded", 0,
	  "SELECT printf('account %s: balance used %d > credit limit %d', customer,"
	  " balance_used, credit_limit) FROM p.accounts WHERE balance_used > credit_limit"
	  " ORDER BY customer" },

	/* ---- rows that point at no order ---- */
	{ "orphan-reservation", 0,
	  "SELECT printf('reservation %s is for unknown order %d', key, order_id)"
	  " FROM i.reservations WHERE order_id NOT IN (SELECT id FROM o.orders)" },
	{ "orphan-charge", 0,
	  "SELECT printf('charge %s is for unknown order %d', key, order_id)"
	  " FROM p.charges WHERE order_id NOT IN (SELECT id FROM o.orders)" },
	{ "orphan-shipment", 0,
	  "SELECT printf('shipment %s is for unknown order %d', key, order_id)"
	  " FROM s.shipments WHERE order_id NOT IN (SELECT id FROM o.orders)" },
	{ "orphan-message", 0,
	  "SELECT printf('message %s is for unknown order %d', key, order_id)"
	  " FROM n.messages WHERE order_id NOT IN (SELECT id FROM o.orders)" },

	/* ---- orders <-> sagas (facts passed in by the caller) ---- */
	{ "saga-unfinished", 1,
	  "SELECT printf('saga %s is %s', bkey, state_name) FROM sagas"
	  " WHERE state NOT IN (3, 4) ORDER BY bkey" }, /* SAGA_COMPLETED, SAGA_COMPENSATED */
	{ "order-without-saga", 1,
	  "SELECT printf('order %d (ref %s) has no saga', id, coalesce(ref, '(none)'))"
	  " FROM o.orders WHERE ref IS NULL OR ref NOT IN (SELECT bkey FROM sagas) ORDER BY id" },
	{ "order-with-two-sagas", 1,
	  "SELECT printf('order %d (ref %s) has %d sagas', o.id, o.ref, count(*))"
	  " FROM o.orders o JOIN sagas g ON g.bkey = o.ref GROUP BY o.id HAVING count(*) > 1"
	  " ORDER BY o.id" },
	{ "saga-with-two-orders", 1,
	  "SELECT printf('saga %s has %d orders', g.bkey, count(*))"
	  " FROM sagas g JOIN o.orders o ON o.ref = g.bkey GROUP BY g.bkey HAVING count(*) > 1"
	  " ORDER BY g.bkey" },
	{ "saga-without-order", 1,
	  "SELECT printf('saga %s is %s with no order', bkey, state_name) FROM sagas"
	  " WHERE state = 3 AND settled"
	  "   AND bkey NOT IN (SELECT ref FROM o.orders WHERE ref IS NOT NULL)"
	  " ORDER BY bkey" },
	{ "saga-order-status-mismatch", 1,
	  "SELECT printf('saga %s is %s but order %d is %s', g.bkey, g.state_name, o.id, o.status)"
	  " FROM sagas g JOIN o.orders o ON o.ref = g.bkey"
	  " WHERE g.settled AND ((g.state = 3 AND o.status <> 'CONFIRMED')"
	  "    OR (g.state = 4 AND o.status NOT IN " ENDED ")) ORDER BY g.bkey" },
};

/* "file:" URI of a path, percent-encoding all but unreserved characters. */
static int file_uri(char *out, size_t size, const char *path)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;
	const char *prefix = "file:";
	for (const char *p = prefix; *p; p++)
		out[n++] = *p;
	for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
		if (n + 4 >= size)
			return SAGA_EINVAL;
		unsigned char c = *p;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '/' || c == '.' || c == '_' || c == '-' || c == '~') {
			out[n++] = (char)c;
		} else {
			out[n++] = '%';
			out[n++] = hex[c >> 4];
			out[n++] = hex[c & 15];
		}
	}
	/* Read-write (the connection is query_only): a read-only connection
	 * cannot remove the -wal and -shm it makes, and the last one to close
	 * removes them. Never created (no mode=rwc). */
	const char *suffix = "?mode=rw";
	if (n + strlen(suffix) + 1 > size)
		return SAGA_EINVAL;
	memcpy(out + n, suffix, strlen(suffix) + 1);
	return 0;
}

static int exec1(sqlite3 *db, const char *sql, const char *types, ...)
{
	sqlite3_stmt *st = NULL;
	int rc = svc_map(sqlite3_prepare_v2(db, sql, -1, &st, NULL));
	if (rc == 0) {
		va_list ap;
		va_start(ap, types);
		rc = svc_bindv(st, types, ap);
		va_end(ap);
	}
	if (rc == 0) {
		int s;
		while ((s = sqlite3_step(st)) == SQLITE_ROW)
			;
		rc = s == SQLITE_DONE ? 0 : (svc_map(s) ? svc_map(s) : SAGA_ESTORE);
	}
	sqlite3_finalize(st);
	return rc;
}

static int attach_all(sqlite3 *db, const char *dir, char *errmsg, size_t errmsg_size)
{
	for (int i = 0; i < ECOM_SERVICE_COUNT; i++) {
		char path[4096], uri[3 * 4096 + 32];
		int n = snprintf(path, sizeof path, "%s/%s.db", dir, ecom_service_name(i));
		if (n < 0 || (size_t)n >= sizeof path || file_uri(uri, sizeof uri, path) != 0) {
			svc_msg(errmsg, errmsg_size, "data directory path too long");
			return SAGA_EINVAL;
		}
		struct stat sb;
		if (stat(path, &sb) != 0) {
			svc_msg(errmsg, errmsg_size, "%s: %s (not an ecommerce data directory?)",
			        path, strerror(errno));
			return SAGA_ENOTFOUND;
		}
		int rc = exec1(db, attach_sql[i], "t", uri);
		if (rc != 0) {
			svc_msg(errmsg, errmsg_size, "%s: %s", path, sqlite3_errmsg(db));
			return rc;
		}
	}
	return 0;
}

/* The sagas as seen after the services' snapshot (`after`), each marked
 * settled when it had already ended in `before` (read before the
 * snapshot): its services' rows were final then. */
static int load_sagas(sqlite3 *db, const ecom_saga_fact *before, size_t nbefore,
                      const ecom_saga_fact *after, size_t nafter)
{
	int rc = exec1(db, "CREATE TEMP TABLE settled(bkey TEXT PRIMARY KEY)", NULL);
	for (size_t i = 0; rc == 0 && i < nbefore; i++)
		if (before[i].state == SAGA_COMPLETED || before[i].state == SAGA_COMPENSATED ||
		    before[i].state == SAGA_STUCK)
			rc = exec1(db, "INSERT OR IGNORE INTO settled VALUES (?)", "t",
			           before[i].business_key ? before[i].business_key : "");
	for (size_t i = 0; rc == 0 && i < nafter; i++)
		rc = exec1(db,
		           "INSERT INTO sagas VALUES (?1, ?2, ?3,"
		           " ?1 IN (SELECT bkey FROM settled))",
		           "tit", after[i].business_key ? after[i].business_key : "",
		           (int64_t)after[i].state, saga_state_name(after[i].state));
	return rc;
}

/* Pins each file's snapshot, the order file last: a row of another
 * service always finds its order (the order is created first), and
 * everything a settled saga did is in every snapshot. */
static int pin_snapshots(sqlite3 *db)
{
	static const char *const first_reads[] = {
		"SELECT count(*) FROM i.products",  "SELECT count(*) FROM p.accounts",
		"SELECT count(*) FROM s.shipments", "SELECT count(*) FROM n.messages",
		"SELECT count(*) FROM o.orders",
	};
	int rc = exec1(db, "BEGIN", NULL);
	for (size_t i = 0; rc == 0 && i < sizeof first_reads / sizeof first_reads[0]; i++)
		rc = exec1(db, first_reads[i], NULL);
	return rc;
}

static int run_rules(sqlite3 *db, int with_sagas, ecom_violation_fn fn, void *user, char *errmsg,
                     size_t errmsg_size)
{
	int rc = 0, violations = 0;
	for (size_t r = 0; rc == 0 && r < sizeof rules / sizeof rules[0]; r++) {
		if (rules[r].with_sagas && !with_sagas)
			continue;
		sqlite3_stmt *st = NULL;
		rc = svc_map(sqlite3_prepare_v2(db, rules[r].sql, -1, &st, NULL));
		int s = SQLITE_DONE;
		while (rc == 0 && (s = sqlite3_step(st)) == SQLITE_ROW) {
			const unsigned char *detail = sqlite3_column_text(st, 0);
			violations++;
			if (fn)
				fn(rules[r].name, detail ? (const char *)detail : "", user);
		}
		if (rc == 0 && s != SQLITE_DONE)
			rc = svc_map(s) ? svc_map(s) : SAGA_ESTORE;
		if (rc != 0)
			svc_msg(errmsg, errmsg_size, "rule %s: %s", rules[r].name,
			        sqlite3_errmsg(db));
		sqlite3_finalize(st);
	}
	return rc != 0 ? rc : violations;
}

/* Both checks: `live` reads the sagas again through `after` once the
 * services' snapshots are pinned, and checks only the orders of settled
 * sagas; otherwise `sagas` stand for both readings. */
static int check_dir(const char *dir, const ecom_saga_fact *sagas, size_t nsagas, int live,
                     ecom_facts_fn after, void *after_user, ecom_violation_fn fn, void *user,
                     char *errmsg, size_t errmsg_size)
{
	svc_msg(errmsg, errmsg_size, "%s", "");
	if (!dir || (!sagas && nsagas) || (live && (!sagas || !after)))
		return SAGA_EINVAL;
	sqlite3 *db = NULL;
	int rc = svc_map(sqlite3_open_v2(
	        ":memory:", &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI,
	        NULL));
	if (rc != 0) {
		svc_msg(errmsg, errmsg_size, "cannot open a checking connection");
		sqlite3_close(db);
		return rc;
	}
	sqlite3_busy_timeout(db, 5000);
	rc = attach_all(db, dir, errmsg, errmsg_size);
	int prc = rc;
	if (rc == 0)
		rc = exec1(db,
		           live ? "CREATE TEMP VIEW checked_orders AS SELECT * FROM o.orders"
		                  " WHERE ref IN (SELECT bkey FROM settled)"
		                : "CREATE TEMP VIEW checked_orders AS SELECT * FROM o.orders",
		           NULL);
	if (rc == 0)
		rc = exec1(db,
		           "CREATE TEMP TABLE sagas(bkey TEXT, state INTEGER, state_name TEXT,"
		           " settled INTEGER)",
		           NULL);
	if (prc == 0 && rc != 0)
		svc_msg(errmsg, errmsg_size, "preparing the check: %s", sqlite3_errmsg(db));
	/* One read transaction: every rule sees the same state of each file. */
	if (rc == 0 && (rc = pin_snapshots(db)) != 0)
		svc_msg(errmsg, errmsg_size, "reading the services: %s", sqlite3_errmsg(db));
	const ecom_saga_fact *later = sagas;
	size_t nlater = nsagas;
	if (rc == 0 && live && (rc = after(&later, &nlater, after_user)) != 0)
		svc_msg(errmsg, errmsg_size, "reading the sagas again failed (%s)",
		        saga_strerror(rc));
	if (rc == 0 && sagas && (rc = load_sagas(db, sagas, nsagas, later, nlater)) != 0)
		svc_msg(errmsg, errmsg_size, "loading the sagas: %s", sqlite3_errmsg(db));
	/* Nothing is written from here on, whatever a rule says. */
	if (rc == 0 && (rc = exec1(db, "PRAGMA query_only=1", NULL)) != 0)
		svc_msg(errmsg, errmsg_size, "query_only: %s", sqlite3_errmsg(db));
	if (rc == 0)
		rc = run_rules(db, sagas != NULL, fn, user, errmsg, errmsg_size);
	sqlite3_close(db); /* ends the read transaction */
	return rc;
}

int ecommerce_check(const char *dir, const ecom_saga_fact *sagas, size_t nsagas,
                    ecom_violation_fn fn, void *user, char *errmsg, size_t errmsg_size)
{
	return check_dir(dir, sagas, nsagas, 0, NULL, NULL, fn, user, errmsg, errmsg_size);
}

int ecommerce_check_live(const char *dir, const ecom_saga_fact *before, size_t nbefore,
                         ecom_facts_fn after, void *after_user, ecom_violation_fn fn, void *user,
                         char *errmsg, size_t errmsg_size)
{
	return check_dir(dir, before, nbefore, 1, after, after_user, fn, user, errmsg, errmsg_size);
}
