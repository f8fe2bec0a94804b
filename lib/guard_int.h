/* The participant guard's transitions (guard.c) over a participant's
 * database, shared by the SQLite guard (guard.c) and the PostgreSQL one
 * (guard_pg.c): each gives its statements and how to run one.
 * SPDX-License-Identifier: MIT */
#ifndef SAGA_GUARD_INT_H
#define SAGA_GUARD_INT_H

#include "internal.h"

typedef struct guard_db {
	/* Runs sql with the key as its first parameter and num as its second
	 * when it has one. *changes (may be NULL) receives the rows changed;
	 * *state (may be NULL) the first column of the first row, or 0 when
	 * there is no row. Returns a SAGA_E* code. */
	int (*exec)(void *db, const char *sql, const char *key, int64_t num, int *changes,
	            int *state);
	const char *insert_action; /* (key, at): a new row in state 1, or nothing */
	const char *insert_empty;  /* (key, at): a new row in state 3, or nothing */
	const char *compensate;    /* (key, at): state 1 becomes 2 */
	const char *read_state;    /* (key): the row's state */
	const char *raise_fence;   /* (key, fence): the mark raised, unless higher */
} guard_db;

/* One guard call on db, whose arguments and transaction the caller checked:
 * with fence > 0 the fenced call. */
int guard_run(const guard_db *g, void *db, const char *key, int64_t fence, bool compensation,
              saga_guard_verdict *verdict);

#endif
