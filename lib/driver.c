/* The round and who runs it. A round brings due instances in (resume.c),
 * decides their next move (transition.c), commits (txn.c) and invokes the
 * step callbacks with the mutex released. The caller drives it
 * (saga_run_due, saga_run_due_start, saga_run_until_idle), or, with
 * workers, a driver thread does and worker threads invoke.
 *
 * The round's functions, outermost first:
 *   saga_run_due[_start] -> run_due -> run_round
 *   saga_run_until_idle  -> run_round, until nothing ran and nothing is due
 *   run_round            -> round_with_starts or process_round; then invoke
 *                           what that round started, with the mutex released
 *   driver_main          -> round_with_starts or process_round, in a loop;
 *                           worker_main invokes
 *   round_with_starts    -> starts_insert, then process_and_commit
 *   process_round        -> process_and_commit
 *   process_and_commit   -> fill (resume.c), apply_result and advance
 *                           (transition.c), put_instance and commit_txn (txn.c)
 * SPDX-License-Identifier: MIT */
#include "engine_int.h"

#include <string.h>
#include <time.h>

/* Processes every loaded instance that is not being invoked, and commits.
 * Instances that must be invoked are left in STAGE_INVOKE. Returns the
 * commit's result; *fill_rc receives that of bringing instances in, which
 * does not stop the others. */
static int process_and_commit(saga_engine *e, int *fill_rc)
{
	*fill_rc = fill(e);
	int rc;
	for (size_t i = 0; i < e->nloaded; i++) {
		inst *in = e->loaded[i];
		if ((in->stage != STAGE_RESULT && in->stage != STAGE_PROCESS) || in->lost)
			continue;
		/* From here its memory is ahead of the store until the commit. */
		in->uncommitted = true;
		if (in->stage == STAGE_RESULT) {
			in->fresh_start = false;
			if ((rc = apply_result(e, in)))
				goto fail;
			in->stage = STAGE_PROCESS;
		}
		/* Commands written for it while it ran, or by other processes. */
		if (e->ncmds && !in->row.inflight && (rc = apply_queued(e, in)))
			goto fail;
		enum next next;
		if ((rc = advance(e, in, &next)) || (rc = put_instance(e, in)))
			goto fail;
		in->stage = next == NEXT_INVOKE ? STAGE_INVOKE : STAGE_DONE;
	}
	if ((rc = commit_txn(e)))
		goto fail;
	/* Parked and finished instances leave memory only once durable; those
	 * lost to another process, at once. */
	for (size_t i = e->nloaded; i-- > 0;) {
		inst *in = e->loaded[i];
		if (in->lost && in->stage != STAGE_INVOKING) {
			/* This process may have taken it back under its new
			 * registration while the lost copy ran: look again. */
			e->active_scanned = false;
			unload(e, i);
		} else if (in->stage == STAGE_DONE) {
			unload(e, i);
		}
	}
	return SAGA_OK;
fail:
	discard_round(e);
	return rc;
}

int process_round(saga_engine *e)
{
	int fill_rc;
	int rc = process_and_commit(e, &fill_rc);
	return rc ? rc : fill_rc;
}

/* "<uid>/<step>/<phase>" without printf: this runs for every attempt. The
 * buffer always fits (uid, a step name of at most SAGA_NAME_MAX, a phase). */
static void key_join(char *dst, size_t size, const char *uid, const char *step, const char *phase)
{
	size_t a = strlen(uid), b = strlen(step), c = strlen(phase);
	if (a + b + c + 3 > size) {
		dst[0] = '\0';
		return;
	}
	memcpy(dst, uid, a);
	dst[a] = '/';
	memcpy(dst + a + 1, step, b);
	dst[a + 1 + b] = '/';
	memcpy(dst + a + b + 2, phase, c + 1);
}

/* Runs one callback; called without the mutex. */
static void invoke(saga_engine *e, inst *in)
{
	saga_row *r = &in->row;
	const saga_step_def *sd = step_def(in, r->step);
	saga_step_ctx c;
	memset(&c, 0, sizeof(c));
	c.engine = e;
	c.in = in;
	c.sd = sd;
	c.phase = (saga_phase)r->phase;
	key_join(c.key, sizeof(c.key), r->uid, sd->name, phase_word(r->phase));
	key_join(c.action_key, sizeof(c.action_key), r->uid, sd->name, "action");
	saga_step_fn fn = r->phase == SAGA_PHASE_ACTION ? sd->action : sd->compensation;
	/* The attempt's clocks start now, however long it waited to run: its
	 * timeout, and the call's duration for its breaker (slow calls). */
	in->wall_start = now_wall(e);
	c.deadline = attempt_deadline(in, in->wall_start);
	if (in->has_permit)
		in->permit.started_ms = e->clock.mono_ms(e->clock.user);
	in->res = fn(&c, sd->user);
	in->wall_end = now_wall(e);
	release_breaker(in, c.deadline && in->wall_end > c.deadline);
	in->puts = c.puts;
	memcpy(in->err, c.err, sizeof(in->err));
}

/* A callback starts only with its start committed and enough lease left
 * (the margin): a process paused for less than the margin cannot have lost
 * the instance while it runs. Right after a commit the lease is fresh; a
 * slow commit may have used it up: then it is renewed first. */
static bool lease_margin(saga_engine *e)
{
	if (e->st->lease_left(e->store) < e->margin_ms)
		renew_lease(e, "before invoking");
	return e->st->lease_left(e->store) >= e->margin_ms;
}

/* Before the next callback `in` of a caller's round (called without the
 * mutex): renews the lease once a third of it has passed. False when the
 * callback must not begin: the lease was lost (the instance is another's
 * now), or less than the margin is left. */
static bool keep_lease(saga_engine *e, const inst *in)
{
	pthread_mutex_lock(&e->mu);
	if (renew_due(e))
		renew_lease(e, "between callbacks");
	bool go = !in->lost && e->st->lease_left(e->store) >= e->margin_ms;
	pthread_mutex_unlock(&e->mu);
	return go;
}

/* Is any loaded instance at stage st? */
bool has_stage(saga_engine *e, enum stage st)
{
	for (size_t i = 0; i < e->nloaded; i++)
		if (e->loaded[i]->stage == st && !e->loaded[i]->lost)
			return true;
	return false;
}

/* Answers the waiting starts with rc and wakes their callers. */
static void answer_starts(saga_engine *e, struct start_wait *q, int rc)
{
	for (struct start_wait *w = q; w; w = w->next) {
		starts_end(e, w->ss, rc);
		w->rc = rc;
		if (rc)
			saga_fmt(w->msg, sizeof(w->msg), "%s", saga_engine_errmsg(e));
		w->done = true;
	}
	pthread_cond_broadcast(&e->start_cv);
}

/* Inserts the waiting starts in the round's transaction, hands them to the
 * driver, and processes and commits the round with their first starts.
 * Each learns the commit's result; a failed fill is returned after. */
static int round_with_starts(saga_engine *e, struct start_wait *q)
{
	int rc = SAGA_OK, fill_rc = SAGA_OK;
	for (struct start_wait *w = q; w && rc == SAGA_OK; w = w->next)
		rc = starts_insert(e, w->ss);
	if (rc) {
		discard_round(e);
	} else {
		for (struct start_wait *w = q; w; w = w->next)
			starts_to_driver(e, w->ss);
		rc = process_and_commit(e, &fill_rc);
	}
	answer_starts(e, q, rc);
	return rc ? rc : fill_rc;
}

/* One caller-driven round: process, commit, invoke, then record the answers.
 * When attempts whose starts the last round made durable are waiting, they
 * are invoked first: what else is due (new instances, timers) is processed
 * with their answers, in the same commit. With ss, new instances are
 * started in that commit. */
static int run_round(saga_engine *e, unsigned int *ran, start_set *ss)
{
	bool first = !has_stage(e, STAGE_INVOKE);
	struct start_wait w = { ss, SAGA_OK, false, "", NULL };
	int rc = SAGA_OK;
	if (first)
		rc = ss ? round_with_starts(e, &w) : process_round(e);
	inst *batch[SAGA_MAX_IN_FLIGHT_MAX];
	size_t n = 0;
	bool margin = lease_margin(e);
	for (size_t i = 0; margin && i < e->nloaded && n < sizeof(batch) / sizeof(batch[0]); i++) {
		if (e->loaded[i]->stage == STAGE_INVOKE && !e->loaded[i]->lost) {
			e->loaded[i]->stage = STAGE_INVOKING;
			batch[n++] = e->loaded[i];
		}
	}
	e->invoking += (unsigned)n;
	unlock_and_deliver(e);
	/* The caller's thread runs the callbacks one after the other: the
	 * lease is renewed between them. When it is lost, or too short to
	 * begin another, the rest wait (their starts are durable): invoked by
	 * the next round, or by the new owner. */
	size_t done = 0;
	while (done < n && (done == 0 || keep_lease(e, batch[done])))
		invoke(e, batch[done++]);
	pthread_mutex_lock(&e->mu);
	e->invoking -= (unsigned)n;
	for (size_t i = 0; i < n; i++)
		batch[i]->stage = i < done ? STAGE_RESULT : STAGE_INVOKE;
	e->stats.attempts += done;
	if (ran)
		*ran += (unsigned)done;
	if (rc)
		return rc;
	if (ss && !first)
		return round_with_starts(e, &w);
	return n ? process_round(e) : SAGA_OK;
}

/* Locks the engine for a caller's round: SAGA_ESTATE (not locked) when
 * workers drive it or it is not started. */
static int lock_caller_driven(saga_engine *e)
{
	if (e->nworkers)
		return set_err(e, SAGA_ESTATE, "the engine runs its own workers");
	pthread_mutex_lock(&e->mu);
	if (e->started)
		return SAGA_OK;
	pthread_mutex_unlock(&e->mu);
	return set_err(e, SAGA_ESTATE, "the engine is not started (saga_engine_start)");
}

/* After a caller's rounds: the event descriptor is readable only if work is
 * due now. The timer hint may be stale (the instance it names has just
 * run): then the store says. */
static void settle_fd(saga_engine *e)
{
	if (e->fd_read < 0)
		return; /* no descriptor asked for: nothing to settle */
	fd_drain(e);
	bool due = !nothing_due(e);
	if (due && !e->nloaded && !e->ready_len && e->active_scanned) {
		uint64_t nd = 0;
		due = e->st->next_due(e->store, &nd) != SAGA_OK || (nd && nd <= now_wall(e));
	}
	if (due)
		fd_signal(e);
}

/* saga_run_due, and with ss saga_run_due_start (e is not NULL). */
static int run_due(saga_engine *e, unsigned int *ran, start_set *ss)
{
	int rc = lock_caller_driven(e);
	if (rc)
		return rc;
	e->new_corrupt = 0;
	rc = ss ? starts_check(e, ss) : SAGA_OK;
	if (rc == SAGA_OK)
		rc = report_corrupt(e, run_round(e, ran, ss));
	settle_fd(e);
	unlock_and_deliver(e);
	return rc;
}

int saga_run_due(saga_engine *e, unsigned int *ran)
{
	if (ran)
		*ran = 0;
	return e ? run_due(e, ran, NULL) : SAGA_EINVAL;
}

int saga_run_due_start(saga_engine *e, unsigned int *ran, int64_t *ids, int *created,
                       const saga_start_request *reqs, size_t n)
{
	if (ran)
		*ran = 0;
	if (!e || !ids || (!reqs && n))
		return bad_args(e, "run_due_start: ids and the requests are needed");
	start_set ss = { reqs, n, ids, created, NULL };
	return run_due(e, ran, &ss);
}

int saga_run_until_idle(saga_engine *e)
{
	if (!e)
		return SAGA_EINVAL;
	int rc = lock_caller_driven(e);
	if (rc)
		return rc;
	e->new_corrupt = 0;
	for (;;) {
		unsigned int ran = 0;
		if ((rc = run_round(e, &ran, NULL)))
			break;
		if (ran == 0 && nothing_due(e))
			break;
	}
	rc = report_corrupt(e, rc);
	settle_fd(e);
	unlock_and_deliver(e);
	return rc;
}

int saga_next_due(saga_engine *e, uint64_t *out)
{
	if (!e || !out)
		return bad_args(e, "next_due: out is needed");
	pthread_mutex_lock(&e->mu);
	uint64_t nd = 0;
	int rc = e->st->next_due(e->store, &nd);
	if (rc)
		rc = store_err(e, rc);
	uint64_t now = now_wall(e);
	if (e->nloaded || e->ready_len || !e->active_scanned)
		nd = now;
	/* Other processes may leave work (commands, orphans): look again
	 * within a poll. */
	if (e->peers && (!nd || nd > now + SAGA_POLL_MS))
		nd = now + SAGA_POLL_MS;
	if (nd && nd <= now)
		fd_signal(e); /* a timer fell due: the poll loop runs a round */
	*out = nd;
	pthread_mutex_unlock(&e->mu);
	return rc;
}

/* What an answer must be for a worker to wake the driver (driver_waits). */
enum { WAKE_NONE, WAKE_ON_ANY, WAKE_ON_LAST };

/* Hands the attempts the round made durable to the workers. */
static void hand_to_workers(saga_engine *e)
{
	unsigned int n = 0;
	if (!has_stage(e, STAGE_INVOKE) || !lease_margin(e))
		return;
	pthread_mutex_lock(&e->qmu);
	for (size_t i = 0; i < e->nloaded; i++) {
		inst *in = e->loaded[i];
		if (in->stage != STAGE_INVOKE || in->lost)
			continue;
		in->stage = STAGE_INVOKING;
		in->qnext = NULL;
		if (e->todo_tail)
			e->todo_tail->qnext = in;
		else
			e->todo = in;
		e->todo_tail = in;
		n++;
	}
	e->unanswered += n;
	if (n >= e->nworkers)
		pthread_cond_broadcast(&e->work_cv);
	else
		for (unsigned int i = 0; i < n; i++)
			pthread_cond_signal(&e->work_cv);
	pthread_mutex_unlock(&e->qmu);
	e->invoking += n;
}

/* Takes the workers' answers back: their instances are at stage RESULT,
 * for the next round to record. Called with the mutex. */
static void collect_answers(saga_engine *e)
{
	pthread_mutex_lock(&e->qmu);
	inst *a = e->answers;
	e->answers = NULL;
	pthread_mutex_unlock(&e->qmu);
	unsigned int n = 0;
	for (; a; a = a->qnext, n++)
		a->stage = STAGE_RESULT;
	e->invoking -= n;
	e->stats.attempts += n;
}

void *worker_main(void *arg)
{
	saga_engine *e = arg;
	pthread_mutex_lock(&e->qmu);
	for (;;) {
		inst *in = e->todo;
		if (!in) {
			if (e->workers_stop)
				break;
			pthread_cond_wait(&e->work_cv, &e->qmu);
			continue;
		}
		if (!(e->todo = in->qnext))
			e->todo_tail = NULL;
		pthread_mutex_unlock(&e->qmu);
		invoke(e, in);
		pthread_mutex_lock(&e->qmu);
		in->qnext = e->answers;
		e->answers = in;
		e->unanswered--;
		if (e->driver_waits == WAKE_ON_ANY ||
		    (e->driver_waits == WAKE_ON_LAST && e->unanswered == 0)) {
			/* The driver checked the lists and sleeps, or is about
			 * to: with mu taken, the signal cannot come before its
			 * wait. */
			e->driver_waits = WAKE_NONE;
			pthread_mutex_unlock(&e->qmu);
			pthread_mutex_lock(&e->mu);
			pthread_cond_signal(&e->wake);
			pthread_mutex_unlock(&e->mu);
			pthread_mutex_lock(&e->qmu);
		}
	}
	pthread_mutex_unlock(&e->qmu);
	/* The engine is closing: its last round records these answers. */
	pthread_mutex_lock(&e->mu);
	collect_answers(e);
	pthread_mutex_unlock(&e->mu);
	return NULL;
}

/* The driver's longest sleep without news: an injected clock does not wake a
 * condition variable, so due timers are looked at this often. */
#define DRIVER_NAP_MS 50
/* How often saga_wait_idle looks again when no wake-up comes. */
#define WAIT_IDLE_POLL_MS 20
/* How long the driver waits for the answers still out, at most, and before
 * it has timed a round (see await_round). */
#define ANSWER_WAIT_MAX_US   5000u
#define ANSWER_WAIT_FIRST_US 1000u

/* The CLOCK_REALTIME time `us` from now, for pthread_cond_timedwait. */
static struct timespec deadline_after_us(uint64_t us)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += (long)(us % 1000000u) * 1000L;
	ts.tv_sec += (time_t)(us / 1000000u) + ts.tv_nsec / 1000000000L;
	ts.tv_nsec %= 1000000000L;
	return ts;
}

/* The CLOCK_REALTIME time `ms` from now, for pthread_cond_timedwait. */
struct timespec deadline_after_ms(uint64_t ms)
{
	return deadline_after_us(ms * 1000u);
}

/* Waits on e->wake until `ms` of the system's monotonic clock have passed or
 * `until_stop` and the engine is stopping; other wake-ups are ignored when
 * until_stop is set. Called with the mutex. */
static void driver_sleep(saga_engine *e, uint64_t ms, bool until_stop)
{
	uint64_t end = saga_sys_mono_ms(NULL) + ms;
	for (;;) {
		uint64_t now = saga_sys_mono_ms(NULL);
		if (now >= end || e->stopping)
			return;
		struct timespec ts = deadline_after_us((end - now) * 1000u);
		pthread_cond_timedwait(&e->wake, &e->mu, &ts);
		if (!until_stop)
			return;
	}
}

/* Has a round something to do besides answers: starts to commit, stored
 * instances to bring in, unfinished ones to scan for? */
static bool round_wanted(saga_engine *e)
{
	return e->start_queue || !e->active_scanned ||
	       (e->ready_len && e->nloaded < e->max_in_flight);
}

/* How long a wait for news may sleep, in ms: until the next stored timer,
 * at most `ms` and at most DRIVER_NAP_MS (an injected clock does not wake a
 * condition variable, so due timers are looked at this often). */
uint64_t nap_until_timer(saga_engine *e, uint64_t ms)
{
	if (ms > DRIVER_NAP_MS)
		ms = DRIVER_NAP_MS;
	uint64_t now = now_wall(e);
	if (e->next_timer != UINT64_MAX && e->next_timer > now && e->next_timer - now < ms)
		ms = e->next_timer - now;
	return ms;
}

/* Waits, with the mutex, until a round is worth its commit:
 *  - every attempt handed to the workers has answered and something waits
 *    (answers, starts, instances to bring in): at once;
 *  - something waits, but answers are still out: until they are all back,
 *    or for grace_us at most (about what a round takes: an answer that
 *    misses this round waits for the next one about as long);
 *  - nothing waits: until the first answer, other news, the next timer or
 *    a short nap, after which a round looks at the timers.
 * Committing as each answer came back would give each commit a few
 * answers and the workers a wake-up each; waiting for all of them at any
 * cost would let one slow callback hold up every other instance. */
static void await_round(saga_engine *e, uint64_t grace_us)
{
	uint64_t since = 0; /* when something was first seen waiting */
	bool napped = false;
	while (!e->stopping) {
		pthread_mutex_lock(&e->qmu);
		bool waiting = e->answers || round_wanted(e);
		bool all_back = e->unanswered == 0;
		uint64_t now = saga_sys_mono_us(), us;
		if (waiting && !since)
			since = now;
		if (waiting ? all_back || now - since >= grace_us : napped) {
			e->driver_waits = WAKE_NONE;
			pthread_mutex_unlock(&e->qmu);
			return;
		}
		if (waiting) {
			e->driver_waits = WAKE_ON_LAST;
			us = since + grace_us - now;
		} else {
			e->driver_waits = all_back ? WAKE_NONE : WAKE_ON_ANY;
			us = nap_until_timer(e, DRIVER_NAP_MS) * 1000u;
			napped = true;
		}
		pthread_mutex_unlock(&e->qmu);
		struct timespec ts = deadline_after_us(us);
		pthread_cond_timedwait(&e->wake, &e->mu, &ts);
	}
}

/* The driver's wait after its n-th failed round in a row (n >= 1):
 * ROUND_BACKOFF_FIRST_MS doubled each time, at most ROUND_BACKOFF_MAX_MS. */
#define ROUND_BACKOFF_FIRST_MS 100u
#define ROUND_BACKOFF_MAX_MS   5000u

static uint64_t round_backoff(uint64_t failures)
{
	uint64_t ms = ROUND_BACKOFF_FIRST_MS;
	for (uint64_t i = 1; i < failures && ms < ROUND_BACKOFF_MAX_MS; i++)
		ms *= 2;
	return ms < ROUND_BACKOFF_MAX_MS ? ms : ROUND_BACKOFF_MAX_MS;
}

void *driver_main(void *arg)
{
	saga_engine *e = arg;
	uint64_t failures = 0;                    /* failed rounds in a row */
	uint64_t round_us = ANSWER_WAIT_FIRST_US; /* what a committing round takes, averaged */
	int last_rc = SAGA_OK;
	pthread_mutex_lock(&e->mu);
	e->driver_tid = pthread_self();
	e->driver_running = true;
	while (!e->stopping) {
		collect_answers(e);
		struct start_wait *q = e->start_queue;
		e->start_queue = e->start_tail = NULL;
		uint64_t commits = e->stats.commits, t0 = saga_sys_mono_us();
		int rc = q ? round_with_starts(e, q) : process_round(e);
		if (e->stats.commits != commits)
			round_us = (3 * round_us + (saga_sys_mono_us() - t0)) / 4;
		/* A failing store (a full disk) fails every round: the change of
		 * state is logged, not each round. */
		if (rc) {
			failures++;
			if (failures == 1)
				log_at(e, SAGA_LOG_ERROR, "round.failing",
				       "engine rounds failing: %s (retrying after %u ms, backing "
				       "off to "
				       "%u ms while they fail)",
				       saga_engine_errmsg(e), ROUND_BACKOFF_FIRST_MS,
				       ROUND_BACKOFF_MAX_MS);
			else if (rc != last_rc)
				log_at(e, SAGA_LOG_ERROR, "round.failing",
				       "engine rounds still failing, now: %s",
				       saga_engine_errmsg(e));
		} else if (failures) {
			log_at(e, SAGA_LOG_WARN, "round.recovered",
			       "engine rounds succeed again after %llu failed rounds",
			       (unsigned long long)failures);
			failures = 0;
		}
		last_rc = rc;
		hand_to_workers(e);
		bool idle = e->invoking == 0 && nothing_due(e);
		e->driver_idle = idle;
		if (idle)
			pthread_cond_broadcast(&e->idle_cv);
		unlock_and_deliver(e);
		pthread_mutex_lock(&e->mu);
		if (rc) {
			/* Back off whatever is waiting (answers, starts, timers):
			 * retrying at once fails again at once. Only close wakes it. */
			driver_sleep(e, round_backoff(failures), true);
			continue;
		}
		await_round(e, round_us < ANSWER_WAIT_MAX_US ? round_us : ANSWER_WAIT_MAX_US);
	}
	/* Starts queued while the engine was closing are refused. */
	if (e->start_queue) {
		set_err(e, SAGA_ECLOSED, "engine is closing");
		answer_starts(e, e->start_queue, SAGA_ECLOSED);
		e->start_queue = e->start_tail = NULL;
	}
	e->driver_running = false;
	/* The workers invoke what was handed to them, then leave. */
	pthread_mutex_lock(&e->qmu);
	e->workers_stop = true;
	pthread_cond_broadcast(&e->work_cv);
	pthread_mutex_unlock(&e->qmu);
	pthread_mutex_unlock(&e->mu);
	return NULL;
}

int saga_wait_idle(saga_engine *e, uint64_t timeout_ms)
{
	if (!e)
		return SAGA_EINVAL;
	if (!e->nworkers)
		return saga_run_until_idle(e);
	uint64_t start = saga_sys_mono_ms(NULL);
	pthread_mutex_lock(&e->mu);
	if (!e->started) {
		pthread_mutex_unlock(&e->mu);
		return set_err(e, SAGA_ESTATE, "the engine is not started (saga_engine_start)");
	}
	e->driver_idle = false;
	pthread_cond_signal(&e->wake);
	int rc = SAGA_OK;
	while (!(e->driver_idle && e->invoking == 0 && e->nloaded == 0 && e->ready_len == 0)) {
		uint64_t el = saga_sys_mono_ms(NULL) - start;
		if (el >= timeout_ms) {
			rc = set_err(e, SAGA_EBUSY, "still busy after %llu ms",
			             (unsigned long long)timeout_ms);
			break;
		}
		struct timespec ts = deadline_after_us(WAIT_IDLE_POLL_MS * 1000u);
		pthread_cond_timedwait(&e->idle_cv, &e->mu, &ts);
	}
	pthread_mutex_unlock(&e->mu);
	return rc;
}
