/* The notification service: confirmation and cancellation messages, sent
 * once per key and kept. SPDX-License-Identifier: MIT */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "svc_db.h"

struct notification_svc {
	svc_db s;
};
_Static_assert(offsetof(struct notification_svc, s) == 0, "svc_db_new: the svc_db comes first");

static const char schema[] = "CREATE TABLE IF NOT EXISTS messages("
                             " id INTEGER PRIMARY KEY,"
                             " key TEXT NOT NULL UNIQUE," /* the send step's idempotency key */
                             " order_id INTEGER NOT NULL,"
                             " channel TEXT NOT NULL CHECK (channel IN ('email','sms','push')),"
                             " kind TEXT NOT NULL CHECK (kind IN ('CONFIRMATION','CANCELLATION')),"
                             " body TEXT NOT NULL,"
                             " created_at INTEGER NOT NULL);"
                             "CREATE INDEX IF NOT EXISTS messages_order ON messages(order_id);";

int notification_open(notification_svc **out, const char *dir, char *msg, size_t msg_size)
{
	if (!out)
		return SAGA_EINVAL;
	svc_db *s;
	int rc = svc_db_new(&s, sizeof(notification_svc), ECOM_NOTIFICATION, dir, schema, msg,
	                    msg_size);
	*out = (notification_svc *)s; /* its first member */
	return rc;
}

void notification_close(notification_svc *n)
{
	svc_db_delete(n ? &n->s : NULL);
}

void notification_set_faults(notification_svc *n, ecom_faults *faults)
{
	if (n)
		n->s.faults = faults;
}

int notification_send(notification_svc *n, const char *key, int64_t order_id, int channel, int kind,
                      const char *body, char *msg, size_t msg_size)
{
	svc_msg(msg, msg_size, "%s", "");
	if (!n || !key || !*key)
		return SAGA_EINVAL;
	saga_guard_verdict v;
	int rc = svc_guard_begin(&n->s, "send", saga_guard_action, key, &v, msg, msg_size);
	if (rc != 0)
		return rc;
	if (v == SAGA_GUARD_DONE)
		return svc_rollback(&n->s, ECOM_OK);
	if (v == SAGA_GUARD_REFUSED)
		return svc_refuse(&n->s, msg, msg_size, "message %s was compensated: refused", key);
	const char *ch = ecom_channel_name(channel), *k = ecom_message_kind_name(kind);
	if (!ch || !k) {
		svc_msg(msg, msg_size, "unknown %s %d", ch ? "message kind" : "channel",
		        ch ? kind : channel);
		return svc_rollback(&n->s, ECOM_REFUSED);
	}
	char text[ECOM_TEXT_MAX];
	if (!body) {
		snprintf(text, sizeof text,
		         kind == ECOM_MESSAGE_CONFIRMATION
		                 ? "Your order %" PRId64 " is confirmed and on its way."
		                 : "Your order %" PRId64 " was cancelled; any payment is refunded.",
		         order_id);
		body = text;
	}
	rc = svc_exec(&n->s, NULL,
	              "INSERT INTO messages(key, order_id, channel, kind, body,"
	              " created_at) VALUES (?, ?, ?, ?, ?, ?)",
	              "tittti", key, order_id, ch, k, body, (int64_t)svc_now_ms());
	if (rc != 0)
		return svc_fail(&n->s, rc, msg, msg_size);
	return svc_commit(&n->s, "send", msg, msg_size);
}

int notification_count(notification_svc *n, int64_t order_id, int kind, int64_t *count)
{
	const char *k = ecom_message_kind_name(kind);
	if (!n || !count || !k)
		return SAGA_EINVAL;
	svc_lock(&n->s);
	int rc = svc_int(&n->s, count,
	                 "SELECT count(*) FROM messages WHERE order_id = ?"
	                 " AND kind = ?",
	                 "it", order_id, k);
	svc_unlock(&n->s);
	return rc;
}
