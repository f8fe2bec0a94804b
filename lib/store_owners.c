/* Owners of a SQLite store: the lease clock, registering, renewing (at
 * store_begin), retiring and reaping owners, the definitions each serves,
 * claims of pool instances, the cross-process change check, and the
 * command rows queued for an instance's owner.
 * SPDX-License-Identifier: MIT */
#define _GNU_SOURCE /* CLOCK_BOOTTIME */
#include "store_sqlite_int.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Owners: leases, claims, reaping
 *
 * The lease clock is CLOCK_BOOTTIME, which every process on the host shares
 * and which counts while the machine sleeps; a lease is only compared with
 * the clock of the boot it was written under (owners.boot_id): an owner
 * from another boot is dead. The due times stay on the engine's wall clock,
 * which survives reboots. */

static uint64_t lease_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int read_boot_id(saga_store *s)
{
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
	size_t n = f ? fread(s->boot_id, 1, sizeof(s->boot_id) - 1, f) : 0;
	if (f)
		fclose(f);
	while (n && (s->boot_id[n - 1] == '\n' || s->boot_id[n - 1] == ' '))
		n--;
	s->boot_id[n] = '\0';
	if (n == 0)
		return refuse(s, SAGA_EIO,
		              "store: cannot read this boot's id "
		              "(/proc/sys/kernel/random/boot_id)");
	return SAGA_OK;
}

int64_t store_epoch(const saga_store *s)
{
	return s->epoch;
}

uint64_t store_lease_left(const saga_store *s)
{
	uint64_t now = lease_now();
	return s->lease_until > now ? s->lease_until - now : 0;
}

/* Binds ?1 to this owner and runs a statement that returns no rows. */
static int exec_owned(saga_store *s, int id, int64_t epoch, const char *what)
{
	sqlite3_stmt *st = s->st[id];
	int brc = sqlite3_bind_int64(st, 1, epoch);
	return brc == SQLITE_OK ? exec_stmt(s, st, what) : fail(s, brc, "bind");
}

/* Ends owner `epoch` (state 1 dead, 2 retired), its unfinished instances
 * back to the pool, its definitions forgotten; in the open transaction. */
static int end_owner(saga_store *s, int64_t epoch, int state)
{
	sqlite3_stmt *st = s->st[ST_OWNER_END];
	int rc = SAGA_OK;
	BIND(sqlite3_bind_int64(st, 1, epoch));
	BIND(sqlite3_bind_int(st, 2, state));
	if ((rc = exec_stmt(s, st, "end owner")) ||
	    (rc = exec_owned(s, ST_OWNER_RELEASE, epoch, "release instances")))
		return rc;
	return exec_owned(s, ST_OWNER_UNSERVE, epoch, "forget definitions");
done:
	return done_with(st, rc);
}

enum { OWNER_LIVE = 0, OWNER_DEAD = 1, OWNER_RETIRED = 2 };

int store_register(saga_store *s, uint64_t lease_ms)
{
	char host[256] = "";
	if (gethostname(host, sizeof(host) - 1) != 0)
		host[0] = '\0';
	int rc = exec(s, "BEGIN IMMEDIATE", "begin registration");
	if (rc)
		return rc;
	int64_t old = s->epoch;
	if (old && (rc = end_owner(s, old, OWNER_RETIRED)))
		goto fail;
	uint64_t now = lease_now();
	sqlite3_stmt *st = NULL;
	int src = sqlite3_prepare_v2(s->db,
	                             "INSERT INTO owners(host, pid, boot_id, started_at,"
	                             " lease_until, state) VALUES (?1, ?2, ?3, ?4, ?5, 0)",
	                             -1, &st, NULL);
	if (src == SQLITE_OK)
		src = sqlite3_bind_text(st, 1, host, -1, SQLITE_STATIC);
	if (src == SQLITE_OK)
		src = sqlite3_bind_int64(st, 2, (sqlite3_int64)getpid());
	if (src == SQLITE_OK)
		src = sqlite3_bind_text(st, 3, s->boot_id, -1, SQLITE_STATIC);
	if (src == SQLITE_OK)
		src = sqlite3_bind_int64(st, 4, (sqlite3_int64)now);
	if (src == SQLITE_OK)
		src = sqlite3_bind_int64(st, 5, (sqlite3_int64)(now + lease_ms));
	if (src == SQLITE_OK && (src = sqlite3_step(st)) == SQLITE_DONE)
		src = SQLITE_OK;
	sqlite3_finalize(st);
	if (src != SQLITE_OK) {
		rc = fail(s, src, "register owner");
		goto fail;
	}
	int64_t epoch = sqlite3_last_insert_rowid(s->db);
	/* The liveness byte is held before anyone can see the owner. */
	if ((rc = byte_lock(s, epoch, F_WRLCK, false, NULL))) {
		rc = refuse(s, rc == SAGA_EBUSY ? SAGA_ECORRUPT : rc,
		            "store: cannot lock byte %lld of %s-lock", (long long)epoch, s->path);
		goto fail;
	}
	if ((rc = exec(s, "COMMIT", "commit registration"))) {
		byte_lock(s, epoch, F_UNLCK, false, NULL);
		goto fail;
	}
	if (old)
		byte_lock(s, old, F_UNLCK, false, NULL);
	s->epoch = epoch;
	s->lease_ms = lease_ms;
	s->lease_until = now + lease_ms;
	return SAGA_OK;
fail:
	sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

int store_serve(saga_store *s, const char *name, int version)
{
	if (!s->epoch)
		return refuse(s, SAGA_ESTATE, "store: no owner registered");
	sqlite3_stmt *st = s->st[ST_SERVE];
	int rc = SAGA_OK;
	BIND(sqlite3_bind_int64(st, 1, s->epoch));
	BIND(sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC));
	BIND(sqlite3_bind_int(st, 3, version));
	return exec_stmt(s, st, "serve definition");
done:
	return done_with(st, rc);
}

int store_retire(saga_store *s)
{
	if (!s->epoch)
		return SAGA_OK;
	int rc = exec(s, "BEGIN IMMEDIATE", "begin retirement");
	if (rc == SAGA_OK && (rc = end_owner(s, s->epoch, OWNER_RETIRED)) == SAGA_OK)
		rc = exec(s, "COMMIT", "commit retirement");
	if (rc) {
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		return rc;
	}
	byte_lock(s, s->epoch, F_UNLCK, false, NULL);
	s->epoch = 0;
	return SAGA_OK;
}

int store_begin(saga_store *s)
{
	txn_reset(s);
	int rc = exec_stmt(s, s->st[ST_BEGIN], "begin");
	if (rc || !s->epoch)
		return rc;
	/* The heartbeat, and the fence of everything this transaction writes:
	 * the lease is renewed only while it has not lapsed. */
	uint64_t now = lease_now();
	sqlite3_stmt *st = s->st[ST_RENEW];
	BIND(sqlite3_bind_int64(st, 1, s->epoch));
	BIND(sqlite3_bind_int64(st, 2, (sqlite3_int64)now));
	BIND(sqlite3_bind_int64(st, 3, (sqlite3_int64)s->lease_ms));
	if ((rc = exec_stmt(s, st, "renew lease")))
		goto fail;
	if (sqlite3_changes(s->db) != 1) {
		rc = refuse(s, SAGA_EFENCED,
		            "store: the lease of owner %lld lapsed; another process may own its "
		            "instances now",
		            (long long)s->epoch);
		s->lease_until = 0;
		goto fail;
	}
	/* It counts once the transaction commits (a rolled-back round renewed
	 * nothing in the store). */
	s->lease_next = now + s->lease_ms;
	return SAGA_OK;
done:
	done_with(st, rc);
fail:
	store_rollback(s);
	return rc;
}

int store_reap(saga_store *s, int64_t *reaped, int *live)
{
	*reaped = 0;
	*live = 0;
	sqlite3_stmt *st = s->st[ST_OWNERS_LIVE];
	int64_t dead[64];
	int ndead = 0, src, rc = SAGA_OK;
	uint64_t now = lease_now();
	BIND(sqlite3_bind_int64(st, 1, s->epoch));
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t epoch = sqlite3_column_int64(st, 0);
		uint64_t until = (uint64_t)sqlite3_column_int64(st, 1);
		const char *boot = (const char *)sqlite3_column_text(st, 2);
		bool same_boot = boot && strcmp(boot, s->boot_id) == 0, held = true;
		/* On this host, a free byte means the process is gone. */
		if (same_boot && until > now &&
		    byte_lock(s, epoch, F_WRLCK, true, &held) != SAGA_OK)
			held = true; /* cannot tell: the lease decides */
		if (!same_boot || until <= now || !held) {
			if (ndead < (int)(sizeof(dead) / sizeof(dead[0])))
				dead[ndead++] = epoch;
		} else {
			(*live)++;
		}
	}
	rc = src == SQLITE_DONE ? SAGA_OK : fail(s, src, "list owners");
	done_with(st, rc);
	if (rc || !ndead)
		return rc;
	/* A lapsed lease is never renewed and a gone process never comes
	 * back: what was read outside a transaction still holds in it. */
	bool own = sqlite3_get_autocommit(s->db);
	if (own && (rc = exec(s, "BEGIN IMMEDIATE", "begin reaping")))
		return rc;
	for (int i = 0; i < ndead && rc == SAGA_OK; i++)
		rc = end_owner(s, dead[i], OWNER_DEAD);
	if (own && rc == SAGA_OK)
		rc = exec(s, "COMMIT", "commit reaping");
	if (own && rc)
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	if (rc == SAGA_OK)
		*reaped = ndead;
	return rc;
done:
	return done_with(st, rc);
}

int store_claim_one(saga_store *s, int64_t id, bool *claimed)
{
	*claimed = false;
	if (!s->epoch)
		return refuse(s, SAGA_ESTATE, "store: no owner registered");
	sqlite3_stmt *st = s->st[ST_CLAIM_ONE];
	int rc = SAGA_OK;
	BIND(sqlite3_bind_int64(st, 1, s->epoch));
	BIND(sqlite3_bind_int64(st, 2, id));
	if ((rc = exec_stmt(s, st, "claim instance")) == SAGA_OK)
		*claimed = sqlite3_changes(s->db) == 1;
	return rc;
done:
	return done_with(st, rc);
}

int store_claim(saga_store *s, uint64_t now, int limit, store_id_fn fn, void *user)
{
	if (!s->epoch)
		return refuse(s, SAGA_ESTATE, "store: no owner registered");
	sqlite3_stmt *st = s->st[ST_CLAIM];
	int rc = SAGA_OK, src;
	BIND(sqlite3_bind_int64(st, 1, s->epoch));
	BIND(sqlite3_bind_int64(st, 2, time_param(now)));
	BIND(sqlite3_bind_int(st, 3, limit));
	/* Every row is stepped: the statement claims them all, whatever fn says. */
	bool stop = false;
	while ((src = sqlite3_step(st)) == SQLITE_ROW)
		if (!stop && fn(sqlite3_column_int64(st, 0), user))
			stop = true;
	rc = src == SQLITE_DONE ? SAGA_OK : fail(s, src, "claim");
done:
	return done_with(st, rc);
}

int store_changed(saga_store *s, bool *changed)
{
	sqlite3_int64 v = 0;
	int rc = one_int(s, s->st[ST_DATA_VERSION], "data version", &v);
	if (rc)
		return rc;
	*changed = v != s->data_version;
	s->data_version = v;
	return SAGA_OK;
}

int store_put_command(saga_store *s, const store_command *c)
{
	sqlite3_stmt *st = s->st[ST_CMD_PUT];
	int rc = SAGA_OK;
	BIND(sqlite3_bind_int64(st, 1, c->instance));
	BIND(sqlite3_bind_int(st, 2, c->verb));
	BIND(sqlite3_bind_int(st, 3, c->step));
	BIND(sqlite3_bind_int(st, 4, c->phase));
	BIND(sqlite3_bind_int(st, 5, c->result));
	if (c->output)
		BIND(sqlite3_bind_text(st, 6, c->output, -1, SQLITE_STATIC));
	else
		BIND(sqlite3_bind_null(st, 6));
	BIND(sqlite3_bind_int64(st, 7, time_param(c->requested_at)));
	BIND(sqlite3_bind_int64(st, 8, s->epoch));
	return exec_stmt(s, st, "queue command");
done:
	return done_with(st, rc);
}

int store_commands(saga_store *s, store_command_fn fn, void *user)
{
	sqlite3_stmt *st = s->st[ST_CMD_LIST];
	int rc = SAGA_OK, src;
	BIND(sqlite3_bind_int64(st, 1, s->epoch));
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		store_command c;
		c.id = sqlite3_column_int64(st, 0);
		c.instance = sqlite3_column_int64(st, 1);
		c.verb = sqlite3_column_int(st, 2);
		c.step = sqlite3_column_int(st, 3);
		c.phase = sqlite3_column_int(st, 4);
		c.result = sqlite3_column_int(st, 5);
		c.output = (const char *)sqlite3_column_text(st, 6);
		c.requested_at = (uint64_t)sqlite3_column_int64(st, 7);
		if (fn(&c, user))
			break;
	}
	if (src != SQLITE_ROW && src != SQLITE_DONE)
		rc = fail(s, src, "read commands");
done:
	return done_with(st, rc);
}

int store_count_commands(saga_store *s, const store_command *c, int64_t *n)
{
	sqlite3_stmt *st = s->st[ST_CMD_FIND];
	int rc = SAGA_OK;
	BIND(sqlite3_bind_int64(st, 1, c->instance));
	BIND(sqlite3_bind_int(st, 2, c->verb));
	BIND(sqlite3_bind_int(st, 3, c->step));
	BIND(sqlite3_bind_int(st, 4, c->phase));
	sqlite3_int64 v = 0;
	rc = one_int(s, st, "count commands", &v);
	*n = v;
	return rc;
done:
	return done_with(st, rc);
}

int store_delete_command(saga_store *s, int64_t id)
{
	return exec_owned(s, ST_CMD_DEL, id, "delete command");
}

/* ---- what an operator reads ---- */

int store_list_owners(saga_store *s, bool all, store_owner_fn fn, void *user)
{
	sqlite3_stmt *st;
	int src, rc = prepare_once(
	                 s, &st,
	                 "SELECT o.epoch, o.host, o.pid, o.boot_id, o.started_at, o.lease_until, "
	                 "o.state,"
	                 " coalesce((SELECT group_concat(d.def_name || '@' || d.def_version, ' ')"
	                 " FROM owner_defs d WHERE d.epoch = o.epoch), ''),"
	                 " CASE WHEN o.state = 0 THEN (SELECT count(*) FROM instances i"
	                 " WHERE i.owner = o.epoch AND i.state < 3) ELSE 0 END"
	                 " FROM owners o WHERE ?1 OR o.state = 0 ORDER BY o.epoch",
	                 "list owners");
	if (rc)
		return rc;
	if ((src = sqlite3_bind_int(st, 1, all)) != SQLITE_OK)
		return finish_once(s, st, src, "list owners");
	uint64_t now = lease_now();
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		const char *boot = (const char *)sqlite3_column_text(st, 3);
		bool this_boot = boot && strcmp(boot, s->boot_id) == 0;
		uint64_t started = (uint64_t)sqlite3_column_int64(st, 4);
		uint64_t until = (uint64_t)sqlite3_column_int64(st, 5);
		const char *host = (const char *)sqlite3_column_text(st, 1);
		const char *served = (const char *)sqlite3_column_text(st, 7);
		store_owner o = { sqlite3_column_int64(st, 0),
			          host ? host : "",
			          sqlite3_column_int64(st, 2),
			          sqlite3_column_int(st, 6),
			          this_boot && now > started ? now - started : 0,
			          0,
			          served ? served : "",
			          sqlite3_column_int64(st, 8) };
		if (o.state == OWNER_LIVE && this_boot && until > now)
			o.lease_left = until - now;
		if (fn(&o, user))
			break;
	}
	return finish_once(s, st, src, "list owners");
}
