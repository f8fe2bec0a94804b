/* `ecommerce`: the e-commerce order saga on libsaga, from the command line.
 *
 *   ecommerce [--data DIR] [--json] [--policies FILE] COMMAND ...
 *
 * Commands: seed, order, run, status, cancel, graph, recover, check, report (see
 * usage() and README.md). Exit codes: 0 success, 1 a business failure or a
 * violation found, 2 bad usage or input (a message says what is wrong and
 * nothing is written).
 *
 * Each command opens the saga store (DIR/saga.db) and closes it before it
 * exits: the engine holds an exclusive lock on the store while it is open.
 *
 * This file is the front door: usage, the command table and the leading
 * global options. How the commands use libsaga is in app.c (read it
 * first), the commands in cmd_*.c (commands.h), argument parsing in cli.c,
 * rendering in output.c, the saga's steps in saga_steps.c; README.md maps
 * every file.
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <string.h>

#include "commands.h"

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: %s [--data DIR] [--json] [--policies FILE] COMMAND [OPTIONS]\n"
	        "\n"
	        "  seed    [--products N] [--customers N] [--seed S]\n"
	        "  order   --customer ID --item SKU:QTY[@CENTS] ... [--payment M] [--shipping M]\n"
	        "          [--key K] [--address TEXT] [--channel email|sms|push] [--total CENTS]\n"
	        "          [--wait SECONDS] [FAULTS]\n"
	        "  run     [--orders N] [--concurrency K] [--seed S] [--wait SECONDS] [FAULTS]\n"
	        "          [--metrics]   (the metrics after the run, instead of its summary)\n"
	        "  status  --id N | --key K   (an order id, or its key; a bare K is a key\n"
	        "                              unless it reads as a number: refused)\n"
	        "  cancel  --id N | --key K  [--wait SECONDS]   (an order another process\n"
	        "                              runs: that process carries the cancel out)\n"
	        "  graph   [--format dot|mermaid|json] [--id N | --key K]   (the saga's\n"
	        "                              definition, or an order's executed path)\n"
	        "  recover [--timeout SECONDS]\n"
	        "  check\n"
	        "  report  [--metrics]   (the store's gauges in the Prometheus text format)\n"
	        "\n"
	        "FAULTS: --fail SERVICE=RATE  --transient SERVICE=RATE  --latency SERVICE=MS\n"
	        "        --timeout SERVICE=MS[:RATE]  --crash SERVICE.OP.before|after[:N]\n"
	        "        (services: order inventory payment shipping notification, or *; also\n"
	        "        from ECOMMERCE_FAIL, ECOMMERCE_TRANSIENT, ECOMMERCE_LATENCY,\n"
	        "        ECOMMERCE_TIMEOUT, ECOMMERCE_CRASH, ECOMMERCE_FAULT_SEED)\n"
	        "\n"
	        "Numbers are decimal digits only (no sign, no blank); a value too long for\n"
	        "its field is refused, never cut. --data defaults to ./ecommerce-data.\n"
	        "Several commands may run at once on one data directory.\n"
	        "Exit codes: 0 success, 1 a business failure or a violation, 2 bad usage or\n"
	        "input (checked before anything is opened for writing: nothing written).\n",
	        prog);
}

/* The commands, by name (commands.h). */
static const struct {
	const char *name;
	int (*fn)(args *, globals *);
} cmds[] = {
	{ "seed", cmd_seed },       { "order", cmd_order },   { "run", cmd_run },
	{ "status", cmd_status },   { "cancel", cmd_cancel }, { "graph", cmd_graph },
	{ "recover", cmd_recover }, { "check", cmd_check },   { "report", cmd_report },
};

/* The global options before the command, then the command with the rest. */
int main(int argc, char **argv)
{
	globals g = { "./ecommerce-data", NULL, 0 };
	args a = { argc, argv, 1, NULL };
	while (a.i < argc && argv[a.i][0] == '-') {
		if (strcmp(argv[a.i], "-h") == 0 || strcmp(argv[a.i], "--help") == 0) {
			usage(stdout);
			return EXIT_OK;
		}
		int r = global_opt(&a, &g);
		if (r < 0)
			return EXIT_USAGE;
		if (r == 0) {
			errorf("unknown option \"%s\"", argv[a.i]);
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (a.i >= argc) {
		errorf("a command is needed");
		usage(stderr);
		return EXIT_USAGE;
	}
	const char *cmd = argv[a.i++];
	if (strcmp(cmd, "help") == 0) {
		usage(stdout);
		return EXIT_OK;
	}
	for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
		if (strcmp(cmd, cmds[i].name) == 0) {
			a.cmd = cmd;
			return cmds[i].fn(&a, &g);
		}
	}
	errorf("unknown command \"%s\" (expected seed, order, run, status, cancel, recover, "
	       "check or report)",
	       cmd);
	return EXIT_USAGE;
}
