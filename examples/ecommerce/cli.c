/* Argument parsing and the small helpers the commands share (cli.h).
 * SPDX-License-Identifier: MIT */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "faults.h"

/* ---------------------------------------------------------------------- */
/* Small helpers                                                          */
/* ---------------------------------------------------------------------- */

const char *prog = "ecommerce";

void errorf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s: ", prog);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* The array p (elements of `size` bytes) with room for twice *cap elements
 * (`first` when empty); *cap is updated. NULL when out of memory: p and *cap
 * are left as they were. */
void *grow_array(void *p, size_t *cap, size_t first, size_t size)
{
	size_t n = *cap ? *cap * 2 : first;
	void *np = realloc(p, n * size);
	if (np)
		*cap = n;
	return np;
}

double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

uint64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void sleep_ms(uint64_t ms)
{
	struct timespec ts = { (time_t)(ms / 1000u), (long)(ms % 1000u) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* A number in decimal digits only, no sign, no blank, no other base, in
 * lo..hi (lo >= 0): strtoll would take " -1" or "+1" and strtoull(" -1")
 * gives 2^64-1. */
int parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
	uint64_t v;
	if (ecom_parse_u64(s, (uint64_t)INT64_MAX, &v) != 0 || (int64_t)v < lo || (int64_t)v > hi)
		return -1;
	*out = (int64_t)v;
	return 0;
}

/* parse_i64 of the first n bytes of s; more digits than any int64_t has
 * are refused, never cut. */
int parse_i64_n(const char *s, size_t n, int64_t lo, int64_t hi, int64_t *out)
{
	char buf[24];
	if (n >= sizeof buf)
		return -1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	return parse_i64(buf, lo, hi, out);
}

int parse_u64(const char *s, uint64_t *out)
{
	return ecom_parse_u64(s, UINT64_MAX, out);
}

int file_exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

/* A business key nobody else has: 64 random bits. */
void new_key(char *buf, size_t size, const char *prefix)
{
	uint64_t r = 0;
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || read(fd, &r, sizeof r) != (ssize_t)sizeof r)
		r = wall_ms() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)buf;
	if (fd >= 0)
		close(fd);
	snprintf(buf, size, "%s-%016" PRIx64, prefix, r);
}

/* ---------------------------------------------------------------------- */
/* Global options and the argument cursor                                 */
/* ---------------------------------------------------------------------- */

/* "CMD: " in a message about an argument, or "" before the command. */
static const char *pfx(const args *a)
{
	static char buf[64];
	if (!a->cmd)
		return "";
	snprintf(buf, sizeof buf, "%s: ", a->cmd);
	return buf;
}

/* Longest --data: room is left for "/notification.db-wal" and the like in
 * every path built from it (ecom_app.dir, path_in's buffers). */
#define DATA_DIR_MAX 4000

/* The value of option argv[i] ("--opt VALUE" or "--opt=VALUE"), or NULL
 * with a message. Advances the cursor. */
const char *opt_value(args *a, const char *name)
{
	const char *arg = a->argv[a->i];
	size_t n = strlen(name);
	if (strncmp(arg, name, n) == 0 && arg[n] == '=') {
		a->i++;
		return arg + n + 1;
	}
	if (a->i + 1 >= a->argc) {
		errorf("%soption %s needs a value", pfx(a), name);
		return NULL;
	}
	a->i += 2;
	return a->argv[a->i - 1];
}

int is_opt(const args *a, const char *name)
{
	const char *arg = a->argv[a->i];
	size_t n = strlen(name);
	return strncmp(arg, name, n) == 0 && (arg[n] == '\0' || arg[n] == '=');
}

/* The value of option `name` as an integer in lo..hi into *out: 0, or -1
 * after a message ("<label> "<value>" is not <what>"). Advances the cursor. */
int opt_i64(args *a, const char *name, int64_t lo, int64_t hi, int64_t *out, const char *label,
            const char *what)
{
	const char *v = opt_value(a, name);
	if (!v)
		return -1;
	if (parse_i64(v, lo, hi, out) != 0) {
		errorf("%s \"%s\" is not %s", label, v, what);
		return -1;
	}
	return 0;
}

/* Options allowed after the command too: --data, --json, --policies,
 * --store.
 * Returns 1 if consumed, 0 if not one of them, -1 on error. */
int global_opt(args *a, globals *g)
{
	if (strcmp(a->argv[a->i], "--json") == 0) {
		g->json = 1;
		a->i++;
		return 1;
	}
	if (is_opt(a, "--data")) {
		const char *v = opt_value(a, "--data");
		if (!v)
			return -1;
		if (!*v) {
			errorf("%s--data needs a directory", pfx(a));
			return -1;
		}
		if (strlen(v) > DATA_DIR_MAX) {
			errorf("%s--data: the path is longer than %d bytes", pfx(a), DATA_DIR_MAX);
			return -1;
		}
		g->data = v;
		return 1;
	}
	if (is_opt(a, "--policies")) {
		const char *v = opt_value(a, "--policies");
		if (!v)
			return -1;
		if (!*v) {
			errorf("%s--policies needs a file", pfx(a));
			return -1;
		}
		g->policies = v;
		return 1;
	}
	if (is_opt(a, "--store")) {
		const char *v = opt_value(a, "--store");
		if (!v)
			return -1;
		if (!*v) {
			errorf("%s--store needs a store name (a file, or a postgresql:// URI)",
			       pfx(a));
			return -1;
		}
		g->store = v;
		return 1;
	}
	return 0;
}

/* Failure-injection flags: --fail, --transient, --latency, --timeout,
 * --crash. 1 consumed, 0 not one, -1 bad spec (message printed). */
int fault_opt(args *a, ecom_faults *f, int with_timeout)
{
	static const char *const kinds[] = { "fail", "transient", "latency", "timeout", "crash" };
	for (int k = 0; k < 5; k++) {
		if (k == 3 && !with_timeout)
			continue;
		char name[32];
		snprintf(name, sizeof name, "--%s", kinds[k]);
		if (!is_opt(a, name))
			continue;
		const char *v = opt_value(a, name);
		if (!v)
			return -1;
		char msg[ECOM_MSG_MAX];
		if (ecom_faults_parse(f, kinds[k], v, msg, sizeof msg) != 0) {
			errorf("%s%s %s: %s", pfx(a), name, v, msg);
			if (k == 4) { /* say which points exist, one a line */
				fprintf(stderr, "crash points:\n");
				for (const char *const *p = ecom_crash_points(); *p; p++)
					fprintf(stderr, "  %s\n", *p);
			}
			return -1;
		}
		return 1;
	}
	return 0;
}

/* Reads --seed S among the remaining arguments before the others are parsed,
 * so that the fault generator starts from it whatever the flags' order. */
int prescan_seed(const args *a, uint64_t *seed)
{
	for (int i = a->i; i < a->argc; i++) {
		const char *v = NULL;
		if (strncmp(a->argv[i], "--seed=", 7) == 0)
			v = a->argv[i] + 7;
		else if (strcmp(a->argv[i], "--seed") == 0 && i + 1 < a->argc)
			v = a->argv[i + 1];
		if (v && parse_u64(v, seed) != 0) {
			errorf("%s--seed \"%s\" is not a number (decimal digits, 0..%" PRIu64 ")",
			       pfx(a), v, UINT64_MAX);
			return -1;
		}
	}
	return 0;
}

int workload_opt(args *a, globals *g, ecom_faults *f)
{
	int x = global_opt(a, g);
	if (x == 0)
		x = fault_opt(a, f, 1);
	if (x == 0 && is_opt(a, "--seed"))
		x = opt_value(a, "--seed") ? 1 : -1; /* read by prescan_seed */
	return x;
}
