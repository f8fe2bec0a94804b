/* A SQLite VFS shim for tests that fails the Nth write, sync or read.
 *
 * faultvfs wraps the VFS that is the default when it is first registered
 * (normally "unix") under the name "faultvfs". Every file it opens (the
 * database, its WAL and any journal) shares one set of counters, so "the Nth
 * write" counts across all of them. Once armed, the shim counts the calls of
 * the armed kind from zero and fails the Nth one with the chosen SQLite code
 * (SQLITE_IOERR_WRITE, SQLITE_FULL, ...) without doing the operation; when
 * `sticky` is set every later call of that kind fails too (a full disk that
 * stays full, a disk that went bad) until faultvfs_disarm().
 *
 * The engine opens its store with the default VFS, so a test registers the
 * shim as the default before saga_engine_open. The fault's state is guarded
 * by a mutex: a test may arm, disarm and read the counters while an engine's
 * driver thread writes (workers > 0).
 * SPDX-License-Identifier: MIT */
#ifndef SAGA_TEST_FAULTVFS_H
#define SAGA_TEST_FAULTVFS_H

#include <stdbool.h>

#define FAULTVFS_NAME "faultvfs"

typedef enum faultvfs_op {
	FAULTVFS_WRITE = 0, /* xWrite */
	FAULTVFS_SYNC = 1,  /* xSync */
	FAULTVFS_READ = 2,  /* xRead */
	FAULTVFS_OP_COUNT = 3
} faultvfs_op;

/* Registers the shim (once; later calls only change the default).
 * make_default: 1 makes it SQLite's default VFS. Returns a SQLite code. */
int faultvfs_register(int make_default);
/* Makes the VFS the shim wraps ("unix") the default again. */
void faultvfs_restore_default(void);

/* Arms a fault: the nth call (1-based) of `op` from now fails with
 * `sqlite_code`; with `sticky`, every call after it fails as well. Resets the
 * counters. */
void faultvfs_arm(faultvfs_op op, long nth, int sqlite_code, bool sticky);
/* Lifts the fault; counting stops. */
void faultvfs_disarm(void);
/* Calls of `op` seen since the last arming (all kinds are counted). */
long faultvfs_calls(faultvfs_op op);
/* Faults injected since the last arming. */
long faultvfs_injected(void);
const char *faultvfs_op_name(faultvfs_op op);

#endif
