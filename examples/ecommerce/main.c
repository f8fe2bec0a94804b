/* `ecommerce`: the e-commerce order saga on libsaga, from the command line.
 *
 *   ecommerce [--data DIR] [--json] [--policies FILE] COMMAND ...
 *
 * Commands: seed, order, run, status, cancel, recover, check, report (see
 * usage() and README.md). Exit codes: 0 success, 1 a business failure or a
 * violation found, 2 bad usage or input (a message says what is wrong and
 * nothing is written).
 *
 * Each command opens the saga store (DIR/saga.db) and closes it before it
 * exits: the engine holds an exclusive lock on the store while it is open.
 * SPDX-License-Identifier: MIT
 */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "app.h"
#include "faults.h"

#ifndef ECOM_POLICIES_DEFAULT
#define ECOM_POLICIES_DEFAULT "policies.json"
#endif

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

#define MAX_ITEMS_ARG 1000

/* ---------------------------------------------------------------------- */
/* Small helpers                                                          */
/* ---------------------------------------------------------------------- */

static const char *prog = "ecommerce";

static void errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void errorf(const char *fmt, ...)
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
static void *grow_array(void *p, size_t *cap, size_t first, size_t size)
{
	size_t n = *cap ? *cap * 2 : first;
	void *np = realloc(p, n * size);
	if (np)
		*cap = n;
	return np;
}

static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(uint64_t ms)
{
	struct timespec ts = { (time_t)(ms / 1000u), (long)(ms % 1000u) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* A number in decimal digits only, no sign, no blank, no other base, in
 * lo..hi (lo >= 0): strtoll would take " -1" or "+1" and strtoull(" -1")
 * gives 2^64-1. */
static int parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
	uint64_t v;
	if (ecom_parse_u64(s, (uint64_t)INT64_MAX, &v) != 0 || (int64_t)v < lo ||
	    (int64_t)v > hi)
		return -1;
	*out = (int64_t)v;
	return 0;
}

/* parse_i64 of the first n bytes of s; more digits than any int64_t has
 * are refused, never cut. */
static int parse_i64_n(const char *s, size_t n, int64_t lo, int64_t hi, int64_t *out)
{
	char buf[24];
	if (n >= sizeof buf)
		return -1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	return parse_i64(buf, lo, hi, out);
}

static int parse_u64(const char *s, uint64_t *out)
{
	return ecom_parse_u64(s, UINT64_MAX, out);
}

static int file_exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

static void print_json(cJSON *j)
{
	char *s = cJSON_Print(j);
	if (s) {
		fputs(s, stdout);
		fputc('\n', stdout);
		free(s);
	}
	cJSON_Delete(j);
}

/* A business key nobody else has: 64 random bits. */
static void new_key(char *buf, size_t size, const char *prefix)
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

typedef struct globals {
	const char *data;
	const char *policies;
	int json;
} globals;

typedef struct args {
	int argc;
	char **argv;
	int i;
	const char *cmd;   /* NULL before the command: errorf already names the program */
} args;

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
static const char *opt_value(args *a, const char *name)
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

static int is_opt(const args *a, const char *name)
{
	const char *arg = a->argv[a->i];
	size_t n = strlen(name);
	return strncmp(arg, name, n) == 0 && (arg[n] == '\0' || arg[n] == '=');
}

/* The value of option `name` as an integer in lo..hi into *out: 0, or -1
 * after a message ("<label> "<value>" is not <what>"). Advances the cursor. */
static int opt_i64(args *a, const char *name, int64_t lo, int64_t hi, int64_t *out,
                   const char *label, const char *what)
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

/* Options allowed after the command too: --data, --json, --policies.
 * Returns 1 if consumed, 0 if not one of them, -1 on error. */
static int global_opt(args *a, globals *g)
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
	return 0;
}

/* Failure-injection flags: --fail, --transient, --latency, --timeout,
 * --crash. 1 consumed, 0 not one, -1 bad spec (message printed). */
static int fault_opt(args *a, ecom_faults *f, int with_timeout)
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
			if (k == 4) {  /* say which points exist, one a line */
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
static int prescan_seed(const args *a, uint64_t *seed)
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

/* ---------------------------------------------------------------------- */
/* Services and engine                                                    */
/* ---------------------------------------------------------------------- */

static void path_in(char *buf, size_t size, const char *dir, const char *file)
{
	snprintf(buf, size, "%s/%s", dir, file);
}

/* 1 when the directory was seeded (holds order.db). */
static int data_present(const char *dir)
{
	char p[4200];
	path_in(p, sizeof p, dir, "order.db");
	return file_exists(p);
}

/* The first service file missing from a seeded directory, or NULL: opening
 * a service creates its file, and a command must not do that. */
static const char *data_missing(const char *dir)
{
	static char name[32];
	for (int i = 0; i < ECOM_SERVICE_COUNT; i++) {
		char p[4200];
		snprintf(name, sizeof name, "%s.db", ecom_service_name(i));
		path_in(p, sizeof p, dir, name);
		if (!file_exists(p))
			return name;
	}
	return NULL;
}

/* 1 when the directory holds a saga store. */
static int store_present(const char *dir)
{
	char p[4200];
	path_in(p, sizeof p, dir, "saga.db");
	return file_exists(p);
}

/* Exit code after checking that `dir` is a seeded data directory (message
 * printed otherwise); nothing is opened. */
static int data_ready(const char *dir, const char *cmd)
{
	if (!data_present(dir)) {
		errorf("%s: no data in %s (run `%s --data %s seed` first)", cmd, dir, prog, dir);
		return EXIT_USAGE;
	}
	const char *missing = data_missing(dir);
	if (missing) {
		errorf("%s: %s is not a complete data directory: %s is missing", cmd, dir, missing);
		return EXIT_USAGE;
	}
	return EXIT_OK;
}

static void app_close(ecom_app *app)
{
	saga_engine_close(app->engine);
	app->engine = NULL;
	notification_close(app->notification);
	shipping_close(app->shipping);
	payment_close(app->payment);
	inventory_close(app->inventory);
	order_close(app->order);
	app->notification = NULL;
	app->shipping = NULL;
	app->payment = NULL;
	app->inventory = NULL;
	app->order = NULL;
	ecom_faults_free(app->faults);
	app->faults = NULL;
}

/* Opens the five services of a seeded directory. Exit code on failure. */
static int app_open_services(ecom_app *app, const char *cmd)
{
	int ex = data_ready(app->dir, cmd);
	if (ex != EXIT_OK)
		return ex;
	char msg[ECOM_MSG_MAX] = "";
	int rc = order_open(&app->order, app->dir, msg, sizeof msg);
	if (rc == 0)
		rc = inventory_open(&app->inventory, app->dir, msg, sizeof msg);
	if (rc == 0)
		rc = payment_open(&app->payment, app->dir, msg, sizeof msg);
	if (rc == 0)
		rc = shipping_open(&app->shipping, app->dir, msg, sizeof msg);
	if (rc == 0)
		rc = notification_open(&app->notification, app->dir, msg, sizeof msg);
	if (rc != 0) {
		errorf("%s: cannot open the services in %s: %s", cmd, app->dir,
		       msg[0] ? msg : saga_strerror(rc));
		return EXIT_FAIL;
	}
	if (app->faults) {
		order_set_faults(app->order, app->faults);
		inventory_set_faults(app->inventory, app->faults);
		payment_set_faults(app->payment, app->faults);
		shipping_set_faults(app->shipping, app->faults);
		notification_set_faults(app->notification, app->faults);
	}
	return EXIT_OK;
}

static void engine_log(saga_log_level level, const char *msg, void *user)
{
	(void)user;
	if (level >= SAGA_LOG_WARN)
		fprintf(stderr, "%s: engine: %s\n", prog, msg);
}

typedef struct engine_cfg {
	unsigned int workers;
	unsigned int max_in_flight;
	uint64_t seed;
	int with_saga;        /* 1: register the definition with its policies;
	                         2: without them (queries that only need step names) */
} engine_cfg;

static const char *policies_path(const globals *g, const char *dir, char *buf, size_t size)
{
	if (g->policies)
		return g->policies;
	const char *env = getenv("ECOMMERCE_POLICIES");
	if (env && *env)
		return env;
	path_in(buf, size, dir, "policies.json");
	if (file_exists(buf))
		return buf;
	return ECOM_POLICIES_DEFAULT;
}

/* Opens STORE_DIR/saga.db into *out; with cfg->with_saga, registers the
 * "order" saga with the policy file (found from app->dir). Exit code on
 * failure (EXIT_USAGE for a bad policy file). */
static int open_engine(saga_engine **out, ecom_app *app, const char *store_dir,
                       const globals *g, const engine_cfg *cfg, const char *cmd)
{
	char path[4200];
	path_in(path, sizeof path, store_dir, "saga.db");
	saga_options o = SAGA_OPTIONS_INIT;
	o.path = path;
	o.workers = cfg->workers;
	o.max_in_flight = cfg->max_in_flight;
	o.seed = cfg->seed;
	o.log = engine_log;
	o.log_level = SAGA_LOG_WARN;
	char err[512] = "";
	int rc = saga_engine_open(out, &o, err, sizeof err);
	if (rc != SAGA_OK) {
		if (rc == SAGA_EBUSY)
			errorf("%s: %s is in use by another process (one ecommerce command at a time)",
			       cmd, path);
		else
			errorf("%s: cannot open %s: %s", cmd, path, err);
		return EXIT_FAIL;
	}
	if (!cfg->with_saga)
		return EXIT_OK;
	saga_definition *def = NULL;
	rc = ecom_saga_definition(&def, app);
	if (rc != SAGA_OK) {
		errorf("%s: cannot build the saga definition: %s", cmd, saga_strerror(rc));
		return EXIT_FAIL;
	}
	char pbuf[4200];
	const char *pp = policies_path(g, app->dir, pbuf, sizeof pbuf);
	saga_config_error ce;
	memset(&ce, 0, sizeof ce);
	rc = cfg->with_saga == 1 ? saga_policies_apply_file(*out, def, pp, &ce) : SAGA_OK;
	if (rc != SAGA_OK) {
		if (rc == SAGA_EIO)
			errorf("%s: cannot read the policy file %s (give one with --policies FILE)",
			       cmd, pp);
		else
			errorf("%s: policy file %s:%d:%d: %s%s%s", cmd, pp, ce.line, ce.column,
			       ce.key, ce.key[0] ? ": " : "", ce.message);
		saga_definition_free(def);
		return EXIT_USAGE;
	}
	rc = saga_engine_register(*out, def);
	saga_definition_free(def);
	if (rc != SAGA_OK) {
		errorf("%s: cannot register the saga: %s", cmd, saga_engine_errmsg(*out));
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

static int app_open_engine(ecom_app *app, const globals *g, const engine_cfg *cfg,
                           const char *cmd)
{
	return open_engine(&app->engine, app, app->dir, g, cfg, cmd);
}

/* Removes the files of a scratch directory, then the directory. */
static void remove_scratch(const char *dir)
{
	DIR *d = opendir(dir);
	if (d) {
		struct dirent *de;
		while ((de = readdir(d)) != NULL) {
			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			char p[4200 + 256];
			path_in(p, sizeof p, dir, de->d_name);
			unlink(p);
		}
		closedir(d);
	}
	rmdir(dir);
}

/* The policy file is checked before anything in the data directory is
 * opened for writing: applying it needs an engine (its breakers live on
 * one), and opening the real store would create it, or with workers start
 * resuming sagas. So it is applied to a scratch engine in a private
 * temporary directory, removed after. Exit code (EXIT_USAGE, with the
 * message, for a bad file). */
static int check_policies(ecom_app *app, const globals *g, const char *cmd)
{
	const char *tmp = getenv("TMPDIR");
	if (!tmp || !*tmp)
		tmp = "/tmp";
	char scratch[4200];
	int n = snprintf(scratch, sizeof scratch, "%s/ecommerce-policies.XXXXXX", tmp);
	if (n < 0 || (size_t)n >= sizeof scratch || !mkdtemp(scratch)) {
		errorf("%s: cannot check the policy file: no scratch directory in %s: %s", cmd, tmp,
		       n < 0 || (size_t)n >= sizeof scratch ? "path too long" : strerror(errno));
		return EXIT_FAIL;
	}
	saga_engine *e = NULL;
	engine_cfg ec = { 0, 0, 0, 1 };
	int ex = open_engine(&e, app, scratch, g, &ec, cmd);
	saga_engine_close(e);
	remove_scratch(scratch);
	return ex;
}

static int is_final(saga_state s)
{
	return s == SAGA_COMPLETED || s == SAGA_COMPENSATED || s == SAGA_STUCK;
}

static int is_unfinished(saga_state s)
{
	return s == SAGA_RUNNING || s == SAGA_WAITING || s == SAGA_COMPENSATING;
}

/* Caller-driven execution in real time: runs what is due, then sleeps until
 * the next timer, until done(user) says so or wait_ms passes. Returns 0,
 * SAGA_EBUSY on the time limit, or an engine error. */
static int drive(saga_engine *e, int (*done)(saga_engine *, void *), void *user,
                 uint64_t wait_ms)
{
	uint64_t end = wall_ms() + wait_ms;
	for (;;) {
		int rc = saga_run_until_idle(e);
		if (rc != SAGA_OK)
			return rc;
		int d = done(e, user);
		if (d < 0)
			return d;
		if (d)
			return SAGA_OK;
		uint64_t now = wall_ms();
		if (now >= end)
			return SAGA_EBUSY;
		uint64_t due = 0;
		if ((rc = saga_next_due(e, &due)) != SAGA_OK)
			return rc;
		uint64_t until = due && due < end ? due : end;
		uint64_t nap = until > now ? until - now : 0;
		if (nap > 200)
			nap = 200;
		if (!due && nap < 20)
			nap = 20;
		if (nap)
			sleep_ms(nap);
	}
}

/* ---------------------------------------------------------------------- */
/* Order and saga presentation                                            */
/* ---------------------------------------------------------------------- */

static void money(char *buf, size_t size, int64_t cents)
{
	const char *sign = cents < 0 ? "-" : "";
	uint64_t v = cents < 0 ? (uint64_t)(-(cents + 1)) + 1u : (uint64_t)cents;
	snprintf(buf, size, "%s%" PRIu64 ".%02" PRIu64, sign, v / 100u, v % 100u);
}

/* The order that belongs to a saga's business key; 0 if there is none. */
static int64_t order_of_key(ecom_app *app, const char *key)
{
	int64_t id = 0;
	if (key && *key && order_find_by_ref(app->order, key, &id) == 0)
		return id;
	return 0;
}

static cJSON *order_json(ecom_app *app, int64_t order_id)
{
	ecom_order_info oi;
	if (order_id <= 0 || order_get(app->order, order_id, &oi) != 0)
		return cJSON_CreateNull();
	cJSON *j = cJSON_CreateObject();
	cJSON_AddNumberToObject(j, "id", (double)oi.id);
	cJSON_AddStringToObject(j, "ref", oi.ref);
	cJSON_AddStringToObject(j, "customer", oi.customer);
	cJSON_AddStringToObject(j, "status", ecom_order_status_name(oi.status));
	cJSON_AddStringToObject(j, "reason", oi.reason);
	cJSON_AddNumberToObject(j, "total", (double)oi.total);
	cJSON_AddStringToObject(j, "currency", oi.currency);
	cJSON_AddNumberToObject(j, "items", (double)oi.nitems);
	cJSON_AddNumberToObject(j, "quantity", (double)oi.quantity);
	cJSON_AddStringToObject(j, "address", oi.address);
	cJSON_AddStringToObject(j, "payment", ecom_payment_method_name(oi.payment)
	                                      ? ecom_payment_method_name(oi.payment) : "?");
	cJSON_AddStringToObject(j, "shipping", ecom_shipping_method_name(oi.shipping)
	                                       ? ecom_shipping_method_name(oi.shipping) : "?");
	ecom_shipment sh;
	if (shipping_get(app->shipping, oi.id, &sh) == 0) {
		cJSON *s = cJSON_AddObjectToObject(j, "shipment");
		cJSON_AddStringToObject(s, "carrier", sh.carrier);
		cJSON_AddStringToObject(s, "tracking", sh.tracking);
		cJSON_AddStringToObject(s, "delivery_date", sh.delivery_date);
		cJSON_AddStringToObject(s, "status", ecom_shipment_status_name(sh.status)
		                                     ? ecom_shipment_status_name(sh.status) : "?");
	}
	return j;
}

static void print_order_text(ecom_app *app, int64_t order_id)
{
	ecom_order_info oi;
	if (order_id <= 0 || order_get(app->order, order_id, &oi) != 0) {
		printf("order:   none (the saga ended before the order was created)\n");
		return;
	}
	char total[32];
	money(total, sizeof total, oi.total);
	printf("order:   %" PRId64 " %s (customer %s, %zu item%s, %" PRId64 " unit%s, %s %s, %s, %s)\n",
	       oi.id, ecom_order_status_name(oi.status), oi.customer, oi.nitems,
	       oi.nitems == 1 ? "" : "s", oi.quantity, oi.quantity == 1 ? "" : "s", total,
	       oi.currency, ecom_payment_method_name(oi.payment) ? ecom_payment_method_name(oi.payment) : "?",
	       ecom_shipping_method_name(oi.shipping) ? ecom_shipping_method_name(oi.shipping) : "?");
	if (oi.reason[0])
		printf("reason:  %s\n", oi.reason);
	ecom_shipment sh;
	if (shipping_get(app->shipping, oi.id, &sh) == 0)
		printf("ship:    %s %s, delivery %s (%s)\n", sh.carrier, sh.tracking, sh.delivery_date,
		       ecom_shipment_status_name(sh.status) ? ecom_shipment_status_name(sh.status) : "?");
}

static cJSON *saga_json(const saga_instance_info *in)
{
	cJSON *j = cJSON_CreateObject();
	cJSON_AddNumberToObject(j, "id", (double)in->id);
	cJSON_AddStringToObject(j, "key", in->business_key);
	cJSON_AddStringToObject(j, "state", saga_state_name(in->state));
	cJSON_AddStringToObject(j, "reason", saga_reason_name(in->reason));
	cJSON_AddStringToObject(j, "error", in->error);
	cJSON_AddNumberToObject(j, "step", in->step);
	cJSON_AddBoolToObject(j, "pivot_done", in->pivot_done);
	return j;
}

static void print_saga_text(const saga_instance_info *in)
{
	printf("saga:    %" PRId64 " %s", in->id, saga_state_name(in->state));
	if (in->reason != SAGA_REASON_NONE)
		printf(" (%s)", saga_reason_name(in->reason));
	printf(", key %s\n", in->business_key);
	if (in->error[0] && in->state != SAGA_COMPLETED)
		printf("error:   %s\n", in->error);
}

/* ---------------------------------------------------------------------- */
/* seed                                                                   */
/* ---------------------------------------------------------------------- */

static int cmd_seed(args *a, globals *g)
{
	int64_t products = 100, customers = 100;
	uint64_t seed = 1;
	while (a->i < a->argc) {
		int gr = global_opt(a, g);
		if (gr < 0)
			return EXIT_USAGE;
		if (gr)
			continue;
		const char *v;
		if (is_opt(a, "--products")) {
			if (opt_i64(a, "--products", 1, 100000, &products, "seed: --products:",
			            "a number in 1..100000") != 0)
				return EXIT_USAGE;
		} else if (is_opt(a, "--customers")) {
			if (opt_i64(a, "--customers", 1, 100000, &customers, "seed: --customers:",
			            "a number in 1..100000") != 0)
				return EXIT_USAGE;
		} else if (is_opt(a, "--seed")) {
			if (!(v = opt_value(a, "--seed")))
				return EXIT_USAGE;
			if (parse_u64(v, &seed) != 0) {
				errorf("seed: --seed: \"%s\" is not a number", v);
				return EXIT_USAGE;
			}
		} else {
			errorf("seed: unknown option \"%s\"", a->argv[a->i]);
			return EXIT_USAGE;
		}
	}
	if (data_present(g->data)) {
		errorf("seed: %s is already seeded (use another --data directory)", g->data);
		return EXIT_USAGE;
	}
	char msg[ECOM_MSG_MAX];
	int rc = ecom_seed(g->data, seed, (int)products, (int)customers, msg, sizeof msg);
	if (rc != 0) {
		errorf("%s", msg[0] ? msg : saga_strerror(rc));
		return rc == SAGA_EEXISTS ? EXIT_USAGE : EXIT_FAIL;
	}
	if (g->json) {
		cJSON *j = cJSON_CreateObject();
		cJSON_AddStringToObject(j, "data", g->data);
		cJSON_AddNumberToObject(j, "products", (double)products);
		cJSON_AddNumberToObject(j, "customers", (double)customers);
		cJSON_AddNumberToObject(j, "seed", (double)seed);
		print_json(j);
	} else {
		printf("seeded %s: %" PRId64 " products, %" PRId64 " customers (seed %" PRIu64 ")\n",
		       g->data, products, customers, seed);
	}
	return EXIT_OK;
}

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
	int has_price;      /* 0: the catalogue's */
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
			errorf("order: --item \"%s\": the price \"%s\" is not a whole number of cents "
			       "(digits only)", s, at + 1);
			return -1;
		}
	}
	if (parse_i64_n(qty, qlen, 0, INT64_MAX, &out->quantity) != 0) {
		errorf("order: --item \"%s\": the quantity \"%.*s\" is not a whole number "
		       "(digits only)", s, (int)qlen, qty);
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

static int print_outcome(ecom_app *app, globals *g, const saga_instance_info *in, int created,
                         const char *what)
{
	int64_t oid = order_of_key(app, in->business_key);
	if (g->json) {
		cJSON *j = cJSON_CreateObject();
		cJSON_AddStringToObject(j, "key", in->business_key);
		cJSON_AddBoolToObject(j, "created", created);
		cJSON_AddItemToObject(j, "saga", saga_json(in));
		cJSON_AddItemToObject(j, "order", order_json(app, oid));
		print_json(j);
	} else {
		if (what)
			printf("%s\n", what);
		print_saga_text(in);
		print_order_text(app, oid);
	}
	return in->state == SAGA_COMPLETED ? EXIT_OK : EXIT_FAIL;
}

static int cmd_order(args *a, globals *g)
{
	const char *customer = NULL, *key = NULL, *payment = "CREDIT_CARD", *shipping = "STANDARD";
	const char *address = "1 Main Street, Springfield", *channel = "email";
	const char *currency = NULL;
	int64_t total_arg = -1;
	int has_total = 0;
	int64_t wait_s = 30;
	item_arg *items = calloc(MAX_ITEMS_ARG, sizeof *items);
	size_t nitems = 0;
	ecom_faults *faults = NULL;
	ecom_app app;
	memset(&app, 0, sizeof app);
	int ex = EXIT_USAGE;
	uint64_t seed = 1;
	if (prescan_seed(a, &seed) != 0) {
		free(items);
		return EXIT_USAGE;
	}
	if (!items || ecom_faults_new(&faults, seed) != 0) {
		errorf("order: out of memory");
		free(items);
		return EXIT_FAIL;
	}
	app.faults = faults;

	while (a->i < a->argc) {
		int r = global_opt(a, g);
		if (r == 0)
			r = fault_opt(a, faults, 1);
		if (r < 0)
			goto out;
		if (r)
			continue;
		const char *v;
#define STR_OPT(flag, var) \
		if (is_opt(a, flag)) { if (!(v = opt_value(a, flag))) goto out; var = v; continue; }
		STR_OPT("--customer", customer)
		STR_OPT("--key", key)
		STR_OPT("--payment", payment)
		STR_OPT("--shipping", shipping)
		STR_OPT("--address", address)
		STR_OPT("--channel", channel)
		STR_OPT("--currency", currency)
#undef STR_OPT
		if (is_opt(a, "--item")) {
			if (!(v = opt_value(a, "--item")))
				goto out;
			if (nitems == MAX_ITEMS_ARG) {
				errorf("order: too many --item (at most %d lines per order)", ECOM_MAX_ITEMS);
				goto out;
			}
			if (parse_item(v, &items[nitems]) != 0)
				goto out;
			nitems++;
		} else if (is_opt(a, "--total")) {
			if (opt_i64(a, "--total", 0, INT64_MAX, &total_arg,
			            "order: --total", "a whole number of cents (digits only)") != 0)
				goto out;
			has_total = 1;
		} else if (is_opt(a, "--wait")) {
			if (opt_i64(a, "--wait", 0, 86400, &wait_s, "order: --wait",
			            "a number of seconds (0..86400)") != 0)
				goto out;
		} else if (is_opt(a, "--seed")) {
			if (!opt_value(a, "--seed"))  /* read before the loop */
				goto out;
		} else {
			errorf("order: unknown option \"%s\"", a->argv[a->i]);
			goto out;
		}
	}

	/* Everything below is checked before anything is written. */
	if (!customer || !*customer) {
		errorf("order: --customer ID is required");
		goto out;
	}
	if (nitems == 0) {
		errorf("order: at least one --item SKU:QTY is required");
		goto out;
	}
	char pname[64], sname[64];
	int pay = method_name(pname, sizeof pname, payment) == 0
	          ? ecom_payment_method_parse(pname) : -1;
	int ship = method_name(sname, sizeof sname, shipping) == 0
	           ? ecom_shipping_method_parse(sname) : -1;
	if (pay < 0) {
		errorf("order: unknown payment method \"%s\" (expected CREDIT_CARD, DEBIT_CARD, "
		       "PAYPAL or BANK_TRANSFER)", payment);
		goto out;
	}
	if (ship < 0) {
		errorf("order: unknown shipping method \"%s\" (expected STANDARD, EXPRESS, "
		       "OVERNIGHT, TWO_DAY or INTERNATIONAL)", shipping);
		goto out;
	}
	if (ecom_channel_parse(channel) < 0) {
		errorf("order: unknown channel \"%s\" (expected email, sms or push)", channel);
		goto out;
	}
	char keybuf[64];
	if (key && (!*key || strlen(key) > 200)) {
		errorf("order: --key must have 1 to 200 characters");
		goto out;
	}
	if (!key) {
		new_key(keybuf, sizeof keybuf, "ord");
		key = keybuf;
	}
	char msg[ECOM_MSG_MAX];
	if (ecom_faults_from_env(faults, msg, sizeof msg) != 0) {
		errorf("order: %s", msg);
		goto out;
	}
	snprintf(app.dir, sizeof app.dir, "%s", g->data);
	if ((ex = data_ready(app.dir, "order")) != EXIT_OK ||
	    (ex = check_policies(&app, g, "order")) != EXIT_OK ||
	    (ex = app_open_services(&app, "order")) != EXIT_OK)
		goto out;
	ex = EXIT_USAGE;

	ecom_item *lines = calloc(nitems, sizeof *lines);
	if (!lines) {
		errorf("order: out of memory");
		ex = EXIT_FAIL;
		goto out;
	}
	int64_t total = 0;
	int overflow = 0;
	for (size_t i = 0; i < nitems; i++) {
		ecom_product p;
		int rc = inventory_get_product(app.inventory, items[i].sku, &p);
		if (rc == SAGA_ENOTFOUND) {
			errorf("order: unknown product \"%s\"", items[i].sku);
			free(lines);
			goto out;
		}
		if (rc != 0) {
			errorf("order: reading product %s: %s", items[i].sku, saga_strerror(rc));
			free(lines);
			ex = EXIT_FAIL;
			goto out;
		}
		lines[i].sku = items[i].sku;
		lines[i].quantity = items[i].quantity;
		lines[i].unit_price = items[i].has_price ? items[i].price : p.price;
		int64_t line;
		if (__builtin_mul_overflow(lines[i].quantity, lines[i].unit_price, &line) ||
		    __builtin_add_overflow(total, line, &total))
			overflow = 1;
	}
	ecom_order order = {
		.ref = key, .customer = customer, .items = lines, .nitems = nitems,
		.total = has_total ? total_arg : overflow ? INT64_MAX : total,
		.currency = currency, .address = address, .payment = pay, .shipping = ship,
	};
	int known = order_customer_exists(app.order, customer);
	if (known < 0) {
		errorf("order: reading customers: %s", saga_strerror(known));
		free(lines);
		ex = EXIT_FAIL;
		goto out;
	}
	if (ecom_order_validate(&order, known, msg, sizeof msg) != 0 ||
	    inventory_check_items(app.inventory, lines, nitems, msg, sizeof msg) != 0) {
		errorf("order: %s", msg);
		free(lines);
		goto out;
	}
	if (overflow && !has_total) {
		errorf("order: the total overflows");
		free(lines);
		goto out;
	}
	cJSON *input = ecom_order_to_json(&order);
	free(lines);
	if (!input) {
		errorf("order: out of memory");
		ex = EXIT_FAIL;
		goto out;
	}
	cJSON_AddStringToObject(input, "channel", channel);

	engine_cfg ec = { 0, 0, 0, 1 };
	if ((ex = app_open_engine(&app, g, &ec, "order")) != EXIT_OK) {
		cJSON_Delete(input);
		goto out;
	}
	int64_t id = 0;
	int created = 0;
	int rc = saga_start(app.engine, &id, &created, ECOM_SAGA_NAME, key, input);
	cJSON_Delete(input);
	if (rc != SAGA_OK) {
		errorf("order: cannot start the saga: %s", saga_engine_errmsg(app.engine));
		ex = EXIT_FAIL;
		goto out;
	}
	wait_one w = { id, wait_s == 0 };
	rc = drive(app.engine, one_done, &w, (uint64_t)wait_s * 1000u);
	if (rc != SAGA_OK && rc != SAGA_EBUSY) {
		errorf("order: running the saga: %s", saga_engine_errmsg(app.engine));
		ex = EXIT_FAIL;
		goto out;
	}
	saga_instance_info in;
	if ((rc = saga_get(app.engine, &in, id)) != SAGA_OK) {
		errorf("order: %s", saga_engine_errmsg(app.engine));
		ex = EXIT_FAIL;
		goto out;
	}
	char what[400];
	snprintf(what, sizeof what, created ? "order %s: %s"
	                                    : "order %s already exists (same key): %s",
	         key, is_final(in.state) ? "done" : "still in progress (see `status`, `recover`)");
	ex = print_outcome(&app, g, &in, created, what);
out:
	app_close(&app);
	free(items);
	return ex;
}

/* ---------------------------------------------------------------------- */
/* run                                                                    */
/* ---------------------------------------------------------------------- */

typedef struct fin_event {
	int64_t id;
	saga_state state;
	double at;
} fin_event;

typedef struct run_state {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	fin_event *q;
	size_t qlen, qcap;
	int oom;
} run_state;

static void run_listener(const saga_event *ev, void *user)
{
	run_state *rs = user;
	if (ev->type != SAGA_EVENT_STATE || !is_final(ev->state))
		return;
	double now = mono_s();
	pthread_mutex_lock(&rs->mu);
	if (rs->qlen == rs->qcap) {
		fin_event *nq = grow_array(rs->q, &rs->qcap, 256, sizeof *nq);
		if (!nq) {
			rs->oom = 1;
			pthread_mutex_unlock(&rs->mu);
			return;
		}
		rs->q = nq;
	}
	rs->q[rs->qlen++] = (fin_event){ ev->instance, ev->state, now };
	pthread_cond_signal(&rs->cv);
	pthread_mutex_unlock(&rs->mu);
}

/* id -> index of the order in the run (open addressing). */
typedef struct idmap {
	int64_t *keys;
	size_t *vals;
	size_t mask;
} idmap;

static int idmap_init(idmap *m, size_t n)
{
	size_t cap = 16;
	while (cap < n * 2)
		cap *= 2;
	m->keys = calloc(cap, sizeof *m->keys);
	m->vals = calloc(cap, sizeof *m->vals);
	m->mask = cap - 1;
	return m->keys && m->vals ? 0 : -1;
}

static void idmap_put(idmap *m, int64_t id, size_t v)
{
	size_t h = (size_t)((uint64_t)id * 0x9e3779b97f4a7c15ull) & m->mask;
	while (m->keys[h] && m->keys[h] != id)
		h = (h + 1) & m->mask;
	m->keys[h] = id;
	m->vals[h] = v;
}

static int idmap_get(const idmap *m, int64_t id, size_t *v)
{
	size_t h = (size_t)((uint64_t)id * 0x9e3779b97f4a7c15ull) & m->mask;
	while (m->keys[h]) {
		if (m->keys[h] == id) {
			*v = m->vals[h];
			return 1;
		}
		h = (h + 1) & m->mask;
	}
	return 0;
}

typedef struct catalogue {
	ecom_product *products;
	size_t nproducts, cap_products;
	ecom_customer *customers;
	size_t ncustomers, cap_customers;
} catalogue;

static int cat_product(const ecom_product *p, void *user)
{
	catalogue *c = user;
	if (c->nproducts == c->cap_products) {
		ecom_product *np = grow_array(c->products, &c->cap_products, 64, sizeof *np);
		if (!np)
			return 1;
		c->products = np;
	}
	c->products[c->nproducts++] = *p;
	return 0;
}

static int cat_customer(const ecom_customer *cu, void *user)
{
	catalogue *c = user;
	if (c->ncustomers == c->cap_customers) {
		ecom_customer *nc = grow_array(c->customers, &c->cap_customers, 64, sizeof *nc);
		if (!nc)
			return 1;
		c->customers = nc;
	}
	c->customers[c->ncustomers++] = *cu;
	return 0;
}

static const char *const addresses[] = {
	"1 Main Street, Springfield", "22 Acacia Avenue, Leeds", "5 Rue de Rivoli, Paris",
	"742 Evergreen Terrace, Springfield", "10 Downing Street, London",
	"221B Baker Street, London", "1600 Amphitheatre Pkwy, Mountain View",
	"4 Privet Drive, Little Whinging",
};

/* A random order that passes the pre-checks. Most are meant to go through:
 * nine lines in ten come from products with stock to spare and nine orders
 * in ten from customers with a normal credit limit; the rest (and the stock
 * and credit that earlier orders use up) fail in the services: out of stock,
 * credit limit exceeded. Input JSON owned by the caller. */
static const ecom_product *pick_product(const catalogue *c, uint64_t *rng)
{
	int want_stock = ecom_rand_unit(rng) < 0.9;
	for (int tries = 0; tries < 32; tries++) {
		const ecom_product *p = &c->products[ecom_rand_range(rng, 0, (int64_t)c->nproducts - 1)];
		if (!want_stock || p->stock - p->reserved > 10)
			return p;
	}
	return &c->products[ecom_rand_range(rng, 0, (int64_t)c->nproducts - 1)];
}

static const ecom_customer *pick_customer(const catalogue *c, uint64_t *rng)
{
	int want_credit = ecom_rand_unit(rng) < 0.9;
	for (int tries = 0; tries < 32; tries++) {
		const ecom_customer *cu =
			&c->customers[ecom_rand_range(rng, 0, (int64_t)c->ncustomers - 1)];
		if (!want_credit || cu->credit_limit >= 100000)
			return cu;
	}
	return &c->customers[ecom_rand_range(rng, 0, (int64_t)c->ncustomers - 1)];
}

static cJSON *gen_order(const catalogue *c, uint64_t *rng, const char *key)
{
	ecom_item items[3];
	size_t n = (size_t)ecom_rand_range(rng, 1, 3);
	int64_t total = 0;
	for (size_t i = 0; i < n; i++) {
		const ecom_product *p;
		int dup, tries = 0;
		do {
			p = pick_product(c, rng);
			dup = 0;
			for (size_t k = 0; k < i; k++)
				if (strcmp(items[k].sku, p->sku) == 0)
					dup = 1;
		} while (dup && ++tries < 16);
		if (dup) {  /* a tiny catalogue: fewer lines */
			n = i;
			break;
		}
		items[i].sku = p->sku;
		items[i].quantity = ecom_rand_range(rng, 1, 2);
		items[i].unit_price = p->price;
		total += items[i].quantity * items[i].unit_price;
	}
	static const char *const channels[] = { "email", "sms", "push" };
	ecom_order o = {
		.ref = key,
		.customer = pick_customer(c, rng)->id,
		.items = items, .nitems = n, .total = total, .currency = "USD",
		.address = addresses[ecom_rand_range(rng, 0,
		                     (int64_t)(sizeof addresses / sizeof addresses[0]) - 1)],
		.payment = (int)ecom_rand_range(rng, 0, ECOM_PAY_COUNT - 1),
		.shipping = (int)ecom_rand_range(rng, 0, ECOM_SHIP_COUNT - 1),
	};
	cJSON *j = ecom_order_to_json(&o);
	if (j)
		cJSON_AddStringToObject(j, "channel", channels[ecom_rand_range(rng, 0, 2)]);
	return j;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double percentile(const double *sorted, size_t n, double q)
{
	if (n == 0)
		return 0;
	size_t k = (size_t)(q * (double)n + 0.999999);
	if (k < 1)
		k = 1;
	if (k > n)
		k = n;
	return sorted[k - 1];
}

static void progress(size_t done, size_t n, size_t inflight, double elapsed)
{
	int width = 30;
	int fill = n ? (int)((double)done / (double)n * width) : width;
	char bar[64];
	for (int i = 0; i < width; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[width] = '\0';
	fprintf(stderr, "\r[%s] %zu/%zu done, %zu in flight, %.1f orders/s ", bar, done, n,
	        inflight, elapsed > 0 ? (double)done / elapsed : 0.0);
	fflush(stderr);
}

static int cmd_run(args *a, globals *g)
{
	int64_t norders = 100, conc = 4, stall_s = 60;
	uint64_t seed = 1;
	ecom_faults *faults = NULL;
	ecom_app app;
	memset(&app, 0, sizeof app);
	int ex = EXIT_USAGE;
	/* The seed is read first so that the fault generator starts from it. */
	if (prescan_seed(a, &seed) != 0)
		return EXIT_USAGE;
	if (ecom_faults_new(&faults, seed ^ 0x6661756c7473ull) != 0) {
		errorf("run: out of memory");
		return EXIT_FAIL;
	}
	app.faults = faults;
	while (a->i < a->argc) {
		int r = global_opt(a, g);
		if (r == 0)
			r = fault_opt(a, faults, 1);
		if (r < 0)
			goto out;
		if (r)
			continue;
		if (is_opt(a, "--orders")) {
			if (opt_i64(a, "--orders", 1, 1000000, &norders, "run: --orders",
			            "a number in 1..1000000") != 0)
				goto out;
		} else if (is_opt(a, "--concurrency")) {
			if (opt_i64(a, "--concurrency", 1, 256, &conc, "run: --concurrency",
			            "a number in 1..256") != 0)
				goto out;
		} else if (is_opt(a, "--wait")) {
			if (opt_i64(a, "--wait", 1, 86400, &stall_s, "run: --wait",
			            "a number of seconds (1..86400)") != 0)
				goto out;
		} else if (is_opt(a, "--seed")) {
			if (!opt_value(a, "--seed"))
				goto out;
		} else {
			errorf("run: unknown option \"%s\"", a->argv[a->i]);
			goto out;
		}
	}
	char msg[ECOM_MSG_MAX];
	if (ecom_faults_from_env(faults, msg, sizeof msg) != 0) {
		errorf("run: %s", msg);
		goto out;
	}
	snprintf(app.dir, sizeof app.dir, "%s", g->data);
	if ((ex = data_ready(app.dir, "run")) != EXIT_OK ||
	    (ex = check_policies(&app, g, "run")) != EXIT_OK ||
	    (ex = app_open_services(&app, "run")) != EXIT_OK)
		goto out;

	catalogue cat;
	memset(&cat, 0, sizeof cat);
	if (inventory_list_products(app.inventory, cat_product, &cat) != 0 ||
	    order_list_customers(app.order, cat_customer, &cat) != 0 ||
	    cat.nproducts == 0 || cat.ncustomers == 0) {
		errorf("run: %s has no products or customers", g->data);
		free(cat.products);
		free(cat.customers);
		ex = EXIT_USAGE;
		goto out;
	}

	size_t n = (size_t)norders;
	int64_t *ids = calloc(n, sizeof *ids);
	double *t0 = calloc(n, sizeof *t0);
	double *lat = calloc(n, sizeof *lat);
	saga_state *fin = calloc(n, sizeof *fin);
	unsigned char *done = calloc(n, 1);
	idmap map = { 0 };
	run_state rs;
	memset(&rs, 0, sizeof rs);
	pthread_mutex_init(&rs.mu, NULL);
	pthread_cond_init(&rs.cv, NULL);
	int show = !g->json && isatty(2);
	size_t started = 0, finished = 0, inflight = 0, old_events = 0;
	double t_start = 0, t_end = 0;
	if (!ids || !t0 || !lat || !fin || !done || idmap_init(&map, n) != 0) {
		errorf("run: out of memory");
		ex = EXIT_FAIL;
		goto run_out;
	}

	engine_cfg ec = { (unsigned)conc, (unsigned)conc, seed, 1 };
	if ((ex = app_open_engine(&app, g, &ec, "run")) != EXIT_OK)
		goto run_out;
	if (saga_engine_add_listener(app.engine, run_listener, &rs) != SAGA_OK) {
		errorf("run: %s", saga_engine_errmsg(app.engine));
		ex = EXIT_FAIL;
		goto run_out;
	}
	char prefix[40];
	new_key(prefix, sizeof prefix, "run");
	uint64_t rng = seed;
	t_start = mono_s();
	double last_progress = 0, last_change = t_start;
	while (finished < n) {
		while (started < n && inflight < (size_t)conc) {
			char key[96];
			snprintf(key, sizeof key, "%s-%06zu", prefix, started + 1);
			cJSON *input = gen_order(&cat, &rng, key);
			if (!input) {
				errorf("run: out of memory");
				ex = EXIT_FAIL;
				goto run_out;
			}
			int64_t id = 0;
			t0[started] = mono_s();
			/* Register the id before a worker can finish it: the listener only
			 * queues, the id is matched here. */
			int rc = saga_start(app.engine, &id, NULL, ECOM_SAGA_NAME, key, input);
			cJSON_Delete(input);
			if (rc != SAGA_OK) {
				errorf("run: starting order %zu: %s", started + 1,
				       saga_engine_errmsg(app.engine));
				ex = EXIT_FAIL;
				goto run_out;
			}
			ids[started] = id;
			idmap_put(&map, id, started);
			started++;
			inflight++;
		}
		pthread_mutex_lock(&rs.mu);
		if (rs.qlen == 0) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 100 * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&rs.cv, &rs.mu, &ts);
		}
		fin_event *q = rs.q;
		size_t qlen = rs.qlen;
		rs.q = NULL;
		rs.qlen = rs.qcap = 0;
		int oom = rs.oom;
		pthread_mutex_unlock(&rs.mu);
		if (oom) {
			errorf("run: out of memory");
			free(q);
			ex = EXIT_FAIL;
			goto run_out;
		}
		for (size_t k = 0; k < qlen; k++) {
			size_t idx;
			if (!idmap_get(&map, q[k].id, &idx)) {
				old_events++;  /* a saga resumed from an earlier run */
				continue;
			}
			if (done[idx])
				continue;
			done[idx] = 1;
			fin[idx] = q[k].state;
			lat[idx] = (q[k].at - t0[idx]) * 1000.0;
			finished++;
			inflight--;
			last_change = q[k].at;
		}
		free(q);
		double now = mono_s();
		if (show && (now - last_progress > 0.1 || finished == n)) {
			progress(finished, n, inflight, now - t_start);
			last_progress = now;
		}
		if (now - last_change > (double)stall_s) {
			if (show)
				fputc('\n', stderr);
			errorf("run: no order finished in %" PRId64 " s; %zu still in flight "
			       "(stopping; `recover` finishes them)", stall_s, inflight);
			break;
		}
	}
	t_end = mono_s();
	if (show)
		fputc('\n', stderr);

	/* Final states and reasons, from the store. */
	int64_t states[SAGA_STATE_COUNT] = { 0 };
	int64_t reasons[4] = { 0 };
	int64_t unfinished = 0;
	double *sorted = calloc(finished ? finished : 1, sizeof *sorted);
	size_t ns = 0;
	for (size_t i = 0; i < started; i++) {
		saga_instance_info in;
		if (saga_get(app.engine, &in, ids[i]) != SAGA_OK)
			continue;
		states[in.state]++;
		if (in.state == SAGA_COMPENSATED && in.reason >= 0 && in.reason < 4)
			reasons[in.reason]++;
		if (!is_final(in.state))
			unfinished++;
		if (done[i] && sorted)
			sorted[ns++] = lat[i];
	}
	if (sorted)
		qsort(sorted, ns, sizeof *sorted, cmp_double);
	double secs = t_end - t_start;
	double tput = secs > 0 ? (double)finished / secs : 0;
	double p50 = sorted ? percentile(sorted, ns, 0.50) : 0;
	double p95 = sorted ? percentile(sorted, ns, 0.95) : 0;
	double p99 = sorted ? percentile(sorted, ns, 0.99) : 0;
	double pmax = ns && sorted ? sorted[ns - 1] : 0;
	free(sorted);
	if (g->json) {
		cJSON *j = cJSON_CreateObject();
		cJSON_AddNumberToObject(j, "orders", (double)n);
		cJSON_AddNumberToObject(j, "started", (double)started);
		cJSON_AddNumberToObject(j, "finished", (double)finished);
		cJSON_AddNumberToObject(j, "concurrency", (double)conc);
		cJSON_AddNumberToObject(j, "seed", (double)seed);
		cJSON_AddNumberToObject(j, "seconds", secs);
		cJSON_AddNumberToObject(j, "orders_per_second", tput);
		cJSON *st = cJSON_AddObjectToObject(j, "states");
		for (int s = 0; s < SAGA_STATE_COUNT; s++)
			cJSON_AddNumberToObject(st, saga_state_name((saga_state)s), (double)states[s]);
		cJSON *rj = cJSON_AddObjectToObject(j, "compensated_by_reason");
		for (int r = 1; r < 4; r++)
			cJSON_AddNumberToObject(rj, saga_reason_name((saga_reason)r), (double)reasons[r]);
		cJSON *lj = cJSON_AddObjectToObject(j, "latency_ms");
		cJSON_AddNumberToObject(lj, "p50", p50);
		cJSON_AddNumberToObject(lj, "p95", p95);
		cJSON_AddNumberToObject(lj, "p99", p99);
		cJSON_AddNumberToObject(lj, "max", pmax);
		cJSON *fj = cJSON_AddObjectToObject(j, "faults");
		for (int s = 0; s < ECOM_SERVICE_COUNT; s++) {
			ecom_fault_counts fc;
			ecom_faults_counts(faults, s, &fc);
			cJSON *o = cJSON_AddObjectToObject(fj, ecom_service_name(s));
			cJSON_AddNumberToObject(o, "calls", (double)fc.calls);
			cJSON_AddNumberToObject(o, "failures", (double)fc.failures);
			cJSON_AddNumberToObject(o, "transients", (double)fc.transients);
			cJSON_AddNumberToObject(o, "timeouts", (double)fc.timeouts);
		}
		cJSON_AddNumberToObject(j, "resumed_from_earlier_runs", (double)old_events);
		print_json(j);
	} else {
		printf("orders:      %zu of %zu finished in %.2f s, concurrency %" PRId64 ", seed %" PRIu64
		       "\n", finished, n, secs, conc, seed);
		printf("throughput:  %.1f orders/s\n", tput);
		printf("latency:     p50 %.1f ms, p95 %.1f ms, p99 %.1f ms, max %.1f ms\n", p50, p95,
		       p99, pmax);
		printf("outcomes:    COMPLETED %" PRId64 ", COMPENSATED %" PRId64
		       " (failure %" PRId64 ", timeout %" PRId64 ", cancel %" PRId64 "), STUCK %" PRId64
		       ", unfinished %" PRId64 "\n",
		       states[SAGA_COMPLETED], states[SAGA_COMPENSATED], reasons[SAGA_REASON_FAILURE],
		       reasons[SAGA_REASON_TIMEOUT], reasons[SAGA_REASON_CANCEL], states[SAGA_STUCK],
		       unfinished);
		int any = 0;
		for (int s = 0; s < ECOM_SERVICE_COUNT; s++) {
			ecom_fault_counts fc;
			ecom_faults_counts(faults, s, &fc);
			if (!fc.failures && !fc.transients && !fc.timeouts)
				continue;
			if (!any)
				printf("injected:   ");
			any = 1;
			printf(" %s %" PRIu64 " failed/%" PRIu64 " transient/%" PRIu64 " timed out of %"
			       PRIu64 " calls;", ecom_service_name(s), fc.failures, fc.transients,
			       fc.timeouts, fc.calls);
		}
		if (any)
			printf("\n");
		if (old_events)
			printf("also finished %zu saga%s left by an earlier run\n", old_events,
			       old_events == 1 ? "" : "s");
	}
	ex = states[SAGA_STUCK] || unfinished || finished < n ? EXIT_FAIL : EXIT_OK;
run_out:
	/* Close the engine before the run state its listener uses goes away. */
	saga_engine_close(app.engine);
	app.engine = NULL;
	pthread_mutex_destroy(&rs.mu);
	pthread_cond_destroy(&rs.cv);
	free(rs.q);
	free(map.keys);
	free(map.vals);
	free(ids);
	free(t0);
	free(lat);
	free(fin);
	free(done);
	free(cat.products);
	free(cat.customers);
out:
	app_close(&app);
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
} order_ref;

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

typedef struct hist {
	cJSON *arr;   /* json mode */
	int json;
} hist;

static int history_line(const saga_event *ev, void *user)
{
	hist *h = user;
	time_t secs = (time_t)(ev->at_ms / 1000u);
	struct tm tm;
	gmtime_r(&secs, &tm);
	char when[32];
	strftime(when, sizeof when, "%H:%M:%S", &tm);
	if (h->json) {
		cJSON *e = cJSON_CreateObject();
		cJSON_AddNumberToObject(e, "seq", (double)ev->seq);
		cJSON_AddNumberToObject(e, "at_ms", (double)ev->at_ms);
		cJSON_AddStringToObject(e, "type", saga_event_type_name(ev->type));
		cJSON_AddStringToObject(e, "state", saga_state_name(ev->state));
		if (ev->step_name) {
			cJSON_AddStringToObject(e, "step", ev->step_name);
			cJSON_AddStringToObject(e, "phase", ev->phase == SAGA_PHASE_ACTION
			                                    ? "action" : "compensation");
			cJSON_AddNumberToObject(e, "attempt", ev->attempt);
		}
		if (ev->outcome != SAGA_OUTCOME_NONE)
			cJSON_AddStringToObject(e, "outcome", saga_outcome_name(ev->outcome));
		cJSON_AddStringToObject(e, "detail", ev->detail);
		cJSON_AddItemToArray(h->arr, e);
		return 0;
	}
	printf("  %3" PRId64 " %s.%03u %-15s %-12s", ev->seq, when, (unsigned)(ev->at_ms % 1000u),
	       saga_event_type_name(ev->type), saga_state_name(ev->state));
	if (ev->step_name)
		printf(" %s/%s #%u", ev->step_name,
		       ev->phase == SAGA_PHASE_ACTION ? "action" : "compensation", ev->attempt);
	if (ev->outcome != SAGA_OUTCOME_NONE)
		printf(" %s", saga_outcome_name(ev->outcome));
	if (ev->detail[0])
		printf(" (%s)", ev->detail);
	printf("\n");
	return 0;
}

/* The order operand of status and cancel (see order_ref); -1 after a
 * message. */
static int order_operand(args *a, globals *g, order_ref *r, const char *cmd)
{
	memset(r, 0, sizeof *r);
	int n = 0;
	while (a->i < a->argc) {
		int x = global_opt(a, g);
		if (x < 0)
			return -1;
		if (x)
			continue;
		const char *arg = a->argv[a->i];
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

static int cmd_status(args *a, globals *g)
{
	order_ref what;
	if (order_operand(a, g, &what, "status") != 0)
		return EXIT_USAGE;
	ecom_app app;
	memset(&app, 0, sizeof app);
	snprintf(app.dir, sizeof app.dir, "%s", g->data);
	int ex = app_open_services(&app, "status");
	engine_cfg ec = { 0, 0, 0, 2 };  /* the history names steps of registered definitions */
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
		if (g->json) {
			cJSON *j = cJSON_CreateObject();
			cJSON_AddItemToObject(j, "saga", saga_json(&in));
			cJSON_AddItemToObject(j, "order", order_json(&app, oid));
			h.arr = cJSON_AddArrayToObject(j, "history");
			saga_history(app.engine, sid, history_line, &h);
			print_json(j);
		} else {
			print_saga_text(&in);
			print_order_text(&app, oid);
			printf("history:\n");
			saga_history(app.engine, sid, history_line, &h);
		}
	}
	app_close(&app);
	return ex;
}

static int cmd_cancel(args *a, globals *g)
{
	order_ref ref;
	ecom_app app;
	memset(&app, 0, sizeof app);
	if (ecom_faults_new(&app.faults, 1) != 0)
		return EXIT_FAIL;
	char msg[ECOM_MSG_MAX];
	if (order_operand(a, g, &ref, "cancel") != 0) {
		app_close(&app);
		return EXIT_USAGE;
	}
	if (ecom_faults_from_env(app.faults, msg, sizeof msg) != 0) {
		errorf("cancel: %s", msg);
		app_close(&app);
		return EXIT_USAGE;
	}
	snprintf(app.dir, sizeof app.dir, "%s", g->data);
	int ex = data_ready(app.dir, "cancel");
	if (ex == EXIT_OK)
		ex = check_policies(&app, g, "cancel");
	if (ex == EXIT_OK)
		ex = app_open_services(&app, "cancel");
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
			       "only go forward", what);
		ex = EXIT_FAIL;
		goto out;
	}
	if (rc != SAGA_OK) {
		errorf("cancel: %s", saga_engine_errmsg(app.engine));
		ex = EXIT_FAIL;
		goto out;
	}
	wait_one w = { sid, 0 };
	rc = drive(app.engine, one_done, &w, 60000);
	if (rc != SAGA_OK && rc != SAGA_EBUSY) {
		errorf("cancel: %s", saga_engine_errmsg(app.engine));
		ex = EXIT_FAIL;
		goto out;
	}
	if (saga_get(app.engine, &in, sid) != SAGA_OK) {
		errorf("cancel: %s", saga_engine_errmsg(app.engine));
		ex = EXIT_FAIL;
		goto out;
	}
	print_outcome(&app, g, &in, 0, "cancelled");
	/* The saga may have gone past its pivot before the request landed. */
	ex = in.state == SAGA_COMPENSATED ? EXIT_OK : EXIT_FAIL;
out:
	app_close(&app);
	return ex;
}

/* ---------------------------------------------------------------------- */
/* the checker's facts and violations (recover and check)                 */
/* ---------------------------------------------------------------------- */

typedef struct fact_list {
	ecom_saga_fact *facts;
	char (*keys)[SAGA_KEY_MAX + 1];
	size_t n, cap;
	int oom;
} fact_list;

static int collect_fact(const saga_instance_info *in, void *user)
{
	fact_list *l = user;
	if (strcmp(in->definition, ECOM_SAGA_NAME) != 0)
		return 0;
	if (l->n == l->cap) {
		size_t c = l->cap ? l->cap * 2 : 256;
		ecom_saga_fact *f = realloc(l->facts, c * sizeof *f);
		if (!f) {
			l->oom = 1;
			return 1;
		}
		l->facts = f;
		char (*k)[SAGA_KEY_MAX + 1] = realloc(l->keys, c * sizeof *k);
		if (!k) {
			l->oom = 1;
			return 1;
		}
		l->keys = k;
		l->cap = c;
	}
	snprintf(l->keys[l->n], sizeof l->keys[l->n], "%s", in->business_key);
	l->facts[l->n].state = in->state;
	l->n++;
	return 0;
}

typedef struct violations {
	int json;     /* 1: into arr; 0: printed on stdout; 2: on stderr (and into arr if any) */
	cJSON *arr;
	int64_t n;
} violations;

static void on_violation(const char *name, const char *detail, void *user)
{
	violations *v = user;
	v->n++;
	if (v->json == 2) {
		errorf("recover: violation %s: %s", name, detail);
		if (!v->arr)
			return;
	}
	if (v->json) {
		cJSON *e = cJSON_CreateObject();
		cJSON_AddStringToObject(e, "name", name);
		cJSON_AddStringToObject(e, "detail", detail);
		cJSON_AddItemToArray(v->arr, e);
	} else {
		printf("violation %s: %s\n", name, detail);
	}
}

/* Runs the checker over the services, with the sagas of the store when
 * there is one (engine open). Violations go to v. 0, or -1 after a message. */
static int cross_check(ecom_app *app, int have_store, violations *v)
{
	fact_list l = { 0 };
	int rc = 0;
	if (have_store &&
	    (saga_list(app->engine, -1, collect_fact, &l) != SAGA_OK || l.oom)) {
		errorf("recover: %s", l.oom ? "out of memory" : saga_engine_errmsg(app->engine));
		rc = -1;
	}
	for (size_t i = 0; i < l.n; i++)
		l.facts[i].business_key = l.keys[i];
	char err[ECOM_MSG_MAX] = "";
	if (rc == 0) {
		int n = ecommerce_check(app->dir, have_store ? (l.facts ? l.facts
		                                                        : (ecom_saga_fact[1]){ { "", 0 } })
		                                             : NULL,
		                        l.n, on_violation, v, err, sizeof err);
		if (n < 0) {
			errorf("recover: checking the services: %s", err[0] ? err : saga_strerror(n));
			rc = -1;
		}
	}
	free(l.facts);
	free(l.keys);
	return rc;
}

/* ---------------------------------------------------------------------- */
/* recover                                                                */
/* ---------------------------------------------------------------------- */

typedef struct id_list {
	int64_t *ids;
	size_t n, cap;
	int oom;
} id_list;

static int collect_unfinished(const saga_instance_info *in, void *user)
{
	id_list *l = user;
	if (!is_unfinished(in->state))
		return 0;
	if (l->n == l->cap) {
		int64_t *p = grow_array(l->ids, &l->cap, 64, sizeof *p);
		if (!p) {
			l->oom = 1;
			return 1;
		}
		l->ids = p;
	}
	l->ids[l->n++] = in->id;
	return 0;
}

static int none_unfinished(saga_engine *e, void *user)
{
	(void)user;
	int64_t c[SAGA_STATE_COUNT];
	int rc = saga_counts(e, c);
	if (rc != SAGA_OK)
		return rc;
	return c[SAGA_RUNNING] + c[SAGA_WAITING] + c[SAGA_COMPENSATING] == 0;
}

static int cmd_recover(args *a, globals *g)
{
	int64_t timeout_s = 60;
	while (a->i < a->argc) {
		int r = global_opt(a, g);
		if (r < 0)
			return EXIT_USAGE;
		if (r)
			continue;
		if (is_opt(a, "--timeout")) {
			if (opt_i64(a, "--timeout", 1, 86400, &timeout_s, "recover: --timeout",
			            "a number of seconds (1..86400)") != 0)
				return EXIT_USAGE;
		} else {
			errorf("recover: unknown option \"%s\"", a->argv[a->i]);
			return EXIT_USAGE;
		}
	}
	ecom_app app;
	memset(&app, 0, sizeof app);
	if (ecom_faults_new(&app.faults, 1) != 0)
		return EXIT_FAIL;
	char msg[ECOM_MSG_MAX];
	if (ecom_faults_from_env(app.faults, msg, sizeof msg) != 0) {
		errorf("recover: %s", msg);
		app_close(&app);
		return EXIT_USAGE;
	}
	snprintf(app.dir, sizeof app.dir, "%s", g->data);
	int ex = data_ready(app.dir, "recover");
	if (ex == EXIT_OK)
		ex = check_policies(&app, g, "recover");
	if (ex == EXIT_OK)
		ex = app_open_services(&app, "recover");
	/* No store: no saga to resume, and none is created; the cross-check
	 * below still looks at the services. */
	int have_store = store_present(app.dir);
	engine_cfg ec = { 0, 0, 0, 1 };
	if (ex == EXIT_OK && have_store)
		ex = app_open_engine(&app, g, &ec, "recover");
	id_list l = { 0 };
	if (ex != EXIT_OK)
		goto out;
	if (have_store &&
	    (saga_list(app.engine, -1, collect_unfinished, &l) != SAGA_OK || l.oom)) {
		errorf("recover: %s", l.oom ? "out of memory" : saga_engine_errmsg(app.engine));
		ex = EXIT_FAIL;
		goto out;
	}
	double t = mono_s();
	int rc = have_store ? drive(app.engine, none_unfinished, NULL, (uint64_t)timeout_s * 1000u)
	                    : SAGA_OK;
	if (rc != SAGA_OK && rc != SAGA_EBUSY) {
		errorf("recover: %s", saga_engine_errmsg(app.engine));
		ex = EXIT_FAIL;
		goto out;
	}
	t = mono_s() - t;
	int64_t states[SAGA_STATE_COUNT] = { 0 };
	cJSON *j = g->json ? cJSON_CreateObject() : NULL;
	cJSON *arr = j ? cJSON_CreateArray() : NULL;
	for (size_t i = 0; i < l.n; i++) {
		saga_instance_info in;
		if (saga_get(app.engine, &in, l.ids[i]) != SAGA_OK)
			continue;
		states[in.state]++;
		if (arr)
			cJSON_AddItemToArray(arr, saga_json(&in));
		else if (!g->json)
			printf("  saga %" PRId64 " %s: %s%s%s\n", in.id, in.business_key,
			       saga_state_name(in.state), in.reason ? " " : "",
			       in.reason ? saga_reason_name(in.reason) : "");
	}
	int64_t left = states[SAGA_RUNNING] + states[SAGA_WAITING] + states[SAGA_COMPENSATING];
	/* The services must agree with the store: work in flight in them that
	 * no saga will finish (the store deleted, replaced or damaged) is not a
	 * recovery. Only when nothing is left unfinished (the checker reads an
	 * unfinished saga as a violation). */
	violations v = { 2, j ? cJSON_CreateArray() : NULL, 0 };
	if (!left) {
		int xr = cross_check(&app, have_store, &v);
		if (xr < 0) {
			cJSON_Delete(v.arr);
			cJSON_Delete(j);
			cJSON_Delete(arr);
			ex = EXIT_FAIL;
			goto out;
		}
	}
	if (j) {
		cJSON_AddNumberToObject(j, "resumed", (double)l.n);
		cJSON_AddBoolToObject(j, "services_consistent", v.n == 0);
		cJSON_AddItemToObject(j, "violations", v.arr ? v.arr : cJSON_CreateArray());
		cJSON *st = cJSON_AddObjectToObject(j, "states");
		for (int s = 0; s < SAGA_STATE_COUNT; s++)
			cJSON_AddNumberToObject(st, saga_state_name((saga_state)s), (double)states[s]);
		cJSON_AddNumberToObject(j, "seconds", t);
		cJSON_AddItemToObject(j, "sagas", arr);
		print_json(j);
	} else {
		printf("resumed %zu saga%s in %.2f s: COMPLETED %" PRId64 ", COMPENSATED %" PRId64
		       ", STUCK %" PRId64 ", still unfinished %" PRId64 "\n",
		       l.n, l.n == 1 ? "" : "s", t, states[SAGA_COMPLETED], states[SAGA_COMPENSATED],
		       states[SAGA_STUCK], left);
	}
	if (left)
		errorf("recover: %" PRId64 " saga%s still unfinished after %" PRId64
		       " s (run recover again, or raise --timeout)", left, left == 1 ? "" : "s",
		       timeout_s);
	if (v.n)
		errorf("recover: the services hold %" PRId64 " inconsistenc%s that no saga will "
		       "finish (orders in flight with no saga: was the saga store deleted or "
		       "replaced?); see `check`", v.n, v.n == 1 ? "y" : "ies");
	ex = left || states[SAGA_STUCK] || v.n ? EXIT_FAIL : EXIT_OK;
out:
	free(l.ids);
	app_close(&app);
	return ex;
}

/* ---------------------------------------------------------------------- */
/* check                                                                  */
/* ---------------------------------------------------------------------- */

static int cmd_check(args *a, globals *g)
{
	while (a->i < a->argc) {
		int r = global_opt(a, g);
		if (r < 0)
			return EXIT_USAGE;
		if (!r) {
			errorf("check: unknown option \"%s\"", a->argv[a->i]);
			return EXIT_USAGE;
		}
	}
	int ready = data_ready(g->data, "check");
	if (ready != EXIT_OK)
		return ready;
	ecom_app app;
	memset(&app, 0, sizeof app);
	snprintf(app.dir, sizeof app.dir, "%s", g->data);
	engine_cfg ec = { 0, 0, 0, 0 };
	fact_list l = { 0 };
	violations v = { g->json, g->json ? cJSON_CreateArray() : NULL, 0 };
	char sp[4200];
	path_in(sp, sizeof sp, app.dir, "saga.db");
	int ex = EXIT_OK;
	/* No saga store yet (seeded, never ordered): no saga, nothing to open. */
	if (file_exists(sp)) {
		if ((ex = app_open_engine(&app, g, &ec, "check")) != EXIT_OK)
			goto out;
		if (saga_list(app.engine, -1, collect_fact, &l) != SAGA_OK || l.oom) {
			errorf("check: %s", l.oom ? "out of memory" : saga_engine_errmsg(app.engine));
			ex = EXIT_FAIL;
			goto out;
		}
	}
	for (size_t i = 0; i < l.n; i++)
		l.facts[i].business_key = l.keys[i];
	/* Engine side: every instance of the order saga has a business key (the
	 * checker matches orders to sagas by it). Unfinished and stuck sagas are
	 * reported by the checker itself (saga-unfinished). */
	for (size_t i = 0; i < l.n; i++) {
		if (!l.keys[i][0]) {
			char d[128];
			snprintf(d, sizeof d, "a saga in state %s has no business key",
			         saga_state_name(l.facts[i].state));
			on_violation("saga-without-key", d, &v);
		}
	}
	char err[ECOM_MSG_MAX];
	int rc = ecommerce_check(app.dir, l.facts ? l.facts : (ecom_saga_fact[1]){ { "", 0 } },
	                         l.n, on_violation, &v, err, sizeof err);
	if (rc < 0) {
		errorf("check: %s", err[0] ? err : saga_strerror(rc));
		ex = EXIT_FAIL;
		goto out;
	}
	if (g->json) {
		cJSON *j = cJSON_CreateObject();
		cJSON_AddBoolToObject(j, "consistent", v.n == 0);
		cJSON_AddNumberToObject(j, "sagas", (double)l.n);
		cJSON_AddNumberToObject(j, "violation_count", (double)v.n);
		cJSON_AddItemToObject(j, "violations", v.arr);
		v.arr = NULL;
		print_json(j);
	} else if (v.n == 0) {
		printf("consistent: %zu sagas, no violation\n", l.n);
	} else {
		printf("%" PRId64 " violation%s\n", v.n, v.n == 1 ? "" : "s");
	}
	ex = v.n ? EXIT_FAIL : EXIT_OK;
out:
	cJSON_Delete(v.arr);
	free(l.facts);
	free(l.keys);
	app_close(&app);
	return ex;
}

/* ---------------------------------------------------------------------- */
/* report                                                                 */
/* ---------------------------------------------------------------------- */

typedef struct uid_list {
	char (*uids)[SAGA_UID_LEN + 1];
	size_t n, cap;
	int oom;
} uid_list;

static int collect_uid(const saga_instance_info *in, void *user)
{
	uid_list *l = user;
	if (strcmp(in->definition, ECOM_SAGA_NAME) != 0)
		return 0;
	if (l->n == l->cap) {
		char (*u)[SAGA_UID_LEN + 1] = grow_array(l->uids, &l->cap, 256, sizeof *u);
		if (!u) {
			l->oom = 1;
			return 1;
		}
		l->uids = u;
	}
	snprintf(l->uids[l->n++], SAGA_UID_LEN + 1, "%s", in->uid);
	return 0;
}

typedef struct stock_sum {
	int64_t products, initial, stock, reserved, shipped;
} stock_sum;

static int sum_stock(const ecom_product *p, void *user)
{
	stock_sum *s = user;
	s->products++;
	s->initial += p->initial;
	s->stock += p->stock;
	s->reserved += p->reserved;
	s->shipped += p->shipped;
	return 0;
}

static int cmd_report(args *a, globals *g)
{
	while (a->i < a->argc) {
		int r = global_opt(a, g);
		if (r < 0)
			return EXIT_USAGE;
		if (!r) {
			errorf("report: unknown option \"%s\"", a->argv[a->i]);
			return EXIT_USAGE;
		}
	}
	ecom_app app;
	memset(&app, 0, sizeof app);
	snprintf(app.dir, sizeof app.dir, "%s", g->data);
	int ex = app_open_services(&app, "report");
	int64_t orders[ECOM_ORDER_STATUS_COUNT] = { 0 };
	int64_t sagas[SAGA_STATE_COUNT] = { 0 };
	uid_list l = { 0 };
	stock_sum ss = { 0 };
	int64_t charged = 0, refunded = 0, charges = 0, refunds = 0;
	if (ex != EXIT_OK)
		goto out;
	if (order_count_by_status(app.order, orders) != 0 ||
	    inventory_list_products(app.inventory, sum_stock, &ss) != 0) {
		errorf("report: cannot read the services");
		ex = EXIT_FAIL;
		goto out;
	}
	char sp[4200];
	path_in(sp, sizeof sp, app.dir, "saga.db");
	if (file_exists(sp)) {  /* a fresh directory has no saga store yet */
		engine_cfg ec = { 0, 0, 0, 0 };
		if ((ex = app_open_engine(&app, g, &ec, "report")) != EXIT_OK)
			goto out;
		if (saga_counts(app.engine, sagas) != SAGA_OK ||
		    saga_list(app.engine, -1, collect_uid, &l) != SAGA_OK || l.oom) {
			errorf("report: %s", l.oom ? "out of memory" : saga_engine_errmsg(app.engine));
			ex = EXIT_FAIL;
			goto out;
		}
	}
	for (size_t i = 0; i < l.n; i++) {
		char key[SAGA_UID_LEN + 64];
		snprintf(key, sizeof key, "%s/%s/action", l.uids[i], STEP_CHARGE);
		ecom_charge c;
		if (payment_get_charge(app.payment, key, &c) != 0)
			continue;
		charges++;
		charged += c.amount;
		refunded += c.refunded;
		refunds += c.refunded > 0;
	}
	int64_t norders = 0, nsagas = 0;
	for (int i = 0; i < ECOM_ORDER_STATUS_COUNT; i++)
		norders += orders[i];
	for (int i = 0; i < SAGA_STATE_COUNT; i++)
		nsagas += sagas[i];
	if (g->json) {
		cJSON *j = cJSON_CreateObject();
		cJSON *o = cJSON_AddObjectToObject(j, "orders");
		cJSON_AddNumberToObject(o, "total", (double)norders);
		for (int i = 0; i < ECOM_ORDER_STATUS_COUNT; i++)
			cJSON_AddNumberToObject(o, ecom_order_status_name(i), (double)orders[i]);
		cJSON *s = cJSON_AddObjectToObject(j, "sagas");
		cJSON_AddNumberToObject(s, "total", (double)nsagas);
		for (int i = 0; i < SAGA_STATE_COUNT; i++)
			cJSON_AddNumberToObject(s, saga_state_name((saga_state)i), (double)sagas[i]);
		cJSON *p = cJSON_AddObjectToObject(j, "payments");
		cJSON_AddNumberToObject(p, "charges", (double)charges);
		cJSON_AddNumberToObject(p, "charged", (double)charged);
		cJSON_AddNumberToObject(p, "refunds", (double)refunds);
		cJSON_AddNumberToObject(p, "refunded", (double)refunded);
		cJSON_AddNumberToObject(p, "revenue", (double)(charged - refunded));
		cJSON *st = cJSON_AddObjectToObject(j, "stock");
		cJSON_AddNumberToObject(st, "products", (double)ss.products);
		cJSON_AddNumberToObject(st, "initial", (double)ss.initial);
		cJSON_AddNumberToObject(st, "available", (double)(ss.stock - ss.reserved));
		cJSON_AddNumberToObject(st, "reserved", (double)ss.reserved);
		cJSON_AddNumberToObject(st, "shipped", (double)ss.shipped);
		print_json(j);
	} else {
		char rev[32], chg[32], ref[32];
		money(rev, sizeof rev, charged - refunded);
		money(chg, sizeof chg, charged);
		money(ref, sizeof ref, refunded);
		printf("orders:   %" PRId64 " (", norders);
		for (int i = 0; i < ECOM_ORDER_STATUS_COUNT; i++)
			printf("%s%s %" PRId64, i ? ", " : "", ecom_order_status_name(i), orders[i]);
		printf(")\nsagas:    %" PRId64 " (", nsagas);
		for (int i = 0; i < SAGA_STATE_COUNT; i++)
			printf("%s%s %" PRId64, i ? ", " : "", saga_state_name((saga_state)i), sagas[i]);
		printf(")\nrevenue:  %s (charged %s in %" PRId64 " charge%s, refunded %s in %" PRId64
		       " refund%s)\n", rev, chg, charges, charges == 1 ? "" : "s", ref, refunds,
		       refunds == 1 ? "" : "s");
		printf("stock:    %" PRId64 " products, %" PRId64 " units: available %" PRId64
		       ", reserved %" PRId64 ", shipped %" PRId64 "\n", ss.products, ss.initial,
		       ss.stock - ss.reserved, ss.reserved, ss.shipped);
	}
	ex = EXIT_OK;
out:
	free(l.uids);
	app_close(&app);
	return ex;
}

/* ---------------------------------------------------------------------- */
/* main                                                                   */
/* ---------------------------------------------------------------------- */

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
"  status  --id N | --key K   (an order id, or its key; a bare K is a key\n"
"                              unless it reads as a number: refused)\n"
"  cancel  --id N | --key K\n"
"  recover [--timeout SECONDS]\n"
"  check\n"
"  report\n"
"\n"
"FAULTS: --fail SERVICE=RATE  --transient SERVICE=RATE  --latency SERVICE=MS\n"
"        --timeout SERVICE=MS[:RATE]  --crash SERVICE.OP.before|after[:N]\n"
"        (services: order inventory payment shipping notification, or *; also\n"
"        from ECOMMERCE_FAIL, ECOMMERCE_TRANSIENT, ECOMMERCE_LATENCY,\n"
"        ECOMMERCE_TIMEOUT, ECOMMERCE_CRASH, ECOMMERCE_FAULT_SEED)\n"
"\n"
"Numbers are decimal digits only (no sign, no blank); a value too long for\n"
"its field is refused, never cut. --data defaults to ./ecommerce-data.\n"
"Exit codes: 0 success, 1 a business failure or a violation, 2 bad usage or\n"
"input (checked before anything is opened for writing: nothing written).\n", prog);
}

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
	static const struct {
		const char *name;
		int (*fn)(args *, globals *);
	} cmds[] = {
		{ "seed", cmd_seed }, { "order", cmd_order }, { "run", cmd_run },
		{ "status", cmd_status }, { "cancel", cmd_cancel }, { "recover", cmd_recover },
		{ "check", cmd_check }, { "report", cmd_report },
	};
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
	       "check or report)", cmd);
	return EXIT_USAGE;
}
