/* The PostgreSQL store's private header, shared by its files and by nothing
 * else: the statement ids, struct saga_store, and the helpers more than one
 * of them calls. The files:
 * - store_pg.c: the statements' SQL, the connection (opening, the session,
 *   reconnecting), the pipeline, the round's transaction, the schema, and
 *   the store_pg_ops table;
 * - store_pg_owners.c: owners and their leases (on the server's clock),
 *   reaping, claims, commands, and the wake-ups (LISTEN/NOTIFY);
 * - store_pg_rows.c: definitions and instance rows written (fenced) and
 *   read, history, the scans, listings, counts and purge;
 * - store_pg_batch.c: a round's instance updates and history rows gathered
 *   into one statement each (array parameters).
 *
 * The round is one pipeline. The connection stays in libpq's pipeline mode:
 * writes (commands, and the gathered instance updates and history rows)
 * are queued and sent without waiting for their answers; a read that needs an answer, and the
 * commit, send a Sync and read every queued answer in order. A fenced write
 * that changes no row raises an error on the server (a division by zero
 * over the count of rows it changed), which aborts the transaction there:
 * the COMMIT queued behind it is skipped, nothing commits, and commit()
 * gives SAGA_EFENCED.
 * SPDX-License-Identifier: MIT */
#ifndef SAGA_STORE_PG_INT_H
#define SAGA_STORE_PG_INT_H

#include "store.h"

#include <libpq-fe.h>

enum pg_stmt {
	P_BEGIN,
	P_COMMIT,
	P_ROLLBACK,
	P_RENEW,
	P_REGISTER,
	P_END_OWNER,
	P_SERVE,
	P_REAP,
	P_CLAIM,
	P_CLAIM_ONE,
	P_NOTIFY,
	P_DEF_GET,
	P_DEF_PUT,
	P_INSERT,
	P_INSERT_MANY,
	P_UPDATE_MANY,
	P_LOAD,
	P_LOAD_UID,
	P_FIND_BKEY,
	P_HIST_MANY,
	P_LAST_OUTCOME,
	P_SCAN_ACTIVE,
	P_SCAN_DUE,
	P_NEXT_DUE,
	P_HISTORY,
	P_PAGE,
	P_PENDING,
	P_COUNTS,
	P_PURGE,
	P_CMD_PUT,
	P_CMD_LIST,
	P_CMD_DEL,
	P_CMD_COUNT,
	P_OWNERS,
	P_DEFS,
	P_DEF_COUNTS,
	P_STUCK,
	P_OVERDUE,
	P_LOAD_MANY,
	P_COUNT
};

/* How a queued statement's answer is read. */
enum pg_kind {
	K_PLAIN,  /* success or an error */
	K_FENCED, /* an error 22012 (the division by zero) means SAGA_EFENCED */
	K_WANT,   /* its result is handed to the caller */
	K_COMMIT, /* a COMMIT answered "ROLLBACK" did not commit */
	K_NOTIFY, /* after the commit: its failure changes nothing */
	K_LEASE   /* the lease's renewal: its answer is the lease_next to be */
};

/* A statement sent and not yet answered. */
struct pg_pending {
	enum pg_kind kind;
	int stmt;
	int64_t id; /* the instance a fenced write is about */
};

/* Queued statements are answered (a Sync) at this many, so that neither
 * side's socket buffer fills while the other waits. */
#define PG_QUEUE_MAX 256

/* The text form of a statement's parameters. */
#define PG_PARAMS_MAX 30
typedef struct pg_params {
	int n;
	const char *v[PG_PARAMS_MAX];
	char buf[PG_PARAMS_MAX][24];
} pg_params;

/* One column of a batch: the array literal of its rows' values so far
 * ("{v1,v2" without its closing brace). */
struct pg_col {
	char *buf;
	size_t len, cap;
};

/* A round's writes of one statement, gathered (store_pg_batch.c). */
typedef struct pg_batch {
	int stmt;          /* P_UPDATE_MANY, P_HIST_MANY or P_INSERT_MANY */
	const char *types; /* a letter per column: 'i' a number, 't' a text */
	int ncols, rows;
	bool unique; /* an instance at most once: a second one flushes first */
	struct pg_col col[PG_PARAMS_MAX];
	int64_t *ids; /* the instance of each row */
	size_t ids_cap;
} pg_batch;

struct saga_store {
	PGconn *conn;   /* the rounds' connection, in pipeline mode */
	PGconn *listen; /* LISTEN for peers' notifications; autocommit */
	char *conninfo;
	char channel[64]; /* this schema's notification channel */
	saga_durability durability;
	uint32_t busy_ms;
	/* Reconnecting: a lost connection is opened again at the next use,
	 * no sooner than retry_at (CLOCK_MONOTONIC ms), backing off. */
	bool broken, listen_broken;
	uint64_t retry_at, backoff_ms;
	bool rescan; /* changed() says yes: the first call, or after a reconnect */
	int64_t epoch;
	uint64_t lease_ms;
	uint64_t lease_end;  /* CLOCK_MONOTONIC ms when the lease lapses, as last renewed */
	uint64_t lease_next; /* the open transaction's renewal: counts once committed */
	uint64_t renew_sent; /* CLOCK_MONOTONIC ms when that renewal was sent */
	/* The open transaction. */
	bool in_txn;
	bool wakes; /* it wrote what peers should hear of (NOTIFY after commit) */
	int failed; /* an error aborted it on the server: only a rollback is left */
	struct pg_pending q[PG_QUEUE_MAX];
	int nq;
	pg_batch upd, hist; /* gathered, queued before anything else is */
	pg_batch ins;       /* insert_many's rows, sent at once */
	/* The instances this transaction's queued update batches write, and
	 * the history batch's column of which rows are theirs. */
	int64_t *written;
	size_t nwritten, written_cap;
	struct pg_col written_flags;
	PGresult *want; /* the K_WANT statement's result after a sync */
	saga_alloc alloc;
	char errmsg[512];
};

/* store_pg.c */
uint64_t pg_mono_ms(void);
int pg_refuse(saga_store *s, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void p_int(pg_params *p, int64_t v);
void p_time(pg_params *p, uint64_t t);
void p_text(pg_params *p, const char *t);
int pg_ready(saga_store *s);
int pg_usable(saga_store *s);
int pg_queue(saga_store *s, int stmt, const pg_params *p, enum pg_kind kind, int64_t id);
int pg_queue_one(saga_store *s, int stmt, const pg_params *p, enum pg_kind kind, int64_t id);
int pg_sync(saga_store *s);
int pg_query(saga_store *s, int stmt, const pg_params *p, PGresult **out);
int pg_ints(saga_store *s, int stmt, const pg_params *p, int64_t *out, int n);
int pg_write(saga_store *s, int stmt, const pg_params *p, enum pg_kind kind, int64_t id);
int64_t pg_i64(const PGresult *r, int row, int col);
void pg_note_wake(saga_store *s);
int pg_queue_notify(saga_store *s);
PGconn *pg_connect(saga_store *s, const char *app, int *rc);
int pg_begin(saga_store *s);
int pg_commit(saga_store *s);
void pg_rollback(saga_store *s);

/* store_pg_batch.c */
void pg_batch_init(pg_batch *b, int stmt, const char *types, bool unique);
void pg_batch_clear(pg_batch *b);
void pg_batch_free(saga_store *s, pg_batch *b);
int pg_gather(saga_store *s, pg_batch *b, const pg_params *p, int64_t id);
int pg_batch_put(saga_store *s, pg_batch *b, const pg_params *p, int64_t id);
bool pg_batch_full(const pg_batch *b);
int pg_batch_query(saga_store *s, pg_batch *b, PGresult **out);
int pg_flush(saga_store *s);

/* store_pg_owners.c */
int pg_register(saga_store *s, uint64_t lease_ms);
int64_t pg_epoch(const saga_store *s);
uint64_t pg_lease_left(const saga_store *s);
int pg_serve(saga_store *s, const char *name, int version);
int pg_retire(saga_store *s);
int pg_reap(saga_store *s, int64_t *reaped, int *live);
int pg_claim(saga_store *s, uint64_t now, int limit, store_id_fn fn, void *user);
int pg_claim_one(saga_store *s, int64_t id, bool *claimed);
int pg_changed(saga_store *s, bool *changed);
int pg_listen_open(saga_store *s);
int pg_put_command(saga_store *s, const store_command *c);
int pg_commands(saga_store *s, store_command_fn fn, void *user);
int pg_delete_command(saga_store *s, int64_t id);
int pg_count_commands(saga_store *s, const store_command *c, int64_t *n);

/* store_pg_rows.c */
int pg_put_definition(saga_store *s, const char *name, int version, const char *snapshot);
int pg_get_definition(saga_store *s, char **snapshot, const char *name, int version,
                      const saga_alloc *alloc);
int pg_insert(saga_store *s, saga_row *row);
int pg_update(saga_store *s, saga_row *row);
int pg_load(saga_store *s, saga_row *row, int64_t id, const saga_alloc *a);
int pg_load_uid(saga_store *s, saga_row *row, const char *uid, const saga_alloc *a);
int pg_insert_many(saga_store *s, saga_row *rows, size_t n);
int pg_load_many(saga_store *s, const int64_t *ids, size_t n, store_load_fn fn, void *user,
                 const saga_alloc *a);
int pg_find_bkey(saga_store *s, int64_t *id, const char *bkey);
int pg_add_history(saga_store *s, const saga_hist *h);
int pg_last_outcome(saga_store *s, int64_t id, int step, int phase, int *outcome);
int pg_scan_active(saga_store *s, store_id_fn fn, void *user);
int pg_scan_due(saga_store *s, uint64_t now, int limit, store_id_fn fn, void *user);
int pg_next_due(saga_store *s, uint64_t *out);
int pg_next_due_pool(saga_store *s, uint64_t *out);
int pg_list_owners(saga_store *s, bool all, store_owner_fn fn, void *user);
int pg_list_definitions(saga_store *s, store_def_fn fn, void *user);
int pg_def_counts(saga_store *s, store_count_fn fn, void *user);
int pg_stuck_counts(saga_store *s, store_count_fn fn, void *user);
int pg_overdue(saga_store *s, uint64_t now, uint64_t late, int64_t *overdue, uint64_t *oldest_due);
int pg_history(saga_store *s, int64_t id, saga_event_fn fn, void *user,
               const char *const *step_names, size_t nsteps);
int pg_page(saga_store *s, const store_filter *f, int64_t after, int limit, store_row_fn fn,
            void *user);
int pg_pending_rows(saga_store *s, int64_t after, int limit, store_row_fn fn, void *user);
int pg_counts(saga_store *s, int64_t counts[SAGA_STATE_COUNT]);
int pg_json_valid(saga_store *s, const char *text, bool *valid);
int pg_purge_batch(saga_store *s, int state, uint64_t before, int64_t *purged);

#endif
