/* Clock helpers shared by tests/mp-worker.c and tests/test-multiproc.c: the
 * wall clock the history and the ledger are stamped with, and a sleep that
 * signals do not cut short. SPDX-License-Identifier: MIT */
#ifndef MP_TIME_H
#define MP_TIME_H

#include <errno.h>
#include <stdint.h>
#include <time.h>

static inline int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline void nap_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

#endif
