/*
 * Participant guard on PostgreSQL: guard.c's table of transitions (empty
 * compensation, anti-hanging, the fence) for a participant whose data is in
 * PostgreSQL, in the participant's own transaction block.
 *
 * guard.c writes first so that SQLite's write lock is held before anything
 * is read. PostgreSQL locks rows, not the database: here every answer comes
 * from a statement that locks the key's row (an INSERT, an UPDATE, or a
 * SELECT ... FOR UPDATE), so under READ COMMITTED a concurrent call for the
 * same key waits for the first one's transaction and then reads what it
 * committed. Under REPEATABLE READ or SERIALIZABLE the second call fails
 * with a serialization failure instead (SAGA_EBUSY: retry the transaction).
 *
 * Statements are parameterised (PQexecParams): no SQL is assembled from
 * input.
 *
 * SPDX-License-Identifier: MIT
 */
#include "internal.h"
#include "saga_pg.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { GUARD_ACTION = 1, GUARD_COMPENSATED = 2, GUARD_EMPTY_COMPENSATED = 3 };

/* The saga code of a failed result. */
static int result_err(const PGresult *r)
{
	if (!r)
		return SAGA_ENOMEM;
	const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	if (state && (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0))
		return SAGA_EBUSY;
	return SAGA_ESTORE;
}

/* Runs one statement with a text ($1) and, when num_param, an integer ($2)
 * parameter. *changes (may be NULL) receives the rows changed; *state (may
 * be NULL) the first column of the first row, or 0 when there is no row. */
static int exec_sql(PGconn *conn, const char *sql, const char *text, bool num_param, int64_t num,
                    int *changes, int *state)
{
	char numbuf[24];
	snprintf(numbuf, sizeof(numbuf), "%lld", (long long)num);
	const char *params[2] = { text, numbuf };
	PGresult *r = PQexecParams(conn, sql, num_param ? 2 : 1, NULL, params, NULL, NULL, 0);
	ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		int rc = result_err(r);
		PQclear(r);
		return rc;
	}
	if (changes)
		*changes = atoi(PQcmdTuples(r));
	if (state)
		*state = st == PGRES_TUPLES_OK && PQntuples(r) > 0 ? atoi(PQgetvalue(r, 0, 0)) : 0;
	PQclear(r);
	return SAGA_OK;
}

static int check_args(PGconn *conn, const char *action_key, saga_guard_verdict *verdict)
{
	if (!conn || !action_key || !*action_key || !verdict)
		return SAGA_EINVAL;
	if (PQtransactionStatus(conn) != PQTRANS_INTRANS ||
	    PQpipelineStatus(conn) != PQ_PIPELINE_OFF)
		return SAGA_ESTATE;
	return SAGA_OK;
}

static int64_t now_ms(void)
{
	return (int64_t)saga_sys_wall_ms(NULL);
}

int saga_guard_pg_init(PGconn *conn)
{
	if (!conn)
		return SAGA_EINVAL;
	if (PQpipelineStatus(conn) != PQ_PIPELINE_OFF)
		return SAGA_ESTATE;
	/* One transaction (the caller's, or the implicit one of a multi-
	 * statement query); the advisory lock serialises two first calls,
	 * whose CREATE TABLE would otherwise race. A table is created only
	 * when missing (not CREATE ... IF NOT EXISTS, whose NOTICE libpq's
	 * default notice processor would print on the caller's stderr). */
	PGresult *r = PQexec(conn, "SELECT pg_advisory_xact_lock(7135160);"
	                           "DO $$BEGIN"
	                           " IF to_regclass('saga_guard') IS NULL THEN"
	                           "  CREATE TABLE saga_guard("
	                           "   action_key text PRIMARY KEY,"
	                           "   state integer NOT NULL,"
	                           "   at bigint);"
	                           " END IF;"
	                           " IF to_regclass('saga_guard_fence') IS NULL THEN"
	                           "  CREATE TABLE saga_guard_fence("
	                           "   action_key text PRIMARY KEY,"
	                           "   fence bigint NOT NULL);"
	                           " END IF;"
	                           "END$$");
	int rc = r && PQresultStatus(r) == PGRES_COMMAND_OK ? SAGA_OK : result_err(r);
	PQclear(r);
	return rc;
}

/* The state of the key's row, locked until the transaction ends. */
static int locked_state(PGconn *conn, const char *action_key, int *state)
{
	return exec_sql(conn, "SELECT state FROM saga_guard WHERE action_key = $1 FOR UPDATE",
	                action_key, false, 0, NULL, state);
}

int saga_guard_pg_action(PGconn *conn, const char *action_key, saga_guard_verdict *verdict)
{
	int rc = check_args(conn, action_key, verdict);
	if (rc != SAGA_OK)
		return rc;
	int changes = 0;
	rc = exec_sql(conn,
	              "INSERT INTO saga_guard(action_key, state, at) VALUES ($1, 1, $2)"
	              " ON CONFLICT (action_key) DO NOTHING",
	              action_key, true, now_ms(), &changes, NULL);
	if (rc != SAGA_OK)
		return rc;
	if (changes == 1) {
		*verdict = SAGA_GUARD_PROCEED;
		return SAGA_OK;
	}
	int state = 0;
	if ((rc = locked_state(conn, action_key, &state)) != SAGA_OK)
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

int saga_guard_pg_compensation(PGconn *conn, const char *action_key, saga_guard_verdict *verdict)
{
	int rc = check_args(conn, action_key, verdict);
	if (rc != SAGA_OK)
		return rc;
	int changes = 0;
	rc = exec_sql(conn,
	              "INSERT INTO saga_guard(action_key, state, at) VALUES ($1, 3, $2)"
	              " ON CONFLICT (action_key) DO NOTHING",
	              action_key, true, now_ms(), &changes, NULL);
	if (rc != SAGA_OK)
		return rc;
	if (changes == 1) {
		*verdict = SAGA_GUARD_EMPTY;
		return SAGA_OK;
	}
	rc = exec_sql(conn,
	              "UPDATE saga_guard SET state = 2, at = $2"
	              " WHERE action_key = $1 AND state = 1",
	              action_key, true, now_ms(), &changes, NULL);
	if (rc != SAGA_OK)
		return rc;
	if (changes == 1) {
		*verdict = SAGA_GUARD_PROCEED;
		return SAGA_OK;
	}
	int state = 0;
	if ((rc = locked_state(conn, action_key, &state)) != SAGA_OK)
		return rc;
	if (state == GUARD_COMPENSATED || state == GUARD_EMPTY_COMPENSATED) {
		*verdict = SAGA_GUARD_DONE;
		return SAGA_OK;
	}
	return SAGA_ECORRUPT;
}

typedef int (*guard_fn)(PGconn *conn, const char *action_key, saga_guard_verdict *verdict);

static int fenced(PGconn *conn, const char *action_key, int64_t fence, saga_guard_verdict *verdict,
                  guard_fn unfenced)
{
	int rc = check_args(conn, action_key, verdict);
	if (rc != SAGA_OK)
		return rc;
	if (fence < 1)
		return SAGA_EINVAL;
	/* The conflicting row is locked before the WHERE is evaluated: a
	 * lower fence changes nothing and is stale. */
	int changes = 0;
	rc = exec_sql(conn,
	              "INSERT INTO saga_guard_fence(action_key, fence) VALUES ($1, $2)"
	              " ON CONFLICT (action_key) DO UPDATE SET fence = excluded.fence"
	              " WHERE excluded.fence >= saga_guard_fence.fence",
	              action_key, true, fence, &changes, NULL);
	if (rc != SAGA_OK)
		return rc;
	if (changes == 0) {
		*verdict = SAGA_GUARD_STALE;
		return SAGA_OK;
	}
	return unfenced(conn, action_key, verdict);
}

int saga_guard_pg_action_fenced(PGconn *conn, const char *action_key, int64_t fence,
                                saga_guard_verdict *verdict)
{
	return fenced(conn, action_key, fence, verdict, saga_guard_pg_action);
}

int saga_guard_pg_compensation_fenced(PGconn *conn, const char *action_key, int64_t fence,
                                      saga_guard_verdict *verdict)
{
	return fenced(conn, action_key, fence, verdict, saga_guard_pg_compensation);
}
