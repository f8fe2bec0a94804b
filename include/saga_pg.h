/*
 * libsaga: the participant guard for a participant whose data is in
 * PostgreSQL. Installed, and its functions built, only when libsaga is built
 * with PostgreSQL (the meson feature `postgresql`); saga.h does not need it.
 *
 * The same guard as saga_guard_* in saga.h (empty compensation,
 * anti-hanging, the fence), kept in the participant's own PostgreSQL
 * database, in the tables saga_guard and saga_guard_fence of the
 * connection's current schema, and written in the participant's own open
 * transaction: the verdict commits or rolls back with the participant's
 * effect. The conventions of saga.h hold here.
 *
 * Errors: SAGA_EINVAL (a NULL argument, an empty key, a fence < 1);
 * SAGA_ESTATE when the connection is not inside an open transaction block
 * (BEGIN issued, no error since) or is in pipeline mode; SAGA_EBUSY when the
 * server answers with a serialization failure or a deadlock (roll back and
 * retry the participant's transaction); SAGA_ENOMEM; SAGA_ESTORE for any
 * other error, with the server's message in PQerrorMessage(conn). A call
 * that fails leaves the transaction as the server left it (after a server
 * error: aborted; roll it back).
 *
 * Thread safety: a PGconn is used by one thread at a time (libpq's rule);
 * calls on different connections are independent.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef SAGA_PG_H
#define SAGA_PG_H

#include "saga.h"

#ifdef __cplusplus
extern "C" {
#endif

/* libpq's PGconn (libpq-fe.h: typedef struct pg_conn PGconn). */
struct pg_conn;

/* Creates the guard's tables (saga_guard, saga_guard_fence) in the
 * connection's current schema if missing. Borrows conn. Outside a
 * transaction block it runs in one of its own; inside one, in that. */
SAGA_API int saga_guard_pg_init(struct pg_conn *conn);

/* To be called inside the participant's own open transaction block, with
 * the step's action key (saga_step_action_key), before applying an action
 * or a compensation; records the decision in the same transaction. The
 * verdicts are those of saga_guard_action and saga_guard_compensation.
 * Borrows conn and action_key. The row of the key is locked until the
 * transaction ends, so concurrent calls for one key are answered one after
 * the other. */
SAGA_API int saga_guard_pg_action(struct pg_conn *conn, const char *action_key,
                                  saga_guard_verdict *verdict);
SAGA_API int saga_guard_pg_compensation(struct pg_conn *conn, const char *action_key,
                                        saga_guard_verdict *verdict);

/* The same, given the step's fence (saga_step_fence, >= 1), as
 * saga_guard_action_fenced and saga_guard_compensation_fenced: a call with
 * a lower fence than the highest seen for the key is answered
 * SAGA_GUARD_STALE and changes nothing else. */
SAGA_API int saga_guard_pg_action_fenced(struct pg_conn *conn, const char *action_key,
                                         int64_t fence, saga_guard_verdict *verdict);
SAGA_API int saga_guard_pg_compensation_fenced(struct pg_conn *conn, const char *action_key,
                                               int64_t fence, saga_guard_verdict *verdict);

#ifdef __cplusplus
}
#endif

#endif /* SAGA_PG_H */
