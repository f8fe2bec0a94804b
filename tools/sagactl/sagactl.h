/* sagactl's shared declarations: the parsed command line, the exit codes,
 * the output helpers (out.c) and the commands (cmd_read.c, cmd_write.c).
 * SPDX-License-Identifier: MIT */
#ifndef SAGACTL_H
#define SAGACTL_H

#include <saga.h>

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

/* Exit codes (docs/operations.md lists them). */
enum {
	EXIT_OK = 0,
	EXIT_FAIL = 1,     /* the command failed, or check found problems */
	EXIT_USAGE = 2,    /* bad command line */
	EXIT_NOTFOUND = 3, /* no such store, instance or definition */
	EXIT_STATE = 4,    /* refused in the instance's state */
	EXIT_BUSY = 5,     /* the store is busy, or --wait ran out */
	EXIT_STORE = 6     /* not a libsaga store, or one of a newer libsaga */
};

/* The version of the JSON documents sagactl prints ("format"). */
#define SAGACTL_FORMAT 1

enum output { OUT_TEXT, OUT_JSON, OUT_JSONL };

/* The command line: global options, then the command's own. */
typedef struct cli {
	const char *store;
	enum output output;
	bool tty; /* stdout is a terminal: tables are cut to fit */
	const char *cmd;
	int argc; /* the command's arguments (options and operands) */
	char **argv;
} cli;

/* A command's options, parsed from cli.argv by get_opts. */
typedef struct opt {
	const char *name; /* "--state" */
	bool has_value;
	const char *value; /* set when given (flags: "1") */
} opt;

/* Parses args into opts (unknown option: usage error), collecting operands;
 * returns EXIT_OK or EXIT_USAGE (message printed). */
int get_opts(const cli *c, opt *opts, const char **operands, int max_operands, int *noperands);
const char *opt_val(const opt *opts, const char *name);
/* get_opts for a command that takes no operand. */
int no_operands(const cli *c, opt *opts);
/* get_opts for a command on one instance: *ref is its operand (an id, uid
 * or business key), required. */
int instance_operand(const cli *c, opt *opts, const char **ref);

/* ---- out.c ---- */
/* "sagactl: " + message on stderr; returns code. */
int fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The exit code of a libsaga error. */
int exit_of(int rc);
/* The message of a failed call on the handle, with its exit code. */
int admin_fail(saga_admin *a, int rc, const char *what);
/* Times: "2026-11-29T14:40:12.345Z" (0 = "-"). */
void fmt_time(char *buf, size_t size, uint64_t ms);
/* Parses a time: an ISO date-time (UTC, "YYYY-MM-DDTHH:MM:SS[Z]"), a number
 * of ms since the epoch, or a duration ago ("90s", "15m", "2h", "7d"). */
bool parse_time(const char *s, uint64_t *ms);
/* Parses a duration ("250ms", "90s", "15m", "2h", "7d"; a bare number is
 * seconds) into ms. */
bool parse_duration(const char *s, uint64_t *ms);
bool parse_state(const char *s, int *state);

/* A text table: columns added row by row, printed aligned. */
typedef struct table table;
table *table_new(int ncols, const char *const *heads);
void table_add(table *t, ...); /* ncols strings (NULL = "-") */
void table_print(table *t, bool tty, int cut_col);
void table_free(table *t);
size_t table_rows(const table *t);

/* What a listing command prints: in text a table, else a JSON document of
 * `kind` whose list `key` (v->arr) the rows go to. */
typedef struct view {
	const cli *c;
	table *t;
	cJSON *doc, *arr;
	const char *key;
} view;
void view_begin(view *v, const cli *c, const char *kind, const char *key, int ncols,
                const char *const *heads);
/* Prints the view (in text, `empty` instead of a table without rows, when
 * not NULL; the column cut_col cut on a terminal) and frees it; when code is
 * not EXIT_OK it only frees it. Returns code. */
int view_end(view *v, int code, int cut_col, const char *empty);
/* v in decimal, in buf (24 bytes); returns buf. */
const char *fmt_int(char *buf, long long v);

/* Prints a JSON document (or, for jsonl, each element of `array_key` on its
 * own line, each with the format), and deletes it. */
void emit_json(const cli *c, cJSON *doc, const char *array_key);
/* A new document: {"format": 1, "kind": kind}. */
cJSON *json_doc(const char *kind);
cJSON *instance_json(const saga_admin_instance *in);
cJSON *event_json(const saga_event *ev);
/* An event's line of text. */
void print_event(const saga_event *ev);

/* ---- the commands ---- */
int cmd_list(saga_admin *a, const cli *c);
int cmd_count(saga_admin *a, const cli *c);
int cmd_show(saga_admin *a, const cli *c);
int cmd_history(saga_admin *a, const cli *c);
int cmd_stuck(saga_admin *a, const cli *c);
int cmd_definitions(saga_admin *a, const cli *c);
int cmd_owners(saga_admin *a, const cli *c);
int cmd_check(saga_admin *a, const cli *c);
int cmd_metrics(saga_admin *a, const cli *c);
int cmd_graph(saga_admin *a, const cli *c);
int cmd_verb(saga_admin *a, const cli *c);
int cmd_purge(saga_admin *a, const cli *c);
int cmd_batch(saga_admin *a, const cli *c);

/* Shared by the read and write commands. */
/* Finds the instance an operand names: an id, a uid or a business key. */
int resolve(saga_admin *a, const char *ref, saga_admin_instance *out);
/* Fills a filter from "key=value,key=value" (the list options' names
 * without "--"); EXIT_USAGE with a message for an unknown key. spec is cut
 * up in place, and the filter points into it. */
int parse_filter(char *spec, saga_admin_filter *f, char *defname, size_t defsize);
/* Fills a filter from the list options present in opts. */
int filter_from_opts(const opt *opts, saga_admin_filter *f, char *defname, size_t defsize);
/* The verbs that apply to a STUCK instance, and what they would do. */
const char *stuck_hint(const saga_admin_instance *in);

#endif
