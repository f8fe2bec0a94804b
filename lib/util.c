/* Allocator, string and clock helpers, the system seed, and the SQLite result
 * code mapper shared by the store and the guard. SPDX-License-Identifier: MIT */
#include "internal.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static void *sys_malloc(size_t n, void *user)
{
	(void)user;
	return malloc(n);
}

static void *sys_realloc(void *p, size_t n, void *user)
{
	(void)user;
	return realloc(p, n);
}

static void sys_free(void *p, void *user)
{
	(void)user;
	free(p);
}

const saga_alloc saga_default_alloc = { sys_malloc, sys_realloc, sys_free, NULL };

void *saga_malloc(const saga_alloc *a, size_t n)
{
	return a->malloc_fn(n ? n : 1, a->user);
}

void *saga_calloc(const saga_alloc *a, size_t count, size_t n)
{
	if (n && count > SIZE_MAX / n)
		return NULL;
	void *p = saga_malloc(a, count * n);
	if (p)
		memset(p, 0, count * n > 0 ? count * n : 1);
	return p;
}

void *saga_realloc(const saga_alloc *a, void *p, size_t n)
{
	return a->realloc_fn(p, n ? n : 1, a->user);
}

void saga_free(const saga_alloc *a, void *p)
{
	if (p)
		a->free_fn(p, a->user);
}

char *saga_strdup(const saga_alloc *a, const char *s)
{
	size_t n = strlen(s) + 1;
	char *d = saga_malloc(a, n);
	if (d)
		memcpy(d, s, n);
	return d;
}

void saga_vfmt(char *buf, size_t size, const char *fmt, va_list ap)
{
	if (!buf || size == 0)
		return;
	if (vsnprintf(buf, size, fmt, ap) < 0)
		buf[0] = '\0';
}

void saga_fmt(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	saga_vfmt(buf, size, fmt, ap);
	va_end(ap);
}

static uint64_t clock_us(clockid_t id)
{
	struct timespec ts;
	if (clock_gettime(id, &ts) != 0)
		return 0;
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t clock_ms(clockid_t id)
{
	return clock_us(id) / 1000u;
}

uint64_t saga_sys_mono_us(void)
{
	return clock_us(CLOCK_MONOTONIC);
}

uint64_t saga_sys_boot_us(void)
{
	return clock_us(CLOCK_BOOTTIME);
}

uint64_t saga_sys_wall_ms(void *user)
{
	(void)user;
	return clock_ms(CLOCK_REALTIME);
}

uint64_t saga_sys_mono_ms(void *user)
{
	(void)user;
	return clock_ms(CLOCK_MONOTONIC);
}

void saga_clock_resolve(saga_clock *out, const saga_clock *in)
{
	saga_clock c = { NULL, NULL, NULL };
	if (in)
		c = *in;
	if (!c.wall_ms)
		c.wall_ms = saga_sys_wall_ms;
	if (!c.mono_ms)
		c.mono_ms = saga_sys_mono_ms;
	*out = c;
}

uint64_t seed_from_system(void)
{
	uint64_t s = 0;
	if (getrandom(&s, sizeof(s), 0) != (ssize_t)sizeof(s))
		s = saga_sys_wall_ms(NULL) ^ ((uint64_t)getpid() << 32) ^ saga_sys_mono_ms(NULL);
	return s;
}

int sqlite_to_saga(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_ROW:
	case SQLITE_DONE:
		return SAGA_OK;
	case SQLITE_NOMEM:
		return SAGA_ENOMEM;
	case SQLITE_FULL:
		return SAGA_EFULL;
	case SQLITE_IOERR:
		return SAGA_EIO;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return SAGA_EBUSY;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return SAGA_ECORRUPT;
	default:
		return SAGA_ESTORE;
	}
}
