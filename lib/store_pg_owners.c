/* Owners of a PostgreSQL store: registering, renewing (at pg_begin),
 * retiring and reaping owners, the definitions each serves, claims of pool
 * instances, commands, and the wake-ups: a LISTEN connection of the
 * handle's own, which changed() reads without waiting for the server
 * beyond one round trip.
 *
 * Leases are kept on the server's clock (lease_until, compared inside the
 * SQL with clock_timestamp()), so hosts whose clocks disagree still agree
 * on who is alive; an owner's liveness across hosts is its lease alone.
 * SPDX-License-Identifier: MIT */
#include "store_pg_int.h"

#include <string.h>
#include <unistd.h>

int64_t pg_epoch(const saga_store *s)
{
	return s->epoch;
}

uint64_t pg_lease_left(const saga_store *s)
{
	uint64_t now = pg_mono_ms();
	return s->lease_end > now ? s->lease_end - now : 0;
}

enum { OWNER_DEAD = 1, OWNER_RETIRED = 2 };

/* Queues the end of owner `epoch` in the open transaction. */
static int end_owner(saga_store *s, int64_t epoch, int state)
{
	pg_params p = { .n = 0 };
	p_int(&p, epoch);
	p_int(&p, state);
	pg_note_wake(s); /* its instances are in the pool */
	return pg_queue(s, P_END_OWNER, &p, K_PLAIN, 0);
}

int pg_register(saga_store *s, uint64_t lease_ms)
{
	char host[256] = "";
	if (gethostname(host, sizeof(host) - 1) != 0)
		host[0] = '\0';
	int64_t old = s->epoch;
	s->epoch = 0; /* nothing renewed: the old owner, if any, ends */
	int rc = pg_begin(s);
	if (rc) {
		s->epoch = old;
		return rc;
	}
	if (old && (rc = end_owner(s, old, OWNER_RETIRED)))
		goto fail;
	uint64_t sent = pg_mono_ms();
	pg_params p = { .n = 0 };
	p_text(&p, host);
	p_int(&p, (int64_t)getpid());
	p_int(&p, (int64_t)lease_ms);
	PGresult *r = NULL;
	pg_note_wake(s); /* a new owner: peers count it live */
	if ((rc = pg_query(s, P_REGISTER, &p, &r)))
		goto fail;
	int64_t epoch = PQntuples(r) == 1 ? pg_i64(r, 0, 0) : 0;
	PQclear(r);
	if (epoch <= 0) {
		rc = pg_refuse(s, SAGA_ESTORE, "store: registering an owner gave no epoch");
		goto fail;
	}
	if ((rc = pg_commit(s))) {
		s->epoch = old;
		return rc;
	}
	s->epoch = epoch;
	s->lease_ms = lease_ms;
	s->lease_end = sent + lease_ms;
	return SAGA_OK;
fail:
	pg_rollback(s);
	s->epoch = old;
	return rc;
}

int pg_serve(saga_store *s, const char *name, int version)
{
	if (!s->epoch)
		return pg_refuse(s, SAGA_ESTATE, "store: no owner registered");
	pg_params p = { .n = 0 };
	p_int(&p, s->epoch);
	p_text(&p, name);
	p_int(&p, version);
	return pg_write(s, P_SERVE, &p, K_PLAIN, 0);
}

int pg_retire(saga_store *s)
{
	if (!s->epoch)
		return SAGA_OK;
	int64_t epoch = s->epoch;
	s->epoch = 0; /* the transaction renews nothing */
	int rc = pg_begin(s);
	if (rc == SAGA_OK && (rc = end_owner(s, epoch, OWNER_RETIRED)) == SAGA_OK)
		rc = pg_commit(s);
	if (rc) {
		pg_rollback(s);
		s->epoch = epoch;
		return rc;
	}
	s->lease_end = 0;
	return SAGA_OK;
}

int pg_reap(saga_store *s, int64_t *reaped, int *live)
{
	*reaped = 0;
	*live = 0;
	pg_params p = { .n = 0 };
	p_int(&p, s->epoch);
	int64_t v[2];
	int rc = pg_ints(s, P_REAP, &p, v, 2);
	if (rc)
		return rc;
	*reaped = v[0];
	*live = (int)v[1];
	if (!*reaped)
		return SAGA_OK;
	if (s->in_txn) {
		pg_note_wake(s);
		return SAGA_OK;
	}
	/* Outside a transaction the statement committed alone: its wake-up is
	 * sent alone too. */
	if ((rc = pg_queue_notify(s)) == SAGA_OK)
		pg_sync(s);
	return SAGA_OK;
}

int pg_claim_one(saga_store *s, int64_t id, bool *claimed)
{
	*claimed = false;
	if (!s->epoch)
		return pg_refuse(s, SAGA_ESTATE, "store: no owner registered");
	pg_params p = { .n = 0 };
	p_int(&p, s->epoch);
	p_int(&p, id);
	PGresult *r = NULL;
	int rc = pg_query(s, P_CLAIM_ONE, &p, &r);
	if (rc == SAGA_OK)
		*claimed = PQntuples(r) == 1;
	PQclear(r);
	return rc;
}

int pg_claim(saga_store *s, uint64_t now, int limit, store_id_fn fn, void *user)
{
	if (!s->epoch)
		return pg_refuse(s, SAGA_ESTATE, "store: no owner registered");
	pg_params p = { .n = 0 };
	p_int(&p, s->epoch);
	p_time(&p, now);
	p_int(&p, limit);
	PGresult *r = NULL;
	int rc = pg_query(s, P_CLAIM, &p, &r);
	if (rc)
		return rc;
	/* Every row is claimed, whatever fn says. */
	for (int i = 0, n = PQntuples(r); i < n; i++)
		if (fn(pg_i64(r, i, 0), user))
			break;
	PQclear(r);
	return SAGA_OK;
}

/* The listening connection: opened at open, and again after it is lost. */
int pg_listen_open(saga_store *s)
{
	if (s->listen) {
		PQfinish(s->listen);
		s->listen = NULL;
	}
	int rc;
	if (!(s->listen = pg_connect(s, "libsaga-listen", &rc)))
		return rc;
	char *chan = PQescapeIdentifier(s->listen, s->channel, strlen(s->channel));
	if (!chan)
		return pg_refuse(s, SAGA_ENOMEM, "store: out of memory");
	char sql[128];
	saga_fmt(sql, sizeof(sql), "LISTEN %s", chan);
	PQfreemem(chan);
	PGresult *r = PQexec(s->listen, sql);
	bool ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
	PQclear(r);
	if (!ok)
		return pg_refuse(s, SAGA_EIO, "store: cannot LISTEN: %s",
		                 PQerrorMessage(s->listen));
	s->listen_broken = false;
	return SAGA_OK;
}

int pg_changed(saga_store *s, bool *changed)
{
	*changed = s->rescan;
	s->rescan = false;
	if (s->listen_broken || PQstatus(s->listen) != CONNECTION_OK) {
		/* Notifications sent while it was down are lost: a rescan. */
		uint64_t now = pg_mono_ms();
		if (now < s->retry_at)
			return SAGA_OK;
		*changed = true;
		if (pg_listen_open(s)) {
			s->listen_broken = true;
			s->retry_at = now + 1000;
		}
		return SAGA_OK;
	}
	/* One round trip: a notification committed before this call is
	 * delivered ahead of the answer. */
	PGresult *r = PQexec(s->listen, "");
	bool ok = r && PQresultStatus(r) == PGRES_EMPTY_QUERY;
	PQclear(r);
	if (!ok) {
		s->listen_broken = true;
		*changed = true;
		return SAGA_OK;
	}
	char me[24];
	saga_fmt(me, sizeof(me), "%d", PQbackendPID(s->conn));
	PGnotify *n;
	while ((n = PQnotifies(s->listen))) {
		if (strcmp(n->extra, me) != 0)
			*changed = true;
		PQfreemem(n);
	}
	return SAGA_OK;
}

int pg_put_command(saga_store *s, const store_command *c)
{
	pg_params p = { .n = 0 };
	p_int(&p, c->instance);
	p_int(&p, c->verb);
	p_int(&p, c->step);
	p_int(&p, c->phase);
	p_int(&p, c->result);
	p_text(&p, c->output);
	p_time(&p, c->requested_at);
	p_int(&p, s->epoch);
	pg_note_wake(s);
	return pg_write(s, P_CMD_PUT, &p, K_PLAIN, 0);
}

int pg_commands(saga_store *s, store_command_fn fn, void *user)
{
	pg_params p = { .n = 0 };
	p_int(&p, s->epoch);
	PGresult *r = NULL;
	int rc = pg_query(s, P_CMD_LIST, &p, &r);
	if (rc)
		return rc;
	for (int i = 0, n = PQntuples(r); i < n; i++) {
		store_command c;
		c.id = pg_i64(r, i, 0);
		c.instance = pg_i64(r, i, 1);
		c.verb = (int)pg_i64(r, i, 2);
		c.step = (int)pg_i64(r, i, 3);
		c.phase = (int)pg_i64(r, i, 4);
		c.result = (int)pg_i64(r, i, 5);
		c.output = PQgetisnull(r, i, 6) ? NULL : PQgetvalue(r, i, 6);
		c.requested_at = (uint64_t)pg_i64(r, i, 7);
		if (fn(&c, user))
			break;
	}
	PQclear(r);
	return SAGA_OK;
}

int pg_count_commands(saga_store *s, const store_command *c, int64_t *n)
{
	pg_params p = { .n = 0 };
	p_int(&p, c->instance);
	p_int(&p, c->verb);
	p_int(&p, c->step);
	p_int(&p, c->phase);
	*n = 0;
	return pg_ints(s, P_CMD_COUNT, &p, n, 1);
}

int pg_delete_command(saga_store *s, int64_t id)
{
	pg_params p = { .n = 0 };
	p_int(&p, id);
	return pg_write(s, P_CMD_DEL, &p, K_PLAIN, 0);
}
