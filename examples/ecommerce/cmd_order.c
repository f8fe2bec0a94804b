/* The commands on one order: `order` (start its saga and wait for it),
 * `status` (its saga, order and history) and `cancel`.
 * SPDX-License-Identifier: MIT */
#include "app.h"
#include "commands.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ITEMS_ARG 1000

/* ---------------------------------------------------------------------- */
/* order                                                                  */
/* ---------------------------------------------------------------------- */

/* "credit-card" -> "CREDIT_CARD"; -1 when it does not fit (no method name
 * is that long: refused, not cut). */
static int method_name(char *buf, size_t size, const char *s)
{
	size_t i = 0;
	for (; s[i]; i++) {
		if (i + 1 >= size)
			return -1;
		buf[i] = s[i] == '-' ? '_' : (char)toupper((unsigned char)s[i]);
	}
	buf[i] = '\0';
	return 0;
}

typedef struct item_arg {
	char sku[ECOM_ID_MAX];
	int64_t quantity;
	int64_t price;
	int has_price; /* 0: the catalogue's */
} item_arg;

/* "SKU:QTY" or "SKU:QTY@CENTS". */
static int parse_item(const char *s, item_arg *out)
{
	const char *colon = strrchr(s, ':');
	if (!colon || colon == s || (size_t)(colon - s) >= ECOM_ID_MAX) {
		errorf("order: --item \"%s\": expected SKU:QTY (e.g. SKU-0001:2)", s);
		return -1;
	}
	memcpy(out->sku, s, (size_t)(colon - s));
	out->sku[colon - s] = '\0';
	/* Parsed in place, whatever its length: a copy into a buffer would cut
	 * a long value and parse what is left. */
	const char *qty = colon + 1, *at = strchr(qty, '@');
	size_t qlen = at ? (size_t)(at - qty) : strlen(qty);
	out->has_price = 0;
	if (at) {
		out->has_price = 1;
		if (parse_i64(at + 1, 0, INT64_MAX, &out->price) != 0) {
			errorf("order: --item \"%s\": the price \"%s\" is not a whole number of "
			       "cents "
			       "(digits only)",
			       s, at + 1);
			return -1;
		}
	}
	if (parse_i64_n(qty, qlen, 0, INT64_MAX, &out->quantity) != 0) {
		errorf("order: --item \"%s\": the quantity \"%.*s\" is not a whole number "
		       "(digits only)",
		       s, (int)qlen, qty);
		return -1;
	}
	return 0;
}

typedef struct wait_one {
	int64_t id;
	int stop_when_parked;
} wait_one;

static int one_done(saga_engine *e, void *user)
{
	wait_one *w = user;
	saga_instance_info in;
	int rc = saga_get(e, &in, w->id);
	if (rc != SAGA_OK)
		return rc;
	return is_final(in.state) || (w->stop_when_parked && in.state == SAGA_WAITING);
}

/* What `order` is asked for, as its options say it. */
typedef struct order_req {
	const char *customer, *key, *payment, *shipping, *address, *channel, *currency;
	int64_t total; /* --total, when has_total */
	int has_total;
	int64_t wait_s;
	item_arg *items; /* room for MAX_ITEMS_ARG; nitems read */
	size_t nitems;
	int pay, ship;   /* the methods, set by order_check */
	char keybuf[64]; /* the new key, when none was given */
} order_req;

/* Phase 1: reads the options into r. 0, or -1 after a message. */
static int order_options(args *a, globals *g, order_req *r, ecom_faults *faults)
{
	const struct {
		const char *flag;
		const char **value;
	} strs[] = {
		{ "--customer", &r->customer }, { "--key", &r->key },
		{ "--payment", &r->payment },   { "--shipping", &r->shipping },
		{ "--address", &r->address },   { "--channel", &r->channel },
		{ "--currency", &r->currency },
	};
	while (a->i < a->argc) {
		int x = workload_opt(a, g, faults);
		if (x < 0)
			return -1;
		if (x)
			continue;
		size_t s = 0;
		while (s < sizeof strs / sizeof strs[0] && !is_opt(a, strs[s].flag))
			s++;
		if (s < sizeof strs / sizeof strs[0]) {
			if (!(*strs[s].value = opt_value(a, strs[s].flag)))
				return -1;
		} else if (is_opt(a, "--item")) {
			const char *v = opt_value(a, "--item");
			if (!v)
				return -1;
			if (r->nitems == MAX_ITEMS_ARG) {
				errorf("order: too many --item (at most %d lines per order)",
				       ECOM_MAX_ITEMS);
				return -1;
			}
			if (parse_item(v, &r->items[r->nitems]) != 0)
				return -1;
			r->nitems++;
		} else if (is_opt(a, "--total")) {
			if (opt_i64(a, "--total", 0, INT64_MAX, &r->total, "order: --total",
			            "a whole number of cents (digits only)") != 0)
				return -1;
			r->has_total = 1;
		} else if (is_opt(a, "--wait")) {
			if (opt_i64(a, "--wait", 0, 86400, &r->wait_s, "order: --wait",
			            "a number of seconds (0..86400)") != 0)
				return -1;
		} else {
			errorf("order: unknown option \"%s\"", a->argv[a->i]);
			return -1;
		}
	}
	return 0;
}

/* Phase 2a: what can be checked before anything is opened; gives the order
 * a new key when it has none. 0, or -1 after a message. */
static int order_check(order_req *r)
{
	if (!r->customer || !*r->customer) {
		errorf("order: --customer ID is required");
		return -1;
	}
	if (r->nitems == 0) {
		errorf("order: at least one --item SKU:QTY is required");
		return -1;
	}
	char pname[64], sname[64];
	r->pay = method_name(pname, sizeof pname, r->payment) == 0
	                 ? ecom_payment_method_parse(pname)
	                 : -1;
	r->ship = method_name(sname, sizeof sname, r->shipping) == 0
	                  ? ecom_shipping_method_parse(sname)
	                  : -1;
	if (r->pay < 0) {
		errorf("order: unknown payment method \"%s\" (expected CREDIT_CARD, DEBIT_CARD, "
		       "PAYPAL or BANK_TRANSFER)",
		       r->payment);
		return -1;
	}
	if (r->ship < 0) {
		errorf("order: unknown shipping method \"%s\" (expected STANDARD, EXPRESS, "
		       "OVERNIGHT, TWO_DAY or INTERNATIONAL)",
		       r->shipping);
		return -1;
	}
	if (ecom_channel_parse(r->channel) < 0) {
		errorf("order: unknown channel \"%s\" (expected email, sms or push)", r->channel);
		return -1;
	}
	if (r->key && (!*r->key || strlen(r->key) > 200)) {
		errorf("order: --key must have 1 to 200 characters");
		return -1;
	}
	if (!r->key) {
		new_key(r->keybuf, sizeof r->keybuf, "ord");
		r->key = r->keybuf;
	}
	return 0;
}

/* The order's lines, priced from the catalogue unless --item gave a price,
 * and their sum (*overflow set when it does not fit). Exit code. */
static int order_lines(ecom_app *app, const order_req *r, ecom_item *lines, int64_t *total,
                       int *overflow)
{
	*total = 0;
	*overflow = 0;
	for (size_t i = 0; i < r->nitems; i++) {
		ecom_product p;
		int rc = inventory_get_product(app->inventory, r->items[i].sku, &p);
		if (rc == SAGA_ENOTFOUND) {
			errorf("order: unknown product \"%s\"", r->items[i].sku);
			return EXIT_USAGE;
		}
		if (rc != 0) {
			errorf("order: reading product %s: %s", r->items[i].sku, saga_strerror(rc));
			return EXIT_FAIL;
		}
		lines[i].sku = r->items[i].sku;
		lines[i].quantity = r->items[i].quantity;
		lines[i].unit_price = r->items[i].has_price ? r->items[i].price : p.price;
		int64_t line;
		if (__builtin_mul_overflow(lines[i].quantity, lines[i].unit_price, &line) ||
		    __builtin_add_overflow(*total, line, total))
			*overflow = 1;
	}
	return EXIT_OK;
}

/* Phase 2b: the saga's input, validated against the services as they are
 * (products, prices, stock, the customer) before anything is written.
 * *input is owned by the caller. Exit code. */
static int order_input(ecom_app *app, const order_req *r, cJSON **input)
{
	ecom_item *lines = calloc(r->nitems, sizeof *lines);
	if (!lines) {
		errorf("order: out of memory");
		return EXIT_FAIL;
	}
	int64_t total;
	int overflow;
	int ex = order_lines(app, r, lines, &total, &overflow);
	if (ex != EXIT_OK)
		goto out;
	ecom_order order = {
		.ref = r->key,
		.customer = r->customer,
		.items = lines,
		.nitems = r->nitems,
		.total = r->has_total ? r->total
		         : overflow   ? INT64_MAX
		                      : total,
		.currency = r->currency,
		.address = r->address,
		.payment = r->pay,
		.shipping = r->ship,
	};
	int known = order_customer_exists(app->order, r->customer);
	if (known < 0) {
		errorf("order: reading customers: %s", saga_strerror(known));
		ex = EXIT_FAIL;
		goto out;
	}
	char msg[ECOM_MSG_MAX];
	if (ecom_order_validate(&order, known, msg, sizeof msg) != 0 ||
	    inventory_check_items(app->inventory, lines, r->nitems, msg, sizeof msg) != 0) {
		errorf("order: %s", msg);
		ex = EXIT_USAGE;
		goto out;
	}
	if (overflow && !r->has_total) {
		errorf("order: the total overflows");
		ex = EXIT_USAGE;
		goto out;
	}
	if (!(*input = ecom_order_to_json(&order))) {
		errorf("order: out of memory");
		ex = EXIT_FAIL;
		goto out;
	}
	cJSON_AddStringToObject(*input, "channel", r->channel);
out:
	free(lines);
	return ex;
}

/* Phase 3, the libsaga part: opens the engine, starts the saga (or finds
 * the one already started under the same key) and drives it until it ends,
 * parks with --wait 0, or --wait passes. *in is the saga as it is then.
 * Exit code. */
static int order_start_and_wait(ecom_app *app, const globals *g, const order_req *r,
                                const cJSON *input, saga_instance_info *in, int *created)
{
	engine_cfg ec = { 0, 0, 0, 1 };
	int ex = app_open_engine(app, g, &ec, "order");
	if (ex != EXIT_OK)
		return ex;
	int64_t id = 0;
	if (saga_start(app->engine, &id, created, ECOM_SAGA_NAME, r->key, input) != SAGA_OK) {
		errorf("order: cannot start the saga: %s", saga_engine_errmsg(app->engine));
		return EXIT_FAIL;
	}
	wait_one w = { id, r->wait_s == 0 };
	int rc = drive(app->engine, one_done, &w, (uint64_t)r->wait_s * 1000u);
	if (rc != SAGA_OK && rc != SAGA_EBUSY) {
		errorf("order: running the saga: %s", saga_engine_errmsg(app->engine));
		return EXIT_FAIL;
	}
	if (saga_get(app->engine, in, id) != SAGA_OK) {
		errorf("order: %s", saga_engine_errmsg(app->engine));
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

int cmd_order(args *a, globals *g)
{
	order_req r = {
		.payment = "CREDIT_CARD",
		.shipping = "STANDARD",
		.address = "1 Main Street, Springfield",
		.channel = "email",
		.wait_s = 30,
	};
	ecom_app app;
	memset(&app, 0, sizeof app);
	uint64_t seed = 1;
	if (prescan_seed(a, &seed) != 0)
		return EXIT_USAGE;
	r.items = calloc(MAX_ITEMS_ARG, sizeof *r.items);
	if (!r.items || ecom_faults_new(&app.faults, seed) != 0) {
		errorf("order: out of memory");
		free(r.items);
		return EXIT_FAIL;
	}
	cJSON *input = NULL;
	saga_instance_info in;
	int created = 0;
	int ex = EXIT_USAGE;
	if (order_options(a, g, &r, app.faults) != 0 || order_check(&r) != 0)
		goto out;
	if ((ex = app_open(&app, g, "order")) != EXIT_OK ||
	    (ex = order_input(&app, &r, &input)) != EXIT_OK ||
	    (ex = order_start_and_wait(&app, g, &r, input, &in, &created)) != EXIT_OK)
		goto out;
	/* Phase 4: the outcome. */
	char what[400];
	snprintf(what, sizeof what,
	         created ? "order %s: %s" : "order %s already exists (same key): %s", r.key,
	         is_final(in.state) ? "done" : "still in progress (see `status`, `recover`)");
	ex = print_outcome(&app, g, &in, created, what);
out:
	cJSON_Delete(input);
	app_close(&app);
	free(r.items);
	return ex;
}

/* ---------------------------------------------------------------------- */
/* status, cancel                                                         */
/* ---------------------------------------------------------------------- */

/* Which order a command is about: --id N (an order id) or --key K (its
 * business key, the saga's). A bare operand is a key, unless it reads as a
 * number: then it could be either and is refused, since taking it as an id
 * once cancelled another customer's order whose id matched a key. */
typedef struct order_ref {
	int by_id;
	int64_t id;
	const char *key;
	int64_t wait_s;     /* cancel's --wait */
	const char *format; /* graph's --format; NULL when not given */
} order_ref;

/* What order_operand accepts besides the order: cancel's --wait, graph's
 * --format; OPERAND_OPTIONAL: no order at all (graph draws the definition). */
enum { OPERAND_WAIT = 1, OPERAND_FORMAT = 2, OPERAND_OPTIONAL = 4 };

/* 1 when s reads as a number, blanks and signs included. */
static int numeric(const char *s)
{
	s += strspn(s, " \t\n+-");
	return *s && strspn(s, "0123456789") == strlen(s);
}

/* The saga of the order: *saga_id, or an exit code after a message
 * (EXIT_USAGE when there is no such order or saga). With no saga store in
 * the directory nothing is opened: there is no saga. The services must be
 * open; the engine is opened here when the store exists. */
static int find_saga(ecom_app *app, const globals *g, const engine_cfg *ec, const char *cmd,
                     const order_ref *r, int64_t *saga_id)
{
	char ref[ECOM_KEY_MAX];
	const char *key = r->key;
	char what[ECOM_KEY_MAX + 32];
	if (r->by_id) {
		ecom_order_info oi;
		int rc = order_get(app->order, r->id, &oi);
		if (rc == SAGA_ENOTFOUND) {
			errorf("%s: no order with id %" PRId64, cmd, r->id);
			return EXIT_USAGE;
		}
		if (rc != 0) {
			errorf("%s: reading order %" PRId64 ": %s", cmd, r->id, saga_strerror(rc));
			return EXIT_FAIL;
		}
		if (!oi.ref[0]) {
			errorf("%s: order %" PRId64 " has no saga", cmd, r->id);
			return EXIT_USAGE;
		}
		snprintf(ref, sizeof ref, "%s", oi.ref);
		key = ref;
		snprintf(what, sizeof what, "order %" PRId64 " (key %s)", r->id, ref);
	} else {
		snprintf(what, sizeof what, "key \"%s\"", key);
	}
	if (!store_present(app->dir)) {
		errorf("%s: no saga for %s (no saga store in %s yet)", cmd, what, app->dir);
		return EXIT_USAGE;
	}
	int ex = app_open_engine(app, g, ec, cmd);
	if (ex != EXIT_OK)
		return ex;
	int rc = saga_find(app->engine, saga_id, key);
	if (rc == SAGA_ENOTFOUND) {
		errorf("%s: no saga for %s", cmd, what);
		return EXIT_USAGE;
	}
	if (rc != SAGA_OK) {
		errorf("%s: %s", cmd, saga_engine_errmsg(app->engine));
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

/* The order operand of status, cancel and graph (see order_ref), with the
 * options `accept` (OPERAND_*) allows; -1 after a message. */
static int order_operand(args *a, globals *g, order_ref *r, const char *cmd, int accept)
{
	memset(r, 0, sizeof *r);
	r->wait_s = 60;
	int n = 0;
	while (a->i < a->argc) {
		int x = global_opt(a, g);
		if (x < 0)
			return -1;
		if (x)
			continue;
		const char *arg = a->argv[a->i];
		if ((accept & OPERAND_FORMAT) && is_opt(a, "--format")) {
			if (!(r->format = opt_value(a, "--format")))
				return -1;
			continue;
		}
		if ((accept & OPERAND_WAIT) && is_opt(a, "--wait")) {
			if (opt_i64(a, "--wait", 0, 86400, &r->wait_s, "cancel: --wait",
			            "a number of seconds (0..86400)") != 0)
				return -1;
			continue;
		}
		if (is_opt(a, "--id")) {
			const char *v = opt_value(a, "--id");
			if (!v)
				return -1;
			if (parse_i64(v, 1, INT64_MAX, &r->id) != 0) {
				errorf("%s: --id \"%s\" is not an order id (digits only)", cmd, v);
				return -1;
			}
			r->by_id = 1;
			n++;
			continue;
		}
		if (is_opt(a, "--key")) {
			if (!(r->key = opt_value(a, "--key")))
				return -1;
			r->by_id = 0;
			n++;
			continue;
		}
		if (numeric(arg)) {
			errorf("%s: \"%s\" could be an order id or a key: say --id N or --key K",
			       cmd, arg);
			return -1;
		}
		if (arg[0] == '-') {
			errorf("%s: unknown option \"%s\"", cmd, arg);
			return -1;
		}
		r->key = arg;
		r->by_id = 0;
		n++;
		a->i++;
	}
	if (n == 0 && (accept & OPERAND_OPTIONAL))
		return 0;
	if (n == 0) {
		errorf("%s: which order? (%s --id N, %s --key K)", cmd, cmd, cmd);
		return -1;
	}
	if (n > 1) {
		errorf("%s: one order only (--id N or --key K, once)", cmd);
		return -1;
	}
	if (!r->by_id && (!*r->key || strlen(r->key) > SAGA_KEY_MAX)) {
		errorf("%s: a key has 1 to %d bytes", cmd, SAGA_KEY_MAX);
		return -1;
	}
	return 0;
}

/* What a saga's history says of the cancels asked for it: carried out, or
 * refused when its owner came to carry it out (the saga had passed its
 * pivot or was already rolling back). The history records a cancel as an
 * operator event "cancel", a refused command as "refused: <why>"; this
 * program sends no other command. */
typedef struct cancel_seen {
	int carried;
	char refused[300];
} cancel_seen;

static int scan_cancel(const saga_event *ev, void *user)
{
	cancel_seen *c = user;
	if (ev->type != SAGA_EVENT_OPERATOR)
		return 0;
	if (strcmp(ev->detail, "cancel") == 0)
		c->carried = 1;
	else if (strncmp(ev->detail, "refused: ", 9) == 0)
		snprintf(c->refused, sizeof c->refused, "%s", ev->detail + 9);
	return 0;
}

int cmd_status(args *a, globals *g)
{
	order_ref what;
	if (order_operand(a, g, &what, "status", 0) != 0)
		return EXIT_USAGE;
	ecom_app app;
	memset(&app, 0, sizeof app);
	snprintf(app.dir, sizeof app.dir, "%s", g->data);
	int ex = app_open_services(&app, "status");
	engine_cfg ec = { 0, 0, 0, 2 }; /* the history names steps of registered definitions */
	int64_t sid = 0;
	if (ex == EXIT_OK)
		ex = find_saga(&app, g, &ec, "status", &what, &sid);
	saga_instance_info in;
	if (ex == EXIT_OK && saga_get(app.engine, &in, sid) != SAGA_OK) {
		errorf("status: %s", saga_engine_errmsg(app.engine));
		ex = EXIT_FAIL;
	}
	if (ex == EXIT_OK) {
		int64_t oid = order_of_key(&app, in.business_key);
		hist h = { NULL, g->json };
		cancel_seen cs = { 0, "" };
		saga_history(app.engine, sid, scan_cancel, &cs);
		if (g->json) {
			cJSON *j = cJSON_CreateObject();
			cJSON_AddItemToObject(j, "saga", saga_json(&in));
			cJSON_AddItemToObject(j, "order", order_json(&app, oid));
			if (cs.carried || cs.refused[0])
				cJSON_AddStringToObject(j, "cancel",
				                        cs.carried ? "carried out" : "refused");
			h.arr = cJSON_AddArrayToObject(j, "history");
			saga_history(app.engine, sid, history_line, &h);
			print_json(j);
		} else {
			print_saga_text(&in);
			print_order_text(&app, oid);
			if (cs.carried)
				printf("cancel:  carried out (%s)\n", saga_state_name(in.state));
			else if (cs.refused[0])
				printf("cancel:  refused when it was carried out: %s\n",
				       cs.refused);
			printf("history:\n");
			saga_history(app.engine, sid, history_line, &h);
		}
	}
	app_close(&app);
	return ex;
}

/* ---------------------------------------------------------------------- */
/* graph                                                                  */
/* ---------------------------------------------------------------------- */

static int write_stdout(const char *data, size_t len, void *user)
{
	(void)user;
	return fwrite(data, 1, len, stdout) == len ? 0 : 1;
}

/* The saga's definition (with its policies), or with an order its executed
 * path, drawn as Graphviz DOT (the default), Mermaid or JSON. */
int cmd_graph(args *a, globals *g)
{
	order_ref what;
	if (order_operand(a, g, &what, "graph", OPERAND_FORMAT | OPERAND_OPTIONAL) != 0)
		return EXIT_USAGE;
	saga_graph_format fmt = g->json ? SAGA_GRAPH_JSON : SAGA_GRAPH_DOT;
	if (what.format && saga_graph_format_parse(&fmt, what.format) != SAGA_OK) {
		errorf("graph: --format \"%s\": dot, mermaid or json", what.format);
		return EXIT_USAGE;
	}
	ecom_app app;
	memset(&app, 0, sizeof app);
	snprintf(app.dir, sizeof app.dir, "%s", g->data);
	int ex = app_open_services(&app, "graph");
	engine_cfg ec = { 0, 0, 0, 1 }; /* registered with its policies, to draw them */
	int64_t sid = 0;
	if (ex == EXIT_OK && (what.by_id || what.key))
		ex = find_saga(&app, g, &ec, "graph", &what, &sid);
	else if (ex == EXIT_OK)
		ex = app_open_engine(&app, g, &ec, "graph");
	if (ex == EXIT_OK && saga_engine_graph(app.engine, ECOM_SAGA_NAME, ECOM_SAGA_VERSION, sid,
	                                       fmt, write_stdout, NULL) != SAGA_OK) {
		errorf("graph: %s", saga_engine_errmsg(app.engine));
		ex = EXIT_FAIL;
	}
	app_close(&app);
	return ex;
}

/* Waits (driving this process's engine) until the saga has ended. */
static int saga_ended(saga_engine *e, void *user)
{
	saga_instance_info in;
	int rc = saga_get(e, &in, *(const int64_t *)user);
	return rc != SAGA_OK ? rc : is_final(in.state);
}

/* What `cancel` says once it has waited: the outcome, and whose work it
 * was. `here`: this process carried the cancel out (it took the saga);
 * otherwise it was written for the process that runs the order. Exit code. */
static int cancel_outcome(ecom_app *app, globals *g, const saga_instance_info *in, int here,
                          const char *what)
{
	cancel_seen cs = { 0, "" };
	saga_history(app->engine, in->id, scan_cancel, &cs);
	const char *by = here ? "" : " by the process running it";
	char msg[600];
	int ex = EXIT_OK;
	if (in->state == SAGA_COMPENSATED && cs.carried) {
		snprintf(msg, sizeof msg, "order %s cancelled%s", what, by);
	} else if (in->state == SAGA_COMPENSATED) {
		snprintf(msg, sizeof msg,
		         "order %s was rolled back (%s) before the cancel was "
		         "carried out",
		         what, saga_reason_name(in->reason));
	} else if (cs.refused[0]) {
		snprintf(msg, sizeof msg, "cancel of order %s refused%s: %s", what, by, cs.refused);
		ex = EXIT_FAIL;
	} else if (is_final(in->state)) {
		snprintf(msg, sizeof msg, "order %s ended %s: not cancelled", what,
		         saga_state_name(in->state));
		ex = EXIT_FAIL;
	} else if (cs.carried) {
		snprintf(msg, sizeof msg,
		         "order %s cancelled%s; its compensations are still "
		         "running (`status` shows the outcome)",
		         what, by);
	} else {
		/* Written durably for its owner, which carries it out once the
		 * order's current step has answered (or refuses it if the order
		 * has passed its pivot by then). */
		snprintf(msg, sizeof msg,
		         "cancel of order %s requested; the process running the "
		         "order carries it out (`status` shows the outcome)",
		         what);
	}
	if (g->json) {
		cJSON *j = cJSON_CreateObject();
		cJSON_AddStringToObject(j, "key", in->business_key);
		cJSON_AddStringToObject(j, "cancel",
		                        cs.carried            ? "carried out"
		                        : cs.refused[0]       ? "refused"
		                        : is_final(in->state) ? "not carried out"
		                                              : "requested");
		cJSON_AddBoolToObject(j, "by_this_process", here);
		cJSON_AddStringToObject(j, "message", msg);
		cJSON_AddItemToObject(j, "saga", saga_json(in));
		cJSON_AddItemToObject(j, "order",
		                      order_json(app, order_of_key(app, in->business_key)));
		print_json(j);
	} else {
		printf("%s\n", msg);
		print_saga_text(in);
		print_order_text(app, order_of_key(app, in->business_key));
	}
	return ex;
}

int cmd_cancel(args *a, globals *g)
{
	order_ref ref;
	ecom_app app;
	memset(&app, 0, sizeof app);
	if (ecom_faults_new(&app.faults, 1) != 0)
		return EXIT_FAIL;
	if (order_operand(a, g, &ref, "cancel", OPERAND_WAIT) != 0) {
		app_close(&app);
		return EXIT_USAGE;
	}
	int ex = app_open(&app, g, "cancel");
	engine_cfg ec = { 0, 0, 0, 1 };
	int64_t sid = 0;
	if (ex == EXIT_OK)
		ex = find_saga(&app, g, &ec, "cancel", &ref, &sid);
	if (ex != EXIT_OK)
		goto out;
	char what[ECOM_KEY_MAX + 32];
	if (ref.by_id)
		snprintf(what, sizeof what, "%" PRId64, ref.id);
	else
		snprintf(what, sizeof what, "%s", ref.key);
	saga_instance_info in;
	int rc = saga_cancel(app.engine, sid);
	if (rc == SAGA_ESTATE) {
		if (saga_get(app.engine, &in, sid) == SAGA_OK && is_final(in.state))
			errorf("cancel: order %s has already ended (%s): nothing to cancel", what,
			       saga_state_name(in.state));
		else
			errorf("cancel: order %s is past its pivot (shipping is scheduled): it can "
			       "only go forward",
			       what);
		ex = EXIT_FAIL;
		goto out;
	}
	if (rc == SAGA_OK)
		rc = saga_get(app.engine, &in, sid);
	if (rc != SAGA_OK) {
		errorf("cancel: %s", saga_engine_errmsg(app.engine));
		ex = EXIT_FAIL;
		goto out;
	}
	/* Carried out here (this process took the saga: nobody ran it), or
	 * written for the process that runs it: then it is still going forward
	 * until that process has carried the cancel out. */
	int here = in.state == SAGA_COMPENSATING || in.state == SAGA_COMPENSATED;
	rc = drive(app.engine, saga_ended, &sid, (uint64_t)ref.wait_s * 1000u);
	if (rc == SAGA_OK || rc == SAGA_EBUSY)
		rc = saga_get(app.engine, &in, sid);
	if (rc != SAGA_OK) {
		errorf("cancel: %s", saga_engine_errmsg(app.engine));
		ex = EXIT_FAIL;
		goto out;
	}
	ex = cancel_outcome(&app, g, &in, here, what);
out:
	app_close(&app);
	return ex;
}
