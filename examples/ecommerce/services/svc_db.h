/*
 * What the five services share: opening their SQLite file, one transaction
 * per operation (with fault injection and crash points around it), and
 * prepared-statement helpers. Private to examples/ecommerce.
 * SPDX-License-Identifier: MIT
 */
#ifndef ECOMMERCE_SVC_DB_H
#define ECOMMERCE_SVC_DB_H

#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>

#include "msg.h"
#include "services.h"

typedef struct svc_db {
	sqlite3 *db;
	ecom_service service;
	ecom_faults *faults;  /* borrowed; NULL = none */
	pthread_mutex_t lock; /* one operation at a time on the connection */
} svc_db;

/* Creates `dir` (0700) if missing, opens "<dir>/<service>.db" (WAL,
 * synchronous=FULL, foreign keys, busy timeout 5 s) with `schema` (several
 * statements) and the guard's table. A missing file is born whole: SQLite
 * builds it with the schema under a temporary name, mode 0600, and it is
 * linked into place (a concurrent creator's file wins). Only SQLite ever
 * opens or closes the database file and its -wal/-shm. On failure msg (may
 * be NULL) names the file and the cause. */
int svc_db_open(svc_db *s, ecom_service service, const char *dir, const char *schema, char *msg,
                size_t msg_size);
void svc_db_close(svc_db *s);

/* A service's handle: `size` zeroed bytes whose first member is its svc_db,
 * opened with svc_db_open. *out is NULL on failure. svc_db_delete closes and
 * frees it (NULL is ignored). */
int svc_db_new(svc_db **out, size_t size, ecom_service service, const char *dir, const char *schema,
               char *msg, size_t msg_size);
void svc_db_delete(svc_db *s);

/* Wall clock, ms since the epoch. */
uint64_t svc_now_ms(void);

/* Takes the service's lock and BEGIN IMMEDIATE. On failure the lock is
 * released and msg says why. */
int svc_begin(svc_db *s, char *msg, size_t msg_size);
/* COMMIT and releases the lock. With op non-NULL the crash points
 * "<service>.<op>.before" and ".after" are passed around the COMMIT. On
 * failure the transaction is rolled back. */
int svc_commit(svc_db *s, const char *op, char *msg, size_t msg_size);
/* ROLLBACK and releases the lock; returns `rc` so callers can write
 * `return svc_rollback(s, rc);`. */
int svc_rollback(svc_db *s, int rc);
/* For a store error in the middle of a transaction: puts the SQLite message
 * in msg, rolls back and returns rc. */
int svc_fail(svc_db *s, int rc, char *msg, size_t msg_size);
/* An operation under the participant guard: the failure injector's draw
 * for `op` (its latency slept before any lock is taken), BEGIN IMMEDIATE,
 * then `guard` (saga_guard_action, or saga_guard_compensation with the
 * compensated action's key) on `key`. An injected failure is answered only
 * for a key the guard has not recorded (PROCEED, EMPTY): a replay of a
 * recorded key (DONE, REFUSED) answers as recorded whatever is injected.
 * Returns 0 with the transaction open and *verdict set; otherwise the
 * operation's answer (an injected failure or a store error, msg set) with
 * the transaction closed. */
int svc_guard_begin(svc_db *s, const char *op,
                    int (*guard)(struct sqlite3 *, const char *, saga_guard_verdict *),
                    const char *key, saga_guard_verdict *verdict, char *msg, size_t msg_size);
/* A business refusal inside a transaction: formats msg, rolls back and
 * returns ECOM_REFUSED. */
int svc_refuse(svc_db *s, char *msg, size_t msg_size, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
/* For reads outside transactions. */
void svc_lock(svc_db *s);
void svc_unlock(svc_db *s);

/* SQLite result code -> SAGA_E* (0 for OK, ROW, DONE). */
int svc_map(int sqlite_rc);

/* Parameters are described by `types`, one letter each: 'i' int64_t,
 * 't' const char * (NULL binds NULL). Pass exactly int64_t for 'i'. */

/* Prepares and binds; the caller steps (svc_step) and finalizes. */
int svc_prepare(svc_db *s, sqlite3_stmt **st, const char *sql, const char *types, ...);
/* 1 for a row, 0 when done, or a negative error. */
int svc_step(sqlite3_stmt *st);
/* Runs a statement to completion; *changes (may be NULL) gets the rows changed. */
int svc_exec(svc_db *s, int *changes, const char *sql, const char *types, ...);
/* The first column of the first row as an integer: 0, or SAGA_ENOTFOUND
 * when there is no row (or the value is NULL). */
int svc_int(svc_db *s, int64_t *out, const char *sql, const char *types, ...);
/* Copies a text column (NULL as ""), always terminated. */
void svc_col_text(sqlite3_stmt *st, int col, char *buf, size_t size);

/* Shared by the read-only checker: binds like svc_prepare. */
int svc_bindv(sqlite3_stmt *st, const char *types, va_list ap);

#endif
