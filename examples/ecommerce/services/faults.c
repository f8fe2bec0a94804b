/* Failure injection for the e-commerce services: failure rates, latency,
 * timeouts and crash points, reproducible from a seed.
 * SPDX-License-Identifier: MIT */
#include "faults.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "msg.h"

#define MAX_CRASHES  16
#define MAX_SLEEP_MS 600000u /* ten minutes: more is a typo */

/* The operations, and whether a permanent failure is a legitimate answer:
 * only forward actions before or at the pivot may fail for good. A
 * compensation or a retriable step that failed for good would only leave
 * an instance STUCK, which is not what a failure rate is meant to test. */
static const struct op_info {
	ecom_service service;
	const char *op;
	int may_fail;
} ops[] = {
	{ ECOM_ORDER, "create", 1 },          { ECOM_ORDER, "cancel", 0 },
	{ ECOM_ORDER, "confirm", 0 },         { ECOM_INVENTORY, "reserve", 1 },
	{ ECOM_INVENTORY, "release", 0 },     { ECOM_INVENTORY, "ship", 0 },
	{ ECOM_PAYMENT, "charge", 1 },        { ECOM_PAYMENT, "refund", 0 },
	{ ECOM_PAYMENT, "refund_amount", 0 }, { ECOM_SHIPPING, "schedule", 1 },
	{ ECOM_SHIPPING, "commit", 0 },       { ECOM_SHIPPING, "cancel", 0 },
	{ ECOM_NOTIFICATION, "send", 0 },
};
#define NOPS (sizeof ops / sizeof ops[0])

static const char *const crash_points[] = {
	"order.create.before",      "order.create.after",           "order.cancel.before",
	"order.cancel.after",       "order.confirm.before",         "order.confirm.after",
	"inventory.reserve.before", "inventory.reserve.after",      "inventory.release.before",
	"inventory.release.after",  "inventory.ship.before",        "inventory.ship.after",
	"payment.charge.before",    "payment.charge.after",         "payment.refund.before",
	"payment.refund.after",     "payment.refund_amount.before", "payment.refund_amount.after",
	"shipping.schedule.before", "shipping.schedule.after",      "shipping.commit.before",
	"shipping.commit.after",    "shipping.cancel.before",       "shipping.cancel.after",
	"notification.send.before", "notification.send.after",      NULL
};

typedef struct crash_point {
	char point[64];
	uint32_t nth;
	uint32_t hits;
} crash_point;

typedef struct fault_config {
	double fail[ECOM_SERVICE_COUNT];
	double transient[ECOM_SERVICE_COUNT];
	uint32_t latency_ms[ECOM_SERVICE_COUNT];
	uint32_t timeout_ms[ECOM_SERVICE_COUNT];
	double timeout_rate[ECOM_SERVICE_COUNT];
	crash_point crashes[MAX_CRASHES];
	size_t ncrashes;
} fault_config;

struct ecom_faults {
	pthread_mutex_t lock;
	uint64_t rng;
	fault_config cfg;
	ecom_fault_counts counts[ECOM_SERVICE_COUNT];
	ecom_crash_fn crash_fn;
	void *crash_user;
};

uint64_t ecom_rand_next(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

double ecom_rand_unit(uint64_t *state)
{
	return (double)(ecom_rand_next(state) >> 11) * (1.0 / 9007199254740992.0);
}

int64_t ecom_rand_range(uint64_t *state, int64_t lo, int64_t hi)
{
	uint64_t span = (uint64_t)hi - (uint64_t)lo + 1u;
	if (span == 0) /* the whole 64-bit range */
		return (int64_t)ecom_rand_next(state);
	return lo + (int64_t)(ecom_rand_next(state) % span);
}

const char *const *ecom_crash_points(void)
{
	return crash_points;
}

static int valid_point(const char *p)
{
	for (size_t i = 0; crash_points[i]; i++)
		if (strcmp(crash_points[i], p) == 0)
			return 1;
	return 0;
}

int ecom_faults_new(ecom_faults **out, uint64_t seed)
{
	if (!out)
		return SAGA_EINVAL;
	*out = NULL;
	ecom_faults *f = calloc(1, sizeof *f);
	if (!f)
		return SAGA_ENOMEM;
	if (pthread_mutex_init(&f->lock, NULL) != 0) {
		free(f);
		return SAGA_ENOMEM;
	}
	f->rng = seed;
	*out = f;
	return 0;
}

void ecom_faults_free(ecom_faults *f)
{
	if (!f)
		return;
	pthread_mutex_destroy(&f->lock);
	free(f);
}

static int valid_rate(double r)
{
	return r >= 0.0 && r <= 1.0; /* false for NaN */
}

static int valid_service(int service)
{
	return service >= -1 && service < ECOM_SERVICE_COUNT;
}

/* Applies fn to one service or, with service -1, to all. */
#define FOR_SERVICES(service, i)                    \
	for (int i = (service) < 0 ? 0 : (service); \
	     i < ((service) < 0 ? ECOM_SERVICE_COUNT : (service) + 1); i++)

int ecom_faults_set_fail(ecom_faults *f, int service, double rate)
{
	if (!f || !valid_service(service) || !valid_rate(rate))
		return SAGA_EINVAL;
	pthread_mutex_lock(&f->lock);
	FOR_SERVICES(service, i)
	f->cfg.fail[i] = rate;
	pthread_mutex_unlock(&f->lock);
	return 0;
}

int ecom_faults_set_transient(ecom_faults *f, int service, double rate)
{
	if (!f || !valid_service(service) || !valid_rate(rate))
		return SAGA_EINVAL;
	pthread_mutex_lock(&f->lock);
	FOR_SERVICES(service, i)
	f->cfg.transient[i] = rate;
	pthread_mutex_unlock(&f->lock);
	return 0;
}

int ecom_faults_set_latency(ecom_faults *f, int service, uint32_t ms)
{
	if (!f || !valid_service(service) || ms > MAX_SLEEP_MS)
		return SAGA_EINVAL;
	pthread_mutex_lock(&f->lock);
	FOR_SERVICES(service, i)
	f->cfg.latency_ms[i] = ms;
	pthread_mutex_unlock(&f->lock);
	return 0;
}

int ecom_faults_set_timeout(ecom_faults *f, int service, uint32_t sleep_ms, double rate)
{
	if (!f || !valid_service(service) || sleep_ms > MAX_SLEEP_MS || !valid_rate(rate))
		return SAGA_EINVAL;
	pthread_mutex_lock(&f->lock);
	FOR_SERVICES(service, i)
	{
		f->cfg.timeout_ms[i] = sleep_ms;
		f->cfg.timeout_rate[i] = rate;
	}
	pthread_mutex_unlock(&f->lock);
	return 0;
}

static int add_crash(fault_config *cfg, const char *point, uint32_t nth)
{
	if (!valid_point(point) || nth == 0)
		return SAGA_EINVAL;
	for (size_t i = 0; i < cfg->ncrashes; i++) {
		if (strcmp(cfg->crashes[i].point, point) == 0) {
			cfg->crashes[i].nth = nth;
			cfg->crashes[i].hits = 0;
			return 0;
		}
	}
	if (cfg->ncrashes == MAX_CRASHES)
		return SAGA_EINVAL;
	crash_point *c = &cfg->crashes[cfg->ncrashes++];
	snprintf(c->point, sizeof c->point, "%s", point);
	c->nth = nth;
	c->hits = 0;
	return 0;
}

int ecom_faults_add_crash(ecom_faults *f, const char *point, uint32_t nth)
{
	if (!f || !point)
		return SAGA_EINVAL;
	pthread_mutex_lock(&f->lock);
	int rc = add_crash(&f->cfg, point, nth);
	pthread_mutex_unlock(&f->lock);
	return rc;
}

void ecom_faults_set_crash_hook(ecom_faults *f, ecom_crash_fn fn, void *user)
{
	if (!f)
		return;
	pthread_mutex_lock(&f->lock);
	f->crash_fn = fn;
	f->crash_user = user;
	pthread_mutex_unlock(&f->lock);
}

int ecom_faults_counts(const ecom_faults *f, int service, ecom_fault_counts *out)
{
	if (!f || !out || service < 0 || service >= ECOM_SERVICE_COUNT)
		return SAGA_EINVAL;
	ecom_faults *m = (ecom_faults *)f; /* the lock is not part of the value */
	pthread_mutex_lock(&m->lock);
	*out = f->counts[service];
	pthread_mutex_unlock(&m->lock);
	return 0;
}

/* ---- parsing ---- */

int ecom_parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	if (!s || !*s)
		return -1;
	uint64_t v = 0;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		unsigned d = (unsigned)(*p - '0');
		if (v > (max - d) / 10u)
			return -1;
		v = v * 10u + d;
	}
	*out = v;
	return 0;
}

/* A rate: digits and a point (1, 0.25, .5, 1e-3), no sign, no blank (the
 * entry is trimmed before), no "inf" or "nan" or hex: strtod takes them all. */
static int parse_rate(const char *s, double *out)
{
	if (!((*s >= '0' && *s <= '9') || *s == '.'))
		return -1;
	for (const char *p = s; *p; p++)
		if (!((*p >= '0' && *p <= '9') || *p == '.' || *p == 'e' || *p == 'E' ||
		      ((*p == '-' || *p == '+') && p > s && (p[-1] == 'e' || p[-1] == 'E'))))
			return -1;
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (end == s || *end || errno || !valid_rate(v))
		return -1;
	*out = v;
	return 0;
}

static int parse_u32(const char *s, uint32_t max, uint32_t *out)
{
	uint64_t v;
	if (ecom_parse_u64(s, max, &v) != 0)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

static void trim(char *s)
{
	size_t n = strlen(s);
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		s[--n] = '\0';
	size_t i = 0;
	while (s[i] == ' ' || s[i] == '\t')
		i++;
	memmove(s, s + i, n - i + 1);
}

enum { K_FAIL, K_TRANSIENT, K_LATENCY, K_TIMEOUT, K_CRASH };

static int parse_entry(fault_config *cfg, int kind, char *entry, char *msg, size_t msg_size)
{
	if (kind == K_CRASH) {
		uint32_t nth = 1;
		char *colon = strchr(entry, ':');
		if (colon) {
			*colon = '\0';
			if (parse_u32(colon + 1, UINT32_MAX, &nth) != 0 || nth == 0) {
				svc_msg(msg, msg_size, "crash point %s: \"%s\" is not a count >= 1",
				        entry, colon + 1);
				return SAGA_EINVAL;
			}
		}
		if (add_crash(cfg, entry, nth) != 0) {
			svc_msg(msg, msg_size,
			        valid_point(entry) ? "too many crash points (at most 16)"
			                           : "unknown crash point \"%s\" (expected "
			                             "<service>.<op>.before|after, "
			                             "e.g. payment.charge.after)",
			        entry);
			return SAGA_EINVAL;
		}
		return 0;
	}

	char *eq = strchr(entry, '=');
	if (!eq) {
		svc_msg(msg, msg_size, "\"%s\": expected SERVICE=VALUE", entry);
		return SAGA_EINVAL;
	}
	*eq = '\0';
	char *name = entry, *value = eq + 1;
	trim(name);
	trim(value);
	int service;
	if (strcmp(name, "*") == 0 || strcmp(name, "all") == 0) {
		service = -1;
	} else if ((service = ecom_service_parse(name)) < 0) {
		svc_msg(msg, msg_size,
		        "unknown service \"%s\" (expected order, inventory, payment, "
		        "shipping, notification or *)",
		        name);
		return SAGA_EINVAL;
	}

	double rate = 1.0;
	uint32_t ms = 0;
	switch (kind) {
	case K_FAIL:
	case K_TRANSIENT:
		if (parse_rate(value, &rate) != 0) {
			svc_msg(msg, msg_size, "%s: \"%s\" is not a rate between 0 and 1", name,
			        value);
			return SAGA_EINVAL;
		}
		FOR_SERVICES(service, i)
		{
			if (kind == K_FAIL)
				cfg->fail[i] = rate;
			else
				cfg->transient[i] = rate;
		}
		return 0;
	case K_LATENCY:
		if (parse_u32(value, MAX_SLEEP_MS, &ms) != 0) {
			svc_msg(msg, msg_size, "%s: \"%s\" is not a number of milliseconds (0..%u)",
			        name, value, MAX_SLEEP_MS);
			return SAGA_EINVAL;
		}
		FOR_SERVICES(service, i)
		cfg->latency_ms[i] = ms;
		return 0;
	default: {
		char *colon = strchr(value, ':');
		if (colon) {
			*colon = '\0';
			if (parse_rate(colon + 1, &rate) != 0) {
				svc_msg(msg, msg_size, "%s: \"%s\" is not a rate between 0 and 1",
				        name, colon + 1);
				return SAGA_EINVAL;
			}
		}
		if (parse_u32(value, MAX_SLEEP_MS, &ms) != 0) {
			svc_msg(msg, msg_size, "%s: \"%s\" is not a number of milliseconds (0..%u)",
			        name, value, MAX_SLEEP_MS);
			return SAGA_EINVAL;
		}
		FOR_SERVICES(service, i)
		{
			cfg->timeout_ms[i] = ms;
			cfg->timeout_rate[i] = rate;
		}
		return 0;
	}
	}
}

int ecom_faults_parse(ecom_faults *f, const char *kind, const char *spec, char *msg,
                      size_t msg_size)
{
	svc_msg(msg, msg_size, "%s", "");
	if (!f || !kind || !spec)
		return SAGA_EINVAL;
	static const char *const kinds[] = { "fail", "transient", "latency", "timeout", "crash" };
	int k = -1;
	for (int i = 0; i < 5; i++)
		if (strcmp(kind, kinds[i]) == 0)
			k = i;
	if (k < 0) {
		svc_msg(msg, msg_size, "unknown fault kind \"%s\"", kind);
		return SAGA_EINVAL;
	}
	char *copy = strdup(spec);
	if (!copy)
		return SAGA_ENOMEM;

	pthread_mutex_lock(&f->lock);
	fault_config cfg = f->cfg; /* all or nothing: parse into a copy */
	pthread_mutex_unlock(&f->lock);

	int rc = 0;
	char *save = NULL;
	for (char *e = strtok_r(copy, ",", &save); e && rc == 0; e = strtok_r(NULL, ",", &save)) {
		trim(e);
		if (*e)
			rc = parse_entry(&cfg, k, e, msg, msg_size);
	}
	free(copy);
	if (rc == 0) {
		pthread_mutex_lock(&f->lock);
		f->cfg = cfg;
		pthread_mutex_unlock(&f->lock);
	}
	return rc;
}

int ecom_faults_from_env(ecom_faults *f, char *msg, size_t msg_size)
{
	if (!f)
		return SAGA_EINVAL;
	static const struct {
		const char *var, *kind;
	} vars[] = {
		{ "ECOMMERCE_FAIL", "fail" },       { "ECOMMERCE_TRANSIENT", "transient" },
		{ "ECOMMERCE_LATENCY", "latency" }, { "ECOMMERCE_TIMEOUT", "timeout" },
		{ "ECOMMERCE_CRASH", "crash" },
	};
	const char *seed = getenv("ECOMMERCE_FAULT_SEED");
	if (seed && *seed) {
		uint64_t v;
		if (ecom_parse_u64(seed, UINT64_MAX, &v) != 0) {
			svc_msg(msg, msg_size,
			        "ECOMMERCE_FAULT_SEED: \"%.*s\" is not a number (decimal "
			        "digits, 0..%" PRIu64 ")",
			        64, seed, UINT64_MAX);
			return SAGA_EINVAL;
		}
		pthread_mutex_lock(&f->lock);
		f->rng = v;
		pthread_mutex_unlock(&f->lock);
	}
	for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
		const char *v = getenv(vars[i].var);
		if (!v)
			continue;
		char sub[ECOM_MSG_MAX] = "";
		int rc = ecom_faults_parse(f, vars[i].kind, v, sub, sizeof sub);
		if (rc != 0) {
			svc_msg(msg, msg_size, "%s: %s", vars[i].var, sub);
			return rc;
		}
	}
	return 0;
}

/* ---- what the services call ---- */

static void sleep_ms(uint32_t ms)
{
	struct timespec ts = { (time_t)(ms / 1000u), (long)(ms % 1000u) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static int may_fail(ecom_service service, const char *op)
{
	for (size_t i = 0; i < NOPS; i++)
		if (ops[i].service == service && strcmp(ops[i].op, op) == 0)
			return ops[i].may_fail;
	return 0;
}

int ecom_faults_draw(ecom_faults *f, ecom_service service, const char *op)
{
	if (!f || (int)service < 0 || service >= ECOM_SERVICE_COUNT)
		return ECOM_OK;
	pthread_mutex_lock(&f->lock);
	/* Always three draws, whatever is configured, so that the sequence of
	 * decisions for a seed does not depend on which faults are on. */
	double r_fail = ecom_rand_unit(&f->rng);
	double r_transient = ecom_rand_unit(&f->rng);
	double r_timeout = ecom_rand_unit(&f->rng);
	uint32_t latency = f->cfg.latency_ms[service];
	int timeout = r_timeout < f->cfg.timeout_rate[service] && f->cfg.timeout_ms[service] > 0;
	uint32_t timeout_ms = timeout ? f->cfg.timeout_ms[service] : 0;
	int fail = may_fail(service, op) && r_fail < f->cfg.fail[service];
	int transient = !fail && r_transient < f->cfg.transient[service];
	ecom_fault_counts *c = &f->counts[service];
	c->calls++;
	c->timeouts += (uint64_t)timeout;
	pthread_mutex_unlock(&f->lock);

	if (latency)
		sleep_ms(latency);
	if (timeout_ms)
		sleep_ms(timeout_ms); /* then do the work: the result arrives late */
	return fail ? ECOM_REFUSED : transient ? ECOM_TRANSIENT : ECOM_OK;
}

int ecom_faults_give(ecom_faults *f, ecom_service service, const char *op, int answer, char *msg,
                     size_t msg_size)
{
	if (!f || (int)service < 0 || service >= ECOM_SERVICE_COUNT || answer == ECOM_OK)
		return ECOM_OK;
	pthread_mutex_lock(&f->lock);
	if (answer == ECOM_REFUSED)
		f->counts[service].failures++;
	else
		f->counts[service].transients++;
	pthread_mutex_unlock(&f->lock);
	svc_msg(msg, msg_size,
	        answer == ECOM_REFUSED ? "injected failure: %s.%s"
	                               : "injected transient failure: %s.%s",
	        ecom_service_name(service), op);
	return answer;
}

int ecom_faults_enter(ecom_faults *f, ecom_service service, const char *op, char *msg,
                      size_t msg_size)
{
	svc_msg(msg, msg_size, "%s", "");
	return ecom_faults_give(f, service, op, ecom_faults_draw(f, service, op), msg, msg_size);
}

void ecom_faults_crash(ecom_faults *f, ecom_service service, const char *op, const char *when)
{
	if (!f)
		return;
	char point[64];
	snprintf(point, sizeof point, "%s.%s.%s", ecom_service_name(service), op, when);
	pthread_mutex_lock(&f->lock);
	int fire = 0;
	for (size_t i = 0; i < f->cfg.ncrashes; i++) {
		crash_point *c = &f->cfg.crashes[i];
		if (strcmp(c->point, point) == 0 && ++c->hits == c->nth)
			fire = 1;
	}
	ecom_crash_fn fn = f->crash_fn;
	void *user = f->crash_user;
	if (fire)
		f->counts[service].crashes++;
	pthread_mutex_unlock(&f->lock);
	if (!fire)
		return;
	if (fn)
		fn(point, user);
	else
		raise(SIGKILL);
}
