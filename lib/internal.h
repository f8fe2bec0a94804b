/* Private declarations shared by the library's files, below the engine:
 * util.c (allocator, clocks, SQLite codes), definition.c, the store_*.c;
 * breaker.c and retry.c are reached through saga.h. The engine's own files
 * share engine_int.h. docs/architecture.md maps the tree.
 * SPDX-License-Identifier: MIT */
#ifndef SAGA_INTERNAL_H
#define SAGA_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "saga.h"

/* ---- allocator (util.c) ---- */
typedef saga_allocator saga_alloc;

/* The default allocator: malloc/realloc/free. */
extern const saga_alloc saga_default_alloc;

void *saga_malloc(const saga_alloc *a, size_t n);
void *saga_calloc(const saga_alloc *a, size_t count, size_t n);
void *saga_realloc(const saga_alloc *a, void *p, size_t n);
void saga_free(const saga_alloc *a, void *p);
char *saga_strdup(const saga_alloc *a, const char *s);
/* snprintf that always terminates and never fails on truncation. */
void saga_fmt(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The same with a va_list. */
void saga_vfmt(char *buf, size_t size, const char *fmt, va_list ap)
        __attribute__((format(printf, 3, 0)));

uint64_t saga_sys_wall_ms(void *user);
uint64_t saga_sys_mono_ms(void *user);
/* The system's monotonic clock in microseconds (the driver's own timing). */
uint64_t saga_sys_mono_us(void);
/* CLOCK_BOOTTIME in microseconds: it goes on while the system sleeps, as a
 * lease does. */
uint64_t saga_sys_boot_us(void);
/* Fills in NULL members of a clock with the system clocks. */
void saga_clock_resolve(saga_clock *out, const saga_clock *in);
/* A seed for the engine's random numbers when none is given. */
uint64_t seed_from_system(void);
/* The libsaga code of an SQLite result code (extended codes too): OK, ROW
 * and DONE are SAGA_OK; unknown codes are SAGA_ESTORE. */
int sqlite_to_saga(int rc);

/* ---- definitions (definition.c) ---- */
typedef struct saga_step_policy {
	bool has_retry;
	saga_retry_policy retry;
	bool has_comp_retry;
	saga_retry_policy comp_retry;
	bool has_timeout;
	uint64_t timeout_ms;
	uint64_t comp_timeout_ms;
	char *breaker; /* owned; NULL = none */
} saga_step_policy;

typedef struct saga_step_def {
	char *name; /* owned */
	saga_step_kind kind;
	saga_step_fn action;
	saga_step_fn compensation;
	void *user;
	saga_step_policy policy;
} saga_step_def;

struct saga_definition {
	saga_alloc alloc;
	char *name; /* owned */
	int version;
	saga_step_def *steps; /* owned array */
	size_t nsteps;
	size_t cap;
	saga_step_policy defaults; /* the definition-wide defaults */
	uint64_t deadline_ms;
	uint64_t comp_reserve_ms;
};

/* Deep copy with a given allocator. */
int saga_definition_clone(saga_definition **out, const saga_definition *src,
                          const saga_alloc *alloc);
/* The effective policies of step i. */
const saga_retry_policy *saga_def_retry(const saga_definition *d, size_t i);
const saga_retry_policy *saga_def_comp_retry(const saga_definition *d, size_t i);
uint64_t saga_def_timeout(const saga_definition *d, size_t i, saga_phase phase);
const char *saga_def_breaker(const saga_definition *d, size_t i);

/* breaker.c: the calls a breaker has seen since it was made: successful,
 * failed, ignored (given back), not permitted (refused). */
void breaker_totals(saga_breaker *b, uint64_t out[4]);
/* JSON snapshot of names and kinds (owned by caller, cJSON_free/free). */
char *saga_definition_snapshot(const saga_definition *d);
/* Index of the first step that cannot be compensated (the pivot or the
 * first retriable step), or nsteps: once it has started, only forward. */
int saga_def_no_return(const saga_definition *d);
/* A definition rebuilt from its stored snapshot: step names and kinds, no
 * callbacks, default policies (what an operator's verbs need to decide).
 * SAGA_ECORRUPT when the text is not a snapshot, SAGA_ENOMEM. */
int saga_definition_from_snapshot(saga_definition **out, const char *snapshot);

/* ---- the SQLite store (store_*.c; store_sqlite_int.h) ---- */
typedef struct saga_store saga_store;

/* One instance row. context is owned text (JSON), or NULL when not loaded. */
typedef struct saga_row {
	int64_t id;
	char uid[SAGA_UID_LEN + 1];
	char def_name[SAGA_NAME_MAX + 1];
	int def_version;
	char bkey[SAGA_KEY_MAX + 1];
	bool has_bkey;
	int state; /* saga_state */
	int phase; /* saga_phase */
	int step;
	uint32_t attempt; /* attempts made on (step, phase) */
	bool inflight;    /* an attempt's start is recorded without its outcome */
	bool pending;     /* an async attempt awaits saga_complete */
	bool pivot_done;
	int reason;                /* saga_reason */
	int fwd_started;           /* steps whose action was started: 0..fwd_started-1 */
	bool comp_done_any;        /* a compensation has completed */
	uint64_t due_at;           /* 0 = not scheduled */
	uint64_t deadline_at;      /* 0 = none */
	uint64_t attempt_deadline; /* the current attempt's invocation + its timeout, written
	                               with its answer; 0 = none or not answered yet */
	uint64_t step_since;       /* start of the first attempt of (step, phase) */
	uint64_t prev_delay;
	uint64_t created_at;
	uint64_t updated_at;
	int64_t owner;       /* the owning process's epoch; 0 = nobody (the pool) */
	int64_t fence;       /* grows on every change of owner (saga_step_fence) */
	int64_t next_seq;    /* the seq of this instance's next history row */
	int64_t recoveries;  /* claims of it with an attempt interrupted, in a row */
	int stored_state;    /* state and due_at as last read or written: a */
	uint64_t stored_due; /* hint that a write need not touch the indexes */
	char error[256];
	char *context;
} saga_row;

typedef struct saga_hist {
	int64_t instance;
	int64_t seq; /* per instance, from its row's next_seq */
	int64_t fence;
	uint64_t at;
	int type;
	int state;
	int step;
	int phase;
	uint32_t attempt;
	int outcome;
	const char *detail;
} saga_hist;

/* The busy timeout when the options give 0. */
#define STORE_BUSY_TIMEOUT_DEFAULT 5000u

int store_open(saga_store **out, const char *path, saga_durability durability, uint32_t busy_ms,
               const saga_alloc *alloc, char *err, size_t err_size);
void store_close(saga_store *s);
const char *store_errmsg(const saga_store *s);

/* ---- ownership: owners with leases, fenced writes, claims ----
 * A store handle writes as one owner (an epoch, never reused). Its lease
 * is renewed, conditionally, by every store_begin: a lapsed lease gives
 * SAGA_EFENCED and is never renewed again; the handle must register anew.
 * Every instance write is fenced (owner and fence as loaded): SAGA_EFENCED
 * when the store holds another owner or fence. */
/* Registers a new owner (its own transaction) with a lease of lease_ms, and
 * declares the definitions it runs from then on through store_serve. The
 * previous epoch of this handle, if any, is retired with its instances
 * handed back. */
int store_register(saga_store *s, uint64_t lease_ms);
int64_t store_epoch(const saga_store *s);
/* Milliseconds of lease left (0 when lapsed), on the lease clock. */
uint64_t store_lease_left(const saga_store *s);
/* Declares that this owner runs a definition (name, version): claims take
 * only those. */
int store_serve(saga_store *s, const char *name, int version);
/* Hands every unfinished instance of this owner back to the pool and
 * retires the owner (its own transaction). */
int store_retire(saga_store *s);
/* Owners whose lease lapsed, or whose process is gone (on this host), are
 * marked dead and their unfinished instances go back to the pool, in the
 * open transaction or, without one, in a transaction of its own when there
 * is any. *live receives how many other owners are live. */
int store_reap(saga_store *s, int64_t *reaped, int *live);
/* In the open transaction: takes up to `limit` unowned instances due by
 * `now` of the definitions this owner serves (their fence grows by one),
 * calling fn with each id. */
typedef int (*store_id_fn)(int64_t id, void *user);
int store_claim(saga_store *s, uint64_t now, int limit, store_id_fn fn, void *user);
/* In the open transaction: takes instance `id` if nobody owns it and it is
 * unfinished or STUCK (*claimed says if it did). */
int store_claim_one(saga_store *s, int64_t id, bool *claimed);
/* Has another connection committed since the last call? (the first call
 * says yes) */
int store_changed(saga_store *s, bool *changed);

/* ---- commands: requests for an instance another process owns ---- */
typedef struct store_command {
	int64_t id;
	int64_t instance;
	int verb; /* enum cmd_verb (engine) */
	int step, phase, result;
	const char *output; /* JSON text or NULL; borrowed */
	uint64_t requested_at;
} store_command;
/* Inserts a command (in the open transaction). */
int store_put_command(saga_store *s, const store_command *c);
/* Calls fn for each command addressed to an instance this owner holds, in
 * the order they were made; nonzero from fn stops. */
typedef int (*store_command_fn)(const store_command *c, void *user);
int store_commands(saga_store *s, store_command_fn fn, void *user);
/* Deletes a command carried out (in the open transaction). */
int store_delete_command(saga_store *s, int64_t id);
/* How many commands wait with c's instance, verb, step and phase. */
int store_count_commands(saga_store *s, const store_command *c, int64_t *n);

int store_begin(saga_store *s);
int store_commit(saga_store *s);
void store_rollback(saga_store *s);
/* Stores the snapshot, or compares it with the stored one (SAGA_ECONFLICT). */
int store_put_definition(saga_store *s, const char *name, int version, const char *snapshot);
/* The stored snapshot of a definition (owned by the caller, alloc'd). */
int store_get_definition(saga_store *s, char **snapshot, const char *name, int version,
                         const saga_alloc *alloc);
int store_insert(saga_store *s, saga_row *row); /* sets row->id */
/* Inserts rows without business keys in the open transaction (each id set). */
int store_insert_many(saga_store *s, saga_row *rows, size_t n);
int store_update(saga_store *s, saga_row *row);
int store_load(saga_store *s, saga_row *row, int64_t id, const saga_alloc *a);
int store_load_uid(saga_store *s, saga_row *row, const char *uid, const saga_alloc *a);
/* Called for each row store_load_many read, filled as store_load fills
 * one: its context is allocated with the call's allocator and is the
 * callee's from then on (to keep or free, also when it returns nonzero);
 * nonzero stops. */
typedef int (*store_load_fn)(saga_row *r, void *user);
/* Loads the instances of ids[0..n) in one call, calling fn for each, in
 * any order. An id with no row, or whose row cannot be read
 * (SAGA_ECORRUPT), is simply absent: store_load tells which. */
int store_load_many(saga_store *s, const int64_t *ids, size_t n, store_load_fn fn, void *user,
                    const saga_alloc *a);
int store_find_bkey(saga_store *s, int64_t *id, const char *bkey);
int store_add_history(saga_store *s, const saga_hist *h);
/* Calls fn for the ids of this owner's instances in RUNNING or
 * COMPENSATING, or of its WAITING ones due by `now` (at most `limit`).
 * nonzero from fn stops. */
int store_scan_active(saga_store *s, store_id_fn fn, void *user);
int store_scan_due(saga_store *s, uint64_t now, int limit, store_id_fn fn, void *user);
/* The earliest due time of this owner's parked instances and of the
 * unowned ones it could claim; 0 = none. */
int store_next_due(saga_store *s, uint64_t *out);
/* The earliest due time of the unowned instances this owner could claim. */
int store_next_due_pool(saga_store *s, uint64_t *out);
/* The outcome of the last attempt-end of (instance, step, phase), or 0. */
int store_last_outcome(saga_store *s, int64_t id, int step, int phase, int *outcome);
int store_history(saga_store *s, int64_t id, saga_event_fn fn, void *user,
                  const char *const *step_names, size_t nsteps);
/* What a listing selects: a state (-1 = any), a definition name (NULL =
 * any) and version (0 = any), and creation and update times in [from, to)
 * (to 0 = no bound). */
typedef struct store_filter {
	int state;
	const char *def_name;
	int def_version;
	uint64_t created_from, created_to;
	uint64_t updated_from, updated_to;
} store_filter;
/* Called for each row of a listing (context not loaded); nonzero stops. */
typedef int (*store_row_fn)(const saga_row *r, void *user);
/* Up to `limit` instances matching f with an id above `after`, in id order. */
int store_page(saga_store *s, const store_filter *f, int64_t after, int limit, store_row_fn fn,
               void *user);
/* Up to `limit` WAITING instances whose async step awaits its completion,
 * with an id above `after`, in id order. */
int store_pending(saga_store *s, int64_t after, int limit, store_row_fn fn, void *user);
int store_counts(saga_store *s, int64_t counts[SAGA_STATE_COUNT]);
/* The WAITING instances due at or before `now`: how many were due at or
 * before `late`, and the earliest due time among them (0 = none). */
int store_overdue(saga_store *s, uint64_t now, uint64_t late, int64_t *overdue,
                  uint64_t *oldest_due);
void row_to_info(saga_instance_info *info, const saga_row *r);
/* Is `text` well-formed JSON? Tells a damaged context from a parser that ran
 * out of memory. */
int store_json_valid(saga_store *s, const char *text, bool *valid);
/* Deletes up to STORE_PURGE_BATCH instances in `state` that reached it before
 * `before` (their finished_at), with their history, in the open transaction;
 * *purged says how many. */
#define STORE_PURGE_BATCH 256
int store_purge_batch(saga_store *s, int state, uint64_t before, int64_t *purged);

/* ---- what an operator reads (the admin API, lib/admin.c) ---- */
/* One owner as the store has it; strings borrowed for the call. */
typedef struct store_owner {
	int64_t epoch;
	const char *host;
	int64_t pid;
	int state;           /* 0 live, 1 dead, 2 retired */
	uint64_t age_ms;     /* since it registered; 0 when registered in another boot */
	uint64_t lease_left; /* ms of lease left; 0 = lapsed (or ended) */
	const char *served;  /* "name@version" words, space-separated; "" = none */
	int64_t instances;   /* unfinished instances it holds (live owners only) */
} store_owner;
typedef int (*store_owner_fn)(const store_owner *o, void *user);
/* Calls fn for each owner in epoch order, the ended ones too when `all`;
 * nonzero from fn stops. */
int store_list_owners(saga_store *s, bool all, store_owner_fn fn, void *user);
/* Calls fn for each stored definition (name, version order); nonzero stops. */
typedef int (*store_def_fn)(const char *name, int version, const char *snapshot, void *user);
int store_list_definitions(saga_store *s, store_def_fn fn, void *user);
/* Calls fn with the number of instances of each (definition, version,
 * state) that has any; nonzero stops. */
typedef int (*store_count_fn)(const char *name, int version, int state, int64_t n, void *user);
int store_def_counts(saga_store *s, store_count_fn fn, void *user);
/* Calls fn with the number of STUCK instances of each (definition, version,
 * reason) that has any, the reason in place of the state; nonzero stops. */
int store_stuck_counts(saga_store *s, store_count_fn fn, void *user);

#endif
