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

int cmd_run(args *a, globals *g)
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
	if ((ex = app_open(&app, g, "run")) != EXIT_OK)
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
