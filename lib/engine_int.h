/* The engine's private header: its types, and the functions that cross the
 * files of the engine. Everything else stays static in its file.
 *
 * Concurrency model: one mutex guards the engine and its SQLite connection.
 * A write transaction is only ever open while the mutex is held, and it is
 * committed before the mutex is released, so every transition of every
 * instance processed in one round shares one commit (group commit). Step
 * callbacks and listeners run with the mutex released.
 *
 * Life of a loaded instance: PROCESS (decide what comes next; may record the
 * start of an attempt) -> INVOKE (the start is committed) -> INVOKING (a
 * callback runs; with workers, from the moment the driver hands it over
 * until it takes the answer back) -> RESULT (its answer waits to be
 * recorded) -> PROCESS ...
 *
 * With workers, the driver and the workers trade instances through two
 * lists under a second mutex, qmu (driver.c): the committed attempts to
 * invoke, and the answers. Neither side takes mu to pass an instance, so a
 * worker never waits for a commit, and the driver waits for the answers of
 * the attempts it handed out, not for the first one, before it commits.
 * Lock order: mu, then qmu.
 * An instance that parks (timer, breaker, async) or ends is written and
 * dropped from memory: the store holds it.
 *
 * The engine's files, each calling only the ones below it:
 *   wait.c        saga_wait: waiting for one instance
 *   engine.c      open, start and close
 *   driver.c      the round (bring in, decide, commit, invoke) and who runs
 *                 it: the caller (saga_run_due...) or the driver and workers
 *   command.c     complete, cancel and the operator verbs on one instance
 *   query.c       read-side queries and purge
 *   start.c       creating instances
 *   step_ctx.c    the step callbacks' view (saga_step_*)
 *   transition.c  the state machine: what an instance does next
 *   resume.c      bringing stored instances into memory: recovery, timers,
 *                 damaged rows
 *   txn.c         the round's one transaction, its history rows and events
 *   registry.c    definitions, breakers and listeners registered on an engine
 *   metrics.c     the engine's counters and histograms, kept per commit, and
 *                 saga_metrics_write (Prometheus and OpenMetrics text)
 *   wake.c        the signal that work arrived, and the event descriptor
 *                 (saga_engine_fd) it makes readable
 *   errors.c      the per-thread message and the log hook
 * Below them: the store (store.h; store_*.c), definition.c, breaker.c,
 * retry.c, util.c (internal.h).
 *
 * SPDX-License-Identifier: MIT */
#ifndef SAGA_ENGINE_INT_H
#define SAGA_ENGINE_INT_H

#include "store.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdatomic.h>

/* Where a loaded instance is in its life (see the head of this file). */
enum stage { STAGE_PROCESS, STAGE_INVOKE, STAGE_INVOKING, STAGE_RESULT, STAGE_DONE };

/* ---- metrics (metrics.c) ----
 * Histograms count each observation in the first bucket whose bound it
 * does not exceed (MX_BUCKETS bounds, then +Inf); values in whole units of
 * the histogram (milliseconds for durations), so the sum is exact. */
#define MX_BUCKETS 14
typedef struct mx_hist {
	uint64_t n[MX_BUCKETS + 1]; /* per bucket, not cumulative; the last is +Inf */
	uint64_t count;
	uint64_t sum;
} mx_hist;
/* Attempt outcomes as counted: SAGA_OUTCOME_* minus NONE, and interrupted
 * (an attempt found without an answer after its owner died). */
enum { MX_OK, MX_FAIL, MX_RETRY, MX_PENDING, MX_TIMEOUT, MX_INTERRUPTED, MX_OUTCOMES };
#define MX_REASONS (SAGA_REASON_CRASH_LOOP + 1)
#define MX_CODES   20 /* store errors by -SAGA_E* code */
typedef struct mx_step {
	uint64_t attempts[2][MX_OUTCOMES]; /* [phase][outcome] */
	mx_hist duration[2];               /* [phase], ms */
} mx_step;
typedef struct mx_def {
	uint64_t started;
	uint64_t ended[SAGA_STATE_COUNT][MX_REASONS];
	mx_hist duration[SAGA_STATE_COUNT]; /* ms, by final state */
	mx_step *steps;                     /* per step */
} mx_def;
/* A count or an observation made in the open transaction: applied when it
 * commits, dropped when it does not. */
typedef struct mx_pend {
	uint64_t *counter; /* or NULL */
	mx_hist *hist;     /* or NULL */
	uint64_t v;
} mx_pend;

/* A registered definition (registry.c): the engine's own copy. */
typedef struct reg_def {
	saga_definition *def;
	const char **names; /* step names, for history queries */
	mx_def mx;          /* its metrics (metrics.c), under the mutex */
	bool stored_only;   /* rebuilt from the store's snapshot (an admin handle):
	                       no callbacks, never served */
} reg_def;

/* An instance in memory: its row as the store has it (or will, after the
 * commit), and what the engine keeps between rounds. */
typedef struct inst {
	saga_row row;
	const reg_def *rd;
	cJSON *context;       /* the saga's context, parsed from row.context */
	bool context_changed; /* context differs from row.context */
	enum stage stage;
	bool lost;        /* its owner's lease lapsed while it ran: dropped when it answers */
	bool fresh_start; /* the start of the current attempt was recorded by this process */
	bool uncommitted; /* changed in the open transaction */
	/* the answer of the last invocation */
	saga_step_result res;
	cJSON *puts;
	char err[256];
	uint64_t wall_start; /* when the callback was invoked: its timeout counts from here */
	uint64_t wall_end;   /* when it returned */
	saga_breaker *breaker;
	saga_breaker_permit permit;
	bool has_permit;
	struct inst *qnext; /* next in the driver's and workers' lists (qmu) */
} inst;

/* A command read from the store, waiting for its instance to be at rest
 * (resume.c, command.c). */
enum cmd_verb { CMD_CANCEL, CMD_RETRY, CMD_SKIP, CMD_RESUME, CMD_COMPLETE, CMD_COMPLETE_EARLY };
typedef struct queued_cmd {
	store_command c; /* its output is not kept there: */
	char *output;    /* owned JSON text, or NULL */
} queued_cmd;

/* An event waiting for its commit, then for the listeners (txn.c). */
typedef struct pending_event {
	saga_event ev;
	char *detail;
} pending_event;

/* A registered listener (registry.c). Deliveries walk the list without the
 * mutex, so a removed one is unlinked but kept, with its next pointer, until
 * no delivery is under way (the retired list). */
typedef struct listener {
	saga_listener_fn fn;
	void *user;
	_Atomic(struct listener *) next;
	atomic_bool removed;
	struct listener *retired_next;
} listener;

typedef struct breaker_entry {
	saga_breaker *b;
	struct breaker_entry *next;
} breaker_entry;

struct saga_engine {
	saga_alloc alloc;
	saga_clock clock;
	saga_log_fn log;
	void *log_user;
	saga_log_record_fn log_record;
	void *log_record_user;
	saga_log_level log_level;
	unsigned int max_in_flight;
	unsigned int nworkers;
	uint64_t rng;
	const store_ops *st; /* the store's backend (store.h) */
	saga_store *store;
	pthread_mutex_t mu;
	pthread_cond_t wake;     /* the driver: work arrived */
	pthread_cond_t work_cv;  /* workers: something to invoke (qmu) */
	pthread_cond_t idle_cv;  /* saga_wait_idle */
	pthread_cond_t start_cv; /* queued starts: their commit is done */
	pthread_cond_t wait_cv;  /* saga_wait: a state committed, or work arrived */
	int fd_read, fd_write;   /* saga_engine_fd (the same eventfd twice), or -1 */
	bool started;            /* running: threads made, saga_run_* allowed */
	struct start_wait *start_queue, *start_tail; /* starts for the driver's next commit */
	pthread_t driver_tid;
	bool driver_running;
	reg_def **defs; /* each apart: loaded instances point to theirs */
	size_t ndefs;
	breaker_entry *breakers;
	listener *listeners;
	listener *retired;      /* removed, freed once no delivery runs */
	atomic_uint delivering; /* deliveries walking the listeners */
	inst **loaded;          /* instances in memory, at most max_in_flight */
	size_t nloaded;
	int64_t *ready; /* ids waiting to be loaded (FIFO) */
	size_t ready_head, ready_len, ready_cap;
	bool active_scanned; /* the unfinished instances were queued since the last
	                             reason to scan again (a registration, a full queue) */
	int64_t *quarantine; /* ids of damaged rows: reported once, then skipped */
	size_t nquarantine;
	int64_t new_corrupt; /* a damaged row found in this call, or 0 */
	uint64_t next_timer; /* earliest stored due time; 0 = unknown (look in the
	                             store), UINT64_MAX = none stored */
	bool in_txn;
	uint64_t txn_rows;    /* history rows in the open transaction */
	uint64_t txn_started; /* instances created in it */
	bool txn_states;      /* a change of state was recorded in it */
	saga_stats stats;
	/* Metrics (metrics.c): counts of the open transaction, waiting for its
	 * commit; rows per commit; store errors (atomics: set without the
	 * mutex too) */
	mx_pend *mx;
	size_t nmx, mx_cap;
	mx_hist per_commit;
	_Atomic uint64_t store_errors[MX_CODES];
	/* Many processes on one store (resume.c, txn.c) */
	uint64_t lease_ms, margin_ms;
	uint64_t next_poll;      /* mono ms: the next look for other processes' work */
	int peers;               /* other live owners at the last look */
	bool look_now;           /* a command was queued here: look at the next round */
	struct queued_cmd *cmds; /* commands read for instances this owner holds */
	size_t ncmds;
	pending_event *events;
	size_t nevents, events_cap;
	unsigned int invoking; /* callbacks running */
	bool stopping;
	bool driver_idle;
	pthread_t *threads; /* driver + workers */
	unsigned int nthreads;
	/* The hand-off between the driver and the workers (driver.c). */
	pthread_mutex_t qmu;       /* guards the members below */
	inst *todo, *todo_tail;    /* committed attempts to invoke, oldest first */
	inst *answers;             /* invoked, waiting for the driver */
	unsigned int unanswered;   /* handed to the workers, not answered yet */
	unsigned int driver_waits; /* which answer wakes the driver (driver.c) */
	bool workers_stop;         /* the driver has stopped: finish the list, exit */
};

/* What a step callback sees (step_ctx.c), built by invoke (driver.c). */
struct saga_step_ctx {
	saga_engine *engine;
	inst *in;
	const saga_step_def *sd;
	saga_phase phase;
	char key[SAGA_UID_LEN + SAGA_NAME_MAX + 24];
	char action_key[SAGA_UID_LEN + SAGA_NAME_MAX + 24];
	cJSON *puts;
	char err[256];
	uint64_t deadline; /* invocation + the step's timeout; 0 = none */
};

/* New instances written in one transaction: saga_start_batch commits them
 * alone, saga_run_due_start with a round. */
typedef struct start_set {
	const saga_start_request *reqs;
	size_t n;
	int64_t *ids;
	int *created;
	struct fresh_slot {
		inst *in;   /* the new instance ready to run, or NULL */
		bool moved; /* it went to the driver */
	} * fresh;          /* per request, or NULL */
} start_set;

/* Starts waiting for a round's commit: from saga_run_due_start, or queued
 * by saga_start_batch for the driver (workers), whose callers wait. */
struct start_wait {
	start_set *ss;
	int rc;
	bool done;
	char msg[256]; /* the driver's message when rc != 0 */
	struct start_wait *next;
};

/* What advance (transition.c) leaves an instance to: an attempt to invoke
 * after the commit, or nothing (parked, ended, not due yet). */
enum next { NEXT_INVOKE, NEXT_RELEASE };

/* The engine's wall clock, in ms (saga_options.clock). */
static inline uint64_t now_wall(saga_engine *e)
{
	return e->clock.wall_ms(e->clock.user);
}

/* The latest time the store can hold (its columns are SQLite's signed
 * 64-bit integers): a time past it means "never". */
#define TIME_END ((uint64_t)INT64_MAX)

/* t + d, saturated at TIME_END: a huge timeout, delay or deadline (the
 * policies take any uint64_t) is far in the future, never wrapped into the
 * past. */
static inline uint64_t time_add(uint64_t t, uint64_t d)
{
	if (t >= TIME_END || d >= TIME_END - t)
		return TIME_END;
	return t + d;
}

static inline const char *phase_word(int phase)
{
	return phase == SAGA_PHASE_ACTION ? "action" : "compensation";
}

static inline const saga_step_def *step_def(const inst *in, int step)
{
	return &in->rd->def->steps[step];
}

/* ---- error text and logging (errors.c) ---- */
int set_err(saga_engine *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Logs a line at lvl with the stable code `event` (saga_log_record). */
void log_at(saga_engine *e, saga_log_level lvl, const char *event, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
/* The same about an instance (its ids, and its current step when step >= 0)
 * and a SAGA_E* code (or 0). */
void log_inst(saga_engine *e, saga_log_level lvl, const char *event, const inst *in, int step,
              int phase, uint32_t attempt, int code, const char *fmt, ...)
        __attribute__((format(printf, 9, 10)));
static inline bool log_on(const saga_engine *e, saga_log_level lvl)
{
	return (e->log || e->log_record) && lvl >= e->log_level;
}
int bad_args(saga_engine *e, const char *what);
int store_err(saga_engine *e, int code);

/* ---- what is registered on an engine (registry.c) ---- */
const reg_def *find_def(saga_engine *e, const char *name, int version);
int register_stored(saga_engine *e, const char *name, int version);
saga_breaker *find_breaker(saga_engine *e, const char *name);
listener *listeners_hold(saga_engine *e);
void listeners_deliver(listener *ls, const saga_event *ev);
void listeners_release(saga_engine *e);
void listeners_free(saga_engine *e);

/* ---- metrics (metrics.c); with the mutex ---- */
int mx_def_init(saga_engine *e, reg_def *rd);
void mx_def_free(saga_engine *e, reg_def *rd);
/* Counts what a history row about to be written says (started, ended,
 * attempts, durations) in the open transaction. */
int mx_record(saga_engine *e, const inst *in, saga_event_type type, int step, int phase,
              saga_outcome outcome, uint64_t now);
void mx_commit(saga_engine *e, uint64_t rows);
void mx_drop(saga_engine *e);
void mx_store_error(saga_engine *e, int code);

/* ---- the round's transaction and its events (txn.c) ---- */
int ensure_txn(saga_engine *e);
int serve_all(saga_engine *e);
int owner_ready(saga_engine *e);
/* The heartbeat: a third of the lease has passed since it was renewed. */
bool renew_due(saga_engine *e);
/* Renews the lease in a transaction of its own (with the mutex, none open);
 * a failure is logged, naming `when`. */
void renew_lease(saga_engine *e, const char *when);
void drop_events(saga_engine *e);
int record(saga_engine *e, inst *in, saga_event_type type, int step, int phase, uint32_t attempt,
           saga_outcome outcome, const char *detail);
int record_attempt(saga_engine *e, inst *in, saga_event_type type, saga_outcome outcome,
                   const char *detail);
int record_state(saga_engine *e, inst *in, const char *detail);
int put_instance(saga_engine *e, inst *in);
void unlock_and_deliver(saga_engine *e);
void abort_txn(saga_engine *e);
int commit_txn(saga_engine *e);
int end_txn(saga_engine *e, int rc);

/* ---- bringing stored instances into memory (resume.c) ---- */
void free_inst(saga_engine *e, inst *in);
inst *find_loaded(saga_engine *e, int64_t id, const char *uid);
int push_ready(saga_engine *e, int64_t id);
int parse_context(saga_engine *e, cJSON **out, const char *text, int64_t id);
int load_inst(saga_engine *e, inst **out, int64_t id, const char *uid);
int fill(saga_engine *e);
void unload(saga_engine *e, size_t i);
void discard_round(saga_engine *e);
int report_corrupt(saga_engine *e, int rc);
bool nothing_due(saga_engine *e);

/* ---- the state machine (transition.c) ---- */
bool ended(int state);
int start_compensation(saga_engine *e, inst *in, saga_reason reason, bool skip_current);
bool past_no_return(const inst *in);
int apply_outcome(saga_engine *e, inst *in, saga_outcome outcome, cJSON *puts, const char *errtext);
int advance(saga_engine *e, inst *in, enum next *next);
uint64_t attempt_deadline(const inst *in, uint64_t invoked);
int apply_result(saga_engine *e, inst *in);
void release_breaker(inst *in, bool late);

/* ---- creating instances (start.c) ---- */
int starts_check(saga_engine *e, start_set *ss);
int starts_insert(saga_engine *e, start_set *ss);
void starts_to_driver(saga_engine *e, start_set *ss);
void starts_end(saga_engine *e, start_set *ss, int rc);

/* ---- work arrived, and the event descriptor (wake.c); with the mutex ---- */
void work_arrived(saga_engine *e);
void fd_signal(saga_engine *e);
void fd_drain(saga_engine *e);
void fd_close(saga_engine *e);

/* ---- the rounds and the threads that run them (driver.c) ---- */
int process_round(saga_engine *e);
bool has_stage(saga_engine *e, enum stage st);
void *worker_main(void *arg);
void *driver_main(void *arg);
struct timespec deadline_after_ms(uint64_t ms);
uint64_t nap_until_timer(saga_engine *e, uint64_t ms);

/* ---- commands (command.c) ---- */
/* Cancel or an operator verb (enum cmd_verb) for the admin API: as
 * saga_cancel and saga_operator_*, with `note` (JSON text: actor, reason,
 * request; borrowed) appended to the history's OPERATOR event, and carried
 * in the command row when the instance's owner is another process
 * (*queued). */
int admin_command(saga_engine *e, int64_t id, int verb, const char *note, bool *queued);
int apply_queued(saga_engine *e, inst *in);
int take_commands(saga_engine *e);
void drop_cmds(saga_engine *e);
int look_outside(saga_engine *e);

/* ---- the read side (query.c); with the mutex ---- */
int get_info(saga_engine *e, saga_instance_info *out, int64_t id);
/* SAGA_EINVAL, with the message, for a filter saga_list_page refuses. */
int check_list_filter(saga_engine *e, const saga_list_filter *f);

#endif
