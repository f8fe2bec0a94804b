/*
 * Participant guard on PostgreSQL: guard.c's transitions (empty
 * compensation, anti-hanging, the fence; guard_run) for a participant whose
 * data is in PostgreSQL, in the participant's own transaction block, with
 * PostgreSQL's statements.
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
#include "guard_int.h"
#include "saga_pg.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Runs one statement with the key ($1) and, when it has a second
 * parameter, num ($2); as guard_db.exec. */
static int pg_exec_sql(void *handle, const char *sql, const char *text, int64_t num, int *changes,
                       int *state)
{
	PGconn *conn = handle;
	char numbuf[24];
	snprintf(numbuf, sizeof(numbuf), "%lld", (long long)num);
	const char *params[2] = { text, numbuf };
	PGresult *r =
	        PQexecParams(conn, sql, strstr(sql, "$2") ? 2 : 1, NULL, params, NULL, NULL, 0);
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

/* Each answer from a statement that locks the key's row (see the top): the
 * read of the state is FOR UPDATE, and a lower fence's upsert locks the
 * mark's row before its WHERE is evaluated. */
static const guard_db pg_guard = {
	pg_exec_sql,
	"INSERT INTO saga_guard(action_key, state, at) VALUES ($1, 1, $2)"
	" ON CONFLICT (action_key) DO NOTHING",
	"INSERT INTO saga_guard(action_key, state, at) VALUES ($1, 3, $2)"
	" ON CONFLICT (action_key) DO NOTHING",
	"UPDATE saga_guard SET state = 2, at = $2 WHERE action_key = $1 AND state = 1",
	"SELECT state FROM saga_guard WHERE action_key = $1 FOR UPDATE",
	"INSERT INTO saga_guard_fence(action_key, fence) VALUES ($1, $2)"
	" ON CONFLICT (action_key) DO UPDATE SET fence = excluded.fence"
	" WHERE excluded.fence >= saga_guard_fence.fence",
};

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

/* fence 0: the unfenced call; a fenced call needs fence >= 1. */
static int pg_guard_call(PGconn *conn, const char *key, bool fenced, int64_t fence,
                         bool compensation, saga_guard_verdict *verdict)
{
	if (!conn || !key || !*key || !verdict)
		return SAGA_EINVAL;
	if (PQtransactionStatus(conn) != PQTRANS_INTRANS ||
	    PQpipelineStatus(conn) != PQ_PIPELINE_OFF)
		return SAGA_ESTATE;
	if (fenced && fence < 1)
		return SAGA_EINVAL;
	return guard_run(&pg_guard, conn, key, fence, compensation, verdict);
}

int saga_guard_pg_action(PGconn *conn, const char *action_key, saga_guard_verdict *verdict)
{
	return pg_guard_call(conn, action_key, false, 0, false, verdict);
}

int saga_guard_pg_compensation(PGconn *conn, const char *action_key, saga_guard_verdict *verdict)
{
	return pg_guard_call(conn, action_key, false, 0, true, verdict);
}

int saga_guard_pg_action_fenced(PGconn *conn, const char *action_key, int64_t fence,
                                saga_guard_verdict *verdict)
{
	return pg_guard_call(conn, action_key, true, fence, false, verdict);
}

int saga_guard_pg_compensation_fenced(PGconn *conn, const char *action_key, int64_t fence,
                                      saga_guard_verdict *verdict)
{
	return pg_guard_call(conn, action_key, true, fence, true, verdict);
}
