/* The load generator: `run` starts random orders a few at a time, waits
 * for each to end, and reports throughput, latency and outcomes.
 * SPDX-License-Identifier: MIT */
#include "app.h"
#include "commands.h"
#include "faults.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------------- */
/* run                                                                    */
/* ---------------------------------------------------------------------- */

/* The end of a saga, as the listener saw it. */
typedef struct fin_event {
	int64_t id;
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
	rs->q[rs->qlen++] = (fin_event){ ev->instance, now };
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
	"1 Main Street, Springfield",
	"22 Acacia Avenue, Leeds",
	"5 Rue de Rivoli, Paris",
	"742 Evergreen Terrace, Springfield",
	"10 Downing Street, London",
	"221B Baker Street, London",
	"1600 Amphitheatre Pkwy, Mountain View",
	"4 Privet Drive, Little Whinging",
};

static const ecom_product *pick_product(const catalogue *c, uint64_t *rng)
{
	int want_stock = ecom_rand_unit(rng) < 0.9;
	for (int tries = 0; tries < 32; tries++) {
		const ecom_product *p =
		        &c->products[ecom_rand_range(rng, 0, (int64_t)c->nproducts - 1)];
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

/* A random order that passes the pre-checks. Most are meant to go through:
 * nine lines in ten come from products with stock to spare and nine orders
 * in ten from customers with a normal credit limit; the rest (and the stock
 * and credit that earlier orders use up) fail in the services: out of stock,
 * credit limit exceeded. Input JSON owned by the caller. */
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
		if (dup) { /* a tiny catalogue: fewer lines */
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
		.items = items,
		.nitems = n,
		.total = total,
		.currency = "USD",
		.address = addresses[ecom_rand_range(
		        rng, 0, (int64_t)(sizeof addresses / sizeof addresses[0]) - 1)],
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

/* What `run` is asked for. */
typedef struct run_cfg {
	int64_t orders, concurrency, stall_s;
	uint64_t seed;
	int metrics; /* print the metrics instead of the summary */
} run_cfg;

/* The run's orders as they start and end; index i is the i-th started. */
typedef struct run_tally {
	size_t n;            /* orders asked for */
	int64_t *ids;        /* their sagas */
	double *t0;          /* when each started (s, monotonic) */
	double *lat;         /* start to end (ms) */
	unsigned char *done; /* its end was seen */
	idmap map;           /* saga id -> index */
	size_t started, finished, inflight;
	size_t sweep_from; /* orders before it have all ended */
	size_t old_events; /* ends of sagas this run took over from another process */
	double t_start, t_end;
} run_tally;

/* Phase 1: reads the options into c. 0, or -1 after a message. */
static int run_options(args *a, globals *g, run_cfg *c, ecom_faults *faults)
{
	while (a->i < a->argc) {
		int x = workload_opt(a, g, faults);
		if (x < 0)
			return -1;
		if (x)
			continue;
		if (is_opt(a, "--orders")) {
			if (opt_i64(a, "--orders", 1, 1000000, &c->orders, "run: --orders",
			            "a number in 1..1000000") != 0)
				return -1;
		} else if (is_opt(a, "--concurrency")) {
			if (opt_i64(a, "--concurrency", 1, 256, &c->concurrency,
			            "run: --concurrency", "a number in 1..256") != 0)
				return -1;
		} else if (strcmp(a->argv[a->i], "--metrics") == 0) {
			a->i++;
			c->metrics = 1;
		} else if (is_opt(a, "--wait")) {
			if (opt_i64(a, "--wait", 1, 86400, &c->stall_s, "run: --wait",
			            "a number of seconds (1..86400)") != 0)
				return -1;
		} else {
			errorf("run: unknown option \"%s\"", a->argv[a->i]);
			return -1;
		}
	}
	return 0;
}

/* Phase 2: the products and customers the random orders are made of. Exit
 * code. */
static int run_load_catalogue(ecom_app *app, const globals *g, catalogue *cat)
{
	if (inventory_list_products(app->inventory, cat_product, cat) != 0 ||
	    order_list_customers(app->order, cat_customer, cat) != 0 || cat->nproducts == 0 ||
	    cat->ncustomers == 0) {
		errorf("run: %s has no products or customers", g->data);
		return EXIT_USAGE;
	}
	return EXIT_OK;
}

static int run_tally_init(run_tally *t, size_t n)
{
	t->n = n;
	t->ids = calloc(n, sizeof *t->ids);
	t->t0 = calloc(n, sizeof *t->t0);
	t->lat = calloc(n, sizeof *t->lat);
	t->done = calloc(n, 1);
	if (!t->ids || !t->t0 || !t->lat || !t->done || idmap_init(&t->map, n) != 0) {
		errorf("run: out of memory");
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

static void run_tally_free(run_tally *t)
{
	free(t->map.keys);
	free(t->map.vals);
	free(t->ids);
	free(t->t0);
	free(t->lat);
	free(t->done);
}

/* Starts orders until `concurrency` are in flight or all have started.
 * Exit code. */
static int run_start_more(ecom_app *app, const run_cfg *c, const catalogue *cat, const char *prefix,
                          uint64_t *rng, run_tally *t)
{
	while (t->started < t->n && t->inflight < (size_t)c->concurrency) {
		char key[96];
		snprintf(key, sizeof key, "%s-%06zu", prefix, t->started + 1);
		cJSON *input = gen_order(cat, rng, key);
		if (!input) {
			errorf("run: out of memory");
			return EXIT_FAIL;
		}
		int64_t id = 0;
		t->t0[t->started] = mono_s();
		/* Register the id before a worker can finish it: the listener only
		 * queues, the id is matched here. */
		int rc = saga_start(app->engine, &id, NULL, ECOM_SAGA_NAME, key, input);
		cJSON_Delete(input);
		if (rc != SAGA_OK) {
			errorf("run: starting order %zu: %s", t->started + 1,
			       saga_engine_errmsg(app->engine));
			return EXIT_FAIL;
		}
		t->ids[t->started] = id;
		idmap_put(&t->map, id, t->started);
		t->started++;
		t->inflight++;
	}
	return EXIT_OK;
}

/* Waits up to 100 ms for the listener to queue an end, then takes the
 * queue and marks the orders it names finished (*last_change: when the
 * latest of them ended). Exit code. */
static int run_collect(run_state *rs, run_tally *t, double *last_change)
{
	pthread_mutex_lock(&rs->mu);
	if (rs->qlen == 0) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&rs->cv, &rs->mu, &ts);
	}
	fin_event *q = rs->q;
	size_t qlen = rs->qlen;
	rs->q = NULL;
	rs->qlen = rs->qcap = 0;
	int oom = rs->oom;
	pthread_mutex_unlock(&rs->mu);
	if (oom) {
		errorf("run: out of memory");
		free(q);
		return EXIT_FAIL;
	}
	for (size_t k = 0; k < qlen; k++) {
		size_t idx;
		if (!idmap_get(&t->map, q[k].id, &idx)) {
			t->old_events++; /* taken over from a process that died or closed */
			continue;
		}
		if (t->done[idx])
			continue;
		t->done[idx] = 1;
		t->lat[idx] = (q[k].at - t->t0[idx]) * 1000.0;
		t->finished++;
		t->inflight--;
		*last_change = q[k].at;
	}
	free(q);
	return EXIT_OK;
}

/* Marks the run's orders that ended in another process finished: the
 * listener hears only this process's events, and an order of this run is
 * taken over by another process when this one lost its lease (stopped, or
 * stalled past it). Their latency is the store's, creation to last change.
 * Exit code. */
static int run_sweep(ecom_app *app, run_tally *t, double *last_change)
{
	while (t->sweep_from < t->started && t->done[t->sweep_from])
		t->sweep_from++;
	for (size_t i = t->sweep_from; i < t->started; i++) {
		saga_instance_info in;
		if (t->done[i])
			continue;
		if (saga_get(app->engine, &in, t->ids[i]) != SAGA_OK) {
			errorf("run: %s", saga_engine_errmsg(app->engine));
			return EXIT_FAIL;
		}
		if (!is_final(in.state))
			continue;
		t->done[i] = 1;
		t->lat[i] = (double)(in.updated_ms - in.created_ms);
		t->finished++;
		t->inflight--;
		*last_change = mono_s();
	}
	return EXIT_OK;
}

/* Phase 3, the libsaga part: keeps `concurrency` orders in flight on the
 * engine's workers and collects their ends from the listener (and once a
 * second from the store, for those another process finished), until all
 * have ended or none has for --wait seconds. Exit code (EXIT_OK after a
 * stall too: the report says what is unfinished). */
static int run_loop(ecom_app *app, const run_cfg *c, const catalogue *cat, run_state *rs,
                    run_tally *t, int show)
{
	char prefix[40];
	new_key(prefix, sizeof prefix, "run");
	uint64_t rng = c->seed;
	t->t_start = mono_s();
	double last_progress = 0, last_change = t->t_start, last_sweep = t->t_start;
	while (t->finished < t->n) {
		int ex = run_start_more(app, c, cat, prefix, &rng, t);
		if (ex == EXIT_OK)
			ex = run_collect(rs, t, &last_change);
		double now = mono_s();
		if (ex == EXIT_OK && now - last_sweep >= 1.0) {
			ex = run_sweep(app, t, &last_change);
			last_sweep = now;
		}
		if (ex != EXIT_OK)
			return ex;
		if (show && (now - last_progress > 0.1 || t->finished == t->n)) {
			progress(t->finished, t->n, t->inflight, now - t->t_start);
			last_progress = now;
		}
		if (now - last_change > (double)c->stall_s) {
			if (show)
				fputc('\n', stderr);
			errorf("run: no order finished in %" PRId64 " s; %zu still in flight "
			       "(stopping; `recover` finishes them)",
			       c->stall_s, t->inflight);
			break;
		}
	}
	t->t_end = mono_s();
	if (show)
		fputc('\n', stderr);
	return EXIT_OK;
}

/* What the report says: final states and reasons from the store, and the
 * latencies of the orders seen to end. */
typedef struct run_summary {
	int64_t states[SAGA_STATE_COUNT];
	int64_t reasons[4];
	int64_t unfinished;
	double secs, tput, p50, p95, p99, pmax;
} run_summary;

static void run_summarize(ecom_app *app, const run_tally *t, run_summary *s)
{
	memset(s, 0, sizeof *s);
	double *sorted = calloc(t->finished ? t->finished : 1, sizeof *sorted);
	size_t ns = 0;
	for (size_t i = 0; i < t->started; i++) {
		saga_instance_info in;
		if (saga_get(app->engine, &in, t->ids[i]) != SAGA_OK)
			continue;
		s->states[in.state]++;
		if (in.state == SAGA_COMPENSATED && in.reason >= 0 && in.reason < 4)
			s->reasons[in.reason]++;
		if (!is_final(in.state))
			s->unfinished++;
		if (t->done[i] && sorted)
			sorted[ns++] = t->lat[i];
	}
	if (sorted)
		qsort(sorted, ns, sizeof *sorted, cmp_double);
	s->secs = t->t_end - t->t_start;
	s->tput = s->secs > 0 ? (double)t->finished / s->secs : 0;
	s->p50 = sorted ? percentile(sorted, ns, 0.50) : 0;
	s->p95 = sorted ? percentile(sorted, ns, 0.95) : 0;
	s->p99 = sorted ? percentile(sorted, ns, 0.99) : 0;
	s->pmax = ns && sorted ? sorted[ns - 1] : 0;
	free(sorted);
}

static void run_print_json(const run_cfg *c, const run_tally *t, const run_summary *s,
                           ecom_faults *faults)
{
	cJSON *j = cJSON_CreateObject();
	cJSON_AddNumberToObject(j, "orders", (double)t->n);
	cJSON_AddNumberToObject(j, "started", (double)t->started);
	cJSON_AddNumberToObject(j, "finished", (double)t->finished);
	cJSON_AddNumberToObject(j, "concurrency", (double)c->concurrency);
	cJSON_AddNumberToObject(j, "seed", (double)c->seed);
	cJSON_AddNumberToObject(j, "seconds", s->secs);
	cJSON_AddNumberToObject(j, "orders_per_second", s->tput);
	cJSON *st = cJSON_AddObjectToObject(j, "states");
	for (int i = 0; i < SAGA_STATE_COUNT; i++)
		cJSON_AddNumberToObject(st, saga_state_name((saga_state)i), (double)s->states[i]);
	cJSON *rj = cJSON_AddObjectToObject(j, "compensated_by_reason");
	for (int r = 1; r < 4; r++)
		cJSON_AddNumberToObject(rj, saga_reason_name((saga_reason)r),
		                        (double)s->reasons[r]);
	cJSON *lj = cJSON_AddObjectToObject(j, "latency_ms");
	cJSON_AddNumberToObject(lj, "p50", s->p50);
	cJSON_AddNumberToObject(lj, "p95", s->p95);
	cJSON_AddNumberToObject(lj, "p99", s->p99);
	cJSON_AddNumberToObject(lj, "max", s->pmax);
	cJSON *fj = cJSON_AddObjectToObject(j, "faults");
	for (int i = 0; i < ECOM_SERVICE_COUNT; i++) {
		ecom_fault_counts fc;
		ecom_faults_counts(faults, i, &fc);
		cJSON *o = cJSON_AddObjectToObject(fj, ecom_service_name(i));
		cJSON_AddNumberToObject(o, "calls", (double)fc.calls);
		cJSON_AddNumberToObject(o, "failures", (double)fc.failures);
		cJSON_AddNumberToObject(o, "transients", (double)fc.transients);
		cJSON_AddNumberToObject(o, "timeouts", (double)fc.timeouts);
	}
	cJSON_AddNumberToObject(j, "taken_over", (double)t->old_events);
	print_json(j);
}

static void run_print_text(const run_cfg *c, const run_tally *t, const run_summary *s,
                           ecom_faults *faults)
{
	printf("orders:      %zu of %zu finished in %.2f s, concurrency %" PRId64 ", seed %" PRIu64
	       "\n",
	       t->finished, t->n, s->secs, c->concurrency, c->seed);
	printf("throughput:  %.1f orders/s\n", s->tput);
	printf("latency:     p50 %.1f ms, p95 %.1f ms, p99 %.1f ms, max %.1f ms\n", s->p50, s->p95,
	       s->p99, s->pmax);
	printf("outcomes:    COMPLETED %" PRId64 ", COMPENSATED %" PRId64 " (failure %" PRId64
	       ", timeout %" PRId64 ", cancel %" PRId64 "), STUCK %" PRId64 ", unfinished %" PRId64
	       "\n",
	       s->states[SAGA_COMPLETED], s->states[SAGA_COMPENSATED],
	       s->reasons[SAGA_REASON_FAILURE], s->reasons[SAGA_REASON_TIMEOUT],
	       s->reasons[SAGA_REASON_CANCEL], s->states[SAGA_STUCK], s->unfinished);
	int any = 0;
	for (int i = 0; i < ECOM_SERVICE_COUNT; i++) {
		ecom_fault_counts fc;
		ecom_faults_counts(faults, i, &fc);
		if (!fc.failures && !fc.transients && !fc.timeouts)
			continue;
		if (!any)
			printf("injected:   ");
		any = 1;
		printf(" %s %" PRIu64 " failed/%" PRIu64 " transient/%" PRIu64
		       " timed out of %" PRIu64 " calls;",
		       ecom_service_name(i), fc.failures, fc.transients, fc.timeouts, fc.calls);
	}
	if (any)
		printf("\n");
	if (t->old_events)
		printf("also finished %zu saga%s taken over from another process (one that died "
		       "or closed with it unfinished)\n",
		       t->old_events, t->old_events == 1 ? "" : "s");
}

int cmd_run(args *a, globals *g)
{
	run_cfg c = { .orders = 100, .concurrency = 4, .stall_s = 60, .seed = 1 };
	ecom_app app;
	memset(&app, 0, sizeof app);
	/* The seed is read first so that the fault generator starts from it. */
	if (prescan_seed(a, &c.seed) != 0)
		return EXIT_USAGE;
	if (ecom_faults_new(&app.faults, c.seed ^ 0x6661756c7473ull) != 0) {
		errorf("run: out of memory");
		return EXIT_FAIL;
	}
	catalogue cat;
	memset(&cat, 0, sizeof cat);
	run_tally t;
	memset(&t, 0, sizeof t);
	run_state rs;
	memset(&rs, 0, sizeof rs);
	pthread_mutex_init(&rs.mu, NULL);
	pthread_cond_init(&rs.cv, NULL);
	int ex = EXIT_USAGE;
	if (run_options(a, g, &c, app.faults) != 0)
		goto out;
	engine_cfg ec = { (unsigned)c.concurrency, (unsigned)c.concurrency, c.seed, 1 };
	if ((ex = app_open(&app, g, "run")) != EXIT_OK ||
	    (ex = run_load_catalogue(&app, g, &cat)) != EXIT_OK ||
	    (ex = run_tally_init(&t, (size_t)c.orders)) != EXIT_OK ||
	    (ex = app_open_engine(&app, g, &ec, "run")) != EXIT_OK)
		goto out;
	if (saga_engine_add_listener(app.engine, run_listener, &rs) != SAGA_OK) {
		errorf("run: %s", saga_engine_errmsg(app.engine));
		ex = EXIT_FAIL;
		goto out;
	}
	if ((ex = run_loop(&app, &c, &cat, &rs, &t, !g->json && isatty(2))) != EXIT_OK)
		goto out;
	/* Phase 4: the report. */
	run_summary s;
	run_summarize(&app, &t, &s);
	if (c.metrics) {
		if ((ex = print_metrics(app.engine, SAGA_METRICS_PROCESS | SAGA_METRICS_STORE,
		                        "run")) != EXIT_OK)
			goto out;
	} else if (g->json) {
		run_print_json(&c, &t, &s, app.faults);
	} else {
		run_print_text(&c, &t, &s, app.faults);
	}
	ex = s.states[SAGA_STUCK] || s.unfinished || t.finished < t.n ? EXIT_FAIL : EXIT_OK;
out:
	/* Close the engine before the run state its listener uses goes away. */
	saga_engine_close(app.engine);
	app.engine = NULL;
	pthread_mutex_destroy(&rs.mu);
	pthread_cond_destroy(&rs.cv);
	free(rs.q);
	run_tally_free(&t);
	free(cat.products);
	free(cat.customers);
	app_close(&app);
	return ex;
}
