/* A SQLite VFS shim that injects I/O faults; see faultvfs.h.
 *
 * Each file the shim opens is a fault_file: our sqlite3_file header followed
 * by the wrapped VFS's own file object, to which every method is forwarded
 * after the fault check. The VFS methods that take the VFS itself forward to
 * the wrapped VFS. SPDX-License-Identifier: MIT */
#include "faultvfs.h"

#include <pthread.h>
#include <sqlite3.h>
#include <string.h>

typedef struct fault_file {
	sqlite3_file base;
	sqlite3_file *real; /* follows this struct in the same allocation */
} fault_file;

static sqlite3_vfs *real_vfs;
static sqlite3_vfs fault_vfs;
static bool registered;

/* The fault's state, shared by every thread that does I/O: an engine's
 * driver thread may write while the test thread arms or reads counters. */
static pthread_mutex_t F_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
	bool armed;
	faultvfs_op op;
	long nth;
	int code;
	bool sticky;
	long calls[FAULTVFS_OP_COUNT];
	long injected;
} F;

/* Counts one call of `op`; nonzero when it must fail (the code to return). */
static int fault_check(faultvfs_op op)
{
	int rc = 0;
	pthread_mutex_lock(&F_mu);
	if (F.armed) {
		long n = ++F.calls[op];
		if (op == F.op && (n == F.nth || (F.sticky && n > F.nth))) {
			F.injected++;
			rc = F.code;
		}
	}
	pthread_mutex_unlock(&F_mu);
	return rc;
}

void faultvfs_arm(faultvfs_op op, long nth, int sqlite_code, bool sticky)
{
	pthread_mutex_lock(&F_mu);
	memset(&F, 0, sizeof(F));
	F.armed = true;
	F.op = op;
	F.nth = nth;
	F.code = sqlite_code;
	F.sticky = sticky;
	pthread_mutex_unlock(&F_mu);
}

void faultvfs_disarm(void)
{
	pthread_mutex_lock(&F_mu);
	F.armed = false;
	pthread_mutex_unlock(&F_mu);
}

long faultvfs_calls(faultvfs_op op)
{
	pthread_mutex_lock(&F_mu);
	long n = F.calls[op];
	pthread_mutex_unlock(&F_mu);
	return n;
}

long faultvfs_injected(void)
{
	pthread_mutex_lock(&F_mu);
	long n = F.injected;
	pthread_mutex_unlock(&F_mu);
	return n;
}

const char *faultvfs_op_name(faultvfs_op op)
{
	static const char *const names[] = { "write", "sync", "read" };
	return (unsigned)op < FAULTVFS_OP_COUNT ? names[op] : "?";
}

/* ------------------------------------------------------------------------ */
/* File methods                                                             */

#define REAL(f) (((fault_file *)(f))->real)

static int ff_close(sqlite3_file *f)
{
	sqlite3_file *r = REAL(f);
	return r->pMethods ? r->pMethods->xClose(r) : SQLITE_OK;
}

static int ff_read(sqlite3_file *f, void *buf, int amt, sqlite3_int64 off)
{
	int rc = fault_check(FAULTVFS_READ);
	if (rc)
		return rc;
	return REAL(f)->pMethods->xRead(REAL(f), buf, amt, off);
}

static int ff_write(sqlite3_file *f, const void *buf, int amt, sqlite3_int64 off)
{
	int rc = fault_check(FAULTVFS_WRITE);
	if (rc)
		return rc;
	return REAL(f)->pMethods->xWrite(REAL(f), buf, amt, off);
}

static int ff_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	return REAL(f)->pMethods->xTruncate(REAL(f), size);
}

static int ff_sync(sqlite3_file *f, int flags)
{
	int rc = fault_check(FAULTVFS_SYNC);
	if (rc)
		return rc;
	return REAL(f)->pMethods->xSync(REAL(f), flags);
}

static int ff_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
	return REAL(f)->pMethods->xFileSize(REAL(f), size);
}

static int ff_lock(sqlite3_file *f, int lock)
{
	return REAL(f)->pMethods->xLock(REAL(f), lock);
}

static int ff_unlock(sqlite3_file *f, int lock)
{
	return REAL(f)->pMethods->xUnlock(REAL(f), lock);
}

static int ff_check_reserved(sqlite3_file *f, int *out)
{
	return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}

static int ff_file_control(sqlite3_file *f, int op, void *arg)
{
	return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}

static int ff_sector_size(sqlite3_file *f)
{
	return REAL(f)->pMethods->xSectorSize(REAL(f));
}

static int ff_device_characteristics(sqlite3_file *f)
{
	return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}

static int ff_shm_map(sqlite3_file *f, int pg, int pgsz, int extend, void volatile **pp)
{
	sqlite3_file *r = REAL(f);
	if (r->pMethods->iVersion < 2 || !r->pMethods->xShmMap)
		return SQLITE_IOERR_SHMMAP;
	return r->pMethods->xShmMap(r, pg, pgsz, extend, pp);
}

static int ff_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
	return REAL(f)->pMethods->xShmLock(REAL(f), offset, n, flags);
}

static void ff_shm_barrier(sqlite3_file *f)
{
	REAL(f)->pMethods->xShmBarrier(REAL(f));
}

static int ff_shm_unmap(sqlite3_file *f, int delete_flag)
{
	return REAL(f)->pMethods->xShmUnmap(REAL(f), delete_flag);
}

static int ff_fetch(sqlite3_file *f, sqlite3_int64 off, int amt, void **pp)
{
	sqlite3_file *r = REAL(f);
	if (r->pMethods->iVersion < 3 || !r->pMethods->xFetch) {
		*pp = NULL;
		return SQLITE_OK;
	}
	return r->pMethods->xFetch(r, off, amt, pp);
}

static int ff_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
	sqlite3_file *r = REAL(f);
	if (r->pMethods->iVersion < 3 || !r->pMethods->xUnfetch)
		return SQLITE_OK;
	return r->pMethods->xUnfetch(r, off, p);
}

static const sqlite3_io_methods fault_io = {
	3,
	ff_close,
	ff_read,
	ff_write,
	ff_truncate,
	ff_sync,
	ff_file_size,
	ff_lock,
	ff_unlock,
	ff_check_reserved,
	ff_file_control,
	ff_sector_size,
	ff_device_characteristics,
	ff_shm_map,
	ff_shm_lock,
	ff_shm_barrier,
	ff_shm_unmap,
	ff_fetch,
	ff_unfetch,
};

/* ------------------------------------------------------------------------ */
/* VFS methods                                                              */

static int fv_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags,
                   int *out_flags)
{
	(void)vfs;
	fault_file *ff = (fault_file *)file;
	ff->real = (sqlite3_file *)&ff[1];
	memset(ff->real, 0, (size_t)real_vfs->szOsFile);
	int rc = real_vfs->xOpen(real_vfs, name, ff->real, flags, out_flags);
	/* SQLite calls xClose when pMethods is set, even after a failed open. */
	ff->base.pMethods = ff->real->pMethods ? &fault_io : NULL;
	return rc;
}

static int fv_delete(sqlite3_vfs *vfs, const char *name, int sync_dir)
{
	(void)vfs;
	return real_vfs->xDelete(real_vfs, name, sync_dir);
}

static int fv_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
	(void)vfs;
	return real_vfs->xAccess(real_vfs, name, flags, out);
}

static int fv_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
	(void)vfs;
	return real_vfs->xFullPathname(real_vfs, name, n, out);
}

static void *fv_dl_open(sqlite3_vfs *vfs, const char *path)
{
	(void)vfs;
	return real_vfs->xDlOpen(real_vfs, path);
}

static void fv_dl_error(sqlite3_vfs *vfs, int n, char *msg)
{
	(void)vfs;
	real_vfs->xDlError(real_vfs, n, msg);
}

static void (*fv_dl_sym(sqlite3_vfs *vfs, void *h, const char *sym))(void)
{
	(void)vfs;
	return real_vfs->xDlSym(real_vfs, h, sym);
}

static void fv_dl_close(sqlite3_vfs *vfs, void *h)
{
	(void)vfs;
	real_vfs->xDlClose(real_vfs, h);
}

static int fv_randomness(sqlite3_vfs *vfs, int n, char *out)
{
	(void)vfs;
	return real_vfs->xRandomness(real_vfs, n, out);
}

static int fv_sleep(sqlite3_vfs *vfs, int us)
{
	(void)vfs;
	return real_vfs->xSleep(real_vfs, us);
}

static int fv_current_time(sqlite3_vfs *vfs, double *out)
{
	(void)vfs;
	return real_vfs->xCurrentTime(real_vfs, out);
}

static int fv_last_error(sqlite3_vfs *vfs, int n, char *out)
{
	(void)vfs;
	return real_vfs->xGetLastError ? real_vfs->xGetLastError(real_vfs, n, out) : 0;
}

static int fv_current_time64(sqlite3_vfs *vfs, sqlite3_int64 *out)
{
	(void)vfs;
	return real_vfs->xCurrentTimeInt64(real_vfs, out);
}

static int fv_set_syscall(sqlite3_vfs *vfs, const char *name, sqlite3_syscall_ptr p)
{
	(void)vfs;
	return real_vfs->xSetSystemCall(real_vfs, name, p);
}

static sqlite3_syscall_ptr fv_get_syscall(sqlite3_vfs *vfs, const char *name)
{
	(void)vfs;
	return real_vfs->xGetSystemCall(real_vfs, name);
}

static const char *fv_next_syscall(sqlite3_vfs *vfs, const char *name)
{
	(void)vfs;
	return real_vfs->xNextSystemCall(real_vfs, name);
}

int faultvfs_register(int make_default)
{
	if (!registered) {
		int rc = sqlite3_initialize();
		if (rc != SQLITE_OK)
			return rc;
		real_vfs = sqlite3_vfs_find(NULL);
		if (!real_vfs)
			return SQLITE_ERROR;
		if (real_vfs->iVersion < 3) /* the unix VFS is version 3 */
			return SQLITE_ERROR;
		memset(&fault_vfs, 0, sizeof(fault_vfs));
		fault_vfs.iVersion = 3;
		fault_vfs.szOsFile = (int)sizeof(fault_file) + real_vfs->szOsFile;
		fault_vfs.mxPathname = real_vfs->mxPathname;
		fault_vfs.zName = FAULTVFS_NAME;
		fault_vfs.xOpen = fv_open;
		fault_vfs.xDelete = fv_delete;
		fault_vfs.xAccess = fv_access;
		fault_vfs.xFullPathname = fv_full_pathname;
		fault_vfs.xDlOpen = fv_dl_open;
		fault_vfs.xDlError = fv_dl_error;
		fault_vfs.xDlSym = fv_dl_sym;
		fault_vfs.xDlClose = fv_dl_close;
		fault_vfs.xRandomness = fv_randomness;
		fault_vfs.xSleep = fv_sleep;
		fault_vfs.xCurrentTime = fv_current_time;
		fault_vfs.xGetLastError = fv_last_error;
		fault_vfs.xCurrentTimeInt64 = fv_current_time64;
		fault_vfs.xSetSystemCall = fv_set_syscall;
		fault_vfs.xGetSystemCall = fv_get_syscall;
		fault_vfs.xNextSystemCall = fv_next_syscall;
		registered = true;
	}
	/* Registering again only moves it to the head of the list. */
	return sqlite3_vfs_register(&fault_vfs, make_default);
}

void faultvfs_restore_default(void)
{
	if (registered)
		sqlite3_vfs_register(real_vfs, 1);
}
