/*
 * Participant guard: the two saga anomalies, solved in the participant's own
 * database (SEMANTICS.md, guarantee 3).
 *
 *  - empty compensation: a compensation that arrives with no prior action
 *    succeeds and is recorded, so that
 *  - anti-hanging: an action that arrives after its compensation (a delayed
 *    or retried call) is refused.
 *
 * One row per action key in saga_guard:
 *
 *   no row             -- action -->        ACTION             (PROCEED)
 *   no row             -- compensation -->  EMPTY_COMPENSATED  (EMPTY)
 *   ACTION             -- action -->        ACTION             (DONE: replay)
 *   ACTION             -- compensation -->  COMPENSATED        (PROCEED: undo now)
 *   COMPENSATED/EMPTY  -- action -->        unchanged          (REFUSED)
 *   COMPENSATED/EMPTY  -- compensation -->  unchanged          (DONE)
 *
 * The fenced variants also keep, per action key, the highest fence
 * (saga_step_fence) seen in saga_guard_fence: a call with a lower one comes
 * from a process that lost the instance while paused, and is answered STALE
 * without touching the verdict table. A call with an equal or higher fence
 * raises the mark and goes on as the unfenced call does. Action and
 * compensation share the action key, so one mark covers both phases.
 *
 * Every function writes first and reads after: the first statement of each
 * call is a write, so the participant's transaction holds the write lock
 * before anything is read and the verdict cannot go stale.
 *
 * The guard refuses to run outside a transaction (SAGA_ESTATE): a verdict that
 * committed on its own, without the participant's effect, would turn a crash
 * between the two into an effect that is never applied (a replay answers
 * DONE) or never undone.
 *
 * The transitions are written once (guard_run) over a small table of
 * statements per database: SQLite's here, PostgreSQL's in guard_pg.c.
 *
 * SPDX-License-Identifier: MIT
 */
#include "guard_int.h"

#include <sqlite3.h>

enum {
	GUARD_ACTION = 1,           /* the action was applied */
	GUARD_COMPENSATED = 2,      /* the action was applied, then undone */
	GUARD_EMPTY_COMPENSATED = 3 /* compensated before any action: nothing was undone */
};

static int64_t now_ms(void)
{
	return (int64_t)saga_sys_wall_ms(NULL);
}

/* The action's transitions. */
static int action_of(const guard_db *g, void *db, const char *key, saga_guard_verdict *verdict)
{
	int changes = 0;
	int rc = g->exec(db, g->insert_action, key, now_ms(), &changes, NULL);
	if (rc != SAGA_OK)
		return rc;
	if (changes == 1) {
		*verdict = SAGA_GUARD_PROCEED;
		return SAGA_OK;
	}
	int state = 0;
	if ((rc = g->exec(db, g->read_state, key, 0, NULL, &state)) != SAGA_OK)
		return rc;
	switch (state) {
	case GUARD_ACTION:
		*verdict = SAGA_GUARD_DONE;
		return SAGA_OK;
	case GUARD_COMPENSATED:
	case GUARD_EMPTY_COMPENSATED:
		*verdict = SAGA_GUARD_REFUSED;
		return SAGA_OK;
	default:
		return SAGA_ECORRUPT; /* a row we never write */
	}
}

/* The compensation's transitions. */
static int compensation_of(const guard_db *g, void *db, const char *key,
                           saga_guard_verdict *verdict)
{
	int changes = 0;
	int rc = g->exec(db, g->insert_empty, key, now_ms(), &changes, NULL);
	if (rc != SAGA_OK)
		return rc;
	if (changes == 1) {
		*verdict = SAGA_GUARD_EMPTY;
		return SAGA_OK;
	}
	if ((rc = g->exec(db, g->compensate, key, now_ms(), &changes, NULL)) != SAGA_OK)
		return rc;
	if (changes == 1) {
		*verdict = SAGA_GUARD_PROCEED;
		return SAGA_OK;
	}
	int state = 0;
	if ((rc = g->exec(db, g->read_state, key, 0, NULL, &state)) != SAGA_OK)
		return rc;
	if (state == GUARD_COMPENSATED || state == GUARD_EMPTY_COMPENSATED) {
		*verdict = SAGA_GUARD_DONE;
		return SAGA_OK;
	}
	return SAGA_ECORRUPT;
}

int guard_run(const guard_db *g, void *db, const char *key, int64_t fence, bool compensation,
              saga_guard_verdict *verdict)
{
	if (fence) {
		/* Raises the key's mark to `fence`; nothing changes when a
		 * higher one is recorded: stale. */
		int changes = 0;
		int rc = g->exec(db, g->raise_fence, key, fence, &changes, NULL);
		if (rc != SAGA_OK)
			return rc;
		if (changes == 0) {
			*verdict = SAGA_GUARD_STALE;
			return SAGA_OK;
		}
	}
	return compensation ? compensation_of(g, db, key, verdict) : action_of(g, db, key, verdict);
}

/* ---- SQLite ---- */

/* Runs one statement with a text (?1) and an integer (?2) parameter when
 * it has them. *changes (may be NULL) receives the rows changed; *state
 * (may be NULL) the first column of the first row, or 0 when there is no
 * row. */
static int sqlite_exec_sql(void *handle, const char *sql, const char *text, int64_t num,
                           int *changes, int *state)
{
	sqlite3 *db = handle;
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return sqlite_to_saga(rc);
	int nparams = sqlite3_bind_parameter_count(st);
	if (nparams >= 1)
		rc = sqlite3_bind_text(st, 1, text, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK && nparams >= 2)
		rc = sqlite3_bind_int64(st, 2, num);
	if (rc != SQLITE_OK) {
		sqlite3_finalize(st);
		return sqlite_to_saga(rc);
	}
	if (state)
		*state = 0;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		if (state)
			*state = sqlite3_column_int(st, 0);
		/* Every query here reads a primary key: at most one row. */
		rc = sqlite3_step(st);
	}
	if (rc != SQLITE_DONE) {
		sqlite3_finalize(st);
		return sqlite_to_saga(rc);
	}
	if (changes)
		*changes = sqlite3_changes(db);
	rc = sqlite3_finalize(st);
	return sqlite_to_saga(rc);
}

/* Every statement writes first and reads after (see the top). */
static const guard_db sqlite_guard = {
	sqlite_exec_sql,
	"INSERT INTO saga_guard(action_key, state, at) VALUES (?1, 1, ?2)"
	" ON CONFLICT(action_key) DO NOTHING",
	"INSERT INTO saga_guard(action_key, state, at) VALUES (?1, 3, ?2)"
	" ON CONFLICT(action_key) DO NOTHING",
	"UPDATE saga_guard SET state = 2, at = ?2 WHERE action_key = ?1 AND state = 1",
	"SELECT state FROM saga_guard WHERE action_key = ?1",
	"INSERT INTO saga_guard_fence(action_key, fence) VALUES (?1, ?2)"
	" ON CONFLICT(action_key) DO UPDATE SET fence = excluded.fence"
	" WHERE excluded.fence >= saga_guard_fence.fence",
};

static int check_args(sqlite3 *db, const char *action_key, saga_guard_verdict *verdict)
{
	if (!db || !action_key || !*action_key || !verdict)
		return SAGA_EINVAL;
	if (sqlite3_get_autocommit(db))
		return SAGA_ESTATE;
	return SAGA_OK;
}

int saga_guard_init(sqlite3 *db)
{
	if (!db)
		return SAGA_EINVAL;
	int rc = sqlite_exec_sql(db,
	                         "CREATE TABLE IF NOT EXISTS saga_guard("
	                         " action_key TEXT PRIMARY KEY,"
	                         " state INTEGER NOT NULL,"
	                         " at INTEGER)",
	                         NULL, 0, NULL, NULL);
	if (rc != SAGA_OK)
		return rc;
	return sqlite_exec_sql(db,
	                       "CREATE TABLE IF NOT EXISTS saga_guard_fence("
	                       " action_key TEXT PRIMARY KEY,"
	                       " fence INTEGER NOT NULL)",
	                       NULL, 0, NULL, NULL);
}

/* fence 0: the unfenced call; a fenced call needs fence >= 1. */
static int sqlite_guard_call(sqlite3 *db, const char *key, bool fenced, int64_t fence,
                             bool compensation, saga_guard_verdict *verdict)
{
	int rc = check_args(db, key, verdict);
	if (rc != SAGA_OK)
		return rc;
	if (fenced && fence < 1)
		return SAGA_EINVAL;
	return guard_run(&sqlite_guard, db, key, fence, compensation, verdict);
}

int saga_guard_action(sqlite3 *db, const char *action_key, saga_guard_verdict *verdict)
{
	return sqlite_guard_call(db, action_key, false, 0, false, verdict);
}

int saga_guard_compensation(sqlite3 *db, const char *action_key, saga_guard_verdict *verdict)
{
	return sqlite_guard_call(db, action_key, false, 0, true, verdict);
}

int saga_guard_action_fenced(sqlite3 *db, const char *action_key, int64_t fence,
                             saga_guard_verdict *verdict)
{
	return sqlite_guard_call(db, action_key, true, fence, false, verdict);
}

int saga_guard_compensation_fenced(sqlite3 *db, const char *action_key, int64_t fence,
                                   saga_guard_verdict *verdict)
{
	return sqlite_guard_call(db, action_key, true, fence, true, verdict);
}
