/* The payment service: accounts with credit limits, charges and refunds.
 * An account's balance_used is what its charges hold (amount - refunded);
 * a charge never refunds more than its amount (CHECK and the operations).
 * SPDX-License-Identifier: MIT */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "svc_db.h"

struct payment_svc {
	svc_db s;
};
_Static_assert(offsetof(struct payment_svc, s) == 0, "svc_db_new: the svc_db comes first");

static const char schema[] =
        "CREATE TABLE IF NOT EXISTS accounts("
        " customer TEXT PRIMARY KEY,"
        " credit_limit INTEGER NOT NULL CHECK (credit_limit >= 0),"
        " balance_used INTEGER NOT NULL DEFAULT 0 CHECK (balance_used >= 0));"
        "CREATE TABLE IF NOT EXISTS charges("
        " id INTEGER PRIMARY KEY,"
        " key TEXT NOT NULL UNIQUE," /* the charge step's idempotency key */
        " order_id INTEGER NOT NULL,"
        " customer TEXT NOT NULL,"
        " amount INTEGER NOT NULL CHECK (amount > 0),"
        " refunded INTEGER NOT NULL DEFAULT 0 CHECK (refunded >= 0 AND refunded <= amount),"
        " created_at INTEGER NOT NULL,"
        " updated_at INTEGER NOT NULL);"
        "CREATE INDEX IF NOT EXISTS charges_order ON charges(order_id);"
        "CREATE TABLE IF NOT EXISTS refunds("
        " id INTEGER PRIMARY KEY,"
        " key TEXT UNIQUE," /* a partial refund's key; NULL for a compensation */
        " charge_id INTEGER NOT NULL REFERENCES charges(id),"
        " amount INTEGER NOT NULL CHECK (amount > 0),"
        " created_at INTEGER NOT NULL);";

int payment_open(payment_svc **out, const char *dir, char *msg, size_t msg_size)
{
	if (!out)
		return SAGA_EINVAL;
	svc_db *s;
	int rc = svc_db_new(&s, sizeof(payment_svc), ECOM_PAYMENT, dir, schema, msg, msg_size);
	*out = (payment_svc *)s; /* its first member */
	return rc;
}

void payment_close(payment_svc *p)
{
	svc_db_delete(p ? &p->s : NULL);
}

void payment_set_faults(payment_svc *p, ecom_faults *faults)
{
	if (p)
		p->s.faults = faults;
}

int payment_open_accounts(payment_svc *p, const ecom_account *a, size_t n, char *msg,
                          size_t msg_size)
{
	svc_msg(msg, msg_size, "%s", "");
	if (!p || (!a && n))
		return SAGA_EINVAL;
	int rc = svc_begin(&p->s, msg, msg_size);
	if (rc != 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		if (!a[i].customer[0] || a[i].credit_limit < 0) {
			svc_msg(msg, msg_size,
			        "account %zu: needs a customer and a credit limit >= 0", i + 1);
			return svc_rollback(&p->s, ECOM_REFUSED);
		}
		int64_t one;
		rc = svc_int(&p->s, &one, "SELECT 1 FROM accounts WHERE customer = ?", "t",
		             a[i].customer);
		if (rc == 0) {
			svc_msg(msg, msg_size, "account of %s exists", a[i].customer);
			return svc_rollback(&p->s, ECOM_REFUSED);
		}
		if (rc != SAGA_ENOTFOUND)
			return svc_fail(&p->s, rc, msg, msg_size);
		rc = svc_exec(&p->s, NULL,
		              "INSERT INTO accounts(customer, credit_limit, balance_used)"
		              " VALUES (?, ?, 0)",
		              "ti", a[i].customer, a[i].credit_limit);
		if (rc != 0)
			return svc_fail(&p->s, rc, msg, msg_size);
	}
	return svc_commit(&p->s, NULL, msg, msg_size);
}

int payment_get_account(payment_svc *p, const char *customer, ecom_account *out)
{
	if (!p || !customer || !out)
		return SAGA_EINVAL;
	memset(out, 0, sizeof *out);
	sqlite3_stmt *st;
	svc_lock(&p->s);
	int rc = svc_prepare(&p->s, &st,
	                     "SELECT customer, credit_limit, balance_used"
	                     " FROM accounts WHERE customer = ?",
	                     "t", customer);
	if (rc == 0) {
		rc = svc_step(st);
		if (rc == 1) {
			svc_col_text(st, 0, out->customer, sizeof out->customer);
			out->credit_limit = sqlite3_column_int64(st, 1);
			out->balance_used = sqlite3_column_int64(st, 2);
			rc = 0;
		} else if (rc == 0) {
			rc = SAGA_ENOTFOUND;
		}
		sqlite3_finalize(st);
	}
	svc_unlock(&p->s);
	return rc;
}

/* Reads the charge made under key; SAGA_ENOTFOUND. Inside a transaction or
 * with the lock held. */
static int read_charge(payment_svc *p, const char *key, ecom_charge *out)
{
	memset(out, 0, sizeof *out);
	sqlite3_stmt *st;
	int rc = svc_prepare(&p->s, &st,
	                     "SELECT id, key, order_id, customer, amount, refunded"
	                     " FROM charges WHERE key = ?",
	                     "t", key);
	if (rc != 0)
		return rc;
	rc = svc_step(st);
	if (rc == 1) {
		out->id = sqlite3_column_int64(st, 0);
		svc_col_text(st, 1, out->key, sizeof out->key);
		out->order_id = sqlite3_column_int64(st, 2);
		svc_col_text(st, 3, out->customer, sizeof out->customer);
		out->amount = sqlite3_column_int64(st, 4);
		out->refunded = sqlite3_column_int64(st, 5);
		rc = 0;
	} else if (rc == 0) {
		rc = SAGA_ENOTFOUND;
	}
	sqlite3_finalize(st);
	return rc;
}

int payment_get_charge(payment_svc *p, const char *key, ecom_charge *out)
{
	if (!p || !key || !out)
		return SAGA_EINVAL;
	svc_lock(&p->s);
	int rc = read_charge(p, key, out);
	svc_unlock(&p->s);
	return rc;
}

int payment_charge(payment_svc *p, const char *key, int64_t order_id, const char *customer,
                   int64_t amount, int64_t order_total, int64_t *charge_id, char *msg,
                   size_t msg_size)
{
	svc_msg(msg, msg_size, "%s", "");
	if (!p || !key || !*key || strlen(key) >= ECOM_KEY_MAX || !customer)
		return SAGA_EINVAL;
	saga_guard_verdict v;
	int rc = svc_guard_begin(&p->s, "charge", saga_guard_action, key, &v, msg, msg_size);
	if (rc != 0)
		return rc;
	if (v == SAGA_GUARD_DONE) {
		int64_t id;
		rc = svc_int(&p->s, &id, "SELECT id FROM charges WHERE key = ?", "t", key);
		if (rc != 0)
			return svc_fail(&p->s, rc == SAGA_ENOTFOUND ? SAGA_ECORRUPT : rc, msg,
			                msg_size);
		if (charge_id)
			*charge_id = id;
		return svc_rollback(&p->s, ECOM_OK);
	}
	if (v == SAGA_GUARD_REFUSED)
		return svc_refuse(&p->s, msg, msg_size,
		                  "charge %s was refunded before it arrived: refused", key);

#define REFUSE(...)                                       \
	do {                                              \
		svc_msg(msg, msg_size, __VA_ARGS__);      \
		return svc_rollback(&p->s, ECOM_REFUSED); \
	} while (0)
	if (amount <= 0 || amount > ECOM_MAX_AMOUNT)
		REFUSE("amount %" PRId64 " is out of range (1..%lld)", amount, ECOM_MAX_AMOUNT);
	if (amount != order_total)
		REFUSE("amount %" PRId64 " does not match the order total %" PRId64, amount,
		       order_total);
	sqlite3_stmt *st;
	rc = svc_prepare(&p->s, &st,
	                 "SELECT credit_limit, balance_used FROM accounts"
	                 " WHERE customer = ?",
	                 "t", customer);
	if (rc != 0)
		return svc_fail(&p->s, rc, msg, msg_size);
	int64_t limit = 0, used = 0;
	rc = svc_step(st);
	if (rc == 1) {
		limit = sqlite3_column_int64(st, 0);
		used = sqlite3_column_int64(st, 1);
	}
	sqlite3_finalize(st);
	if (rc < 0)
		return svc_fail(&p->s, rc, msg, msg_size);
	if (rc == 0)
		REFUSE("customer \"%.*s\" has no payment account", ECOM_ID_MAX, customer);
	int64_t held;
	rc = svc_int(&p->s, &held,
	             "SELECT count(*) FROM charges"
	             " WHERE order_id = ? AND amount > refunded",
	             "i", order_id);
	if (rc != 0)
		return svc_fail(&p->s, rc, msg, msg_size);
	if (held > 0)
		REFUSE("order %" PRId64 " is already charged", order_id);
	if (amount > limit - used)
		REFUSE("credit limit exceeded: %s has %" PRId64 " of %" PRId64 " left, %" PRId64
		       " asked",
		       customer, limit - used, limit, amount);
#undef REFUSE

	int64_t now = (int64_t)svc_now_ms();
	rc = svc_exec(&p->s, NULL,
	              "UPDATE accounts SET balance_used = balance_used + ?"
	              " WHERE customer = ?",
	              "it", amount, customer);
	if (rc == 0)
		rc = svc_exec(&p->s, NULL,
		              "INSERT INTO charges(key, order_id, customer, amount, refunded,"
		              " created_at, updated_at) VALUES (?1, ?2, ?3, ?4, 0, ?5, ?5)",
		              "titii", key, order_id, customer, amount, now);
	if (rc != 0)
		return svc_fail(&p->s, rc, msg, msg_size);
	int64_t id = sqlite3_last_insert_rowid(p->s.db);
	rc = svc_commit(&p->s, "charge", msg, msg_size);
	if (rc == 0 && charge_id)
		*charge_id = id;
	return rc;
}

/* Refunds `amount` of charge c (already checked against what is left). */
static int apply_refund(payment_svc *p, const ecom_charge *c, const char *refund_key,
                        int64_t amount)
{
	int64_t now = (int64_t)svc_now_ms();
	int rc = svc_exec(&p->s, NULL,
	                  "UPDATE charges SET refunded = refunded + ?, updated_at = ?"
	                  " WHERE id = ?",
	                  "iii", amount, now, c->id);
	if (rc == 0)
		rc = svc_exec(&p->s, NULL,
		              "UPDATE accounts SET balance_used = balance_used - ?"
		              " WHERE customer = ?",
		              "it", amount, c->customer);
	if (rc == 0)
		rc = svc_exec(&p->s, NULL,
		              "INSERT INTO refunds(key, charge_id, amount, created_at)"
		              " VALUES (?, ?, ?, ?)",
		              "tiii", refund_key, c->id, amount, now);
	return rc;
}

int payment_refund(payment_svc *p, const char *action_key, char *msg, size_t msg_size)
{
	svc_msg(msg, msg_size, "%s", "");
	if (!p || !action_key || !*action_key)
		return SAGA_EINVAL;
	saga_guard_verdict v;
	int rc = svc_guard_begin(&p->s, "refund", saga_guard_compensation, action_key, &v, msg,
	                         msg_size);
	if (rc != 0)
		return rc;
	if (v == SAGA_GUARD_DONE)
		return svc_rollback(&p->s, ECOM_OK);
	if (v == SAGA_GUARD_EMPTY)
		return svc_commit(&p->s, "refund", msg, msg_size);

	ecom_charge c;
	rc = read_charge(p, action_key, &c);
	if (rc != 0) /* the guard saw the charge, so it must be there */
		return svc_fail(&p->s, rc == SAGA_ENOTFOUND ? SAGA_ECORRUPT : rc, msg, msg_size);
	if (c.amount > c.refunded) {
		rc = apply_refund(p, &c, NULL, c.amount - c.refunded);
		if (rc != 0)
			return svc_fail(&p->s, rc, msg, msg_size);
	}
	return svc_commit(&p->s, "refund", msg, msg_size);
}

int payment_refund_amount(payment_svc *p, const char *key, const char *charge_key, int64_t amount,
                          char *msg, size_t msg_size)
{
	svc_msg(msg, msg_size, "%s", "");
	if (!p || !key || !*key || !charge_key)
		return SAGA_EINVAL;
	saga_guard_verdict v;
	int rc = svc_guard_begin(&p->s, "refund_amount", saga_guard_action, key, &v, msg, msg_size);
	if (rc != 0)
		return rc;
	if (v == SAGA_GUARD_DONE)
		return svc_rollback(&p->s, ECOM_OK);
	if (v == SAGA_GUARD_REFUSED)
		return svc_refuse(&p->s, msg, msg_size, "refund %s was compensated: refused", key);
	ecom_charge c;
	rc = read_charge(p, charge_key, &c);
	if (rc == SAGA_ENOTFOUND) {
		svc_msg(msg, msg_size, "no charge %s", charge_key);
		return svc_rollback(&p->s, ECOM_REFUSED);
	}
	if (rc != 0)
		return svc_fail(&p->s, rc, msg, msg_size);
	if (amount <= 0 || amount > c.amount - c.refunded) {
		svc_msg(msg, msg_size,
		        "refund %" PRId64 " refused: %" PRId64 " of the charge of %" PRId64
		        " is left to refund",
		        amount, c.amount - c.refunded, c.amount);
		return svc_rollback(&p->s, ECOM_REFUSED);
	}
	rc = apply_refund(p, &c, key, amount);
	if (rc != 0)
		return svc_fail(&p->s, rc, msg, msg_size);
	return svc_commit(&p->s, "refund_amount", msg, msg_size);
}
