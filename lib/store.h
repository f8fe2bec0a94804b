/* The store interface: what the engine asks of a store, at the level of
 * saga operations (a round's transaction, fenced instance writes, history,
 * owners and claims, commands, wake-ups, queries), never SQL. One versioned
 * table of functions per backend: SQLite (store_sqlite.c and its family)
 * and PostgreSQL (store_pg*.c), both held to one conformance suite
 * (tests/test-store-conformance.c).
 *
 * Rules every backend keeps (the conformance suite checks them):
 * - A handle writes as one owner, registered with store_register: a new
 *   epoch, never reused. begin() renews its lease only while the lease has
 *   not lapsed; a lapsed one gives SAGA_EFENCED and is never renewed again.
 *   A backend that sends the renewal with the round's writes (PostgreSQL,
 *   while its own count leaves half the lease or more) may learn of the
 *   refusal at the commit instead: the commit then gives SAGA_EFENCED
 *   having committed nothing, and every begin after it refuses at once.
 *   The renewal counts (lease_left) only once its transaction commits: a
 *   round rolled back renewed nothing in the store.
 * - Every instance write is fenced: update() changes the row only when the
 *   store still holds the owner and fence the row was loaded with, and
 *   gives SAGA_EFENCED (changing nothing) otherwise. update gives
 *   SAGA_EFENCED at once or at commit: a backend that sends a round's
 *   writes in one batch (PostgreSQL's pipeline) may answer SAGA_OK and learn
 *   of the refusal later; the transaction then cannot commit, and commit()
 *   gives SAGA_EFENCED having committed nothing of it. A history row is
 *   fenced the same way (only the instance's owner, or anyone for an ended
 *   instance, writes it).
 * - A read in the open transaction sees its writes; after a refused write,
 *   a read may give the refusal instead of an answer.
 * - A claim takes unowned due instances of the definitions the owner
 *   serves, growing each one's fence; two owners never claim one instance.
 * - Ended instances belong to nobody (owner 0).
 * - The version is only ever raised, with members appended at the end.
 * SPDX-License-Identifier: MIT */
#ifndef SAGA_STORE_H
#define SAGA_STORE_H

#include "internal.h"

#define STORE_OPS_VERSION 5

typedef struct store_ops {
	unsigned int version; /* STORE_OPS_VERSION */
	const char *name;     /* "sqlite", "postgresql" */

	int (*open)(saga_store **out, const char *uri, saga_durability durability, uint32_t busy_ms,
	            const saga_alloc *alloc, char *err, size_t err_size);
	void (*close)(saga_store *s);
	const char *(*errmsg)(const saga_store *s);

	/* owners */
	int (*register_owner)(saga_store *s, uint64_t lease_ms);
	int64_t (*epoch)(const saga_store *s);
	uint64_t (*lease_left)(const saga_store *s);
	int (*serve)(saga_store *s, const char *name, int version);
	int (*retire)(saga_store *s);
	int (*reap)(saga_store *s, int64_t *reaped, int *live);
	int (*claim)(saga_store *s, uint64_t now, int limit, store_id_fn fn, void *user);
	int (*claim_one)(saga_store *s, int64_t id, bool *claimed);
	int (*changed)(saga_store *s, bool *changed);

	/* the round's transaction */
	int (*begin)(saga_store *s);
	int (*commit)(saga_store *s);
	void (*rollback)(saga_store *s);

	/* definitions */
	int (*put_definition)(saga_store *s, const char *name, int version, const char *snapshot);
	int (*get_definition)(saga_store *s, char **snapshot, const char *name, int version,
	                      const saga_alloc *alloc);

	/* instances and history */
	int (*insert)(saga_store *s, saga_row *row);
	int (*update)(saga_store *s, saga_row *row);
	int (*load)(saga_store *s, saga_row *row, int64_t id, const saga_alloc *a);
	int (*load_uid)(saga_store *s, saga_row *row, const char *uid, const saga_alloc *a);
	int (*find_bkey)(saga_store *s, int64_t *id, const char *bkey);
	int (*add_history)(saga_store *s, const saga_hist *h);
	int (*last_outcome)(saga_store *s, int64_t id, int step, int phase, int *outcome);
	int (*scan_active)(saga_store *s, store_id_fn fn, void *user);
	int (*scan_due)(saga_store *s, uint64_t now, int limit, store_id_fn fn, void *user);
	int (*next_due)(saga_store *s, uint64_t *out);
	int (*next_due_pool)(saga_store *s, uint64_t *out);

	/* commands */
	int (*put_command)(saga_store *s, const store_command *c);
	int (*commands)(saga_store *s, store_command_fn fn, void *user);
	int (*delete_command)(saga_store *s, int64_t id);

	/* queries and retention */
	int (*history)(saga_store *s, int64_t id, saga_event_fn fn, void *user,
	               const char *const *step_names, size_t nsteps);
	int (*page)(saga_store *s, const store_filter *f, int64_t after, int limit, store_row_fn fn,
	            void *user);
	int (*pending)(saga_store *s, int64_t after, int limit, store_row_fn fn, void *user);
	int (*counts)(saga_store *s, int64_t counts[SAGA_STATE_COUNT]);
	int (*json_valid)(saga_store *s, const char *text, bool *valid);
	int (*purge_batch)(saga_store *s, int state, uint64_t before, int64_t *purged);
	int (*count_commands)(saga_store *s, const store_command *c, int64_t *n);

	/* version 2: what an operator reads (lib/admin.c), each in a short read
	 * transaction of its own, never blocking a writer */
	int (*owners)(saga_store *s, bool all, store_owner_fn fn, void *user);
	int (*definitions)(saga_store *s, store_def_fn fn, void *user);
	int (*def_counts)(saga_store *s, store_count_fn fn, void *user);

	/* version 3: the store gauges (saga_metrics_write), read outside any
	 * transaction of the handle's; never blocking a writer. */
	int (*stuck_counts)(saga_store *s, store_count_fn fn, void *user);
	int (*overdue)(saga_store *s, uint64_t now, uint64_t late, int64_t *overdue,
	               uint64_t *oldest_due);

	/* version 4: the round's reads and inserts in one call each.
	 * load_many: the instances of a round's ready queue (on PostgreSQL
	 * one statement, not a round trip each); rows missing or damaged are
	 * absent, for load() to tell which. */
	int (*load_many)(saga_store *s, const int64_t *ids, size_t n, store_load_fn fn, void *user,
	                 const saga_alloc *a);
	/* Inserts rows[0..n) in the open transaction, setting each one's id,
	 * as n insert() calls would (on PostgreSQL one round trip, not n),
	 * except that a row whose business key is taken (by an instance in
	 * the store, or inserted earlier in this transaction, this call's rows
	 * included) gets id 0 and is not inserted, and the transaction goes
	 * on. SAGA_EINVAL outside a transaction. */
	int (*insert_many)(saga_store *s, saga_row *rows, size_t n);

	/* version 5: whether a store is there, without making one (the admin
	 * API opens stores, never creates them): SAGA_OK when `target` (what
	 * store_for_name gave) holds one, SAGA_ENOTFOUND when it does not (no
	 * such file; a database or schema without a store's tables), another
	 * code when it cannot tell; a message in err. Writes nothing. */
	int (*probe)(const char *target, char *err, size_t err_size);
} store_ops;

/* The SQLite backend. */
extern const store_ops store_sqlite_ops;
#ifdef SAGA_HAVE_POSTGRESQL
/* The PostgreSQL backend (store_pg*.c). */
extern const store_ops store_pg_ops;
#endif

/* The backend a store name (saga_options.path) chooses, in *ops, and what
 * that backend opens, in *target (a pointer into name): "postgresql://..."
 * and "postgres://..." are libpq URIs, given as they are; "postgresql:"
 * followed by a key=value conninfo gives that conninfo; "sqlite:PATH" is
 * the SQLite store at PATH; any other name is a SQLite path. SAGA_EINVAL,
 * with a message in err, for a PostgreSQL name when built without it. */
int store_for_name(const store_ops **ops, const char **target, const char *name, char *err,
                   size_t err_size);

#endif
