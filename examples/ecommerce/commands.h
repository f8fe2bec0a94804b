/*
 * The nine commands, one function each. main.c's table calls them with the
 * cursor just past the command's name; each reads its options and returns
 * the exit code (EXIT_OK, EXIT_FAIL, EXIT_USAGE).
 * SPDX-License-Identifier: MIT
 */
#ifndef ECOMMERCE_COMMANDS_H
#define ECOMMERCE_COMMANDS_H

#include "cli.h"

/* On one order (cmd_order.c). */
int cmd_order(args *a, globals *g);
int cmd_status(args *a, globals *g);
int cmd_cancel(args *a, globals *g);
int cmd_graph(args *a, globals *g);

/* The load generator (cmd_run.c). */
int cmd_run(args *a, globals *g);

/* On the whole data directory (cmd_admin.c). */
int cmd_seed(args *a, globals *g);
int cmd_recover(args *a, globals *g);
int cmd_check(args *a, globals *g);
int cmd_report(args *a, globals *g);

#endif
