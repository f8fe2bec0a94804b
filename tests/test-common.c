/* Shared helpers for the Check suites. SPDX-License-Identifier: MIT */

#define _XOPEN_SOURCE 700 /* nftw */
#include "test-common.h"

#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t fake_wall(void *user)
{
	return ((fake_clock *)user)->wall;
}

static uint64_t fake_mono(void *user)
{
	return ((fake_clock *)user)->mono;
}

saga_clock fake_clock_make(fake_clock *fc)
{
	saga_clock c = { fake_wall, fake_mono, fc };
	return c;
}

void fake_clock_advance(fake_clock *fc, uint64_t ms)
{
	fc->wall += ms;
	fc->mono += ms;
}

void tmpdir_make(char *buf, size_t size)
{
	const char *base = getenv("TMPDIR");
	snprintf(buf, size, "%s/saga-test-XXXXXX", base && *base ? base : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(buf));
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void tmpdir_remove(const char *path)
{
	nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static long kill_at, events_seen;

void kill_at_event_arm(long n)
{
	kill_at = n;
	events_seen = 0;
}

void kill_at_event(const saga_event *ev, void *user)
{
	(void)ev;
	(void)user;
	if (kill_at && ++events_seen == kill_at)
		raise(SIGKILL);
}

int run_suite(Suite *s)
{
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
