/* Driving libsaga from a plain poll(2) loop, as a program with an event
 * loop of its own does (libuv, GLib, epoll: the same three calls).
 *
 * The pattern, caller-driven (workers = 0):
 *   saga_engine_fd()   once: a descriptor that is readable when the engine
 *                      has work now (a completion or start from another
 *                      thread, a round that left work due, a timer due);
 *   saga_next_due()    before each poll: when the next timer falls due, the
 *                      poll's timeout (0 = no timer: wait for descriptors);
 *   saga_run_due()     after each poll: runs what is due and drains the
 *                      descriptor (leaving it readable if work remains).
 *
 * The saga: "reserve" is asynchronous (its answer comes from another thread,
 * as a reply from a remote service would), "notify" fails its first attempt
 * and is retried 200 ms later (a timer). Built by meson and run as a test.
 * SPDX-License-Identifier: MIT */
#include <saga.h>
#include <cjson/cJSON.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static saga_engine *engine;
static pthread_t warehouse;
static char reserve_key[128];

/* The warehouse answers from its own thread, some time later. */
static void *warehouse_reply(void *arg)
{
	struct timespec ts = { 0, 100 * 1000000L };
	nanosleep(&ts, NULL);
	cJSON *out = cJSON_CreateObject();
	cJSON_AddStringToObject(out, "reservation", "R-7");
	int rc = saga_complete(engine, reserve_key, SAGA_STEP_OK, out); /* wakes the loop */
	printf("warehouse: reserved (%s)\n", saga_strerror(rc));
	return arg;
}

static saga_step_result reserve(saga_step_ctx *ctx, void *user)
{
	snprintf(reserve_key, sizeof(reserve_key), "%s", saga_step_key(ctx));
	printf("reserve: request sent, key %s\n", reserve_key);
	if (pthread_create(&warehouse, NULL, warehouse_reply, NULL) != 0)
		return SAGA_STEP_RETRY;
	return SAGA_STEP_PENDING; /* completed later by its key */
}

static saga_step_result unreserve(saga_step_ctx *ctx, void *user)
{
	return SAGA_STEP_OK;
}

static saga_step_result notify(saga_step_ctx *ctx, void *user)
{
	unsigned attempt = (unsigned)saga_step_attempt(ctx);
	printf("notify: attempt %u\n", attempt);
	return attempt == 1 ? SAGA_STEP_RETRY : SAGA_STEP_OK;
}

static uint64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int main(int argc, char **argv)
{
	saga_options opts = SAGA_OPTIONS_INIT;
	opts.path = argc > 1 ? argv[1] : "poll-loop.db";
	char err[256];
	if (saga_engine_open(&engine, &opts, err, sizeof(err)) != SAGA_OK) {
		fprintf(stderr, "open: %s\n", err);
		return 1;
	}
	saga_definition *def;
	saga_definition_new(&def, "order", 1);
	saga_step_spec steps[] = {
		{ "reserve", SAGA_STEP_COMPENSATABLE, reserve, unreserve, NULL },
		{ "notify", SAGA_STEP_RETRIABLE, notify, NULL, NULL },
	};
	for (size_t i = 0; i < 2; i++)
		saga_definition_add_step(def, &steps[i]);
	saga_retry_policy retry = { 0, 0, SAGA_BACKOFF_CONSTANT, 200, 0, 2.0, SAGA_JITTER_NONE };
	saga_definition_set_retry(def, "notify", &retry);
	int rc = saga_engine_register(engine, def);
	saga_definition_free(def);
	int64_t id = 0;
	int fd = -1;
	if (rc == SAGA_OK)
		rc = saga_start(engine, &id, NULL, "order", NULL, NULL);
	if (rc == SAGA_OK)
		rc = saga_engine_fd(engine, &fd);
	saga_instance_info info = { 0 };
	unsigned polls = 0;
	while (rc == SAGA_OK && (rc = saga_get(engine, &info, id)) == SAGA_OK &&
	       info.state != SAGA_COMPLETED && info.state != SAGA_COMPENSATED &&
	       info.state != SAGA_STUCK) {
		uint64_t due = 0, now = wall_ms();
		if ((rc = saga_next_due(engine, &due)) != SAGA_OK)
			break;
		int timeout = due == 0 ? -1 : due <= now ? 0 : (int)(due - now);
		struct pollfd pfd = { fd, POLLIN, 0 }; /* a program adds its own descriptors */
		poll(&pfd, 1, timeout);
		polls++;
		rc = saga_run_due(engine, NULL); /* drains the descriptor */
	}
	if (rc == SAGA_OK)
		printf("saga %lld: %s after %u polls\n", (long long)id, saga_state_name(info.state),
		       polls);
	else
		fprintf(stderr, "error: %s\n", saga_engine_errmsg(engine));
	if (reserve_key[0])
		pthread_join(warehouse, NULL);
	saga_engine_close(engine);
	return rc == SAGA_OK && info.state == SAGA_COMPLETED ? 0 : 1;
}
