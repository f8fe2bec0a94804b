/*
 * Argument parsing for the `ecommerce` commands: the global options, the
 * argument cursor and its option readers, strict number parsing, and the
 * small helpers every command uses (messages, clocks, keys, arrays).
 * SPDX-License-Identifier: MIT
 */
#ifndef ECOMMERCE_CLI_H
#define ECOMMERCE_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "services.h"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

/* The program's name, for messages. */
extern const char *prog;

/* "ecommerce: <message>" on stderr. */
void errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Small helpers (cli.c). */
void *grow_array(void *p, size_t *cap, size_t first, size_t size);
double mono_s(void);
uint64_t wall_ms(void);
void sleep_ms(uint64_t ms);
int parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out);
int parse_i64_n(const char *s, size_t n, int64_t lo, int64_t hi, int64_t *out);
int parse_u64(const char *s, uint64_t *out);
int file_exists(const char *path);
void new_key(char *buf, size_t size, const char *prefix);

/* The options allowed before and after the command. */
typedef struct globals {
	const char *data;
	const char *policies;
	const char *store; /* --store NAME: the saga store; NULL: DATA/saga.db */
	int json;
} globals;

/* The argument cursor: argv[i] is the next argument to read. */
typedef struct args {
	int argc;
	char **argv;
	int i;
	const char *cmd; /* NULL before the command: errorf already names the program */
} args;

/* The option readers (cli.c); each advances the cursor past what it read. */
const char *opt_value(args *a, const char *name);
int is_opt(const args *a, const char *name);
int opt_i64(args *a, const char *name, int64_t lo, int64_t hi, int64_t *out, const char *label,
            const char *what);
int global_opt(args *a, globals *g);
int fault_opt(args *a, ecom_faults *f, int with_timeout);
int prescan_seed(const args *a, uint64_t *seed);
/* The options of the commands that run orders (order, run): the global
 * ones, the fault flags and --seed (its value read before by prescan_seed).
 * 1 consumed, 0 not one of them, -1 after a message. */
int workload_opt(args *a, globals *g, ecom_faults *f);

#endif
