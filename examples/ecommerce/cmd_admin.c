/* The commands on the whole data directory: `seed`, `recover`, `check`
 * and `report`. SPDX-License-Identifier: MIT */
#include "app.h"
#include "commands.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------- */
/* seed                                                                   */
/* ---------------------------------------------------------------------- */

int cmd_seed(args *a, globals *g)
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
			if (opt_i64(a, "--products", 1, 100000, &products,
			            "seed: --products:", "a number in 1..100000") != 0)
				return EXIT_USAGE;
		} else if (is_opt(a, "--customers")) {
			if (opt_i64(a, "--customers", 1, 100000, &customers,
			            "seed: --customers:", "a number in 1..100000") != 0)
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
		printf("seeded %s: %" PRId64 " products, %" PRId64 " customers (seed %" PRIu64
		       ")\n",
		       g->data, products, customers, seed);
	}
	return EXIT_OK;
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
		char(*k)[SAGA_KEY_MAX + 1] = realloc(l->keys, c * sizeof *k);
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

/* Reads the order sagas of the store into l (emptied first), their keys
 * pointing into l. 0, or -1 after a message. */
static int read_facts(saga_engine *e, fact_list *l, const char *cmd)
{
	l->n = 0;
	if (saga_list(e, -1, collect_fact, l) != SAGA_OK || l->oom) {
		errorf("%s: %s", cmd, l->oom ? "out of memory" : saga_engine_errmsg(e));
		return -1;
	}
	for (size_t i = 0; i < l->n; i++)
		l->facts[i].business_key = l->keys[i];
	return 0;
}

static void free_facts(fact_list *l)
{
	free(l->facts);
	free(l->keys);
}

/* The second reading of the sagas, once the checker has pinned the
 * services' snapshots (ecom_facts_fn). */
typedef struct facts_after {
	saga_engine *e;
	const char *cmd;
	fact_list l;
} facts_after;

static int read_after(const ecom_saga_fact **facts, size_t *n, void *user)
{
	facts_after *a = user;
	if (read_facts(a->e, &a->l, a->cmd) != 0)
		return SAGA_ERROR;
	*facts = a->l.facts ? a->l.facts : (ecom_saga_fact[1]){ { "", 0 } };
	*n = a->l.n;
	return 0;
}

typedef struct violations {
	int json; /* 1: into arr; 0: printed on stdout; 2: on stderr (and into arr if any) */
	cJSON *arr;
	int64_t n;
	int skip_unfinished; /* saga-unfinished is not counted (recover counts its own) */
	int64_t unfinished;  /* saga-unfinished among them */
} violations;

static void on_violation(const char *name, const char *detail, void *user)
{
	violations *v = user;
	if (strcmp(name, "saga-unfinished") == 0) {
		if (v->skip_unfinished)
			return;
		v->unfinished++;
	}
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
 * there is one (engine open), while other processes may be running sagas
 * (ecommerce_check_live): violations go to v, *nsagas (may be NULL) gets
 * the number of order sagas. 0, or -1 after a message. */
static int cross_check(ecom_app *app, int have_store, violations *v, size_t *nsagas,
                       const char *cmd)
{
	fact_list before = { 0 };
	facts_after after = { app->engine, cmd, { 0 } };
	char err[ECOM_MSG_MAX] = "";
	int n = 0;
	if (!have_store) {
		n = ecommerce_check(app->dir, NULL, 0, on_violation, v, err, sizeof err);
	} else if (read_facts(app->engine, &before, cmd) != 0) {
		free_facts(&before);
		return -1;
	} else {
		/* Engine side: every instance of the order saga has a business key
		 * (the checker matches orders to sagas by it). */
		for (size_t i = 0; i < before.n; i++) {
			if (!before.keys[i][0]) {
				char d[128];
				snprintf(d, sizeof d, "a saga in state %s has no business key",
				         saga_state_name(before.facts[i].state));
				on_violation("saga-without-key", d, v);
			}
		}
		n = ecommerce_check_live(
		        app->dir, before.facts ? before.facts : (ecom_saga_fact[1]){ { "", 0 } },
		        before.n, read_after, &after, on_violation, v, err, sizeof err);
	}
	if (nsagas)
		*nsagas = after.l.n;
	free_facts(&before);
	free_facts(&after.l);
	if (n < 0) {
		errorf("%s: checking the services: %s", cmd, err[0] ? err : saga_strerror(n));
		return -1;
	}
	return 0;
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

/* 1 when every saga of the list has ended (or stopped, STUCK). Others may
 * be running meanwhile, started by other processes: they are theirs. */
static int listed_ended(saga_engine *e, void *user)
{
	const id_list *l = user;
	for (size_t i = 0; i < l->n; i++) {
		saga_instance_info in;
		int rc = saga_get(e, &in, l->ids[i]);
		if (rc != SAGA_OK)
			return rc;
		if (!is_final(in.state))
			return 0;
	}
	return 1;
}

/* Phase 2, the libsaga part: lists the unfinished sagas into l and drives
 * the engine until none is left or timeout_s passes (*secs: how long that
 * took). Exit code. */
static int recover_resume(ecom_app *app, int64_t timeout_s, id_list *l, double *secs)
{
	if (saga_list(app->engine, -1, collect_unfinished, l) != SAGA_OK || l->oom) {
		errorf("recover: %s", l->oom ? "out of memory" : saga_engine_errmsg(app->engine));
		return EXIT_FAIL;
	}
	double t = mono_s();
	int rc = drive(app->engine, listed_ended, l, (uint64_t)timeout_s * 1000u);
	if (rc != SAGA_OK && rc != SAGA_EBUSY) {
		errorf("recover: %s", saga_engine_errmsg(app->engine));
		return EXIT_FAIL;
	}
	*secs = mono_s() - t;
	return EXIT_OK;
}

/* Phase 3: where the resumed sagas ended, the services cross-checked when
 * none is left unfinished, and the report. Exit code. */
static int recover_report(ecom_app *app, const globals *g, int have_store, const id_list *l,
                          double secs, int64_t timeout_s)
{
	int64_t states[SAGA_STATE_COUNT] = { 0 };
	cJSON *j = g->json ? cJSON_CreateObject() : NULL;
	cJSON *arr = j ? cJSON_CreateArray() : NULL;
	for (size_t i = 0; i < l->n; i++) {
		saga_instance_info in;
		if (saga_get(app->engine, &in, l->ids[i]) != SAGA_OK)
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
	 * recovery. Sagas unfinished are not counted there: those of the list
	 * are counted above, the others run in other processes (or started
	 * after the list was read). */
	violations v = { 2, j ? cJSON_CreateArray() : NULL, 0, 1, 0 };
	if (!left && cross_check(app, have_store, &v, NULL, "recover") < 0) {
		cJSON_Delete(v.arr);
		cJSON_Delete(j);
		cJSON_Delete(arr);
		return EXIT_FAIL;
	}
	if (j) {
		cJSON_AddNumberToObject(j, "resumed", (double)l->n);
		cJSON_AddBoolToObject(j, "services_consistent", v.n == 0);
		cJSON_AddItemToObject(j, "violations", v.arr ? v.arr : cJSON_CreateArray());
		cJSON *st = cJSON_AddObjectToObject(j, "states");
		for (int s = 0; s < SAGA_STATE_COUNT; s++)
			cJSON_AddNumberToObject(st, saga_state_name((saga_state)s),
			                        (double)states[s]);
		cJSON_AddNumberToObject(j, "seconds", secs);
		cJSON_AddItemToObject(j, "sagas", arr);
		print_json(j);
	} else {
		printf("resumed %zu saga%s in %.2f s: COMPLETED %" PRId64 ", COMPENSATED %" PRId64
		       ", STUCK %" PRId64 ", still unfinished %" PRId64 "\n",
		       l->n, l->n == 1 ? "" : "s", secs, states[SAGA_COMPLETED],
		       states[SAGA_COMPENSATED], states[SAGA_STUCK], left);
	}
	if (left)
		errorf("recover: %" PRId64 " saga%s still unfinished after %" PRId64
		       " s (run recover again, or raise --timeout)",
		       left, left == 1 ? "" : "s", timeout_s);
	if (v.n)
		errorf("recover: the services hold %" PRId64 " inconsistenc%s that no saga will "
		       "finish (orders in flight with no saga: was the saga store deleted or "
		       "replaced?); see `check`",
		       v.n, v.n == 1 ? "y" : "ies");
	return left || states[SAGA_STUCK] || v.n ? EXIT_FAIL : EXIT_OK;
}

int cmd_recover(args *a, globals *g)
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
	/* Phase 1: open. No store: no saga to resume, and none is created; the
	 * cross-check still looks at the services. */
	int ex = app_open(&app, g, "recover");
	int have_store = store_present(app.dir);
	engine_cfg ec = { 0, 0, 0, 1 };
	if (ex == EXIT_OK && have_store)
		ex = app_open_engine(&app, g, &ec, "recover");
	id_list l = { 0 };
	double secs = 0;
	if (ex == EXIT_OK && have_store)
		ex = recover_resume(&app, timeout_s, &l, &secs);
	if (ex == EXIT_OK)
		ex = recover_report(&app, g, have_store, &l, secs, timeout_s);
	free(l.ids);
	app_close(&app);
	return ex;
}

/* ---------------------------------------------------------------------- */
/* check                                                                  */
/* ---------------------------------------------------------------------- */

int cmd_check(args *a, globals *g)
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
	violations v = { g->json, g->json ? cJSON_CreateArray() : NULL, 0, 0, 0 };
	size_t nsagas = 0;
	/* No saga store yet (seeded, never ordered): no saga, nothing to open. */
	int have_store = store_present(app.dir);
	int ex = have_store ? app_open_engine(&app, g, &ec, "check") : EXIT_OK;
	if (ex == EXIT_OK && cross_check(&app, have_store, &v, &nsagas, "check") != 0)
		ex = EXIT_FAIL;
	if (ex != EXIT_OK)
		goto out;
	if (g->json) {
		cJSON *j = cJSON_CreateObject();
		cJSON_AddBoolToObject(j, "consistent", v.n == 0);
		cJSON_AddNumberToObject(j, "sagas", (double)nsagas);
		cJSON_AddNumberToObject(j, "violation_count", (double)v.n);
		cJSON_AddNumberToObject(j, "unfinished", (double)v.unfinished);
		cJSON_AddItemToObject(j, "violations", v.arr);
		v.arr = NULL;
		print_json(j);
	} else if (v.n == 0) {
		printf("consistent: %zu sagas, no violation\n", nsagas);
	} else {
		printf("%" PRId64 " violation%s\n", v.n, v.n == 1 ? "" : "s");
	}
	/* Other processes may be running them, or nobody (a process died and
	 * no other runs this saga): the store does not say which. */
	if (v.unfinished && !g->json)
		printf("unfinished: %" PRId64 " saga%s, in flight in another process or waiting "
		       "for `recover`; their orders are checked once they end\n",
		       v.unfinished, v.unfinished == 1 ? "" : "s");
	ex = v.n ? EXIT_FAIL : EXIT_OK;
out:
	cJSON_Delete(v.arr);
	app_close(&app);
	return ex;
}

/* ---------------------------------------------------------------------- */
/* report                                                                 */
/* ---------------------------------------------------------------------- */

/* The order sagas: id and uid. */
typedef struct saga_ref {
	int64_t id;
	char uid[SAGA_UID_LEN + 1];
} saga_ref;

typedef struct uid_list {
	saga_ref *sagas;
	size_t n, cap;
	int oom;
} uid_list;

static int collect_uid(const saga_instance_info *in, void *user)
{
	uid_list *l = user;
	if (strcmp(in->definition, ECOM_SAGA_NAME) != 0)
		return 0;
	if (l->n == l->cap) {
		saga_ref *u = grow_array(l->sagas, &l->cap, 256, sizeof *u);
		if (!u) {
			l->oom = 1;
			return 1;
		}
		l->sagas = u;
	}
	l->sagas[l->n].id = in->id;
	snprintf(l->sagas[l->n++].uid, SAGA_UID_LEN + 1, "%s", in->uid);
	return 0;
}

/* The fences a saga's history was written under: each change of the
 * process that runs it (a takeover after a process died or closed with it
 * unfinished, a cancel that took it from nobody) raises the fence. */
typedef struct fence_span {
	int64_t first, last;
} fence_span;

static int fence_of(const saga_event *ev, void *user)
{
	fence_span *f = user;
	if (f->first == 0)
		f->first = ev->fence;
	f->last = ev->fence;
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

/* What `report` shows: orders by status, sagas by state, the money and the
 * stock. */
typedef struct report_data {
	int64_t orders[ECOM_ORDER_STATUS_COUNT];
	int64_t sagas[SAGA_STATE_COUNT];
	int64_t norders, nsagas;
	stock_sum stock;
	int64_t charged, refunded, charges, refunds;
	int64_t moved, moves; /* sagas that changed process, and how often */
} report_data;

/* Reads the services and, when there is one, the saga store. Exit code. */
static int report_collect(ecom_app *app, const globals *g, report_data *d)
{
	uid_list l = { 0 };
	int ex = EXIT_OK;
	if (order_count_by_status(app->order, d->orders) != 0 ||
	    inventory_list_products(app->inventory, sum_stock, &d->stock) != 0) {
		errorf("report: cannot read the services");
		return EXIT_FAIL;
	}
	char sp[4200];
	path_in(sp, sizeof sp, app->dir, "saga.db");
	if (file_exists(sp)) { /* a fresh directory has no saga store yet */
		engine_cfg ec = { 0, 0, 0, 0 };
		if ((ex = app_open_engine(app, g, &ec, "report")) != EXIT_OK)
			goto out;
		if (saga_counts(app->engine, d->sagas) != SAGA_OK ||
		    saga_list(app->engine, -1, collect_uid, &l) != SAGA_OK || l.oom) {
			errorf("report: %s",
			       l.oom ? "out of memory" : saga_engine_errmsg(app->engine));
			ex = EXIT_FAIL;
			goto out;
		}
	}
	/* The charge of each order saga, by the key its step gave the service,
	 * and the processes that ran it, from its history's fences. */
	for (size_t i = 0; i < l.n; i++) {
		fence_span f = { 0, 0 };
		if (saga_history(app->engine, l.sagas[i].id, fence_of, &f) == SAGA_OK &&
		    f.last > f.first) {
			d->moved++;
			d->moves += f.last - f.first;
		}
		char key[SAGA_UID_LEN + 64];
		snprintf(key, sizeof key, "%s/%s/action", l.sagas[i].uid, STEP_CHARGE);
		ecom_charge c;
		if (payment_get_charge(app->payment, key, &c) != 0)
			continue;
		d->charges++;
		d->charged += c.amount;
		d->refunded += c.refunded;
		d->refunds += c.refunded > 0;
	}
	for (int i = 0; i < ECOM_ORDER_STATUS_COUNT; i++)
		d->norders += d->orders[i];
	for (int i = 0; i < SAGA_STATE_COUNT; i++)
		d->nsagas += d->sagas[i];
out:
	free(l.sagas);
	return ex;
}

static void report_print_json(const report_data *d)
{
	cJSON *j = cJSON_CreateObject();
	cJSON *o = cJSON_AddObjectToObject(j, "orders");
	cJSON_AddNumberToObject(o, "total", (double)d->norders);
	for (int i = 0; i < ECOM_ORDER_STATUS_COUNT; i++)
		cJSON_AddNumberToObject(o, ecom_order_status_name(i), (double)d->orders[i]);
	cJSON *s = cJSON_AddObjectToObject(j, "sagas");
	cJSON_AddNumberToObject(s, "total", (double)d->nsagas);
	for (int i = 0; i < SAGA_STATE_COUNT; i++)
		cJSON_AddNumberToObject(s, saga_state_name((saga_state)i), (double)d->sagas[i]);
	cJSON *p = cJSON_AddObjectToObject(j, "payments");
	cJSON_AddNumberToObject(p, "charges", (double)d->charges);
	cJSON_AddNumberToObject(p, "charged", (double)d->charged);
	cJSON_AddNumberToObject(p, "refunds", (double)d->refunds);
	cJSON_AddNumberToObject(p, "refunded", (double)d->refunded);
	cJSON_AddNumberToObject(p, "revenue", (double)(d->charged - d->refunded));
	cJSON *st = cJSON_AddObjectToObject(j, "stock");
	cJSON_AddNumberToObject(st, "products", (double)d->stock.products);
	cJSON_AddNumberToObject(st, "initial", (double)d->stock.initial);
	cJSON_AddNumberToObject(st, "available", (double)(d->stock.stock - d->stock.reserved));
	cJSON_AddNumberToObject(st, "reserved", (double)d->stock.reserved);
	cJSON_AddNumberToObject(st, "shipped", (double)d->stock.shipped);
	cJSON *t = cJSON_AddObjectToObject(j, "takeovers");
	cJSON_AddNumberToObject(t, "sagas", (double)d->moved);
	cJSON_AddNumberToObject(t, "changes", (double)d->moves);
	print_json(j);
}

static void report_print_text(const report_data *d)
{
	char rev[32], chg[32], ref[32];
	money(rev, sizeof rev, d->charged - d->refunded);
	money(chg, sizeof chg, d->charged);
	money(ref, sizeof ref, d->refunded);
	printf("orders:   %" PRId64 " (", d->norders);
	for (int i = 0; i < ECOM_ORDER_STATUS_COUNT; i++)
		printf("%s%s %" PRId64, i ? ", " : "", ecom_order_status_name(i), d->orders[i]);
	printf(")\nsagas:    %" PRId64 " (", d->nsagas);
	for (int i = 0; i < SAGA_STATE_COUNT; i++)
		printf("%s%s %" PRId64, i ? ", " : "", saga_state_name((saga_state)i), d->sagas[i]);
	printf(")\nrevenue:  %s (charged %s in %" PRId64 " charge%s, refunded %s in %" PRId64
	       " refund%s)\n",
	       rev, chg, d->charges, d->charges == 1 ? "" : "s", ref, d->refunds,
	       d->refunds == 1 ? "" : "s");
	printf("stock:    %" PRId64 " products, %" PRId64 " units: available %" PRId64
	       ", reserved %" PRId64 ", shipped %" PRId64 "\n",
	       d->stock.products, d->stock.initial, d->stock.stock - d->stock.reserved,
	       d->stock.reserved, d->stock.shipped);
	printf("owners:   %" PRId64 " saga%s taken over by another process (%" PRId64
	       " change%s of process)\n",
	       d->moved, d->moved == 1 ? "" : "s", d->moves, d->moves == 1 ? "" : "s");
}

int cmd_report(args *a, globals *g)
{
	int metrics = 0;
	while (a->i < a->argc) {
		int r = global_opt(a, g);
		if (r < 0)
			return EXIT_USAGE;
		if (!r && strcmp(a->argv[a->i], "--metrics") == 0) {
			a->i++;
			metrics = 1;
		} else if (!r) {
			errorf("report: unknown option \"%s\"", a->argv[a->i]);
			return EXIT_USAGE;
		}
	}
	ecom_app app;
	memset(&app, 0, sizeof app);
	snprintf(app.dir, sizeof app.dir, "%s", g->data);
	report_data d;
	memset(&d, 0, sizeof d);
	int ex = app_open_services(&app, "report");
	if (ex == EXIT_OK)
		ex = report_collect(&app, g, &d);
	if (ex == EXIT_OK && metrics) {
		ex = app.engine ? print_metrics(app.engine, SAGA_METRICS_STORE, "report") : EXIT_OK;
	} else if (ex == EXIT_OK) {
		if (g->json)
			report_print_json(&d);
		else
			report_print_text(&d);
	}
	app_close(&app);
	return ex;
}
