/* Shared helpers for the Check suites. SPDX-License-Identifier: MIT */
#ifndef SAGA_TEST_COMMON_H
#define SAGA_TEST_COMMON_H

#include <check.h>
#include <stdint.h>
#include <stddef.h>

#include "saga.h"

/* A fake clock: both wall and monotonic time are `now`, moved by the test. */
typedef struct fake_clock {
	uint64_t wall;
	uint64_t mono;
} fake_clock;

/* A saga_clock reading from *fc. */
saga_clock fake_clock_make(fake_clock *fc);
void fake_clock_advance(fake_clock *fc, uint64_t ms);

/* A fresh temporary directory (mkdtemp) whose path is written to buf;
 * removed with everything in it by tmpdir_remove. */
void tmpdir_make(char *buf, size_t size);
void tmpdir_remove(const char *path);

/* A crash point after a commit: kill_at_event is a listener (listeners run
 * after the event's commit) that raises SIGKILL at the n-th event it sees
 * once kill_at_event_arm(n) was called; n = 0: never. */
void kill_at_event_arm(long n);
void kill_at_event(const saga_event *ev, void *user);

/* Runs one suite and returns the process exit status for meson. */
int run_suite(Suite *s);

#endif
