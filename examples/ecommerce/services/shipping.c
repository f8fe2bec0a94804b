/* The shipping service: shipments with a carrier, a tracking number and a
 * delivery date. SPDX-License-Identifier: MIT */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "svc_db.h"

struct shipping_svc {
	svc_db s;
};
_Static_assert(offsetof(struct shipping_svc, s) == 0, "svc_db_new: the svc_db comes first");

static const char schema[] =
        "CREATE TABLE IF NOT EXISTS shipments("
        " id INTEGER PRIMARY KEY,"
        " key TEXT NOT NULL UNIQUE," /* the schedule step's idempotency key */
        " order_id INTEGER NOT NULL,"
        " method TEXT NOT NULL,"
        " carrier TEXT NOT NULL,"
        " tracking TEXT UNIQUE,"
        " address TEXT NOT NULL,"
        " delivery_date TEXT NOT NULL,"
        " status TEXT NOT NULL CHECK (status IN ('SCHEDULED','COMMITTED','CANCELLED')),"
        " created_at INTEGER NOT NULL,"
        " updated_at INTEGER NOT NULL);"
        "CREATE INDEX IF NOT EXISTS shipments_order ON shipments(order_id);";

/* Carrier and tracking-number prefix of each method (ecom_shipping_method). */
static const struct {
	const char *carrier, *prefix;
} carriers[ECOM_SHIP_COUNT] = {
	{ "USPS", "9400" }, /* STANDARD */
	{ "UPS", "1Z" },    /* EXPRESS */
	{ "FedEx", "FX" },  /* OVERNIGHT */
	{ "UPS", "1Z" },    /* TWO_DAY */
	{ "DHL", "JD" },    /* INTERNATIONAL */
};

int shipping_open(shipping_svc **out, const char *dir, char *msg, size_t msg_size)
{
	if (!out)
		return SAGA_EINVAL;
	svc_db *s;
	int rc = svc_db_new(&s, sizeof(shipping_svc), ECOM_SHIPPING, dir, schema, msg, msg_size);
	*out = (shipping_svc *)s; /* its first member */
	return rc;
}

void shipping_close(shipping_svc *h)
{
	svc_db_delete(h ? &h->s : NULL);
}

void shipping_set_faults(shipping_svc *h, ecom_faults *faults)
{
	if (h)
		h->s.faults = faults;
}

#define SHIPMENT_COLUMNS \
	"id, key, order_id, method, carrier, tracking, delivery_date, address, status, created_at"

/* Reads one shipment selected by `sql` (SHIPMENT_COLUMNS); SAGA_ENOTFOUND. */
static int read_shipment(shipping_svc *h, ecom_shipment *out, const char *sql, const char *types,
                         const char *text, int64_t num)
{
	memset(out, 0, sizeof *out);
	sqlite3_stmt *st;
	int rc = types[0] == 't' ? svc_prepare(&h->s, &st, sql, types, text)
	                         : svc_prepare(&h->s, &st, sql, types, num);
	if (rc != 0)
		return rc;
	rc = svc_step(st);
	if (rc == 1) {
		char buf[32];
		out->id = sqlite3_column_int64(st, 0);
		svc_col_text(st, 1, out->key, sizeof out->key);
		out->order_id = sqlite3_column_int64(st, 2);
		svc_col_text(st, 3, buf, sizeof buf);
		out->method = ecom_shipping_method_parse(buf);
		svc_col_text(st, 4, out->carrier, sizeof out->carrier);
		svc_col_text(st, 5, out->tracking, sizeof out->tracking);
		svc_col_text(st, 6, out->delivery_date, sizeof out->delivery_date);
		svc_col_text(st, 7, out->address, sizeof out->address);
		svc_col_text(st, 8, buf, sizeof buf);
		out->status = -1;
		for (int i = 0; i < 3; i++)
			if (strcmp(buf, ecom_shipment_status_name(i)) == 0)
				out->status = i;
		out->created_ms = (uint64_t)sqlite3_column_int64(st, 9);
		rc = 0;
	} else if (rc == 0) {
		rc = SAGA_ENOTFOUND;
	}
	sqlite3_finalize(st);
	return rc;
}

int shipping_get(shipping_svc *h, int64_t order_id, ecom_shipment *out)
{
	if (!h || !out)
		return SAGA_EINVAL;
	svc_lock(&h->s);
	int rc = read_shipment(h, out,
	                       "SELECT " SHIPMENT_COLUMNS " FROM shipments"
	                       " WHERE order_id = ? ORDER BY id DESC LIMIT 1",
	                       "i", NULL, order_id);
	svc_unlock(&h->s);
	return rc;
}

int shipping_schedule(shipping_svc *h, const char *key, int64_t order_id, int method,
                      const char *address, ecom_shipment *out, char *msg, size_t msg_size)
{
	svc_msg(msg, msg_size, "%s", "");
	if (!h || !key || !*key || strlen(key) >= ECOM_KEY_MAX)
		return SAGA_EINVAL;
	saga_guard_verdict v;
	int rc = svc_guard_begin(&h->s, "schedule", saga_guard_action, key, &v, msg, msg_size);
	if (rc != 0)
		return rc;
	ecom_shipment sh;
	if (v == SAGA_GUARD_DONE) {
		rc = read_shipment(h, &sh,
		                   "SELECT " SHIPMENT_COLUMNS " FROM shipments WHERE key = ?", "t",
		                   key, 0);
		if (rc != 0)
			return svc_fail(&h->s, rc == SAGA_ENOTFOUND ? SAGA_ECORRUPT : rc, msg,
			                msg_size);
		if (out)
			*out = sh;
		return svc_rollback(&h->s, ECOM_OK);
	}
	if (v == SAGA_GUARD_REFUSED)
		return svc_refuse(&h->s, msg, msg_size,
		                  "shipment %s was cancelled before it arrived: refused", key);
	int days = ecom_shipping_days(method);
	if (days < 0) {
		svc_msg(msg, msg_size, "unknown shipping method %d", method);
		return svc_rollback(&h->s, ECOM_REFUSED);
	}
	if (!address || !*address || strlen(address) >= ECOM_TEXT_MAX) {
		svc_msg(msg, msg_size, "a shipment needs an address (1..%d bytes)",
		        ECOM_TEXT_MAX - 1);
		return svc_rollback(&h->s, ECOM_REFUSED);
	}
	int64_t active;
	rc = svc_int(&h->s, &active,
	             "SELECT count(*) FROM shipments"
	             " WHERE order_id = ? AND status <> 'CANCELLED'",
	             "i", order_id);
	if (rc != 0)
		return svc_fail(&h->s, rc, msg, msg_size);
	if (active > 0) {
		svc_msg(msg, msg_size, "order %" PRId64 " already has a shipment", order_id);
		return svc_rollback(&h->s, ECOM_REFUSED);
	}

	uint64_t now = svc_now_ms();
	time_t when = (time_t)(now / 1000u) + (time_t)days * 86400;
	struct tm tm;
	char date[16];
	if (!gmtime_r(&when, &tm) || strftime(date, sizeof date, "%Y-%m-%d", &tm) == 0)
		return svc_fail(&h->s, SAGA_ERROR, msg, msg_size);
	rc = svc_exec(
	        &h->s, NULL,
	        "INSERT INTO shipments(key, order_id, method, carrier, address, delivery_date,"
	        " status, created_at, updated_at)"
	        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'SCHEDULED', ?7, ?7)",
	        "titttti", key, order_id, ecom_shipping_method_name(method),
	        carriers[method].carrier, address, date, (int64_t)now);
	if (rc != 0)
		return svc_fail(&h->s, rc, msg, msg_size);
	/* The row id makes the tracking number unique. */
	int64_t id = sqlite3_last_insert_rowid(h->s.db);
	char tracking[32];
	snprintf(tracking, sizeof tracking, "%s%010" PRId64, carriers[method].prefix, id);
	rc = svc_exec(&h->s, NULL, "UPDATE shipments SET tracking = ? WHERE id = ?", "ti", tracking,
	              id);
	if (rc == 0 && out)
		rc = read_shipment(h, out,
		                   "SELECT " SHIPMENT_COLUMNS " FROM shipments WHERE id = ?", "i",
		                   NULL, id);
	if (rc != 0)
		return svc_fail(&h->s, rc, msg, msg_size);
	return svc_commit(&h->s, "schedule", msg, msg_size);
}

int shipping_commit(shipping_svc *h, const char *key, int64_t order_id, char *msg, size_t msg_size)
{
	svc_msg(msg, msg_size, "%s", "");
	if (!h || !key || !*key)
		return SAGA_EINVAL;
	saga_guard_verdict v;
	int rc = svc_guard_begin(&h->s, "commit", saga_guard_action, key, &v, msg, msg_size);
	if (rc != 0)
		return rc;
	if (v == SAGA_GUARD_DONE)
		return svc_rollback(&h->s, ECOM_OK);
	if (v == SAGA_GUARD_REFUSED)
		return svc_refuse(&h->s, msg, msg_size, "handover %s was compensated: refused",
		                  key);
	int changes = 0;
	rc = svc_exec(&h->s, &changes,
	              "UPDATE shipments SET status = 'COMMITTED', updated_at = ?"
	              " WHERE order_id = ? AND status = 'SCHEDULED'",
	              "ii", (int64_t)svc_now_ms(), order_id);
	if (rc != 0)
		return svc_fail(&h->s, rc, msg, msg_size);
	if (changes == 0) {
		int64_t committed;
		rc = svc_int(&h->s, &committed,
		             "SELECT count(*) FROM shipments"
		             " WHERE order_id = ? AND status = 'COMMITTED'",
		             "i", order_id);
		if (rc != 0)
			return svc_fail(&h->s, rc, msg, msg_size);
		if (committed == 0) {
			svc_msg(msg, msg_size, "order %" PRId64 " has no scheduled shipment",
			        order_id);
			return svc_rollback(&h->s, ECOM_REFUSED);
		}
	}
	return svc_commit(&h->s, "commit", msg, msg_size);
}

int shipping_cancel(shipping_svc *h, const char *action_key, char *msg, size_t msg_size)
{
	svc_msg(msg, msg_size, "%s", "");
	if (!h || !action_key || !*action_key)
		return SAGA_EINVAL;
	saga_guard_verdict v;
	int rc = svc_guard_begin(&h->s, "cancel", saga_guard_compensation, action_key, &v, msg,
	                         msg_size);
	if (rc != 0)
		return rc;
	if (v == SAGA_GUARD_DONE)
		return svc_rollback(&h->s, ECOM_OK);
	if (v == SAGA_GUARD_EMPTY)
		return svc_commit(&h->s, "cancel", msg, msg_size);
	int changes = 0;
	rc = svc_exec(&h->s, &changes,
	              "UPDATE shipments SET status = 'CANCELLED', updated_at = ?"
	              " WHERE key = ? AND status = 'SCHEDULED'",
	              "it", (int64_t)svc_now_ms(), action_key);
	if (rc != 0)
		return svc_fail(&h->s, rc, msg, msg_size);
	if (changes == 0) {
		/* The guard saw the shipment and it is not SCHEDULED: committed. */
		svc_msg(msg, msg_size, "shipment %s is committed to the carrier: cannot cancel",
		        action_key);
		return svc_rollback(&h->s, ECOM_REFUSED);
	}
	return svc_commit(&h->s, "cancel", msg, msg_size);
}
