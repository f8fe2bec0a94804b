/* The SQLite store's private header, shared by its files and by nothing
 * else: the row columns, the statement ids, struct saga_store, and the
 * helpers more than one of them calls. The files:
 * - store_open.c: opening and closing a store (its path, the lock file and
 *   its byte locks, birth, the schema and its migrations);
 * - store_owners.c: owners and their leases, reaping, claims, commands;
 * - store_sqlite.c: the statements' SQL, the helpers, the transaction (its
 *   id sets, the history buffer, commit and rollback), the store_sqlite_ops
 *   table;
 * - store_rows.c: definitions and instance rows written and read, the scans,
 *   the history read back, listings, counts and purge.
 * SPDX-License-Identifier: MIT */
#ifndef SAGA_STORE_SQLITE_INT_H
#define SAGA_STORE_SQLITE_INT_H

#include "store.h"

#include <sqlite3.h>

#define ROW_COLUMNS                                                                       \
	"id, uid, def_name, def_version, business_key, state, phase, step, attempt,"      \
	" inflight, pending, pivot_done, reason, fwd_started, comp_done_any, due_at,"     \
	" deadline_at, attempt_deadline, step_since, prev_delay, created_at, updated_at," \
	" error, context, owner, fence, next_seq, recoveries"

/* The columns of ROW_COLUMNS in order, as read_row reads them; the row
 * statements bind column c as parameter c + 1 (PARAM), so ?N in their SQL
 * is column N - 1. finished_at is not read: the insert binds it (?25) and
 * the update derives it from the state. */
enum row_col {
	COL_ID,
	COL_UID,
	COL_DEF_NAME,
	COL_DEF_VERSION,
	COL_BUSINESS_KEY,
	COL_STATE,
	COL_PHASE,
	COL_STEP,
	COL_ATTEMPT,
	COL_INFLIGHT,
	COL_PENDING,
	COL_PIVOT_DONE,
	COL_REASON,
	COL_FWD_STARTED,
	COL_COMP_DONE_ANY,
	COL_DUE_AT,
	COL_DEADLINE_AT,
	COL_ATTEMPT_DEADLINE,
	COL_STEP_SINCE,
	COL_PREV_DELAY,
	COL_CREATED_AT,
	COL_UPDATED_AT,
	COL_ERROR,
	COL_CONTEXT,
	COL_OWNER,
	COL_FENCE,
	COL_NEXT_SEQ,
	COL_RECOVERIES,
	COL_FINISHED_AT
};
#define PARAM(col) ((col) + 1)
_Static_assert(PARAM(COL_FINISHED_AT) == 29, "ST_INSERT binds finished_at as ?29");

enum stmt_id {
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_DEF_GET,
	ST_DEF_PUT,
	ST_INSERT,
	ST_UPDATE,
	ST_PROGRESS,
	ST_LOAD,
	ST_LOAD_UID,
	ST_FIND_BKEY,
	ST_HIST_ADD,
	ST_SCAN_ACTIVE,
	ST_SCAN_DUE,
	ST_NEXT_DUE,
	ST_LAST_OUTCOME,
	ST_HISTORY,
	ST_PAGE,
	ST_PAGE_STATE,
	ST_PAGE_ACTIVE,
	ST_PENDING,
	ST_COUNTS,
	ST_STUCK,
	ST_OVERDUE,
	ST_PURGE_PICK,
	ST_PURGE_HIST,
	ST_PURGE_INST,
	ST_JSON_VALID,
	ST_HIST_ADD_MANY,
	ST_RENEW,
	ST_SERVE,
	ST_OWNERS_LIVE,
	ST_OWNER_END,
	ST_OWNER_RELEASE,
	ST_OWNER_UNSERVE,
	ST_CLAIM,
	ST_CLAIM_ONE,
	ST_NEXT_DUE_POOL,
	ST_CMD_PUT,
	ST_CMD_LIST,
	ST_CMD_DEL,
	ST_CMD_FIND,
	ST_PURGE_CMDS,
	ST_DATA_VERSION,
	ST_COUNT
};

/* A history row waiting for its statement. Its detail is a copy: in small
 * when it fits, else in big. */
struct hist_entry {
	saga_hist h;
	char *big;
	char small[48];
};

struct saga_store {
	int lock_fd; /* "<path>-lock": a shared flock, and this owner's byte (OFD lock) */
	char *path;  /* the store's canonical absolute path */
	char *side;  /* room for path + a suffix (side_name) */
	size_t side_size;
	sqlite3 *db;
	sqlite3_stmt *st[ST_COUNT];
	int64_t epoch;        /* this handle's owner; 0 = none registered */
	uint64_t lease_ms;    /* its lease's length */
	uint64_t lease_until; /* when it lapses (lease clock), as last renewed */
	uint64_t lease_next;  /* the open transaction's renewal: counts once committed */
	char boot_id[40];     /* this boot's id: the lease clock's epoch */
	int64_t data_version; /* PRAGMA data_version as last read; -1 = never */
	/* The open transaction's fencing: a refused write leaves it only a
	 * rollback; history is committed only for instances written in it. */
	bool fenced;
	struct id_set {
		int64_t *v;
		size_t n, cap;
	} written, histories;    /* written: a hash set (open addressing, 0 = free,
	                         at most half full); histories: a list */
	struct hist_entry *hist; /* history rows not written yet, oldest first */
	size_t nhist, hist_cap;
	int hist_failed; /* rows were lost: the transaction cannot commit */
	saga_alloc alloc;
	char errmsg[512];
};

/* Binds a parameter, or records the error and goes to done. */
#define BIND(call)                                  \
	do {                                        \
		int brc_ = (call);                  \
		if (brc_ != SQLITE_OK) {            \
			rc = fail(s, brc_, "bind"); \
			goto done;                  \
		}                                   \
	} while (0)

/* What more than one file calls, defined (with its comment) in the file
 * named above each group. */

/* store_sqlite.c */
extern const char *const stmt_sql[ST_COUNT];
int map_rc(int rc);
int fail(saga_store *s, int rc, const char *what);
sqlite3_int64 time_param(uint64_t t);
int done_with(sqlite3_stmt *st, int rc);
int exec(saga_store *s, const char *sql, const char *what);
/* Sets the store's message and returns code. */
int refuse(saga_store *s, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int exec_stmt(saga_store *s, sqlite3_stmt *st, const char *what);
/* A statement for one call (the operator's rare reads), prepared, or the
 * failure. */
int prepare_once(saga_store *s, sqlite3_stmt **st, const char *sql, const char *what);
/* Finalizes it once its rows were read until sqlite3_step gave src: SAGA_OK
 * when they ran out or the caller stopped at a row, else the failure. */
int finish_once(saga_store *s, sqlite3_stmt *st, int src, const char *what);
void drop_history(saga_store *s);
int flush_history(saga_store *s);
int id_put(saga_store *s, struct id_set *set, int64_t id);
void txn_reset(saga_store *s);
int one_int(saga_store *s, sqlite3_stmt *st, const char *what, sqlite3_int64 *out);

/* store_open.c */
int byte_lock(saga_store *s, int64_t at, short type, bool test, bool *held);

/* store_owners.c */
int read_boot_id(saga_store *s);

#endif
