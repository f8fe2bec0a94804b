/* sagactl: an operator's tool for a libsaga store, on the admin API
 * (saga_admin_*). The front door: global options, the command table with
 * each command's help, option parsing, opening the store.
 * SPDX-License-Identifier: MIT */
#include "sagactl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct command {
	const char *name;
	int (*fn)(saga_admin *a, const cli *c);
	bool writes;
	const char *help;
} command;

#define LIST_OPTS                                                                                  \
	"  --state S              RUNNING, WAITING, COMPENSATING, COMPLETED, COMPENSATED, STUCK\n" \
	"  --definition N[@V]     a definition, or one version of it\n"                            \
	"  --key PREFIX           business keys beginning with PREFIX\n"                           \
	"  --since T, --until T   created in [since, until)\n"                                     \
	"  --updated-since T, --updated-until T   last changed in that range\n"                    \
	"  --error TEXT           the instance's error contains TEXT\n"                            \
	"  --owner E              held by owner epoch E (0: by nobody)\n"                          \
	"  T is 2026-11-29T14:00:00Z, milliseconds since the epoch, or a time ago: 90s, 15m, 2h, " \
	"7d\n"

#define WRITE_OPTS                                                                            \
	"  --reason TEXT   why (required; recorded in the instance's history)\n"              \
	"  --actor NAME    who (recorded; default: the user name)\n"                          \
	"  --wait D        when another process owns the instance, wait up to D (e.g. 10s)\n" \
	"                  for it to apply the request\n"

static const command commands[] = {
	{ "list", cmd_list, false,
	  "sagactl list [filters] [--limit N] [--after ID]\n"
	  "Lists instances in id order, a page at a time (keyset paging: the next page is\n"
	  "--after the last id shown; text output names it).\n" LIST_OPTS
	  "  --limit N              at most N instances (default 100)\n"
	  "  --after ID             those with an id above ID\n" },
	{ "count", cmd_count, false,
	  "sagactl count [--group-by state|definition]\n"
	  "Counts instances by state, or by definition, version and state.\n" },
	{ "show", cmd_show, false,
	  "sagactl show ID|UID|KEY [--context]\n"
	  "One instance: state, step, phase, attempt, due, deadline, owner, fence, error;\n"
	  "its context (the saga's data) with --context.\n" },
	{ "history", cmd_history, false,
	  "sagactl history ID|UID|KEY [--follow] [--interval D]\n"
	  "The instance's events in order. --follow keeps reading the store (every\n"
	  "--interval, default 200ms) until the instance is COMPLETED or COMPENSATED.\n" },
	{ "stuck", cmd_stuck, false,
	  "sagactl stuck [--definition N[@V]]\n"
	  "The incidents: every STUCK instance with its cause, the step that failed and in\n"
	  "which phase, its error, and the verbs that apply.\n" },
	{ "definitions", cmd_definitions, false,
	  "sagactl definitions\n"
	  "The stored definitions (name@version, steps and kinds), instances per version,\n"
	  "and whether a live process serves each version.\n" },
	{ "owners", cmd_owners, false,
	  "sagactl owners [--all]\n"
	  "Processes registered as owners: epoch, host, pid, lease left, the definitions\n"
	  "they serve, the unfinished instances they hold. --all: the dead and retired too.\n" },
	{ "check", cmd_check, false,
	  "sagactl check\n"
	  "The store's consistency: every instance against its history (created first,\n"
	  "events in order, the last state recorded is the instance's), its definition\n"
	  "snapshot and step, and its owner (ended instances belong to nobody, held ones to\n"
	  "a live owner). Exit 1 when a problem is found.\n" },
	{ "graph", cmd_graph, false,
	  "sagactl graph NAME[@VERSION] | --instance ID|UID|KEY [--format dot|mermaid|json]\n"
	  "A drawing of a stored definition (its highest version without @VERSION): steps\n"
	  "shaped by kind, compensation edges, the point of no return; with --instance, the\n"
	  "path that instance took drawn over its definition. DOT by default (dot -Tsvg);\n"
	  "mermaid for Markdown; json for a program. Needs no application code.\n" },
	{ "metrics", cmd_metrics, false,
	  "sagactl metrics [--format prometheus|openmetrics] [--textfile DIR]\n"
	  "The store's gauges (instances by definition and state, STUCK by reason, overdue,\n"
	  "the oldest due age) in the Prometheus text format (default) or OpenMetrics; with\n"
	  "--textfile, written to DIR/saga.prom for node_exporter's textfile collector\n"
	  "(a temporary file renamed over it). Run one exporter per store.\n" },
	{ "retry", cmd_verb, true,
	  "sagactl retry ID|UID|KEY --reason TEXT [--actor NAME] [--wait D]\n"
	  "A STUCK instance runs its failed step (or compensation) again, with fresh\n"
	  "attempts, once an engine serving its definition takes it.\n" WRITE_OPTS },
	{ "skip", cmd_verb, true,
	  "sagactl skip ID|UID|KEY --reason TEXT [--actor NAME] [--wait D]\n"
	  "A STUCK instance's failed compensation (or, past its pivot, its failed step) is\n"
	  "marked done by hand, and the instance goes on.\n" WRITE_OPTS },
	{ "resume", cmd_verb, true,
	  "sagactl resume ID|UID|KEY --reason TEXT [--actor NAME] [--wait D]\n"
	  "A STUCK instance runs forward again from its failed step (refused once a\n"
	  "compensation has completed).\n" WRITE_OPTS },
	{ "cancel", cmd_verb, true,
	  "sagactl cancel ID|UID|KEY --reason TEXT [--actor NAME] [--wait D]\n"
	  "An unfinished instance compensates what it did (refused past its pivot).\n" WRITE_OPTS },
	{ "purge", cmd_purge, true,
	  "sagactl purge --older-than D [--state completed|compensated] --reason TEXT\n"
	  "             [--actor NAME]\n"
	  "Deletes instances that ended (COMPLETED, COMPENSATED; never STUCK) more than D\n"
	  "ago, with their history. The history goes with them: keep sagactl's output.\n" },
	{ "batch", cmd_batch, true,
	  "sagactl batch VERB --filter F --reason TEXT (--dry-run | --yes) [--actor NAME]\n"
	  "             [--rps N] [--wait D]\n"
	  "VERB (retry, skip, resume, cancel) on every instance the filter selects; the\n"
	  "count first. F is key=value pairs separated by commas, the keys being list's\n"
	  "options: state, definition, key, since, until, updated-since, updated-until,\n"
	  "error, owner. --dry-run only lists them; --yes acts; --rps N at most N requests\n"
	  "a second.\n" WRITE_OPTS },
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f)
{
	fprintf(f, "usage: sagactl [--store STORE] [--output text|json|jsonl] COMMAND [ARGS]\n"
	           "       sagactl COMMAND --help\n"
	           "STORE is the store's path (default $SAGA_STORE).\n"
	           "Reading: list, count, show, history, stuck, definitions, owners, graph,\n"
	           "metrics, check.\n"
	           "Acting (each needs --reason): retry, skip, resume, cancel, purge, batch.\n"
	           "Exit codes: 0 ok, 1 failed (or check found problems), 2 usage, 3 not found,\n"
	           "4 refused in the instance's state, 5 busy (or --wait ran out), 6 not a\n"
	           "libsaga store or one of a newer libsaga.\n");
}

int get_opts(const cli *c, opt *opts, const char **operands, int max_operands, int *noperands)
{
	*noperands = 0;
	for (int i = 0; i < c->argc; i++) {
		const char *arg = c->argv[i];
		if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
			if (*noperands == max_operands)
				return fail(EXIT_USAGE, "%s: unexpected argument '%s' (see --help)",
				            c->cmd, arg);
			operands[(*noperands)++] = arg;
			continue;
		}
		const char *eq = strchr(arg, '=');
		size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
		opt *o = opts;
		while (o->name && (strlen(o->name) != len || strncmp(o->name, arg, len) != 0))
			o++;
		if (!o->name)
			return fail(EXIT_USAGE, "%s: unknown option '%.*s' (see --help)", c->cmd,
			            (int)len, arg);
		if (!o->has_value) {
			if (eq)
				return fail(EXIT_USAGE, "%s: %s takes no value", c->cmd, o->name);
			o->value = "1";
		} else if (eq) {
			o->value = eq + 1;
		} else if (i + 1 < c->argc) {
			o->value = c->argv[++i];
		} else {
			return fail(EXIT_USAGE, "%s: %s needs a value", c->cmd, o->name);
		}
	}
	return EXIT_OK;
}

int no_operands(const cli *c, opt *opts)
{
	const char *ops[1];
	int n;
	return get_opts(c, opts, ops, 0, &n);
}

int instance_operand(const cli *c, opt *opts, const char **ref)
{
	int n;
	int code = get_opts(c, opts, ref, 1, &n);
	if (code == EXIT_OK && n != 1)
		code = fail(EXIT_USAGE, "%s: which instance? (an id, uid or business key)", c->cmd);
	return code;
}

const char *opt_val(const opt *opts, const char *name)
{
	for (const opt *o = opts; o->name; o++)
		if (strcmp(o->name, name) == 0)
			return o->value;
	return NULL;
}

static const command *find_command(const char *name)
{
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

int main(int argc, char **argv)
{
	cli c = { getenv("SAGA_STORE"), OUT_TEXT, isatty(STDOUT_FILENO) != 0, NULL, 0, NULL };
	const char *output = NULL;
	/* The global options, wherever they are: taken out of argv. */
	int kept = 1;
	for (int k = 1; k < argc; k++) {
		const char *arg = argv[k];
		const char **dst = NULL;
		size_t len = 0;
		if (strncmp(arg, "--store", 7) == 0 && (arg[7] == '\0' || arg[7] == '=')) {
			dst = &c.store;
			len = 7;
		} else if (strncmp(arg, "--output", 8) == 0 && (arg[8] == '\0' || arg[8] == '=')) {
			dst = &output;
			len = 8;
		}
		if (!dst) {
			argv[kept++] = argv[k];
			continue;
		}
		if (arg[len] == '=')
			*dst = arg + len + 1;
		else if (k + 1 < argc)
			*dst = argv[++k];
		else
			return fail(EXIT_USAGE, "%s needs a value", arg);
	}
	argc = kept;
	int i = 1;
	if (i < argc && (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)) {
		usage(stdout);
		return EXIT_OK;
	}
	if (i < argc && strncmp(argv[i], "-", 1) == 0) {
		fprintf(stderr, "sagactl: unknown option '%s'\n", argv[i]);
		usage(stderr);
		return EXIT_USAGE;
	}
	if (i == argc || strcmp(argv[i], "help") == 0) {
		usage(i == argc ? stderr : stdout);
		return i == argc ? EXIT_USAGE : EXIT_OK;
	}
	if (output) {
		if (strcmp(output, "text") == 0)
			c.output = OUT_TEXT;
		else if (strcmp(output, "json") == 0)
			c.output = OUT_JSON;
		else if (strcmp(output, "jsonl") == 0)
			c.output = OUT_JSONL;
		else
			return fail(EXIT_USAGE, "--output is text, json or jsonl, not '%s'",
			            output);
	}
	const command *cmd = find_command(argv[i]);
	if (!cmd) {
		fprintf(stderr, "sagactl: unknown command '%s'\n", argv[i]);
		usage(stderr);
		return EXIT_USAGE;
	}
	c.cmd = cmd->name;
	c.argc = argc - i - 1;
	c.argv = argv + i + 1;
	for (int k = 0; k < c.argc; k++)
		if (strcmp(c.argv[k], "--help") == 0 || strcmp(c.argv[k], "-h") == 0) {
			fputs(cmd->help, stdout);
			return EXIT_OK;
		}
	if (!c.store || !*c.store)
		return fail(EXIT_USAGE, "no store: give --store STORE or set SAGA_STORE");
	saga_admin *a = NULL;
	char err[512] = "";
	int rc = saga_admin_open(&a, c.store, cmd->writes ? 0 : SAGA_ADMIN_READ_ONLY, err,
	                         sizeof(err));
	if (rc)
		return fail(exit_of(rc), "%s", err);
	int code = cmd->fn(a, &c);
	saga_admin_close(a);
	return code;
}
